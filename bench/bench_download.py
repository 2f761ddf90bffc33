#!/usr/bin/env python3
"""Download-engine benchmark: the API side by side with `hf download`, aria2c and curl.

    .venv/bin/python bench/bench_download.py [--quick] [--out bench/results/latest.md]

Everything runs against the project's Hub simulator (a subprocess on 127.0.0.1), every tool
writes real files on the same filesystem, and every run starts cold (previous outputs deleted,
`sync`). The result is a markdown table of ratios with absolute MB/s and a PASS/MISS column
against each target. See bench/README.md for what each row means.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
HF = str(Path(PY).with_name("hf"))
KEY = "bench-key"
MiB, GiB = 1 << 20, 1 << 30
CAP_BPS = 50_000_000  # per connection, measurement 2
M6_ROUNDS = 3


# -- configuration --------------------------------------------------------------------------------
@dataclass
class Config:
    name: str
    main_repo: str            # measurement 1 and 2 (2 uses its big file)
    main_files: dict[str, int]
    big_file: str
    second_repo: str          # the 4-shard model: second download of measurement 3, verified in 5
    second_files: dict[str, int]
    repeats: int              # measurements 1 and 5 (median); 2 runs once per tool
    progress_rps: float = 20.0


def shards(n: int, size: int) -> dict[str, int]:
    return {f"model-{i:05d}-of-{n:05d}.safetensors": size for i in range(1, n + 1)}


FULL = Config("full", "bench/llm-8g", {**shards(4, GiB), "consolidated.safetensors": 4 * GiB},
              "consolidated.safetensors", "bench/shards-4g", shards(4, GiB), repeats=2)
QUICK = Config("quick", "bench/llm-q", {**shards(4, 128 * MiB), "consolidated.safetensors": 512 * MiB},
               "consolidated.safetensors", "bench/shards-q", shards(4, 128 * MiB), repeats=1)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6 if seconds > 0 else float("nan")


def rm(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def sync() -> None:
    subprocess.run(["sync"], check=False)


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed_run(name: str, cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """Run a peer tool; its wall time and the CPU seconds it used."""
    cpu0 = child_cpu()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(f"{name} failed ({p.returncode}): {p.stdout[-1000:]} {p.stderr[-1000:]}")
    return dt, child_cpu() - cpu0


def proc_tree(pid: int) -> list[int]:
    """pid and its living descendants: the API and its transfer process (TRANSFER_PROCESS)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def proc_cpu(pid: int) -> float:
    """CPU seconds of the process tree (children that ended are counted in their parent's)."""
    total = 0
    for p in proc_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def proc_hwm_mb(pid: int) -> float:
    """Peak resident memory of the process tree: the sum of each process's VmHWM."""
    total = 0
    for p in proc_tree(pid):
        try:
            lines = Path(f"/proc/{p}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in lines if line.startswith("VmHWM:"))
    return total / 1024 if total else float("nan")


def warm(paths: list[Path]) -> None:
    """Read files once so every tool starts with the same page cache state for them."""
    buf = bytearray(8 * MiB)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


# -- background load: the machine is shared, so every run records the CPU others used ------------
TICK = os.sysconf("SC_CLK_TCK")


def _scan() -> dict[int, tuple[int, float, bool]]:
    """pid -> (ppid, cpu seconds, kernel thread)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            f = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(d)] = (int(f[1]), (int(f[11]) + int(f[12])) / TICK, int(f[6]) & 0x00200000 != 0 or int(f[1]) == 2)
    return out


def _busy() -> float:
    v = list(map(int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]))
    return (sum(v) - v[3] - v[4]) / TICK   # all but idle and iowait


class LoadMonitor:
    """Cores used during a run by processes outside this benchmark's process tree (other people's
    builds and tests on a shared box). Machine busy time less our tree and kernel threads; kernel
    threads (writeback, softirq) are shown apart since our own I/O drives most of them."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self._stop = threading.Event()
        self._ours = self._kern = 0.0
        self._thread: threading.Thread | None = None

    def _account(self, prev: dict, cur: dict) -> None:
        me = os.getpid()
        for pid, (ppid, cpu, kern) in cur.items():
            d = cpu - prev[pid][1] if pid in prev else 0.0
            if d <= 0:
                continue
            if kern:
                self._kern += d
                continue
            p, hops = pid, 0
            while p > 1 and p != me and hops < 50:
                p, hops = cur.get(p, (0,))[0], hops + 1
            if p == me:
                if ppid == me:   # direct child: if it is reaped before the end, rusage counts it instead
                    self._direct[pid] = self._direct.get(pid, 0.0) + d
                else:
                    self._ours += d

    def _sample_loop(self) -> None:
        prev = self._first
        while not self._stop.wait(self.interval):
            cur = _scan()
            self._account(prev, cur)
            prev = cur
        last = _scan()
        self._account(prev, last)   # the tail, and the whole of a run shorter than one interval
        self._ours += sum(d for pid, d in self._direct.items() if pid in last)

    def __enter__(self) -> "LoadMonitor":
        self._first = _scan()
        self._direct: dict[int, float] = {}
        self._rc0 = child_cpu()
        self._t0, self._b0 = time.monotonic(), _busy()
        self._thread = threading.Thread(target=self._sample_loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        dt = time.monotonic() - self._t0
        busy = _busy() - self._b0
        self._stop.set()
        self._thread.join()
        self._ours += child_cpu() - self._rc0   # children reaped meanwhile (tools, a stopped API)
        self.busy = busy / dt
        self.kernel = self._kern / dt
        self.ours = self._ours / dt
        self.foreign = max(0.0, busy - self._kern - self._ours) / dt


def wait_quiet(max_wait: float, threshold: float = 0.3) -> float:
    """Wait (up to max_wait s) for 2 s in a row where other processes use < threshold cores."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_wait:
        with LoadMonitor() as m:
            time.sleep(2.0)
        if m.foreign < threshold:
            return m.foreign
    return m.foreign if max_wait > 0 else float("nan")


# -- the simulator (own process, so its threads never share a GIL with the client side) ----------
class Sim:
    def __init__(self, root: Path, cfg: Config, log_path: Path):
        self.root, self.cfg, self.log_path = root, cfg, log_path
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> "Sim":
        args = [PY, "-m", "api.testing.hubsim", "--root", str(self.root), "--port", "0"]
        for repo, files in ((self.cfg.main_repo, self.cfg.main_files), (self.cfg.second_repo, self.cfg.second_files)):
            args += ["--synthetic", repo + ":" + ",".join(f"{p}={s}" for p, s in files.items())]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=open(self.log_path, "ab"),
                                     text=True)
        t0 = time.monotonic()
        line = self.proc.stdout.readline()  # generation (first run only) happens before this line
        if "url=" not in line:
            raise RuntimeError(f"hubsim did not start: {line!r}; see {self.log_path}")
        self.url = line.split("url=")[1].split()[0]
        log(f"hubsim up at {self.url} ({time.monotonic() - t0:.1f}s, content cached in {self.root})")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def faults(self, faults: list[dict]) -> None:
        r = httpx.post(self.url + "/_sim/faults", json=faults, timeout=10)
        r.raise_for_status()

    def configure(self, **settings) -> None:
        r = httpx.post(self.url + "/_sim/config", json=settings, timeout=10)
        r.raise_for_status()

    def files(self, repo: str) -> list[Path]:
        desc = httpx.get(self.url + "/_sim/repos", timeout=10).json()[repo]
        commit = desc["refs"]["main"]
        return [self.root / repo / commit / p for p in desc["commits"][commit]]

    def resolve_url(self, repo: str, path: str) -> str:
        return f"{self.url}/{repo}/resolve/main/{path}"


# -- the API under test (a real `python -m api` subprocess: its RSS and CPU are its own) ---------
class Api:
    def __init__(self, work: Path, sim_url: str, port: int, **env: str):
        self.dir = work
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        self.env = {
            **os.environ, "PROXY_API_KEY": KEY, "HF_ENDPOINT": sim_url, "MODELS_DIR": str(work / "models"),
            "STATE_DB": str(work / "state" / "state.db"), "RATE_LIMIT_ENABLED": "false", "DISK_RESERVE_MB": "0",
            "DOCKER_HOST": "unix:///nonexistent.sock", "ENV_FILE": str(work / "no.env"), "API_HOST": "127.0.0.1",
            "API_PORT": str(port), "LOG_LEVEL": "warning", "HF_HOME": str(work / "hf-home"),
            "HF_HUB_DISABLE_TELEMETRY": "1", **env}

    def start(self) -> "Api":
        rm(self.dir)
        self.dir.mkdir(parents=True)
        self.proc = subprocess.Popen([PY, "-m", "api"], cwd=ROOT, env=self.env,
                                     stdout=open(self.dir.parent / f"{self.dir.name}.log", "ab"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"API exited; see {self.dir.parent / (self.dir.name + '.log')}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("API did not come up in 30 s")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.client.close()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def submit(self, repo: str, include: list[str] | None = None) -> str:
        body: dict = {"model_id": repo}
        if include:
            body["include"] = include
        r = self.client.post("/api/download-model", json=body)
        if r.status_code not in (200, 202):
            raise RuntimeError(f"download-model {repo}: HTTP {r.status_code} {r.text}")
        return r.json()["job_id"]

    def wait(self, job_id: str, timeout: float = 1800, interval: float = 0.1) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.get(f"/api/jobs/{job_id}").json()
            if job["status"] in ("complete", "failed", "cancelled"):
                if job["status"] != "complete":
                    raise RuntimeError(f"job {job_id} ended {job['status']}: {job.get('error')}")
                return job
            time.sleep(interval)
        raise RuntimeError(f"job {job_id} not done after {timeout}s")

    def snapshot_files(self, repo: str) -> list[Path]:
        folder = self.dir / "models" / "hub" / ("models--" + repo.replace("/", "--"))
        snaps = list((folder / "snapshots").iterdir())
        return sorted(p.resolve() for p in snaps[0].iterdir())


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- one timed run --------------------------------------------------------------------------------
@dataclass
class Run:
    tool: str
    seconds: float
    nbytes: int
    cpu: float = float("nan")          # CPU seconds of the tool's process(es)
    bg: float = float("nan")           # cores used meanwhile by processes outside the benchmark
    extra: dict = field(default_factory=dict)

    @property
    def mbps(self) -> float:
        return mbps(self.nbytes, self.seconds)


def check_files(paths: list[Path], sizes: list[int], tool: str) -> None:
    got = [p.stat().st_size if p.exists() else -1 for p in paths]
    if got != sizes:
        raise RuntimeError(f"{tool}: output sizes {got} != expected {sizes}")


class Bench:
    def __init__(self, cfg: Config, work: Path):
        self.cfg = cfg
        self.work = work
        self.scratch = work / "run"
        self.sim: Sim | None = None
        self.n_api = 0
        self.quiet_wait = 0.0

    # Each tool run: outputs of the previous run deleted, `sync`, then the clock starts.
    def cold(self, out: Path) -> None:
        rm(out)
        sync()
        out.mkdir(parents=True)

    def run_api(self, repo: str, files: dict[str, int], include: list[str] | None = None) -> Run:
        self.n_api += 1
        api = Api(self.scratch / f"api{self.n_api}", self.sim.url, free_port())
        rm(self.scratch / "out")
        sync()
        api.start()
        try:
            cpu0 = proc_cpu(api.pid)
            t0 = time.perf_counter()
            job_id = api.submit(repo, include)
            job = api.wait(job_id)
            dt = time.perf_counter() - t0
            cpu = proc_cpu(api.pid) - cpu0
            hwm = proc_hwm_mb(api.pid)
            snap = next((api.dir / "models" / "hub").glob("models--*/snapshots/*"))
            check_files([snap / n for n in sorted(files)], [files[n] for n in sorted(files)], "api")
            return Run("API", dt, sum(files.values()), cpu, extra={"hwm_mb": hwm, "job": job})
        finally:
            api.stop()
            rm(api.dir)

    def run_hf(self, repo: str, files: dict[str, int], single: str | None = None) -> Run:
        out = self.scratch / "out"
        self.cold(out)
        env = {**os.environ, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HOME": str(out / "hf-home"),
               "HF_ENDPOINT": self.sim.url, "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        cmd = [HF, "download", repo, *([single] if single else []), "--cache-dir", str(out / "hub"), "--quiet"]
        dt, cpu = timed_run("hf download", cmd, env=env)
        snap = next((out / "hub").glob("models--*/snapshots/*"))
        names = [single] if single else sorted(files)
        check_files([snap / n for n in names], [files[n] for n in names], "hf")
        n = sum(files[x] for x in names)
        rm(out)
        return Run("hf download", dt, n, cpu)

    def run_aria2(self, repo: str, files: dict[str, int], names: list[str], jobs: int = 2, split: int = 8) -> Run:
        out = self.scratch / "out"
        self.cold(out)
        inp = self.scratch / "aria2.txt"
        inp.write_text("".join(f"{self.sim.resolve_url(repo, n)}\n  out={n}\n" for n in names))
        cmd = ["aria2c", f"-x{split}", f"-s{split}", f"-j{jobs}", "-i", str(inp), "-d", str(out), "--file-allocation=falloc",
               "--allow-overwrite=true", "--auto-file-renaming=false", "--console-log-level=warn",
               "--summary-interval=0", "--download-result=hide", "--check-certificate=false", "-q"]
        dt, cpu = timed_run("aria2c", cmd)
        check_files([out / n for n in names], [files[n] for n in names], "aria2c")
        rm(out)
        return Run(f"aria2c -x{split} -s{split}", dt, sum(files[n] for n in names), cpu)

    def run_curl(self, repo: str, files: dict[str, int], names: list[str]) -> Run:
        out = self.scratch / "out"
        self.cold(out)
        cmd = ["curl", "-sS", "-f", "-L"]
        for n in names:
            cmd += [self.sim.resolve_url(repo, n), "-o", str(out / n)]
        dt, cpu = timed_run("curl", cmd)
        check_files([out / n for n in names], [files[n] for n in names], "curl")
        rm(out)
        return Run("curl (sequential)", dt, sum(files[n] for n in names), cpu)

    # -- measurements -----------------------------------------------------------------------------
    def m1_end_to_end(self) -> dict[str, list[Run]]:
        cfg = self.cfg
        names = sorted(cfg.main_files)
        tools = {
            "API": lambda: self.run_api(cfg.main_repo, cfg.main_files),
            "hf": lambda: self.run_hf(cfg.main_repo, cfg.main_files),
            "aria2c": lambda: self.run_aria2(cfg.main_repo, cfg.main_files, names, jobs=2),
            "curl": lambda: self.run_curl(cfg.main_repo, cfg.main_files, names),
        }
        return self._rounds("1 end to end", tools, cfg.repeats)

    def m2_capped(self) -> dict[str, list[Run]]:
        cfg = self.cfg
        big = {cfg.big_file: cfg.main_files[cfg.big_file]}
        tools = {
            "API": lambda: self.run_api(cfg.main_repo, big, include=[cfg.big_file]),
            "hf": lambda: self.run_hf(cfg.main_repo, cfg.main_files, single=cfg.big_file),
            "aria2c": lambda: self.run_aria2(cfg.main_repo, big, [cfg.big_file], jobs=1, split=16),
            "curl": lambda: self.run_curl(cfg.main_repo, big, [cfg.big_file]),
        }
        # The cap is per TCP connection on the CDN, across its keep-alive responses (real CDNs).
        self.sim.faults([{"where": "cdn", "conn_rate_bps": CAP_BPS}])
        try:
            return self._rounds("2 capped 50 MB/s per connection", tools, 1)
        finally:
            self.sim.faults([])

    def m6_url_lifetime(self) -> dict[str, list[Run]]:
        """The 4 GiB file uncapped, with the CDN's signed URLs valid for an hour and for 1 s."""
        cfg = self.cfg
        big = {cfg.big_file: cfg.main_files[cfg.big_file]}

        def short_lived() -> Run:
            self.sim.configure(cdn_url_lifetime=1)
            try:
                return self.run_api(cfg.main_repo, big, include=[cfg.big_file])
            finally:
                self.sim.configure(cdn_url_lifetime=3600)
        tools = {"API": lambda: self.run_api(cfg.main_repo, big, include=[cfg.big_file]), "API 1 s": short_lived}
        # Three rounds in rotating order, medians: one pair of ~5 s runs swung +-20 % with the disk's
        # writeback alone (0.82x to 1.15x in three consecutive full runs).
        return self._rounds("6 signed-URL lifetime", tools, M6_ROUNDS)

    def _rounds(self, title: str, tools: dict, repeats: int) -> dict[str, list[Run]]:
        runs: dict[str, list[Run]] = {k: [] for k in tools}
        order = list(tools)
        for r in range(repeats):
            for name in order[r % len(order):] + order[:r % len(order)]:   # rotate the order per round
                warm(self.sim.files(self.cfg.main_repo))
                wait_quiet(self.quiet_wait)
                with LoadMonitor() as load:
                    run = tools[name]()
                run.bg = load.foreign
                runs[name].append(run)
                log(f"measurement {title}: {run.tool:<18} {run.seconds:7.2f} s {run.mbps:8.1f} MB/s "
                    f"cpu {run.cpu:6.1f} s, others {run.bg:.2f} cores" + (f" VmHWM {run.extra['hwm_mb']:.0f} MB" if 'hwm_mb' in run.extra else ""))
        return runs

    def m3_progress_latency(self, transfer_process: bool = True) -> dict:
        cfg = self.cfg
        self.n_api += 1
        api = Api(self.scratch / f"api{self.n_api}", self.sim.url, free_port(),
                  TRANSFER_PROCESS="true" if transfer_process else "false")
        rm(self.scratch / "out")
        sync()
        warm(self.sim.files(cfg.main_repo) + self.sim.files(cfg.second_repo))
        api.start()
        try:
            idle = hammer(api, cfg.progress_rps, seconds=2.0)
            done = threading.Event()
            box: dict = {}

            def downloads() -> None:
                try:
                    t0 = time.perf_counter()
                    ids = [api.submit(cfg.main_repo), api.submit(cfg.second_repo)]
                    box["jobs"] = [api.wait(j, interval=0.25) for j in ids]
                    box["seconds"] = time.perf_counter() - t0
                except BaseException as e:  # noqa: BLE001
                    box["error"] = e
                finally:
                    done.set()
            th = threading.Thread(target=downloads, daemon=True)
            wait_quiet(self.quiet_wait)
            with LoadMonitor() as load:
                th.start()
                busy = hammer(api, cfg.progress_rps, stop=done.is_set)
                th.join()
            if "error" in box:
                raise box["error"]
            nbytes = sum(cfg.main_files.values()) + sum(cfg.second_files.values())
            log(f"measurement 3: idle p50 {idle['p50']:.1f} p99 {idle['p99']:.1f} ms; busy p50 {busy['p50']:.1f} "
                f"p99 {busy['p99']:.1f} max {busy['max']:.1f} ms, {busy['n']} requests, {busy['errors']} errors; "
                f"two downloads {nbytes / 1e6:.0f} MB in {box['seconds']:.1f} s; others {load.foreign:.2f} cores")
            # keep the 4-shard model's blobs for measurement 5
            blobs = api.snapshot_files(cfg.second_repo)
            return {"idle": idle, "busy": busy, "seconds": box["seconds"], "nbytes": nbytes, "api": api,
                    "bg": load.foreign, "machine_busy": load.busy,
                    "blobs": blobs}
        except BaseException:
            api.stop()
            raise

    def m5_verify(self, api: Api, blobs: list[Path]) -> dict:
        cfg = self.cfg
        nbytes = sum(b.stat().st_size for b in blobs)
        api_t, sum_t, api_cpu, sum_cpu, bgs, ssl_t = [], [], [], [], [], []
        for r in range(cfg.repeats):
            for which in (("api", "sha", "ssl") if r % 2 == 0 else ("ssl", "sha", "api")):
                sync()
                warm(blobs)
                wait_quiet(self.quiet_wait)
                load = LoadMonitor().__enter__()
                if which == "api":
                    cpu0 = proc_cpu(api.pid)
                    t0 = time.perf_counter()
                    r_ = api.client.post("/api/models/verify", json={"model_id": cfg.second_repo})
                    if r_.status_code != 202:
                        raise RuntimeError(f"verify: HTTP {r_.status_code} {r_.text}")
                    job = api.wait(r_.json()["job_id"], interval=0.02)
                    api_t.append(time.perf_counter() - t0)
                    api_cpu.append(proc_cpu(api.pid) - cpu0)
                    if not job["result"]["ok"] or job["result"]["files_checked"] != len(blobs):
                        raise RuntimeError(f"verify result: {job['result']}")
                elif which == "sha":
                    cpu0 = child_cpu()
                    t0 = time.perf_counter()
                    subprocess.run(["sha256sum", *map(str, blobs)], check=True, capture_output=True)
                    sum_t.append(time.perf_counter() - t0)
                    sum_cpu.append(child_cpu() - cpu0)
                else:   # the same SHA-256 code as hashlib (OpenSSL), one file after the other
                    t0 = time.perf_counter()
                    subprocess.run(["openssl", "dgst", "-sha256", *map(str, blobs)], check=True, capture_output=True)
                    ssl_t.append(time.perf_counter() - t0)
                load.__exit__(None, None, None)
                bgs.append(load.foreign)
                log(f"measurement 5: {which} {dict(api=api_t, sha=sum_t, ssl=ssl_t)[which][-1]:.2f} s, "
                    f"others {load.foreign:.2f} cores")
        return {"api": statistics.median(api_t), "sha": statistics.median(sum_t), "nbytes": nbytes,
                "api_cpu": statistics.median(api_cpu), "sha_cpu": statistics.median(sum_cpu),
                "all_api": api_t, "all_sha": sum_t, "bg": max(bgs),
                "ssl": statistics.median(ssl_t), "all_ssl": ssl_t}


def hammer(api: Api, rps: float, stop=None, seconds: float | None = None) -> dict:
    """GET /api/download-progress at a fixed rate from one keep-alive client thread, for `seconds`
    or until stop() is true. Latency is measured per request; non-200 or a body without status
    counts as an error."""
    lat, errors, interval = [], 0, 1.0 / rps
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as c:
        t_start = nxt = time.perf_counter()
        while (time.perf_counter() - t_start < seconds) if seconds is not None else not stop():
            t0 = time.perf_counter()
            try:
                r = c.get("/api/download-progress")
                if r.status_code != 200 or "status" not in r.json():
                    errors += 1
            except (httpx.HTTPError, ValueError):
                errors += 1
            lat.append((time.perf_counter() - t0) * 1000)
            nxt += interval
            time.sleep(max(0.0, nxt - time.perf_counter()))
    lat.sort()
    q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else lat * 99
    return {"n": len(lat), "errors": errors, "p50": statistics.median(lat), "p99": q[98], "max": lat[-1]}


# -- report ---------------------------------------------------------------------------------------
def med(runs: list[Run]) -> Run:
    s = sorted(runs, key=lambda r: r.seconds)
    return s[len(s) // 2] if len(s) % 2 else Run(s[0].tool, statistics.median(r.seconds for r in s), s[0].nbytes,
                                                  statistics.median(r.cpu for r in s), max(r.bg for r in s), s[0].extra)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(cfg: Config, m1, m2, m3, m3b, m5, m6, hwm_runs: dict[str, float], started: float) -> str:
    rows = []

    def row(measure: str, value: str, target: str, ok: bool | None, detail: str, bg: float) -> None:
        rows.append(f"| {measure} | {value} | {target} | {'' if ok is None else verdict(ok)} | {bg:.2f} | {detail} |")

    def fmt(r: Run) -> str:
        return f"{r.seconds:.1f} s, {r.mbps:.0f} MB/s, cpu {r.cpu:.1f} s"

    def bg(*names, m) -> float:
        return max(r.bg for n in names for r in m[n])

    a, h, x, c = (med(m1[k]) for k in ("API", "hf", "aria2c", "curl"))
    gb = a.nbytes / GiB
    row(f"1. API / hf download ({gb:.1f} GiB repo, 5 files)", f"{h.seconds / a.seconds:.2f}x", ">= 1.5x",
        h.seconds / a.seconds >= 1.5, f"API {fmt(a)}; hf {fmt(h)}", bg("API", "hf", m=m1))
    row("1. API / curl (sequential)", f"{c.seconds / a.seconds:.2f}x", ">= 0.8x (aim)", c.seconds / a.seconds >= 0.8,
        f"curl {fmt(c)}", bg("API", "curl", m=m1))
    row("1. API / aria2c -x8 -s8 -j2", f"{x.seconds / a.seconds:.2f}x", "(info)", None, f"aria2c {fmt(x)}",
        bg("API", "aria2c", m=m1))
    a, h, x, c = (med(m2[k]) for k in ("API", "hf", "aria2c", "curl"))
    gb = a.nbytes / GiB
    row(f"2. 50 MB/s per conn, {gb:.1f} GiB file: API / hf", f"{h.seconds / a.seconds:.2f}x", ">= 5x",
        h.seconds / a.seconds >= 5, f"API {fmt(a)}; hf {fmt(h)}", bg("API", "hf", m=m2))
    row("2. capped: API / aria2c -x16 -s16", f"{x.seconds / a.seconds:.2f}x", ">= 1.0x (not below 0.8x)",
        x.seconds / a.seconds >= 1.0, f"aria2c {fmt(x)}; API used {a.extra['job']['result'].get('connections')} "
        "connections at most", bg("API", "aria2c", m=m2))
    row("2. capped: API / curl", f"{c.seconds / a.seconds:.2f}x", "(info)", None, f"curl {fmt(c)}",
        bg("API", "curl", m=m2))
    a, s1 = med(m6["API"]), med(m6["API 1 s"])
    row(f"6. 1 s signed-URL lifetime, {a.nbytes / GiB:.1f} GiB file uncapped: speed vs no expiry",
        f"{a.seconds / s1.seconds:.2f}x", ">= 0.90x", a.seconds / s1.seconds >= 0.9,
        f"1 s: {fmt(s1)}, {s1.extra['job']['result'].get('url_refreshes')} URL refreshes; 1 h: {fmt(a)}",
        bg("API", "API 1 s", m=m6))
    b, i = m3["busy"], m3["idle"]
    row("3. GET /api/download-progress p99 during 2 downloads (default: TRANSFER_PROCESS=true)", f"{b['p99']:.1f} ms", "< 50 ms", b["p99"] < 50,
        f"p50 {b['p50']:.1f} ms, max {b['max']:.1f} ms, {b['n']} requests at {cfg.progress_rps:.0f}/s; "
        f"idle p50 {i['p50']:.1f} / p99 {i['p99']:.1f} ms; downloads {m3['nbytes'] / GiB:.1f} GiB in "
        f"{m3['seconds']:.1f} s ({mbps(m3['nbytes'], m3['seconds']):.0f} MB/s)", m3["bg"])
    row("3. progress errors", str(b["errors"]), "0", b["errors"] == 0, f"{b['n']} requests", m3["bg"])
    b = m3b["busy"]
    row("3b. the same with TRANSFER_PROCESS=false (transfers in the API's threads)", f"{b['p99']:.1f} ms", "(info)",
        None, f"p50 {b['p50']:.1f} ms, max {b['max']:.1f} ms, {b['errors']} errors; downloads in "
        f"{m3b['seconds']:.1f} s ({mbps(m3b['nbytes'], m3b['seconds']):.0f} MB/s)", m3b["bg"])
    peak = hwm_runs["capped"]
    row(f"4. API peak RSS (VmHWM), {cfg.main_files[cfg.big_file] / GiB:.1f} GiB file", f"{peak:.0f} MB", "< 250 MB",
        peak < 250, f"VmHWM of a fresh `python -m api` plus its transfer process (measurement 2 run); in the uncapped "
                    f"full-repo run: {hwm_runs['full']:.0f} MB", bg("API", m=m2))
    row(f"5. verify API / sha256sum ({m5['nbytes'] / GiB:.1f} GiB, 4 files)", f"{m5['sha'] / m5['api']:.2f}x",
        ">= 1.5x", m5["sha"] / m5["api"] >= 1.5,
        f"API {m5['api']:.2f} s ({mbps(m5['nbytes'], m5['api']):.0f} MB/s, cpu {m5['api_cpu']:.1f} s); sha256sum "
        f"{m5['sha']:.2f} s ({mbps(m5['nbytes'], m5['sha']):.0f} MB/s); files in page cache for both", m5["bg"])
    row("5. verify API / `openssl dgst -sha256` sequential", f"{m5['ssl'] / m5['api']:.2f}x", "(info)", None,
        f"openssl {m5['ssl']:.2f} s ({mbps(m5['nbytes'], m5['ssl']):.0f} MB/s): same SHA-256 code as hashlib, "
        "so this ratio is the gain from hashing files in parallel", m5["bg"])
    head = (f"Download benchmark ({cfg.name}, {cfg.repeats} run(s) per tool in 1 and 5, median; "
            f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}, "
            f"took {(time.monotonic() - started) / 60:.1f} min)\n\n"
            "Ratio = peer time / API time (higher is better for the API). `others` = cores used by processes "
            "outside the benchmark during those runs (worst run); above ~0.3 the row is noisy.\n\n"
            "| Measurement | Ratio / value | Target | | others | Absolute |\n|---|---|---|---|---|---|\n")
    return head + "\n".join(rows) + "\n"


def ensure_tools() -> None:
    missing = [t for t in ("aria2c", "curl", "sha256sum") if shutil.which(t) is None]
    if "aria2c" in missing and shutil.which("apt-get"):
        log("installing aria2 with apt-get")
        subprocess.run(["apt-get", "install", "-y", "-q", "aria2"], check=False)
        missing = [t for t in missing if shutil.which(t) is None]
    if missing:
        sys.exit(f"missing tools: {missing}")
    if not Path(HF).exists():
        sys.exit(f"missing {HF} (huggingface_hub CLI)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 x 128 MiB + 512 MiB, one run per tool (~1 min)")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown table here too")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("BENCH_WORK", "/tmp/llmbox-bench")),
                    help="simulator content (kept across runs) and scratch outputs")
    ap.add_argument("--repeats", type=int, default=None, help="runs per tool for measurements 1 and 5")
    ap.add_argument("--quiet-wait", type=float, default=None,
                    help="before each run, wait up to this many seconds for other processes to leave the CPUs "
                         "alone (default 10, --quick 0)")
    args = ap.parse_args()
    cfg = QUICK if args.quick else FULL
    if args.repeats:
        cfg.repeats = args.repeats
    ensure_tools()
    started = time.monotonic()
    args.work.mkdir(parents=True, exist_ok=True)
    bench = Bench(cfg, args.work)
    bench.quiet_wait = args.quiet_wait if args.quiet_wait is not None else (0.0 if args.quick else 10.0)
    rm(bench.scratch)
    bench.scratch.mkdir(parents=True)
    bench.sim = Sim(args.work / "sim", cfg, args.work / "hubsim.log").start()
    api3 = None
    try:
        m1 = bench.m1_end_to_end()
        m2 = bench.m2_capped()
        m6 = bench.m6_url_lifetime()
        m3b = bench.m3_progress_latency(transfer_process=False)
        api3b = m3b.pop("api")
        api3b.stop()
        rm(api3b.dir)
        m3b.pop("blobs")
        m3 = bench.m3_progress_latency()
        api3 = m3.pop("api")
        m5 = bench.m5_verify(api3, m3.pop("blobs"))
    finally:
        if api3:
            api3.stop()
        bench.sim.stop()
        rm(bench.scratch)
    hwm = {"full": max(r.extra["hwm_mb"] for r in m1["API"]), "capped": max(r.extra["hwm_mb"] for r in m2["API"])}
    table = report(cfg, m1, m2, m3, m3b, m5, m6, hwm, started)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
        raw = {k: {t: [{"seconds": r.seconds, "bytes": r.nbytes, "cpu": r.cpu, **{x: y for x, y in r.extra.items()
                                                                                  if x != "job"}} for r in v]
                   for t, v in m.items()} for k, m in (("m1", m1), ("m2", m2), ("m6", m6))}
        raw["m3"], raw["m3b"], raw["m5"] = m3, m3b, m5
        args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
