# Shared by tests/bats/*.bats. The environment comes from tests/test_cli.py (or a person):
#   API_URL, PROXY_API_KEY   a running API (pointed at the Hub simulator)
#   MODELS_DIR               the API's MODELS_DIR (the HF cache is MODELS_DIR/hub)
#   ENV_FILE                 the API's .env file (DEFAULT_MODEL is rewritten there)
# and the simulator holds the repos named below (test_cli.py adds them; SLOW and MEDIUM are
# rate-limited there).
# shellcheck shell=bash

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
export MODELCTL="$ROOT/scripts/modelctl"
export SHIMS="$ROOT/scripts/management"
export SMALL=cli-org/small        # a few small files, fast
export SMALL2=cli-org/small2      # the same, to switch to
export MEDIUM=cli-org/medium      # ~3 MiB at ~1 MiB/s: a few seconds of progress
export SLOW=cli-org/slow          # 16 MiB, very slow: for pause/resume/cancel
export SHIMREPO=cli-org/shim      # for the compatibility shims
export MISSING=cli-org/not-on-the-hub

require_env() {
  local v
  for v in API_URL PROXY_API_KEY MODELS_DIR ENV_FILE; do
    if [[ -z ${!v:-} ]]; then
      echo "tests/bats needs $v (run them through tests/test_cli.py)" >&2
      return 1
    fi
  done
}

modelctl() { "$MODELCTL" "$@"; }

# refute COMMAND...: fail when COMMAND succeeds (a bare `! cmd` never fails a bats test).
refute() {
  if "$@"; then
    echo "expected to fail: $*" >&2
    return 1
  fi
}

# wait_until TIMEOUT_SECONDS COMMAND...: poll COMMAND until it succeeds, fail after the deadline.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    if ((SECONDS >= deadline)); then
      echo "timed out waiting for: $*" >&2
      return 1
    fi
    sleep 0.1
  done
}

job_status() { "$MODELCTL" --json progress "$1" | jq -r .status; }

job_in() {  # job_in JOB STATUS...: the job's status is one of STATUS
  local status s
  status=$(job_status "$1") || return 1
  shift
  for s in "$@"; do [[ $status == "$s" ]] && return 0; done
  return 1
}

bytes_of() { "$MODELCTL" --json progress "$1" | jq -r .bytes_downloaded; }

job_has_bytes() { (( $(bytes_of "$1") > 0 )); }

# The newest download job of a model whose status is one of the active ones; prints its id.
active_job_of() {
  "$MODELCTL" --json jobs --kind download | jq -er --arg m "$1" \
    'map(select(.model_id == $m and (.status | IN("queued", "downloading", "verifying", "paused"))))
     | first | .job_id'
}

snapshot_file() {  # snapshot_file MODEL PATH: the path of PATH in MODEL's (only) snapshot
  local folder="$MODELS_DIR/hub/models--${1//\//--}"
  compgen -G "$folder/snapshots/*/$2"
}

# Processes' command lines as ps shows them, for every process of the machine.
all_args() { ps -eo args= 2>/dev/null; }
