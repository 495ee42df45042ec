"""Refusing media and input URLs that point into private networks (an SSRF guard).

A result body names the URLs the runner downloads, and a manifest names the
input image URLs the API is asked to fetch. Talking to a remote API, neither
may point at this machine or its networks: a hostile or compromised answer
could otherwise make the runner read a cloud metadata service
(``169.254.169.254``), an admin port on ``localhost`` or a host on the LAN,
and store what it answers.

`UrlGuard` refuses a URL whose host is ``localhost`` (or ``*.localhost``,
RFC 6761), a literal address, or a name resolving (system resolver, through
`anyio.getaddrinfo`) to any address that is loopback, unspecified, private,
unique-local, link-local, shared (CGNAT), multicast, reserved or otherwise
not global, or an IPv6 address that embeds an IPv4 one (IPv4-mapped, NAT64
``64:ff9b::/96``, 6to4, Teredo). Every resolved address is checked, not just
the first. Checking before the connection leaves a gap (the name may resolve
differently a moment later: DNS rebinding), so the media client also checks
the address it actually connected to (`check_peer`).

Only a remote backend is guarded: the local emulator, and a Segmind base URL
on loopback, serve their media from loopback by design (`guard_for`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Final
from urllib.parse import urlsplit

import anyio

from runner.redact import safe_url

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""Resolves (host, port) to address strings; raises OSError when the name does not resolve."""

_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
_UNIQUE_LOCAL: Final = ipaddress.ip_network("fc00::/7")
_LOCAL_NAMES: Final = ("localhost", "localhost.", "ip6-localhost", "ip6-loopback")


class RefusedUrl(ValueError):
    """A URL the guard refuses; `str()` says why. `retryable` when only the lookup failed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        self.retryable = retryable
        super().__init__(message)


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host` (TCP), as strings."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address.teredo is not None:
        return "Teredo", address.teredo[1]
    return None


def why_refused(address: Address) -> str | None:
    """Why `address` is no place to fetch from ("loopback", ...), or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            # Refused whatever the inner address: no public service needs the
            # embedded form, and it is how filters of plain IPv4 are dodged.
            kind, inner = embedded
            return f"an IPv6 address embedding IPv4 {inner} ({kind})"
    checks = (
        (address.is_loopback, "loopback"),
        (address.is_unspecified, "unspecified"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (address.is_reserved, "reserved"),
        (isinstance(address, ipaddress.IPv6Address) and address in _UNIQUE_LOCAL, "unique-local"),
        (address.is_private, "private"),
        (not address.is_global, "not a public address"),
    )
    for hit, reason in checks:
        if hit:
            return reason
    return None


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` names and loopback literals (127.0.0.0/8, ::1)."""
    name = host.strip("[]").lower()
    if name in _LOCAL_NAMES or name.rstrip(".").endswith(".localhost"):
        return True
    address = _literal(name.split("%", 1)[0])
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class UrlGuard:
    """Refuses URLs into private networks; see the module docstring.

    `trusted_hosts` (lower case) skip the check: the API root's own host,
    which already receives the key. `resolver` defaults to the system's.
    """

    def __init__(
        self, *, trusted_hosts: Iterable[str] = (), resolver: Resolver = system_resolver
    ) -> None:
        self._trusted = frozenset(h.lower().strip("[]") for h in trusted_hosts)
        self._resolve = resolver

    def __repr__(self) -> str:
        return f"UrlGuard(trusted_hosts={sorted(self._trusted)!r})"

    async def check(self, url: str, *, must_resolve: bool = True) -> None:
        """Raise RefusedUrl when `url` points at a refused address.

        With `must_resolve` False a name that does not resolve here passes (an
        input URL is fetched by the API, whose resolver may know it); with it
        True that is a retryable refusal (a download could not go anywhere).
        """
        shown = safe_url(url)
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise RefusedUrl(f"{shown}: not a valid URL") from None
        if not host:
            raise RefusedUrl(f"{shown}: the URL has no host")
        if host in self._trusted:
            return
        if is_loopback_host(host):
            raise RefusedUrl(f"{shown}: {host} is this machine (loopback)")
        literal = _literal(host.split("%", 1)[0])
        if literal is not None:
            self._refuse(shown, host, [literal], how="is")
            return
        try:
            found = await self._resolve(host, port)
        except OSError as err:
            if not must_resolve:
                return
            raise RefusedUrl(
                f"{shown}: the host {host} does not resolve ({err.strerror or err})",
                retryable=True,
            ) from None
        addresses = [a for a in (_literal(text.split("%", 1)[0]) for text in found) if a]
        if not addresses and must_resolve:
            raise RefusedUrl(f"{shown}: the host {host} resolves to no address", retryable=True)
        self._refuse(shown, host, addresses, how="resolves to")

    def check_peer(self, url: str, peer: str) -> None:
        """Raise RefusedUrl when the address a download connected to (`peer`) is refused."""
        try:
            host = (urlsplit(url).hostname or "").lower()
        except ValueError:
            host = ""
        if host in self._trusted:
            return
        address = _literal(peer.split("%", 1)[0])
        if address is not None:
            self._refuse(safe_url(url), host or peer, [address], how="connected to")

    @staticmethod
    def _refuse(shown: str, host: str, addresses: list[Address], *, how: str) -> None:
        for address in addresses:
            reason = why_refused(address)
            if reason is None:
                continue
            if how == "is":
                raise RefusedUrl(f"{shown}: {host} is {reason}")
            raise RefusedUrl(f"{shown}: {host} {how} {address}, {reason}")


def guard_for(base_url: str) -> UrlGuard | None:
    """The guard of a backend at `base_url`: None for a loopback root (the emulator)."""
    host = (urlsplit(base_url).hostname or "").lower()
    if not host or is_loopback_host(host):
        return None
    return UrlGuard(trusted_hosts=(host,))
