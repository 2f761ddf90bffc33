#!/usr/bin/env bash
# `make e2e`: install N8n into a cache folder outside the clone (once), then run tests/e2e against
# a real N8n, the API and the Hub simulator (all on 127.0.0.1). Idempotent; exits 0 on success.
#   N8N_CACHE_DIR   where N8n lives (default ~/.cache/llmbox-n8n); N8N_VERSION (default 1.123.81)
#   N8N_BIN         use this n8n binary instead of installing one
#   extra arguments go to pytest, e.g. bash tests/e2e/run-n8n.sh -k cleanup
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${N8N_BIN:-}" ]; then
  N8N_BIN="$(bash tests/e2e/install-n8n.sh | tail -n 1)"
fi
export N8N_BIN

PY="${PY:-.venv/bin/python}"
if [ ! -x "$PY" ]; then
  make -s install
fi
echo "e2e: N8n $("$N8N_BIN" --version 2>/dev/null | tail -n 1) at $N8N_BIN" >&2
exec "$PY" -m pytest -q -p no:cacheprovider tests/e2e/ "$@"
