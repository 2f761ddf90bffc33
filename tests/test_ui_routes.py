"""The dashboard's HTTP side without a browser: public static files with strict headers, and the
token-only event stream a dashboard reads (job snapshots and limits as they change)."""
from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from .conftest import API_KEY

pytestmark = pytest.mark.timeout(60)


def test_ui_files_are_public_with_strict_headers(api):
    base = str(api.base_url).rstrip("/")
    page = httpx.get(f"{base}/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp and page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script" in page.text and "<script>" not in page.text and " style=" not in page.text
    js = httpx.get(f"{base}/ui/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert API_KEY not in js.text
    for bad in ("/ui/../settings.py", "/ui/nope.js", "/ui/index.html", "/ui/app.py"):
        r = httpx.get(base + bad)
        # `..` is resolved by the client: /settings.py is outside /ui, so the token gate answers 401.
        assert r.status_code in ((401,) if ".." in bad else (404, 422)) and r.json()["error"], (bad, r.text)
    assert httpx.get(f"{base}/ui/", follow_redirects=False).headers["location"] == "/ui"
    assert "/ui" not in api.get("/openapi.json").json()["paths"]


def _events(api, until, timeout: float = 20.0) -> list[tuple[str, dict]]:
    got: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout
    with api.stream("GET", "/api/events") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                got.append((event, json.loads(line[5:])))
                if until(got):
                    return got
            assert time.monotonic() < deadline, f"stream did not deliver in time: {got[-5:]}"
    return got


def test_event_stream_needs_the_token_and_follows_jobs_and_limits(api, sim):
    assert httpx.get(str(api.base_url).rstrip("/") + "/api/events").status_code == 401
    repo = f"org/ev-{uuid.uuid4().hex[:8]}"
    sim.add_repo(repo, {"config.json": b"{}", "model.safetensors": 1 << 20})
    job = api.post("/api/download-model", params={"model_id": repo}).json()
    api.put("/api/limits", json={"bandwidth_bps": "7MB/s"})

    def done(got):
        # A pass of the stream sends the jobs, then the limits: a download that is already complete
        # at the first pass must not end the wait before that pass's limits event.
        return (any(e == "job" and d["job_id"] == job["job_id"] and d["status"] == "complete" for e, d in got)
                and any(e == "limits" for e, _ in got))
    got = _events(api, done)
    limits = [d for e, d in got if e == "limits"]
    assert limits and limits[0]["bandwidth"] == "7 MB/s"
    mine = [d for e, d in got if e == "job" and d["job_id"] == job["job_id"]]
    assert mine[-1]["progress"] == 100 and "throttled" in mine[-1]
    kinds = {d["kind"] for e, d in got if e == "job"}
    assert {"download", "limits"} <= kinds
