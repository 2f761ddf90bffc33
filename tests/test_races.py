"""Races between a job's worker and the progress ticker, through real HTTP and a real job table.

A final status is a property of the store: no late write (a progress tick, a second finish) can
flip `complete` back to `verifying`. Many jobs run at once so that finishes land while the ticker
writes; every job must end final and stay final while the ticker keeps running.
"""
from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from api.testing.hubsim import Fault

from ._dl import FINAL, MiB, assert_error, job, start
from .servers import wait_until

pytestmark = pytest.mark.timeout(240)


def _all_final(api, ids: list[str]) -> dict[str, dict]:
    """Polls until every job is final; returns the jobs."""
    def check():
        jobs = {j: job(api, j) for j in ids}
        return all(v["status"] in FINAL for v in jobs.values()) and jobs

    try:
        return wait_until(check, 120, interval=0.25, message="every job final")
    except AssertionError:
        stuck = {j: job(api, j)["status"] for j in ids}
        raise AssertionError(f"jobs not final: {[(j, s) for j, s in stuck.items() if s not in FINAL]}") from None


def _stay_final(api, jobs: dict[str, dict], seconds: float = 3.0) -> None:
    """The ticker writes about once a second: read every job again over a few of its rounds."""
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline or rounds < 2:
        for j, before in jobs.items():
            now = job(api, j)
            assert now["status"] == before["status"], (j, before["status"], now["status"])
            assert now["completed_at"] == before["completed_at"], j
        rounds += 1


def test_sixty_jobs_end_final_and_stay_final(api_factory, sim):
    api = api_factory(max_concurrent_downloads=16, max_queue_length=64)
    tag = uuid.uuid4().hex[:6]
    repos = [f"race/r{tag}-{i}" for i in range(30)]
    for i, repo in enumerate(repos):
        # Sizes and rates spread the finishes over a few ticker rounds.
        sim.add_repo(repo, {"config.json": b'{"i": %d}' % i, "model.safetensors": (1 + i % 3) * MiB})
    sim.set_faults(*(Fault(repo=r, rate_bps=(1 + i % 4) * 1_000_000) for i, r in enumerate(repos)))

    with ThreadPoolExecutor(30) as pool:
        downloads = list(pool.map(lambda r: start(api, r)["job_id"], repos))
    done = _all_final(api, downloads)
    assert all(j["status"] == "complete" for j in done.values()), done
    _stay_final(api, done)
    sim.clear_faults()

    # Bursts of verifies: each finishes within a few ticker rounds of the others.
    verifies = []
    for burst in range(3):
        with ThreadPoolExecutor(10) as pool:
            rs = list(pool.map(lambda r: api.post("/api/models/verify", params={"model_id": r}),
                               repos[burst * 10:(burst + 1) * 10]))
        assert all(r.status_code in (200, 202) for r in rs), [r.text for r in rs]
        verifies += [r.json()["job_id"] for r in rs]
    assert len(set(verifies)) == 30
    done_v = _all_final(api, verifies)
    assert all(j["status"] == "complete" for j in done_v.values()), done_v
    _stay_final(api, {**done, **done_v})

    # Final jobs can be acted on: a stuck one would answer 409 download_in_progress or the like.
    r = api.delete("/api/delete-model", params={"model_id": repos[0]})
    assert r.status_code == 200, r.text
    assert_error(api.post(f"/api/jobs/{downloads[1]}/pause"), 409, "invalid_state")
