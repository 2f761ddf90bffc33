"""Limits on jobs, through real HTTP: the queue limit holds on resume, verifies are deduplicated and
bounded, a stalled Hub cannot hold up the read routes, and a request for other files is never a
silent join of a running filtered job."""
from __future__ import annotations

import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from api.testing.hubsim import Fault

from ._dl import FINAL, MiB, assert_error, job, repo_dir, start, wait_complete, wait_status
from .servers import wait_until

pytestmark = pytest.mark.timeout(180)


def _tag() -> str:
    return uuid.uuid4().hex[:6]


# --------------------------------------------------------------------------- item 9: resume and the queue
def test_resume_does_not_requeue_past_the_queue_limit(api_factory, sim):
    api = api_factory(max_concurrent_downloads=1, max_queue_length=2)
    t = _tag()
    a, b, c, d = (f"lim/q{t}-{x}" for x in "abcd")
    sim.add_repo(a, {"model.safetensors": 8 * MiB})
    for r in (b, c, d):
        sim.add_repo(r, {"config.json": b'{"r": "%s"}' % r.encode()})
    sim.set_faults(Fault(repo=a, rate_bps=500_000))

    ja = start(api, a)
    jb, jc = start(api, b), start(api, c)
    assert jb["status"] == jc["status"] == "queued"
    assert_error(api.post("/api/download-model", params={"model_id": d}), 429, "queue_full")

    assert api.post(f"/api/jobs/{jb['job_id']}/pause").json()["status"] == "paused"
    jd = start(api, d)                       # the paused job's place in the queue is taken
    assert jd["status"] == "queued"
    r = api.post(f"/api/jobs/{jb['job_id']}/resume")
    assert_error(r, 429, "queue_full")
    assert int(r.headers["Retry-After"]) > 0
    assert job(api, jb["job_id"])["status"] == "paused"
    queued = api.get("/api/jobs", params={"status": "queued", "kind": "download"}).json()
    assert len(queued) == 2, queued

    sim.clear_faults()
    for j in (ja, jc, jd):
        wait_complete(api, j["job_id"])
    assert api.post(f"/api/jobs/{jb['job_id']}/resume").status_code == 200   # room again
    wait_complete(api, jb["job_id"])


# --------------------------------------------------------------------------- item 10: verify jobs
def _cached(api, sim, repos: list[str], size: int) -> None:
    for r in repos:
        sim.add_repo(r, {"config.json": b'{"v": "%s"}' % r.encode(), "model.safetensors": size})
    ids = [start(api, r)["job_id"] for r in repos]
    for j in ids:
        wait_complete(api, j)


def _windows_do_not_overlap(jobs: list[dict], slack: float = 0.0) -> None:
    def t(iso: str) -> float:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    spans = sorted((t(j["started_at"]), t(j["completed_at"]), j["job_id"]) for j in jobs)
    for (s1, e1, j1), (s2, e2, j2) in zip(spans, spans[1:]):
        assert s2 >= e1 - slack, f"{j2} started at {s2} while {j1} ran until {e1}"


def test_a_second_verify_of_a_model_joins_the_running_one(api_factory, sim):
    api = api_factory()
    repo = f"lim/v{_tag()}"
    _cached(api, sim, [repo], 48 * MiB)
    with ThreadPoolExecutor(10) as pool:
        rs = list(pool.map(lambda _: api.post("/api/models/verify", params={"model_id": repo}), range(10)))
    assert all(r.status_code in (200, 202) for r in rs), [r.text for r in rs]
    ids = {r.json()["job_id"] for r in rs}
    assert sum(r.status_code == 202 for r in rs) == len(ids)     # 202 created, 200 joined
    done = [wait_status(api, j) for j in ids]
    assert all(j["status"] == "complete" for j in done), done
    # Never two verifies of one model at once: a new job only after the previous one ended.
    _windows_do_not_overlap(done)


def test_verifies_share_a_bounded_pool(api_factory, sim):
    api = api_factory(max_concurrent_verifies=1)
    t = _tag()
    repos = [f"lim/p{t}-{i}" for i in range(3)]
    _cached(api, sim, repos, 48 * MiB)
    with ThreadPoolExecutor(3) as pool:
        rs = list(pool.map(lambda r: api.post("/api/models/verify", params={"model_id": r}), repos))
    assert [r.status_code for r in rs] == [202] * 3, [r.text for r in rs]
    done = [wait_status(api, r.json()["job_id"]) for r in rs]
    assert all(j["status"] == "complete" and j["result"]["ok"] for j in done), done
    # One hashing at a time; the others waited, status queued. The slot is handed on just before
    # the previous job writes its final row: a few ms of slack (one file takes ~100 ms to hash).
    _windows_do_not_overlap(done, slack=0.03)


# --------------------------------------------------------------------------- item 11: a stalled Hub
def test_a_stalled_hub_does_not_hold_up_the_read_routes(api_factory, sim):
    timeout = 1.0
    api = api_factory(hub_submit_timeout=timeout, hub_submit_workers=2, max_queue_length=200,
                      max_concurrent_downloads=1)
    t = _tag()
    repos = [f"lim/s{t}-{i}" for i in range(45)]
    for r in repos:
        sim.add_repo(r, {"config.json": b'{"s": "%s"}' % r.encode()})
    stall = 5.0
    sim.set_faults(Fault(on="api", stall_after=0, stall_seconds=stall))

    def submit(repo: str):
        t0 = time.monotonic()
        r = api.post("/api/download-model", params={"model_id": repo})
        return r, time.monotonic() - t0

    with ThreadPoolExecutor(45) as pool:
        futures = [pool.submit(submit, r) for r in repos]
        reads = []
        for _ in range(8):
            t0 = time.monotonic()
            r = api.get("/api/models")
            reads.append(time.monotonic() - t0)
            assert r.status_code == 200, r.text
            t0 = time.monotonic()
            assert api.get("/api/disk").status_code == 200
            reads.append(time.monotonic() - t0)
        answers = [f.result() for f in futures]
    # The stall is 5 s; the margin is for a shared box accepting 45 connections at once.
    assert max(reads) < 2.5 and statistics.median(reads) < 0.5, reads
    for r, took in answers:
        assert r.status_code == 202 and r.json()["status"] in ("queued", "downloading"), r.text
        assert took < stall - 1, took                    # the deadline, not the stall, bounds a submit
    sim.clear_faults()


def test_a_hub_that_never_answers_fails_the_job_instead_of_hanging(api_factory, sim):
    """Hub calls carry STALL_TIMEOUT: a planning worker gives up (hub_unreachable) in bounded time."""
    api = api_factory(hub_submit_timeout=0.5, stall_timeout=1.0, max_retries=1, retry_backoff_max=0.2)
    repo = f"lim/n{_tag()}"
    sim.add_repo(repo, {"config.json": b"{}"})
    sim.set_faults(Fault(on="api", stall_after=0, stall_seconds=30))
    j = start(api, repo)
    done = wait_status(api, j["job_id"], timeout=20)
    assert done["status"] == "failed" and done["error_code"] == "hub_unreachable", done
    sim.clear_faults()


# --------------------------------------------------------------------------- item 13: file selections
def test_a_request_for_other_files_is_its_own_job_not_a_silent_join(api_factory, sim):
    api = api_factory(max_concurrent_downloads=2)
    repo = f"lim/f{_tag()}"
    commit = sim.add_repo(repo, {"config.json": b'{"f": 1}', "tokenizer.json": b'{"t": 1}',
                                 "model.safetensors": 6 * MiB})
    sim.set_faults(Fault(repo=repo, rate_bps=1_500_000))

    weights = start(api, repo, include="*.safetensors")
    jsons = start(api, repo, include="*.json")                      # other files: a job of its own
    assert jsons["job_id"] != weights["job_id"]
    again = start(api, repo, expect=200, include="*.json")
    assert again["job_id"] == jsons["job_id"]                       # the same selection joins
    same = start(api, repo, expect=200, include="*.safetensors")
    assert same["job_id"] == weights["job_id"]
    everything = start(api, repo)                                   # no filter: all files, its own job
    assert everything["job_id"] not in (weights["job_id"], jsons["job_id"])
    sim.clear_faults()
    for j in (weights, jsons, everything):
        wait_complete(api, j["job_id"])
    snap = repo_dir(api, repo) / "snapshots" / commit
    assert sorted(p.name for p in snap.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert all(job(api, j["job_id"])["status"] in FINAL for j in (weights, jsons, everything))


def test_pattern_order_does_not_make_a_new_job(api_factory, sim):
    api = api_factory()
    repo = f"lim/o{_tag()}"
    sim.add_repo(repo, {"a.json": b"{}", "b.json": b"[]", "model.safetensors": 4 * MiB})
    sim.set_faults(Fault(repo=repo, rate_bps=1_000_000))
    first = start(api, repo, include="a.json,model.safetensors")
    second = start(api, repo, expect=200, include="model.safetensors,a.json")
    assert second["job_id"] == first["job_id"]
    sim.clear_faults()
    wait_until(lambda: job(api, first["job_id"])["status"] in FINAL, 60)
