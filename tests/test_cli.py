"""scripts/modelctl and the shims: the bats suite against a real API and the Hub simulator, and shellcheck.

Outside CI a missing bats/shellcheck/jq skips; in CI (CI=true) it is installed with apt or the test fails.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from api.testing.hubsim import Fault, model_repos

from .servers import ROOT

MiB = 1 << 20
BATS_DIR = ROOT / "tests" / "bats"
SHELL_SCRIPTS = [ROOT / "scripts" / "modelctl", *sorted((ROOT / "scripts" / "management").glob("*.sh"))]

# The repos tests/bats/helpers.bash names.
CONFIG = b'{"architectures": ["LlamaForCausalLM"], "hidden_size": 64}\n'
REPOS = {
    "cli-org/small": {"config.json": CONFIG, "tokenizer.json": b'{"version": "1.0"}' * 100,
                      "model.safetensors": 1 * MiB},
    "cli-org/small2": {"config.json": CONFIG, "tokenizer.json": b'{"version": "2.0"}' * 100,
                       "model.safetensors": 1 * MiB + 17},
    "cli-org/medium": {"config.json": CONFIG, "model.safetensors": 3 * MiB},
    "cli-org/slow": {"config.json": CONFIG, "model.safetensors": 16 * MiB},
    "cli-org/shim": {"config.json": CONFIG, "model.safetensors": 256 * 1024},
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def need_tool(tool: str, package: str) -> str:
    """The tool's path; installs it with apt in CI, skips outside CI when it is missing."""
    path = shutil.which(tool)
    if path:
        return path
    if not _in_ci():
        pytest.skip(f"{tool} is not installed (apt-get install -y {package}); CI installs it")
    apt = shutil.which("apt-get")
    if apt:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([apt, "update", "-qq"], env=env, check=False, timeout=600)
        subprocess.run([apt, "install", "-y", "-qq", package], env=env, check=False, timeout=600)
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"CI: {tool} is missing and `apt-get install {package}` did not provide it")
    return path


def test_bats_suite(sim, api_factory, tmp_path: Path):
    bats = need_tool("bats", "bats")
    need_tool("jq", "jq")
    need_tool("curl", "curl")
    for repo, files in REPOS.items():
        sim.add_repo(repo, files)
    model_repos.install(sim)   # for tests/bats/inspect.bats
    # Per connection: medium (one part) takes ~3 s; slow stays busy long after the tests cancel it.
    sim.set_faults(Fault(repo="cli-org/medium", rate_bps=1 * MiB),
                   Fault(repo="cli-org/slow", rate_bps=128 * 1024))
    key = "cli-key-" + secrets.token_urlsafe(24)   # unique: the bats suite greps ps output for it
    client = api_factory(proxy_api_key=key)
    settings = client.settings
    env = {k: v for k, v in os.environ.items()
           if k not in ("API_URL", "PROXY_API_KEY", "API_PORT", "API_HOST", "INFERENCE_CONTAINER")}
    env.update(API_URL=str(client.base_url).rstrip("/"), PROXY_API_KEY=key,
               MODELS_DIR=str(settings.models_dir), ENV_FILE=str(settings.env_file),
               TMPDIR=str(tmp_path), COLUMNS="100")
    proc = subprocess.run([bats, "--tap", "--timing", "--print-output-on-failure", str(BATS_DIR)],
                          cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300)
    print(proc.stdout)
    assert proc.returncode == 0, f"bats failed (exit {proc.returncode}):\n{proc.stdout}"
    assert "not ok" not in proc.stdout


def test_shellcheck_clean():
    shellcheck = need_tool("shellcheck", "shellcheck")
    files = [*SHELL_SCRIPTS, *sorted(BATS_DIR.glob("*.bash")), *sorted(BATS_DIR.glob("*.bats"))]
    assert all(f.exists() for f in files), files
    proc = subprocess.run([shellcheck, "--severity=style", *map(str, files)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout


def test_scripts_are_executable():
    for f in SHELL_SCRIPTS:
        assert os.access(f, os.X_OK), f"{f} is not executable"
