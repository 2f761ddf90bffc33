"""Cost must not grow with history: the list, the disk summary and a submit cost about the same
with 10 cached repos and an empty job table as with 300 repos and 200,000 finished jobs.

The big state is written directly (files in the Hugging Face layout, rows by SQLite inserts); the
API is a real uvicorn server on it. Margins are wide (a shared 2-core box): before the per-repo
facts and the job-table indexes the list took ~30x longer at 300 repos, not 3x.
"""
from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import httpx
import pytest

from api import create_app
from api.jobs.store import JobStore
from api.testing.scale import fill_cache, fill_jobs, measure, submit_repos

from .conftest import API_KEY, make_settings
from .servers import serve_in_thread

pytestmark = pytest.mark.timeout(240)
BIG_REPOS, BIG_JOBS = 300, 200_000


@contextlib.contextmanager
def _api(settings):
    """A real uvicorn API on these settings, and a client with the token."""
    with serve_in_thread(create_app(settings)) as url, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as client:
        yield client


def _run(tmp: Path, sim, repos: int, jobs: int) -> dict[str, float]:
    tmp.mkdir()
    settings = make_settings(tmp, sim, max_queue_length=100)
    ids = fill_cache(settings.hf_cache, repos)
    if jobs:
        fill_jobs(settings.state_db, jobs, ids)
    submits = submit_repos(sim, f"scale-{uuid.uuid4().hex[:6]}", 12)
    with _api(settings) as client:
        listed = client.get("/api/models").json()
        assert len(listed) == repos and all(m["status"] == "complete" and m["files"] == 12 for m in listed)
        return measure(client, sim, submits)


def test_cost_does_not_grow_with_history(tmp_path, sim):
    small = _run(tmp_path / "small", sim, 10, 0)
    big = _run(tmp_path / "big", sim, BIG_REPOS, BIG_JOBS)
    for what in ("models", "disk", "submit"):
        assert big[what] < 4 * small[what] + 60, (what, small, big)
    assert max(big.values()) < 250, big      # the goal is 100 ms; the margin is the shared box


def test_a_changed_repo_is_seen_at_once(tmp_path, sim):
    """The facts are cached by folder mtimes: a removed blob or a new snapshot file shows at once."""
    tmp_path.joinpath("c").mkdir()
    settings = make_settings(tmp_path / "c", sim)
    ids = fill_cache(settings.hf_cache, 3)
    with _api(settings) as client:
        def info(repo_id):
            return next(m for m in client.get("/api/models").json() if m["model_id"] == repo_id)

        first = info(ids[0])
        assert first["status"] == "complete" and first["files"] == 12
        folder = settings.hf_cache / ("models--" + ids[0].replace("/", "--"))
        blob = next((folder / "blobs").iterdir())
        size = blob.stat().st_size
        blob.unlink()
        after = info(ids[0])
        assert after["status"] == "partial" and after["size_bytes"] == first["size_bytes"] - size
        snap = next((folder / "snapshots").iterdir())
        (snap / "sub").mkdir()
        (snap / "sub" / "extra.txt").write_text("x")
        assert info(ids[0])["files"] == 13
        (snap / "sub" / "extra.txt").unlink()             # a change only inside a nested folder
        assert info(ids[0])["files"] == 12
        disk = client.get("/api/disk").json()
        assert disk["cache_bytes"] == sum(m["size_bytes"] for m in client.get("/api/models").json())


def test_finished_jobs_past_retention_are_pruned_at_start(tmp_path, sim):
    tmp_path.joinpath("r").mkdir()
    settings = make_settings(tmp_path / "r", sim, job_retention_days=30)
    store = JobStore(settings.state_db)
    old, recent = "2020-01-01T00:00:00.000Z", "2999-01-01T00:00:00.000Z"
    rows = {"old_done": ("complete", old), "old_failed": ("failed", old), "recent": ("complete", recent),
            "old_paused": ("paused", None)}
    for n, (name, (status, done)) in enumerate(rows.items()):
        store.insert({"job_id": f"{n:016x}", "kind": "download", "model_id": f"org/{name.replace('_', '-')}",
                      "revision": "main", "status": status, "created_at": old, "completed_at": done})
    store.close()
    with _api(settings) as client:
        left = {j["model_id"] for j in client.get("/api/jobs", params={"limit": 100}).json()}
    assert left == {"org/recent", "org/old-paused"}, left


def test_retention_zero_keeps_every_job(tmp_path, sim):
    tmp_path.joinpath("k").mkdir()
    settings = make_settings(tmp_path / "k", sim, job_retention_days=0)
    store = JobStore(settings.state_db)
    store.insert({"job_id": "0" * 16, "kind": "download", "model_id": "org/old", "revision": "main",
                  "status": "complete", "created_at": "2020-01-01T00:00:00.000Z",
                  "completed_at": "2020-01-01T00:00:00.000Z"})
    store.close()
    with _api(settings) as client:
        assert [j["model_id"] for j in client.get("/api/jobs").json()] == ["org/old"]
