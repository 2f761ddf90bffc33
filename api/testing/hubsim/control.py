"""`/_sim/...` on the hub port: faults, counters, repos and settings, over HTTP."""

from __future__ import annotations

import base64
import json
from typing import Any

from .faults import Fault
from .http_base import BaseHandler, HttpError

# Settings `POST /_sim/config` may change, with the type each takes.
CONFIG_FIELDS = {
    "tree_page_size": int,
    "cdn_url_lifetime": float,
    "cdn_url_style": str,
    "cdn_max_size": int,
    "ratelimit_enforce": bool,
    "ratelimit_quotas": dict,
}


class ControlRoutes(BaseHandler):
    def _control(self, segs: list[str], body: bytes) -> None:
        what = segs[0] if segs else ""
        method = self.command
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            raise HttpError(400, None, "body is not JSON") from None
        sim = self.sim
        if what == "faults":
            if method == "GET":
                return self._send_json(200, [f.to_dict() for f in sim.faults.active()])
            if method == "DELETE":
                sim.clear_faults()
                return self._send_json(200, {"ok": True})
            if method == "POST":
                items = payload if isinstance(payload, list) else [payload] if payload else []
                try:
                    faults = [Fault.from_dict(item) for item in items]
                except (TypeError, ValueError) as e:
                    raise HttpError(400, None, f"bad fault: {e}") from None
                sim.set_faults(*faults)
                return self._send_json(200, {"ok": True, "faults": len(faults)})
        elif what == "stats" and method == "GET":
            return self._send_json(200, {"files": sim.stats.snapshot(), "connections": sim.stats.connection_snapshot()})
        elif what == "log" and method == "GET":
            return self._send_json(200, sim.request_log())
        elif what == "reset" and method == "POST":
            sim.reset_counters()
            return self._send_json(200, {"ok": True})
        elif what == "config":
            if method == "POST":
                self._configure(payload)
            if method in ("GET", "POST"):
                return self._send_json(200, sim.config())
        elif what == "repos":
            if method == "GET":
                return self._send_json(200, sim.describe())
            if method == "POST":
                return self._add_repo(payload)
        raise HttpError(404, None, f"no such control route: {method} {self.path}")

    def _configure(self, payload: Any) -> None:
        if not isinstance(payload, dict) or set(payload) - set(CONFIG_FIELDS):
            raise HttpError(400, None, f"expected an object with some of {sorted(CONFIG_FIELDS)}")
        try:
            self.sim.configure(**{name: CONFIG_FIELDS[name](value) for name, value in payload.items()})
        except (TypeError, ValueError) as e:
            raise HttpError(400, None, str(e)) from None

    def _add_repo(self, payload: Any) -> None:
        if not isinstance(payload, dict) or "repo_id" not in payload or not isinstance(payload.get("files"), dict):
            raise HttpError(400, None, 'expected {"repo_id": ..., "files": {...}}')
        files: dict[str, bytes | int] = {}
        for path, spec in payload["files"].items():
            if isinstance(spec, int) and not isinstance(spec, bool):
                files[path] = spec
            elif isinstance(spec, dict) and "text" in spec:
                files[path] = str(spec["text"]).encode()
            elif isinstance(spec, dict) and "base64" in spec:
                files[path] = base64.b64decode(spec["base64"])
            else:
                raise HttpError(400, None, f"{path}: expected a size, {{'text': ...}} or {{'base64': ...}}")
        flags = {name: bool(payload.get(name, False)) for name in ("gated", "private", "disabled")}
        try:
            commit = self.sim.add_repo(payload["repo_id"], files, revision=payload.get("revision") or "main", **flags)
        except (TypeError, ValueError) as e:
            raise HttpError(400, None, str(e)) from None
        self._send_json(200, {"repo_id": payload["repo_id"], "commit": commit})
