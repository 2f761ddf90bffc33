#!/usr/bin/env python3
"""Scale benchmark: request cost against the size of the cache and of the job history.

    .venv/bin/python bench/bench_scale.py [--repos 300] [--jobs 200000] [--runs 15] [--out FILE]

For each size (10 repos and an empty job table, then `--repos` repos of 12 files and `--jobs`
finished jobs, written directly) it starts the API as a real `python -m api` subprocess on the
filled cache and job table, with the project's Hub simulator in this process, and prints the
median of GET /api/models, GET /api/disk and a download submit (each a fresh repo, so each plans
against the Hub and inserts a job). Peer: huggingface_hub's `scan_cache_dir()` (what `hf cache
scan` runs) on the same cache. Target: each API median under 100 ms at the large size.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")

from api.testing.hubsim import HubSim  # noqa: E402
from api.testing.scale import fill_cache, fill_jobs, measure, median_ms, submit_repos  # noqa: E402

KEY = "bench-scale-key-0123456789"
TARGET_MS = 100.0


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_api(work: Path, sim: HubSim) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PROXY_API_KEY": KEY, "HF_ENDPOINT": sim.url, "MODELS_DIR": str(work / "models"),
           "STATE_DB": str(work / "state.db"), "ENV_FILE": str(work / "box.env"), "API_HOST": "127.0.0.1",
           "API_PORT": str(port), "RATE_LIMIT_ENABLED": "false", "MAX_QUEUE_LENGTH": "1000",
           "DOCKER_HOST": "unix:///nonexistent-docker.sock", "LOG_LEVEL": "warning"}
    (work / "box.env").write_text("DEFAULT_MODEL=org/none\n")
    proc = subprocess.Popen([sys.executable, "-m", "api"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=open(work / "api.log", "ab"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"API exited: {(work / 'api.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("API did not start")


def run_size(work: Path, sim: HubSim, repos: int, jobs: int, runs: int) -> dict[str, float]:
    work.mkdir(parents=True)
    t0 = time.monotonic()
    ids = fill_cache(work / "models" / "hub", repos)
    if jobs:
        fill_jobs(work / "state.db", jobs, ids)
    print(f"  filled {repos} repos, {jobs} jobs in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    submits = submit_repos(sim, f"bench-{work.name}", runs + 1)
    proc, url = start_api(work, sim)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as client:
            first = time.perf_counter()
            assert len(client.get("/api/models").json()) == repos
            result = {"first_list": (time.perf_counter() - first) * 1000, **measure(client, sim, submits, runs)}
    finally:
        proc.terminate()
        proc.wait(30)
    from huggingface_hub import scan_cache_dir
    result["scan_cache_dir"] = median_ms(lambda: scan_cache_dir(work / "models" / "hub"), max(3, runs // 3))
    return result


def table(small: dict, big: dict, repos: int, jobs: int) -> str:
    lines = [f"Scale benchmark ({os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}): medians in ms",
             "",
             f"| Request | 10 repos, 0 jobs | {repos} repos, {jobs:,} jobs | growth | target | |",
             "|---|---|---|---|---|---|"]
    for what, label in (("models", "GET /api/models"), ("disk", "GET /api/disk"), ("submit", "download submit")):
        ok = "PASS" if big[what] < TARGET_MS else "MISS"
        lines.append(f"| {label} | {small[what]:.1f} | {big[what]:.1f} | {big[what] / small[what]:.1f}x "
                     f"| < {TARGET_MS:.0f} ms | {ok} |")
    lines.append(f"| first GET /api/models after start (walks every repo once) | {small['first_list']:.1f} "
                 f"| {big['first_list']:.1f} | | (info) | |")
    ratio = big["scan_cache_dir"] / big["models"]
    lines.append(f"| peer: huggingface_hub scan_cache_dir() / GET /api/models | {small['scan_cache_dir']:.1f} "
                 f"| {big['scan_cache_dir']:.1f} | {ratio:.1f}x (peer / API) | (info) | |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repos", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmbox-scale-") as tmp, HubSim(Path(tmp) / "hub") as sim:
        print("small size", file=sys.stderr)
        small = run_size(Path(tmp) / "small", sim, 10, 0, args.runs)
        print("large size", file=sys.stderr)
        big = run_size(Path(tmp) / "big", sim, args.repos, args.jobs, args.runs)
    out = table(small, big, args.repos, args.jobs)
    print(out)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(out + "\n")


if __name__ == "__main__":
    main()
