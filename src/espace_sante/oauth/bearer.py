"""From a bearer token to the actor behind it: the one way every API request authenticates."""

from __future__ import annotations

from dataclasses import replace

from espace_sante.access.actors import Actor
from espace_sante.access.scopes import Scopes
from espace_sante.errors import FhirError, Unauthorized
from espace_sante.oauth.clients import digest
from espace_sante.people import actors as people
from espace_sante.runtime import Runtime
from espace_sante.storage import clients as store

# --- bearer tokens --------------------------------------------------------------------------------------------


async def resolve_bearer(rt: Runtime, token: str) -> Actor:
    """The actor behind a bearer token, or Unauthorized. Served from the process's token cache when the
    revocation listener is up (storage/token_cache.py), else from the database."""
    if not token or len(token) > 512:
        raise Unauthorized("jeton d'accès invalide ou expiré / invalid or expired access token")
    token_hash = digest(token)
    actor = rt.tokens.get(token_hash)
    if actor is not None:
        return actor
    row = await rt.db.read("oauth_resolve_token", store.active_token, token_hash)
    if row is None:
        raise Unauthorized("jeton d'accès invalide ou expiré / invalid or expired access token")
    actor = await _actor_of(rt, row)
    rt.tokens.put(token_hash, actor, row.expires_at)
    return actor


async def _actor_of(rt: Runtime, row: store.TokenRow) -> Actor:
    scopes = Scopes.parse(row.scope)
    if row.actor_kind == "client" and row.client_id is not None:
        return Actor("client", row.client_id, scopes, row.name)
    if row.actor_kind == "app" and row.client_id is not None:
        return Actor(
            "app", row.client_id, scopes, row.name, subject=row.subject, acr=row.acr, auth_time=row.auth_time
        )
    if row.actor_kind in people.PERSON_KINDS and row.actor_id:
        kind = people.PERSON_KINDS[people.PERSON_KINDS.index(row.actor_kind)]  # narrows str to ActorKind
        try:
            actor = await people.actor_for(
                rt, kind, row.actor_id, scopes=scopes, acr=row.acr, via=row.client_id or ""
            )
        except FhirError as exc:  # the person left the directory since: the token no longer works
            raise Unauthorized("jeton d'accès invalide ou expiré / invalid or expired access token") from exc
        return replace(actor, auth_time=row.auth_time)
    raise Unauthorized("jeton d'accès invalide ou expiré / invalid or expired access token")
