"""The token endpoint (RFC 6749 section 3.2) for the client-credentials
grant (SMART Backend Services, `system/` scopes), the authorization-code grant with PKCE (apps a holder connects,
`patient/` scopes; professionals' software, `user/` scopes) and refresh tokens with rotation; introspection (introspection,
revocation: oauth/introspection.py; bearer tokens: oauth/bearer.py).

The protocol rules of the token endpoint come from authlib's generic server classes. authlib is synchronous and
its servers are for Flask/Django, so we do the I/O before and after it (STACK.md, authlib row): the client is
authenticated first (secret, `private_key_jwt` assertion or public client: oauth/backend.py), the code
or refresh token it presents is fetched, the person it acts for is looked up; authlib then runs on a neutral
request object; afterwards the code is consumed or the refresh token rotated atomically in PostgreSQL (a
second use loses the race and is treated as a reuse) and the issued tokens are saved with their trace.

Client secrets, codes and tokens are 256-bit random values stored as SHA-256 digests: with that much entropy a
slow password hash adds nothing, and every API request verifies a token."""

from __future__ import annotations

import secrets
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, ClientCredentialsGrant, RefreshTokenGrant
from authlib.oauth2.rfc7636 import CodeChallenge

from espace_sante.access.actors import Actor
from espace_sante.access.scopes import Scopes
from espace_sante.errors import FhirError
from espace_sante.oauth import grants
from espace_sante.oauth.clients import (
    CONTEXT_SCOPES,
    MAX_SYSTEM_TOKEN_LIFETIME,
    MAX_USER_TOKEN_LIFETIME,
    OAuthError,
    Response,
    authenticate_client,
    digest,
    error_response,
)
from espace_sante.people import actors as people
from espace_sante.runtime import Runtime
from espace_sante.storage import audit as audit_store
from espace_sante.storage import clients as store
from espace_sante.storage import grants as grant_store
from espace_sante.storage import people as people_store
from espace_sante.storage.audit import SUCCESS, Record
from espace_sante.storage.db import Conn
from espace_sante.storage.keys import DIRECTORY_SPACE

# --- authlib adapter -----------------------------------------------------------------------------------------


def allowed_scope(row: store.ClientRow, scope: str | None) -> str:
    """What a client may get of `scope`: its clinical scopes within its registration, plus the context scopes
    of its kind (launch/patient, openid, fhirUser, offline_access...). Empty when nothing clinical is left."""
    registered = Scopes.parse(row.scope)
    if not scope:
        return str(registered)
    granted = Scopes.parse(scope).within(registered)
    if not granted.grants:
        return ""
    extras = [s for s in dict.fromkeys(scope.split()) if s in CONTEXT_SCOPES[row.kind]]
    return " ".join([*granted.raw, *extras])


class _Client(ClientMixin):  # type: ignore[misc]
    def __init__(self, row: store.ClientRow) -> None:
        self.row = row

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        allowed = allowed_scope(self.row, scope)
        if not allowed:
            raise InvalidScopeError("none of the requested scopes is granted to this client")
        return allowed

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.row.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return False  # authenticated before authlib runs (authenticate_client)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "preauthenticated"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and self.row.kind in ("app", "software")

    def check_grant_type(self, grant_type: str) -> bool:
        if self.row.kind == "system":
            return grant_type == "client_credentials"
        return grant_type in ("authorization_code", "refresh_token")


@dataclass
class _Person:
    """Whom a code or refresh token acts for, looked up before authlib runs."""

    kind: str  # "holder" or "practitioner"
    ident: str
    grant_id: uuid.UUID
    family: uuid.UUID
    acr: str
    extra: dict[str, str] = field(default_factory=dict)
    #: From the code's approving session; None after a refresh (a refresh proves no new sign-in).
    auth_time: datetime | None = None


@dataclass
class _Code:
    row: grant_store.CodeRow

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    @property
    def code_challenge(self) -> str:
        return self.row.code_challenge

    @property
    def code_challenge_method(self) -> str:
        return "S256"


@dataclass
class _Refresh:
    row: grant_store.RefreshRow

    def get_scope(self) -> str:
        return self.row.scope

    def check_client(self, client: _Client) -> bool:
        return bool(client.row.client_id == self.row.client_id)


_PREAUTHENTICATED = ["preauthenticated"]


class _ClientCredentials(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = _PREAUTHENTICATED


class _AuthorizationCode(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = _PREAUTHENTICATED
    server: _Server

    def query_authorization_code(self, code: str, client: _Client) -> _Code | None:
        row = self.server.code
        if row is None or row.client_id != client.row.client_id or not row.grant_live:
            return None
        if row.expires_at <= datetime.now(UTC) or row.used_at is not None:
            return None
        return _Code(row)

    def delete_authorization_code(self, authorization_code: _Code) -> None:
        return None  # consumed atomically after authlib returns (token_endpoint)

    def authenticate_user(self, authorization_code: _Code) -> _Person | None:
        return self.server.person


class _RefreshToken(RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = _PREAUTHENTICATED
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: every use returns a new refresh token
    server: _Server

    def authenticate_refresh_token(self, refresh_token: str) -> _Refresh | None:
        row = self.server.refresh
        if row is None or row.revoked or row.rotated_at is not None or not row.grant_live:
            return None
        if row.expires_at <= datetime.now(UTC):
            return None
        return _Refresh(row)

    def authenticate_user(self, refresh_token: _Refresh) -> _Person | None:
        return self.server.person

    def revoke_old_credential(self, refresh_token: _Refresh) -> None:
        return None  # rotated atomically after authlib returns (token_endpoint)


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._data = dict(pairs)
        self._list: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in pairs:
            self._list[key].append(value)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._list


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, uri: str, headers: Mapping[str, str], form: Sequence[tuple[str, str]]) -> None:
        super().__init__("POST", uri, headers=headers)
        self.payload = _Payload(form)
        self._form = dict(form)

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self._form


@dataclass
class _Issued:
    token: dict[str, Any]
    grant_type: str


class _Server(AuthorizationServer):  # type: ignore[misc]
    """One request's server: the client is authenticated, the code or refresh token and the person are
    prefetched, the issued token is collected for saving."""

    def __init__(
        self,
        client: store.ClientRow,
        *,
        system_lifetime: int,
        user_lifetime: int,
        code: grant_store.CodeRow | None = None,
        refresh: grant_store.RefreshRow | None = None,
        person: _Person | None = None,
    ) -> None:
        super().__init__()
        self._client = _Client(client)
        self.code = code
        self.refresh = refresh
        self.person = person
        self.issued: list[_Issued] = []
        self._system_lifetime = system_lifetime
        self._user_lifetime = user_lifetime
        self.register_client_auth_method("preauthenticated", lambda query, request: self._client)
        self.register_grant(_ClientCredentials)
        self.register_grant(_AuthorizationCode, [CodeChallenge(required=True)])
        self.register_grant(_RefreshToken)
        self.register_token_generator("default", self._generate)

    def query_client(self, client_id: str) -> _Client | None:
        return self._client if client_id == self._client.row.client_id else None

    def _generate(
        self,
        grant_type: str,
        client: _Client,
        user: _Person | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        if grant_type == "client_credentials":
            # SMART Backend Services: system tokens are short-lived (<= 300 s) and have no refresh token.
            return {
                "token_type": "Bearer",
                "access_token": secrets.token_urlsafe(32),
                "expires_in": self._system_lifetime,
                "scope": client.get_allowed_scope(scope),
            }
        granted = scope or ""
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": secrets.token_urlsafe(32),
            "expires_in": self._user_lifetime,
            "scope": granted,
        }
        words = granted.split()
        if include_refresh_token and ("offline_access" in words or "online_access" in words):
            token["refresh_token"] = secrets.token_urlsafe(32)
        if user is not None:
            token.update(user.extra)
        return token

    def save_token(self, token: dict[str, Any], request: _Request) -> None:
        self.issued.append(_Issued(token, request.payload.grant_type or ""))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> tuple[int, Any, Any]:
        return status, body, headers


# --- the token endpoint ---------------------------------------------------------------------------------------


async def token_endpoint(
    rt: Runtime,
    uri: str,
    headers: Mapping[str, str],
    form: Sequence[tuple[str, str]],
    *,
    request_id: str = "",
) -> Response:
    """POST /oauth/token. Returns (status, JSON body, headers) as RFC 6749 section 5 describes."""
    values = dict(form)
    try:
        client = await authenticate_client(rt, headers, values, uri)
        code = refresh = None
        person: _Person | None = None
        grant_type = values.get("grant_type")
        if grant_type == "authorization_code" and values.get("code"):
            code = await rt.db.interaction("oauth_get_code", grant_store.get_code, digest(values["code"]))
            if code is not None and code.client_id == client.client_id:
                if code.used_at is not None:
                    # RFC 6749 4.1.2: a code used twice; revoke what the first use obtained.
                    await rt.db.interaction("oauth_code_reuse", grant_store.revoke_family, code.family)
                    raise OAuthError("invalid_grant", "code déjà utilisé / code already used")
                person = await _person(
                    rt, client, code.person_kind, code.person_id, code.grant_id, code.family, code.acr
                )
                person.auth_time = code.auth_time
        elif grant_type == "refresh_token" and values.get("refresh_token"):
            refresh = await rt.db.interaction(
                "oauth_get_refresh", grant_store.get_refresh, digest(values["refresh_token"])
            )
            if refresh is not None and refresh.client_id == client.client_id:
                if refresh.rotated_at is not None:
                    await _reuse(rt, client, refresh.grant_id, request_id)
                    raise OAuthError(
                        "invalid_grant", "jeton de rafraîchissement déjà utilisé / refresh token reused"
                    )
                person = await _person(
                    rt,
                    client,
                    refresh.person_kind,
                    refresh.person_id,
                    refresh.grant_id,
                    refresh.family,
                    refresh.acr,
                )
    except OAuthError as exc:
        return error_response(exc)
    server = _Server(
        client,
        system_lifetime=max(1, min(rt.settings.system_token_lifetime, MAX_SYSTEM_TOKEN_LIFETIME)),
        user_lifetime=max(1, min(rt.settings.user_token_lifetime, MAX_USER_TOKEN_LIFETIME)),
        code=code,
        refresh=refresh,
        person=person,
    )
    status, body, out_headers = server.create_token_response(_Request(uri, headers, form))
    if status != 200 or not server.issued:
        return status, dict(body), list(out_headers)
    issued = server.issued[0]
    try:
        if issued.grant_type == "authorization_code":
            assert code is not None
            consumed = await rt.db.interaction(
                "oauth_consume_code", grant_store.consume_code, digest(values["code"])
            )
            if not consumed:  # another request used it first
                await rt.db.interaction("oauth_code_reuse", grant_store.revoke_family, code.family)
                raise OAuthError("invalid_grant", "code déjà utilisé / code already used")
        elif issued.grant_type == "refresh_token":
            assert refresh is not None
            rotated = await rt.db.interaction(
                "oauth_rotate_refresh", grant_store.rotate_refresh, digest(values["refresh_token"])
            )
            if not rotated:
                await _reuse(rt, client, refresh.grant_id, request_id)
                raise OAuthError(
                    "invalid_grant", "jeton de rafraîchissement déjà utilisé / refresh token reused"
                )
    except OAuthError as exc:
        return error_response(exc)
    await _save(rt, client, issued, person, request_id)
    return status, dict(body), list(out_headers)


async def _person(
    rt: Runtime,
    client: store.ClientRow,
    kind: str,
    ident: str,
    grant_id: uuid.UUID,
    family: uuid.UUID,
    acr: str,
) -> _Person:
    """The person a code or refresh token acts for, with the launch context SMART returns beside the token:
    `patient` for an app (the holder's Patient id), `fhirUser` for a professional's software."""
    extra: dict[str, str] = {}
    if kind == "holder":
        found = await rt.db.read("oauth_patient_of", people_store.patient_by_ins, ident)
        if found is None:
            raise OAuthError("invalid_grant", "la personne n'existe plus / the person no longer exists")
        extra["patient"] = found.patient_id
    else:
        try:
            actor = await people.actor_for(rt, "practitioner", ident, scopes=Scopes.none())
        except FhirError as exc:
            raise OAuthError(
                "invalid_grant", "la personne n'existe plus / the person no longer exists"
            ) from exc
        if actor.practitioner_id:
            extra["fhirUser"] = f"{rt.settings.fhir_base}/Practitioner/{actor.practitioner_id}"
    return _Person(kind, ident, grant_id, family, acr, extra)


async def _reuse(rt: Runtime, client: store.ClientRow, grant_id: uuid.UUID, request_id: str) -> None:
    """A rotated refresh token came back: someone holds a copy. End the whole grant (SECURITY FHIR item 10)."""
    grant = await rt.db.read("oauth_get_grant", grant_store.get, grant_id)
    if grant is None:
        return
    await grants.withdraw(
        rt,
        grant,
        reason="refresh_reuse",
        by_kind="client",
        by_id=client.client_id,
        by_name=client.name,
        request_id=request_id,
    )


async def _save(
    rt: Runtime, client: store.ClientRow, issued: _Issued, person: _Person | None, request_id: str
) -> None:
    token = issued.token
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=int(token["expires_in"]))

    async def save(conn: Conn) -> None:
        if person is None:
            await store.insert_token(
                conn, digest(token["access_token"]), client.client_id, token["scope"], expires
            )
            actor_kind, actor_id, space = "client", client.client_id, DIRECTORY_SPACE
        else:
            app = person.kind == "holder"
            await store.insert_person_token(
                conn,
                digest(token["access_token"]),
                client_id=client.client_id,
                actor_kind="app" if app else "practitioner",
                actor_id=client.client_id if app else person.ident,
                scope=token["scope"],
                expires_at=expires,
                subject=person.ident if app else "",
                acr=person.acr,
                grant_id=person.grant_id,
                family=person.family,
                auth_time=person.auth_time,
            )
            if "refresh_token" in token:
                await grant_store.insert_refresh(
                    conn,
                    digest(token["refresh_token"]),
                    grant_id=person.grant_id,
                    client_id=client.client_id,
                    scope=token["scope"],
                    acr=person.acr,
                    family=person.family,
                    expires_at=now + timedelta(days=rt.settings.refresh_token_lifetime_days),
                )
            actor_kind = "app" if app else "practitioner"
            actor_id = client.client_id if app else person.ident
            space = await grants.space_of(conn, person.kind, person.ident)
        # The token and its trace commit together: no token exists that the trace does not show.
        await audit_store.append(
            conn,
            space,
            Record(
                action="oauth:token",
                outcome=SUCCESS,
                actor_kind=actor_kind,
                actor_id=actor_id,
                actor_display=client.name,
                basis="application autorisée par le titulaire" if actor_kind == "app" else "",
                detail=f"{issued.grant_type}|{token['scope']}",
                request_id=request_id,
            ),
        )

    await rt.db.interaction("oauth_issue_token", save)


async def issue_person_token(
    rt: Runtime, actor: Actor, *, lifetime: int, client_id: str | None = None
) -> tuple[str, int]:
    """A bearer token acting for a person (`actor` from people.actor_for): returns (token, expires_in).
    Only its SHA-256 digest is stored."""
    token = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(seconds=lifetime)
    await rt.db.interaction(
        "oauth_issue_person_token",
        store.insert_person_token,
        digest(token),
        client_id=client_id,
        actor_kind=actor.kind,
        actor_id=actor.id,
        scope=str(actor.scopes),
        expires_at=expires,
        subject=actor.subject,
        acr=actor.acr,
    )
    return token, lifetime
