"""Writing the trace from the services: one call per access, inside the action's transaction.

What is traced: every read, search, history and write of a space's data (in that space's chain), writes to
the directory (in the directory's chain), and every refusal by the policy (in the directory's chain, since a
refused request may name no space). Reads of directory data (a practitioner's name) are not medical data and
are not traced. A search that returned nothing touched no space and leaves no record; one that returned
data from several spaces leaves one record in each."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from espace_sante.access.policy import Decision
from espace_sante.access.reasons import Reason
from espace_sante.context import Context
from espace_sante.storage import audit as audit_store
from espace_sante.storage import notifications as notifications_store
from espace_sante.storage.audit import SUCCESS, Record
from espace_sante.storage.db import Conn
from espace_sante.storage.keys import DIRECTORY_SPACE

#: Whose first access to a space the holder is told of: a professional, or a machine client (a hospital's or a
#: lab's software). Her own apps and representatives are not strangers to her record.
FIRST_ACCESS_TOLD = frozenset({"practitioner", "client"})


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
        await notifications_store.tell_first_access(
            conn, space_id, ctx.actor.kind, ctx.actor.id, ctx.actor.display, notifications_store.FIRST_ACCESS
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


async def refusal(ctx: Context, decision: Decision, *, reason: Reason | None = None) -> None:
    """Record a refusal by the policy, in its own transaction (the refused action never runs). The basis is
    the reason's code (access/reasons.py), worded when the trace is read. In the directory's chain, where
    operators see one professional trying many records (SECURITY V8 8.1.4); not yet in the refused space's
    own chain (docs/access-policy.md "La trace")."""
    record = Record(
        action="access:refused",
        outcome="8",
        actor_kind=ctx.actor.kind,
        actor_id=ctx.actor.id,
        actor_display=ctx.actor.display,
        basis=(reason or decision.reason).recorded,
        entity_type=decision.resource_type,
        detail=decision.action,
        request_id=ctx.request_id,
    )
    await ctx.runtime.db.interaction("audit_refusal", audit_store.append, DIRECTORY_SPACE, record)


async def account_event(conn: Conn, record: Record) -> None:
    """Record a sign-in, a failed or locked sign-in, the end of a session or a change of credentials, in the
    directory's chain and in the caller's transaction (SECURITY V7 7.1.3/7.2.1: the session row and its
    record commit together). Never a secret: the record names the method or credential, not its value."""
    await audit_store.append(conn, DIRECTORY_SPACE, record)
