"""Edges of the service found by hand (issue 8, item 15): HEAD /health, the bytes a discarding
cancel or a forced delete reports, and an ENV_FILE a switch could not rewrite."""
from __future__ import annotations

import httpx
import pytest

from api.testing.hubsim.faults import Fault

from ._dl import MiB, assert_error, staging, start, wait_bytes, wait_complete


def test_head_health_answers_200_without_a_token(api):
    r = httpx.head(str(api.base_url).rstrip("/") + "/health", timeout=10)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-type"].startswith("application/json")


def _staged_bytes(api) -> int:
    total = 0
    for p in staging(api).glob("*"):
        st = p.stat()
        total += min(st.st_size, st.st_blocks * 512)
    return total


def _downloading(api, sim, repo: str) -> tuple[dict, int]:
    """A 40 MB download under way (2 MB/s); returns the job and the bytes staged so far."""
    sim.add_repo(repo, {"config.json": b"{}", "model.safetensors": 40 * MiB})
    sim.set_faults(Fault(repo=repo, rate_bps=2 * MiB))
    j = start(api, repo)
    wait_bytes(api, j["job_id"], 2 * MiB)
    staged = _staged_bytes(api)
    assert staged >= 2 * MiB
    return j, staged


@pytest.mark.parametrize("pause_first", [False, True])
def test_cancel_with_discard_reports_the_bytes_it_freed(api, sim, pause_first):
    j, staged = _downloading(api, sim, f"edge/discard-{pause_first}")
    if pause_first:
        assert api.post(f"/api/jobs/{j['job_id']}/pause").json()["status"] == "paused"
    body = api.post(f"/api/jobs/{j['job_id']}/cancel", params={"discard": "true"}).json()
    assert body["status"] == "cancelled", body
    assert _staged_bytes(api) == 0, "discard leaves no partial bytes"
    assert body["result"]["discarded"] is True
    assert body["result"]["freed_bytes"] >= staged - 1 * MiB, (body["result"], staged)


def test_forced_delete_of_a_downloading_model_counts_the_partial_bytes_it_freed(api, sim):
    """A forced delete cancels the download and discards its partial bytes: those are freed too."""
    j, staged = _downloading(api, sim, "edge/delete-running")
    r = api.delete("/api/delete-model", params={"model_id": "edge/delete-running", "force": "true"})
    assert r.status_code == 200, r.text
    assert _staged_bytes(api) == 0
    assert r.json()["freed_bytes"] >= staged, (r.json(), staged)
    assert api.get(f"/api/jobs/{j['job_id']}").json()["status"] == "cancelled"


def test_switch_refuses_an_env_file_it_could_not_rewrite(api_factory, sim, tmp_path):
    repo = "edge/switch-target"
    sim.add_repo(repo, {"config.json": b"{}", "model.safetensors": 64 << 10})
    read_only = tmp_path / "read-only.env"
    read_only.write_text("DEFAULT_MODEL=org/old\n")
    read_only.chmod(0o444)
    folder = tmp_path / "env-folder"
    folder.mkdir()
    for env_file in (read_only, folder):
        api = api_factory(env_file=env_file)
        wait_complete(api, start(api, repo)["job_id"])
        body = assert_error(api.put("/api/active-model", params={"model_id": repo, "restart": "false"}),
                            503, "env_file_not_writable")
        assert str(env_file) in body["detail"]
        assert api.get("/api/jobs", params={"kind": "switch"}).json() == [], "no switch job was queued"
    assert read_only.read_text() == "DEFAULT_MODEL=org/old\n"
    assert list(folder.iterdir()) == []
    # a writable file still switches
    writable = tmp_path / "ok.env"
    writable.write_text("DEFAULT_MODEL=org/old\n")
    api = api_factory(env_file=writable)
    wait_complete(api, start(api, repo)["job_id"])
    r = api.put("/api/active-model", params={"model_id": repo, "restart": "false"})
    assert r.status_code == 202, r.text
    wait_complete(api, r.json()["job_id"])
    assert writable.read_text() == f"DEFAULT_MODEL={repo}\n"
