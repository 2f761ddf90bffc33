from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")

from api import Settings, create_app  # noqa: E402
from api.testing.hubsim import HubSim  # noqa: E402

from .servers import serve_in_thread  # noqa: E402

API_KEY = "test-key-" + "0" * 24
GATED_TOKEN = "hf_gated_token_for_tests"


@pytest.fixture(scope="session", autouse=True)
def _hf_home(tmp_path_factory):
    os.environ["HF_HOME"] = str(tmp_path_factory.mktemp("hf_home"))


@pytest.fixture(scope="session")
def engine():
    """A real Docker engine (started when none runs) and the test inference image."""
    from . import docker_support as ds
    reason = ds.ensure_engine()
    if reason:
        if ds.in_ci():
            pytest.fail(f"Docker engine required in CI: {reason}")
        pytest.skip(f"no Docker engine: {reason}")
    ds.ensure_inference_image()
    return ds.docker_client()


@pytest.fixture(scope="session")
def sim(tmp_path_factory):
    with HubSim(tmp_path_factory.mktemp("hub"), tokens={GATED_TOKEN}) as s:
        yield s


@pytest.fixture(autouse=True)
def _clear_faults(request):
    yield
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").clear_faults()


def make_settings(tmp: Path, sim: HubSim, **over) -> Settings:
    env_file = tmp / "box.env"
    if not env_file.exists():
        env_file.write_text("# test box\nDEFAULT_MODEL=org/none\n")
    base = dict(proxy_api_key=API_KEY, hf_endpoint=sim.url, models_dir=tmp / "models", state_db=tmp / "state.db",
                env_file=env_file, serve_profiles_file=tmp / "serve-profiles.yaml", rate_limit_enabled=False, max_retries=4, retry_backoff_max=0.5,
                stall_timeout=3.0, connect_timeout=3.0, disk_reserve_mb=0, part_size_mb=4,
                docker_host="unix:///nonexistent-docker.sock",
                # Test receivers (and N8n in tests/e2e) listen on loopback at random ports.
                webhook_allowed_hosts="127.0.0.1:*,[::1]:*")
    base.update(over)
    return Settings(_env_file=None, **base)


@pytest.fixture
def api_factory(tmp_path, sim):
    """Start an API (real uvicorn, real HTTP) with settings overrides; returns an httpx client."""
    stack = []

    def start(**over) -> httpx.Client:
        settings = make_settings(tmp_path, sim, **over)
        cm = serve_in_thread(create_app(settings))
        url = cm.__enter__()
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
        client.settings = settings
        stack.append((cm, client))
        return client

    yield start
    for cm, client in reversed(stack):
        client.close()
        cm.__exit__(None, None, None)


@pytest.fixture
def api(api_factory) -> httpx.Client:
    return api_factory()
