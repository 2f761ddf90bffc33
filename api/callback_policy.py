"""Where webhooks may go: the SSRF policy for `callback_url` (docs/security.md, "Webhooks").

- WEBHOOK_ALLOWED_HOSTS entries are `host`, `host:port` or `host:*`. A bare `host` means the URL's
  default port (80 for http, 443 for https): allowing `localhost` must not open every service
  on the box (a Docker socket proxy on :2375), so other ports are listed one by one.
- With an empty list any public address is allowed; with a list, only what it names.
- Loopback, private (RFC 1918, ULA), link-local, unspecified, CGNAT and other non-global
  addresses are refused unless listed, in any spelling: the URL's host is resolved with
  getaddrinfo, which reads `2130706433`, `0x7f000001`, `127.1`, `[::ffff:127.0.0.1]` and
  `localhost` the way a connecting client would, and every address it yields is checked.
- The cloud metadata addresses are refused even when listed.
- The address that was checked is the one connected to (`Target.address`); the caller sends
  the name in the Host header and TLS SNI, so a DNS answer that changes between the check and
  the connection (rebinding) cannot redirect the request.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Callable, Iterable
from urllib.parse import urlsplit

from .errors import InvalidInput

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Iterable[str]]

# AWS/GCP/Azure/OpenStack (and its IPv6 twin on EC2), ECS task metadata, Alibaba Cloud.
METADATA = frozenset(ipaddress.ip_address(a) for a in
                     ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    """A checked callback: connect to `address`, name `host` in the Host header and SNI."""
    url: str
    scheme: str
    host: str
    port: int
    address: str


@dataclass(frozen=True)
class _Entry:
    host: str           # lower-case name, or the compressed text of an IP literal
    port: int | None    # None: the scheme's default port; -1: any port

    def allows_port(self, port: int, scheme: str) -> bool:
        return self.port == -1 or port == (DEFAULT_PORTS[scheme] if self.port is None else self.port)


def _literal(text: str) -> IP | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _parse_entry(raw: str) -> _Entry:
    text = raw.strip().lower()
    ip = _literal(text)
    if ip is not None:                      # 127.0.0.1, ::1, [::1]: an address, default port
        return _Entry(str(ip), None)
    host, sep, port = text.rpartition(":")  # name:port, [v6]:port, name:*
    if not sep:
        return _Entry(text, None)
    if port != "*" and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"WEBHOOK_ALLOWED_HOSTS: bad port in {raw.strip()!r}")
    ip = _literal(host)
    return _Entry(str(ip) if ip else host, -1 if port == "*" else int(port))


def unwrap(ip: IP) -> IP:
    """The IPv4 address inside an IPv4-mapped or NAT64 IPv6 address, which is where it goes."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def is_internal(ip: IP) -> bool:
    """Anything but a global unicast address: loopback, RFC 1918, ULA, link-local, 0.0.0.0, CGNAT ..."""
    ip = unwrap(ip)
    return not ip.is_global or ip.is_multicast


def _system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


def _refuse(detail: str) -> InvalidInput:
    return InvalidInput(detail, code="callback_not_allowed")


class CallbackPolicy:
    def __init__(self, allowed_hosts: str, resolve: Resolver | None = None):
        self.entries = [_parse_entry(e) for e in allowed_hosts.split(",") if e.strip()]
        self.resolve = resolve or _system_resolve

    def _listed(self, host: str, addresses: list[IP], port: int, scheme: str) -> bool:
        names = {host} | {str(a) for a in addresses} | {str(unwrap(a)) for a in addresses}
        return any(e.host in names and e.allows_port(port, scheme) for e in self.entries)

    def check(self, url: str) -> Target:
        """Resolve the URL's host once and decide; raises 422 `callback_not_allowed`."""
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        port = parts.port or DEFAULT_PORTS[scheme]
        try:
            found = list(dict.fromkeys(a.split("%", 1)[0] for a in self.resolve(host, port)))
        except (OSError, UnicodeError):
            found = []
        addresses = [ipaddress.ip_address(a) for a in found]
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"   # as an entry would list it
        if any(ip in METADATA or unwrap(ip) in METADATA for ip in addresses):
            raise _refuse(f"callback_url {where} is a cloud metadata address; it is always refused.")
        listed = self._listed(host, addresses, port, scheme)
        if self.entries and not listed:
            raise _refuse(f"callback_url {where} is not in WEBHOOK_ALLOWED_HOSTS (entries are host, "
                          f"host:port or host:*; a bare host allows port {DEFAULT_PORTS[scheme]} only).")
        if not addresses:
            raise _refuse(f"callback_url host {host!r} does not resolve.")
        internal = [str(ip) for ip in addresses if is_internal(ip)]
        if internal and not listed:
            raise _refuse(f"callback_url {where} resolves to the internal address {internal[0]}; "
                          f"list {where} in WEBHOOK_ALLOWED_HOSTS to allow it.")
        return Target(url=url, scheme=scheme, host=host, port=port, address=found[0])
