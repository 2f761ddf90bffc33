"""Bounded requests (issue 8, items 4, 5, 8): the token before the body, a streamed body cap,
/metrics labels that do not grow with hostile input, and a rate limit keyed on the real peer."""
from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .conftest import API_KEY
from ._dl import assert_error

BIG = 64 << 20


def _raw(api: httpx.Client, head: str, body_parts=(), timeout: float = 15.0) -> tuple[int, bytes, bool]:
    """Send a request by hand; returns (status, response bytes, whether every body part was sent).
    The response is read while the body is still being sent, as a server that answers early allows."""
    url = urlsplit(str(api.base_url))
    sock = socket.create_connection((url.hostname, url.port), timeout=timeout)
    sent_all = True
    try:
        sock.sendall(head.encode())
        for part in body_parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                sent_all = False
                break
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    return int(data.split(b" ", 2)[1]), data, sent_all


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def _body(data: bytes) -> dict:
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


def test_anonymous_big_post_is_refused_before_its_body_is_read(api):
    """64 MB announced, 256 KiB sent: the 401 arrives without the server waiting for the rest."""
    head = ("POST /api/download-model HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {BIG}\r\n\r\n")
    status, data, _ = _raw(api, head, [b"x" * (256 << 10)])
    assert status == 401, data[:300]
    assert _body(data)["error"] == "unauthorized"
    # a wrong token is no different
    status, data, _ = _raw(api, head.replace("Host: x", "Host: x\r\nAuthorization: Bearer nope"), [b"x" * 1024])
    assert status == 401


def test_declared_length_past_the_cap_is_413_at_once(api_factory):
    api = api_factory(max_body_bytes=4096)
    head = ("POST /api/download-model HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {API_KEY}\r\nContent-Length: {BIG}\r\n\r\n")
    status, data, _ = _raw(api, head, [b"{" * 1024])
    assert status == 413 and _body(data)["error"] == "payload_too_large", data[:300]
    # under the cap, bodies work as before
    assert_error(api.post("/api/download-model", json={"model_id": "../x"}), 422, "invalid_model_id")


def test_chunked_body_past_the_cap_is_413(api_factory):
    """No Content-Length to check: the count is kept while the body streams in."""
    api = api_factory(max_body_bytes=4096)
    head = ("POST /api/download-model HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {API_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b'{"model_id": "org/name", "pad": "' + b"x" * 2000
    parts = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 64 + [b"0\r\n\r\n"]
    status, data, _ = _raw(api, head, parts)
    assert status == 413, data[:300]
    assert _body(data) == {"error": "payload_too_large", "status": 413,
                           "detail": "The request body is larger than 4096 bytes (MAX_BODY_BYTES)."}
    assert api.get("/api/jobs").json() == []


def _metrics(api: httpx.Client) -> tuple[int, set]:
    text = api.get("/metrics").text
    labels = {(s.labels["method"], s.labels["route"]) for f in text_string_to_metric_families(text)
              for s in f.samples if s.name == "llmbox_http_request_duration_seconds_count"}
    return len(text), labels


def test_metrics_do_not_grow_with_made_up_methods_and_paths(api):
    anon = httpx.Client(base_url=api.base_url, timeout=30)
    for i in range(3):   # every label value these requests can produce exists after the warm-up
        api.request(f"WARM{i}", f"/api/jobs/warm{i}")
        api.request("PROPFIND", "/api/jobs")
        anon.request(f"WARM{i}", f"/nothing/{i}")
        for client in (api, anon):
            client.request(f"WARM{i}", f"/made/{i}")
            client.get(f"/api/jobs/{i:016x}/nope")
    _metrics(api)   # the scrape itself is a label set too
    size, _ = _metrics(api)
    for i in range(120):
        client = api if i % 2 else anon
        client.request(f"M{i}X", f"/made/up/{i}?q={i}")
        client.request(f"BREW{i}", "/api/jobs")
        client.get(f"/api/jobs/{i:016x}/nope{i}")
    after, labels = _metrics(api)
    assert after - size < 1024, f"/metrics grew from {size} to {after} bytes"
    methods = {m for m, _ in labels}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}, methods
    assert not any("made" in r or "nope" in r for _, r in labels), labels
    anon.close()


def test_rate_limit_keys_on_the_peer_not_on_x_forwarded_for(api_factory):
    api = api_factory(rate_limit_enabled=True, rate_limit="5/minute")
    codes = [api.get("/api/jobs", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(12)]
    assert codes == [200] * 5 + [429] * 7, codes


def test_x_forwarded_for_counts_only_from_a_trusted_proxy(api_factory):
    api = api_factory(rate_limit_enabled=True, rate_limit="5/minute", trusted_proxies="127.0.0.1/32, ::1")
    codes = [api.get("/api/jobs", headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(12)]
    assert codes == [200] * 12, codes
    # the client named by the last untrusted hop is limited; what it wrote further left does not count
    codes = [api.get("/api/jobs", headers={"X-Forwarded-For": f"198.51.100.{i}, 203.0.113.77"}).status_code
             for i in range(7)]
    assert codes == [200] * 5 + [429] * 2, codes


def test_anonymous_requests_do_not_spend_the_token_holders_budget(api_factory):
    api = api_factory(rate_limit_enabled=True, rate_limit="5/minute")
    with httpx.Client(base_url=api.base_url, timeout=30) as anon:
        codes = [anon.get("/api/jobs").status_code for _ in range(10)]
    assert codes == [401] * 5 + [429] * 5, codes
    assert [api.get("/api/jobs").status_code for _ in range(5)] == [200] * 5
