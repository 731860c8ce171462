"""Who the client is: the peer address, or the address a trusted reverse proxy reports.

``X-Forwarded-For`` is believed only when the peer is in ``CLEANCUT_TRUSTED_PROXIES``. Reading the
chain from the right (the peer, then the last entry, then the one before it, ...), the first
address that is not a trusted proxy is the client: everything left of it was written by the
client itself and can be forged. uvicorn's own proxy-header handling is off (see ``run``), so this
is the only place that reads the header.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import Scope

__all__ = ["TrustedProxies", "IPAddress"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_MAX_HOPS = 32  # a longer chain is cut; nobody runs that many proxies


def _parse(text: str) -> IPAddress | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class TrustedProxies:
    def __init__(self, networks: Iterable[str]) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusted(self, addr: IPAddress) -> bool:
        return any(addr in net for net in self._networks)

    def client_of(self, scope: Scope) -> IPAddress | None:
        """The client's address for this request, or ``None`` when there is no peer address
        (a Unix socket)."""
        client = scope.get("client")
        peer = _parse(str(client[0])) if client else None
        if peer is None or not self._networks or not self.trusted(peer):
            return peer
        chain: list[str] = []
        for key, value in scope.get("headers", ()):
            if key == b"x-forwarded-for":
                chain.extend(value.decode("latin-1").split(","))
        current = peer
        for hop in reversed(chain[-_MAX_HOPS:]):
            addr = _parse(hop)
            if addr is None:  # garbage where an address should be: trust no further
                return current
            if not self.trusted(addr):
                return addr
            current = addr
        return current
