"""The simulator answers what the real Hub answers (issue 7, recorded shapes), over real HTTP."""

from __future__ import annotations

import base64
import hashlib
from http.client import HTTPConnection
import json
import threading
import time
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import DisabledRepoError

from api.testing.hubsim import Fault, HubSim

from .servers import wait_until

TOKEN = "hf_fidelity_ok"
MiB = 1024 * 1024
FILES: dict[str, bytes | int] = {
    "config.json": b'{"model_type": "sim"}\n',
    "empty.txt": b"",
    "model.safetensors": 3 * MiB,
}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with HubSim(tmp_path_factory.mktemp("fidelity"), tokens={TOKEN}) as s:
        s.add_repo("org/model", FILES)
        s.add_repo("canonical", {"config.json": b"{}"})
        s.add_repo("org/gated", {"config.json": b"{}", "weights.bin": 4096}, gated=True)
        s.add_repo("org/private", {"config.json": b"{}"}, private=True)
        s.add_repo("org/disabled", {"config.json": b"{}"}, disabled=True)
        yield s


@pytest.fixture(autouse=True)
def clean(sim, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    sim.clear_faults()
    sim.reset_counters()
    yield
    sim.clear_faults()
    sim.configure(cdn_url_lifetime=3600, cdn_url_style="cloudfront", cdn_max_size=400 * 10**9, ratelimit_enforce=False)


@pytest.fixture
def http():
    with httpx.Client(timeout=30) as client:
        yield client


def data(sim: HubSim, path: str, repo: str = "org/model") -> bytes:
    return sim.store.get(repo).resolve("main").files[path].disk_path.read_bytes()


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- resolve: 307 for small files, 302 for LFS files -------------------------------------------


def test_small_file_is_a_relative_307_to_the_resolve_cache(sim, http):
    commit = sim.store.get("org/model").refs["main"]
    sha1 = sim.file_info("org/model", "config.json")["git_sha1"]
    for method in ("HEAD", "GET"):
        r = http.request(method, f"{sim.url}/org/model/resolve/main/config.json")
        assert r.status_code == 307, method
        assert r.headers["location"] == (
            f"/api/resolve-cache/models/org/model/{commit}/config.json"
            f"?%2Forg%2Fmodel%2Fresolve%2Fmain%2Fconfig.json=&etag=%22{sha1}%22"
        )
        assert r.headers["x-repo-commit"] == commit and r.headers["x-linked-etag"] == f'"{sha1}"'
    target = sim.url + r.headers["location"]
    r = http.get(target)
    assert r.status_code == 200 and r.content == data(sim, "config.json")
    assert r.headers["etag"] == f'"{sha1}"' and r.headers["accept-ranges"] == "bytes"
    assert r.headers["x-repo-commit"] == commit
    r = http.get(target, headers={"Range": "bytes=2-5"})
    assert (r.status_code, r.content) == (206, data(sim, "config.json")[2:6])
    assert http.get(target, headers={"Range": "bytes=999-"}).status_code == 416


@pytest.mark.parametrize("repo, path, headers", [
    ("org/model", "empty.txt", {}),             # 0-byte file
    ("canonical", "config.json", {}),           # no namespace
    ("org/gated", "config.json", auth()),       # gated, with access
    ("org/private", "config.json", auth()),     # private, with access
])
def test_direct_200_cases(sim, http, repo, path, headers):
    r = http.get(f"{sim.url}/{repo}/resolve/main/{path}", headers=headers)
    assert r.status_code == 200 and r.content == data(sim, path, repo)
    assert r.headers["etag"] == f'"{sim.file_info(repo, path)["git_sha1"]}"'


def test_lfs_file_is_a_302_to_a_signed_cdn_url(sim, http):
    info = sim.file_info("org/model", "model.safetensors")
    r = http.get(f"{sim.url}/org/model/resolve/main/model.safetensors", headers=auth())
    assert r.status_code == 302
    assert int(r.headers["content-length"]) == len(r.content) < 2000  # the redirect's own body
    assert r.headers["x-repo-commit"] == sim.store.get("org/model").refs["main"]
    assert int(r.headers["x-linked-size"]) == info["size"]
    assert r.headers["x-linked-etag"] == f'"{info["sha256"]}"'
    xet = r.headers["x-xet-hash"]
    assert xet == info["xet_hash"] and len(xet) == 64 and xet != info["sha256"]
    assert 'rel="xet-auth"' in r.headers["link"] and 'rel="xet-reconstruction-info"' in r.headers["link"]
    location = r.headers["location"]
    assert location.startswith(sim.cdn_url + "/") and sim.cdn_url != sim.url
    query = dict(parse_qsl(urlsplit(location).query))
    assert {"Expires", "Policy", "Signature", "Key-Pair-Id"} <= set(query)
    policy = json.loads(base64.b64decode(query["Policy"].replace("-", "+").replace("_", "=").replace("~", "/")))
    assert policy["Statement"][0]["Condition"]["DateLessThan"]["AWS:EpochTime"] == int(query["Expires"])
    assert 3590 < int(query["Expires"]) - time.time() <= 3601

    # The CDN: no token needed, Range works, its ETag is the Xet hash, it knows no RateLimit.
    whole = data(sim, "model.safetensors")
    r = http.get(location, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == whole[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{info['size']}"
    assert r.headers["etag"] == f'"{xet}"' and "ratelimit" not in r.headers
    r = http.get(location, headers={"Range": f"bytes={info['size']}-"})
    assert r.status_code == 416 and b"<Code>InvalidRange</Code>" in r.content
    assert hashlib.sha256(http.get(location).content).hexdigest() == info["sha256"]
    assert sim.cdn_request_count("org/model", "model.safetensors") == 3


def test_cdn_refuses_unsigned_tampered_and_expired_urls(sim, http):
    good = sim.signed_url("org/model", "model.safetensors")
    tampered = good.replace("Expires=", "Expires=9")
    unsigned = good.split("?")[0]
    for url in (tampered, unsigned):
        r = http.get(url)
        assert r.status_code == 403 and b"<Code>AccessDenied</Code>" in r.content
        assert r.headers["content-type"] == "application/xml"

    sim.configure(cdn_url_lifetime=1)
    short = http.get(f"{sim.url}/org/model/resolve/main/model.safetensors").headers["location"]
    assert http.get(short, headers={"Range": "bytes=0-0"}).status_code == 206
    wait_until(lambda: http.get(short, headers={"Range": "bytes=0-0"}).status_code == 403, 5,
               message="the 1 s URL to expire")
    assert http.get(good, headers={"Range": "bytes=0-0"}).status_code == 206  # its own lifetime


def test_s3_style_urls_expire_and_refuse_head(sim, http):
    sim.configure(cdn_url_style="s3", cdn_url_lifetime=1)
    url = http.get(f"{sim.url}/org/model/resolve/main/model.safetensors").headers["location"]
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["x-id"] == "GetObject" and {"X-Amz-Date", "X-Amz-Expires", "X-Amz-Signature"} <= set(query)
    assert http.get(url, headers={"Range": "bytes=0-9"}).status_code == 206
    assert http.head(url).status_code == 403  # presigned for GET only
    wait_until(lambda: http.get(url, headers={"Range": "bytes=0-0"}).status_code == 403, 5,
               message="the 1 s URL to expire")


def test_huge_files_get_400_from_the_cdn(sim, http):
    sim.configure(cdn_max_size=2 * MiB)
    r = http.get(f"{sim.url}/org/model/resolve/main/model.safetensors", follow_redirects=True)
    assert r.status_code == 400


# -- access rules and errors -------------------------------------------------------------------


def test_errors_like_the_real_hub(sim, http):
    r = http.get(f"{sim.url}/api/models/org/missing")
    assert r.status_code == 401 and "x-error-code" not in r.headers
    assert r.headers["x-error-message"] == "Invalid username or password."
    r = http.get(f"{sim.url}/org/missing/resolve/main/a.json")
    assert r.status_code == 401 and "x-error-code" not in r.headers
    r = http.get(f"{sim.url}/api/models/org/missing", headers=auth())
    assert (r.status_code, r.headers["x-error-code"]) == (404, "RepoNotFound")
    # A private repo looks missing without access.
    assert http.get(f"{sim.url}/api/models/org/private").status_code == 401
    assert http.get(f"{sim.url}/api/models/org/private", headers=auth("hf_other")).status_code == 404
    assert http.get(f"{sim.url}/api/models/org/private", headers=auth()).json()["private"] is True

    r = http.get(f"{sim.url}/org/model/resolve/main/nope.txt")
    assert (r.status_code, r.headers["x-error-code"]) == (404, "EntryNotFound")
    assert r.headers["x-repo-commit"] == sim.store.get("org/model").refs["main"]
    r = http.get(f"{sim.url}/org/model/resolve/nope/config.json")
    assert (r.status_code, r.headers["x-error-code"]) == (404, "RevisionNotFound")
    for url in (f"{sim.url}/org/disabled/resolve/main/config.json", f"{sim.url}/api/models/org/disabled"):
        r = http.get(url)
        assert (r.status_code, r.headers["x-error-code"]) == (403, "DisabledRepo")
        assert r.headers["x-error-message"] == "Access to this resource is disabled."
    with pytest.raises(DisabledRepoError):
        HfApi(endpoint=sim.url).model_info("org/disabled")


def test_gated_metadata_is_public_files_and_auth_check_are_not(sim, http):
    for url in ("/api/models/org/gated", "/api/models/org/gated/revision/main", "/api/models/org/gated/tree/main"):
        assert http.get(sim.url + url).status_code == 200, url
    file_url = f"{sim.url}/org/gated/resolve/main/weights.bin"
    check = f"{sim.url}/api/models/org/gated/auth-check"
    for headers, status in (({}, 401), (auth("hf_no_access"), 403)):
        for url in (file_url, check):
            r = http.get(url, headers=headers)
            assert (r.status_code, r.headers["x-error-code"]) == (status, "GatedRepo"), (url, headers)
    assert http.get(file_url, headers=auth(), follow_redirects=True).content == data(sim, "weights.bin", "org/gated")
    assert http.get(check, headers=auth()).status_code == 200
    assert http.get(f"{sim.url}/api/models/org/model/auth-check").status_code == 200
    assert http.get(f"{sim.url}/api/models/org/missing/auth-check").status_code == 401
    HfApi(endpoint=sim.url).auth_check("org/gated", token=TOKEN)  # the real client's call


# -- rate limits -------------------------------------------------------------------------------


def test_ratelimit_headers_on_every_hub_answer(sim, http):
    seen = {}
    for url, bucket in (("/api/models/org/model", "api"), ("/org/model/resolve/main/config.json", "resolvers"),
                        ("/org/model/resolve/main/nope", "resolvers"), ("/org/model", "pages")):
        r = http.get(sim.url + url)
        limit, policy = r.headers["ratelimit"], r.headers["ratelimit-policy"]
        assert limit.startswith(f'"{bucket}";r=') and policy.startswith(f'"fixed window";"{bucket}";q='), url
        seen.setdefault(bucket, []).append(int(limit.split("r=")[1].split(";")[0]))
    assert seen["resolvers"][1] == seen["resolvers"][0] - 1  # counted per bucket

    sim.reset_counters()  # a fresh window
    sim.configure(ratelimit_enforce=True, ratelimit_quotas={"api": 2})
    try:
        answers = [http.get(f"{sim.url}/api/models/org/model") for _ in range(3)]
    finally:
        sim.configure(ratelimit_quotas={"api": 500})
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert answers[1].headers["ratelimit"].startswith('"api";r=0;')
    assert answers[2].headers["ratelimit"].startswith('"api";r=0;') and "retry-after" not in answers[2].headers


def test_ratelimit_window_fault_and_the_client_waits(sim, http, tmp_path):
    sim.set_faults(Fault(on="any", ratelimit_window=1.5))
    r = http.get(f"{sim.url}/org/model/resolve/main/config.json")
    assert r.status_code == 429 and "retry-after" not in r.headers
    assert r.headers["ratelimit"] in ('"resolvers";r=0;t=1', '"resolvers";r=0;t=2')
    r = http.get(f"{sim.url}/api/models/org/model")
    assert r.status_code == 429 and r.headers["ratelimit"].startswith('"api";r=0;t=')
    assert sim.request_log()[-1]["status"] == 429
    # huggingface_hub reads `t` and waits t+1 s, then succeeds: the window is over by then.
    path = hf_hub_download("org/model", "config.json", endpoint=sim.url, cache_dir=tmp_path)
    assert open(path, "rb").read() == data(sim, "config.json")
    assert http.get(f"{sim.url}/api/models/org/model").status_code == 200
    assert sim.faults.active() == []  # spent


# -- CDN faults --------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [403, 405])
def test_cdn_refuses_head(sim, http, status):
    assert http.post(f"{sim.url}/_sim/faults", json=[{"where": "cdn", "on": "head", "status": status}]).status_code == 200
    hub = http.head(f"{sim.url}/org/model/resolve/main/model.safetensors")
    assert hub.status_code == 302  # the Hub itself still answers HEAD
    assert http.head(hub.headers["location"]).status_code == status
    r = http.get(hub.headers["location"], headers={"Range": "bytes=0-99"})
    assert r.status_code == 206 and r.content == data(sim, "model.safetensors")[:100]
    assert sim.cdn_head_count("org/model", "model.safetensors") == 1
    assert sim.cdn_request_count("org/model", "model.safetensors") == 1


def _timed_get(host: str, port: int, path: str, ranges: list[str]) -> tuple[float, int]:
    """Ranged GETs on ONE keep-alive connection: (seconds, bytes)."""
    conn = HTTPConnection(host, port, timeout=30)
    t0, n = time.monotonic(), 0
    for spec in ranges:
        conn.request("GET", path, headers={"Range": f"bytes={spec}"})
        resp = conn.getresponse()
        n += len(resp.read())
        assert resp.status == 206
    conn.close()
    return time.monotonic() - t0, n


def test_conn_rate_cap_is_per_connection(sim):
    rate = 2 * MiB
    sim.set_faults(Fault(where="cdn", conn_rate_bps=rate))
    url = urlsplit(sim.signed_url("org/model", "model.safetensors"))
    path = f"{url.path}?{url.query}"

    # Two connections at once: each gets the whole cap, so together they beat it.
    results: list[tuple[float, int]] = []
    threads = [threading.Thread(target=lambda: results.append(_timed_get(url.hostname, url.port, path, [f"0-{2 * MiB - 1}"])))
               for _ in range(2)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    both = time.monotonic() - t0
    assert len(results) == 2 and all(n == 2 * MiB for _, n in results)
    assert all(n / s < 1.2 * rate for s, n in results)  # each is capped ...
    assert 4 * MiB / both > 1.3 * rate, both  # ... but not by one shared cap

    # One connection: its successive responses share the cap (no fresh burst per request).
    seconds, n = _timed_get(url.hostname, url.port, path, [f"{i * 65536}-{i * 65536 + 65535}" for i in range(16)])
    assert n == MiB and seconds >= 0.8 * (MiB - rate / 20) / rate, seconds


# -- control API -------------------------------------------------------------------------------


def test_control_api_config_log_and_connections(sim, http):
    r = http.post(f"{sim.url}/_sim/config", json={"cdn_url_lifetime": 7, "cdn_url_style": "both"})
    assert r.status_code == 200 and r.json()["cdn_url_lifetime"] == 7 and r.json()["ca_bundle"] is None
    assert http.post(f"{sim.url}/_sim/config", json={"cdn_url_style": "ftp"}).status_code == 400
    assert http.post(f"{sim.url}/_sim/config", json={"bogus": 1}).status_code == 400
    location = http.get(f"{sim.url}/org/model/resolve/main/model.safetensors").headers["location"]
    query = dict(parse_qsl(urlsplit(location).query))
    assert {"Policy", "X-Amz-Signature"} <= set(query) and int(query["Expires"]) - time.time() <= 8
    assert http.get(location, headers={"Range": "bytes=0-0"}).status_code == 206
    log = http.get(f"{sim.url}/_sim/log").json()
    assert [(e["role"], e["status"]) for e in log[-2:]] == [("hub", 302), ("cdn", 206)]
    assert log[-1]["range"] == "bytes=0-0" and log[-1]["path"] == "model.safetensors"
    stats = http.get(f"{sim.url}/_sim/stats").json()
    assert stats["connections"]["cdn"] >= 1
    assert stats["files"]["org/model"]["model.safetensors"]["cdn_requests"] == 1
    assert http.post(f"{sim.url}/_sim/repos", json={"repo_id": "ctl/private", "files": {"a": 1}, "private": True}).status_code == 200
    assert http.get(f"{sim.url}/api/models/ctl/private").status_code == 401
