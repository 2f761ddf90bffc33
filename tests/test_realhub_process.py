"""TRANSFER_PROCESS=true: the byte transfers run in a child process; jobs behave the same, and the
child ends with the API."""
from __future__ import annotations

import os
from pathlib import Path

import httpx

from api import create_app
from api.testing.hubsim import Fault

from ._dl import MiB, assert_verified, start, wait_bytes, wait_complete, wait_status
from .conftest import API_KEY, make_settings
from .servers import serve_in_thread, wait_until

W = "model.safetensors"


def _transfer_children() -> list[int]:
    me, found = os.getpid(), []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me and b"api.download.remote" in cmd:
            found.append(int(d.name))
    return found


def test_downloads_pause_and_resume_through_the_transfer_process(tmp_path, sim):
    settings = make_settings(tmp_path, sim, transfer_process=True, part_size_mb=1, download_connections=2)
    repo, size = "process/model", 8 * MiB
    commit = sim.add_repo(repo, {"config.json": b'{"p": 1}', W: size})
    before = set(_transfer_children())
    with serve_in_thread(create_app(settings)) as url, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as api:
        api.settings = settings
        child = wait_until(lambda: set(_transfer_children()) - before, 60, message="the transfer process")
        sim.set_faults(Fault(repo=repo, path=W, where="cdn", rate_bps=1_000_000))
        j = start(api, repo)
        wait_bytes(api, j["job_id"], 2 * MiB, timeout=60)
        assert api.post(f"/api/jobs/{j['job_id']}/pause").json()["status"] == "paused"
        paused_at = wait_status(api, j["job_id"], "paused")["bytes_downloaded"]
        sim.clear_faults()
        assert api.post(f"/api/jobs/{j['job_id']}/resume").status_code == 200
        done = wait_complete(api, j["job_id"], timeout=60)
        assert_verified(api, sim, repo, commit, [W, "config.json"])
        assert sim.served_bytes(repo, W) <= size + paused_at // 2, "not resumed from the offsets on disk"
        assert done["result"]["connections"] >= 2
    # The API stopped: so did its transfer process.
    wait_until(lambda: not (child & set(_transfer_children())), 40, message="the transfer process to end")
