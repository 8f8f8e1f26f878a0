"""The connection pool and named transactions.

Every unit of work runs as `await db.interaction("name", func, *args)`: one transaction, retried on
serialization failures and deadlocks, timed and counted under its name (STYLE habit 7, after Synapse's
runInteraction). `func` receives the connection and must not keep it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import asyncpg
from prometheus_client import Histogram

from espace_sante.logs import get_logger

Conn = asyncpg.Connection
P = ParamSpec("P")
T = TypeVar("T")

log = get_logger(__name__)

TX_SECONDS = Histogram("espace_sante_db_transaction_seconds", "Duration of named transactions", ["name"])

_RETRYABLE = (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)
#: The database is down, overloaded or too slow (statement_timeout): the API answers 503, never 500.
_UNAVAILABLE = (
    OSError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.QueryCanceledError,
    asyncpg.ConnectionDoesNotExistError,
)


async def _reset(conn: asyncpg.Connection) -> None:
    """Run when a connection goes back to the pool. asyncpg's default resets all session state (a round trip
    per request); we never change session state (settings are fixed at connect, locks are transaction-scoped),
    so only an abandoned transaction needs undoing."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class Connection(asyncpg.Connection):
    """A connection that knows whether its server is a Citus coordinator (learnt once, when it opens), for the
    statements Citus runs differently (docs/architecture.md "On Citus")."""

    distributed: bool = False


async def _learn(conn: asyncpg.Connection) -> None:
    conn.distributed = bool(  # type: ignore[attr-defined]
        await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
    )
    if conn.distributed:  # type: ignore[attr-defined]
        # One connection per worker within a transaction: a transaction that wrote to a worker over one
        # connection and then reads several of its shards would otherwise be refused ("cannot perform query
        # with placements that were modified over multiple connections": a Bundle writing Patients, whose
        # identifiers live on other shards, then resolving a conditional reference). Our statements name one
        # shard; the few that fan out are batch jobs, which lose only parallelism within a worker.
        await conn.execute("SET citus.max_adaptive_executor_pool_size = 1")


def distributed(conn: Conn) -> bool:
    """True when `conn`'s server is a Citus coordinator. A pool's connections know (Database); another
    connection is taken for plain PostgreSQL."""
    return bool(getattr(conn, "distributed", False))


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or timed out: the API answers 503."""


class Database:
    def __init__(
        self, dsn: str, *, min_size: int = 2, max_size: int = 10, statement_timeout_ms: int = 15_000
    ):
        self.dsn = dsn
        self._min = min_size
        self._max = max_size
        self._timeout = statement_timeout_ms
        self._pool: asyncpg.Pool | None = None
        self._side: asyncpg.Pool | None = None

    def _settings(self) -> dict[str, str]:
        return {
            "application_name": "espace-sante",
            "statement_timeout": str(self._timeout),
            "idle_in_transaction_session_timeout": "60000",
            "timezone": "UTC",
        }

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=self._min,
            max_size=self._max,
            reset=_reset,
            init=_learn,
            connection_class=Connection,
            server_settings=self._settings(),
        )

    async def close(self) -> None:
        for pool in (self._side, self._pool):
            if pool is not None:
                await pool.close()
        self._pool = self._side = None

    async def autonomous(
        self,
        name: str,
        func: Callable[Concatenate[Conn, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run `func` in its own transaction, committed whatever becomes of the caller's: for records that must
        outlive a rollback (a blob's upload intent). It uses a separate small pool, so a caller that holds a
        connection of the main pool never waits on that pool for it (no pool-exhaustion deadlock)."""
        if self._side is None:
            self._side = await asyncpg.create_pool(
                self.dsn,
                min_size=0,
                max_size=2,
                reset=_reset,
                init=_learn,
                connection_class=Connection,
                server_settings=self._settings(),
            )
        start = time.perf_counter()
        try:
            async with self._side.acquire() as conn, conn.transaction():
                return await func(cast(Conn, conn), *args, **kwargs)
        except _UNAVAILABLE as exc:
            raise DatabaseUnavailable(f"{name}: {type(exc).__name__}") from exc
        finally:
            TX_SECONDS.labels(name).observe(time.perf_counter() - start)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database not opened")
        return self._pool

    async def interaction(
        self,
        name: str,
        func: Callable[Concatenate[Conn, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run `func(conn, ...)` in one transaction named `name`, retrying transient conflicts."""
        attempt = 0
        while True:
            attempt += 1
            start = time.perf_counter()
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    # The pool hands out proxies that behave as connections.
                    result = await func(cast(Conn, conn), *args, **kwargs)
                return result
            except _RETRYABLE:
                if attempt >= 5:
                    raise
                log.info("db.retry", transaction=name, attempt=attempt)
                await asyncio.sleep(0.01 * attempt)
            except _UNAVAILABLE as exc:
                raise DatabaseUnavailable(f"{name}: {type(exc).__name__}") from exc
            finally:
                TX_SECONDS.labels(name).observe(time.perf_counter() - start)

    async def read(
        self,
        name: str,
        func: Callable[Concatenate[Conn, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run a read-only `func(conn, ...)` outside an explicit transaction: no BEGIN and COMMIT round trips.
        Under READ COMMITTED a transaction gives reads no common snapshot anyway (each statement sees the data
        committed when it starts), so reads lose nothing. A read's trace is one atomic statement run last (if it
        fails, no data leaves). Writes always go through `interaction`."""
        start = time.perf_counter()
        try:
            async with self.pool.acquire() as conn:
                return await func(cast(Conn, conn), *args, **kwargs)
        except _UNAVAILABLE as exc:
            raise DatabaseUnavailable(f"{name}: {type(exc).__name__}") from exc
        finally:
            TX_SECONDS.labels(name).observe(time.perf_counter() - start)

    async def fetchval(self, name: str, sql: str, *args: Any) -> Any:
        """A single read outside any transaction (operations, tests)."""
        start = time.perf_counter()
        try:
            return await self.pool.fetchval(sql, *args)
        finally:
            TX_SECONDS.labels(name).observe(time.perf_counter() - start)

    async def ping(self) -> None:
        """A round trip to the database (readiness probe)."""
        start = time.perf_counter()
        try:
            await self.pool.fetchval("SELECT 1")
        finally:
            TX_SECONDS.labels("ping").observe(time.perf_counter() - start)
