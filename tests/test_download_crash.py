"""kill -9 in the middle of a download: the restarted API carries on from the bytes on disk."""
from __future__ import annotations

import httpx

from api.testing.hubsim import Fault

from ._dl import MiB, sha256_file
from .conftest import API_KEY
from .servers import ApiProcess, free_port, wait_until

PART_MB = 4


def _env(tmp_path, sim) -> dict[str, str]:
    env_file = tmp_path / "box.env"
    env_file.write_text("DEFAULT_MODEL=org/none\n")
    return {
        "PROXY_API_KEY": API_KEY, "HF_ENDPOINT": sim.url, "HF_TOKEN": "",
        "MODELS_DIR": str(tmp_path / "models"), "STATE_DB": str(tmp_path / "state" / "state.db"),
        "ENV_FILE": str(env_file), "PART_SIZE_MB": str(PART_MB), "RATE_LIMIT_ENABLED": "false",
        "DOCKER_HOST": "unix:///nonexistent.sock", "DISK_RESERVE_MB": "0", "STALL_TIMEOUT": "5",
        "MAX_RETRIES": "4", "RETRY_BACKOFF_MAX": "0.5", "LOG_LEVEL": "info",
        "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1",
    }


def test_kill9_mid_download_resumes_after_restart(tmp_path, sim):
    repo, path, size = "crash/kill9", "model.safetensors", 48 * MiB
    commit = sim.add_repo(repo, {"config.json": b'{"crash": true}', path: size})
    info = sim.file_info(repo, path)
    # 8 connections at 1 MB/s each: ~6 s in all, so "about half" is easy to hit.
    sim.set_faults(Fault(repo=repo, path=path, rate_bps=1_000_000))
    env, port, log = _env(tmp_path, sim), free_port(), tmp_path / "api.log"
    headers = {"Authorization": f"Bearer {API_KEY}"}

    first = ApiProcess(env, port, log).start()
    try:
        r = httpx.post(first.url + "/api/download-model", params={"model_id": repo}, headers=headers, timeout=30)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]

        def half():
            j = httpx.get(f"{first.url}/api/jobs/{job_id}", headers=headers, timeout=10).json()
            assert j["status"] in ("queued", "downloading"), j
            return j["bytes_downloaded"] >= size // 2 and j

        before = wait_until(half, 60, message="half of the file")
        assert before["bytes_downloaded"] < size
        first.kill9()
    finally:
        first.stop()
    served_at_kill = sim.served_bytes(repo, path)
    assert served_at_kill < size, "the download finished before the kill"
    staged = tmp_path / "models" / "hub" / ".llmbox-partial" / f"{info['sha256']}.part"
    assert staged.exists(), "the partial bytes did not survive the kill"

    second = ApiProcess(env, port, log).start()
    try:
        def finished():
            j = httpx.get(f"{second.url}/api/jobs/{job_id}", headers=headers, timeout=10).json()
            return j["status"] in ("complete", "failed", "cancelled") and j

        done = wait_until(finished, 90, interval=0.1, message="the job to finish after the restart")
        assert done["status"] == "complete", done
        assert done["bytes_downloaded"] == done["bytes_total"] == size + len(b'{"crash": true}')
        assert done["attempts"] >= 2
    finally:
        second.stop()

    blob = tmp_path / "models" / "hub" / f"models--{repo.replace('/', '--')}" / "blobs" / info["sha256"]
    assert sha256_file(blob) == info["sha256"]
    link = blob.parent.parent / "snapshots" / commit / path
    assert link.resolve() == blob.resolve()
    served = sim.served_bytes(repo, path)
    assert served <= size + PART_MB * MiB, (
        f"{served - size} bytes were fetched twice (at the kill {served_at_kill} had been served)")
    assert not staged.exists()
    text = log.read_text(errors="replace")
    assert API_KEY not in text
