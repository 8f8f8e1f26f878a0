"""Writing the trace from the services: one call per access, inside the action's transaction.

What is traced: every read, search, history and write of a space's data (in that space's chain), writes to
the directory (in the directory's chain), and every refusal by the policy (in the directory's chain, since a
refused request may name no space; a professional's refusal on an existing record, in its chain as well). Reads of directory data (a practitioner's name) are not medical data and
are not traced. A search that returned nothing touched no space and leaves no record; one that returned
data from several spaces leaves one record in each."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import fields
from datetime import datetime
from typing import Any

from espace_sante.access.policy import PERSON_STATES, Decision
from espace_sante.access.reasons import Reason
from espace_sante.context import Context
from espace_sante.runtime import Runtime
from espace_sante.storage import audit as audit_store
from espace_sante.storage import jobs as jobs_store
from espace_sante.storage import lifecycle as lifecycle_store
from espace_sante.storage import locks
from espace_sante.storage import notifications as notifications_store
from espace_sante.storage.audit import SUCCESS, Record
from espace_sante.storage.db import Conn
from espace_sante.storage.keys import DIRECTORY_SPACE

#: Whose first access to a space the holder is told of: a professional. Not a machine client: those are the
#: insurer's and the national feeds as much as a hospital's software, and a feed touching millions of records
#: is nobody's visit (a hospital's documents are told as documents); nor her own apps or representatives.
FIRST_ACCESS_TOLD = frozenset({"practitioner"})
#: What a first access names when it reached a document: a representative is not told of an access to what
#: is hidden from representatives (notifications/, R1111-50).
DOCUMENT_TYPES = frozenset({"DocumentReference", "Binary"})


async def access(
    conn: Conn,
    ctx: Context,
    decision: Decision,
    action: str,
    space_id: uuid.UUID,
    *,
    entity_type: str | None = None,
    entity_id: str | None = None,
    version: int | None = None,
    detail: str = "",
    outcome: str = SUCCESS,
) -> None:
    """Record one access to `space_id` in the caller's transaction."""
    if space_id == DIRECTORY_SPACE and action in (
        "resource:read",
        "resource:vread",
        "resource:search",
        "resource:history",
    ):
        return
    if ctx.actor.kind in FIRST_ACCESS_TOLD and outcome == SUCCESS and space_id != DIRECTORY_SPACE:
        # A professional's (or her software's) first access to the record is told to the holder
        # (notifications/), in this transaction: the access and its notification commit together.
        about = f"{entity_type}/{entity_id}" if entity_type in DOCUMENT_TYPES and entity_id else None
        await notifications_store.tell_first_access(
            conn,
            space_id,
            ctx.actor.kind,
            ctx.actor.id,
            ctx.actor.display,
            notifications_store.FIRST_ACCESS,
            about,
        )
    await audit_store.append(
        conn,
        space_id,
        Record(
            action=action,
            outcome=outcome,
            actor_kind=ctx.actor.kind,
            actor_id=ctx.actor.id,
            actor_display=ctx.actor.display,
            basis=decision.reason_in(space_id).recorded,
            entity_type=entity_type,
            entity_id=entity_id,
            entity_version=version,
            detail=detail,
            request_id=ctx.request_id,
        ),
    )


async def accesses(
    conn: Conn,
    ctx: Context,
    decision: Decision,
    action: str,
    spaces: Iterable[uuid.UUID],
    *,
    entity_type: str,
    detail: str = "",
) -> None:
    """One record per space touched (a search or a type history spanning several spaces)."""
    for space_id in sorted(set(spaces)):
        await access(conn, ctx, decision, action, space_id, entity_type=entity_type, detail=detail)


#: Whose refusals are copied into the refused record's own chain, for its holder to see (L1111-19: she sees every
#: access, attempts included): a professional's or a software's. A person refused on someone else's record (a
#: holder, an operator) is not worded to that record's holder as a visitor.
REFUSALS_TOLD = frozenset({"practitioner", "client"})
#: The job that copies a refusal into the refused record's chain (registered in jobs/queue.py).
COPY_REFUSAL_TASK = "trace.copy_refusal"
#: The states of a space whose holder reads her trace: a refusal is copied only there (not into a space
#: opposed, closed or destroyed, nor one nobody has).
COPIED_STATES = PERSON_STATES
QUEUE = "trace"


async def refusal(
    ctx: Context,
    decision: Decision,
    *,
    reason: Reason | None = None,
    space_id: uuid.UUID | None = None,
    entity_id: str | None = None,
) -> None:
    """Record a refusal by the policy, in its own transaction (the refused action never runs). The basis is
    the reason's code (access/reasons.py), worded when the trace is read. In the directory's chain, where
    operators see one professional trying many records (SECURITY V8 8.1.4); and, for a professional's or a
    software's refusal on a record (`space_id`), copied into that record's chain by a job deferred here: after
    the refused request's transaction, which may hold that chain (a Bundle that wrote there first), and only
    if the space exists and is one people use (`copy_refusal`: nobody makes chains, nor jobs, for ids they
    invent). The record names what was asked for (`entity_id`): a reader of that chain from whom the document
    is hidden is not shown the attempt either (record/auditevents.py). A copy keeps the instant of the attempt,
    so it may stand after a later record in the chain: the chain's order is that of writing (`seq`)."""
    record = Record(
        action="access:refused",
        outcome="8",
        actor_kind=ctx.actor.kind,
        actor_id=ctx.actor.id,
        actor_display=ctx.actor.display,
        basis=(reason or decision.reason).recorded,
        entity_type=decision.resource_type,
        entity_id=entity_id,
        detail=decision.action,
        request_id=ctx.request_id,
    )
    copy = space_id is not None and space_id != DIRECTORY_SPACE and ctx.actor.kind in REFUSALS_TOLD

    async def run(conn: Conn) -> None:
        await audit_store.append(conn, DIRECTORY_SPACE, record)
        if copy and space_id is not None and await lifecycle_store.state_of(conn, space_id) in COPIED_STATES:
            job = jobs_store.JobToDefer(
                COPY_REFUSAL_TASK, {"space_id": str(space_id), "record": _as_args(record)}, queue=QUEUE
            )
            await jobs_store.defer(conn, [job])

    await ctx.runtime.db.interaction("audit_refusal", run)


def _as_args(record: Record) -> dict[str, object]:
    values = {f.name: getattr(record, f.name) for f in fields(record)}
    values["recorded_at"] = record.recorded_at.isoformat()
    return values


async def copy_refusal(rt: Runtime, space_id: uuid.UUID, args: dict[str, Any]) -> bool:
    """Write a refusal recorded in the directory's chain into the refused record's chain too, as recorded
    (same instant, actor and reason), once: a job run again after a crash finds it there. Nothing for a space
    that does not exist (or no longer does). Whether it was written."""
    values = dict(args)
    values["recorded_at"] = datetime.fromisoformat(str(values["recorded_at"]))
    record = Record(**values)
    if record.action != "access:refused" or record.actor_kind not in REFUSALS_TOLD:
        return False  # only what `refusal` defers

    async def run(conn: Conn) -> bool:
        if await lifecycle_store.state_of(conn, space_id) not in COPIED_STATES:
            return False
        # Two runs of one job (a worker taken for dead) check and write one after the other.
        await locks.hold_until_commit(
            conn, f"refusal-copy:{space_id}:{record.request_id}:{record.recorded_at}"
        )
        if await audit_store.has_record(conn, space_id, record):
            return False
        await audit_store.append(conn, space_id, record)
        return True

    return bool(await rt.db.interaction("audit_refusal_copy", run))


async def account_event(conn: Conn, record: Record) -> None:
    """Record a sign-in, a failed or locked sign-in, the end of a session or a change of credentials, in the
    directory's chain and in the caller's transaction (SECURITY V7 7.1.3/7.2.1: the session row and its
    record commit together). Never a secret: the record names the method or credential, not its value."""
    await audit_store.append(conn, DIRECTORY_SPACE, record)
