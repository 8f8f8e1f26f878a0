"""Development tokens: `espace-sante token issue --actor KIND:ID --scope S` mints a bearer token for a demo
person without signing in, so that the demo and the tests can act as a holder, a representative, a
professional or an operator. Refused unless the instance runs in development mode; every token minted is
in the trace (directory chain), with the actor and the scopes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from espace_sante.access.actors import LEVELS
from espace_sante.access.scopes import Scopes
from espace_sante.errors import BadRequest, Forbidden
from espace_sante.oauth import clients as oauth_clients
from espace_sante.people import actors as people
from espace_sante.runtime import Runtime
from espace_sante.storage import audit as audit_store
from espace_sante.storage import clients
from espace_sante.storage.audit import SUCCESS, Record
from espace_sante.storage.db import Conn
from espace_sante.storage.keys import DIRECTORY_SPACE

#: What a development token stands for: a person signed in with two factors (see access/actors.LEVELS).
DEV_LEVEL = "eidas2"


@dataclass(frozen=True)
class Issued:
    access_token: str
    expires_in: int


async def issue(rt: Runtime, actor_text: str, scope: str, *, acr: str = DEV_LEVEL) -> Issued:
    if not rt.settings.development_mode:
        raise Forbidden(
            "jetons de développement refusés : l'instance n'est pas en mode développement (ESPACE_SANTE_DEV=1 "
            "ou données créées par --demo) / development tokens are refused outside development mode"
        )
    if acr not in LEVELS:
        raise BadRequest(f"niveau inconnu / unknown level {acr!r} (attendu / expected {', '.join(LEVELS)})")
    kind, ident = people.parse_actor(actor_text)
    scopes = Scopes.parse(scope)
    if not scopes.grants and kind != "operator":
        raise BadRequest(f"portée invalide / invalid scope: {scope!r} (ex. patient/*.rs, user/*.cruds)")
    actor = await people.actor_for(rt, kind, ident, scopes=scopes, acr=acr)
    lifetime = rt.settings.dev_token_lifetime
    token = secrets.token_urlsafe(32)

    async def mint(conn: Conn) -> None:
        # The token and its trace record commit together: no token exists that the trace does not show.
        await clients.insert_person_token(
            conn,
            oauth_clients.digest(token),
            client_id=None,
            actor_kind=actor.kind,
            actor_id=actor.id,
            scope=str(scopes),
            expires_at=datetime.now(UTC) + timedelta(seconds=lifetime),
            acr=acr,
            auth_time=datetime.now(UTC),  # stands for a sign-in now (people/stepup.py)
        )
        await audit_store.append(
            conn,
            DIRECTORY_SPACE,
            Record(
                action="token:issue",
                outcome=SUCCESS,
                actor_kind=actor.kind,
                actor_id=actor.id,
                actor_display=actor.display,
                basis="jeton de développement / development token",
                detail=str(scopes),
            ),
        )

    await rt.db.interaction("devtoken_issue", mint)
    return Issued(token, lifetime)
