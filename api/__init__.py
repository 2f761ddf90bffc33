"""Admin API for a self-hosted LLM box. The public surface: `create_app`, `Settings`."""
__version__ = "0.3.0"

from .app import create_app  # noqa: E402
from .settings import Settings  # noqa: E402

__all__ = ["create_app", "Settings", "__version__"]
