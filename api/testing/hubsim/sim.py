"""The HubSim facade: repos + faults + counters behind a hub port and a CDN port."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Iterable

from .faults import Fault, FaultSet
from .repos import RepoStore
from .server import SimServer, Stats


class HubSim:
    def __init__(
        self,
        root: Path | str,
        tokens: Iterable[str] = frozenset(),
        host: str = "127.0.0.1",
        *,
        port: int = 0,
        cdn_port: int = 0,
        tree_page_size: int = 50,
        verbose: bool = False,
    ) -> None:
        self.root = Path(root)
        self.tokens = frozenset(tokens)
        self.host = host
        self.tree_page_size = tree_page_size
        self.verbose = verbose
        self.store = RepoStore(self.root)
        self.faults = FaultSet()
        self.stats = Stats()
        self._want_ports = (port, cdn_port)
        self._servers: list[SimServer] = []
        self._threads: list[threading.Thread] = []

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._servers:
            raise RuntimeError("HubSim already started")
        hub = SimServer((self.host, self._want_ports[0]), self, "hub")
        try:
            cdn = SimServer((self.host, self._want_ports[1]), self, "cdn")
        except OSError:
            hub.server_close()
            raise
        self._servers = [hub, cdn]
        for server in self._servers:
            t = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"hubsim-{server.role}",
                daemon=True,
            )
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            server.shutdown()
            server.server_close()
            server.close_connections()
        for t in self._threads:
            t.join(timeout=5)
        self._threads = []

    def __enter__(self) -> "HubSim":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _server(self, index: int) -> SimServer:
        if not self._servers:
            raise RuntimeError("HubSim is not running; call start() first")
        return self._servers[index]

    @property
    def port(self) -> int:
        return self._server(0).server_address[1]

    @property
    def cdn_port(self) -> int:
        return self._server(1).server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def cdn_url(self) -> str:
        return f"http://{self.host}:{self.cdn_port}"

    # -- repos ------------------------------------------------------------------------------

    def add_repo(self, repo_id: str, files: dict[str, bytes | int], *, gated: bool = False, revision: str = "main") -> str:
        return self.store.add_repo(repo_id, files, gated=gated, revision=revision)

    def file_info(self, repo_id: str, path: str, revision: str = "main") -> dict[str, Any]:
        repo = self.store.get(repo_id)
        found = repo.resolve(revision) if repo else None
        entry = found.files.get(path) if found else None
        if entry is None:
            raise KeyError(f"{repo_id}@{revision}: no file {path!r}")
        return entry.info()

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for repo in self.store.repos():
            out[repo.repo_id] = {
                "gated": repo.gated,
                "refs": dict(repo.refs),
                "commits": {
                    commit: {path: e.info() for path, e in rev.files.items()} for commit, rev in list(repo.commits.items())
                },
            }
        return out

    # -- faults and counters ----------------------------------------------------------------

    def set_faults(self, *faults: Fault) -> None:
        self.faults.replace(faults)

    def clear_faults(self) -> None:
        self.faults.clear()

    def served_bytes(self, repo_id: str, path: str) -> int:
        return self.stats.get((repo_id, path))[0]

    def request_count(self, repo_id: str, path: str) -> int:
        """GETs answered for the file (content or an injected status); redirects and HEADs excluded."""
        return self.stats.get((repo_id, path))[1]

    def head_count(self, repo_id: str, path: str) -> int:
        return self.stats.get((repo_id, path))[2]

    def reset_counters(self) -> None:
        self.stats.reset()
