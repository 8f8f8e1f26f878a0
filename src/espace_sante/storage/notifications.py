"""The notifications' rows (migration 0030): written in the transaction of the event they tell of, with their
delivery job; read for the holder's dashboard under her decision; claimed and marked by their delivery."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from espace_sante.access.policy import Decision
from espace_sante.storage import jobs
from espace_sante.storage.db import Conn

#: The delivery job of one notification's e-mail (registered in jobs/queue.py, run by notifications/delivery.py).
DELIVER_TASK = "notifications.deliver"
QUEUE = "notifications"
# The kinds' codes, here so that the code recording an event can name them (notifications/kinds.py says
# what each tells and where it links).
FIRST_ACCESS = "first_access"  # recorded by the trace itself (audit/trace.py)
EMERGENCY = "emergency"
DOCUMENT = "document"
WAITING = "waiting"
RELEASED = "released"


def delivery_job(space_id: uuid.UUID, notification_id: uuid.UUID) -> jobs.JobToDefer:
    """The job that sends exactly this notification's e-mail."""
    args = {"space_id": str(space_id), "notification_id": str(notification_id)}
    return jobs.one_at_a_time(DELIVER_TASK, args, queue=QUEUE, key=f"notification:{notification_id}")


@dataclass(frozen=True)
class NewNotification:
    space_id: uuid.UUID
    kind: str
    audience: str = "all"
    actor_kind: str | None = None
    actor_id: str | None = None
    actor_display: str = ""
    about: str | None = None
    notification_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Notification:
    space_id: uuid.UUID
    notification_id: uuid.UUID
    kind: str
    audience: str
    actor_kind: str | None
    actor_id: str | None
    actor_display: str
    about: str | None
    created_at: datetime
    mail_state: str


@dataclass(frozen=True)
class ToMail:
    """What a delivery needs of a line: which kind, for whom, about what; nothing about who acted."""

    space_id: uuid.UUID
    notification_id: uuid.UUID
    kind: str
    audience: str
    about: str | None
    handed: bool
    attempts: int


async def tell(conn: Conn, new: NewNotification) -> uuid.UUID:
    """Record one notification and its delivery job in the caller's transaction (the event's): both commit
    with the event or neither does. Returns its id."""
    nid = await _add(conn, new)
    await jobs.defer(conn, [delivery_job(new.space_id, nid)])
    return nid


async def _add(conn: Conn, new: NewNotification) -> uuid.UUID:
    nid = new.notification_id or uuid.uuid4()
    await conn.execute(
        "INSERT INTO notification (space_id, notification_id, kind, audience, actor_kind, actor_id, "
        "actor_display, about) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        new.space_id,
        nid,
        new.kind,
        new.audience,
        new.actor_kind,
        new.actor_id,
        new.actor_display,
        new.about,
    )
    return nid


async def tell_first_access(
    conn: Conn,
    space_id: uuid.UUID,
    actor_kind: str,
    actor_id: str,
    actor_display: str,
    kind: str,
    about: str | None = None,
) -> bool:
    """Remember that this actor reached the space; the first time, record the notification `kind` in the same
    statement and defer its delivery job (every later access: one index probe, nothing written). Whether it
    was the first."""
    nid = uuid.uuid4()
    value = await conn.fetchval(
        "WITH first AS (INSERT INTO space_reader (space_id, actor_kind, actor_id) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING RETURNING space_id) "
        "INSERT INTO notification (space_id, notification_id, kind, actor_kind, actor_id, actor_display, about) "
        "SELECT space_id, $4, $5, $2, $3, $6, $7 FROM first RETURNING notification_id",
        space_id,
        actor_kind,
        actor_id,
        nid,
        kind,
        actor_display,
        about,
    )
    if not isinstance(value, uuid.UUID):
        return False
    await jobs.defer(conn, [delivery_job(space_id, value)])
    return True


async def recent(
    conn: Conn, decision: Decision, space_id: uuid.UUID, *, audiences: tuple[str, ...], limit: int
) -> list[Notification]:
    """The space's latest notifications for these audiences, newest first. They name who acted and what it is
    about: read under a decision to read the space's trace."""
    decision.require_read("AuditEvent", [space_id])
    rows = await conn.fetch(
        "SELECT space_id, notification_id, kind, audience, actor_kind, actor_id, actor_display, about, "
        "created_at, mail_state FROM notification WHERE space_id = $1 AND audience = ANY($2::text[]) "
        "ORDER BY created_at DESC, notification_id LIMIT $3",
        space_id,
        list(audiences),
        limit,
    )
    return [Notification(**dict(r)) for r in rows]


async def choices(conn: Conn, space_id: uuid.UUID, people: list[str]) -> dict[str, dict[str, bool]]:
    """These people's choices of being told by e-mail of this space's notifications, by person then kind
    (kinds without a row take their default)."""
    rows = await conn.fetch(
        "SELECT person, kind, by_email FROM notification_choice WHERE space_id = $1 AND person = ANY($2::text[])",
        space_id,
        people,
    )
    out: dict[str, dict[str, bool]] = {p: {} for p in people}
    for r in rows:
        out[r["person"]][r["kind"]] = bool(r["by_email"])
    return out


async def save_choices(conn: Conn, space_id: uuid.UUID, person: str, by_email: Mapping[str, bool]) -> None:
    await conn.execute(
        "INSERT INTO notification_choice (space_id, person, kind, by_email) SELECT $1, $2, k, e "
        "FROM unnest($3::text[], $4::boolean[]) AS c(k, e) "
        "ON CONFLICT (space_id, person, kind) DO UPDATE SET by_email = EXCLUDED.by_email, changed_at = $5 "
        "WHERE notification_choice.by_email IS DISTINCT FROM EXCLUDED.by_email",
        space_id,
        person,
        list(by_email),
        list(by_email.values()),
        datetime.now(UTC),
    )


async def claim_mail(conn: Conn, space_id: uuid.UUID, notification_id: uuid.UUID) -> ToMail | None:
    """Count an attempt at this notification's e-mail and lock its row for the caller's transaction; None when
    it was sent, found uncertain, or had nothing to send."""
    r = await conn.fetchrow(
        "UPDATE notification SET mail_attempts = mail_attempts + 1 WHERE space_id = $1 AND notification_id = $2 "
        "AND mail_state IN ('waiting', 'handed') "
        "RETURNING space_id, notification_id, kind, audience, about, mail_state = 'handed' AS handed, "
        "mail_attempts AS attempts",
        space_id,
        notification_id,
    )
    return None if r is None else ToMail(**dict(r))


async def set_mail_state(
    conn: Conn, space_id: uuid.UUID, notification_id: uuid.UUID, state: str, error: str = ""
) -> None:
    """Move the e-mail to `state` (waiting after a failure, handed, sent, uncertain, none, failed)."""
    # The instant is a parameter: Citus refuses now() inside a CASE of a distributed UPDATE.
    sent_at = datetime.now(UTC) if state == "sent" else None
    await conn.execute(
        "UPDATE notification SET mail_state = $3, mail_error = $4, mailed_at = coalesce($5, mailed_at) "
        "WHERE space_id = $1 AND notification_id = $2",
        space_id,
        notification_id,
        state,
        error,
        sent_at,
    )


async def left_waiting(
    conn: Conn, *, older_than_seconds: float, limit: int, max_attempts: int
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Lines whose e-mail is still to send well after they were written (their job was lost), the least tried
    first: a line the relay keeps refusing does not hold back the others, and gives up at `max_attempts`."""
    rows = await conn.fetch(
        "SELECT space_id, notification_id FROM notification WHERE mail_state IN ('waiting', 'handed') "
        "AND created_at < now() - make_interval(secs => $1) AND mail_attempts < $3 "
        "ORDER BY mail_attempts, created_at LIMIT $2",
        older_than_seconds,
        limit,
        max_attempts,
    )
    return [(r["space_id"], r["notification_id"]) for r in rows]
