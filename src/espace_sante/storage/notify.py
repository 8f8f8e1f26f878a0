"""PostgreSQL LISTEN/NOTIFY: how one process tells every other that a cached fact changed (a token revoked, a
client disabled). NOTIFY is transactional, so listeners hear of a change exactly when it commits.

A listener that loses its connection may have missed notifications: it tells the caller (`on_lost`: stop
trusting the cache) and, once reconnected, tells it again (`on_ready`: start afresh)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg

from espace_sante.logs import get_logger
from espace_sante.storage.db import Conn

log = get_logger(__name__)

TOKENS = "espace_sante_tokens"


async def publish(conn: Conn, channel: str, payload: str) -> None:
    """Announce a change to every process, when the caller's transaction commits."""
    await conn.execute("SELECT pg_notify($1, $2)", channel, payload)


class Listener:
    def __init__(
        self,
        dsn: str,
        channel: str,
        on_message: Callable[[str], None],
        on_lost: Callable[[], None],
        on_ready: Callable[[], None],
    ):
        self.dsn = dsn
        self.channel = channel
        self.on_message = on_message
        self.on_lost = on_lost
        self.on_ready = on_ready
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        #: How many times the connection was lost (monitoring, tests).
        self.losses = 0

    @property
    def healthy(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def start(self) -> None:
        await self._connect()
        self._task = asyncio.create_task(self._watch())

    async def close(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()
        self._conn = None

    def _heard(self, connection: Any, pid: int, channel: str, payload: object) -> None:
        self.on_message(str(payload))

    def _lost(self, connection: Any) -> None:
        if self._conn is None:
            return  # already handled (termination callback and watchdog both saw it)
        self._conn = None
        self.losses += 1
        self.on_lost()

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self.dsn, server_settings={"application_name": "espace-sante-listener"})
        await conn.add_listener(self.channel, self._heard)
        conn.add_termination_listener(self._lost)
        self._conn = conn
        self.on_ready()  # anything cached before this point may have missed a notification

    async def _watch(self) -> None:
        while not self._closing:
            await asyncio.sleep(1.0)
            if self._conn is not None and self._conn.is_closed():
                self._lost(self._conn)
            if self._conn is None and not self._closing:
                try:
                    await self._connect()
                except (OSError, asyncpg.PostgresError) as exc:
                    log.warning("listener.reconnect_failed", channel=self.channel, error=type(exc).__name__)
