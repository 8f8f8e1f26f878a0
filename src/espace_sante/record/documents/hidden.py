"""Documents hidden from the holder until their announcement consultation (INVISIBLE_PATIENT, R1111-53): the
holder is told after two weeks, the flag is lifted after a month, unless the author or the médecin traitant
released the document first."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from espace_sante.access.actors import NOTICES
from espace_sante.access.policy import HIDDEN_FROM_HOLDER, decide
from espace_sante.context import Context
from espace_sante.fhir import pdsm
from espace_sante.record import resources as fhir
from espace_sante.record.documents.metadata import describe, set_labels, write_metadata
from espace_sante.storage import documents as docs_store
from espace_sante.storage import resources as store
from espace_sante.storage.db import Conn


@dataclass(frozen=True)
class ReleaseRun:
    noticed: int
    released: int


async def run_hidden_documents(ctx: Context, now: datetime | None = None) -> ReleaseRun:
    """Tell holders about documents waiting two weeks for their announcement consultation, and release those
    waiting a month. Runs as the system actor; every release is traced in the space's chain."""
    from espace_sante import mail

    now = now or datetime.now(UTC)
    told: list[tuple[uuid.UUID, str]] = []

    async def notices(conn: Conn) -> list[tuple[uuid.UUID, str]]:
        due = await docs_store.due_notices(conn, now)
        await docs_store.mark_noticed(conn, due, now)
        return due

    told = await ctx.runtime.db.interaction("documents_hidden_notices", notices)
    for space_id, _ in told:
        await _tell_holder(ctx, space_id, mail)
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


async def _tell_holder(ctx: Context, space_id: uuid.UUID, mail: Any) -> None:
    """No medical content in the message: only that a document waits for a consultation with a professional."""
    from espace_sante.people import accounts
    from espace_sante.storage import people

    async def ins_of(conn: Conn) -> str | None:
        # Telling the holder is the notices' part (access/named.py): her INS under its decision.
        return await people.ins_of_space(conn, decide(NOTICES, "read", "Patient"), space_id)

    ins = await ctx.runtime.db.interaction("documents_holder_ins", ins_of)
    if not ins:
        return
    account = await accounts.find_by_actor(ctx.runtime, "holder", ins)
    address = account.notice_address if account is not None and not account.disabled else None
    if not address:
        return
    page = ctx.runtime.settings.base_url.rstrip("/")
    text = (
        "Bonjour,\n\nUn document de votre dossier attend une consultation avec un professionnel de santé avant "
        "d'être visible. Prenez rendez-vous avec votre médecin ou avec le professionnel qui vous suit. Sans "
        f"cette consultation, le document deviendra visible dans votre espace dans deux semaines : {page}\n\n"
        "Mon espace santé\n\n---\n\nHello,\n\nA document in your record is waiting for a consultation with a "
        "health professional before it is shown to you. Please make an appointment with your doctor. Without "
        f"that consultation, it will become visible in your space in two weeks: {page}\n"
    )
    message = mail.Message(
        address, "Mon espace santé : un document vous attend / a document awaits you", text
    )
    try:
        await mail.mailer(ctx.runtime).send(message)
    except OSError:
        await mail.OutboxMailer(ctx.runtime).send(message)
