"""How much memory has the GPU? GPU_MEMORY_GB, else NVML when the API sees a GPU itself, else
`nvidia-smi` run in the inference container (through the container allow-list), else unknown."""
from __future__ import annotations

import logging
import threading
import time

from ..containers import ContainerManager
from ..settings import Settings
from .fit import Gpu

log = logging.getLogger(__name__)
NVIDIA_SMI = ["nvidia-smi", "--query-gpu=memory.total", "--format=csv"]
GIB = 1 << 30
RETRY_AFTER = 60.0   # seconds; the inference container may just be starting


def gb_to_bytes(gb: float) -> int:
    """GPU_MEMORY_GB counts GiB, as nvidia-smi's MiB do: a "24 GB" card reports 24576 MiB."""
    return int(round(gb * GIB))


def parse_nvidia_smi(text: str) -> list[int]:
    """`memory.total [MiB]` then one `24576 MiB` line per GPU -> bytes per GPU."""
    out = []
    for line in text.splitlines():
        parts = line.strip().split()
        if len(parts) == 2 and parts[0].isdigit():
            unit = {"mib": 1 << 20, "gib": GIB, "kib": 1 << 10}.get(parts[1].lower())
            if unit:
                out.append(int(parts[0]) * unit)
    return out


class GpuProbe:
    def __init__(self, settings: Settings, containers: ContainerManager):
        self.settings = settings
        self.containers = containers
        self._found: Gpu | None = None     # a detected GPU does not change while the API runs
        self._missed_at = -RETRY_AFTER     # no GPU found: ask again after RETRY_AFTER seconds
        self._lock = threading.Lock()

    def detect(self) -> Gpu:
        if self.settings.gpu_memory_gb is not None:
            return Gpu(gb_to_bytes(self.settings.gpu_memory_gb), "setting", 1)
        with self._lock:
            if self._found is None and time.monotonic() - self._missed_at >= RETRY_AFTER:
                self._found = self._nvml() or self._docker()
                if self._found is None:
                    self._missed_at = time.monotonic()
            found = self._found
        if found is None:
            return Gpu(None, "unknown", 0, "no GPU_MEMORY_GB, no GPU visible to the API (NVML) and "
                                           "nvidia-smi did not answer in the inference container")
        return found

    @staticmethod
    def _nvml() -> Gpu | None:
        try:
            import pynvml
            pynvml.nvmlInit()
        except Exception:  # noqa: BLE001 - no driver or no library: the API runs without a GPU
            return None
        try:
            count = pynvml.nvmlDeviceGetCount()
            if not count:
                return None
            mem = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0))
            return Gpu(int(mem.total), "nvml", count)
        except Exception:  # noqa: BLE001
            return None
        finally:
            try:
                pynvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass

    def _docker(self) -> Gpu | None:
        name = self.settings.inference_container
        try:
            self.containers.get(name)       # the allow-list check, and is it there at all
            api = self.containers.api
            exec_id = api.exec_create(name, NVIDIA_SMI, stdout=True, stderr=True)["Id"]
            output = api.exec_start(exec_id)
            code = api.exec_inspect(exec_id).get("ExitCode")
        except Exception as e:  # noqa: BLE001 - no Docker, no container, no nvidia-smi: unknown
            log.info("gpu: nvidia-smi in %s unavailable: %s", name, getattr(e, "code", type(e).__name__))
            return None
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else str(output)
        sizes = parse_nvidia_smi(text) if code == 0 else []
        if not sizes:
            log.info("gpu: nvidia-smi in %s gave no memory.total (exit %s)", name, code)
            return None
        return Gpu(sizes[0], "docker", len(sizes), f"nvidia-smi in container {name}")
