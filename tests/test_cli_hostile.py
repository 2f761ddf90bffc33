"""modelctl against answers that are not the admin API's (issue 8, items 6 and 14): real tiny HTTP
servers answer HTML, or a job that never ends, or record who called them with which token."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .servers import ROOT
from .test_cli import need_tool

MODELCTL = ROOT / "scripts" / "modelctl"
SHIM = ROOT / "scripts" / "management" / "download_model.sh"
JOB_ID = "0123456789abcdef"
HTML = b"<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>"


class TinyServer:
    """Answers every request with answer(method, path) -> (status, content type, body); records them."""

    def __init__(self, answer):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                outer.requests.append({"method": self.command, "path": self.path,
                                       "authorization": self.headers.get("Authorization")})
                status, ctype, body = answer(self.command, self.path)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _any  # noqa: N815

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module", autouse=True)
def _tools():
    need_tool("jq", "jq")
    need_tool("curl", "curl")


def _serve(answer):
    s = TinyServer(answer)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def html_200():
    yield from _serve(lambda m, p: (200, "text/html", HTML))


def modelctl(args: list[str], url: str, *, exe: Path = MODELCTL, timeout: float = 30, cwd=None, **env):
    base = {k: v for k, v in os.environ.items() if k not in ("API_URL", "PROXY_API_KEY", "ENV_FILE", "API_PORT")}
    base.update({"API_URL": url, "PROXY_API_KEY": "k" * 24, "ENV_FILE": "/dev/null",
                 "MODELCTL_POLL_INTERVAL": "0.1", "MODELCTL_WATCH_GRACE": "2"})
    base.update(env)
    base = {k: v for k, v in base.items() if v is not None}
    return subprocess.run([str(exe), *args], env=base, capture_output=True, text=True, timeout=timeout, cwd=cwd)


COMMANDS = [["list"], ["jobs"], ["containers"], ["disk"], ["active"], ["health"], ["logs", "vllm"],
            ["download", "org/name"], ["download", "org/name", "--wait"], ["verify", "org/name", "--wait"],
            ["switch", "org/name"], ["pause", JOB_ID], ["cancel", JOB_ID], ["delete", "org/name"],
            ["progress"], ["progress", JOB_ID, "--watch"]]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_an_html_200_is_a_bad_answer_not_success(html_200, args):
    r = modelctl(args, html_200.url)
    assert r.returncode == 8, (r.returncode, r.stdout, r.stderr)
    assert "error: bad_answer:" in r.stderr and "text/html" in r.stderr, r.stderr
    assert "Welcome to nginx" in r.stderr   # the start of what answered, to recognise it


def test_the_download_shim_stops_on_a_bad_answer(html_200):
    r = modelctl(["org/name"], html_200.url, exe=SHIM)
    assert r.returncode == 8, (r.returncode, r.stderr)


@pytest.mark.parametrize("status,code", [(404, 8), (409, 8), (401, 8), (502, 6)])
def test_html_errors_are_not_read_as_the_apis_errors(status, code):
    for s in _serve(lambda m, p: (status, "text/html", HTML)):
        r = modelctl(["delete", "org/name"], s.url)
        assert r.returncode == code, (status, r.returncode, r.stderr)


def _endless_job(method: str, path: str):
    job = {"job_id": JOB_ID, "kind": "download", "model_id": "org/name", "revision": "main", "status": "downloading",
           "progress": 10, "bytes_downloaded": 1, "bytes_total": 10, "speed_bps": 1.0, "eta_seconds": 9,
           "files_done": 0, "files_total": 1, "error": None, "error_code": None, "result": None}
    return (202 if method == "POST" else 200), "application/json", json.dumps(job).encode()


def test_wait_has_a_deadline():
    for s in _serve(_endless_job):
        r = modelctl(["download", "org/name", "--wait", "--timeout", "1"], s.url)
        assert r.returncode == 9, (r.returncode, r.stderr)
        assert f"error: deadline: job {JOB_ID} is still downloading" in r.stderr
        r = modelctl(["org/name"], s.url, exe=SHIM, MODELCTL_WAIT_TIMEOUT="1")
        assert r.returncode == 9, (r.returncode, r.stderr)
        r = modelctl(["progress", JOB_ID, "--watch"], s.url, MODELCTL_WAIT_TIMEOUT="1")
        assert r.returncode == 9, (r.returncode, r.stderr)


def test_only_the_documented_env_file_is_read(tmp_path):
    """A .env in the current directory could name any API_URL: the token must not go there."""
    planted = TinyServer(_endless_job)
    installed = TinyServer(_endless_job)
    try:
        install = tmp_path / "install"
        (install / "scripts").mkdir(parents=True)
        shutil.copy(MODELCTL, install / "scripts" / "modelctl")
        (install / ".env").write_text(f"API_URL={installed.url}\nPROXY_API_KEY=installed-token\n")
        workdir = tmp_path / "somewhere"
        workdir.mkdir()
        (workdir / ".env").write_text(f"API_URL={planted.url}\nPROXY_API_KEY=planted-token\n")
        exe = install / "scripts" / "modelctl"
        unset = {"API_URL": None, "PROXY_API_KEY": None, "ENV_FILE": None}

        r = modelctl(["jobs"], "", exe=exe, cwd=workdir, **unset)
        assert planted.requests == [], "modelctl read ./.env of the current directory"
        assert installed.requests and installed.requests[0]["authorization"] == "Bearer installed-token", r.stderr

        r = modelctl(["--env-file", str(workdir / ".env"), "jobs"], "", exe=exe, cwd=tmp_path, **unset)
        assert planted.requests and planted.requests[0]["authorization"] == "Bearer planted-token", r.stderr

        r = modelctl(["--env-file", str(tmp_path / "missing.env"), "jobs"], "", exe=exe, **unset)
        assert r.returncode == 2 and "cannot read --env-file" in r.stderr
    finally:
        planted.close()
        installed.close()
