"""`python -m api`: start uvicorn with the settings from the environment and .env."""
from __future__ import annotations

import logging
import os
import sys

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def main() -> int:
    import uvicorn
    from pydantic import ValidationError

    from . import Settings, create_app

    try:
        settings = Settings.from_environment()
        app = create_app(settings)
    except (RuntimeError, ValidationError) as e:
        print(f"llm-box admin API: cannot start: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # proxy_headers=False: uvicorn would otherwise take X-Forwarded-For from any local peer as the
    # client address; the API reads it itself, from TRUSTED_PROXIES only (api/request_guard.py).
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_level=settings.log_level,
                access_log=False, proxy_headers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
