"""tests/e2e runs a real N8n: only when N8N_BIN names its binary (tests/e2e/run-n8n.sh sets it).

Without N8N_BIN the files here are not collected, so `make test` stays fast and needs no Node.
`make e2e` (or `bash tests/e2e/run-n8n.sh`) installs N8n into the cache folder and runs them.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

N8N_BIN = os.environ.get("N8N_BIN", "")

collect_ignore_glob: list[str] = []
if not N8N_BIN:
    collect_ignore_glob = ["test_*.py"]


def pytest_report_header(config):
    if not N8N_BIN:
        return "tests/e2e: not collected (N8N_BIN not set; run `make e2e` to install and run N8n)"
    return f"tests/e2e: N8n at {N8N_BIN}"


@pytest.fixture(scope="session")
def n8n_bin() -> Path:
    p = Path(N8N_BIN)
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(f"N8N_BIN={N8N_BIN!r} is not an executable; run tests/e2e/install-n8n.sh")
    return p
