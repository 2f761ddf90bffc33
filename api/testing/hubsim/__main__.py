"""python -m api.testing.hubsim --root DIR [--port 8788] [--synthetic "org/name:a.json=2000,m.safetensors=5e7"] [--tls]"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .sim import HubSim


def parse_synthetic(spec: str) -> tuple[str, str, dict[str, int]]:
    """ "org/name[@rev]:path=size,path=size" -> (repo_id, revision, files)."""
    repo_part, sep, files_part = spec.partition(":")
    if not sep or not repo_part:
        raise argparse.ArgumentTypeError(f"--synthetic {spec!r}: expected REPO_ID:path=size,...")
    repo_id, _, revision = repo_part.partition("@")
    files: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in files_part.split(","))):
        path, eq, size = item.rpartition("=")
        if not eq or not path:
            raise argparse.ArgumentTypeError(f"--synthetic {spec!r}: bad item {item!r}")
        try:
            files[path] = int(float(size)) if any(c in size for c in ".eE") else int(size)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--synthetic {spec!r}: bad size {size!r}") from None
    return repo_id, revision or "main", files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m api.testing.hubsim", description="Local Hugging Face Hub simulator")
    p.add_argument("--root", required=True, help="folder where repo content is generated and kept")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8788, help="hub port (0 = any free port)")
    p.add_argument("--cdn-port", type=int, default=0, help="CDN port (0 = any free port)")
    p.add_argument("--token", action="append", default=[], help="accepted bearer token for gated repos")
    p.add_argument("--synthetic", action="append", default=[], type=parse_synthetic, metavar="REPO[@REV]:PATH=SIZE,...")
    p.add_argument("--gated", action="append", default=[], metavar="REPO_ID", help="mark a --synthetic repo gated")
    p.add_argument("--private", action="append", default=[], metavar="REPO_ID", help="mark a --synthetic repo private")
    p.add_argument("--disabled", action="append", default=[], metavar="REPO_ID", help="mark a --synthetic repo disabled")
    p.add_argument("--tree-page-size", type=int, default=50)
    p.add_argument("--tls", action="store_true", help="serve HTTPS with a local CA (its PEM path is printed as ca=...)")
    p.add_argument("--cdn-url-lifetime", type=float, default=3600.0, help="seconds a signed CDN URL stays valid")
    p.add_argument("--cdn-url-style", choices=("cloudfront", "s3", "both"), default="cloudfront")
    p.add_argument("--cdn-max-size", type=int, default=400 * 10**9, help="bigger files get 400 from the CDN")
    p.add_argument("--ratelimit-enforce", action="store_true", help="answer 429 once a rate-limit bucket is used up")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = p.parse_args(argv)

    sim = HubSim(
        args.root,
        tokens=args.token,
        host=args.host,
        port=args.port,
        cdn_port=args.cdn_port,
        tree_page_size=args.tree_page_size,
        verbose=args.verbose,
        tls=args.tls,
        cdn_url_lifetime=args.cdn_url_lifetime,
        cdn_url_style=args.cdn_url_style,
        cdn_max_size=args.cdn_max_size,
        ratelimit_enforce=args.ratelimit_enforce,
    )
    for repo_id, revision, files in args.synthetic:
        flags = {name: repo_id in getattr(args, name) for name in ("gated", "private", "disabled")}
        sim.add_repo(repo_id, files, revision=revision, **flags)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sim.start()
    ca = f" ca={sim.ca_bundle}" if sim.ca_bundle else ""
    print(f"hubsim ready url={sim.url} cdn={sim.cdn_url}{ca}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
