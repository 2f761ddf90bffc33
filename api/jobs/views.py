"""What a job looks like to readers: the stored record, overlaid with the live progress of a job
that runs now (bytes, speed, ETA, a rate-limit wait, whether a bandwidth limit holds it back)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .manager import LiveJob

RUNNING = ("downloading", "verifying", "running")  # "running": a switch job (an addition to the contract)


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def job_view(rec: dict, live: LiveJob | None) -> dict:
    """`live`: the running job's in-memory state, None for a job that is not running here."""
    status = rec["status"]
    if live is not None and live.finalizing:
        # Not final for readers until the hooks (activate) have recorded what they started.
        status = live.status
    b, total = rec["bytes_downloaded"] or 0, rec["bytes_total"] or 0
    files_done, files_total = rec["files_done"] or 0, rec["files_total"] or 0
    speed, attempts, result = 0.0, rec["attempts"] or 0, rec["result"]
    waiting = None
    if live is not None and live.progress is not None and status in RUNNING:
        p = live.progress
        waiting = p.waiting()
        b = max(b, live.max_bytes)
        total, files_total = p.bytes_total or total, p.files_total or files_total
        files_done = max(files_done, p.files_done)
        speed = live.speed.rate
        status = live.status
    elif live is not None and live.result is not None and status in RUNNING:
        result = live.result
    if status == "complete":
        b = total
    eta = (total - b) / speed if speed > 0 and total else None
    return {
        "job_id": rec["job_id"], "kind": rec["kind"], "model_id": rec["model_id"],
        "revision": rec["revision"], "status": status,
        "progress": 100 if status == "complete" else (min(99, int(100 * b / total)) if total else 0),
        "bytes_downloaded": b, "bytes_total": total, "speed_bps": round(speed, 1),
        "eta_seconds": round(eta, 1) if eta is not None else None,
        "files_done": files_done, "files_total": files_total,
        "error": rec["error"], "error_code": rec["error_code"], "attempts": attempts,
        "waiting_until": iso_time(waiting[0]) if waiting else None,
        "waiting_reason": waiting[1] if waiting else None,
        "created_at": rec["created_at"], "started_at": rec["started_at"],
        "completed_at": rec["completed_at"], "status_url": f"/api/jobs/{rec['job_id']}",
        "callback_url": rec["callback_url"], "result": result,
        **({"webhook": rec["webhook"]} if rec.get("webhook") else {}),
        **_limit_view(rec, live, status),
    }


def _limit_view(rec: dict, live: LiveJob | None, status: str) -> dict:
    if rec["kind"] != "download":
        return {}
    throttle = live.throttle if live is not None else None
    return {"max_bps": (rec["params"] or {}).get("max_bps"),
            "throttled": bool(throttle and status == "downloading" and throttle.throttled)}
