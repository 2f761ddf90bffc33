#!/usr/bin/env bash
# Compatibility shim for old cron jobs: `delete_model.sh MODEL_ID` is `modelctl delete MODEL_ID`.
# Same output and exit codes as modelctl (0 ok, 2 usage, 3 not found, 4 active/in use, ...); see docs/cli.md.
set -uo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
echo "note: delete_model.sh is a compatibility shim for 'modelctl delete MODEL_ID'" >&2
if [[ $# -lt 1 || -z $1 ]]; then
  echo "usage: delete_model.sh MODEL_ID [--force]" >&2
  exit 2
fi
exec "$here/../modelctl" delete "$@"
