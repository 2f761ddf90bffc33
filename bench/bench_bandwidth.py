#!/usr/bin/env python3
"""Bandwidth-limit benchmark: does the shared token bucket hold BANDWIDTH_LIMIT, follow a change
made with PUT /api/limits, and cost nothing when no limit is set?

    .venv/bin/python bench/bench_bandwidth.py [--seconds 20] [--out bench/results/bandwidth.md]

Two download jobs of 8 connections each (DOWNLOAD_CONNECTIONS=8) run against the Hub simulator
(its own process); the API is a real `python -m api` subprocess. Throughput is what the API
received: the jobs' `bytes_downloaded` (bytes read past the limiter), whose 4-per-second updates
this script times by polling at 10 ms around each end of a window. The simulator's count of bytes
sent is shown beside it; it runs ahead of the API by what the sockets' buffers hold.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_download import GiB, Api, Config, Sim, free_port, log  # noqa: E402

MB = 1_000_000
REPOS = ("bench/bw-a", "bench/bw-b")
FILE = "model.safetensors"
CFG = Config("bandwidth", REPOS[0], {FILE: 2 * GiB}, FILE, REPOS[1], {FILE: 2 * GiB}, repeats=1)


def served(sim: Sim) -> int:
    import httpx
    files = httpx.get(sim.url + "/_sim/stats", timeout=10).json()["files"]
    return sum(f["served_bytes"] for repo in REPOS for f in files.get(repo, {}).values())


def received(api: Api, jobs: list[str]) -> int:
    return sum(api.client.get(f"/api/jobs/{j}").json()["bytes_downloaded"] for j in jobs)


def tick(api: Api, jobs: list[str]) -> tuple[float, int]:
    """The moment the API's progress counter moves (it is sampled 4 times a second) and its value."""
    first = received(api, jobs)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        t, now = time.monotonic(), received(api, jobs)
        if now != first:
            return t, now
        time.sleep(0.01)
    return time.monotonic(), first


def rate_over(api: Api, jobs: list[str], sim: Sim, seconds: float) -> tuple[float, float]:
    """(API-side rate, simulator-side rate) over about `seconds`."""
    s0 = served(sim)
    t0, b0 = tick(api, jobs)
    time.sleep(max(0.0, seconds - 0.3))
    t1, b1 = tick(api, jobs)
    s1 = served(sim)
    return (b1 - b0) / (t1 - t0), (s1 - s0) / (t1 - t0)


class Run:
    """Both repos downloading in a fresh API with the given BANDWIDTH_LIMIT."""

    def __init__(self, sim: Sim, work: Path, limit: str):
        self.api = Api(work, sim.url, free_port())
        self.api.env.update(BANDWIDTH_LIMIT=limit, DOWNLOAD_CONNECTIONS="8", MAX_CONCURRENT_DOWNLOADS="2",
                            MAX_TOTAL_CONNECTIONS="16")

    def __enter__(self) -> "Run":
        self.api.start()
        self.jobs = [self.api.submit(r) for r in REPOS]
        deadline = time.monotonic() + 30
        while any(self.api.client.get(f"/api/jobs/{j}").json()["status"] != "downloading" for j in self.jobs):
            if time.monotonic() > deadline:
                raise RuntimeError("the downloads did not start")
            time.sleep(0.1)
        time.sleep(2.0)   # connections open, buckets in their steady state
        return self

    def rate(self, sim: Sim, seconds: float) -> tuple[float, float]:
        return rate_over(self.api, self.jobs, sim, seconds)

    def __exit__(self, *exc) -> None:
        for j in self.jobs:
            self.api.client.post(f"/api/jobs/{j}/cancel", params={"discard": "true"})
        self.api.stop()


def within(measured: float, target: float, tolerance: float = 0.05) -> bool:
    return abs(measured - target) <= tolerance * target


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="the measured window at 100MB/s")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown table here too")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("BENCH_WORK", "/tmp/llmbox-bench")))
    args = ap.parse_args()
    started = time.monotonic()
    args.work.mkdir(parents=True, exist_ok=True)
    sim = Sim(args.work / "hub-bw", CFG, args.work / "hubsim-bw.log").start()
    rows = []
    try:
        with Run(sim, args.work / "api-bw", "100MB/s") as run:
            log(f"limit 100MB/s: measuring {args.seconds:.0f} s")
            limited = run.rate(sim, args.seconds)
            run.api.client.put("/api/limits", json={"bandwidth_bps": "50MB/s"}).raise_for_status()
            lowered = run.rate(sim, 5.0)
        rows.append(("BANDWIDTH_LIMIT=100MB/s, 2 jobs x 8 connections", f"{args.seconds:.0f} s average",
                     limited, 100 * MB))
        rows.append(("PUT /api/limits 50MB/s during the run", "the next 5 s", lowered, 50 * MB))
        free, idle = [], []
        for _ in range(2):   # alternated: a busy neighbour slows both sides alike
            for limit, out in (("", free), ("100GB/s", idle)):
                with Run(sim, args.work / "api-bw", limit) as run:
                    log(f"limit {limit or 'none'}: measuring 6 s")
                    out.append(run.rate(sim, 6.0)[0])
        free_rate, idle_bucket = statistics.median(free), statistics.median(idle)
    finally:
        sim.stop()
    lines = [f"Bandwidth benchmark ({os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}, "
             f"took {(time.monotonic() - started) / 60:.1f} min)\n",
             "| Row | Window | Received by the API | Target | | Sent by the simulator |",
             "|---|---|---|---|---|---|"]
    for name, window, (got, sent), target in rows:
        lines.append(f"| {name} | {window} | {got / MB:.1f} MB/s ({(got / target - 1) * 100:+.1f}%) | "
                     f"{target / MB:.0f} MB/s +- 5% | {'PASS' if within(got, target) else 'MISS'} | "
                     f"{sent / MB:.1f} MB/s |")
    ratio = idle_bucket / free_rate if free_rate else 0.0
    lines.append(f"| No limit (BANDWIDTH_LIMIT empty), same 2 jobs | 2 x 6 s, median | {free_rate / MB:.0f} MB/s "
                 "| (info) | | |")
    lines.append(f"| BANDWIDTH_LIMIT=100GB/s (the bucket runs, never binds) / no limit | 2 x 6 s each, median | "
                 f"{ratio:.2f}x ({idle_bucket / MB:.0f} MB/s) | >= 0.9x (noise of a shared machine) | "
                 f"{'PASS' if ratio >= 0.9 else 'MISS'} | |")
    table = "\n".join(lines) + "\n"
    print("\n" + table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
