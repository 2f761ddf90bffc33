"""Admin API for a self-hosted LLM box. The public surface: `create_app`, `Settings`."""
__version__ = "0.3.0"

__all__ = ["create_app", "Settings", "__version__"]


def __getattr__(name: str):
    # Loaded on first use (PEP 562): the transfer process and the node CLI import api.download.*
    # and must not pay for FastAPI, Docker and the routes (1.3 s and ~50 MB per process).
    if name == "create_app":
        from .app import create_app
        return create_app
    if name == "Settings":
        from .settings import Settings
        return Settings
    raise AttributeError(f"module 'api' has no attribute {name!r}")
