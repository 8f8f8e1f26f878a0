"""Grants: what a person allowed a client (given at /authorize, oauth/authorize.py), and their end."""

from __future__ import annotations

import uuid

from espace_sante.runtime import Runtime
from espace_sante.storage import audit as audit_store
from espace_sante.storage import grants as grant_store
from espace_sante.storage import people as people_store
from espace_sante.storage.audit import SUCCESS, Record
from espace_sante.storage.db import Conn
from espace_sante.storage.keys import DIRECTORY_SPACE


async def space_of(conn: Conn, kind: str, ident: str) -> uuid.UUID:
    """The chain a record about this person goes to: a holder's space, else the directory's."""
    if kind == "holder":
        found = await people_store.patient_by_ins(conn, ident)
        if found is not None:
            return found.space_id
    return DIRECTORY_SPACE


async def withdraw(
    rt: Runtime,
    grant: grant_store.GrantRow,
    *,
    reason: str,
    by_kind: str,
    by_id: str,
    by_name: str = "",
    request_id: str = "",
) -> bool:
    """End a grant (app disconnected, software access withdrawn, refresh-token reuse): every code, refresh and
    access token of it stops working at once on every process. Traced in the holder's space (or the
    directory's chain for a professional). False if it had already ended."""

    async def work(conn: Conn) -> bool:
        ended = await grant_store.revoke(conn, grant.grant_id, reason)
        if ended:
            await audit_store.append(
                conn,
                await space_of(conn, grant.person_kind, grant.person_id),
                Record(
                    action="oauth:withdraw",
                    outcome=SUCCESS,
                    actor_kind=by_kind,
                    actor_id=by_id,
                    actor_display=by_name,
                    basis=reason,
                    detail=f"{grant.client_id}|{grant.client_name}|{grant.scope}",
                    request_id=request_id,
                ),
            )
        return ended

    result: bool = await rt.db.interaction("oauth_withdraw_grant", work)
    return result
