"""The HubSim facade: repos + faults + counters behind a hub port and a CDN port."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Iterable

from .faults import Fault, FaultSet
from .ratelimit import RateLimits
from .repos import RepoStore
from .server import Handler, SimServer, Stats
from .signing import STYLES, UrlSigner
from .stats import CDN_GETS, CDN_HEADS

REAL_CDN_URL_LIFETIME = 3600.0
REAL_CDN_MAX_SIZE = 400 * 10**9  # the Xet bridge answers 400 above ~400 GB


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
        tls: bool = False,
        cdn_url_lifetime: float = REAL_CDN_URL_LIFETIME,
        cdn_url_style: str = "cloudfront",
        cdn_max_size: int = REAL_CDN_MAX_SIZE,
        ratelimit_enforce: bool = False,
    ) -> None:
        self.root = Path(root)
        self.tokens = frozenset(tokens)
        self.host = host
        self.tree_page_size = tree_page_size
        self.verbose = verbose
        self.tls = tls
        self.store = RepoStore(self.root)
        self.faults = FaultSet()
        self.stats = Stats()
        self.signer = UrlSigner()
        self.ratelimits = RateLimits(enforce=ratelimit_enforce)
        self.cdn_url_lifetime, self.cdn_url_style, self.cdn_max_size = REAL_CDN_URL_LIFETIME, "cloudfront", cdn_max_size
        self.configure(cdn_url_lifetime=cdn_url_lifetime, cdn_url_style=cdn_url_style)
        self._ca_bundle: Path | None = None
        self._want_ports = (port, cdn_port)
        self._servers: list[SimServer] = []
        self._threads: list[threading.Thread] = []

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        if self._servers:
            raise RuntimeError("HubSim already started")
        context = None
        if self.tls:
            from .tls import make_server_context

            self._ca_bundle = self.root / "hubsim-ca.pem"
            context = make_server_context(self.host, self._ca_bundle)
        hub = SimServer((self.host, self._want_ports[0]), self, "hub", Handler, context)
        try:
            cdn = SimServer((self.host, self._want_ports[1]), self, "cdn", Handler, context)
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
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def _origin(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{port}"

    @property
    def url(self) -> str:
        return self._origin(self.port)

    @property
    def cdn_url(self) -> str:
        return self._origin(self.cdn_port)

    @property
    def ca_bundle(self) -> str | None:
        """PEM file of the local CA that signed the HTTPS certificate (None over plain HTTP).
        Point clients at it: SSL_CERT_FILE / REQUESTS_CA_BUNDLE, or verify=... in httpx."""
        return str(self._ca_bundle) if self._ca_bundle else None

    # -- settings ---------------------------------------------------------------------------

    def configure(self, **settings: Any) -> None:
        """Change settings at runtime (also `POST /_sim/config`): tree_page_size,
        cdn_url_lifetime (s), cdn_url_style (cloudfront | s3 | both), cdn_max_size (bytes),
        ratelimit_enforce (bool), ratelimit_quotas ({bucket: requests per window})."""
        if "cdn_url_style" in settings and settings["cdn_url_style"] not in STYLES:
            raise ValueError(f"cdn_url_style must be one of {STYLES}")
        if settings.get("cdn_url_lifetime", 1) <= 0:
            raise ValueError("cdn_url_lifetime must be > 0")
        for name, value in settings.items():
            if name == "ratelimit_enforce":
                self.ratelimits.enforce = bool(value)
            elif name == "ratelimit_quotas":
                self.ratelimits.quotas.update({str(k): int(v) for k, v in value.items()})
            elif name in ("tree_page_size", "cdn_url_lifetime", "cdn_url_style", "cdn_max_size"):
                setattr(self, name, value)
            else:
                raise ValueError(f"unknown setting {name!r}")

    def config(self) -> dict[str, Any]:
        return {
            "tree_page_size": self.tree_page_size,
            "cdn_url_lifetime": self.cdn_url_lifetime,
            "cdn_url_style": self.cdn_url_style,
            "cdn_max_size": self.cdn_max_size,
            "ratelimit_enforce": self.ratelimits.enforce,
            "ratelimit_quotas": dict(self.ratelimits.quotas),
            "ca_bundle": self.ca_bundle,
        }

    def signed_path_url(self, path: str, extra: dict[str, str] | None = None, lifetime: float | None = None) -> str:
        life = self.cdn_url_lifetime if lifetime is None else lifetime
        return self.signer.sign(self.cdn_url, path, life, self.cdn_url_style, extra)

    def signed_url(self, repo_id: str, path: str, revision: str = "main", lifetime: float | None = None) -> str:
        """A signed CDN URL for an LFS file, as the resolve redirect hands it out."""
        repo = self.store.get(repo_id)
        if repo is None:
            raise KeyError(repo_id)
        entry = self.file_info(repo_id, path, revision)
        return self.signed_path_url(f"/xet-bridge-us/{repo.object_id}/{entry['xet_hash']}", lifetime=lifetime)

    # -- repos ------------------------------------------------------------------------------

    def add_repo(self, repo_id: str, files: dict[str, bytes | int], **options: Any) -> str:
        """options: gated=False, revision="main", private=False, disabled=False (RepoStore.add_repo)."""
        return self.store.add_repo(repo_id, files, **options)

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
                "private": repo.private,
                "disabled": repo.disabled,
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

    def cdn_request_count(self, repo_id: str, path: str) -> int:
        """GETs the CDN answered for the file (bytes, or a refusal such as an expired URL)."""
        return self.stats.row((repo_id, path))[CDN_GETS]

    def cdn_head_count(self, repo_id: str, path: str) -> int:
        return self.stats.row((repo_id, path))[CDN_HEADS]

    def connection_count(self, role: str = "cdn") -> int:
        """TCP connections accepted on the "hub" or "cdn" port since the last reset."""
        return self.stats.connections(role)

    def request_log(self) -> list[dict[str, Any]]:
        """The last 20,000 file and API requests, oldest first: role, method, url (path only),
        repo, path, status, conn (connection number on that port), range, time."""
        return self.stats.entries()

    def reset_counters(self) -> None:
        self.stats.reset()
        self.ratelimits.reset()
