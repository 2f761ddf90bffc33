"""Helpers shared by the download test modules (real HTTP against the API and the hub simulator)."""
from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

import httpx

from .servers import wait_until

FINAL = ("complete", "failed", "cancelled")
MiB = 1 << 20
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


def hub_dir(api: httpx.Client) -> Path:
    return api.settings.hf_cache


def repo_dir(api: httpx.Client, repo_id: str) -> Path:
    return hub_dir(api) / ("models--" + repo_id.replace("/", "--"))


def staging(api: httpx.Client) -> Path:
    return hub_dir(api) / ".llmbox-partial"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


def git_sha1_file(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def random_bytes(n: int, seed: str) -> bytes:
    return random.Random(seed).randbytes(n)


def start(api: httpx.Client, model_id: str, expect: int = 202, **params) -> dict:
    r = api.post("/api/download-model", params={"model_id": model_id, **params})
    assert r.status_code == expect, r.text
    return r.json()


def job(api: httpx.Client, job_id: str) -> dict:
    r = api.get(f"/api/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def wait_status(api: httpx.Client, job_id: str, statuses=FINAL, timeout: float = 60.0) -> dict:
    if isinstance(statuses, str):
        statuses = (statuses,)
    last = {}

    def check():
        last["job"] = job(api, job_id)
        return last["job"]["status"] in statuses and last["job"]

    try:
        return wait_until(check, timeout, message=f"job {job_id} in {statuses}")
    except AssertionError as e:
        raise AssertionError(f"{e}; job: {last.get('job')}") from None


def wait_complete(api: httpx.Client, job_id: str, timeout: float = 60.0) -> dict:
    j = wait_status(api, job_id, FINAL, timeout)
    assert j["status"] == "complete", j
    return j


def wait_bytes(api: httpx.Client, job_id: str, at_least: int, timeout: float = 30.0) -> dict:
    def check():
        j = job(api, job_id)
        assert j["status"] not in FINAL, f"job ended before {at_least} bytes: {j}"
        return j["bytes_downloaded"] >= at_least and j

    return wait_until(check, timeout, message=f"{at_least} bytes downloaded")


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> dict:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = resp.json()
    assert {"error", "detail", "status"} <= set(body), body
    assert body["status"] == status, body
    assert SNAKE.match(body["error"]), body
    assert isinstance(body["detail"], str) and body["detail"].strip(), body
    if code is not None:
        assert body["error"] == code, body
    return body


def blob_files(api: httpx.Client, repo_id: str) -> dict[str, Path]:
    d = repo_dir(api, repo_id) / "blobs"
    return {p.name: p for p in d.iterdir()} if d.exists() else {}


def part_files(api: httpx.Client) -> list[Path]:
    s = staging(api)
    return sorted(s.glob("*.part")) if s.exists() else []


def assert_verified(api: httpx.Client, sim, repo_id: str, commit: str, paths) -> None:
    """Every path is a relative symlink in the snapshot to a blob whose hash is its name and the Hub's."""
    snap = repo_dir(api, repo_id) / "snapshots" / commit
    for path in paths:
        info = sim.file_info(repo_id, path, commit)
        link = snap / path
        assert link.is_symlink(), link
        target = Path(link.readlink())
        assert not target.is_absolute(), target
        blob = (link.parent / target).resolve()
        assert blob == (repo_dir(api, repo_id) / "blobs" / info["etag"]).resolve(), (blob, info)
        if info["lfs"]:
            assert sha256_file(blob) == info["sha256"], path
        else:
            assert git_sha1_file(blob) == info["git_sha1"], path
        assert blob.stat().st_size == info["size"]
