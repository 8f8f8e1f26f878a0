"""Documents hidden from the holder until their announcement consultation (INVISIBLE_PATIENT, R1111-53): the
holder is told after two weeks, the flag is lifted after a month, unless the author or the médecin traitant
released the document first."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from espace_sante.access.policy import HIDDEN_FROM_HOLDER, decide
from espace_sante.context import Context
from espace_sante.fhir import pdsm
from espace_sante.record import resources as fhir
from espace_sante.record.documents.metadata import describe, set_labels, write_metadata
from espace_sante.storage import documents as docs_store
from espace_sante.storage import notifications as notifications_store
from espace_sante.storage import resources as store
from espace_sante.storage.db import Conn


@dataclass(frozen=True)
class ReleaseRun:
    noticed: int
    released: int


async def run_hidden_documents(ctx: Context, now: datetime | None = None) -> ReleaseRun:
    """Tell holders about documents waiting two weeks for their announcement consultation, and release those
    waiting a month. Runs as the system actor; every release is traced in the space's chain."""
    now = now or datetime.now(UTC)

    async def notices(conn: Conn) -> list[tuple[uuid.UUID, str]]:
        due = await docs_store.due_notices(conn, now)
        await docs_store.mark_noticed(conn, due, now)
        for space_id, rid in due:
            # The holder only, as the document is hidden from her until then: a minor's representatives are
            # not told of a document that may be hidden from them too (notifications/, in this transaction).
            await notifications_store.tell(
                conn,
                notifications_store.NewNotification(
                    space_id, notifications_store.WAITING, "holder", about=rid
                ),
            )
        return due

    told = await ctx.runtime.db.interaction("documents_hidden_notices", notices)
    released = 0
    while True:

        async def releases(conn: Conn) -> int:
            due = await docs_store.due_releases(conn, now, limit=100)
            for space_id, rid in due:
                await _release(conn, ctx, space_id, rid)
            return len(due)

        n = await ctx.runtime.db.interaction("documents_hidden_release", releases)
        released += n
        if n < 100:
            break
    return ReleaseRun(len(told), released)


async def _release(conn: Conn, ctx: Context, space_id: uuid.UUID, rid: str) -> None:
    decision = decide(ctx.actor, "patch", "DocumentReference")
    target_space, previous, scope = await fhir.lock_current(conn, ctx, decision, rid)
    if target_space is None or previous is None or previous.deleted:
        await docs_store.unhide(conn, space_id, rid)
        return
    read_decision = decide(ctx.actor, "read", "DocumentReference")
    current = await store.read(
        conn, ctx.runtime.keys, read_decision, space_id, "DocumentReference", rid, None
    )
    if current is None or current.body is None:
        await docs_store.unhide(conn, space_id, rid)
        return
    before = orjson.loads(current.body)
    conf, flags = pdsm.security_flags(before)
    if HIDDEN_FROM_HOLDER not in flags:
        await docs_store.unhide(conn, space_id, rid)
        return
    after = dict(before)
    set_labels(after, pdsm.with_flags(before, conf, flags - {HIDDEN_FROM_HOLDER}))
    await write_metadata(conn, ctx, scope, space_id, rid, previous, after, describe(before, after))
