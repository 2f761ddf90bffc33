"""The bearer token on every route, error bodies, rate limiting, metrics, and no token leaking anywhere."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api import create_app

from ._dl import MiB, assert_error, start, wait_complete
from .conftest import API_KEY, GATED_TOKEN, make_settings
from .servers import ROOT, free_port

SAMPLE_PARAMS = {"job_id": "0123456789abcdef", "name": "vllm", "model_id": "org/name"}


def _routes(api) -> list[tuple[str, str]]:
    doc = api.get("/openapi.json").json()
    out = []
    for path, ops in doc["paths"].items():
        url = re.sub(r"\{(\w+)\}", lambda m: SAMPLE_PARAMS.get(m.group(1), "x"), path)
        for method in ops:
            if method in ("get", "post", "put", "delete", "patch"):
                out.append((method.upper(), url))
    return out


def _anon(api) -> httpx.Client:
    return httpx.Client(base_url=str(api.base_url), timeout=30)


def _assert_401(resp, what):
    assert resp.status_code == 401, (what, resp.status_code, resp.text[:300])
    assert resp.headers.get("www-authenticate", "").lower().startswith("bearer"), (what, resp.headers)
    assert_error(resp, 401)


def test_every_route_but_health_needs_the_token(api):
    routes = _routes(api)
    paths = {u for _, u in routes}
    assert "/api/download-model" in paths and "/api/jobs" in paths and "/metrics" in paths, paths
    wrong = [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Bearer {API_KEY}x"},
             {"Authorization": f"Basic {API_KEY}"}, {"Authorization": "Bearer"}, {"Authorization": "Bearer  "  + "x"}, {"Authorization": API_KEY},
             {"Authorization": "Bearer t\u00f6k\u00e9n-\u2603".encode()},
             {"Authorization": b"Bearer " + API_KEY.encode()[:-1] + b"\xff"}]
    with _anon(api) as anon:
        for method, url in routes:
            if url == "/health":
                r = anon.request(method, url)
                assert r.status_code == 200 and r.json()["status"] == "ok"
                continue
            for headers in wrong:
                _assert_401(anon.request(method, url, headers=headers), (method, url, headers))
        # The check comes before anything else looks at the request.
        _assert_401(anon.post("/api/download-model", params={"model_id": "../x"}), "invalid input, no token")
        _assert_401(anon.post("/api/download-model", json={"model_id": "org/name"}), "json body, no token")
    # The right token, in any case of the scheme, is accepted.
    assert api.get("/api/jobs").status_code == 200
    with _anon(api) as anon:
        assert anon.get("/api/jobs", headers={"Authorization": f"bearer {API_KEY}"}).status_code == 200


def test_create_app_refuses_an_empty_key(tmp_path, sim):
    for key in ("", "   "):
        with pytest.raises(RuntimeError, match="PROXY_API_KEY"):
            create_app(make_settings(tmp_path, sim, proxy_api_key=key))
    env = {**os.environ, "PROXY_API_KEY": "", "API_PORT": str(free_port()), "API_HOST": "127.0.0.1",
           "MODELS_DIR": str(tmp_path / "m"), "STATE_DB": str(tmp_path / "s.db"),
           "ENV_FILE": str(tmp_path / "none.env"), "DOCKER_HOST": "unix:///nonexistent.sock"}
    proc = subprocess.run([sys.executable, "-m", "api"], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert proc.returncode != 0
    assert b"PROXY_API_KEY" in proc.stderr + proc.stdout


def test_rate_limit_answers_429_with_retry_after(api_factory):
    api = api_factory(rate_limit_enabled=True, rate_limit="5/minute")
    codes = [api.get("/api/jobs").status_code for _ in range(5)]
    assert codes == [200] * 5
    r = api.get("/api/jobs")
    assert_error(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) > 0
    # Health checks are never limited.
    assert all(api.get("/health").status_code == 200 for _ in range(10))


def test_unknown_route_and_wrong_method_have_json_bodies(api):
    body = assert_error(api.get("/api/no-such-route"), 404)
    assert body["error"] == "not_found"
    r = api.delete("/api/jobs")
    assert_error(r, 405)
    assert "GET" in r.headers.get("Allow", ""), r.headers
    with _anon(api) as anon:
        r = anon.get("/api/no-such-route")
        assert r.status_code in (401, 404)
        assert_error(r, r.status_code)


def test_index_lists_endpoints(api):
    r = api.get("/")
    assert r.status_code == 200
    body = r.json()
    assert body["service"] and body["version"]
    endpoints = body["endpoints"]
    for path, method in [("/api/download-model", "POST"), ("/api/download-progress", "GET"), ("/api/jobs", "GET"),
                         ("/api/jobs/{job_id}", "GET"), ("/api/jobs/{job_id}/events", "GET"),
                         ("/api/jobs/{job_id}/cancel", "POST"), ("/health", "GET"), ("/metrics", "GET")]:
        assert method in endpoints.get(path, []), (path, endpoints)


def test_metrics(api, sim):
    repo = "auth/metrics"
    sim.add_repo(repo, {"config.json": b"{}", "model.safetensors": 2 * MiB})
    j = start(api, repo)
    wait_complete(api, j["job_id"])
    r = api.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples.setdefault(s.name, []).append(s)
    assert samples["llmbox_downloaded_bytes_total"][0].value >= 2 * MiB
    jobs = {(s.labels["kind"], s.labels["status"]): s.value for s in samples["llmbox_jobs"]}
    assert jobs[("download", "complete")] == 1
    latency = [s for s in samples["llmbox_http_request_duration_seconds_count"]
               if s.labels.get("route") == "/api/jobs/{job_id}"]
    assert latency and latency[0].value >= 1


def test_tokens_never_appear_in_logs_or_responses(api_factory, sim, caplog):
    caplog.set_level(logging.DEBUG)
    api = api_factory(hf_token=GATED_TOKEN)
    repo = "auth/gated-secret"
    sim.add_repo(repo, {"config.json": b"{}", "model.safetensors": 1 * MiB}, gated=True)
    texts = []
    j = start(api, repo)
    texts.append(str(j))
    wait_complete(api, j["job_id"])
    sim.set_faults()
    bad = api.post("/api/download-model", params={"model_id": "auth/missing"})
    texts.append(bad.text)
    for path in ("/", "/api/jobs", f"/api/jobs/{j['job_id']}", "/api/download-progress", "/metrics",
                 "/openapi.json", "/health", "/api/no-such-route"):
        r = api.get(path)
        texts.append(r.text + str(dict(r.headers)))
    with _anon(api) as anon:
        for token in (API_KEY + "x", GATED_TOKEN):
            r = anon.get("/api/jobs", headers={"Authorization": f"Bearer {token}"})
            texts.append(r.text + str(dict(r.headers)))
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert caplog.records, "nothing was logged: the check would prove nothing"
    for secret in (API_KEY, GATED_TOKEN):
        assert secret not in logged
        for t in texts:
            assert secret not in t


def test_openapi_document_needs_the_token(api):
    with _anon(api) as anon:
        _assert_401(anon.get("/openapi.json"), "/openapi.json")
        assert anon.get("/docs").status_code == 401 or anon.get("/docs").status_code == 404
    assert "/api/download-model" in api.get("/openapi.json").json()["paths"]
