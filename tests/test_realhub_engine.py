"""The engine against the real Hub's protocol (issue 7): signed CDN URLs that expire, a CDN that
refuses HEAD, RateLimit windows, gated repos at submit, disabled repos, huge files, keep-alive reuse."""
from __future__ import annotations

import time
from contextlib import contextmanager

import pytest

from api.download.http import Origin, auth_headers, hub_origins
from api.download.location import signed_expiry
from api.testing.hubsim import Fault

from ._dl import MiB, assert_error, assert_verified, job, start, wait_complete, wait_status
from .conftest import GATED_TOKEN
from .servers import wait_until

W = "model.safetensors"


@contextmanager
def configured(sim, **settings):
    before = {k: v for k, v in sim.config().items() if k in settings}
    sim.configure(**settings)
    try:
        yield
    finally:
        sim.configure(**before)


def test_signed_url_expiring_mid_file_is_re_resolved_for_all_parts(api_factory, sim):
    # 12 MiB in 2 MiB parts at 1 MB/s per request over 2 connections: ~6 s, twice the URL's life.
    api = api_factory(download_connections=2, max_total_connections=2, part_size_mb=2)
    repo, size = "real/expiry", 12 * MiB
    commit = sim.add_repo(repo, {"config.json": b"{}", W: size})
    with configured(sim, cdn_url_lifetime=3):
        sim.set_faults(Fault(repo=repo, path=W, where="cdn", rate_bps=1_000_000))
        sim.reset_counters()
        j = start(api, repo)
        done = wait_complete(api, j["job_id"], timeout=60)
    assert_verified(api, sim, repo, commit, [W])
    assert sim.head_count(repo, W) >= 2, "the URL was never re-resolved"
    assert sim.cdn_head_count(repo, W) == 0
    assert sim.served_bytes(repo, W) == size
    assert done["result"]["url_refreshes"] >= 1, done["result"]


def test_a_cdn_refusal_is_taken_as_expiry_once_and_the_download_goes_on(api, sim):
    repo, size = "real/revoked", 6 * MiB
    commit = sim.add_repo(repo, {W: size})
    sim.set_faults(Fault(repo=repo, path=W, where="cdn", status=403, times=1))
    sim.reset_counters()
    j = start(api, repo)
    wait_complete(api, j["job_id"])
    assert_verified(api, sim, repo, commit, [W])
    assert sim.head_count(repo, W) == 2          # the first resolve and one re-resolve for every part


@pytest.mark.parametrize("status", [403, 405])
def test_a_cdn_that_refuses_head_is_never_sent_one(api, sim, status):
    repo, size = f"real/no-head-{status}", 6 * MiB
    commit = sim.add_repo(repo, {"config.json": b'{"a": 1}', W: size})
    sim.set_faults(Fault(where="cdn", on="head", status=status))
    sim.reset_counters()
    j = start(api, repo)
    wait_complete(api, j["job_id"])
    assert_verified(api, sim, repo, commit, [W, "config.json"])
    assert sim.cdn_head_count(repo, W) == 0


def test_a_429_window_with_only_ratelimit_is_waited_out_and_shown(api, sim):
    # The case is a 60 s window; 6 s exercises the same path (t from the header, no
    # Retry-After) while the test settings' retry budget (4 retries, 0.5 s backoff) is spent in ~2 s.
    repo, size, window = "real/ratelimited", 4 * MiB, 6
    commit = sim.add_repo(repo, {W: size})
    sim.set_faults(Fault(repo=repo, path=W, on="head", where="hub", ratelimit_window=window))
    began = time.monotonic()
    j = start(api, repo)

    def waiting():
        s = job(api, j["job_id"])
        assert s["status"] not in ("failed", "complete"), s
        return s["waiting_until"] and s

    shown = wait_until(waiting, 20, message="waiting_until on the job")
    assert shown["waiting_reason"].startswith("rate_limited"), shown
    assert '"resolvers"' in shown["waiting_reason"], shown
    done = wait_complete(api, j["job_id"], timeout=60)
    assert time.monotonic() - began >= window - 1
    assert done["waiting_until"] is None and done["waiting_reason"] is None
    assert_verified(api, sim, repo, commit, [W])


def test_a_rate_limited_hub_api_is_waited_out_while_planning(api, sim):
    repo, window = "real/ratelimited-api", 5
    commit = sim.add_repo(repo, {W: 1 * MiB})
    sim.set_faults(Fault(repo=repo, on="api", where="hub", ratelimit_window=window))
    began = time.monotonic()
    j = start(api, repo)          # planning at submit meets the 429: the job is queued, not refused

    def waiting():
        s = job(api, j["job_id"])
        assert s["status"] not in ("failed", "complete"), s
        return s["waiting_reason"] and s

    shown = wait_until(waiting, 20, message="waiting_reason while planning")
    assert '"api"' in shown["waiting_reason"], shown
    wait_complete(api, j["job_id"], timeout=60)
    assert time.monotonic() - began >= window - 1
    assert_verified(api, sim, repo, commit, [W])


def test_gated_repo_is_refused_at_submit_without_a_token(api, sim):
    repo = "real/gated-anon"
    sim.add_repo(repo, {"config.json": b"{}", W: 1 * MiB}, gated=True)
    body = assert_error(api.post("/api/download-model", params={"model_id": repo}), 403, "gated_repo")
    assert "accept" in body["detail"] and "HF_TOKEN" in body["detail"], body
    assert f"/{repo}" in body["detail"], body
    assert sim.request_count(repo, W) == 0 and sim.head_count(repo, W) == 0


def test_gated_repo_is_refused_at_submit_with_a_token_lacking_access(api_factory, sim):
    api = api_factory(hf_token="hf_someone_without_access")
    repo = "real/gated-no-grant"
    sim.add_repo(repo, {"config.json": b"{}", W: 1 * MiB}, gated=True)
    body = assert_error(api.post("/api/download-model", params={"model_id": repo}), 403, "gated_repo")
    assert "accept" in body["detail"] and "not been granted" in body["detail"], body
    assert sim.head_count(repo, W) == 0


def test_gated_repo_with_a_granted_token_downloads(api_factory, sim):
    api = api_factory(hf_token=GATED_TOKEN)
    repo = "real/gated-granted"
    commit = sim.add_repo(repo, {"config.json": b"{}", W: 2 * MiB}, gated=True)
    wait_complete(api, start(api, repo)["job_id"])
    assert_verified(api, sim, repo, commit, ["config.json", W])


def test_disabled_repo_has_its_own_error_code(api, sim):
    repo = "real/disabled"
    sim.add_repo(repo, {W: 1 * MiB}, disabled=True)
    body = assert_error(api.post("/api/download-model", params={"model_id": repo}), 403, "repo_disabled")
    assert "disabled" in body["detail"]


def test_a_file_the_cdn_will_not_serve_over_http_fails_with_file_too_large(api, sim):
    repo = "real/huge"
    sim.add_repo(repo, {W: 3 * MiB})
    with configured(sim, cdn_max_size=2 * MiB):
        j = start(api, repo)
        failed = wait_status(api, j["job_id"], timeout=30)
    assert failed["status"] == "failed" and failed["error_code"] == "file_too_large", failed
    assert "hf_xet" in failed["error"]


def test_each_part_costs_one_cdn_get_on_a_reused_connection(api_factory, sim):
    # Python 3.11 does not close a response read to its end with read1; unless the engine does,
    # the next request on the connection fails after it was sent (12 parts cost 22 GETs).
    api = api_factory(download_connections=1, max_total_connections=1, part_size_mb=1)
    repo, size = "real/keepalive", 12 * MiB
    commit = sim.add_repo(repo, {W: size})
    sim.reset_counters()
    done = wait_complete(api, start(api, repo)["job_id"])
    assert_verified(api, sim, repo, commit, [W])
    assert sim.cdn_request_count(repo, W) == 12
    assert sim.connection_count("cdn") == 1
    assert done["attempts"] == 1 and done["result"]["retries"] == 0, done


def test_the_token_goes_to_the_hubs_hosts_and_never_to_a_cdn():
    hubs = hub_origins("https://huggingface.co")
    assert hubs == {Origin("https", "huggingface.co", 443), Origin("https", "hf.co", 443)}
    for url in ("https://huggingface.co/org/m/resolve/main/x", "https://hf.co/api/resolve-cache/models/org/m/c/x"):
        assert auth_headers(url, "hf_t", hubs) == {"Authorization": "Bearer hf_t"}
    for url in ("https://cdn-lfs.hf.co/repos/x", "https://us.aws.cdn.hf.co/xet-bridge-us/a/b",
                "https://cas-bridge.xethub.hf.co/x", "http://huggingface.co/x"):
        assert auth_headers(url, "hf_t", hubs) == {}
    mirror = hub_origins("http://127.0.0.1:8080")
    assert auth_headers("https://hf.co/x", "hf_t", mirror) == {}


@pytest.mark.parametrize("style", ["cloudfront", "s3"])
def test_the_expiry_is_read_from_both_signature_styles(sim, style):
    sim.add_repo("real/styles", {W: 1 * MiB})
    with configured(sim, cdn_url_style=style):
        url = sim.signed_url("real/styles", W, lifetime=600)
    assert abs(signed_expiry(url) - (time.time() + 600)) <= 2, url
    assert signed_expiry(sim.url + "/api/resolve-cache/models/real/styles/x") is None
