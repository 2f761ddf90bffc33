#!/usr/bin/env bats
# scripts/modelctl and the compatibility shims against a real API and the Hub simulator.
# Run through tests/test_cli.py, which starts both and sets the environment (see helpers.bash).
# The tests share one API and run in file order: later ones use the models earlier ones fetched.

# shellcheck disable=SC2154  # $stderr is set by bats' `run --separate-stderr` (shellcheck 0.9 does not know it)
bats_require_minimum_version 1.5.0   # run --separate-stderr
load helpers

setup_file() {
  require_env
}

setup() {
  require_env
}

# ---- usage -------------------------------------------------------------------------------------

@test "help: exit 0, lists the commands and the exit codes" {
  run modelctl help
  [ "$status" -eq 0 ]
  [[ $output == *"Exit codes:"* ]]
  [[ $output == *"7  the job failed or was cancelled"* ]]
  for cmd in list download progress pause resume cancel delete verify switch containers logs health jobs; do
    [[ $output == *" $cmd "* ]] || { echo "help does not mention $cmd"; return 1; }
  done
  run modelctl --help
  [ "$status" -eq 0 ]
}

@test "usage errors exit 2" {
  run modelctl
  [ "$status" -eq 2 ]
  run modelctl frobnicate
  [ "$status" -eq 2 ]
  [[ $output == *"unknown command: frobnicate"* ]]
  run modelctl download
  [ "$status" -eq 2 ]
  [[ $output == *"needs a MODEL"* ]]
  run modelctl download "$SMALL" --bogus
  [ "$status" -eq 2 ]
  [[ $output == *"unknown option: --bogus"* ]]
  run modelctl download "$SMALL" --revision
  [ "$status" -eq 2 ]
  run modelctl pause
  [ "$status" -eq 2 ]
  run modelctl list extra
  [ "$status" -eq 2 ]
  run modelctl logs --tail lots
  [ "$status" -eq 2 ]
  run modelctl help nosuchcommand
  [ "$status" -eq 2 ]
}

@test "every subcommand has --help (exit 0, even with the API down)" {
  for cmd in list download progress pause resume cancel delete verify switch profile active containers logs disk limits health jobs help; do
    API_URL=http://127.0.0.1:9 run modelctl "$cmd" --help
    [ "$status" -eq 0 ] || { echo "$cmd --help: status $status"; return 1; }
    [[ $output == "Usage: modelctl $cmd"* ]] || { echo "$cmd --help: $output"; return 1; }
  done
  run modelctl help download
  [ "$status" -eq 0 ]
  [[ $output == *"--include GLOB"* ]]
}

# ---- reaching the API --------------------------------------------------------------------------

@test "health: ok" {
  run modelctl health
  [ "$status" -eq 0 ]
  [[ $output == "ok: $API_URL "* ]]
  run modelctl --json health
  [ "$status" -eq 0 ]
  [ "$(jq -r .status <<<"$output")" = ok ]
}

@test "an unreachable API exits 6 with a clear message" {
  API_URL=http://127.0.0.1:9 run modelctl list
  [ "$status" -eq 6 ]
  [[ $output == "error: unreachable: cannot reach the API at http://127.0.0.1:9"* ]]
  run modelctl --api-url http://127.0.0.1:9 health
  [ "$status" -eq 6 ]
}

@test "a wrong token: 401 explained on stderr, exit 5, token not echoed" {
  PROXY_API_KEY=wrong-token-d3adb33f run --separate-stderr modelctl list
  [ "$status" -eq 5 ]
  [ -z "$output" ]
  [[ $stderr == *"error: unauthorized: "* ]]
  [[ $stderr == *"HTTP 401"* ]]
  [[ $stderr != *d3adb33f* ]]
  PROXY_API_KEY="" ENV_FILE=/dev/null run modelctl jobs
  [ "$status" -eq 5 ]
  [[ $output == *"PROXY_API_KEY is not set"* ]]
}

@test "settings come from the .env file when not in the environment; it is parsed, not sourced" {
  local envf="$BATS_TEST_TMPDIR/cli.env"
  cat >"$envf" <<EOF
# written by the test
EVIL=\$(touch $BATS_TEST_TMPDIR/pwned-1)
\`touch $BATS_TEST_TMPDIR/pwned-2\`
export API_URL="$API_URL"
PROXY_API_KEY='$PROXY_API_KEY'   # a comment
DEFAULT_MODEL=org/none
EOF
  run env -u API_URL -u PROXY_API_KEY ENV_FILE="$envf" "$MODELCTL" jobs
  [ "$status" -eq 0 ]
  [ ! -e "$BATS_TEST_TMPDIR/pwned-1" ]
  [ ! -e "$BATS_TEST_TMPDIR/pwned-2" ]
  # The environment wins over the file.
  PROXY_API_KEY=wrong run env ENV_FILE="$envf" "$MODELCTL" jobs
  [ "$status" -eq 5 ]
  # No API_URL anywhere: http://127.0.0.1:API_PORT from the file.
  printf 'API_PORT=9\nPROXY_API_KEY=x\n' >"$envf"
  run env -u API_URL -u PROXY_API_KEY ENV_FILE="$envf" "$MODELCTL" jobs
  [ "$status" -eq 6 ]
  [[ $output == *"http://127.0.0.1:9"* ]]
}

# ---- download, list, progress ------------------------------------------------------------------

@test "download --wait of a small repo: exit 0, the files are in the cache" {
  run modelctl download "$SMALL" --wait
  [ "$status" -eq 0 ]
  [[ $output == *"complete: $SMALL@main"* ]]
  [[ $output != *$'\r'* ]]
  config=$(snapshot_file "$SMALL" config.json)
  [ -f "$config" ]
  [ -f "$(snapshot_file "$SMALL" model.safetensors)" ]
  modelctl --json jobs --kind download | jq -er --arg m "$SMALL" 'map(select(.model_id == $m)) | first | .job_id' \
    >"$BATS_FILE_TMPDIR/small_job"
}

@test "list shows the model: status, human size, active column" {
  run modelctl list
  [ "$status" -eq 0 ]
  [[ ${lines[0]} == "MODEL"*"STATUS"*"SIZE"*"ACTIVE" ]]
  line=$(grep -F "$SMALL " <<<"$output")
  [[ $line == *complete*"MiB"* ]]
}

@test "progress JOB shows the finished job; progress without JOB the newest download" {
  job=$(cat "$BATS_FILE_TMPDIR/small_job")
  run modelctl progress "$job"
  [ "$status" -eq 0 ]
  [[ $output == "job $job  download  $SMALL@main"* ]]
  [[ $output == *"status: complete  100%"* ]]
  run modelctl progress
  [ "$status" -eq 0 ]
  [[ $output == "job "* ]]
  run modelctl progress "$job" --watch
  [ "$status" -eq 0 ]
}

@test "--json answers are valid JSON" {
  job=$(cat "$BATS_FILE_TMPDIR/small_job")
  modelctl --json list | jq -e --arg m "$SMALL" 'type == "array" and any(.[]; .model_id == $m and .status == "complete")'
  modelctl --json jobs | jq -e 'type == "array" and length > 0'
  modelctl --json progress "$job" | jq -e --arg j "$job" '.job_id == $j and .progress == 100'
  modelctl progress "$job" --json | jq -e '.status == "complete"'   # --json anywhere
  modelctl --json disk | jq -e '.free_bytes > 0'
  modelctl --json active | jq -e 'has("model_id")'
  modelctl --json download "$SMALL" --wait | jq -e '.status == "complete"'
  # An error body is JSON on stdout too, the message on stderr.
  run --separate-stderr modelctl --json progress 0000000000000000
  [ "$status" -eq 3 ]
  jq -e '.error == "job_not_found" and .status == 404' <<<"$output"
  [[ $stderr == "error: job_not_found: "* ]]
}

@test "--wait without a terminal: plain lines, one per change, no carriage returns" {
  run --separate-stderr modelctl download "$MEDIUM" --wait
  [ "$status" -eq 0 ]
  [[ $output != *$'\r'* ]]
  [[ $output != *$'\e'* ]]
  progress_lines=$(grep -cE '^(queued|downloading|verifying) +[0-9]+%' <<<"$output")
  [ "$progress_lines" -ge 2 ]
  [ "$progress_lines" -le 12 ]   # at most about one a second over a few seconds
  [[ ${lines[-1]} == "complete: $MEDIUM@main"* ]]
  # percentages never go down
  grep -oE '^[a-z]+ +[0-9]+%' <<<"$output" | grep -oE '[0-9]+' | sort -n -c
}

@test "--wait on a terminal: one line redrawn with \\r, a bar, bytes" {
  command -v script >/dev/null || skip "script(1) is not installed"
  # script(1) gives modelctl a pseudo-terminal.
  run script -qec "$MODELCTL verify $SMALL --wait" /dev/null
  [ "$status" -eq 0 ]
  [[ $output == *$'\r'"complete ["*"] 100%"* ]]
  [[ $output == *"verified $SMALL"* ]]
}

# ---- pause, resume, cancel -----------------------------------------------------------------------

@test "pause, resume and cancel a slowed download" {
  job=$(modelctl --json download "$SLOW" | jq -r .job_id)
  [[ $job =~ ^[0-9a-f]{16}$ ]]
  run modelctl pause "$job"
  [ "$status" -eq 0 ]
  [[ $output == "job $job: paused"* ]]
  [ "$(job_status "$job")" = paused ]
  run modelctl pause "$job"
  [ "$status" -eq 4 ]
  [[ $output == *"error: invalid_state: "* ]]
  run modelctl resume "$job"
  [ "$status" -eq 0 ]
  wait_until 20 job_in "$job" downloading
  wait_until 20 job_has_bytes "$job"
  run modelctl cancel "$job" --discard
  [ "$status" -eq 0 ]
  [[ $output == "job $job: cancelled"* ]]
  [[ $output == *"discarded"* ]]
  run modelctl cancel "$job"
  [ "$status" -eq 4 ]
  run modelctl progress "$job" --watch
  [ "$status" -eq 7 ]
  [[ $output == *"error: cancelled: "* ]]
}

@test "download --wait exits 7 when the job is cancelled; the token is never in ps output" {
  out="$BATS_TEST_TMPDIR/out" err="$BATS_TEST_TMPDIR/err"
  MODELCTL_POLL_INTERVAL=0.2 "$MODELCTL" download "$SLOW" --wait >"$out" 2>"$err" 3>&- &
  pid=$!
  wait_until 20 active_job_of "$SLOW"
  job=$(active_job_of "$SLOW")
  # Sample every process's arguments while modelctl polls with curl (compared in bash: a grep
  # would show the token in its own arguments).
  for _ in $(seq 30); do
    args=$(all_args)
    if [[ $args == *"$PROXY_API_KEY"* ]]; then
      echo "the token is visible in ps:"
      grep -F -- "${PROXY_API_KEY:0:12}" <<<"$args"
      kill "$pid"
      return 1
    fi
  done
  modelctl cancel "$job"
  rc=0
  wait "$pid" || rc=$?
  [ "$rc" -eq 7 ]
  grep -q "^error: cancelled: job $job was cancelled" "$err"
  refute grep -qF -- "$PROXY_API_KEY" "$out" "$err"
}

@test "curl never gets the token as an argument (a logging curl on PATH)" {
  local bin="$BATS_TEST_TMPDIR/bin" log="$BATS_TEST_TMPDIR/curl-args"
  local real
  real=$(command -v curl)
  mkdir -p "$bin"
  printf '#!/usr/bin/env bash\nprintf "%%s\\n" "$*" >>"%s"\nexec "%s" "$@"\n' "$log" "$real" >"$bin/curl"
  chmod +x "$bin/curl"
  job=$(cat "$BATS_FILE_TMPDIR/small_job")
  PATH="$bin:$PATH" run modelctl list
  [ "$status" -eq 0 ]
  PATH="$bin:$PATH" run modelctl --json progress "$job" --watch
  [ "$status" -eq 0 ]
  PATH="$bin:$PATH" run modelctl --json download "$SMALL"
  [ "$status" -eq 0 ]
  [[ $output != *"$PROXY_API_KEY"* ]]
  [ "$(wc -l <"$log")" -ge 3 ]
  grep -q -- "--config -" "$log"
  refute grep -qF -- "$PROXY_API_KEY" "$log"
  refute grep -qi -- "authorization" "$log"
}

# ---- errors by status ----------------------------------------------------------------------------

@test "404 exits 3, 422 exits 5" {
  run modelctl progress 0123456789abcdef
  [ "$status" -eq 3 ]
  [[ $output == "error: job_not_found: "* ]]
  run modelctl download "$MISSING"
  [ "$status" -eq 3 ]
  [[ $output == "error: repo_not_found: "* ]]
  run modelctl verify "$MISSING"
  [ "$status" -eq 3 ]
  run modelctl download "not a model id"
  [ "$status" -eq 5 ]
  [[ $output == "error: invalid_"*": "* ]]   # invalid_model_id or invalid_input
  run modelctl progress not-a-job-id
  [ "$status" -eq 5 ]
  run modelctl jobs --status sleeping
  [ "$status" -eq 5 ]
}

# ---- verify, switch, delete ------------------------------------------------------------------------

@test "verify --wait: exit 0 with the files checked" {
  run modelctl verify "$SMALL" --wait
  [ "$status" -eq 0 ]
  [[ ${lines[-1]} == "verified $SMALL: 3 files"* ]]
  run modelctl verify "$SMALL"
  [ "$status" -eq 0 ]
  [[ $output == "verify job "*" started for $SMALL"* ]]
}

@test "switch --no-restart --wait rewrites DEFAULT_MODEL in the .env file" {
  run modelctl switch "$SMALL" --no-restart --wait
  [ "$status" -eq 0 ]
  [[ ${lines[-1]} == "active model: $SMALL (was "* ]]
  grep -qx "DEFAULT_MODEL=$SMALL" "$ENV_FILE"
  run modelctl active
  [[ ${lines[0]} == "active model: $SMALL" ]]
  run modelctl list
  line=$(grep -F "$SMALL " <<<"$output")
  [[ $line == *"*" ]]
}

@test "switch conflicts: a model not downloaded exits 4; a restart without Docker exits 6" {
  run modelctl switch "$MISSING" --no-restart
  [ "$status" -eq 4 ]
  [[ $output == "error: model_not_downloaded: "* ]]
  if ! modelctl --json health | jq -e '.docker == "ok"' >/dev/null; then
    run modelctl switch "$SMALL" --wait
    [ "$status" -eq 6 ]
    [[ $output == "error: docker_unavailable: "* ]]
  fi
  grep -qx "DEFAULT_MODEL=$SMALL" "$ENV_FILE"
}

@test "delete: the active model exits 4; delete exits 0, again 3" {
  run modelctl delete "$SMALL"
  [ "$status" -eq 4 ]
  [[ $output == "error: model_active: "* ]]
  run modelctl download "$SMALL2" --wait
  [ "$status" -eq 0 ]
  run modelctl switch "$SMALL2" --no-restart --wait
  [ "$status" -eq 0 ]
  run modelctl delete "$SMALL"
  [ "$status" -eq 0 ]
  [[ $output == "deleted $SMALL (freed "* ]]
  [ -z "$(snapshot_file "$SMALL" config.json)" ]
  run modelctl delete "$SMALL"
  [ "$status" -eq 3 ]
  [[ $output == "error: model_not_found: "* ]]
  run modelctl list
  [[ $output != *"$SMALL "* ]]
}

@test "verify --wait of a corrupted model exits 7" {
  blob=$(find "$MODELS_DIR/hub/models--${SMALL2//\//--}/blobs" -type f -size +100k | head -n 1)
  [ -f "$blob" ]
  chmod u+w "$blob"
  printf 'corrupted' | dd of="$blob" bs=1 seek=4096 conv=notrunc status=none
  run --separate-stderr modelctl verify "$SMALL2" --wait
  [ "$status" -eq 7 ]
  [[ $stderr == *"error: integrity_error: "* ]]
}

# ---- compatibility shims ---------------------------------------------------------------------------

@test "shims: download_model.sh and delete_model.sh keep working, same exit codes" {
  run --separate-stderr "$SHIMS/download_model.sh" "$SHIMREPO"
  [ "$status" -eq 0 ]
  [[ $stderr == "note: download_model.sh is a compatibility shim"* ]]
  [[ $output == *"complete: $SHIMREPO@main"* ]]
  [ -f "$(snapshot_file "$SHIMREPO" config.json)" ]
  run --separate-stderr "$SHIMS/delete_model.sh" "$SHIMREPO"
  [ "$status" -eq 0 ]
  [[ $stderr == "note: delete_model.sh is a compatibility shim"* ]]
  [[ $output == "deleted $SHIMREPO"* ]]
  run "$SHIMS/delete_model.sh" "$SHIMREPO"
  [ "$status" -eq 3 ]
  run "$SHIMS/download_model.sh" "$MISSING"
  [ "$status" -eq 3 ]
  run "$SHIMS/download_model.sh"
  [ "$status" -eq 2 ]
  run "$SHIMS/delete_model.sh"
  [ "$status" -eq 2 ]
}

@test "limits: show, change at run time, refuse a bad rate" {
  run modelctl limits
  [ "$status" -eq 0 ]
  [[ $output == *"bandwidth: unlimited"* && $output == *"set by: the settings"* ]]
  run modelctl limits --bandwidth 20MB/s --concurrency 3
  [ "$status" -eq 0 ]
  [[ $output == *"bandwidth: 20 MB/s"* && $output == *"concurrent downloads: 3"* && $output == *"set by: the API"* ]]
  modelctl --json limits | jq -e '.bandwidth_bps == 20000000 and .source == "api"'
  run --separate-stderr modelctl limits --bandwidth fast
  [ "$status" -eq 5 ]
  [[ $stderr == "error: invalid_"* ]]
  run modelctl limits --bandwidth unlimited --concurrency 2
  [ "$status" -eq 0 ]
  [[ $output == *"bandwidth: unlimited"* ]]
}
