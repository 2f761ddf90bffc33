#!/usr/bin/env bash
# Install N8n (pinned) into a cache folder outside the clone; reuse it when already there.
# Prints the path of the n8n binary on stdout as its last line.
set -euo pipefail

N8N_VERSION="${N8N_VERSION:-1.123.81}"
N8N_CACHE_DIR="${N8N_CACHE_DIR:-$HOME/.cache/llmbox-n8n}"
dir="$N8N_CACHE_DIR/$N8N_VERSION"
bin="$dir/node_modules/.bin/n8n"

if [ -x "$bin" ] && [ -f "$dir/.installed" ]; then
  echo "n8n $N8N_VERSION already installed in $dir" >&2
  echo "$bin"
  exit 0
fi

command -v node >/dev/null 2>&1 || { echo "node is required (Node 20)" >&2; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "npm is required" >&2; exit 1; }

mkdir -p "$dir"
cat > "$dir/package.json" <<JSON
{"name":"llmbox-n8n-e2e","private":true,"dependencies":{"n8n":"$N8N_VERSION"},
 "overrides":{"xlsx":"0.18.5","isolated-vm":"5.0.4"}}
JSON
echo "installing n8n $N8N_VERSION into $dir (about 10 minutes the first time)" >&2
start=$(date +%s)
(cd "$dir" && npm install --no-audit --no-fund --omit=optional --legacy-peer-deps --loglevel=error >&2)
[ -x "$bin" ] || { echo "npm install finished but $bin is missing" >&2; exit 1; }
date -u +%FT%TZ > "$dir/.installed"
echo "n8n installed in $(( $(date +%s) - start ))s" >&2
echo "$bin"
