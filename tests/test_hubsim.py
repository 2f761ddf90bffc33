"""The Hub simulator against the real huggingface_hub 2.4.0 client, over real loopback HTTP."""

from __future__ import annotations

import hashlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from api.testing.hubsim import Fault, HubSim

from .servers import wait_until

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_sim_valid_token"
MiB = 1024 * 1024
LFS_SIZE = 12 * MiB  # over the 10 MiB LFS threshold, and a .safetensors

MAIN_FILES: dict[str, bytes | int] = {
    "config.json": b'{"model_type": "sim"}\n',
    "tokenizer/vocab.txt": 3000,
    "tokenizer/special/added.json": b'{"<pad>": 0}',
    "README.md": b"# sim\n",
    "model.safetensors": LFS_SIZE,
}


@pytest.fixture(autouse=True)
def hf_env(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    # The library reads these at import time, so the env alone comes too late in-process.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    return home


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    with HubSim(tmp_path_factory.mktemp("hubsim"), tokens={TOKEN}) as s:
        s.add_repo("org/model", MAIN_FILES)
        s.add_repo("org/gated", {"config.json": b"{}", "weights.bin": 4096}, gated=True)
        yield s


@pytest.fixture(autouse=True)
def clean_sim(request):
    if "sim" in request.fixturenames:
        s = request.getfixturevalue("sim")
        s.clear_faults()
        s.reset_counters()
        s.tree_page_size = 50


@pytest.fixture
def http():
    # Small files come through a same-origin 307, LFS files through a 302 to the CDN.
    with httpx.Client(timeout=30, follow_redirects=True) as client:
        yield client


def content(sim: HubSim, path: str, repo: str = "org/model") -> bytes:
    """The bytes the simulator holds for a file, read from its own storage."""
    found = sim.store.get(repo).resolve("main")
    return found.files[path].disk_path.read_bytes()


def cdn_url(sim: HubSim, path: str, repo: str = "org/model") -> str:
    return sim.signed_url(repo, path)


def fetch(client: httpx.Client, url: str, **kw) -> tuple[httpx.Response, bytes, Exception | None]:
    """GET that keeps whatever arrived before the connection broke."""
    got = bytearray()
    with client.stream("GET", url, **kw) as r:
        try:
            for chunk in r.iter_raw():
                got += chunk
        except httpx.HTTPError as e:
            return r, bytes(got), e
    return r, bytes(got), None


# -- download protocol -------------------------------------------------------------------------


def test_snapshot_download_nested_and_lfs_then_offline_and_verify(sim, tmp_path):
    cache = tmp_path / "cache"
    folder = Path(snapshot_download("org/model", endpoint=sim.url, cache_dir=cache))
    commit = sim.store.get("org/model").refs["main"]
    assert folder.name == commit
    for path in MAIN_FILES:
        assert (folder / path).read_bytes() == content(sim, path), path
        assert (folder / path).is_symlink()
    lfs = sim.file_info("org/model", "model.safetensors")
    assert lfs["lfs"] and lfs["size"] == LFS_SIZE
    blob = cache / "models--org--model" / "blobs" / lfs["sha256"]
    assert blob.stat().st_size == LFS_SIZE
    assert (cache / "models--org--model" / "blobs" / sim.file_info("org/model", "config.json")["git_sha1"]).exists()
    assert (cache / "models--org--model" / "refs" / "main").read_text() == commit

    offline = snapshot_download("org/model", endpoint=sim.url, cache_dir=cache, local_files_only=True)
    assert Path(offline) == folder

    result = HfApi(endpoint=sim.url).verify_repo_checksums("org/model", cache_dir=cache)
    assert result.checked_count == len(MAIN_FILES)
    assert result.mismatches == [] and result.missing_paths == [] and result.extra_paths == []

    # A second snapshot is served from the cache: no content fetched again.
    before = sim.served_bytes("org/model", "model.safetensors")
    snapshot_download("org/model", endpoint=sim.url, cache_dir=cache)
    assert sim.served_bytes("org/model", "model.safetensors") == before == LFS_SIZE


def test_resolve_headers_match_the_contract(sim, http):
    commit = sim.store.get("org/model").refs["main"]
    cfg = sim.file_info("org/model", "config.json")
    r = http.head(f"{sim.url}/org/model/resolve/main/config.json", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"].startswith(f"/api/resolve-cache/models/org/model/{commit}/")
    assert r.headers["x-linked-etag"] == f'"{cfg["git_sha1"]}"' and r.headers["x-repo-commit"] == commit
    r = http.head(f"{sim.url}/org/model/resolve/main/config.json")
    assert r.status_code == 200
    assert r.headers["etag"] == f'"{cfg["git_sha1"]}"'
    assert r.headers["x-repo-commit"] == commit
    assert int(r.headers["content-length"]) == cfg["size"]

    lfs = sim.file_info("org/model", "model.safetensors")
    r = http.head(f"{sim.url}/org/model/resolve/main/model.safetensors", follow_redirects=False)
    assert r.status_code == 302
    assert r.headers["x-linked-etag"] == f'"{lfs["sha256"]}"'
    assert int(r.headers["x-linked-size"]) == LFS_SIZE
    assert r.headers["etag"] == f'"{lfs["git_sha1"]}"'
    assert r.headers["x-repo-commit"] == commit
    assert r.headers["location"].startswith(sim.cdn_url + "/xet-bridge-us/")
    assert "content-encoding" not in r.headers

    # The CDN is another origin and takes no token.
    r = http.get(r.headers["location"])
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == lfs["sha256"]


def test_revisions_and_model_info(sim, tmp_path):
    pr_commit = sim.add_repo("org/model", {"config.json": b'{"pr": 1}'}, revision="refs/pr/1")
    api = HfApi(endpoint=sim.url)
    info = api.model_info("org/model", files_metadata=True)
    assert info.id == "org/model" and info.sha == sim.store.get("org/model").refs["main"]
    by_name = {s.rfilename: s for s in info.siblings}
    assert set(by_name) == set(MAIN_FILES)
    assert by_name["model.safetensors"].lfs.sha256 == sim.file_info("org/model", "model.safetensors")["sha256"]
    assert by_name["config.json"].lfs is None

    assert api.model_info("org/model", revision="refs/pr/1").sha == pr_commit
    assert api.model_info("org/model", revision=pr_commit).sha == pr_commit
    assert api.revision_exists("org/model", "refs/pr/1")
    assert not api.revision_exists("org/model", "no-such-branch")

    folder = Path(snapshot_download("org/model", revision="refs/pr/1", endpoint=sim.url, cache_dir=tmp_path))
    assert folder.name == pr_commit
    assert (folder / "config.json").read_bytes() == b'{"pr": 1}'
    assert (tmp_path / "models--org--model" / "refs" / "refs" / "pr" / "1").read_text() == pr_commit


def test_tree_pagination_and_directories(sim, http):
    sim.tree_page_size = 2
    api = HfApi(endpoint=sim.url)
    entries = list(api.list_repo_tree("org/model", recursive=True))
    files = {e.path for e in entries if hasattr(e, "size")}
    dirs = {e.path for e in entries if not hasattr(e, "size")}
    assert files == set(MAIN_FILES)
    assert dirs == {"tokenizer", "tokenizer/special"}
    lfs_entry = next(e for e in entries if e.path == "model.safetensors")
    assert lfs_entry.lfs.sha256 == sim.file_info("org/model", "model.safetensors")["sha256"]
    assert lfs_entry.blob_id == sim.file_info("org/model", "model.safetensors")["git_sha1"]

    # It really took several pages, chained by absolute Link urls.
    r = http.get(f"{sim.url}/api/models/org/model/tree/main", params={"recursive": "true", "expand": "false"})
    assert len(r.json()) == 2
    assert r.links["next"]["url"].startswith(sim.url + "/api/models/org/model/tree/main?")

    top = {e.path for e in api.list_repo_tree("org/model", path_in_repo="tokenizer")}
    assert top == {"tokenizer/vocab.txt", "tokenizer/special"}

    infos = api.get_paths_info("org/model", ["config.json", "tokenizer/special", "nope.txt"])
    assert [i.path for i in infos] == ["config.json", "tokenizer/special"]


def test_range_requests_hub_and_cdn(sim, http):
    data = content(sim, "tokenizer/vocab.txt")
    r = http.get(f"{sim.url}/org/model/resolve/main/tokenizer/vocab.txt", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert r.headers["accept-ranges"] == "bytes"
    assert r.content == data[10:20]

    big = content(sim, "model.safetensors")
    start = LFS_SIZE - 1000
    r = http.get(cdn_url(sim, "model.safetensors"), headers={"Range": f"bytes={start}-"})
    assert r.status_code == 206 and r.content == big[start:]
    assert r.headers["content-range"] == f"bytes {start}-{LFS_SIZE - 1}/{LFS_SIZE}"
    r = http.get(cdn_url(sim, "model.safetensors"), headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == big[-5:]
    r = http.get(cdn_url(sim, "model.safetensors"), headers={"Range": f"bytes={LFS_SIZE}-"})
    assert r.status_code == 416


def test_errors_map_to_client_exceptions(sim, tmp_path, http):
    api = HfApi(endpoint=sim.url)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/missing", token=TOKEN)
    # Anonymous: a 401 without a code, which the client maps to RepositoryNotFoundError only
    # over https.
    with pytest.raises(HfHubHTTPError) as info:
        api.model_info("org/missing", token=False)
    assert info.value.response.status_code == 401
    with pytest.raises(RevisionNotFoundError):
        api.model_info("org/model", revision="nope")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("org/model", "config.json", revision="nope", endpoint=sim.url, cache_dir=tmp_path)
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download("org/model", "missing.txt", endpoint=sim.url, cache_dir=tmp_path)
    r = http.get(f"{sim.url}/org/missing/resolve/main/config.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert (r.status_code, r.headers["x-error-code"]) == (404, "RepoNotFound")
    assert r.json() == {"error": r.headers["x-error-message"]}


def test_gated_repo_needs_a_token(sim, tmp_path, http):
    api = HfApi(endpoint=sim.url)
    # The metadata of a gated repo is public; only its files are guarded.
    assert api.model_info("org/gated", token=False).gated == "manual"
    with pytest.raises(GatedRepoError):
        snapshot_download("org/gated", endpoint=sim.url, cache_dir=tmp_path / "a", token=False)
    with pytest.raises(GatedRepoError):
        hf_hub_download("org/gated", "config.json", endpoint=sim.url, cache_dir=tmp_path / "a", token="hf_wrong")
    for url in (f"{sim.url}/api/models/org/gated/tree/main", f"{sim.url}/api/models/org/gated/revision/main"):
        assert http.get(url).status_code == 200, url
    r = http.get(f"{sim.url}/org/gated/resolve/main/config.json")
    assert (r.status_code, r.headers["x-error-code"]) == (401, "GatedRepo")
    r = http.get(f"{sim.url}/org/gated/resolve/main/config.json", headers={"Authorization": "Bearer hf_wrong"})
    assert (r.status_code, r.headers["x-error-code"]) == (403, "GatedRepo")

    assert api.model_info("org/gated", token=TOKEN).gated == "manual"
    folder = Path(snapshot_download("org/gated", endpoint=sim.url, cache_dir=tmp_path / "b", token=TOKEN))
    assert (folder / "weights.bin").read_bytes() == content(sim, "weights.bin", "org/gated")


# -- faults ------------------------------------------------------------------------------------


def test_drop_after_truncates_and_client_resumes(sim, tmp_path, http):
    sim.set_faults(Fault(path="model.safetensors", drop_after=100_000, times=1))
    r, got, err = fetch(http, cdn_url(sim, "model.safetensors"))
    assert r.status_code == 200 and isinstance(err, httpx.RemoteProtocolError)
    assert got == content(sim, "model.safetensors")[:100_000]
    r, got, err = fetch(http, cdn_url(sim, "model.safetensors"))
    assert err is None and len(got) == LFS_SIZE  # times=1 is used up

    # The server counts a chunk once sendfile returns, possibly after the client has read it:
    # let the count of the two fetches above settle before resetting it.
    wait_until(lambda: sim.served_bytes("org/model", "model.safetensors") == 100_000 + LFS_SIZE, 5,
               message="the first two fetches counted")

    # The real client resumes with a Range request from what it has written, which it does in
    # 10 MiB steps: the 12345 bytes past the first step cross the wire twice.
    sim.reset_counters()
    sim.set_faults(Fault(path="model.safetensors", drop_after=10 * MiB + 12345, times=1))
    path = hf_hub_download("org/model", "model.safetensors", endpoint=sim.url, cache_dir=tmp_path)
    assert Path(path).read_bytes() == content(sim, "model.safetensors")
    assert sim.request_count("org/model", "model.safetensors") == 2
    wait_until(lambda: sim.served_bytes("org/model", "model.safetensors") == LFS_SIZE + 12345, 5,
               message="the resumed download counted")


def test_rate_cap(sim, http):
    rate = 4 * MiB
    sim.set_faults(Fault(path="model.safetensors", rate_bps=rate))
    t0 = time.monotonic()
    r, got, err = fetch(http, cdn_url(sim, "model.safetensors"), headers={"Range": f"bytes=0-{2 * MiB - 1}"})
    elapsed = time.monotonic() - t0
    assert err is None and len(got) == 2 * MiB
    measured = len(got) / elapsed
    assert 0.25 * rate < measured < 1.1 * rate, measured  # loose below: the box may be busy


def test_status_429_with_retry_after_and_503(sim, tmp_path, http):
    sim.set_faults(Fault(path="config.json", status=429, retry_after=7, times=1))
    r = http.get(f"{sim.url}/org/model/resolve/main/config.json")
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    assert http.get(f"{sim.url}/org/model/resolve/main/config.json").status_code == 200

    # The client waits Retry-After (+1 s) and retries a 429'd download.
    sim.set_faults(Fault(path="README.md", status=429, retry_after=0, times=1))
    path = hf_hub_download("org/model", "README.md", endpoint=sim.url, cache_dir=tmp_path)
    assert Path(path).read_bytes() == content(sim, "README.md")
    assert sim.request_count("org/model", "README.md") == 2

    sim.set_faults(Fault(on="api", status=503, times=1))
    api = HfApi(endpoint=sim.url)
    with pytest.raises(HfHubHTTPError) as info:
        api.model_info("org/model")
    assert info.value.response.status_code == 503
    assert api.model_info("org/model").id == "org/model"


def test_status_on_lfs_redirect_and_head(sim, http):
    sim.set_faults(Fault(path="*.safetensors", status=502, times=1), Fault(on="head", status=500, path="config.json"))
    assert http.get(f"{sim.url}/org/model/resolve/main/model.safetensors").status_code == 502
    r = http.get(f"{sim.url}/org/model/resolve/main/model.safetensors", follow_redirects=False)
    assert r.status_code == 302
    assert http.head(f"{sim.url}/org/model/resolve/main/config.json").status_code == 500
    assert http.get(f"{sim.url}/org/model/resolve/main/config.json").status_code == 200


def test_ignore_range(sim, http):
    sim.set_faults(Fault(path="model.safetensors", ignore_range=True))
    r = http.get(cdn_url(sim, "model.safetensors"), headers={"Range": "bytes=100-199"})
    assert r.status_code == 200 and "content-range" not in r.headers
    assert r.content == content(sim, "model.safetensors")


def test_corrupt_at_flips_exactly_one_byte(sim, http):
    offset = 5 * MiB + 3
    sim.set_faults(Fault(path="model.safetensors", corrupt_at=offset))
    good = content(sim, "model.safetensors")
    got = http.get(cdn_url(sim, "model.safetensors")).content
    assert len(got) == len(good)
    diff = [i for i in range(0, len(good), MiB) if got[i : i + MiB] != good[i : i + MiB]]
    assert diff == [5 * MiB]
    assert got[offset] == good[offset] ^ 0xFF
    assert got[:offset] == good[:offset] and got[offset + 1 :] == good[offset + 1 :]
    # A range that does not cover the offset is untouched; one that does is corrupted too.
    assert http.get(cdn_url(sim, "model.safetensors"), headers={"Range": "bytes=0-99"}).content == good[:100]
    r = http.get(cdn_url(sim, "model.safetensors"), headers={"Range": f"bytes={offset - 1}-{offset + 1}"})
    assert r.content == bytes([good[offset - 1], good[offset] ^ 0xFF, good[offset + 1]])


def test_stall(sim, http):
    sim.set_faults(Fault(path="tokenizer/vocab.txt", stall_after=1000, stall_seconds=0.6))
    arrivals = []
    t0 = time.monotonic()
    with http.stream("GET", f"{sim.url}/org/model/resolve/main/tokenizer/vocab.txt") as r:
        for chunk in r.iter_raw():
            arrivals.append((time.monotonic() - t0, len(chunk)))
    assert sum(n for _, n in arrivals) == 3000
    received, first_part_at = 0, None
    for t, n in arrivals:
        received += n
        if received >= 1000 and first_part_at is None:
            first_part_at = t
    assert first_part_at < 0.4  # the first 1000 bytes come at once ...
    assert arrivals[-1][0] >= 0.55  # ... the rest only after the stall


def test_fault_selectors_repo_and_times(sim, http):
    sim.set_faults(Fault(repo="org/other", status=500), Fault(path="README.md", status=503, times=2))
    url = f"{sim.url}/org/model/resolve/main/README.md"
    assert [http.get(url).status_code for _ in range(3)] == [503, 503, 200]
    assert http.get(f"{sim.url}/org/model/resolve/main/config.json").status_code == 200


# -- counters, control API, CLI, speed ---------------------------------------------------------


def test_served_bytes_and_force_download(sim, tmp_path):
    # The server counts a chunk after sendfile returns, which can be a moment after the client
    # has read it: poll rather than assert at once.
    served = lambda: sim.served_bytes("org/model", "tokenizer/vocab.txt")  # noqa: E731
    hf_hub_download("org/model", "tokenizer/vocab.txt", endpoint=sim.url, cache_dir=tmp_path)
    hf_hub_download("org/model", "tokenizer/vocab.txt", endpoint=sim.url, cache_dir=tmp_path)
    wait_until(lambda: served() == 3000, 5, message="3000 bytes served")
    hf_hub_download("org/model", "tokenizer/vocab.txt", endpoint=sim.url, cache_dir=tmp_path, force_download=True)
    wait_until(lambda: served() == 6000, 5, message="6000 bytes served")
    assert sim.request_count("org/model", "tokenizer/vocab.txt") == 2
    sim.reset_counters()
    assert sim.served_bytes("org/model", "tokenizer/vocab.txt") == 0


def test_add_repo_is_deterministic_and_cached(tmp_path):
    spec: dict[str, bytes | int] = {"m.safetensors": 64 * MiB, "c.json": b"{}"}
    a = HubSim(tmp_path)
    commit = a.add_repo("org/big", spec)
    blob = tmp_path / "org" / "big" / commit / "m.safetensors"
    written = blob.stat()
    # Same spec, new simulator: same commit, and the content is reused, not rewritten.
    assert HubSim(tmp_path).add_repo("org/big", spec) == commit
    assert blob.stat().st_mtime_ns == written.st_mtime_ns and blob.stat().st_ino == written.st_ino
    data = blob.read_bytes()
    assert hashlib.sha256(data).hexdigest() == a.file_info("org/big", "m.safetensors")["sha256"]
    assert len({data[i : i + 4 * MiB] for i in range(0, len(data), 4 * MiB)}) == 16  # no two blocks alike
    assert a.add_repo("org/big", {**spec, "m.safetensors": 64 * MiB + 1}) != commit


def test_http_control_api(sim, http):
    r = http.post(f"{sim.url}/_sim/repos", json={"repo_id": "ctl/repo", "files": {"a.txt": {"text": "hello"}, "w.bin": 2048}})
    commit = r.json()["commit"]
    assert r.status_code == 200 and len(commit) == 40
    assert http.post(f"{sim.url}/_sim/faults", json=[{"path": "a.txt", "status": 503}]).status_code == 200
    assert http.get(f"{sim.url}/ctl/repo/resolve/main/a.txt").status_code == 503
    assert http.get(f"{sim.url}/_sim/faults").json()[0]["status"] == 503
    assert http.delete(f"{sim.url}/_sim/faults").status_code == 200
    assert http.get(f"{sim.url}/ctl/repo/resolve/main/a.txt").content == b"hello"
    stats = http.get(f"{sim.url}/_sim/stats").json()["files"]
    assert stats["ctl/repo"]["a.txt"] == {"served_bytes": 5, "requests": 2, "heads": 0, "cdn_requests": 0, "cdn_heads": 0}
    assert http.post(f"{sim.url}/_sim/reset").status_code == 200
    assert http.get(f"{sim.url}/_sim/stats").json()["files"] == {}
    assert http.post(f"{sim.url}/_sim/faults", json=[{"bogus": 1}]).status_code == 400
    assert http.get(f"{sim.url}/api/agent-harnesses").json() == {"standardEnvVars": [], "harnesses": {}}


def _read_line(proc: subprocess.Popen, deadline: float) -> str:
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    while time.monotonic() < deadline:
        if sel.select(timeout=0.1):
            return proc.stdout.readline()
        if proc.poll() is not None:
            break
    raise AssertionError(f"no ready line; stderr: {proc.stderr.read() if proc.poll() is not None else ''}")


def test_cli_subprocess_with_hf_download(tmp_path, hf_env):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "api.testing.hubsim", "--root", str(tmp_path / "root"), "--port", "0"]
    cmd += ["--synthetic", "org/cli:config.json=200,sub/model.safetensors=1000000", "--token", "x",
            "--cdn-url-lifetime", "120", "--cdn-url-style", "both"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)
    try:
        line = _read_line(proc, time.monotonic() + 30)
        assert line.startswith("hubsim ready url=http://127.0.0.1:")
        fields = dict(kv.split("=", 1) for kv in line.split()[2:])
        url = fields["url"]
        assert fields["cdn"].startswith("http://127.0.0.1:")
        hf = Path(sys.executable).with_name("hf")
        out = subprocess.run(
            [str(hf), "download", "org/cli", "--cache-dir", str(tmp_path / "cache")],
            env={**env, "HF_ENDPOINT": url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        folder = next((tmp_path / "cache" / "models--org--cli" / "snapshots").iterdir())
        assert (folder / "sub" / "model.safetensors").stat().st_size == 1000000
        stats = httpx.get(f"{url}/_sim/stats").json()["files"]["org/cli"]
        assert stats["sub/model.safetensors"]["served_bytes"] == 1000000
        config = httpx.get(f"{url}/_sim/config").json()
        assert (config["cdn_url_lifetime"], config["cdn_url_style"]) == (120, "both")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
    assert proc.stderr.read() == ""  # quiet by default


def _stream_rate(url: str) -> tuple[int, float]:
    n = 0
    t0 = time.monotonic()
    with httpx.stream("GET", url, timeout=60) as r:
        for chunk in r.iter_raw(4 * MiB):
            n += len(chunk)
    return n, n / (time.monotonic() - t0)


def _raw_sendfile_url(path: Path, size: int) -> str:
    """A bare-bones server answering one GET with the file by sendfile: the box's own ceiling."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = srv.accept()
        with srv, conn, open(path, "rb") as f:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
            conn.sendfile(f)

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{srv.getsockname()[1]}/"


def test_speed_sanity(tmp_path):
    # The machine is shared: compare with a bare sendfile server measured in the same moment,
    # and accept either a good absolute rate or most of what the box can do right now.
    size = 128 * MiB
    with HubSim(tmp_path) as s:
        s.add_repo("org/fast", {"model.safetensors": size})
        disk = s.store.get("org/fast").resolve("main").files["model.safetensors"].disk_path
        sim_rates, raw_rates = [], []
        for _ in range(2):
            raw_rates.append(_stream_rate(_raw_sendfile_url(disk, size))[1])
            n, rate = _stream_rate(s.signed_url("org/fast", "model.safetensors"))
            assert n == size
            sim_rates.append(rate)
    best, ceiling = max(sim_rates), max(raw_rates)
    assert best > 300e6 or best > 0.6 * ceiling, f"{best / 1e6:.0f} MB/s vs {ceiling / 1e6:.0f} MB/s bare"
