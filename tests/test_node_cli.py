"""`python -m api.node`: the node CLI fleet jobs run, against the Hub simulator and real files.

Most calls run `main()` in this process (a subprocess costs seconds of imports on a busy box); one
goes through `python -m api.node` to cover the entry point."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from api.node.cli import main

from ._dl import MiB, random_bytes, sha256_file


@pytest.fixture
def node(tmp_path, sim, monkeypatch, capsys):
    env = {"MODELS_DIR": str(tmp_path / "models"), "HF_ENDPOINT": sim.url, "NODE_ID": "n1",
           "ENV_FILE": str(tmp_path / "absent.env"), "PART_SIZE_MB": "1", "MAX_RETRIES": "2"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)

    def run(*args: str, subprocess_: bool = False) -> tuple[int, list[dict]]:
        if subprocess_:
            proc = subprocess.run([sys.executable, "-m", "api.node", *args], env={**os.environ, **env},
                                  capture_output=True, text=True, timeout=120)
            rc, out = proc.returncode, proc.stdout
        else:
            capsys.readouterr()
            rc, out = main(list(args)), capsys.readouterr().out
        lines = [json.loads(line) for line in out.splitlines()]   # stdout holds JSON lines only
        assert lines and lines[-1]["event"] in ("result", "error") and all(e["node"] == "n1" for e in lines)
        return rc, lines
    return run


def test_fetch_list_verify_delete_as_json_lines(node, tmp_path, sim):
    repo = "org/node-cli"
    files = {"config.json": b'{"model_type": "fake"}', "model.safetensors": random_bytes(3 * MiB, repo)}
    sim.add_repo(repo, files)

    rc, lines = node("fetch", repo)
    assert rc == 0, lines
    result = lines[-1]
    assert result["verified"] is True and result["files"] == 2 and result["bytes"] == sum(map(len, files.values()))
    snap = tmp_path / "models" / "hub" / "models--org--node-cli" / "snapshots" / result["commit"]
    assert (snap / "model.safetensors").read_bytes() == files["model.safetensors"]

    rc, lines = node("list", subprocess_=True)
    assert rc == 0 and [(e["model_id"], e["status"]) for e in lines if e["event"] == "model"] == [(repo, "complete")]

    # A flipped byte on disk: verify names the file and exits 1.
    blob = (snap / "model.safetensors").resolve()
    with open(blob, "r+b") as f:
        f.seek(MiB)
        f.write(b"\x00" if f.read(1) != b"\x00" else b"\x01")
    rc, lines = node("verify", repo)
    assert rc == 1 and lines[-1]["error"] == "integrity_error"
    assert lines[-1]["result"]["mismatched"] == ["model.safetensors"]

    # fetch again repairs it (the engine re-hashes cached blobs), then delete frees the space.
    rc, lines = node("fetch", repo)
    assert rc == 0 and sha256_file(blob) == sim.file_info(repo, "model.safetensors")["sha256"]
    rc, lines = node("delete", repo)
    assert rc == 0 and lines[-1]["freed_bytes"] >= 3 * MiB and not snap.exists()


def test_bad_input_is_an_error_line_and_changes_nothing(node, tmp_path):
    rc, lines = node("fetch", "../etc")
    assert rc == 1 and lines == [{"event": "error", "node": "n1", "command": "fetch", "error": "invalid_model_id",
                                  "detail": lines[0]["detail"]}]
    assert not any((tmp_path / "models" / "hub").glob("models--*"))
