"""What goes wrong between the Hub and the engine, injected by the simulator; each asserts the outcome."""
from __future__ import annotations

import time

from api.testing.hubsim import Fault

from ._dl import (MiB, assert_error, assert_verified, blob_files, part_files, repo_dir, sha256_file, staging, start,
                  wait_complete, wait_status)

W = "model.safetensors"


def _repo(sim, repo, size, extra=None):
    files = {"config.json": b'{"model_type": "llama"}', W: size, **(extra or {})}
    return sim.add_repo(repo, files)


def _no_trace(api, sim, repo, commit):
    """No blob with wrong content, no snapshot link, nothing staged."""
    info = sim.file_info(repo, W, commit)
    for name, blob in blob_files(api, repo).items():
        if name == info["etag"]:
            assert sha256_file(blob) == info["sha256"], "a blob with wrong content is in the cache"
    assert not (repo_dir(api, repo) / "snapshots" / commit / W).exists()
    assert not (repo_dir(api, repo) / "snapshots" / commit / W).is_symlink()


def test_drop_once_resumes_with_a_small_refetch(api, sim):
    repo, size = "fault/drop-once", 12 * MiB
    commit = _repo(sim, repo, size)
    sim.set_faults(Fault(repo=repo, path=W, drop_after=1 * MiB + 17, times=1))
    j = start(api, repo)
    done = wait_complete(api, j["job_id"])
    assert_verified(api, sim, repo, commit, [W, "config.json"])
    served = sim.served_bytes(repo, W)
    assert size <= served <= size + 256 * 1024, f"{served - size} bytes fetched twice"
    assert sim.request_count(repo, W) >= 4       # 3 parts + the resumed one
    assert done["attempts"] >= 2 and done["result"]["retries"] >= 1


def test_drop_every_time_still_completes_by_range_resume(api, sim):
    repo, size = "fault/drop-always", 10 * MiB
    commit = _repo(sim, repo, size)
    sim.set_faults(Fault(repo=repo, path=W, drop_after=1 * MiB, rate_bps=8_000_000))
    j = start(api, repo)
    wait_complete(api, j["job_id"], timeout=90)
    assert_verified(api, sim, repo, commit, [W])
    served = sim.served_bytes(repo, W)
    assert served <= size + 512 * 1024, f"{served - size} bytes fetched twice"
    assert sim.request_count(repo, W) >= 10          # never more than 1 MiB per request


def test_rate_cap_reports_speed_and_eta(api, sim):
    repo, size = "fault/rate", 8 * MiB
    commit = _repo(sim, repo, size)
    sim.set_faults(Fault(repo=repo, path=W, rate_bps=1_000_000))
    j = start(api, repo)
    began = time.monotonic()
    samples = []

    def running_with_speed():
        s = api.get(f"/api/jobs/{j['job_id']}").json()
        samples.append(s)
        return s["status"] == "downloading" and s["speed_bps"] > 0 and s["eta_seconds"] is not None and s

    from .servers import wait_until
    s = wait_until(running_with_speed, 20, interval=0.1, message="a speed and an eta")
    assert 0 < s["speed_bps"] < 20_000_000
    assert s["eta_seconds"] > 0
    wait_complete(api, j["job_id"])
    # Two 4 MiB parts at 1 MB/s each: the cap really was in the path.
    assert time.monotonic() - began >= 3.0
    assert_verified(api, sim, repo, commit, [W])
    assert sim.served_bytes(repo, W) == size


def test_429_with_retry_after_is_waited_out(api, sim):
    repo, size = "fault/429", 6 * MiB
    commit = _repo(sim, repo, size)
    sim.set_faults(Fault(repo=repo, path=W, status=429, retry_after=2, times=2))
    j = start(api, repo)
    began = time.monotonic()
    done = wait_complete(api, j["job_id"])
    assert time.monotonic() - began >= 1.8, "Retry-After was not honoured"
    assert_verified(api, sim, repo, commit, [W])
    assert sim.served_bytes(repo, W) == size
    assert sim.request_count(repo, W) == 4   # 2 parts, each refused once
    assert done["attempts"] >= 2


def test_hub_api_outage_at_submit_queues_the_job(api, sim):
    repo = "fault/api-503"
    commit = _repo(sim, repo, 2 * MiB)
    sim.set_faults(Fault(repo=repo, on="api", status=503, times=2))
    j = start(api, repo)        # the Hub is down right now: still accepted
    assert j["status"] in ("queued", "downloading")
    wait_complete(api, j["job_id"])
    assert_verified(api, sim, repo, commit, [W, "config.json"])


def test_burst_of_5xx_is_retried(api, sim):
    repo, size = "fault/5xx-burst", 8 * MiB
    commit = _repo(sim, repo, size)
    sim.set_faults(Fault(repo=repo, path=W, status=503, times=3),
                   Fault(repo=repo, path="config.json", status=502, times=2))
    j = start(api, repo)
    wait_complete(api, j["job_id"])
    assert_verified(api, sim, repo, commit, [W, "config.json"])
    assert sim.request_count(repo, W) == 2 + 3
    assert sim.served_bytes(repo, W) == size


def test_permanent_5xx_fails_with_a_network_error(api, sim):
    repo = "fault/5xx-forever"
    commit = _repo(sim, repo, 6 * MiB)
    sim.set_faults(Fault(repo=repo, path=W, status=500))
    j = start(api, repo)
    failed = wait_status(api, j["job_id"], ("failed", "complete", "cancelled"), timeout=60)
    assert failed["status"] == "failed", failed
    assert failed["error_code"] in ("network_error", "hub_error", "hub_unreachable"), failed
    assert failed["error"] and failed["completed_at"]
    assert failed["progress"] < 100
    # Bounded: the retry budget (max_retries=4) per part, not forever.
    assert sim.request_count(repo, W) <= 2 * (4 + 1)
    _no_trace(api, sim, repo, commit)
    assert not (repo_dir(api, repo) / "refs" / "main").exists()


def test_stall_hits_the_timeout_and_is_retried(api, sim):
    repo, size = "fault/stall", 6 * MiB
    commit = _repo(sim, repo, size)
    # stall_timeout is 3 s in the test settings; the sim stalls for 6.
    sim.set_faults(Fault(repo=repo, path=W, stall_after=512 * 1024, stall_seconds=6, times=1))
    j = start(api, repo)
    began = time.monotonic()
    done = wait_complete(api, j["job_id"], timeout=30)
    elapsed = time.monotonic() - began
    assert 2.5 <= elapsed < 6, f"the stall was not cut at the stall timeout ({elapsed:.1f}s)"
    assert_verified(api, sim, repo, commit, [W])
    assert done["attempts"] >= 2
    assert sim.served_bytes(repo, W) <= size + 256 * 1024


def test_ignored_range_with_a_drop_still_completes(api, sim):
    repo, size = "fault/no-range", 10 * MiB
    commit = _repo(sim, repo, size)
    sim.set_faults(Fault(repo=repo, path=W, ignore_range=True),
                   Fault(repo=repo, path=W, drop_after=5 * MiB, times=1))
    j = start(api, repo)
    wait_complete(api, j["job_id"], timeout=60)
    assert_verified(api, sim, repo, commit, [W])
    assert part_files(api) == []


def test_corrupt_once_is_refetched(api, sim):
    repo, size = "fault/corrupt-once", 3 * MiB   # one part: the single request is the corrupted one
    commit = _repo(sim, repo, size)
    sim.set_faults(Fault(repo=repo, path=W, corrupt_at=size // 2, times=1))
    j = start(api, repo)
    wait_complete(api, j["job_id"])
    assert_verified(api, sim, repo, commit, [W])
    assert sim.served_bytes(repo, W) == 2 * size


def test_corrupt_plain_file_once_is_refetched(api, sim):
    repo = "fault/corrupt-plain"
    commit = sim.add_repo(repo, {"config.json": b'{"x": "' + b"y" * 5000 + b'"}'})
    sim.set_faults(Fault(repo=repo, path="config.json", corrupt_at=100, times=1))
    j = start(api, repo)
    wait_complete(api, j["job_id"])
    assert_verified(api, sim, repo, commit, ["config.json"])


def test_corrupt_always_fails_with_integrity_error_and_leaves_no_bad_blob(api, sim):
    repo, size = "fault/corrupt-always", 3 * MiB
    commit = _repo(sim, repo, size)
    sim.set_faults(Fault(repo=repo, path=W, corrupt_at=1234))
    j = start(api, repo)
    failed = wait_status(api, j["job_id"], timeout=60)
    assert failed["status"] == "failed" and failed["error_code"] == "integrity_error", failed
    _no_trace(api, sim, repo, commit)
    info = sim.file_info(repo, W)
    assert info["etag"] not in blob_files(api, repo)
    assert not (staging(api) / f"{info['sha256']}.part").exists()
    assert not (repo_dir(api, repo) / "refs" / "main").exists()


def test_repo_not_found_answers_404_at_once(api, sim):
    began = time.monotonic()
    r = api.post("/api/download-model", params={"model_id": "fault/does-not-exist"})
    body = assert_error(r, 404, "repo_not_found")
    assert time.monotonic() - began < 5
    assert "job_id" in body
    assert api.get(f"/api/jobs/{body['job_id']}").json()["error_code"] == "repo_not_found"
    assert not repo_dir(api, "fault/does-not-exist").exists()


def test_revision_not_found(api, sim):
    repo = "fault/revision"
    _repo(sim, repo, 1 * MiB)
    r = api.post("/api/download-model", params={"model_id": repo, "revision": "no-such-branch"})
    assert_error(r, 404, "revision_not_found")
    r = api.post("/api/download-model", params={"model_id": repo, "revision": "f" * 40})
    assert_error(r, 404, "revision_not_found")
    assert not repo_dir(api, repo).exists()


def test_gated_repo_without_token_is_refused(api, sim):
    repo = "fault/gated-no-token"
    sim.add_repo(repo, {"config.json": b"{}", W: 1 * MiB}, gated=True)
    r = api.post("/api/download-model", params={"model_id": repo})
    assert_error(r, 403, "gated_repo")
    assert sim.request_count(repo, W) == 0
    assert not repo_dir(api, repo).exists()


def test_gated_repo_with_token_completes(api_factory, sim):
    from .conftest import GATED_TOKEN
    api = api_factory(hf_token=GATED_TOKEN)
    repo = "fault/gated-token"
    commit = sim.add_repo(repo, {"config.json": b"{}", W: 5 * MiB}, gated=True)
    j = start(api, repo)
    wait_complete(api, j["job_id"])
    assert_verified(api, sim, repo, commit, ["config.json", W])


def test_file_missing_on_the_hub_fails_fast(api, sim):
    repo = "fault/missing-file"
    commit = _repo(sim, repo, 5 * MiB)
    sim.set_faults(Fault(repo=repo, path=W, on="head", status=404))
    j = start(api, repo)
    began = time.monotonic()
    failed = wait_status(api, j["job_id"], timeout=30)
    assert failed["status"] == "failed" and failed["error_code"] == "file_not_found", failed
    assert time.monotonic() - began < 5
    assert sim.head_count(repo, W) == 1, "a permanent error must not be retried"
    _no_trace(api, sim, repo, commit)
