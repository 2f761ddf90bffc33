"""The SSRF policy of callback_url (issue 8, item 3): what is refused at submit, what is allowed, and
that a delivery connects to the very address that was checked."""
from __future__ import annotations

import json

import pytest

from api.callback_policy import CallbackPolicy
from api.errors import InvalidInput
from api.jobs.store import JobStore
from api.webhooks import WebhookNotifier

from ._dl import assert_error, start, wait_status
from .servers import free_port, wait_until
from .test_webhooks import Receiver, small_repo

# Loopback, unspecified, private, link-local, CGNAT and metadata addresses, in the spellings a
# client library would connect to.
INTERNAL = [
    "http://127.0.0.1/x", "http://2130706433/x", "http://0x7f000001/x", "http://127.1/x", "http://0177.0.0.1/x",
    "http://0.0.0.0/x", "http://0/x", "http://localhost/x", "http://LOCALHOST:8080/x", "http://[::1]/x",
    "http://[::]/x", "http://[::ffff:127.0.0.1]/x", "http://[::ffff:7f00:1]/x", "http://[64:ff9b::7f00:1]/x",
    "http://10.1.2.3/x", "http://172.16.0.1/x", "http://192.168.1.1:5678/x", "http://[fd12:3456::1]/x",
    "http://169.254.1.1/x", "http://[fe80::1]/x", "http://100.64.0.1/x",
    "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/x", "https://2852039166/x",
]


@pytest.fixture
def open_api(api_factory):
    """An API with the default (empty) WEBHOOK_ALLOWED_HOSTS."""
    return api_factory(webhook_allowed_hosts="")


def test_internal_addresses_are_refused_in_any_spelling(open_api, sim):
    repo = small_repo(sim, "whp/internal")
    for url in INTERNAL:
        body = assert_error(open_api.post("/api/download-model", params={"model_id": repo, "callback_url": url}),
                            422, "callback_not_allowed")
        assert "callback_url" in body["detail"], body
    # the JSON body form and the other job-creating routes are checked the same way
    assert_error(open_api.post("/api/download-model", json={"model_id": repo, "callback_url": INTERNAL[1]}),
                 422, "callback_not_allowed")
    assert_error(open_api.post("/api/models/verify", params={"model_id": repo, "callback_url": INTERNAL[2]}),
                 422, "callback_not_allowed")
    assert_error(open_api.put("/api/active-model", params={"model_id": repo, "restart": "false",
                                                           "callback_url": INTERNAL[3]}), 422, "callback_not_allowed")
    assert open_api.get("/api/jobs").json() == [], "a refused callback creates no job"


def test_metadata_address_is_refused_even_when_listed(api_factory, sim):
    api = api_factory(webhook_allowed_hosts="169.254.169.254, [fd00:ec2::254], 169.254.169.254:*")
    repo = small_repo(sim, "whp/metadata")
    for url in ("http://169.254.169.254/latest/", "http://[fd00:ec2::254]/", "http://2852039166/",
                "http://[::ffff:169.254.169.254]/"):
        body = assert_error(api.post("/api/download-model", params={"model_id": repo, "callback_url": url}),
                            422, "callback_not_allowed")
        assert "metadata" in body["detail"]


def test_a_listed_host_allows_only_its_port(api_factory, sim):
    """Allowing `localhost` must not reach a Docker socket proxy on :2375 of the same box."""
    repo = small_repo(sim, "whp/ports")
    port = free_port()   # nothing listens there: the deliveries fail, the submits are what counts
    api = api_factory(webhook_allowed_hosts=f"localhost, 127.0.0.1:{port}", webhook_max_attempts=1)
    for url in ("http://localhost:2375/containers/json", "http://127.0.0.1:2375/", "http://127.0.0.1/",
                f"http://[::1]:{port}/", f"http://127.0.0.1:{port + 1}/"):
        assert_error(api.post("/api/download-model", params={"model_id": repo, "callback_url": url}),
                     422, "callback_not_allowed")
    j = start(api, repo, callback_url="http://localhost/hook")           # default port of a bare host
    assert j["callback_url"] == "http://localhost/hook"
    wait_status(api, j["job_id"])
    j = start(api, small_repo(sim, "whp/ports2"), callback_url=f"http://2130706433:{port}/hook")  # the listed address
    wait_status(api, j["job_id"])


def test_ipv6_loopback_callback_is_delivered_when_allowed(api_factory, sim):
    with Receiver(host="::1") as rcv:
        port = rcv.server.server_address[1]
        api = api_factory(webhook_allowed_hosts=f"[::1]:{port}", webhook_backoff_max=0.2)
        repo = small_repo(sim, "whp/ipv6")
        j = start(api, repo, callback_url=f"{rcv.url}/hook")
        wait_status(api, j["job_id"])
        got = rcv.wait(1)
        assert json.loads(got[0]["body"])["job_id"] == j["job_id"]
        assert got[0]["headers"]["host"] == f"[::1]:{port}"
        wait_until(lambda: api.get(f"/api/jobs/{j['job_id']}").json()["webhook"]["status"] == "delivered", 30)


def test_public_addresses_pass_and_the_checked_address_is_kept():
    """No traffic: the policy alone (public literals resolve without DNS)."""
    target = CallbackPolicy("").check("https://93.184.216.34:8443/hook?x=1")
    assert (target.address, target.host, target.port, target.scheme) == ("93.184.216.34", "93.184.216.34", 8443, "https")
    with pytest.raises(InvalidInput) as e:
        CallbackPolicy("hooks.example.com").check("https://93.184.216.34/")
    assert e.value.code == "callback_not_allowed"
    with pytest.raises(ValueError):
        CallbackPolicy("n8n:notaport")


def test_delivery_connects_to_the_checked_address(tmp_path):
    """DNS rebinding: the name is resolved once per attempt and that address is the one connected to,
    with the name in the Host header; an answer that turns internal is refused, not followed."""
    answers = [["127.0.0.1"]]
    calls: list[str] = []

    def resolve(host: str, port: int):
        calls.append(host)
        return answers[0]

    store = JobStore(tmp_path / "s.db")
    settings = type("S", (), {"webhook_secret": None})()
    with Receiver() as rcv:
        port = rcv.server.server_address[1]
        policy = CallbackPolicy(f"hooks.test:{port}", resolve=resolve)
        notifier = WebhookNotifier(settings, store, attempts=1, max_wait=0.01, policy=policy)
        url = f"http://hooks.test:{port}/hook"
        state = notifier.deliver({"job_id": "a" * 16, "callback_url": url, "status": "complete"})
        assert state["status"] == "delivered", state
        assert calls == ["hooks.test"], "resolved once; the connection used that answer, not a new lookup"
        assert rcv.requests[0]["headers"]["host"] == f"hooks.test:{port}"
        assert rcv.requests[0]["path"] == "/hook"

        answers[0] = ["169.254.169.254"]
        state = notifier.deliver({"job_id": "b" * 16, "callback_url": url, "status": "complete"})
        assert state["status"] == "failed" and state["last_error"].startswith("callback_not_allowed"), state
        answers[0] = ["127.0.0.1", "10.0.0.1"]     # one internal answer that is not listed spoils the lot
        with pytest.raises(InvalidInput):
            CallbackPolicy("", resolve=resolve).check("http://hooks.test/")
        assert len(rcv.requests) == 1
    store.close()
