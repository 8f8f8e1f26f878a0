"""Failure counters for guessable secrets (SQL for `signin_throttle`), shared by every app process (sign-in,
and the activation codes' per-address limit).

An attempt is counted *before* the secret is checked, with every counter it touches locked (`load`, then
`save`) in one transaction, so that concurrent guesses cannot all slip under a limit; a success clears or gives
its count back. Windows and waits use the database's clock, the same for every process. The rules (what a
count means, how long to wait) are in people/ratelimit.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from espace_sante.storage.db import Conn


@dataclass(frozen=True)
class Counter:
    failures: int
    window_start: datetime
    #: End of the current wait (back-off), or None.
    locked_until: datetime | None


async def load(conn: Conn, keys: Sequence[str]) -> tuple[datetime, dict[str, Counter]]:
    """The database's time and every key's counter (a new one at zero when missing), each row locked until
    the transaction ends. Rows are locked in key order, so two attempts never wait for each other in a cycle."""
    ordered = sorted(set(keys))
    await conn.execute(
        "INSERT INTO signin_throttle (key, failures, window_start) SELECT k, 0, now() FROM unnest($1::text[]) k "
        "ORDER BY k ON CONFLICT (key) DO NOTHING",
        ordered,
    )
    rows = await conn.fetch(
        "SELECT key, failures, window_start, locked_until FROM signin_throttle WHERE key = ANY($1::text[]) "
        "ORDER BY key FOR UPDATE",
        ordered,
    )
    # Counters nobody touched for a day say nothing any more (every window is shorter): a few go with each
    # attempt, skipping rows another attempt holds, never this attempt's own.
    await conn.execute(
        "DELETE FROM signin_throttle WHERE ctid = ANY(ARRAY(SELECT ctid FROM signin_throttle "
        "WHERE window_start < now() - interval '1 day' AND coalesce(locked_until, window_start) < now() "
        "- interval '1 day' AND key <> ALL($1::text[]) LIMIT 20 FOR UPDATE SKIP LOCKED))",
        ordered,
    )
    now: datetime = await conn.fetchval("SELECT now()")
    return now, {r["key"]: Counter(int(r["failures"]), r["window_start"], r["locked_until"]) for r in rows}


async def save(conn: Conn, key: str, counter: Counter) -> None:
    await conn.execute(
        "UPDATE signin_throttle SET failures = $2, window_start = $3, locked_until = $4 WHERE key = $1",
        key,
        counter.failures,
        counter.window_start,
        counter.locked_until,
    )


# --- fixed windows and hard locks (activation codes' per-address limit, spaces/activation.py) ---------


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


async def give_back(conn: Conn, key: str) -> None:
    """Return one attempt (it succeeded), leaving the other failures counted (an address's count)."""
    await conn.execute(
        "UPDATE signin_throttle SET failures = greatest(failures - 1, 0) WHERE key = $1 "
        "AND (locked_until IS NULL OR locked_until <= now())",
        key,
    )


# --- sign-in's back-off (people/ratelimit.py) --------------------------------------------------------------


async def clear(conn: Conn, key: str) -> None:
    """Forget a key's failures and wait (a sign-in from this login and source succeeded)."""
    await conn.execute("DELETE FROM signin_throttle WHERE key = $1", key)


async def give_back_one(conn: Conn, key: str, free: int) -> None:
    """Return one attempt (it succeeded, or was not a guess), leaving the other failures counted; a wait this
    attempt started is lifted when the count is back under the free allowance."""
    await conn.execute(
        "UPDATE signin_throttle SET failures = greatest(failures - 1, 0), "
        "locked_until = CASE WHEN failures - 1 < $2 THEN NULL ELSE locked_until END WHERE key = $1",
        key,
        free,
    )


# --- quotas of the API (record/resources.py: spaces a client opens) ---------------------------------------


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
