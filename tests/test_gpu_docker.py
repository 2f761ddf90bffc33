"""GPU memory through `nvidia-smi` in the inference container (real dockerd, a test image whose
nvidia-smi is a script printing what a 24 GB card prints)."""
from __future__ import annotations

import io
import tarfile
import uuid

import pytest

from api.testing.hubsim import model_repos as mr

from . import docker_support as ds

NVIDIA_SMI = "#!/bin/sh\necho 'memory.total [MiB]'\necho '24564 MiB'\necho '24564 MiB'\n"


def _image(client, tag: str) -> None:
    bb = ds.busybox_path()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(path: str, data: bytes, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        for d in ("bin", "tmp"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        add("bin/busybox", bb.read_bytes())
        for applet in ("sh", "sleep", "echo"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        add("bin/nvidia-smi", NVIDIA_SMI.encode())
    repo, _, version = tag.partition(":")
    client.api.import_image_from_data(buf.getvalue(), repository=repo, tag=version, changes=["ENV PATH=/bin"])


@pytest.fixture
def gpu_container(engine):
    run = uuid.uuid4().hex[:8]
    tag, name = f"llmbox-test-nvsmi-{run}:latest", f"llmbox-test-gpu-{run}"
    _image(engine, tag)
    container = engine.containers.run(tag, ["sleep", "3600"], name=name, detach=True, network_mode="none",
                                      labels={ds.TEST_LABEL: "1", "llmbox.test.run": run})
    try:
        yield name
    finally:
        container.remove(force=True)
        engine.images.remove(tag, force=True)


def test_gpu_memory_from_nvidia_smi_in_the_inference_container(api_factory, sim, gpu_container):
    mr.install(sim)
    api = api_factory(docker_host=None, inference_container=gpu_container, managed_containers=gpu_container)
    r = api.get("/api/fit", params={"model_id": mr.LLAMA3})
    assert r.status_code == 200, r.text
    fit = r.json()["fit"]
    assert fit["gpu"] == {"total_bytes": 24564 << 20, "source": "docker", "count": 2,
                          "detail": f"nvidia-smi in container {gpu_container}"}
    assert fit["usable_bytes"] == int((24564 << 20) * 0.9) and fit["verdict"] == "fits"


def test_a_container_off_the_allow_list_is_never_asked(api_factory, sim, gpu_container):
    mr.install(sim)
    api = api_factory(docker_host=None, inference_container=gpu_container, managed_containers="vllm-other")
    fit = api.get("/api/fit", params={"model_id": mr.LLAMA3}).json()["fit"]
    assert fit["gpu"]["source"] == "unknown" and fit["verdict"] == "unknown"
