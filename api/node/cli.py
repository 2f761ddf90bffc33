"""`python -m api.node fetch|list|verify|delete`: one node's cache, JSON lines on stdout.

A fleet job runs this in the API's own image on every node, with the node's models folder at
MODELS_DIR. It builds the same objects as the API (download engine, job manager, model cache) over
a node-local job table, so a download interrupted on one node resumes from its bytes next time.

Every line is one JSON object with an "event": `progress` (fetch/verify, at most one a second),
`model` (list), then exactly one `result` or `error` last. Exit status 0 on success, 1 on error,
2 on bad arguments. Logs go to stderr; stdout holds only the JSON lines.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import time
from pathlib import Path

from pydantic import SecretStr

from ..core import build_core
from ..errors import ApiError
from ..jobs.store import FINAL
from ..models_cache import ModelCache
from ..settings import Settings
from ..validation import validate_patterns, validate_repo_id, validate_revision

log = logging.getLogger("api.node")
NODE_STATE = ".llmbox-node/state.db"   # inside MODELS_DIR: the node's own job table
PROGRESS_EVERY = 1.0


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, "node": os.environ.get("NODE_ID") or socket.gethostname(), **fields},
                     separators=(",", ":")), flush=True)


class Node:
    """The API's cache objects, built for one command and closed after it."""

    def __init__(self, settings: Settings):
        self.settings = settings
        core = build_core(settings)   # what create_app builds
        self.store, self.jobs = core.store, core.jobs
        self.models = ModelCache(settings, core.cache, self.jobs)
        self.jobs.start()

    def close(self) -> None:
        self.jobs.shutdown()
        self.models.verifier.close()
        self.store.close()

    def wait(self, job_id: str) -> dict:
        """Follow a job to its end, printing progress lines."""
        last = 0.0
        while True:
            job = self.jobs.get(job_id)
            if job["status"] in FINAL:
                return job
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY:
                last = now
                emit("progress", job=job["kind"], status=job["status"], bytes_done=job["bytes_downloaded"],
                     bytes_total=job["bytes_total"], speed_bps=job["speed_bps"], files_done=job["files_done"],
                     files_total=job["files_total"])
            time.sleep(0.2)

    def fetch(self, model_id: str, revision: str, include: list[str] | None, exclude: list[str] | None) -> dict:
        job, _ = self.jobs.submit_download(model_id, revision, include, exclude)
        done = self.wait(job["job_id"])
        if done["status"] != "complete":
            raise ApiError(done["error"] or f"download {done['status']}", code=done["error_code"] or "download_failed")
        checked = self.verify(model_id)
        return {"model_id": model_id, "revision": revision, "commit": done["result"]["commit"],
                "bytes": done["bytes_total"], "files": done["files_total"], "verified": True,
                "files_reused": done["result"].get("files_reused", 0), "bytes_checked": checked["bytes_checked"]}

    def verify(self, model_id: str) -> dict:
        job, _ = self.models.start_verify(model_id, None)
        done = self.wait(job["job_id"])
        if done["status"] != "complete":
            err = ApiError(done["error"] or "verify failed", code=done["error_code"] or "verify_failed")
            err.result = done["result"]
            raise err
        return {"model_id": model_id, **done["result"]}


def settings_from_env() -> Settings:
    settings = Settings.from_environment()
    if "STATE_DB" not in os.environ:
        settings.state_db = settings.models_dir / NODE_STATE
    token_file = os.environ.get("HF_TOKEN_FILE")   # a Swarm secret: the token never sits in a service spec
    if token_file and Path(token_file).is_file():
        settings.hf_token = SecretStr(Path(token_file).read_text().strip())
    return settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m api.node", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="download (or resume) a model, then verify it")
    fetch.add_argument("model_id")
    fetch.add_argument("--revision", default="main")
    fetch.add_argument("--include", help="comma-separated glob patterns")
    fetch.add_argument("--exclude", help="comma-separated glob patterns")
    sub.add_parser("list", help="the models in this node's cache")
    verify = sub.add_parser("verify", help="hash every file of a cached model")
    verify.add_argument("model_id")
    delete = sub.add_parser("delete", help="delete a cached model")
    delete.add_argument("model_id")
    delete.add_argument("--force", action="store_true", help="also cancel a running download of it")
    return p


def run(args: argparse.Namespace, node: Node) -> dict:
    if args.command == "list":
        models = node.models.list()
        for m in models:
            emit("model", **{k: v for k, v in m.items() if k != "active"})
        return {"models": len(models), **node.models.disk()}
    model_id = validate_repo_id(args.model_id)
    if args.command == "fetch":
        return node.fetch(model_id, validate_revision(args.revision), validate_patterns(args.include, "include"),
                          validate_patterns(args.exclude, "exclude"))
    if args.command == "verify":
        return node.verify(model_id)
    out = node.models.delete(model_id, args.force)
    return {k: out[k] for k in ("model_id", "freed_bytes")}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    node = None
    try:
        node = Node(settings_from_env())
        result = run(args, node)
    except ApiError as e:
        emit("error", command=args.command, error=e.code, detail=e.detail,
             **({"result": e.result} if getattr(e, "result", None) else {}))
        return 1
    except Exception as e:  # noqa: BLE001 - the last line always says what happened
        log.exception("node %s failed", args.command)
        emit("error", command=args.command, error="internal_error", detail=f"{type(e).__name__}: {e}")
        return 1
    finally:
        if node is not None:
            node.close()
    emit("result", command=args.command, **result)
    return 0
