"""Bad input answers 4xx with the contract's error body, and nothing is written: no job, no folder."""
from __future__ import annotations

import pytest

from ._dl import MiB, assert_error, hub_dir, part_files, repo_dir, start, wait_complete

BAD_MODEL_IDS = [
    "../x", "a/b/c", "org/name\n", "org/na\x00me", "org\x00/name", "x" * 10_000, "org/" + "n" * 9_995,
    "org/..", "../..", ".hidden/x", "org/.hidden", "", "org/", "/name", "name", "org/name/",
    "org/na me", "org/näme", "org/name\r\nX-Injected: 1", "org\\name", "org/name;rm -rf", "./x",
]
BAD_REVISIONS = ["../../etc", "main\n", "a//b", "/main", "main/", "..", "refs/../../x", "x" * 300, "ma\x00in",
                 "ma in"]
BAD_PATTERNS = ["\x01*.json", "a\nb", "*.json,\x7f", "\t*.gguf", "*.json," + "x" * 2500]
BAD_CALLBACKS = ["ftp://example.com/hook", "not a url", "http://", "javascript:alert(1)",
                 "http://example.com/\r\nX-Injected: 1", "http://exa mple.com/", "file:///etc/passwd",
                 "http://example.com:99999/"]

REAL = "val/real-model"


@pytest.fixture
def real(sim):
    """A repo that exists: a request that slipped past validation would download or fail on the Hub."""
    return sim.add_repo(REAL, {"config.json": b'{"x": 1}', "model.safetensors": 1 * MiB})


def _nothing_written(api, sim):
    assert api.get("/api/jobs", params={"limit": 1000}).json() == [], "a job row was written"
    models = [p.name for p in hub_dir(api).iterdir() if p.name.startswith("models--")]
    assert models == [], models
    assert part_files(api) == []
    assert sim.head_count(REAL, "model.safetensors") == 0


def _bad(resp, what):
    assert 400 <= resp.status_code < 500, (what, resp.status_code, resp.text)
    body = assert_error(resp, resp.status_code)
    return body


def test_bad_model_ids_in_query_and_body(api, sim, real):
    for bad in BAD_MODEL_IDS:
        _bad(api.post("/api/download-model", params={"model_id": bad}), repr(bad[:40]))
        body = _bad(api.post("/api/download-model", json={"model_id": bad}), repr(bad[:40]))
        assert body["error"] in ("invalid_model_id", "invalid_input"), body
        _bad(api.get("/api/download-progress", params={"model_id": bad}), repr(bad[:40])) if bad else None
    _nothing_written(api, sim)


def test_missing_or_non_string_model_id(api, sim, real):
    _bad(api.post("/api/download-model"), "no model_id")
    _bad(api.post("/api/download-model", json={}), "empty body")
    for value in (123, 1.5, True, ["val/real-model"], {"id": "val/real-model"}):
        body = _bad(api.post("/api/download-model", json={"model_id": value}), repr(value))
        assert body["status"] == 422
    for raw in (b"[1, 2]", b'"val/real-model"', b"{not json", b"\xff\xfe"):
        _bad(api.post("/api/download-model", content=raw, headers={"Content-Type": "application/json"}), raw)
    _nothing_written(api, sim)


def test_bad_revisions(api, sim, real):
    for bad in BAD_REVISIONS:
        _bad(api.post("/api/download-model", params={"model_id": REAL, "revision": bad}), repr(bad[:40]))
        body = _bad(api.post("/api/download-model", json={"model_id": REAL, "revision": bad}), repr(bad[:40]))
        assert body["error"] in ("invalid_revision", "invalid_input"), body
    _bad(api.post("/api/download-model", json={"model_id": REAL, "revision": 7}), "int revision")
    _nothing_written(api, sim)


def test_junk_include_exclude_patterns(api, sim, real):
    for bad in BAD_PATTERNS:
        for field in ("include", "exclude"):
            _bad(api.post("/api/download-model", params={"model_id": REAL, field: bad}), (field, bad[:40]))
            body = _bad(api.post("/api/download-model", json={"model_id": REAL, field: bad}), (field, bad[:40]))
            assert body["error"] in ("invalid_pattern", "invalid_input"), body
    for junk in ([1, 2], [None], {"a": "*"}, ["ok", 3]):
        _bad(api.post("/api/download-model", json={"model_id": REAL, "include": junk}), repr(junk))
    _nothing_written(api, sim)


def test_bad_callback_urls(api, sim, real):
    for bad in BAD_CALLBACKS:
        _bad(api.post("/api/download-model", params={"model_id": REAL, "callback_url": bad}), bad)
        body = _bad(api.post("/api/download-model", json={"model_id": REAL, "callback_url": bad}), bad)
        assert body["error"] in ("invalid_callback_url", "invalid_input"), body
    _nothing_written(api, sim)


def test_bad_flags_and_job_routes(api, sim, real):
    _bad(api.post("/api/download-model", params={"model_id": REAL, "auto": "maybe"}), "auto=maybe")
    _bad(api.post("/api/download-model", json={"model_id": REAL, "activate": "sometimes"}), "activate")
    _bad(api.get("/api/download-progress", params={"job_id": "../../etc/passwd"}), "job_id")
    _bad(api.get("/api/jobs", params={"limit": -1}), "limit")
    _bad(api.get("/api/jobs", params={"offset": "x"}), "offset")
    _bad(api.get("/api/jobs", params={"kind": "rm -rf"}), "kind")
    for route in ("/api/jobs/..%2F..%2Fetc", "/api/jobs/NOT-A-JOB/cancel", "/api/jobs/" + "a" * 500):
        resp = api.post(route) if route.endswith("cancel") else api.get(route)
        _bad(resp, route)
    _nothing_written(api, sim)


def test_flat_json_body_is_accepted_like_query_parameters(api, sim):
    repo = "val/body-form"
    commit = sim.add_repo(repo, {"config.json": b"{}", "model.safetensors": 1 * MiB, "a.gguf": 1 * MiB})
    r = api.post("/api/download-model", json={"model_id": repo, "revision": "main",
                                               "include": ["*.json", "*.safetensors"], "exclude": "*.gguf",
                                               "auto": True})
    assert r.status_code == 202, r.text
    j = r.json()
    assert j["model_id"] == repo and j["files_total"] == 2
    wait_complete(api, j["job_id"])
    snap = repo_dir(api, repo) / "snapshots" / commit
    assert sorted(p.name for p in snap.iterdir()) == ["config.json", "model.safetensors"]
    assert sim.served_bytes(repo, "a.gguf") == 0
    # A cancel body and a flat-body form of the progress lookup work as well.
    again = start(api, repo, include="*.gguf")
    wait_complete(api, again["job_id"])
    r = api.post(f"/api/jobs/{again['job_id']}/cancel", json={"discard": True})
    assert_error(r, 409)


def test_manual_instructions_are_shell_safe_and_keep_excludes(api, sim, real, tmp_path):
    """auto=false: the `hf download` line, run by a shell, passes every value as one argument."""
    import shlex
    import subprocess
    evil = "x';touch PWNED;echo '"
    r = api.post("/api/download-model", json={"model_id": REAL, "auto": False, "revision": "v1.0",
                                              "include": [evil, "*.json"], "exclude": ["*.bin", "$(touch PWNED2)"]})
    assert r.status_code == 200, r.text
    line = r.json()["instructions"][-1]
    expected = ["hf", "download", REAL, "--revision", "v1.0", "--cache-dir", str(api.settings.hf_cache),
                "--include", evil, "--include", "*.json", "--exclude", "*.bin", "--exclude", "$(touch PWNED2)"]
    assert shlex.split(line) == expected
    # The shell agrees: a stand-in `hf` prints the arguments it received, and nothing runs.
    shell_dir = tmp_path / "shell"
    shell_dir.mkdir()
    out = subprocess.run(["bash", "-c", 'hf() { printf "%s\\n" "$@"; }; ' + line], cwd=shell_dir,
                         capture_output=True, text=True, timeout=30)
    assert out.stdout.splitlines() == expected[1:]
    assert not list(shell_dir.iterdir()), "the instruction line ran a command"
    _nothing_written(api, sim)
