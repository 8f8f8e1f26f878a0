"""Background jobs deferred from our own transactions (procrastinate's tables, migration 0012_jobs.sql).

procrastinate defers through its psycopg connection; our data is written through asyncpg. To insert a job in
the SAME transaction as the data it is about (a notice and its delivery job: both or neither), we call the
schema's own defer function, `procrastinate_defer_jobs_v1`, on our connection: exactly what procrastinate's
`defer_async` runs (its `defer_jobs` query), so a worker cannot tell the difference. A `queueing_lock` makes a
second job for the same thing while one waits a unique-violation: callers defer once, with the row they
create."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from espace_sante.storage.db import Conn


@dataclass(frozen=True)
class JobToDefer:
    #: The task's registered name (jobs/queue.py).
    task_name: str
    args: dict[str, Any] = field(default_factory=dict)
    queue: str = "default"
    #: Jobs sharing a lock never run at the same time.
    lock: str | None = None
    #: At most one waiting (`todo`) job per queueing lock.
    queueing_lock: str | None = None
    priority: int = 0
    scheduled_at: datetime | None = None


def one_at_a_time(task_name: str, args: dict[str, Any], *, queue: str, key: str) -> JobToDefer:
    """The job of exactly one thing (a notice's delivery, a notification's): its locks named `key` keep it to
    one waiting and one running job."""
    return JobToDefer(task_name, args, queue=queue, lock=key, queueing_lock=key)


async def defer(conn: Conn, jobs: Sequence[JobToDefer]) -> list[int]:
    """Insert `jobs` in the caller's transaction (one statement whatever their number); returns their ids.
    A worker sees them once the transaction commits, and never if it rolls back."""
    if not jobs:
        return []
    rows = await conn.fetch(
        "SELECT unnest(procrastinate_defer_jobs_v1(ARRAY(SELECT ROW(j.q, j.t, j.p, j.l, j.ql, j.a::jsonb, j.s)"
        "::procrastinate_job_to_defer_v1 FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], "
        "$5::text[], $6::text[], $7::timestamptz[]) WITH ORDINALITY AS j(q, t, p, l, ql, a, s, n) "
        "ORDER BY j.n))) AS id",
        [j.queue for j in jobs],
        [j.task_name for j in jobs],
        [j.priority for j in jobs],
        [j.lock for j in jobs],
        [j.queueing_lock for j in jobs],
        [orjson.dumps(j.args).decode() for j in jobs],
        [j.scheduled_at for j in jobs],
    )
    return [int(r["id"]) for r in rows]
