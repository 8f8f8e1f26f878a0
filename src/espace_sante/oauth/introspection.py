"""Token introspection (RFC 7662) and revocation (RFC 7009), each for the calling client's own tokens only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from espace_sante.oauth.clients import OAuthError, Response, authenticate_client, digest, error_response
from espace_sante.runtime import Runtime
from espace_sante.storage import clients as store
from espace_sante.storage import grants as grant_store
from espace_sante.storage import people as people_store
from espace_sante.storage.db import Conn

# --- introspection (RFC 7662) and revocation (RFC 7009) ------------------------------------------------------


async def introspect(
    rt: Runtime, token_url: str, headers: Mapping[str, str], form: Sequence[tuple[str, str]]
) -> Response:
    """POST /oauth/introspect. Only an authenticated client may ask, and only about tokens issued to it: any
    other token (or one revoked, expired, or of a withdrawn grant) is `{"active": false}`."""
    values = dict(form)
    try:
        client = await authenticate_client(rt, headers, values, token_url)
    except OAuthError as exc:
        return error_response(exc)
    token = values.get("token", "")
    if not token or len(token) > 512:
        return (
            400,
            {"error": "invalid_request", "error_description": "`token` manquant / missing `token`"},
            [],
        )
    hashed = digest(token)
    info = await rt.db.read("oauth_introspect", store.token_info, hashed)
    if info is not None and info.client_id == client.client_id:
        body: dict[str, Any] = {
            "active": True,
            "token_type": "Bearer",
            "scope": info.scope,
            "client_id": info.client_id,
            "exp": int(info.expires_at.timestamp()),
            "iat": int(info.issued_at.timestamp()),
            "iss": rt.settings.base_url.rstrip("/"),
        }
        if info.actor_kind == "app" and info.subject:
            found = await rt.db.read("oauth_patient_of", people_store.patient_by_ins, info.subject)
            if found is not None:
                body["patient"] = found.patient_id
        elif info.actor_kind == "practitioner" and info.actor_id:
            ref = await rt.db.read("oauth_practitioner_of", people_store.practitioner_by_rpps, info.actor_id)
            if ref is not None:
                body["fhirUser"] = f"{rt.settings.fhir_base}/Practitioner/{ref.practitioner_id}"
        return 200, body, []
    refresh = await rt.db.read("oauth_introspect_refresh", grant_store.refresh_active, hashed)
    if (
        refresh is not None
        and refresh.client_id == client.client_id
        and refresh.expires_at > datetime.now(UTC)
    ):
        return (
            200,
            {
                "active": True,
                "token_type": "refresh_token",
                "scope": refresh.scope,
                "client_id": refresh.client_id,
                "exp": int(refresh.expires_at.timestamp()),
            },
            [],
        )
    return 200, {"active": False}, []


async def revoke(
    rt: Runtime, token_url: str, headers: Mapping[str, str], form: Sequence[tuple[str, str]]
) -> Response:
    """POST /oauth/revoke (RFC 7009): a client revokes its own access or refresh token (a refresh token takes
    its family of access tokens with it). Unknown tokens are answered 200 too (section 2.2)."""
    values = dict(form)
    try:
        client = await authenticate_client(rt, headers, values, token_url)
    except OAuthError as exc:
        return error_response(exc)
    token = values.get("token", "")
    if not token:
        return (
            400,
            {"error": "invalid_request", "error_description": "`token` manquant / missing `token`"},
            [],
        )
    if len(token) > 512:
        return 200, {}, []
    hashed = digest(token)

    async def work(conn: Conn) -> None:
        if await store.revoke_client_token(conn, hashed, client.client_id):
            return
        family = await grant_store.refresh_family_of_client(conn, hashed, client.client_id)
        if family is not None:
            await grant_store.revoke_family(conn, family)

    await rt.db.interaction("oauth_revoke", work)
    return 200, {}, []
