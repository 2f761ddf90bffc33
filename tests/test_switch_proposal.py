"""A switch to a model without a serve profile proposes one from the fit planner (SWITCH_PROPOSE_PROFILE),
from the cached files only: through real HTTP, a REAL Docker engine running the fake vLLM with
docker-compose.yml's command (it serves its arguments on /args), and nvidia-smi in a container."""
from __future__ import annotations

import json

import pytest
import yaml

from api import envfile

from .test_gpu_docker import gpu_container  # noqa: F401 - a fixture: nvidia-smi lists two 24564 MiB GPUs
from .test_models_api import download, wait_job
from .test_serve_profiles import get, served, uid_repo, vbox  # noqa: F401 - vbox is a fixture

try:
    from tests import docker_support as ds
except ImportError:  # pragma: no cover
    import docker_support as ds

pytestmark = pytest.mark.timeout(120)
MiB, GiB = 1 << 20, 1 << 30
WEIGHTS = 2 * MiB


def files(config: dict) -> dict:
    return {"config.json": json.dumps(config).encode(), "model.safetensors": WEIGHTS}


# 32 layers x 8 KV heads x 128 dims x bf16: 128 KiB of KV cache per token, 16 GiB at 131072 tokens.
LONG = {"model_type": "llama", "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "hidden_size": 4096, "torch_dtype": "bfloat16", "max_position_embeddings": 131072}


def largest_context(gpu_bytes: int, gpus: int, kv_per_token: int) -> int:
    """docs/choosing-a-variant.md's sums by hand: 0.9 of each GPU, 1024 MiB overhead per GPU, in 16-token blocks."""
    room = int(gpu_bytes * 0.9) * gpus - 1024 * MiB * gpus - WEIGHTS
    return room // kv_per_token // 16 * 16


def test_switch_proposes_max_model_len_and_a_profile_wins(vbox, sim):
    api = vbox.start(gpu_memory_gb=2)
    long, kept = uid_repo("long"), uid_repo("kept")
    download(api, sim, long, files(LONG))
    download(api, sim, kept, files(LONG))
    profiles_before = api.settings.serve_profiles_file.read_bytes() \
        if api.settings.serve_profiles_file.exists() else None
    vbox.run(kept, api.settings.models_dir)
    ds.wait_healthy(vbox.name, 30)

    expected = largest_context(2 * GiB, 1, 2 * 32 * 8 * 128 * 2)
    assert expected == 6528
    sw = wait_job(api, api.put("/api/active-model", params={"model_id": long}).json()["job_id"], 60)
    assert sw["status"] == "complete", sw
    args = get(vbox.port, "/args").json()
    assert args[:5] == ["serve", long, "--served-model-name", "chat", long]
    assert args[5:] == ["--max-model-len", str(expected), "--host", "0.0.0.0", "--port", str(vbox.port)]
    proposed = sw["result"]["proposed_profile"]
    assert proposed["args"] == {"max-model-len": expected}
    assert f"max-model-len {expected}, the largest context that fits (of 131072)" in proposed["reason"]
    step = next(s for s in sw["result"]["steps"] if s["step"] == "profile_proposed")
    assert step["args"] == {"max-model-len": expected}
    assert [s["step"] for s in sw["result"]["steps"]].index("profile_proposed") == 0
    assert sw["result"]["inference_args"] == f"--max-model-len {expected}"
    # Applied to this switch only: the profiles file is untouched, the API still reports no profile.
    after = api.settings.serve_profiles_file.read_bytes() if api.settings.serve_profiles_file.exists() else None
    assert after == profiles_before
    assert api.get("/api/models/profile", params={"model_id": long}).json()["args"] == {}

    # A model with a profile keeps its profile: nothing is proposed.
    assert api.put("/api/models/profile", params={"model_id": kept},
                   json={"args": {"max-model-len": 4096}}).status_code == 200
    sw = wait_job(api, api.put("/api/active-model", params={"model_id": kept}).json()["job_id"], 60)
    assert sw["status"] == "complete", sw
    assert served(vbox.port) == ["chat", kept]
    assert get(vbox.port, "/args").json()[5:] == ["--max-model-len", "4096", "--host", "0.0.0.0",
                                                  "--port", str(vbox.port)]
    assert sw["result"]["proposed_profile"] is None
    assert "profile_proposed" not in [s["step"] for s in sw["result"]["steps"]]
    assert yaml.safe_load(api.settings.serve_profiles_file.read_text())["profiles"] == {kept: {"max-model-len": 4096}}


def test_two_gpus_from_nvidia_smi_propose_tensor_parallel(api_factory, sim, gpu_container):  # noqa: F811
    """96 layers x 64 KV heads x 256 dims x fp32: 12 MiB of KV cache per token. One 24564 MiB card holds fewer than
    2048 tokens (does_not_fit); two hold more: tensor-parallel-size 2 and the context that fits."""
    api = api_factory(docker_host=None, inference_container=gpu_container, managed_containers=gpu_container)
    huge = uid_repo("huge")
    download(api, sim, huge, files({**LONG, "num_hidden_layers": 96, "num_attention_heads": 64,
                                    "num_key_value_heads": 64, "head_dim": 256, "torch_dtype": "float32"}))
    per_token = 2 * 96 * 64 * 256 * 4
    assert largest_context(24564 * MiB, 1, per_token) < 2048
    expected = largest_context(24564 * MiB, 2, per_token)
    sw = wait_job(api, api.put("/api/active-model", params={"model_id": huge, "restart": "false"}).json()["job_id"])
    assert sw["status"] == "complete", sw
    assert sw["result"]["proposed_profile"]["args"] == {"max-model-len": expected, "tensor-parallel-size": 2}
    assert "over 2 of the 2 GPUs" in sw["result"]["proposed_profile"]["reason"]
    assert envfile.read_value(api.settings.env_file, "INFERENCE_ARGS") == \
        f"--max-model-len {expected} --tensor-parallel-size 2"


@pytest.mark.parametrize("settings", [
    {"gpu_memory_gb": 2, "switch_propose_profile": False},   # switched off
    {"docker_host": "tcp://127.0.0.1:9"},                    # GPU unknown: no setting, no NVML, no Docker
    {"gpu_memory_gb": 80},                                   # 16 GiB of KV cache fit at the full context
], ids=["switched_off", "gpu_unknown", "fits"])
def test_nothing_proposed_when_switched_off_unknown_or_fitting(api_factory, sim, settings):
    api = api_factory(**settings)
    model = uid_repo("none")
    download(api, sim, model, files(LONG))
    sw = wait_job(api, api.put("/api/active-model", params={"model_id": model, "restart": "false"}).json()["job_id"])
    assert sw["status"] == "complete", sw
    assert sw["result"]["proposed_profile"] is None, sw["result"]
    assert sw["result"]["inference_args"] == ""
    assert envfile.read_value(api.settings.env_file) == model
    assert not envfile.read_value(api.settings.env_file, "INFERENCE_ARGS")


def test_a_gguf_model_is_planned_from_its_cached_header(api_factory, sim):
    """No config.json: the GGUF header read from the cache gives the architecture."""
    from api.testing.hubsim.model_repos import gguf_bytes
    meta = {"context_length": 131072, "block_count": 32, "embedding_length": 4096, "attention.head_count": 32,
            "attention.head_count_kv": 8}
    body = gguf_bytes("llama", meta, "Q4_K_M", 1 * MiB)
    api = api_factory(gpu_memory_gb=2)
    model = uid_repo("gguf")
    download(api, sim, model, {"model-Q4_K_M.gguf": body})
    room = int(2 * GiB * 0.9) - 1024 * MiB - len(body)
    expected = room // (2 * 32 * 8 * 128 * 2) // 16 * 16
    # The one variant cached: the planner's sizing of the cached repo is the variant's.
    sw = wait_job(api, api.put("/api/active-model", params={"model_id": model, "variant": "Q4_K_M",
                                                            "restart": "false"}).json()["job_id"])
    assert sw["status"] == "complete", sw
    assert sw["result"]["proposed_profile"]["args"] == {"max-model-len": expected}
    assert envfile.read_value(api.settings.env_file, "INFERENCE_ARGS") == f"--max-model-len {expected}"
