"""The docs and the contract stay true to the code."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from api import Settings, create_app

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "docs" / "api.md"   # with the OpenAPI document, the contract the project keeps


@pytest.fixture(scope="module")
def openapi(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("oa")
    app = create_app(Settings(_env_file=None, proxy_api_key="x", models_dir=tmp / "m", state_db=tmp / "s.db"))
    return app.openapi()


def test_every_setting_is_documented():
    text = (ROOT / "docs" / "configuration.md").read_text()
    missing = [n.upper() for n in Settings.model_fields if f"`{n.upper()}`" not in text]
    assert not missing


def test_every_setting_is_in_env_example_or_documented_as_optional():
    example = (ROOT / ".env.example").read_text()
    for name in ("PROXY_API_KEY", "HF_TOKEN", "HF_ENDPOINT", "MODELS_DIR", "ENV_FILE", "DEFAULT_MODEL",
                 "INFERENCE_CONTAINER", "MANAGED_CONTAINERS", "API_HOST", "API_PORT", "STATE_DB",
                 "MAX_CONCURRENT_DOWNLOADS", "RATE_LIMIT"):
        assert re.search(rf"^{name}=", example, re.M), name


def _contract_routes() -> set[tuple[str, str]]:
    """The route index of docs/api.md: `| `METHOD /path` `/sibling` ... |` rows."""
    routes = set()
    for line in CONTRACT.read_text().splitlines():
        m = re.match(r"\| `(GET|POST|PUT|DELETE) ([^`?\[ ]+)`", line)
        if not m:
            continue
        method, path = m.groups()
        # "POST /api/jobs/{job_id}/cancel` `/pause` `/resume`" lists siblings after the first
        routes.add((method, path))
        for extra in re.findall(r" `(/[a-z]+)`", line):
            routes.add((method, path.rsplit("/", 1)[0] + extra))
    return routes


OUTSIDE = ("../" + "shared/", "/work/" + "shared")   # spelt apart so this file does not match itself


def test_the_contract_lives_in_the_repo():
    """Nothing in the repo reads or links files beside it (a fresh clone must stand alone)."""
    offenders = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in (".git", ".venv", ".demo") or not path.is_file() or path.suffix in (".pyc",):
            continue
        if path.suffix not in (".py", ".md", ".sh", ".bash", ".bats", ".toml", ".yml", ".json", ""):
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        if any(m in text for m in OUTSIDE):
            offenders.append(str(rel))
    assert not offenders


def test_every_contract_route_exists_and_every_route_is_in_the_contract(openapi):
    documented = _contract_routes()
    assert len(documented) >= 20
    served = {(m.upper(), p) for p, ops in openapi["paths"].items() for m in ops if m != "head"}
    served.add(("GET", "/openapi.json"))   # served behind the token, not listed in itself
    assert not documented - served, f"in docs/api.md but not served: {sorted(documented - served)}"
    assert not served - documented, f"served but missing from the route index of docs/api.md: {sorted(served - documented)}"


def test_every_route_documents_its_errors(openapi):
    for path, ops in openapi["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), (method, path)
            if path != "/health":
                assert "401" in op["responses"], (method, path)
