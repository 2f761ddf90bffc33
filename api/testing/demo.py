"""`make demo`: the Hub simulator with a small generated model, and the API pointed at it.

Everything lives in ./.demo; nothing leaves 127.0.0.1. `--once` downloads the model through the
API, verifies it, prints the job and exits (used by the test suite).
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from .. import Settings, create_app
from .hubsim import HubSim

DEMO_MODEL = "demo-org/tiny-chat-model"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", default=".demo")
    ap.add_argument("--port", type=int, default=8787)
    ap.add_argument("--once", action="store_true", help="download, verify, print, exit")
    args = ap.parse_args(argv)
    root = Path(args.dir).resolve()
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    sim = HubSim(root / "hub-sim")
    sim.add_repo(DEMO_MODEL, {"config.json": b'{"model_type": "llama", "hidden_size": 64}\n',
                              "tokenizer.json": 200_000, "model-00001-of-00002.safetensors": 96 << 20,
                              "model-00002-of-00002.safetensors": 64 << 20})
    sim.start()
    env_file = root / "box.env"
    if not env_file.exists():
        env_file.write_text("# demo box\nDEFAULT_MODEL=\n")
    key = secrets.token_urlsafe(24)
    settings = Settings(_env_file=None, proxy_api_key=key, hf_endpoint=sim.url, models_dir=root / "models",
                        state_db=root / "state.db", env_file=env_file, api_port=args.port,
                        docker_host="unix://" + str(root / "no-docker.sock"))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=args.port,
                                           log_level="warning"))
    url = f"http://127.0.0.1:{args.port}"
    print(f"Hub simulator: {sim.url}  (model {DEMO_MODEL}, 160 MiB)\nAPI: {url}\n"
          f"export API_URL={url} PROXY_API_KEY={key}\n"
          f"  curl -X POST -H \"Authorization: Bearer $PROXY_API_KEY\" "
          f"\"$API_URL/api/download-model?model_id={DEMO_MODEL}\"\n"
          f"  curl -H \"Authorization: Bearer $PROXY_API_KEY\" \"$API_URL/api/download-progress\"\n"
          f"  scripts/modelctl download {DEMO_MODEL} --wait", flush=True)
    if not args.once:
        try:
            server.run()
        finally:
            sim.stop()
        return 0
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
            job = c.post("/api/download-model", params={"model_id": DEMO_MODEL}).json()
            deadline = time.monotonic() + 120
            while job["status"] not in ("complete", "failed") and time.monotonic() < deadline:
                time.sleep(0.2)
                job = c.get(job["status_url"]).json()
                print(f"  {job['status']:12} {job['progress']:3d}%  {job['bytes_downloaded']:>11} bytes", flush=True)
            verify = c.post("/api/models/verify", params={"model_id": DEMO_MODEL}).json()
            while verify["status"] not in ("complete", "failed") and time.monotonic() < deadline:
                time.sleep(0.1)
                verify = c.get(verify["status_url"]).json()
            print(f"download: {job['status']}  verify: {verify['status']} {verify.get('result')}", flush=True)
            return 0 if job["status"] == verify["status"] == "complete" else 1
    finally:
        server.should_exit = True
        thread.join(10)
        sim.stop()


if __name__ == "__main__":
    sys.exit(main())
