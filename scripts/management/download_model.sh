#!/usr/bin/env bash
# Compatibility shim for old cron jobs: `download_model.sh MODEL_ID` is `modelctl download MODEL_ID --wait`.
# Same output and exit codes as modelctl (0 ok, 2 usage, 3 not found, ... 7 job failed); see docs/cli.md.
set -uo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
echo "note: download_model.sh is a compatibility shim for 'modelctl download MODEL_ID --wait'" >&2
if [[ $# -lt 1 || -z $1 ]]; then
  echo "usage: download_model.sh MODEL_ID [modelctl download options]" >&2
  exit 2
fi
exec "$here/../modelctl" download "$@" --wait
