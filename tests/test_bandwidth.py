"""Bandwidth limits: the token bucket on its own, then through real HTTP downloads from the Hub
simulator (BANDWIDTH_LIMIT, PUT /api/limits at run time, per-job max_bps, the audit row and the
value kept across a restart). Tolerances are wide (a shared 2-core machine); bench/ holds the 5%."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from api.download.bandwidth import JobThrottle, TokenBucket, format_rate, parse_rate

from ._dl import FINAL, MiB, assert_error, job, wait_bytes, wait_complete, wait_status
from .servers import wait_until

pytestmark = pytest.mark.timeout(120)


def test_parse_and_format_rate():
    assert parse_rate("40MB/s") == 40_000_000
    assert parse_rate("512KiB/s") == 512 * 1024
    assert parse_rate(" 1.5 GB ") == 1_500_000_000
    assert parse_rate("") == parse_rate(None) == parse_rate("0") == 0
    assert parse_rate(12345) == 12345 and parse_rate("0.5") == 1
    for bad in ("fast", "-1", "20 Mbit", "5ib", True):
        with pytest.raises(ValueError):
            parse_rate(bad)
    assert format_rate(0) == "unlimited" and format_rate(20_000_000) == "20 MB/s"


def _pump(consume, stop: threading.Event, counter: list[int], chunk: int = 64 << 10) -> None:
    while not stop.is_set():
        consume(chunk)
        counter[0] += chunk


def test_bucket_holds_the_rate_across_threads_and_follows_a_change():
    bucket = TokenBucket(8_000_000)
    stop, counts = threading.Event(), [[0] for _ in range(6)]
    threads = [threading.Thread(target=_pump, args=(bucket.consume, stop, c), daemon=True) for c in counts]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(1.5)
    first = sum(c[0] for c in counts) / (time.monotonic() - t0)
    bucket.set_rate(2_000_000)
    time.sleep(0.3)   # the debt taken at the old rate is paid first
    b0, t1 = sum(c[0] for c in counts), time.monotonic()
    time.sleep(1.5)
    second = (sum(c[0] for c in counts) - b0) / (time.monotonic() - t1)
    bucket.set_rate(0)
    stop.set()
    for t in threads:
        t.join(5)
        assert not t.is_alive(), "a limit set to 0 releases every waiting thread"
    assert 0.75 * 8e6 < first < 1.25 * 8e6, first
    assert 0.7 * 2e6 < second < 1.3 * 2e6, second


def test_job_throttle_is_the_lower_of_both_and_says_when_it_holds_back():
    shared = TokenBucket(0)
    job_limit = JobThrottle(shared, 1_000_000)
    assert not job_limit.throttled
    t0 = time.monotonic()
    for _ in range(10):
        job_limit(100_000)
    assert time.monotonic() - t0 > 0.7   # 1 MB at 1 MB/s less the 0.1 s burst
    assert job_limit.throttled
    free = JobThrottle(shared)
    free(10 << 20)
    assert not free.throttled


# --------------------------------------------------------------------------- through the API
def _repo(sim, size: int, n: int = 1) -> str:
    repo = f"org/bw-{uuid.uuid4().hex[:8]}"
    sim.add_repo(repo, {f"model-{i}.safetensors": size for i in range(n)})
    return repo


def _rate_while_running(api, job_ids: list[str], seconds: float) -> float:
    """Bytes per second summed over the jobs, measured from the jobs' own counters."""
    def total() -> int:
        return sum(job(api, j)["bytes_downloaded"] for j in job_ids)
    b0, t0 = total(), time.monotonic()
    time.sleep(seconds)
    return (total() - b0) / (time.monotonic() - t0)


# Both places a transfer can run: threads of the API (TRANSFER_PROCESS=false) and the child process,
# which mirrors the shared bucket and keeps one bucket per job (api/download/remote.py).
IN_CHILD = pytest.mark.parametrize("in_child", [True, False], ids=["child-process", "in-process"])


@IN_CHILD
def test_shared_limit_holds_over_two_jobs_and_changes_at_run_time(api_factory, sim, tmp_path, in_child):
    api = api_factory(bandwidth_limit="3MB/s", download_connections=4, part_size_mb=1, transfer_process=in_child)
    assert api.get("/api/limits").json() == {"bandwidth_bps": 3_000_000, "bandwidth": "3 MB/s",
                                             "max_concurrent_downloads": 2, "source": "settings",
                                             "updated_at": None}
    ids = [api.post("/api/download-model", params={"model_id": _repo(sim, 24 * MiB)}).json()["job_id"]
           for _ in range(2)]
    for j in ids:
        wait_bytes(api, j, 1 * MiB)
    rate = _rate_while_running(api, ids, 2.5)
    assert 0.6 * 3e6 < rate < 1.3 * 3e6, f"{rate / 1e6:.2f} MB/s under a 3 MB/s limit"
    views = [job(api, j) for j in ids]
    assert all(v["throttled"] is True and v["status"] == "downloading" for v in views), views

    r = api.put("/api/limits", json={"bandwidth_bps": "12MB/s"})
    assert r.status_code == 200, r.text
    assert r.json()["bandwidth_bps"] == 12_000_000 and r.json()["source"] == "api"
    time.sleep(1.0)   # "within a second"
    rate = _rate_while_running(api, ids, 1.5)
    assert rate > 1.6 * 3e6, f"{rate / 1e6:.2f} MB/s after raising the limit to 12 MB/s"

    assert api.put("/api/limits", params={"bandwidth_bps": "0"}).json()["bandwidth"] == "unlimited"
    for j in ids:
        done = wait_complete(api, j, 60)
        assert done["throttled"] is False
    audit = api.get("/api/jobs", params={"kind": "limits"}).json()
    assert [a["result"]["current"]["bandwidth_bps"] for a in audit] == [0, 12_000_000]
    assert audit[1]["result"]["previous"]["bandwidth_bps"] == 3_000_000 and audit[0]["status"] == "complete"

    # bad input: a clear 422 and nothing changes
    for bad in ({"bandwidth_bps": "fast"}, {"bandwidth_bps": -1}, {"max_concurrent_downloads": 0},
                {"bandwidth_bps": " 5" + " " * 40}, {"bandwidth_bps": True}):
        assert_error(api.put("/api/limits", json=bad), 422)
    assert api.put("/api/limits", json={}).json()["bandwidth_bps"] == 0   # nothing to change
    assert len(api.get("/api/jobs", params={"kind": "limits"}).json()) == 2
    assert_error(api.put("/api/limits", params={"max_concurrent_downloads": "99"}), 422)
    assert api.get("/api/limits").json()["bandwidth_bps"] == 0

    # kept in the state database: a new process on the same file starts with the API's values
    api.put("/api/limits", json={"bandwidth_bps": 5_000_000, "max_concurrent_downloads": 3})
    again = api_factory(bandwidth_limit="1MB/s")
    assert again.settings.state_db == api.settings.state_db
    got = again.get("/api/limits").json()
    assert (got["bandwidth_bps"], got["max_concurrent_downloads"], got["source"]) == (5_000_000, 3, "api")


@IN_CHILD
def test_per_job_max_bps_and_concurrency_limit(api_factory, sim, in_child):
    api = api_factory(download_connections=4, part_size_mb=1, transfer_process=in_child)
    repo = _repo(sim, 6 * MiB)
    r = api.post("/api/download-model", json={"model_id": repo, "max_bps": "2MB/s"})
    assert r.status_code == 202, r.text
    j = r.json()
    assert j["max_bps"] == 2_000_000
    wait_bytes(api, j["job_id"], 512 << 10)
    rate = _rate_while_running(api, [j["job_id"]], 1.5)
    assert 0.5 * 2e6 < rate < 1.35 * 2e6, f"{rate / 1e6:.2f} MB/s with max_bps 2 MB/s"
    assert job(api, j["job_id"])["throttled"] is True
    assert_error(api.post("/api/download-model", params={"model_id": _repo(sim, 1024), "max_bps": "1x"}), 422)

    # one download at a time: the second waits in the queue until the first is done
    api.put("/api/limits", json={"max_concurrent_downloads": 1})
    second = api.post("/api/download-model", params={"model_id": _repo(sim, 1 * MiB)}).json()
    assert job(api, second["job_id"])["status"] == "queued"
    api.put("/api/limits", json={"max_concurrent_downloads": 2})   # a free slot starts it at once
    wait_complete(api, second["job_id"], 30)
    assert wait_status(api, j["job_id"], FINAL, 30)["status"] == "complete"
    wait_until(lambda: job(api, j["job_id"])["throttled"] is False, 5, message="not throttled when done")
