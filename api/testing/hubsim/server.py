"""HTTP side of the simulator: one handler class serving both the hub port and the CDN port."""

from __future__ import annotations

from typing import Any

from .cdn import CdnRoutes
from .control import ControlRoutes
from .http_base import HttpError, SimServer, parse_range
from .hub import HubRoutes
from .stats import Stats

__all__ = ["Handler", "HttpError", "SimServer", "Stats", "parse_range"]


class Handler(HubRoutes, CdnRoutes, ControlRoutes):
    def _route(self, url: Any, body: bytes) -> None:
        if self.role == "cdn":
            self._cdn(url)
        else:
            self._hub(url, body)
