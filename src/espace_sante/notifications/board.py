"""What the holder's pages show of her notifications: the latest lines of a space she holds or represents,
under the policy's decision to read that space's trace (they say who reached her record and when, as the
trace does). A representative is not shown what is about something hidden from representatives."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from espace_sante.context import Context
from espace_sante.notifications import kinds
from espace_sante.record import resources as fhir
from espace_sante.storage import notifications as store
from espace_sante.storage.db import Conn


@dataclass(frozen=True)
class Line:
    kind: str
    page: str
    #: Who acted, as the directory names them ("" when the kind names nobody: a waiting document), and what
    #: they are (practitioner, client: a software).
    who: str
    who_kind: str
    at: datetime
    #: Whether it came after the start of her previous visit (everything is new on a first visit).
    new: bool
    #: Whether an e-mail told her (sent), is on its way (waiting), or none went ("none": her choice, or no address).
    mail_state: str


async def latest(
    ctx: Context, space_id: uuid.UUID, *, since: datetime | None, limit: int = 5
) -> list[Line] | None:
    """The latest `limit` notifications of the space, newest first; None when the person is neither its holder
    nor its current representative (her page then says it is not found)."""
    decision = await fhir.authorize(ctx, "search", "AuditEvent")

    async def run(conn: Conn) -> list[Line] | None:
        if await fhir.own_patient(conn, ctx, space_id) is None:
            return None
        scoped = await fhir.scoped(conn, ctx, decision, [space_id])
        if not scoped.covers(space_id):
            return None
        audiences = ("all", "holder") if ctx.actor.kind == "holder" else ("all",)
        found = await store.recent(conn, scoped, space_id, audiences=audiences, limit=limit)
        return [
            Line(
                n.kind,
                kinds.BY_CODE[n.kind].page if n.kind in kinds.BY_CODE else kinds.HOME_PAGE,
                n.actor_display,
                n.actor_kind or "",
                n.created_at,
                since is None or n.created_at > since,
                n.mail_state,
            )
            for n in found
        ]

    return await ctx.runtime.db.interaction("notifications_latest", run)
