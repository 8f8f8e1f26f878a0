"""What this server fetches from elsewhere: a client's registered `jwks_uri`, an identity provider's discovery
document and keys. The one guarded way to fetch a URL this server did not make up.

Outbound fetches (SECURITY V5 5.2.6 and FHIR item 9): https only (loopback http only when
`outbound_allow_loopback`, refused in production), every resolved address public, no redirects, 64 KiB, and
one 5 s deadline for the whole fetch (resolution, connection, headers and body: a server sending a byte every
few seconds is cut at the deadline, not kept alive by a per-read timeout). The host is resolved once
(`resolve`) and the connection goes to the addresses that were checked (`_PinnedBackend`): a DNS answer that
changes between the check and the connection (rebinding) cannot send the request elsewhere. The URL keeps the
name, so TLS sends it as SNI, the certificate is verified against it, and it is the Host header."""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
import orjson
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from espace_sante.runtime import Runtime

FETCH_TIMEOUT = 5.0
FETCH_MAX_BYTES = 64 * 1024
#: Fetched key sets are kept this long; an unknown `kid` refetches at most once per REFETCH_AFTER.
JWKS_TTL = 300
REFETCH_AFTER = 60


class FetchRefused(Exception):
    """An outbound URL is not allowed or did not answer as expected. The message is safe to show."""


# --- the guarded fetch ---------------------------------------------------------------------------------------


#: IPv6 ranges that carry an IPv4 address a gateway reaches for us: NAT64 (RFC 6052, RFC 8215), 6to4 (RFC 3056),
#: the deprecated IPv4-compatible form and site-local addresses. `is_global` judged some of them public before
#: Python 3.11.10 (CVE-2024-4032), so they are refused here whatever the interpreter says.
_TRANSLATED = tuple(
    ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "::/96", "fec0::/10")
)


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif any(ip in net for net in _TRANSLATED):
            return False
    return ip.is_global and not ip.is_multicast


def _loopback(address: str) -> bool:
    return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback


async def resolve(host: str, port: int) -> list[str]:
    """The addresses of `host`, in the resolver's order (the one resolution a fetch makes)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def check_url(url: str, *, allow_loopback: bool) -> list[str]:
    """Refuse a URL this server must not fetch: not https (http only to loopback when allowed), credentials
    in it, or any resolved address outside the public internet. Returns the checked addresses, the only
    ones the fetch may then connect to."""
    parts = urlsplit(url)
    if parts.username or parts.password or not parts.hostname:
        raise FetchRefused("adresse refusée / URL refused")
    if parts.scheme not in ("https", "http"):
        raise FetchRefused("https requis / https required")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise FetchRefused("port invalide / invalid port") from exc
    try:
        addresses = await resolve(parts.hostname, port)
    except (OSError, UnicodeError) as exc:
        raise FetchRefused("hôte introuvable / host not found") from exc
    if not addresses:
        raise FetchRefused("hôte introuvable / host not found")
    if allow_loopback and all(_loopback(a) for a in addresses):
        return addresses
    if parts.scheme != "https":
        raise FetchRefused("https requis / https required")
    if not all(_public(a) for a in addresses):
        raise FetchRefused("adresse privée refusée / private address refused")
    return addresses


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, except that a connection goes to the checked addresses (in order, the
    next one if one refuses) whatever the host name: nothing resolves the name a second time. TLS and the
    Host header still use the name from the URL (httpcore takes them from the request, not from here)."""

    def __init__(self, addresses: list[str]) -> None:
        self._addresses = addresses
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: Exception = httpcore.ConnectError("no address")
        for address in self._addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport (its request and error mapping) over a connection pool that uses `_PinnedBackend`.
    httpx 0.28 takes no network backend, so the pool it builds is replaced by one built the same way."""

    def __init__(self, addresses: list[str]) -> None:
        super().__init__(trust_env=False, retries=0)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=1,
            network_backend=_PinnedBackend(addresses),
        )


async def fetch_json(
    url: str,
    *,
    allow_loopback: bool,
    method: str = "GET",
    data: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """GET (or POST a form to) a checked URL and return its JSON, within the deadline and the size cap."""
    try:
        async with asyncio.timeout(FETCH_TIMEOUT):
            status, ctype, body = await _fetch(url, allow_loopback, method, data, auth, headers)
    except TimeoutError as exc:
        raise FetchRefused(
            f"pas de réponse complète en {FETCH_TIMEOUT:g} s / no complete answer within {FETCH_TIMEOUT:g} s"
        ) from exc
    if status != 200:
        raise FetchRefused(f"réponse {status} / answered {status}")
    if "jwt" in ctype:
        return bytes(body).decode("ascii", "replace").strip()
    try:
        return orjson.loads(bytes(body))
    except orjson.JSONDecodeError as exc:
        raise FetchRefused("réponse non JSON / not JSON") from exc


async def _fetch(
    url: str,
    allow_loopback: bool,
    method: str,
    data: dict[str, str] | None,
    auth: tuple[str, str] | None,
    headers: dict[str, str] | None,
) -> tuple[int, str, bytes]:
    addresses = await check_url(url, allow_loopback=allow_loopback)
    body = bytearray()
    try:
        async with (
            httpx.AsyncClient(
                transport=_PinnedTransport(addresses),
                timeout=FETCH_TIMEOUT,
                follow_redirects=False,
                trust_env=False,
            ) as client,
            client.stream(
                method,
                url,
                data=data,
                auth=auth,
                headers={"Accept": "application/json", **(headers or {})},
            ) as response,
        ):
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > FETCH_MAX_BYTES:
                    raise FetchRefused("réponse trop grande / response too large")
            return response.status_code, response.headers.get("content-type", ""), bytes(body)
    except httpx.HTTPError as exc:
        raise FetchRefused(f"échec de la requête / request failed ({type(exc).__name__})") from exc


# --- key sets ------------------------------------------------------------------------------------------------


@dataclass
class _Cached:
    keys: dict[str, Any]
    fetched: float


_JWKS_CACHE: dict[str, _Cached] = {}


def key_set(value: Any) -> KeySet:
    """Public keys only: a key set holding a private key is refused (it was leaked to us)."""
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list) or not value["keys"]:
        raise ValueError("JWKS: an object with a non-empty `keys` list is expected")
    for key in value["keys"]:
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC"):
            raise ValueError("JWKS: RSA or EC keys only")
        if "d" in key:
            raise ValueError("JWKS: a private key was given; register the public key only")
        if not isinstance(key.get("kid"), str) or not key["kid"]:
            raise ValueError("JWKS: every key needs a `kid`")
    try:
        return KeySet.import_key_set(value)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"JWKS: unreadable key ({type(exc).__name__})") from exc


async def remote_key_set(rt: Runtime, url: str, *, refresh: bool = False) -> dict[str, Any]:
    """A registered `jwks_uri`'s keys, cached per process (JWKS_TTL); `refresh` refetches unless the last
    fetch is younger than REFETCH_AFTER (an unknown `kid` cannot make us hammer the URL)."""
    now = time.monotonic()
    cached = _JWKS_CACHE.get(url)
    if cached is not None:
        age = now - cached.fetched
        if age < JWKS_TTL and not (refresh and age >= REFETCH_AFTER):
            return cached.keys
    value = await fetch_json(url, allow_loopback=rt.settings.outbound_allow_loopback)
    if not isinstance(value, dict):
        raise FetchRefused("JWKS invalide / invalid JWKS")
    if len(_JWKS_CACHE) > 1000:
        _JWKS_CACHE.clear()
    _JWKS_CACHE[url] = _Cached(value, now)
    return value


def jwt_segment(segment: str) -> dict[str, Any]:
    """One base64url JSON segment of a JWS (a header or, unverified, a payload). ValueError if unreadable."""
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("segment illisible / unreadable segment") from exc
    if not isinstance(value, dict):
        raise ValueError("segment illisible / unreadable segment")
    return value
