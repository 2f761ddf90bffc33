"""A real two-node Swarm on one machine for the fleet tests (.ci/swarm-up.sh, .ci/swarm-down.sh).

Node 1 is the main engine (the manager), node 2 a second dockerd joined as a worker. No registry:
the project image (built from the debootstrap base by .ci/build-images.sh, tagged by a hash of
the sources) and the fake inference image are copied to node 2 with `docker save | docker load`.
Both nodes share this filesystem, so each gets its own models folder through the mount template
`<root>/{{.Node.ID}}`.
"""
from __future__ import annotations

import hashlib
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.types import Healthcheck, RollbackConfig, ServiceMode, UpdateConfig

from . import docker_support as ds

ROOT = ds.ROOT
GPU_LABEL = "llmbox.gpu"
# The fake inference task: healthy unless its model's name says "broken". No network at all
# (both nodes share one loopback, so no port either): a command healthcheck reads a file.
INFERENCE_CMD = ["sh", "-c", 'case "$DEFAULT_MODEL" in *broken*) echo "cannot load $DEFAULT_MODEL" ;; '
                 '*) echo ok > /tmp/ready ;; esac; trap "exit 0" TERM; sleep 100000 & wait']


@dataclass
class TwoNodeSwarm:
    manager: docker.DockerClient
    worker: docker.DockerClient
    worker_socket: str
    image: str
    run_id: str

    def node_ids(self) -> list[str]:
        return sorted(n.id for n in self.manager.nodes.list())

    def worker_id(self) -> str:
        return self.worker.info()["Swarm"]["NodeID"]

    def set_availability(self, node_id: str, availability: str) -> None:
        node = self.manager.nodes.get(node_id)
        node.update({**node.attrs["Spec"], "Availability": availability})


def _run(cmd: list[str] | str, timeout: float = 600, shell: bool = False) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, shell=shell, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd!r} failed ({proc.returncode}): {proc.stdout[-1500:]}{proc.stderr[-3000:]}")
    return proc.stdout.strip()


def source_tag() -> str:
    """The project image tag for these sources: rebuilt only when they change."""
    h = hashlib.sha256()
    files = [*sorted(ROOT.glob("api/**/*.py")), ROOT / "pyproject.toml", ROOT / "api" / "Dockerfile",
             ROOT / "README.md"]
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return f"llm-box-admin-api:src-{h.hexdigest()[:12]}"


def copy_image(tag: str, socket: str) -> None:
    main_id = ds.docker_client().images.get(tag).id
    try:
        if docker.DockerClient(base_url=socket).images.get(tag).id == main_id:
            return
    except docker.errors.ImageNotFound:
        pass
    _run(f"docker save {tag} | docker -H {socket} load -q", shell=True)


def start() -> TwoNodeSwarm:
    socket = _run(["bash", ".ci/swarm-up.sh"], timeout=180).splitlines()[-1]
    image = source_tag()
    _run(["bash", ".ci/build-images.sh", image], timeout=900)
    ds.ensure_inference_image()
    for tag in (image, ds.IMAGE_TAG):
        copy_image(tag, socket)
    worker = docker.DockerClient(base_url=socket, timeout=60)
    for client in (ds.docker_client(), worker):   # images of older sources: theirs were ours too
        for img in client.images.list("llm-box-admin-api"):
            for old in img.tags:
                if old.startswith("llm-box-admin-api:src-") and old != image:
                    client.images.remove(old, noprune=False)
    s = TwoNodeSwarm(ds.docker_client(), worker, socket, image, uuid.uuid4().hex[:8])
    for nid in s.node_ids():
        node = s.manager.nodes.get(nid)
        spec = node.attrs["Spec"]
        node.update({**spec, "Availability": "active", "Labels": {**(spec.get("Labels") or {}), GPU_LABEL: "true"}})
    return s


def stop(s: TwoNodeSwarm | None) -> None:
    if s is not None:
        for svc in s.manager.services.list(filters={"label": f"llmbox.test.run={s.run_id}"}):
            svc.remove()
    subprocess.run(["bash", ".ci/swarm-down.sh"], cwd=ROOT, capture_output=True, timeout=120)


def inference_service(s: TwoNodeSwarm, name: str, model: str):
    ns = 1_000_000_000
    return s.manager.services.create(
        ds.IMAGE_TAG, command=INFERENCE_CMD, name=name, env={"DEFAULT_MODEL": model},
        mode=ServiceMode("global"), constraints=[f"node.labels.{GPU_LABEL}==true"],
        labels={"llmbox.test.run": s.run_id}, stop_grace_period=2 * ns,
        healthcheck=Healthcheck(test=["CMD-SHELL", "[ -f /tmp/ready ]"], interval=ns // 2, timeout=2 * ns,
                                retries=2, start_period=0),
        update_config=UpdateConfig(parallelism=1, order="stop-first", failure_action="rollback",
                                   monitor=3 * ns, delay=0),
        rollback_config=RollbackConfig(parallelism=0, order="stop-first", monitor=2 * ns, delay=0))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()
