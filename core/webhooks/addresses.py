"""Server-side request forgery guard: which addresses a webhook may be delivered to.

A URL's host is resolved and every address it resolves to must be public (not loopback,
private, link-local, multicast, reserved or unspecified) unless the operator sets
``PRUNEKIT_WEBHOOK_ALLOW_PRIVATE``. The check runs when a job is submitted and again at each
delivery attempt, which then connects to the very address it checked (no second lookup that
DNS rebinding could answer differently).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

ALLOWED_SCHEMES = ("http", "https")


class AddressRefusedError(ValueError):
    """The URL may not be delivered to; the message says why."""


class HostUnresolvedError(AddressRefusedError):
    """The URL's host does not resolve (now: DNS may answer later)."""


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def resolve_checked(url: str, allow_private: bool) -> str:
    """The address to connect to for ``url``: its host resolved, every address checked.

    Raises :class:`AddressRefusedError` for a scheme other than http(s), a host that does
    not resolve, or one that resolves to a non-public address (unless ``allow_private``)."""
    parts = urlsplit(url)
    if parts.scheme not in ALLOWED_SCHEMES:
        raise AddressRefusedError(f"the URL must be http or https, not {parts.scheme!r}")
    host = parts.hostname
    if not host:
        raise AddressRefusedError("the URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError) as exc:
        raise HostUnresolvedError(f"the host {host!r} does not resolve: {exc}") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise HostUnresolvedError(f"the host {host!r} does not resolve")
    if not allow_private:
        private = sorted({str(a) for a in addresses if not _is_public(a)})
        if private:
            raise AddressRefusedError(
                f"the host {host!r} resolves to a non-public address ({', '.join(private)}); "
                "loopback, private and link-local addresses are refused unless the operator "
                "sets PRUNEKIT_WEBHOOK_ALLOW_PRIVATE"
            )
    return str(addresses[0])
