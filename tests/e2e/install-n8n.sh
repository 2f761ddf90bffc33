#!/usr/bin/env bash
# Install N8n (pinned) into a cache folder outside the clone; reuse it when already there.
# Prints the path of the n8n binary on stdout as its last line; progress goes to stderr.
#   N8N_CACHE_DIR (default ~/.cache/llmbox-n8n), N8N_VERSION (default 1.123.81)
set -euo pipefail

N8N_VERSION="${N8N_VERSION:-1.123.81}"
N8N_CACHE_DIR="${N8N_CACHE_DIR:-$HOME/.cache/llmbox-n8n}"
dir="$N8N_CACHE_DIR/$N8N_VERSION"
bin="$dir/node_modules/.bin/n8n"

# Overrides: xlsx - n8n's own points at a download address outside the registries; isolated-vm 6
# needs a newer Node than 20; @langchain/langgraph-checkpoint >= 1.1 needs a newer @langchain/core
# than n8n pins (without this `n8n start` fails with: Command "start" not found).
manifest=$(cat <<JSON
{"name":"llmbox-n8n-e2e","private":true,"dependencies":{"n8n":"$N8N_VERSION"},
 "overrides":{"xlsx":"0.18.5","isolated-vm":"5.0.4","@langchain/langgraph-checkpoint":"1.0.0"}}
JSON
)
stamp=$(printf '%s' "$manifest" | sha256sum | cut -c1-16)

if [ -x "$bin" ] && [ "$(cat "$dir/.installed" 2>/dev/null)" = "$stamp" ]; then
  echo "n8n $N8N_VERSION already installed in $dir" >&2
  echo "$bin"
  exit 0
fi

command -v node >/dev/null 2>&1 || { echo "node is required (Node 20)" >&2; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "npm is required" >&2; exit 1; }

mkdir -p "$dir"
printf '%s\n' "$manifest" > "$dir/package.json"
echo "installing n8n $N8N_VERSION into $dir (about 10 minutes the first time)" >&2
start=$(date +%s)
(cd "$dir" && npm install --no-audit --no-fund --omit=optional --legacy-peer-deps --loglevel=error >&2)
[ -x "$bin" ] || { echo "npm install finished but $bin is missing" >&2; exit 1; }
# `n8n start` loads far more modules than `n8n execute`: check that it can be loaded at all.
N8N_USER_FOLDER="$dir/check-home" "$bin" start --help >/dev/null 2>&1 \
  || { echo "n8n installed but its start command cannot load: $bin start --help" >&2; exit 1; }
echo "$stamp" > "$dir/.installed"
echo "n8n installed in $(( $(date +%s) - start ))s" >&2
echo "$bin"
