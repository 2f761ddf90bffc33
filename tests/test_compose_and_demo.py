"""docker-compose.yml as Debian's docker-compose reads it, and the offline demo end to end."""
from __future__ import annotations

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
    vllm = services["vllm"]
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "healthcheck" in vllm and "DEFAULT_MODEL" in " ".join(vllm["command"])
    assert vllm["environment"]["DEFAULT_MODEL"] == "Qwen/Qwen2.5-0.5B-Instruct"   # from .env
    assert services["n8n"].get("profiles") == ["n8n"]


def test_offline_demo_downloads_and_verifies(tmp_path):
    """`make demo --once`: simulator + API + a full download and verify, all on 127.0.0.1."""
    out = subprocess.run([sys.executable, "-m", "api.testing.demo", "--dir", str(tmp_path), "--port",
                          str(free_port()), "--once"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "download: complete  verify: complete" in out.stdout
    blobs = list((tmp_path / "models" / "hub" / "models--demo-org--tiny-chat-model" / "blobs").iterdir())
    assert len(blobs) == 4
