"""Helpers for tests that need a real Docker engine.

* ``ensure_engine()`` - make sure an engine answers (runs .ci/docker-up.sh if needed).
* ``ensure_inference_image()`` - a tiny fake inference server image built with ``docker import``
  from Debian's busybox-static (no registry pull).
* ``run_test_container()`` - start a container from it the way the real box runs vLLM:
  host networking, a HEALTHCHECK, labels, a restart policy, env vars, binds.

Network rule: containers use network_mode "host" and serve on 127.0.0.1 only; the engine is
started with the bridge disabled (--bridge=none --iptables=false).
"""
from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import docker
import docker.errors

ROOT = Path(__file__).resolve().parents[1]
DOCKER_UP = ROOT / ".ci" / "docker-up.sh"
TEST_LABEL = "llmbox.test"            # every container made by tests carries it
# Bumped whenever the image's content changes: the daemon is shared and keeps old tags.
IMAGE_TAG = "llmbox-test-inference:4"

BUSYBOX_APPLETS = ["sh", "httpd", "wget", "echo", "printf", "mkdir", "cat", "sleep", "env",
                   "ls", "ps", "kill", "true", "false", "id", "hostname", "nc", "sed", "tr", "head"]

ENTRYPOINT_SCRIPT = r"""#!/bin/sh
# Fake inference server: serves /health and /v1/models for $DEFAULT_MODEL on 127.0.0.1:$PORT.
PORT="${PORT:-8000}"
MODEL="${DEFAULT_MODEL:-}"
echo "fake-inference: starting (model=${MODEL:-<none>}, port=$PORT)"
case "$MODEL" in
  *broken*)
    echo "ERROR: failed to load model '$MODEL': safetensors header is corrupt" >&2
    echo "fake-inference: exiting with status 1" >&2
    exit 1
    ;;
esac
mkdir -p /www/v1
echo ok > /www/health
printf '{"object":"list","data":[{"id":"%s","object":"model"}]}' "$MODEL" > /www/v1/models
echo "serving $MODEL on port $PORT"
# sh as PID 1 gets SIGTERM only for signals it traps; keep stops fast and clean.
trap 'echo "fake-inference: stopping"; kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT
busybox httpd -f -p "127.0.0.1:$PORT" -h /www &
pid=$!
wait "$pid"
"""

# A fake `vllm serve MODEL [flags]` (the compose command runs it as vLLM's image would): serves
# /health, /v1/models listing every --served-model-name (the model id when none) the way vLLM
# does, and /args, the JSON list of the words it was started with. --api-key or VLLM_API_KEY
# makes /v1/* demand `Authorization: Bearer <key>`, like vLLM. With HF_HUB_OFFLINE=1 it resolves
# the model in $HF_HOME/hub as offline vLLM would: --revision (default main) must name a
# snapshot, through refs/<revision> unless it is the commit itself; otherwise it exits 1. A GGUF
# `repo_id:quant_type` needs exactly one `*<quant_type>.gguf` file in that snapshot, as vLLM does.
VLLM_SCRIPT = r"""#!/bin/sh
[ "$1" = serve ] || { echo "usage: vllm serve MODEL [flags]" >&2; exit 2; }
shift
MODEL="$1"
shift
mkdir -p /tmp/vllm
args="\"serve\",\"$MODEL\""
for a in "$@"; do args="$args,\"$a\""; done
printf '[%s]' "$args" > /tmp/vllm/args
names="" port=8000 key="${VLLM_API_KEY:-}" revision=main
while [ $# -gt 0 ]; do
  case "$1" in
    --served-model-name)
      shift
      while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do names="$names $1"; shift; done
      continue ;;
    --port) port="$2"; shift ;;
    --api-key) key="$2"; shift ;;
    --revision) revision="$2"; shift ;;
  esac
  shift
done
echo "fake-vllm: serve $MODEL revision=$revision names=[${names# }] port=$port"
if [ "${HF_HUB_OFFLINE:-}" = 1 ]; then
  repo_id="${MODEL%%:*}"
  repo="${HF_HOME:-/root/.cache/huggingface}/hub/models--$(printf %s "$repo_id" | sed 's#/#--#g')"
  commit="$revision"
  [ -f "$repo/refs/$revision" ] && commit="$(cat "$repo/refs/$revision")"
  if [ ! -d "$repo/snapshots/$commit" ]; then
    echo "OSError: We couldn't connect to the Hub and cannot find $repo_id at revision $revision in the cache" >&2
    exit 1
  fi
  if [ "$repo_id" != "$MODEL" ]; then
    quant="${MODEL##*:}"
    found="$(ls "$repo/snapshots/$commit" | sed -n "/$quant\.gguf\$/p")"
    if [ -z "$found" ] || [ "$(printf '%s\n' "$found" | sed -n '$=')" != 1 ] || [ ! -e "$repo/snapshots/$commit/$found" ]; then
      echo "ValueError: no single cached GGUF file for quant type $quant in $repo_id" >&2
      exit 1
    fi
  fi
fi
[ -n "$names" ] || names="$MODEL"
data=""
for n in $names; do data="$data,{\"id\":\"$n\",\"object\":\"model\",\"root\":\"$MODEL\"}"; done
printf '{"object":"list","data":[%s]}' "${data#,}" > /tmp/vllm/models
printf '%s' "$key" > /tmp/vllm/key
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT
nc -ll -p "$port" -e /bin/fake-vllm-http &
pid=$!
wait "$pid"
"""

# One HTTP exchange of the fake vllm (nc -e runs it per connection).
VLLM_HTTP = r"""#!/bin/sh
# A client that connects and sends nothing must not hold the (serial) server forever.
read -r -t 5 method path proto || exit 0
auth=""
cr="$(printf '\r')"
while IFS= read -r line; do
  line="${line%$cr}"
  [ -z "$line" ] && break
  case "$line" in [Aa]uthorization:*) auth="${line#*: }" ;; esac
done
reply() { printf 'HTTP/1.0 %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' "$1" "${#2}" "$2"; }
key="$(cat /tmp/vllm/key)"
case "$path" in
  /health) reply "200 OK" "" ;;
  /v1/*|/args)
    if [ -n "$key" ] && [ "$auth" != "Bearer $key" ]; then reply "401 Unauthorized" '{"error":"Unauthorized"}'
    elif [ "$path" = /args ]; then reply "200 OK" "$(cat /tmp/vllm/args)"
    elif [ "$path" = /v1/models ]; then reply "200 OK" "$(cat /tmp/vllm/models)"
    else reply "404 Not Found" '{"error":"not found"}'; fi ;;
  *) reply "404 Not Found" '{"error":"not found"}' ;;
esac
"""

_client: docker.DockerClient | None = None


def docker_client() -> docker.DockerClient:
    """A shared client for the local engine (DOCKER_HOST honoured)."""
    global _client
    if _client is None:
        _client = docker.from_env(timeout=60)
    return _client


def engine_running() -> bool:
    try:
        return bool(docker.from_env(timeout=5).ping())
    except Exception:  # noqa: BLE001
        return False


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def ensure_engine() -> str | None:
    """Make sure an engine answers. Returns None when it does, else a reason string.

    Runs .ci/docker-up.sh when ``docker info`` fails (installs docker.io/busybox-static when
    missing and starts dockerd with the bridge off).
    """
    if engine_running() and busybox_path() is not None:
        return None
    try:
        proc = subprocess.run(["bash", str(DOCKER_UP)], capture_output=True, text=True,
                              timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not run {DOCKER_UP}: {exc}"
    if proc.returncode != 0:
        return (f"{DOCKER_UP} failed (rc={proc.returncode}):\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    if not engine_running():
        return f"{DOCKER_UP} succeeded but the engine does not answer"
    if busybox_path() is None:
        return "busybox-static is not installed"
    return None


def busybox_path() -> Path | None:
    """The static busybox from Debian's busybox-static (a dynamic one would not run)."""
    try:
        out = subprocess.run(["dpkg", "-L", "busybox-static"], capture_output=True, text=True,
                             check=True).stdout
        for line in out.splitlines():
            if line.endswith("/bin/busybox") and Path(line).is_file():
                return Path(line)
    except (OSError, subprocess.CalledProcessError):
        pass
    found = shutil.which("busybox")
    try:
        if found and "statically linked" in subprocess.run(
                ["file", "-L", found], capture_output=True, text=True).stdout:
            return Path(found)
    except OSError:
        pass
    return None


def _rootfs_tar() -> bytes:
    bb = busybox_path()
    if bb is None:
        raise RuntimeError("busybox-static is required (apt-get install busybox-static)")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add_dir(path: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(path)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            tar.addfile(info)

        def add_file(path: str, data: bytes, mode: int) -> None:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = mode
            tar.addfile(info, io.BytesIO(data))

        for d in ("bin", "etc", "proc", "sys", "dev", "www", "data", "root"):
            add_dir(d)
        add_dir("tmp", 0o1777)
        add_file("bin/busybox", bb.read_bytes(), 0o755)
        for applet in BUSYBOX_APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        add_file("entrypoint.sh", ENTRYPOINT_SCRIPT.encode(), 0o755)
        add_file("bin/vllm", VLLM_SCRIPT.encode(), 0o755)
        add_file("bin/fake-vllm-http", VLLM_HTTP.encode(), 0o755)
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
        add_file("etc/group", b"root:x:0:\n", 0o644)
    return buf.getvalue()


def ensure_inference_image(tag: str = IMAGE_TAG) -> str:
    """Build (once) the fake inference image with ``docker import``; returns the tag."""
    client = docker_client()
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    repo, _, version = tag.rpartition(":")
    if not repo:
        repo, version = tag, "latest"
    changes = [
        'ENV PATH=/bin',
        'ENV PORT=8000',
        'WORKDIR /',
        'ENTRYPOINT ["/entrypoint.sh"]',
        'LABEL org.opencontainers.image.title="llmbox fake inference server"',
    ]
    client.api.import_image_from_data(_rootfs_tar(), repository=repo, tag=version,
                                      changes=changes)
    client.images.get(tag)  # raises if the import did not produce it
    return tag


def free_port() -> int:
    """A TCP port currently free on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_name(prefix: str = "llmbox-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def healthcheck(interval_s: float = 0.5, retries: int = 3) -> dict:
    ns = 1_000_000_000
    return {
        "test": ["CMD-SHELL", "wget -q -O- http://127.0.0.1:$PORT/health || exit 1"],
        "interval": int(interval_s * ns),
        "timeout": 2 * ns,
        "retries": retries,
        "start_period": 0,
    }


def run_test_container(name: str, *, model: str, port: int, image: str = IMAGE_TAG,
                       run_id: str = "", env: dict[str, str] | None = None,
                       labels: dict[str, str] | None = None,
                       binds: dict[str, dict] | None = None,
                       restart_policy: dict | None = None,
                       with_healthcheck: bool = True) -> docker.models.containers.Container:
    """Start a fake inference container on the host network (127.0.0.1:port)."""
    all_env = {"DEFAULT_MODEL": model, "PORT": str(port)}
    all_env.update(env or {})
    all_labels = {TEST_LABEL: "1", "llmbox.test.run": run_id or "adhoc"}
    all_labels.update(labels or {})
    kwargs = dict(
        name=name,
        detach=True,
        network_mode="host",
        environment=all_env,
        labels=all_labels,
        restart_policy=restart_policy or {"Name": "unless-stopped"},
        volumes=binds or {},
        stop_signal="SIGTERM",
    )
    if with_healthcheck:
        kwargs["healthcheck"] = healthcheck()
    return docker_client().containers.run(image, **kwargs)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; raise AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
        except Exception as exc:  # noqa: BLE001
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def wait_healthy(name: str, timeout: float = 30.0) -> dict:
    api = docker_client().api

    def check():
        st = api.inspect_container(name)["State"]
        return st if (st.get("Health") or {}).get("Status") == "healthy" else None

    return wait_for(check, timeout, what=f"{name} healthy")


def remove_test_containers(run_id: str | None = None) -> list[str]:
    """Force-remove containers labelled by the tests (optionally one run only)."""
    label = f"llmbox.test.run={run_id}" if run_id else TEST_LABEL
    removed = []
    for c in docker_client().containers.list(all=True, filters={"label": label}):
        try:
            c.remove(force=True, v=True)
            removed.append(c.name)
        except docker.errors.NotFound:
            pass
    return removed


def compose_vllm_command(port: int) -> tuple[list[str], list[str]]:
    """The `vllm` service's entrypoint and command from docker-compose.yml as the container gets
    them (compose turns `$$` into `$`), listening on ``port`` instead of 8000."""
    import yaml
    svc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["vllm"]
    command = [c.replace("$$", "$").replace("--port 8000", f"--port {port}") for c in svc["command"]]
    return list(svc["entrypoint"]), command


def run_vllm_container(name: str, *, model: str, port: int, models_dir: Path, run_id: str = "",
                       env: dict[str, str] | None = None,
                       restart_policy: dict | None = None) -> docker.models.containers.Container:
    """Start the fake vLLM the way docker-compose.yml runs the real one: its own command, the
    cache at /models (read-only), offline, on the host network at 127.0.0.1:port."""
    entrypoint, command = compose_vllm_command(port)
    all_env = {"DEFAULT_MODEL": model, "PORT": str(port), "HF_HOME": "/models", "HF_HUB_OFFLINE": "1",
               "INFERENCE_ARGS": "", "SERVED_MODEL_ALIAS": "default"}
    all_env.update(env or {})
    return docker_client().containers.run(
        IMAGE_TAG, entrypoint=entrypoint, command=command, name=name, detach=True, network_mode="host",
        environment=all_env, labels={TEST_LABEL: "1", "llmbox.test.run": run_id or "adhoc"},
        restart_policy=restart_policy or {"Name": "unless-stopped"},
        volumes={str(models_dir): {"bind": "/models", "mode": "ro"}}, stop_signal="SIGTERM",
        healthcheck=healthcheck())
