"""A local Hugging Face Hub simulator that the unmodified huggingface_hub client can download from.

    with HubSim(tmp_path) as sim:
        sim.add_repo("org/model", {"config.json": b"{}", "model.safetensors": 64 << 20})
        snapshot_download("org/model", endpoint=sim.url, cache_dir=...)

See docs/hubsim.md.
"""

from .faults import Fault
from .sim import HubSim

__all__ = ["Fault", "HubSim"]
