"""Failure counters for guessable secrets (SQL for `signin_throttle`), shared by every app process.

An attempt is counted *before* the secret is checked (`attempt`), so that concurrent guesses cannot all slip
under the limit; a success gives its count back (`succeeded`). Windows and lockouts use the database's clock,
the same for every process."""

from __future__ import annotations

from datetime import datetime

from .db import Conn


async def attempt(conn: Conn, key: str, window_seconds: int) -> tuple[int, datetime | None]:
    """Count one attempt on `key`: (attempts in the current window including this one, lock end if the key
    is locked now). An expired window or lock starts a new count."""
    row = await conn.fetchrow(
        """INSERT INTO signin_throttle AS t (key, failures, window_start) VALUES ($1, 1, now())
           ON CONFLICT (key) DO UPDATE SET
             failures = CASE WHEN t.locked_until > now() THEN t.failures
                             WHEN t.locked_until IS NOT NULL
                               OR t.window_start <= now() - make_interval(secs => $2) THEN 1
                             ELSE t.failures + 1 END,
             window_start = CASE WHEN t.locked_until > now() THEN t.window_start
                                 WHEN t.locked_until IS NOT NULL
                                   OR t.window_start <= now() - make_interval(secs => $2) THEN now()
                                 ELSE t.window_start END,
             locked_until = CASE WHEN t.locked_until > now() THEN t.locked_until END
           RETURNING failures, locked_until""",
        key,
        window_seconds,
    )
    assert row is not None
    return int(row["failures"]), row["locked_until"]


async def lock(conn: Conn, key: str, lockout_seconds: int) -> bool:
    """Lock `key` for the lockout period; false if it was already locked."""
    status: str = await conn.execute(
        "UPDATE signin_throttle SET locked_until = now() + make_interval(secs => $2) "
        "WHERE key = $1 AND (locked_until IS NULL OR locked_until <= now())",
        key,
        lockout_seconds,
    )
    return status.endswith(" 1")


async def clear(conn: Conn, key: str) -> None:
    """Forget a key's failures (a full sign-in succeeded for this account)."""
    await conn.execute(
        "DELETE FROM signin_throttle WHERE key = $1 AND (locked_until IS NULL OR locked_until <= now())", key
    )


async def give_back(conn: Conn, key: str) -> None:
    """Return one attempt (it succeeded), leaving the other failures counted (an address's count)."""
    await conn.execute(
        "UPDATE signin_throttle SET failures = greatest(failures - 1, 0) WHERE key = $1 "
        "AND (locked_until IS NULL OR locked_until <= now())",
        key,
    )


async def locked_until(conn: Conn, key: str) -> datetime | None:
    value: datetime | None = await conn.fetchval(
        "SELECT locked_until FROM signin_throttle WHERE key = $1 AND locked_until > now()", key
    )
    return value


async def count_event(conn: Conn, key: str, window_seconds: int) -> tuple[int, int]:
    """Count one event under `key` in a fixed window, in the caller's transaction: (events in the window, this
    one included; whole seconds until the window ends). The row stays locked until the transaction ends, so
    concurrent events on one key, in any process, are counted one after the other, and an event whose
    transaction rolls back was never counted."""
    row = await conn.fetchrow(
        """INSERT INTO signin_throttle AS t (key, failures, window_start) VALUES ($1, 1, now())
           ON CONFLICT (key) DO UPDATE SET
             failures = CASE WHEN t.window_start <= now() - make_interval(secs => $2) THEN 1
                             ELSE t.failures + 1 END,
             window_start = CASE WHEN t.window_start <= now() - make_interval(secs => $2) THEN now()
                                 ELSE t.window_start END
           RETURNING failures,
                     ceil(extract(epoch FROM t.window_start + make_interval(secs => $2) - now()))::int AS left""",
        key,
        window_seconds,
    )
    assert row is not None
    return int(row["failures"]), int(row["left"])
