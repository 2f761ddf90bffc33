"""The whole API against its own OpenAPI document: no 5xx, conforming answers, auth enforced,
and the request limits (body cap, token before body) on every operation that takes a body."""
from __future__ import annotations

import collections

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api import create_app

from .conftest import API_KEY, make_settings
from .servers import serve_in_thread, wait_until

AUTH = {"Authorization": f"Bearer {API_KEY}"}
STATUSES: collections.Counter = collections.Counter()
# Small enough that generated bodies (globs up to 2000 characters) hit it: 413 must be documented.
MAX_BODY = 1024


@pytest.fixture(scope="module")
def st_url(tmp_path_factory, sim, engine):
    # `engine`: the real Docker engine behind the container routes (CI never skips it)
    tmp = tmp_path_factory.mktemp("schemathesis")
    app = create_app(make_settings(tmp, sim, docker_host=None, inference_container="llmbox-st-absent",
                                   switch_timeout=5, max_body_bytes=MAX_BODY))
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(st_url, sim):
    # One downloaded model so that verify/delete/switch reach their deeper branches.
    sim.add_repo("st/model", {"config.json": b"{}", "model.safetensors": 1 << 20})
    client = httpx.Client(base_url=st_url, headers=AUTH, timeout=30)
    job = client.post("/api/download-model", params={"model_id": "st/model"}).json()
    wait_until(lambda: client.get(job["status_url"]).json()["status"] == "complete", 60)
    schema = schemathesis.openapi.from_url(f"{st_url}/openapi.json", headers=AUTH)
    # Configured, not passed per call: schemathesis then knows which cases leave the token out
    # on purpose (negative auth cases) and checks that those are refused.
    schema.config.update(headers=AUTH)
    # A body past MAX_BODY_BYTES is refused with 413 before it is validated: a rejection too.
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "413"]
    # /api/events never ends by design (a dashboard's stream): tests/test_ui_routes.py reads it.
    yield schema.exclude(path="/api/events")


schema = schemathesis.pytest.from_fixture("api_schema")

# Schema-valid requests the limits refuse on purpose, with their own documented codes: a body past
# MAX_BODY_BYTES, and a callback_url the SSRF policy refuses (generated host names do not resolve,
# `http://0` is 0.0.0.0). Any other refusal of valid data still fails the run.
LIMIT_REFUSALS = {(413, "payload_too_large"), (422, "callback_not_allowed")}


@schemathesis.check
def positive_data_acceptance_but_limits(ctx, response, case):
    if response.status_code in (413, 422):
        try:
            code = response.json().get("error")
        except ValueError:
            code = None
        if (response.status_code, code) in LIMIT_REFUSALS:
            return None
    return positive_data_acceptance(ctx, response, case)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case):
    response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
    STATUSES[response.status_code // 100] += 1


def test_schemathesis_got_past_the_token():
    """Guards the configuration above: most generated requests must be authenticated."""
    assert STATUSES[2] >= 50, STATUSES


def _body_operations(url: str) -> list[tuple[str, str, dict]]:
    doc = httpx.get(f"{url}/openapi.json", headers=AUTH, timeout=30).json()
    return [(method.upper(), path, op) for path, ops in doc["paths"].items() for method, op in ops.items()
            if "requestBody" in op]


def test_every_body_is_capped_and_the_cap_is_documented(st_url):
    """The limits are part of the contract: each operation with a body documents 413, answers it
    past MAX_BODY_BYTES (declared or chunked), and an anonymous request gets 401 whatever its size."""
    ops = _body_operations(st_url)
    assert len(ops) >= 5, [p for _, p, _ in ops]
    big = b'{"model_id": "st/model", "pad": "' + b"x" * MAX_BODY + b'"}'
    with httpx.Client(base_url=st_url, timeout=30) as client:
        for method, path, op in ops:
            assert "413" in op["responses"] and "401" in op["responses"], (method, path)
            concrete = path.replace("{job_id}", "0123456789abcdef").replace("{name}", "llmbox-st-absent")
            json_ct = {"Content-Type": "application/json"}
            r = client.request(method, concrete, content=big, headers={**AUTH, **json_ct})
            assert r.status_code == 413 and r.json()["error"] == "payload_too_large", (method, path, r.text)
            r = client.request(method, concrete, content=iter([big[:600], big[600:]]), headers={**AUTH, **json_ct})
            assert r.status_code == 413, (method, path, "chunked", r.text)
            r = client.request(method, concrete, content=big, headers=json_ct)
            assert r.status_code == 401 and r.json()["error"] == "unauthorized", (method, path, r.text)
