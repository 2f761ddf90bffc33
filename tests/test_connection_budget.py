"""MAX_TOTAL_CONNECTIONS bounds the parts in flight across every download of the process."""
from __future__ import annotations

import time

from api.testing.hubsim import Fault

from ._dl import MiB, start, wait_complete

RATE = 1 * MiB   # per connection


def _two_downloads(api, sim, tag: str) -> float:
    repos = [f"budget/{tag}-{i}" for i in range(2)]
    for i, repo in enumerate(repos):
        sim.add_repo(repo, {"model.safetensors": 6 * MiB + i})
    sim.set_faults(*(Fault(repo=r, rate_bps=RATE) for r in repos))
    began = time.monotonic()
    jobs = [start(api, r) for r in repos]
    for j in jobs:
        wait_complete(api, j["job_id"], timeout=60)
    return time.monotonic() - began


def test_total_connections_are_shared_by_parallel_downloads(api_factory, sim):
    # 12 MiB at 1 MiB/s per connection. Two slots for everything: at most 2 MiB/s, so >= 6 s.
    capped = api_factory(max_total_connections=2, download_connections=4, part_size_mb=1,
                         max_concurrent_downloads=2)
    assert _two_downloads(capped, sim, "capped") >= 5.0


def test_without_a_tight_budget_the_same_downloads_use_every_connection(api_factory, sim):
    # The control: 2 x 4 connections at 1 MiB/s each finish the same 12 MiB in about 1.5 s.
    wide = api_factory(max_total_connections=16, download_connections=4, part_size_mb=1,
                       max_concurrent_downloads=2)
    assert _two_downloads(wide, sim, "wide") < 4.5
