"""Adaptive connections: more connections while a per-connection-capped CDN gives more, and a
straggling part re-issued on a fresh connection."""
from __future__ import annotations

import time

from api.download.adaptive import ConnectionPolicy
from api.testing.hubsim import Fault

from ._dl import MiB, assert_verified, start, wait_complete

W = "model.safetensors"


def test_connections_grow_while_a_capped_cdn_gives_more(api_factory, sim):
    # 1 MB/s per TCP connection. Two connections alone need ~16.8 s for 32 MiB; growing to 8 in
    # doubling one-second steps finishes in about 6.
    api = api_factory(download_connections=2, max_total_connections=8, part_size_mb=1)
    repo, size = "adaptive/capped", 32 * MiB
    commit = sim.add_repo(repo, {W: size})
    sim.set_faults(Fault(repo=repo, path=W, where="cdn", conn_rate_bps=1_000_000))
    sim.reset_counters()
    began = time.monotonic()
    done = wait_complete(api, start(api, repo)["job_id"], timeout=60)
    elapsed = time.monotonic() - began
    assert_verified(api, sim, repo, commit, [W])
    assert done["result"]["connections"] >= 4, done["result"]
    assert sim.connection_count("cdn") >= 4
    assert elapsed < 13, f"{elapsed:.1f} s: hardly faster than two connections"
    assert sim.served_bytes(repo, W) == size


def test_a_step_that_adds_no_throughput_is_given_back():
    # The policy alone, fed the throughput a saturated link shows: flat after the first step.
    p = ConnectionPolicy(start=2, limit=16)
    assert p.grow(0.0, 0, usable=100) == 2
    assert p.grow(2.0, 200, usable=100) == 4           # first window measured: try a step
    assert p.grow(4.0, 400, usable=100) == 2           # the same 100/s: given back
    assert p.grow(6.0, 600, usable=100) == 2           # and no new step until the re-probe time
    assert p.grow(30.0, 3000, usable=100) == 4         # re-probe
    assert p.grow(32.0, 3400, usable=100) == 8         # +100 %: keep growing (steps double)
    assert p.grow(34.0, 3800, usable=100) == 4         # 200/s again: the step to 8 is given back
    assert p.grow(60.0, 9000, usable=5) == 5           # re-probe, no further than the parts left
    assert p.peak == 8


def test_a_straggling_part_is_re_issued_on_a_fresh_connection(api_factory, sim):
    # The first CDN answer crawls at 100 kB/s (40 s for its 4 MiB); the other parts arrive at once.
    api = api_factory(download_connections=4, max_total_connections=4, part_size_mb=4)
    repo, size = "adaptive/straggler", 16 * MiB
    commit = sim.add_repo(repo, {W: size})
    sim.set_faults(Fault(repo=repo, path=W, where="cdn", rate_bps=100_000, times=1))
    sim.reset_counters()
    began = time.monotonic()
    done = wait_complete(api, start(api, repo)["job_id"], timeout=25)
    assert time.monotonic() - began < 20
    assert_verified(api, sim, repo, commit, [W])
    assert sim.cdn_request_count(repo, W) == 4 + 1     # the straggler was asked for once more
    # From where it had got to: only what was in flight when its connection was cut came twice.
    assert sim.served_bytes(repo, W) <= size + 64 * 1024
    assert done["result"]["retries"] == 0, done["result"]
