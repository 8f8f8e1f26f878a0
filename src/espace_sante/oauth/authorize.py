"""SMART App Launch for people: the authorization endpoint's rules (RFC 6749 4.1.1, RFC 7636, SMART App Launch
2.x "standalone launch"), the person's consent turned into a grant and an authorization code, the list of
connected apps and their disconnection, and the SMART discovery document.

The authorization request is validated here rather than by authlib, which accepts a missing `code_challenge`
and the `plain` method at this endpoint (STACK.md, authlib row): we refuse both before anyone signs in. The
order follows RFC 6749 4.1.2.1: an unknown client or a `redirect_uri` not registered *exactly* is shown to the
person and never redirected to; every other error goes back to the client's `redirect_uri` with `state`.

Who may authorise what: a holder connects an app (kind "app", `patient/` scopes; the token acts for the app
in the holder's space), a professional their software (kind "software", `user/` scopes; the token acts for
the professional). Representatives and operators cannot authorise clients yet."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

from espace_sante.access.actors import Actor
from espace_sante.access.scopes import Scopes, parse_one
from espace_sante.audit import wording
from espace_sante.context import Context
from espace_sante.errors import NotFound
from espace_sante.oauth import clients as oauth_clients
from espace_sante.oauth import grants as oauth_grants
from espace_sante.oauth import tokens as oauth_tokens
from espace_sante.runtime import Runtime
from espace_sante.settings import Settings
from espace_sante.storage import audit as audit_store
from espace_sante.storage import clients as client_store
from espace_sante.storage import grants as grant_store
from espace_sante.storage.audit import SUCCESS, Record
from espace_sante.storage.db import Conn

_CHALLENGE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_SINGLE = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "aud",
)
PERSON_OF_KIND = {"app": "holder", "software": "practitioner"}

Lang = Literal["fr", "en"]


class AuthorizeError(Exception):
    """An authorization request refused. With `redirect_uri` the error goes back to the client (RFC 6749
    4.1.2.1); without, it is shown to the person (unknown client, unregistered redirect_uri)."""

    def __init__(
        self, error: str, description: str, redirect_uri: str | None = None, state: str | None = None
    ):
        super().__init__(description)
        self.error = error
        self.description = description
        self.redirect_uri = redirect_uri
        self.state = state

    def location(self) -> str:
        assert self.redirect_uri is not None
        params = [("error", self.error), ("error_description", self.description)]
        if self.state is not None:
            params.append(("state", self.state))
        return add_params(self.redirect_uri, params)


@dataclass(frozen=True)
class AuthorizationRequest:
    """A validated authorization request."""

    client: client_store.ClientRow
    redirect_uri: str
    scope: str
    state: str | None
    code_challenge: str
    #: The request's parameters, to carry through the consent form unchanged.
    params: tuple[tuple[str, str], ...]

    @property
    def person_kind(self) -> str:
        return PERSON_OF_KIND[self.client.kind]


def add_params(uri: str, params: Sequence[tuple[str, str]]) -> str:
    parts = urlsplit(uri)
    query = (parts.query + "&" if parts.query else "") + urlencode(list(params))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


async def validate(rt: Runtime, params: Sequence[tuple[str, str]]) -> AuthorizationRequest:
    """Check an authorization request (query of GET /oauth/authorize, or the consent form's copy of it)."""
    counts: dict[str, int] = {}
    for key, _ in params:
        counts[key] = counts.get(key, 0) + 1
    values = dict(params)
    if counts.get("client_id", 0) > 1 or counts.get("redirect_uri", 0) > 1:
        raise AuthorizeError("invalid_request", "paramètre répété / repeated parameter")
    client_id = values.get("client_id", "")
    client = None
    # Client ids are printable ASCII (ours are URL-safe): anything else is unknown, without asking the
    # database (a NUL byte would be a driver error, not an answer).
    if client_id and len(client_id) <= 200 and client_id.isascii() and client_id.isprintable():
        client = await rt.db.read("oauth_get_client", client_store.get_client, client_id)
    if client is None or client.disabled or client.kind not in PERSON_OF_KIND:
        raise AuthorizeError("invalid_client", "application inconnue / unknown application")
    redirect_uri = values.get("redirect_uri", "")
    if not redirect_uri or redirect_uri not in client.redirect_uris:
        raise AuthorizeError(
            "invalid_request",
            "adresse de retour non enregistrée pour cette application / redirect_uri not registered",
        )
    state = values.get("state")

    def refuse(error: str, description: str) -> AuthorizeError:
        return AuthorizeError(error, description, redirect_uri, state)

    repeated = [k for k in _SINGLE if counts.get(k, 0) > 1]
    if repeated:
        raise refuse("invalid_request", f"paramètre répété / repeated parameter: {repeated[0]}")
    if values.get("response_type") != "code":
        raise refuse("unsupported_response_type", "seul response_type=code / only response_type=code")
    method = values.get("code_challenge_method")
    challenge = values.get("code_challenge")
    if not challenge or not method:
        raise refuse("invalid_request", "PKCE requis (code_challenge, S256) / PKCE required (S256)")
    if method != "S256":
        raise refuse("invalid_request", "seule la méthode S256 est acceptée / only S256 is accepted")
    if not _CHALLENGE.match(challenge):
        raise refuse("invalid_request", "code_challenge invalide / invalid code_challenge")
    aud = values.get("aud")
    if aud is None or aud.rstrip("/") != rt.settings.fhir_base.rstrip("/"):
        raise refuse(
            "invalid_request", "aud doit être l'adresse du serveur FHIR / aud must be the FHIR base URL"
        )
    scope = oauth_tokens.allowed_scope(client, values.get("scope") or "")
    if not scope or not values.get("scope"):
        raise refuse(
            "invalid_scope", "aucune des portées demandées n'est permise / no requested scope is allowed"
        )
    return AuthorizationRequest(client, redirect_uri, scope, state, challenge, tuple(params))


def may_authorise(actor: Actor, request: AuthorizationRequest) -> bool:
    """A holder connects apps, a professional their software; nobody else authorises a client."""
    return actor.kind == request.person_kind


async def covered(rt: Runtime, actor: Actor, request: AuthorizationRequest) -> bool:
    """Whether the person already granted this client at least the requested scopes (no consent page then)."""
    grant = await rt.db.read(
        "oauth_live_grant", grant_store.live, actor.kind, actor.id, request.client.client_id
    )
    if grant is None:
        return False
    granted, asked = Scopes.parse(grant.scope), Scopes.parse(request.scope)
    clinical = asked.within(granted).raw == asked.raw
    context = {s for s in request.scope.split() if parse_one(s) is None} <= set(grant.scope.split())
    return clinical and context


async def approve(ctx: Context, request: AuthorizationRequest, *, consented: bool) -> str:
    """The person approved (or had already approved): the grant is recorded (traced when `consented`), an
    authorization code is issued (single use, 60 s, bound to the client, redirect_uri and PKCE challenge);
    returns the redirect to the client with `code` and `state`."""
    actor = ctx.actor
    rt = ctx.runtime
    if not may_authorise(actor, request):
        raise AuthorizeError(
            "access_denied",
            "ce compte ne peut pas autoriser cette application / this account cannot authorise it",
            request.redirect_uri,
            request.state,
        )
    code = secrets.token_urlsafe(32)
    client = request.client

    async def work(conn: Conn) -> None:
        grant_id = await grant_store.give(conn, client.client_id, actor.kind, actor.id, request.scope)
        await grant_store.insert_code(
            conn,
            oauth_clients.digest(code),
            grant_id=grant_id,
            client_id=client.client_id,
            redirect_uri=request.redirect_uri,
            scope=request.scope,
            code_challenge=request.code_challenge,
            acr=actor.acr,
            auth_time=actor.auth_time,  # the approving session's proof, for people/stepup.py
            family=uuid.uuid4(),
            expires_at=datetime.now(UTC) + timedelta(seconds=rt.settings.authorization_code_lifetime),
        )
        if consented:
            await audit_store.append(
                conn,
                await oauth_grants.space_of(conn, actor.kind, actor.id),
                Record(
                    action="oauth:grant",
                    outcome=SUCCESS,
                    actor_kind=actor.kind,
                    actor_id=actor.id,
                    actor_display=actor.display,
                    basis="titulaire" if actor.kind == "holder" else "",
                    detail=f"{client.client_id}|{client.name}|{request.scope}",
                    request_id=ctx.request_id,
                ),
            )

    await rt.db.interaction("oauth_authorize", work)
    params = [("code", code)]
    if request.state is not None:
        params.append(("state", request.state))
    return add_params(request.redirect_uri, params)


def refusal(request: AuthorizationRequest) -> str:
    """The person refused: back to the client with `access_denied` (RFC 6749 4.1.2.1)."""
    return AuthorizeError(
        "access_denied", "la personne a refusé / the user refused", request.redirect_uri, request.state
    ).location()


# --- the holder's connected apps -----------------------------------------------------------------------------


async def connected(ctx: Context) -> list[grant_store.GrantRow]:
    """The apps (or, for a professional, the software) the signed-in person has authorised and not withdrawn."""
    rows: list[grant_store.GrantRow] = await ctx.runtime.db.read(
        "oauth_grants_of", grant_store.of_person, ctx.actor.kind, ctx.actor.id
    )
    return rows


async def disconnect(ctx: Context, grant_id: uuid.UUID) -> None:
    """Withdraw one of the person's grants: every token and refresh token of it stops working at once.
    Another person's grant answers NotFound, like one that does not exist."""
    grant = await ctx.runtime.db.read("oauth_get_grant", grant_store.get, grant_id)
    if (
        grant is None
        or grant.revoked_at is not None
        or (grant.person_kind, grant.person_id)
        != (
            ctx.actor.kind,
            ctx.actor.id,
        )
    ):
        raise NotFound("application introuvable / no such connected application")
    await oauth_grants.withdraw(
        ctx.runtime,
        grant,
        reason="disconnected",
        by_kind=ctx.actor.kind,
        by_id=ctx.actor.id,
        by_name=ctx.actor.display,
        request_id=ctx.request_id,
    )


# --- scopes in plain words -----------------------------------------------------------------------------------

_CONTEXT_WORDS: dict[str, tuple[str, str]] = {
    "launch/patient": ("savoir quel est votre dossier", "know which record is yours"),
    "openid": ("connaître votre identité", "know who you are"),
    "fhirUser": (
        "connaître votre fiche de professionnel ou de patient",
        "know your professional or patient entry",
    ),
    "offline_access": (
        "garder l'accès quand vous n'êtes pas connecté, jusqu'à ce que vous le retiriez",
        "keep access while you are signed out, until you withdraw it",
    ),
    "online_access": ("garder l'accès tant que vous êtes connecté", "keep access while you are signed in"),
}


def describe(scope: str, lang: Lang = "fr", *, holder: bool = True) -> list[str]:
    """Each scope as a phrase a person understands: « consulter et rechercher vos documents »."""
    phrases: list[str] = []
    for item in scope.split():
        grant = parse_one(item)
        if grant is None:
            words = _CONTEXT_WORDS.get(item)
            if words:
                phrases.append(words[0] if lang == "fr" else words[1])
            continue
        verbs: list[str] = []
        letters = grant.interactions
        table = (
            (("r", "s"), "consulter", "read"),
            (("c",), "ajouter", "add to"),
            (("u",), "modifier", "change"),
            (("d",), "supprimer", "delete"),
        )
        for keys, fr, en in table:
            if any(k in letters for k in keys):
                verbs.append(fr if lang == "fr" else en)
        joined = (
            (", ".join(verbs[:-1]) + (" et " if lang == "fr" else " and ") + verbs[-1])
            if len(verbs) > 1
            else verbs[0]
        )
        if grant.resource_type == "*":
            what = (
                (
                    "toutes vos données de santé"
                    if holder
                    else "toutes les données des dossiers auxquels vous avez accès"
                )
                if lang == "fr"
                else ("all your health data" if holder else "all data of the records you have access to")
            )
        elif holder:
            kind = wording.kind(grant.resource_type)
            what = kind.mine_plural if lang == "fr" else kind.en_mine_plural
        else:
            what = (
                f"les données {grant.resource_type} des dossiers auxquels vous avez accès"
                if lang == "fr"
                else f"{grant.resource_type} data of the records you have access to"
            )
        phrases.append(f"{joined} {what}")
    return phrases


# --- discovery -----------------------------------------------------------------------------------------------


def configuration(settings: Settings) -> dict[str, Any]:
    """SMART App Launch 2.x section "Conformance" (.well-known/smart-configuration)."""
    base = settings.base_url.rstrip("/")
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "introspection_endpoint": f"{base}/oauth/introspect",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "none",
        ],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": [
            "system/*.read",
            "system/*.write",
            "system/*.*",
            "system/*.cruds",
            "system/*.rs",
            "patient/*.rs",
            "patient/*.cruds",
            "user/*.rs",
            "user/*.cruds",
            "launch/patient",
            "openid",
            "fhirUser",
            "offline_access",
            "online_access",
        ],
        "capabilities": [
            "launch-standalone",
            "client-public",
            "client-confidential-symmetric",
            "client-confidential-asymmetric",
            "context-standalone-patient",
            "permission-offline",
            "permission-online",
            "permission-patient",
            "permission-user",
            "permission-v1",
            "permission-v2",
        ],
        "code_challenge_methods_supported": ["S256"],
    }


def s256(verifier: str) -> str:
    """The S256 code challenge of a verifier (RFC 7636 4.2)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
