"""The one guarded way this server fetches a URL (oauth/backend.py, issue 16 #6): one deadline for the
whole fetch, and the connection goes to the address that was checked, never to a second DNS answer."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

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
