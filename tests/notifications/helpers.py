"""Reading what the notifications left: their lines, their jobs, the e-mails in the local outbox."""

from __future__ import annotations

import uuid
from typing import Any

from espace_sante.notifications import delivery
from espace_sante.runtime import Runtime
from espace_sante.storage.db import Conn


async def deliver_all(runtime: Runtime) -> dict[str, int]:
    """What the worker's jobs would do: send every e-mail still to send (the sweep, without its delay)."""
    return await delivery.sweep(runtime, min_age_seconds=0)


async def lines(runtime: Runtime, space_id: uuid.UUID) -> list[dict[str, Any]]:
    async def run(conn: Conn) -> list[dict[str, Any]]:
        rows = await conn.fetch(
            "SELECT notification_id, kind, audience, actor_kind, actor_id, mail_state FROM notification "
            "WHERE space_id = $1 ORDER BY created_at",
            space_id,
        )
        return [dict(r) for r in rows]

    return await runtime.db.read("t_notifications", run)


async def mails_to(runtime: Runtime, address: str) -> list[dict[str, Any]]:
    """The outbox's messages one of whose recipients is `address` (a message may go to several)."""

    async def run(conn: Conn) -> list[dict[str, Any]]:
        rows = await conn.fetch(
            "SELECT message_id, recipient, subject, body FROM outbox "
            "WHERE $1 = ANY(string_to_array(recipient, ', ')) ORDER BY created_at",
            address,
        )
        return [dict(r) for r in rows]

    return await runtime.db.read("t_outbox", run)


async def job_of(runtime: Runtime, notification_id: uuid.UUID) -> str | None:
    """The status of the delivery job deferred with this notification, None when there is none (any more)."""

    async def run(conn: Conn) -> str | None:
        status = await conn.fetchval(
            "SELECT status::text FROM procrastinate_jobs WHERE args->>'notification_id' = $1",
            str(notification_id),
        )
        return None if status is None else str(status)

    return await runtime.db.read("t_job", run)


async def run_queue(runtime: Runtime, name: str) -> None:
    """Run the worker once over one queue, as `espace-sante worker` would: every job waiting there."""
    from espace_sante.jobs import queue

    with queue.on_runtime(runtime) as app:
        async with app.open_async():
            await app.run_worker_async(
                queues=[name], **queue.worker_options(runtime, concurrency=1, once=True)
            )
