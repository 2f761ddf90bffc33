"""A large history, fast: many cached repos in the Hugging Face layout and many finished jobs,
written directly (no downloads), for the scale test and bench/bench_scale.py."""
from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..jobs.store import JobStore


def fill_cache(hub: Path, repos: int, files: int = 12, prefix: str = "scale") -> list[str]:
    """`repos` complete repos of `files` small files each (blobs, snapshot symlinks, refs/main)."""
    ids = []
    for r in range(repos):
        repo_id = f"{prefix}/repo-{r:04d}"
        folder = hub / ("models--" + repo_id.replace("/", "--"))
        commit = hashlib.sha1(repo_id.encode()).hexdigest()
        snap = folder / "snapshots" / commit
        (folder / "blobs").mkdir(parents=True, exist_ok=True)
        snap.mkdir(parents=True, exist_ok=True)
        (folder / "refs").mkdir(exist_ok=True)
        (folder / "refs" / "main").write_text(commit)
        for i in range(files):
            data = f"{repo_id} file {i}\n".encode() * (1 + i)
            key = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            (folder / "blobs" / key).write_bytes(data)
            name = "config.json" if i == 0 else f"part-{i:02d}.bin"
            link = snap / name
            if not link.is_symlink():
                os.symlink(f"../../blobs/{key}", link)
        ids.append(repo_id)
    return ids


def _ok(r):
    assert r.status_code in (200, 202), r.text
    return r


def measure(client, sim, repos_for_submit: list[str], runs: int = 9) -> dict[str, float]:
    """Median ms of GET /api/models, GET /api/disk and a download submit (each submit a repo of
    its own on the simulator, so each one plans against the Hub and inserts a job)."""
    todo = iter(repos_for_submit)
    return {
        "models": median_ms(lambda: _ok(client.get("/api/models")), runs),
        "disk": median_ms(lambda: _ok(client.get("/api/disk")), runs),
        "submit": median_ms(lambda: _ok(client.post("/api/download-model", params={"model_id": next(todo)})),
                            runs),
    }


def submit_repos(sim, prefix: str, n: int) -> list[str]:
    """n one-file repos on the simulator, for `measure`'s submits."""
    ids = [f"{prefix}/submit-{i:03d}" for i in range(n)]
    for repo_id in ids:
        sim.add_repo(repo_id, {"config.json": repo_id.encode()})
    return ids


def fill_jobs(db: Path, count: int, model_ids: list[str], seed: int = 8) -> None:
    """`count` finished jobs of every kind, all within the last week (inside any retention)."""
    JobStore(db).close()   # the schema and its indexes, as the service creates them
    con = sqlite3.connect(db)
    indexes = con.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs' "
                          "AND sql IS NOT NULL").fetchall()
    for (sql,) in indexes:   # built again after the rows: one sort instead of 200,000 inserts each
        con.execute("DROP INDEX " + sql.split(" EXISTS ")[-1].split(" ON ")[0].split()[-1])
    con.close()
    rnd = random.Random(seed)
    now = datetime.now(timezone.utc)
    stamps = [(now - timedelta(minutes=m)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
              for m in range(0, 7 * 24 * 60, 7)]
    params = json.dumps({"include": None, "exclude": None, "activate": False})
    kinds = ("download", "download", "verify", "delete", "switch")
    statuses = ("complete", "complete", "complete", "failed", "cancelled")
    cols = ("job_id", "kind", "model_id", "revision", "status", "created_at", "started_at", "completed_at",
            "attempts", "params", "seq")
    con = sqlite3.connect(db)
    try:
        con.execute("PRAGMA synchronous=OFF")
        start = con.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs").fetchone()[0]
        salt = rnd.getrandbits(32)
        rows = []
        for n in range(count):
            when = stamps[rnd.randrange(len(stamps))]
            rows.append((f"{salt:08x}{n:08x}", rnd.choice(kinds), rnd.choice(model_ids), "main",
                         rnd.choice(statuses), when, when, when, 1, params, start + n + 1))
        with con:
            con.executemany(f"INSERT INTO jobs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
            for (sql,) in indexes:
                con.execute(sql)
    finally:
        con.close()


def median_ms(fn, runs: int, warmup: int = 1) -> float:
    """Median wall time of fn() in milliseconds, after `warmup` calls that are not counted."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)
