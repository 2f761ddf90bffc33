"""The whole API against its own OpenAPI document: no 5xx, conforming answers, auth enforced."""
from __future__ import annotations

import collections

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from api import create_app

from .conftest import API_KEY, make_settings
from .servers import serve_in_thread

AUTH = {"Authorization": f"Bearer {API_KEY}"}
STATUSES: collections.Counter = collections.Counter()


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, sim, engine):
    # `engine`: the real Docker engine behind the container routes (CI never skips it)
    sim.add_repo("st/model", {"config.json": b"{}", "model.safetensors": 1 << 20})
    tmp = tmp_path_factory.mktemp("schemathesis")
    app = create_app(make_settings(tmp, sim, docker_host=None, inference_container="llmbox-st-absent",
                                   switch_timeout=5))
    with serve_in_thread(app) as url:
        # One downloaded model so that verify/delete/switch reach their deeper branches.
        client = httpx.Client(base_url=url, headers=AUTH, timeout=30)
        job = client.post("/api/download-model", params={"model_id": "st/model"}).json()
        from .servers import wait_until
        wait_until(lambda: client.get(job["status_url"]).json()["status"] == "complete", 60)
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=AUTH)
        # Configured, not passed per call: schemathesis then knows which cases leave the token out
        # on purpose (negative auth cases) and checks that those are refused.
        schema.config.update(headers=AUTH)
        # /api/events never ends by design (a dashboard's stream): tests/test_ui_routes.py reads it.
        yield schema.exclude(path="/api/events")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case):
    response = case.call_and_validate()
    STATUSES[response.status_code // 100] += 1


def test_schemathesis_got_past_the_token():
    """Guards the configuration above: most generated requests must be authenticated."""
    assert STATUSES[2] >= 50, STATUSES
