#!/usr/bin/env bats
# modelctl inspect | fit | catalog | updates and download --dry-run, against the simulator's
# model-like repos (tests/test_cli.py adds them: api/testing/hubsim/model_repos.py).

# shellcheck disable=SC2154  # $stderr is set by bats' `run --separate-stderr`
bats_require_minimum_version 1.5.0
load helpers

QWEN25=llmbox-sim/Qwen2.5-7B-Instruct
GGUF=llmbox-sim/Qwen3-8B-GGUF

setup() {
  require_env
}

@test "inspect: parameters, KV cache per token, files by kind" {
  run --separate-stderr modelctl inspect "$QWEN25" --gpu-memory-gb 24
  [ "$status" -eq 0 ]
  [[ $output == *"kv cache: 57344 bytes/token, context 32768 (config.json)"* ]]
  [[ $output == *"parameters: "* ]]
  [[ $output == *"model-00004-of-00004.safetensors  weights    safetensors"* ]]
  [[ $output == *"fit: fits  gpu 24 GiB (request)"* ]]
}

@test "fit: every GGUF variant with its verdict; --json is the API's answer" {
  run --separate-stderr modelctl fit "$GGUF" --gpu-memory-gb 24
  [ "$status" -eq 0 ]
  [[ $output == *"variant IQ4_XS: fits"* ]]
  [[ $output == *"Q8_0 "*"fits"* ]]
  run --separate-stderr modelctl --json fit "$GGUF" --variant Q5_K_M --max-model-len 4096
  [ "$status" -eq 0 ]
  [ "$(jq -r '.variant + " " + (.fit.max_model_len | tostring) + " " + (.variants | length | tostring)' <<<"$output")" = "Q5_K_M 4096 4" ]
  run --separate-stderr modelctl fit "$GGUF" --variant Q2_K
  [ "$status" -eq 3 ]
  [[ $stderr == *"variant_not_found"* ]]
}

@test "download --dry-run: the plan, nothing queued" {
  run --separate-stderr modelctl download "$GGUF" --include '*Q8_0*' --dry-run
  [ "$status" -eq 0 ]
  [[ $output == *"nothing queued"* ]]
  [[ $output == *"files: 3 "* ]]
  run --separate-stderr modelctl --json jobs --kind download
  [ "$status" -eq 0 ]
  [ "$(jq --arg m "$GGUF" '[.[] | select(.model_id == $m)] | length' <<<"$output")" = 0 ]
}

@test "catalog and updates answer (the shipped catalog's repos are not on the simulator)" {
  run --separate-stderr modelctl catalog
  [ "$status" -eq 0 ]
  [[ $output == *"qwen3-8b-q4_k_m"*"repo_not_found"* ]]
  run --separate-stderr modelctl updates
  [ "$status" -eq 0 ]
}

@test "usage errors and --help of the new commands" {
  run modelctl inspect
  [ "$status" -eq 2 ]
  [[ $output == *"inspect needs a MODEL"* ]]
  run modelctl inspect "$QWEN25" --variant Q4_K_M
  [ "$status" -eq 2 ]
  run modelctl updates extra
  [ "$status" -eq 2 ]
  for cmd in inspect fit catalog updates; do
    API_URL=http://127.0.0.1:9 run modelctl "$cmd" --help
    [ "$status" -eq 0 ] && [[ $output == "Usage: modelctl $cmd"* ]] || { echo "$cmd --help: $output"; return 1; }
  done
}
