#!/usr/bin/env bats
# modelctl profile --variant and switch --variant against the simulator's GGUF repo
# (api/testing/hubsim/model_repos.py: single-file Q4_K_M and Q5_K_M, Q8_0 split in three parts).
# Runs after modelctl.bats (file order): it downloads the GGUF repo that inspect.bats expects absent.

bats_require_minimum_version 1.5.0
load helpers

GGUF=llmbox-sim/Qwen3-8B-GGUF

setup() {
  require_env
}

@test "profile --variant: its own key, else the repo's; --set/--unset keep the rest; refusals exit 5" {
  run modelctl profile "$GGUF" --set max-model-len=4096
  [ "$status" -eq 0 ]
  [[ ${lines[0]} == "profile: $GGUF" ]]
  run modelctl profile "$GGUF" --variant Q4_K_M
  [ "$status" -eq 0 ]
  [[ ${lines[0]} == "profile: $GGUF (the repo profile: the variant has none)" ]]
  [[ ${lines[1]} == "flags: --max-model-len 4096" ]]
  run modelctl profile "$GGUF" --variant Q4_K_M --set "tokenizer=$SMALL2" --set enforce-eager=true \
    --set --max-model-len=8192
  [ "$status" -eq 0 ]
  [[ ${lines[0]} == "profile: $GGUF:Q4_K_M" ]]
  [[ ${lines[1]} == "flags: --enforce-eager --max-model-len 8192 --tokenizer $SMALL2" ]]
  [[ ${lines[2]} == "served as: "*", $GGUF" ]]
  run modelctl profile "$GGUF" --variant Q4_K_M --unset enforce-eager
  [ "$status" -eq 0 ]
  [[ ${lines[1]} == "flags: --max-model-len 8192 --tokenizer $SMALL2" ]]
  run modelctl --json profile "$GGUF"
  [ "$(jq -c .args <<<"$output")" = '{"max-model-len":4096}' ]

  run modelctl profile "$GGUF" --variant 'Q4;id'
  [ "$status" -eq 5 ]
  [[ $output == "error: invalid_variant: "* ]]
  run modelctl profile "$GGUF" --variant Q4_K_M --set tokenizer=/etc/passwd
  [ "$status" -eq 5 ]
  [[ $output == "error: invalid_profile: "* ]]
  run modelctl profile "$GGUF" --set max-model-len
  [ "$status" -eq 2 ]
}

@test "switch --variant: .env names the variant, active shows it, a plain switch clears it" {
  run modelctl download "$SMALL2" --wait   # the variant profile's tokenizer: in the cache too
  [ "$status" -eq 0 ]
  run modelctl switch "$GGUF" --variant Q4_K_M --no-restart
  [ "$status" -eq 4 ]
  [[ $output == "error: model_not_downloaded: "* ]]
  run modelctl download "$GGUF" --include 'Qwen3-8B-Q4_K_M.gguf' --include '*Q8_0*' --wait
  [ "$status" -eq 0 ]

  run modelctl switch "$GGUF" --variant Q5_K_M --no-restart
  [ "$status" -eq 4 ]
  [[ $output == "error: variant_not_downloaded: "* ]]
  run modelctl switch "$GGUF" --variant Q8_0 --no-restart
  [ "$status" -eq 4 ]
  [[ $output == "error: variant_multi_file: "* ]]

  run modelctl switch "$GGUF" --variant Q4_K_M --no-restart --wait
  [ "$status" -eq 0 ]
  [[ ${lines[-1]} == "active model: $GGUF:Q4_K_M (was "* ]]
  grep -qx "DEFAULT_MODEL=$GGUF" "$ENV_FILE"
  grep -qx "DEFAULT_MODEL_VARIANT=Q4_K_M" "$ENV_FILE"
  grep -q "^INFERENCE_ARGS=.*--tokenizer $SMALL2" "$ENV_FILE"
  run modelctl active
  [[ ${lines[0]} == "active model: $GGUF (variant Q4_K_M)" ]]

  run modelctl switch "$SMALL2" --no-restart --wait
  [ "$status" -eq 0 ]
  [[ ${lines[-1]} == "active model: $SMALL2 (was $GGUF:Q4_K_M)" ]]
  grep -qx "DEFAULT_MODEL_VARIANT=" "$ENV_FILE"
  run modelctl active
  [[ ${lines[0]} == "active model: $SMALL2" ]]
}
