"""HTTPS for the simulator: a throwaway local CA (trustme) and a server certificate for loopback."""

from __future__ import annotations

import ssl
from pathlib import Path


def make_server_context(host: str, ca_path: Path) -> ssl.SSLContext:
    """Issue a certificate for `host` (plus the loopback names) from a new CA, write the CA
    bundle to `ca_path` for clients to trust, and return the server's SSL context."""
    import trustme  # a test dependency: only HTTPS mode needs it

    ca = trustme.CA(organization_name="hubsim local CA")
    names = dict.fromkeys([host, "127.0.0.1", "localhost", "::1"])
    cert = ca.issue_cert(*names)
    ca.cert_pem.write_to_path(str(ca_path))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx
