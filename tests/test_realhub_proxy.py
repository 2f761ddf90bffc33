"""Behind a corporate proxy: Debian's tinyproxy carries an HTTPS download from the simulator's
HTTPS mode (CONNECT tunnels), the CA bundle comes from SSL_CERT_FILE, and the bytes are right."""
from __future__ import annotations

import base64
import shutil
import subprocess

import httpx
import pytest

from api.download.http import Origin, Proxy
from api.testing.hubsim import HubSim

from ._dl import MiB, sha256_file
from .conftest import API_KEY
from .docker_support import in_ci
from .servers import ApiProcess, free_port, wait_until

W = "model.safetensors"


@pytest.fixture
def tinyproxy(tmp_path):
    exe = shutil.which("tinyproxy")
    if exe is None:
        if in_ci():
            pytest.fail("tinyproxy is required in CI (.ci/run installs it)")
        pytest.skip("tinyproxy is not installed (apt-get install tinyproxy)")
    port, log = free_port(), tmp_path / "tinyproxy.log"
    conf = tmp_path / "tinyproxy.conf"
    # No ConnectPort line: CONNECT to any port (the simulator's are random).
    conf.write_text(f'Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 100\nAllow 127.0.0.1\n'
                    f'LogFile "{log}"\nLogLevel Info\nPidFile "{tmp_path / "tinyproxy.pid"}"\n'
                    'DisableViaHeader Yes\n')
    proc = subprocess.Popen([exe, "-d", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def listening():
        if proc.poll() is not None:
            raise AssertionError(f"tinyproxy exited: {log.read_text() if log.exists() else ''}")
        try:
            return httpx.get("http://127.0.0.1:1/", proxy=f"http://127.0.0.1:{port}", timeout=2) is not None
        except httpx.HTTPError:
            return False
    try:
        wait_until(listening, 15, message="tinyproxy listening")
        yield f"http://127.0.0.1:{port}", log
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_https_download_through_a_connect_proxy(tmp_path, tinyproxy):
    proxy, proxy_log = tinyproxy
    repo, size = "proxy/model", 6 * MiB
    with HubSim(tmp_path / "hub", tls=True) as sim:
        commit = sim.add_repo(repo, {"config.json": b'{"via": "proxy"}', W: size})
        ports = sim.port, sim.cdn_port
        env_file = tmp_path / "box.env"
        env_file.write_text("DEFAULT_MODEL=org/none\n")
        env = {"PROXY_API_KEY": API_KEY, "HF_ENDPOINT": sim.url, "HF_TOKEN": "",
               "MODELS_DIR": str(tmp_path / "models"), "STATE_DB": str(tmp_path / "state.db"),
               "ENV_FILE": str(env_file), "PART_SIZE_MB": "2", "RATE_LIMIT_ENABLED": "false",
               "DOCKER_HOST": "unix:///nonexistent.sock", "DISK_RESERVE_MB": "0", "MAX_RETRIES": "2",
               "RETRY_BACKOFF_MAX": "0.5", "STALL_TIMEOUT": "10", "HF_HUB_DISABLE_TELEMETRY": "1",
               "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf-home"),
               "HTTPS_PROXY": proxy, "https_proxy": proxy, "NO_PROXY": "", "no_proxy": "",
               "SSL_CERT_FILE": sim.ca_bundle, "REQUESTS_CA_BUNDLE": ""}
        api = ApiProcess(env, free_port(), tmp_path / "api.log").start()
        try:
            headers = {"Authorization": f"Bearer {API_KEY}"}
            r = httpx.post(api.url + "/api/download-model", params={"model_id": repo}, headers=headers, timeout=30)
            assert r.status_code == 202, r.text

            def final():
                j = httpx.get(f"{api.url}/api/jobs/{r.json()['job_id']}", headers=headers, timeout=10).json()
                return j["status"] in ("complete", "failed") and j
            done = wait_until(final, 60, message="the proxied download")
        finally:
            api.stop()
        assert done["status"] == "complete", (done, (tmp_path / "api.log").read_text()[-3000:])
        blob = tmp_path / "models" / "hub" / "models--proxy--model" / "snapshots" / commit / W
        assert sha256_file(blob) == sim.file_info(repo, W)["sha256"]
        assert sim.served_bytes(repo, W) == size
    seen = proxy_log.read_text()
    # The byte transfer itself went through the tunnel: a CONNECT to the CDN's port, and the Hub's.
    assert f"CONNECT 127.0.0.1:{ports[1]} " in seen, seen[-3000:]
    assert f"CONNECT 127.0.0.1:{ports[0]} " in seen, seen[-3000:]


def test_proxy_choice_follows_the_standard_variables(monkeypatch):
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
                 "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://user:p%40ss@10.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.internal")
    p = Proxy.for_origin(Origin.of("https://cdn-lfs.hf.co/x"))
    assert (p.host, p.port) == ("10.0.0.1", 3128)
    assert p.headers == {"Proxy-Authorization": "Basic " + base64.b64encode(b"user:p@ss").decode()}
    assert Proxy.for_origin(Origin.of("https://hub.internal/x")) is None
    assert Proxy.for_origin(Origin.of("https://localhost:8443/x")) is None
    assert Proxy.for_origin(Origin.of("http://mirror.example/x")) is None     # only HTTPS_PROXY is set
    monkeypatch.setenv("HTTP_PROXY", "proxy.example:8080")
    p = Proxy.for_origin(Origin.of("http://mirror.example/x"))
    assert (p.host, p.port, p.headers) == ("proxy.example", 8080, {})
