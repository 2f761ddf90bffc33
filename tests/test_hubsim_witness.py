"""Fidelity witnesses: the unmodified `hf download` CLI (huggingface_hub 2.4.0) downloads from the
simulator's default, real-Hub-shaped protocol, over HTTP and over HTTPS with the local CA."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.testing.hubsim import HubSim

MiB = 1024 * 1024
REPO = "witness/model"
FILES: dict[str, bytes | int] = {
    "config.json": b'{"model_type": "witness"}\n',
    "tokenizer/vocab.txt": 5000,
    "empty.txt": b"",
    "model.safetensors": 11 * MiB,
    "sub/model-q4.gguf": 2 * MiB,
}


def hf_download(sim: HubSim, tmp_path: Path, **env: str) -> Path:
    """Run `hf download` in a subprocess; return the snapshot folder it filled."""
    cache = tmp_path / "cache"
    out = subprocess.run(
        [str(Path(sys.executable).with_name("hf")), "download", REPO, "--cache-dir", str(cache)],
        env={**os.environ, "HF_ENDPOINT": sim.url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
             "HF_HOME": str(tmp_path / "home"), "HF_TOKEN": "", **env},
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return cache / "models--witness--model" / "snapshots" / sim.store.get(REPO).refs["main"]


def assert_same_bytes(sim: HubSim, folder: Path) -> None:
    revision = sim.store.get(REPO).resolve("main")
    for path in FILES:
        assert (folder / path).read_bytes() == revision.files[path].disk_path.read_bytes(), path


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_hf_download_cli_against_the_default_simulator(tmp_path, tls):
    with HubSim(tmp_path / "root", tls=tls) as sim:
        sim.add_repo(REPO, FILES)
        folder = hf_download(sim, tmp_path, **({"SSL_CERT_FILE": sim.ca_bundle} if tls else {}))
        assert_same_bytes(sim, folder)
        # It really went the real Hub's way: a 307 to the resolve cache for small files, a 302
        # to the signed CDN for LFS files, and (like every official client) no HEAD on the CDN.
        seen = {(e["role"], e["path"], e["status"]) for e in sim.request_log()}
        assert ("hub", "config.json", 307) in seen and ("hub", "config.json", 200) in seen
        assert ("hub", "model.safetensors", 302) in seen and ("cdn", "model.safetensors", 200) in seen
        assert ("hub", "empty.txt", 200) in seen and ("hub", "empty.txt", 307) not in seen
        assert sum(sim.cdn_head_count(REPO, p) for p in FILES) == 0
        assert sim.url.startswith("https://" if tls else "http://")
