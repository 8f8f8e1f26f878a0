"""The one guarded way this server fetches a URL (oauth/backend.py, issue 16 #6): one deadline for the
whole fetch, and the connection goes to the address that was checked, never to a second DNS answer, while TLS
still speaks to the name in the URL (SNI, certificate name, Host header)."""

from __future__ import annotations

import asyncio
import datetime
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from espace_sante import outbound
from espace_sante.outbound import FetchRefused


class Listener:
    """A plain-TCP server on 127.0.0.1 that counts the connections it gets and answers each with `serve`."""

    def __init__(self, serve: Callable[[asyncio.StreamWriter], Any]) -> None:
        self.serve = serve
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            await self.serve(writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])


async def _listening(serve: Callable[[asyncio.StreamWriter], Any]) -> AsyncIterator[Listener]:
    listener = Listener(serve)
    listener.server = await asyncio.start_server(listener._handle, "127.0.0.1", 0)
    try:
        yield listener
    finally:
        listener.server.close()


async def _json_answer(writer: asyncio.StreamWriter) -> None:
    body = b'{"keys": []}'
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(body), body)
    )
    await writer.drain()


async def _dribble(writer: asyncio.StreamWriter) -> None:
    """Headers at once, then a 30-byte body one byte a second: every read is quick, the whole is not."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n")
    await writer.drain()
    for _ in range(30):
        await asyncio.sleep(1)
        writer.write(b" ")
        await writer.drain()


@pytest.fixture
async def answering() -> AsyncIterator[Listener]:
    async for listener in _listening(_json_answer):
        yield listener


@pytest.fixture
async def dribbling() -> AsyncIterator[Listener]:
    async for listener in _listening(_dribble):
        yield listener


async def test_a_normal_fetch_still_works(answering: Listener) -> None:
    url = f"http://127.0.0.1:{answering.port}/jwks.json"
    assert await outbound.fetch_json(url, allow_loopback=True) == {"keys": []}


async def test_a_name_is_fetched_at_the_address_it_was_checked_at(
    answering: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The URL keeps its name (Host header, SNI); the connection goes to the address resolved for it.
    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("keys.example.test", b"keys.example.test"):  # anyio asks in IDNA bytes
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    url = f"http://keys.example.test:{answering.port}/jwks.json"
    assert await outbound.fetch_json(url, allow_loopback=True) == {"keys": []}


async def test_a_server_dribbling_bytes_is_cut_at_the_deadline(
    dribbling: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbound, "FETCH_TIMEOUT", 2.0)
    url = f"http://127.0.0.1:{dribbling.port}/jwks.json"
    started = time.monotonic()
    with pytest.raises(FetchRefused) as refused:
        await outbound.fetch_json(url, allow_loopback=True)
    assert time.monotonic() - started < 3.5
    assert "pas de réponse complète en 2 s / no complete answer within 2 s" in str(refused.value)


async def test_a_second_dns_answer_cannot_send_the_fetch_to_loopback(
    answering: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rebinding resolver: a public address when the URL is checked, loopback to whoever asks again.
    # 192.0.2.7 (documentation range) stands for the public address, so that nothing leaves the machine.
    real = socket.getaddrinfo
    answers: list[str] = []

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in ("keys.example.test", b"keys.example.test"):  # anyio asks in IDNA bytes
            address = "192.0.2.7" if not answers else "127.0.0.1"
            answers.append(address)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(outbound, "_public", lambda address: address == "192.0.2.7")
    monkeypatch.setattr(outbound, "FETCH_TIMEOUT", 1.5)
    with pytest.raises(FetchRefused):
        await outbound.fetch_json(
            f"https://keys.example.test:{answering.port}/jwks.json", allow_loopback=False
        )
    assert answering.connections == 0
    assert answers == ["192.0.2.7"]  # resolved once: the check's answer is the one connected to


# --- TLS to a pinned address -----------------------------------------------------------------------------------

NAME = "keys.example.test"


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    signer: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    """A CA certificate (`issuer` None) or a server certificate for the DNS name `subject`, valid for a day."""
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(
            issuer.subject if issuer else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        )
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=0), critical=True
        ).add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        )
    return builder.sign(signer, hashes.SHA256())


@dataclass
class TlsServer:
    """An HTTPS server on 127.0.0.1 whose certificate names only `NAME`, signed by a CA made for the test
    (`ca`, a PEM file the client trusts only when the test says so). It records what each client sent."""

    ca: Path
    port: int = 0
    sni: list[str | None] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[TlsServer]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("espace-sante test CA", ca_key, None, ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate(NAME, key, ca, ca_key)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    served = TlsServer(tmp_path / "ca.pem")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    context.sni_callback = lambda _sock, name, _ctx: served.sni.append(name)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            served.hosts += [
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("host:")
            ]
            await _json_answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    served.port = int(server.sockets[0].getsockname()[1])
    try:
        yield served
    finally:
        server.close()


@pytest.fixture
def name_is_loopback(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """`NAME` resolves to 127.0.0.1 (the resolutions asked are listed), every other name as before."""
    real = socket.getaddrinfo
    asked: list[Any] = []

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in (NAME, NAME.encode()):  # anyio asks in IDNA bytes
            asked.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return asked


def _trusting(monkeypatch: pytest.MonkeyPatch, ca: Path) -> None:
    """The fetch's TLS context (httpx.create_ssl_context, certifi's roots) also trusts the test's CA: the
    same verification, hostname check included, with one more root."""
    made = httpx.create_ssl_context

    def create(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        context = made(*args, **kwargs)
        context.load_verify_locations(cafile=ca)
        return context

    monkeypatch.setattr(httpx, "create_ssl_context", create)


async def test_tls_to_the_pinned_address_speaks_to_the_name_in_the_url(
    tls_server: TlsServer, name_is_loopback: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection goes to the checked address, but the server is told the name: SNI, Host (with the port,
    RFC 9110 7.2), and the certificate is verified against that name."""
    _trusting(monkeypatch, tls_server.ca)
    url = f"https://{NAME}:{tls_server.port}/jwks.json"
    assert await outbound.fetch_json(url, allow_loopback=True) == {"keys": []}
    assert tls_server.sni == [NAME]
    assert tls_server.hosts == [f"{NAME}:{tls_server.port}"]
    assert len(name_is_loopback) == 1  # one resolution, the check's


async def test_the_same_server_reached_by_its_address_is_refused(
    tls_server: TlsServer, name_is_loopback: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its certificate names `NAME`, not 127.0.0.1: the hostname check refuses it, and no request is sent."""
    _trusting(monkeypatch, tls_server.ca)
    with pytest.raises(FetchRefused) as refused:
        await outbound.fetch_json(f"https://127.0.0.1:{tls_server.port}/jwks.json", allow_loopback=True)
    assert "ConnectError" in str(refused.value)
    assert tls_server.hosts == []


async def test_a_certificate_nobody_trusts_is_refused(
    tls_server: TlsServer, name_is_loopback: list[Any]
) -> None:
    """Without the test's CA among the roots, the right name is not enough: the chain is verified."""
    with pytest.raises(FetchRefused) as refused:
        await outbound.fetch_json(f"https://{NAME}:{tls_server.port}/jwks.json", allow_loopback=True)
    assert "ConnectError" in str(refused.value)
    assert tls_server.sni == [NAME] and tls_server.hosts == []
