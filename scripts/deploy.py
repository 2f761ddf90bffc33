"""First deploy (`make deploy`): API up, DEFAULT_MODEL into the cache through it, then vLLM.

vLLM runs with HF_HUB_OFFLINE=1, so it must never be started before its model is in the cache.
Standard library only; uses `docker compose` (v2) when present, else `docker-compose` (v1).
Safe to run again: a model already complete is not downloaded twice, running services stay.
With DEFAULT_MODEL_VARIANT (a GGUF variant such as Q4_K_M) only that variant's file is fetched."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = Path(os.environ.get("ENV_FILE", ROOT / ".env"))
API = os.environ.get("API_URL", "http://127.0.0.1:8787")


def env_value(key: str) -> str:
    value = ""
    for line in ENV.read_text(encoding="utf-8").splitlines():
        line = line.strip().removeprefix("export ").strip()
        if line.startswith(f"{key}="):
            value = line.split("=", 1)[1].split(" #", 1)[0].strip().strip("'\"")
    return value


def compose() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    sys.exit("Neither `docker compose` nor `docker-compose` is installed.")


def call(method: str, path: str, key: str) -> dict:
    req = urllib.request.Request(API + path, method=method, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def wait(what: str, check, timeout: float, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, urllib.error.URLError, ValueError):
            pass
        if time.monotonic() > deadline:
            sys.exit(f"Timed out waiting for {what}.")
        time.sleep(every)


def missing(model: str, include: str | None, key: str) -> bool:
    """Is the model (or, with `include`, that variant's file) still to be downloaded?"""
    if call("GET", "/api/models/status?" + urllib.parse.urlencode({"model_id": model}), key).get("status") != "complete":
        return True
    if include is None:
        return False
    # A GGUF repo may be cached with other variants only: the dry run says what this one still needs.
    plan = call("POST", "/api/download-model?" + urllib.parse.urlencode(
        {"model_id": model, "include": include, "dry_run": "true"}), key)
    return not plan["files"] or not all(f.get("cached") for f in plan["files"])


def main() -> None:
    key, model = env_value("PROXY_API_KEY"), env_value("DEFAULT_MODEL")
    if not key or not model:
        sys.exit(f"{ENV} needs PROXY_API_KEY and DEFAULT_MODEL (run `make .env`).")
    variant = env_value("DEFAULT_MODEL_VARIANT")
    include = f"*{variant}.gguf" if variant else None   # vLLM loads single-file GGUF only
    cmd = compose()
    subprocess.run([*cmd, "up", "-d", "--build", "api"], cwd=ROOT, check=True)
    wait("the API", lambda: urllib.request.urlopen(API + "/health", timeout=5).status == 200, 180)
    if missing(model, include, key):
        q = urllib.parse.urlencode({"model_id": model, **({"include": include} if include else {})})
        job = call("POST", f"/api/download-model?{q}", key)
        print(f"Downloading {model}{':' + variant if variant else ''} (job {job['job_id']}) ...", flush=True)

        def done():
            j = call("GET", f"/api/jobs/{job['job_id']}", key)
            print(f"  {j['status']} {j.get('progress', 0)}%", flush=True)
            return j if j["status"] in ("complete", "failed", "cancelled") else None

        final = wait("the download", done, 24 * 3600, every=float(os.environ.get("DEPLOY_POLL_SECONDS", "10")))
        if final["status"] != "complete":
            sys.exit(f"Download {final['status']}: {final.get('error')}")
    subprocess.run([*cmd, "up", "-d", "vllm"], cwd=ROOT, check=True)
    print(f"vLLM is starting with {model}; it serves on 127.0.0.1:8000 as "
          f"{env_value('SERVED_MODEL_ALIAS') or 'default'!r} once `docker ps` shows it healthy.")


if __name__ == "__main__":
    main()
