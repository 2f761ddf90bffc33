"""Webhooks against a real receiver: an http.server on loopback in a thread that records requests."""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from api import webhooks
from api.testing.hubsim.faults import Fault

from ._dl import assert_error, start, wait_bytes, wait_status
from .servers import wait_until


class Receiver:
    """Records every request; answers from a script of (status, headers) then 200."""

    def __init__(self, script=None, host: str = "127.0.0.1"):
        self.host = host
        self.requests: list[dict] = []
        self.script = list(script or [])
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer._lock:
                    outer.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                           "body": body})
                    status, headers = outer.script.pop(0) if outer.script else (200, {})
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST  # noqa: N815 - a followed redirect might arrive as GET

            def log_message(self, *a):
                pass

        server_class = type("Server", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6}) \
            if ":" in host else ThreadingHTTPServer
        self.server = server_class((host, 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def wait(self, n: int = 1, timeout: float = 30.0) -> list[dict]:
        wait_until(lambda: len(self.requests) >= n, timeout, message=f"{n} webhook request(s)")
        return self.requests


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture(autouse=True)
def _short_backoff(monkeypatch):
    """Retry waits of at most 0.2 s (module default; settings win once they have the fields)."""
    monkeypatch.setattr(webhooks, "DEFAULT_BACKOFF_MAX", 0.2)
    monkeypatch.setattr(webhooks, "DEFAULT_MAX_ATTEMPTS", 5)


FAST = {"webhook_backoff_max": 0.2, "webhook_max_attempts": 5}


def small_repo(sim, name: str) -> str:
    sim.add_repo(name, {"config.json": b'{"model_type": "llama"}\n', "model.safetensors": 64 << 10})
    return name


def webhook_state(api, job_id: str, final=("delivered", "failed"), timeout: float = 30.0) -> dict:
    def check():
        w = api.get(f"/api/jobs/{job_id}").json().get("webhook")
        return w and w["status"] in final and w
    return wait_until(check, timeout, message=f"webhook state of {job_id} in {final}")


def test_complete_job_posts_job_json(api_factory, sim, receiver):
    api = api_factory(**FAST)
    repo = small_repo(sim, "wh/complete")
    j = start(api, repo, callback_url=receiver.url + "/hook?run=1")
    assert j["callback_url"] == receiver.url + "/hook?run=1"
    done = wait_status(api, j["job_id"], "complete")
    req = receiver.wait(1)[0]
    assert req["path"] == "/hook?run=1"
    assert req["headers"]["content-type"] == "application/json"
    assert req["headers"]["x-job-id"] == j["job_id"]
    assert "x-signature-256" not in req["headers"], "unsigned without WEBHOOK_SECRET"
    sent = json.loads(req["body"])
    assert sent["job_id"] == j["job_id"] and sent["status"] == "complete" and sent["kind"] == "download"
    assert sent["model_id"] == repo and sent["progress"] == 100 and sent["completed_at"] == done["completed_at"]
    assert "webhook" not in sent
    w = webhook_state(api, j["job_id"])
    assert w == {"status": "delivered", "attempts": 1, "last_status": 200, "last_error": None}
    assert len(receiver.requests) == 1, "delivered exactly once"


def test_signature_is_hmac_sha256_of_the_body(api_factory, sim, receiver):
    api = api_factory(webhook_secret="s3cret", **FAST)
    repo = small_repo(sim, "wh/signed")
    j = start(api, repo, callback_url=receiver.url + "/signed")
    req = receiver.wait(1)[0]
    expected = "sha256=" + hmac.new(b"s3cret", req["body"], hashlib.sha256).hexdigest()
    assert req["headers"]["x-signature-256"] == expected
    assert json.loads(req["body"])["job_id"] == j["job_id"]
    wrong = "sha256=" + hmac.new(b"other", req["body"], hashlib.sha256).hexdigest()
    assert req["headers"]["x-signature-256"] != wrong


def test_retries_5xx_then_delivers(api_factory, sim):
    api = api_factory(**FAST)
    repo = small_repo(sim, "wh/retry")
    with Receiver(script=[(500, {}), (500, {})]) as rcv:
        j = start(api, repo, callback_url=rcv.url + "/flaky")
        w = webhook_state(api, j["job_id"])
        assert w["status"] == "delivered", w
        assert w["attempts"] == 3 and w["last_status"] == 200, w
        assert len(rcv.requests) == 3
        bodies = {r["body"] for r in rcv.requests}
        assert len(bodies) == 1, "every attempt sends the same body"


def test_conflict_is_retried(api_factory, sim):
    """N8n answers 409 while the execution has not reached its Wait node yet."""
    api = api_factory(**FAST)
    repo = small_repo(sim, "wh/conflict")
    with Receiver(script=[(409, {})]) as rcv:
        j = start(api, repo, callback_url=rcv.url + "/webhook-waiting/1")
        w = webhook_state(api, j["job_id"])
        assert w["status"] == "delivered" and w["attempts"] == 2, w


def test_gives_up_after_max_attempts(api_factory, sim):
    api = api_factory(**FAST)
    repo = small_repo(sim, "wh/down")
    with Receiver(script=[(503, {})] * 10) as rcv:
        j = start(api, repo, callback_url=rcv.url + "/down")
        w = webhook_state(api, j["job_id"])
        assert w["status"] == "failed" and w["attempts"] == 5 and w["last_status"] == 503, w
        assert len(rcv.requests) == 5


def test_client_error_is_not_retried(api_factory, sim):
    api = api_factory(**FAST)
    repo = small_repo(sim, "wh/gone")
    with Receiver(script=[(410, {})]) as rcv:
        j = start(api, repo, callback_url=rcv.url + "/gone")
        w = webhook_state(api, j["job_id"])
        assert w["status"] == "failed" and w["attempts"] == 1 and w["last_status"] == 410, w


def test_redirect_is_not_followed(api_factory, sim):
    api = api_factory(**FAST)
    repo = small_repo(sim, "wh/redirect")
    with Receiver() as target, Receiver(script=[(302, {})]) as rcv:
        rcv.script = [(302, {"Location": target.url + "/elsewhere"})]
        j = start(api, repo, callback_url=rcv.url + "/moved")
        w = webhook_state(api, j["job_id"])
        assert w["status"] == "failed" and w["attempts"] == 1 and w["last_status"] == 302, w
        assert "redirect" in w["last_error"]
        assert len(rcv.requests) == 1
        assert target.requests == [], "the Location was called"


def test_unreachable_receiver_fails_after_retries(api_factory, sim):
    api = api_factory(**FAST)
    repo = small_repo(sim, "wh/unreachable")
    with Receiver() as rcv:
        dead = rcv.url
    j = start(api, repo, callback_url=dead + "/nobody")
    w = webhook_state(api, j["job_id"])
    assert w["status"] == "failed" and w["attempts"] == 5 and w["last_status"] is None, w
    assert w["last_error"] == "ConnectError"


def test_allowed_hosts(api_factory, sim, receiver):
    port = receiver.server.server_address[1]
    api = api_factory(webhook_allowed_hosts=f"n8n.internal, 127.0.0.1:{port}", **FAST)
    repo = small_repo(sim, "wh/allowed")
    body = assert_error(api.post("/api/download-model", params={"model_id": repo,
                                                                "callback_url": "http://evil.example/x"}),
                        422, "callback_not_allowed")
    assert "WEBHOOK_ALLOWED_HOSTS" in body["detail"]
    assert_error(api.post("/api/download-model", params={"model_id": repo, "callback_url": f"http://127.0.0.1:{port + 1}/x"}),
                 422, "callback_not_allowed")
    # JSON body form is checked the same way
    assert_error(api.post("/api/download-model", json={"model_id": repo, "callback_url": "https://evil.example/"}),
                 422, "callback_not_allowed")
    assert api.get("/api/jobs").json() == [], "a refused callback creates no job"
    # the other routes that take callback_url refuse too
    assert_error(api.post("/api/models/verify", params={"model_id": repo, "callback_url": "http://evil.example/"}),
                 422, "callback_not_allowed")
    assert_error(api.put("/api/active-model", params={"model_id": repo, "restart": "false",
                                                      "callback_url": "http://evil.example/"}),
                 422, "callback_not_allowed")
    # an allowed host (case-insensitive) works
    j = start(api, repo, callback_url=receiver.url + "/ok")
    assert webhook_state(api, j["job_id"])["status"] == "delivered"
    assert json.loads(receiver.wait(1)[0]["body"])["job_id"] == j["job_id"]


@pytest.mark.parametrize("bad", [
    "not a url", "/relative/path", "ftp://127.0.0.1/x", "javascript:alert(1)", "http://", "http:///nohost",
    "http://127.0.0.1:99999/", "http://[::1/x", "http://127.0.0.1/a b", "http://127.0.0.1/\r\nX-Evil: 1",
    "http://127.0.0.1/" + "a" * 2001, "file:///etc/passwd",
])
def test_bad_callback_url_is_422(api, sim, bad):
    """Refused before any job exists (the query pattern answers invalid_input, the validator invalid_callback_url)."""
    repo = small_repo(sim, "wh/bad-url")
    for kw in ({"params": {"model_id": repo, "callback_url": bad}},
               {"json": {"model_id": repo, "callback_url": bad}}):
        body = assert_error(api.post("/api/download-model", **kw), 422)
        assert body["error"] in ("invalid_callback_url", "invalid_input"), body
        assert "callback_url" in body["detail"], body
    assert api.get("/api/jobs").json() == []


def test_failed_job_notifies(api_factory, sim, receiver):
    api = api_factory(**FAST)
    repo = small_repo(sim, "wh/failed")
    sim.set_faults(Fault(repo=repo, path="model.safetensors", on="get", status=404))
    j = start(api, repo, callback_url=receiver.url + "/failed")
    failed = wait_status(api, j["job_id"], ("failed", "complete"))
    assert failed["status"] == "failed", failed
    sent = json.loads(receiver.wait(1)[0]["body"])
    assert sent["job_id"] == j["job_id"] and sent["status"] == "failed"
    assert sent["error_code"] == failed["error_code"] and sent["error"]
    assert webhook_state(api, j["job_id"])["status"] == "delivered"


def test_cancelled_job_notifies(api_factory, sim, receiver):
    api = api_factory(**FAST)
    repo = "wh/cancelled"
    sim.add_repo(repo, {"config.json": b"{}", "model.safetensors": 8 << 20})
    sim.set_faults(Fault(repo=repo, rate_bps=500_000))
    j = start(api, repo, callback_url=receiver.url + "/cancelled")
    wait_bytes(api, j["job_id"], 1)
    r = api.post(f"/api/jobs/{j['job_id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    sent = json.loads(receiver.wait(1)[0]["body"])
    assert sent["job_id"] == j["job_id"] and sent["status"] == "cancelled"
    assert webhook_state(api, j["job_id"])["status"] == "delivered"


def test_switch_and_verify_jobs_notify(api_factory, sim, receiver):
    api = api_factory(**FAST)
    repo = small_repo(sim, "wh/switch")
    j = start(api, repo)
    wait_status(api, j["job_id"], "complete")
    v = api.post("/api/models/verify", params={"model_id": repo, "callback_url": receiver.url + "/verify"})
    assert v.status_code == 202, v.text
    s = api.put("/api/active-model", params={"model_id": repo, "restart": "false",
                                             "callback_url": receiver.url + "/switch"})
    assert s.status_code == 202, s.text
    reqs = receiver.wait(2)
    by_path = {r["path"]: json.loads(r["body"]) for r in reqs}
    assert by_path["/verify"]["kind"] == "verify" and by_path["/verify"]["status"] == "complete"
    assert by_path["/switch"]["kind"] == "switch" and by_path["/switch"]["status"] == "complete"
    assert by_path["/switch"]["job_id"] == s.json()["job_id"]
    assert api.get("/api/active-model").json()["model_id"] == repo


def test_no_callback_no_webhook_field(api, sim, receiver):
    repo = small_repo(sim, "wh/none")
    j = start(api, repo)
    done = wait_status(api, j["job_id"], "complete")
    assert done["callback_url"] is None and "webhook" not in done
    assert receiver.requests == []


def test_notifier_reads_optional_settings():
    """webhook_max_attempts / webhook_backoff_max are read from the settings when present."""
    class S:
        webhook_secret = None
        webhook_max_attempts = 2
        webhook_backoff_max = 0.01
    n = webhooks.WebhookNotifier(S(), store=None)
    assert (n.attempts, n.max_wait) == (2, 0.01)
    n = webhooks.WebhookNotifier(S(), store=None, attempts=7, max_wait=1.5)
    assert (n.attempts, n.max_wait) == (7, 1.5)
