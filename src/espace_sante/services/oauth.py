"""OAuth 2 and SMART: client registration, the token endpoint (RFC 6749 section 3.2) for the client-credentials
grant (SMART Backend Services, `system/` scopes), the authorization-code grant with PKCE (apps a holder connects,
`patient/` scopes; professionals' software, `user/` scopes) and refresh tokens with rotation; introspection
(RFC 7662), revocation (RFC 7009) and bearer-token resolution.

The protocol rules of the token endpoint come from authlib's generic server classes. authlib is synchronous and
its servers are for Flask/Django, so we do the I/O before and after it (STACK.md, authlib row): the client is
authenticated first (secret, `private_key_jwt` assertion or public client: services/backend_auth.py), the code
or refresh token it presents is fetched, the person it acts for is looked up; authlib then runs on a neutral
request object; afterwards the code is consumed or the refresh token rotated atomically in PostgreSQL (a
second use loses the race and is treated as a reuse) and the issued tokens are saved with their trace.

Client secrets, codes and tokens are 256-bit random values stored as SHA-256 digests: with that much entropy a
slow password hash adds nothing, and every API request verifies a token."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, ClientCredentialsGrant, RefreshTokenGrant
from authlib.oauth2.rfc7636 import CodeChallenge

from ..access.actors import Actor
from ..access.scopes import Scopes
from ..audit.record import SUCCESS, Record
from ..errors import BadRequest, FhirError, Unauthorized
from ..storage import audit as audit_store
from ..storage import clients as store
from ..storage import grants as grant_store
from ..storage import people as people_store
from ..storage.db import Conn
from ..storage.keys import DIRECTORY_SPACE
from . import backend_auth, people
from .runtime import Runtime

#: SMART Backend Services: system access tokens live five minutes at most, whatever the settings say.
MAX_SYSTEM_TOKEN_LIFETIME = 300
#: SECURITY FHIR item 10: tokens acting for a person live an hour at most.
MAX_USER_TOKEN_LIFETIME = 3600

#: The clinical-scope context each kind of client may hold (SMART App Launch 2.x "Scopes").
CONTEXT_OF_KIND = {"system": "system", "app": "patient", "software": "user"}
#: Scopes that are not clinical-data scopes but that a person-facing client may ask for.
CONTEXT_SCOPES = {
    "app": ("launch/patient", "openid", "fhirUser", "offline_access", "online_access"),
    "software": ("openid", "fhirUser", "offline_access", "online_access"),
    "system": (),
}


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True)
class NewClient:
    client_id: str
    client_secret: str
    name: str
    scope: str


@dataclass(frozen=True)
class RegisteredClient:
    """A registered client; `client_secret` is returned once (None for key-based and public clients)."""

    client_id: str
    client_secret: str | None
    name: str
    scope: str
    kind: str
    auth_method: str
    redirect_uris: tuple[str, ...] = ()


def _check_scope(scope: str, kind: str) -> Scopes:
    parsed = Scopes.parse(scope)
    context = CONTEXT_OF_KIND[kind]
    unknown = [s for s in scope.split() if s not in parsed.raw]
    wrong = [g for g in parsed.grants if g.context != context]
    if unknown or wrong or not parsed.grants:
        raise BadRequest(
            f"portée non reconnue / unsupported scope: {' '.join(unknown) or '(vide / empty)'}; attendu / "
            f"expected {context}/ scopes, e.g. {context}/*.read, {context}/Patient.*, {context}/*.cruds"
        )
    return parsed


def _check_redirect_uri(uri: str) -> str:
    parts = urlsplit(uri)
    loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    # https, loopback http (native apps, RFC 8252 7.3) or a private-use scheme (RFC 8252 7.1, "com.x.app:/cb").
    private_scheme = (
        parts.scheme not in ("http", "https", "javascript", "data", "file") and "." in parts.scheme
    )
    if not (parts.scheme == "https" or loopback or private_scheme) or parts.fragment or len(uri) > 500:
        raise BadRequest(
            f"redirect_uri refusée / refused: {uri!r} (https, http://127.0.0.1 ou schéma privé, sans fragment)"
        )
    return uri


async def create_client(rt: Runtime, name: str, scope: str) -> NewClient:
    """Register a machine client (client credentials, `system/` scopes) authenticating with a secret. The
    secret is returned once and never stored in clear."""
    registered = await register_client(rt, name, scope)
    assert registered.client_secret is not None
    return NewClient(registered.client_id, registered.client_secret, registered.name, registered.scope)


async def register_client(
    rt: Runtime,
    name: str,
    scope: str,
    *,
    kind: str = "system",
    jwks: dict[str, Any] | None = None,
    jwks_uri: str | None = None,
    redirect_uris: Sequence[str] = (),
    public: bool = False,
) -> RegisteredClient:
    """Register a client. `kind`: "system" (Backend Services / client credentials), "app" (a holder's app),
    "software" (a professional's software). With `jwks` or `jwks_uri` it authenticates by `private_key_jwt`
    (public keys only; the URI must be https and public); `public` (apps only) has no credential at all
    (PKCE is its proof); otherwise a secret is generated and returned once."""
    name = name.strip()
    if not name or len(name) > 200:
        raise BadRequest("le nom du client est obligatoire (200 caractères au plus) / name is required")
    if kind not in CONTEXT_OF_KIND:
        raise BadRequest(f"type de client inconnu / unknown client kind {kind!r}: system, app ou software")
    parsed = _check_scope(scope, kind)
    uris = tuple(_check_redirect_uri(u) for u in redirect_uris)
    if kind == "system" and uris:
        raise BadRequest("un client système n'a pas de redirect_uri / a system client has no redirect_uri")
    if kind != "system" and not uris:
        raise BadRequest("au moins une redirect_uri est requise / at least one redirect_uri is required")
    if jwks is not None and jwks_uri is not None:
        raise BadRequest("--jwks ou --jwks-uri, pas les deux / one of jwks or jwks_uri")
    if public and (kind != "app" or jwks is not None or jwks_uri is not None):
        raise BadRequest("seules les applications peuvent être publiques / only apps may be public clients")
    if jwks is not None:
        try:
            backend_auth.key_set(jwks)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
    if jwks_uri is not None:
        try:
            await backend_auth.check_url(jwks_uri, allow_loopback=rt.settings.outbound_allow_loopback)
        except backend_auth.FetchRefused as exc:
            raise BadRequest(f"jwks_uri refusée / refused: {exc}") from exc
    secret = None
    if jwks is not None or jwks_uri is not None:
        method = "private_key_jwt"
    elif public:
        method = "none"
    else:
        method = "client_secret"
        secret = secrets.token_urlsafe(32)
    client_id = "cli_" + secrets.token_urlsafe(12)

    async def insert(conn: Conn) -> None:
        await store.insert_registered_client(
            conn,
            client_id=client_id,
            name=name,
            kind=kind,
            auth_method=method,
            scope=str(parsed),
            secret_hash=None if secret is None else digest(secret),
            jwks=jwks,
            jwks_uri=jwks_uri,
            redirect_uris=uris,
        )

    await rt.db.interaction("oauth_register_client", insert)
    return RegisteredClient(client_id, secret, name, str(parsed), kind, method, uris)


# --- client authentication (RFC 6749 2.3, RFC 7523 2.2) -----------------------------------------------------


class OAuthError(Exception):
    """An RFC 6749 section 5.2 error: (status, error code, description)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def _invalid_client(
    description: str = "authentification du client refusée / client authentication failed",
) -> OAuthError:
    return OAuthError("invalid_client", description, 401)


def _basic(headers: Mapping[str, str]) -> tuple[str, str] | None:
    auth = headers.get("authorization", "")
    if auth[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(auth[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid_client() from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise _invalid_client()
    return unquote(client_id), unquote(secret)  # RFC 6749 2.3.1: form-urlencoded before Basic


async def authenticate_client(
    rt: Runtime, headers: Mapping[str, str], form: Mapping[str, str], token_url: str
) -> store.ClientRow:
    """The client making this request, authenticated the way it registered: a secret (HTTP Basic or form),
    a signed assertion (`private_key_jwt`), or nothing for a public app (which must then send `client_id`).
    Raises OAuthError(invalid_client) otherwise."""
    basic = _basic(headers)
    assertion = form.get("client_assertion")
    assertion_type = form.get("client_assertion_type")
    used = sum(1 for present in (basic, form.get("client_secret"), assertion) if present)
    if used > 1:
        raise OAuthError(
            "invalid_request", "une seule méthode d'authentification / one authentication method"
        )
    if assertion is not None or assertion_type is not None:
        if assertion_type != backend_auth.ASSERTION_TYPE or not assertion:
            raise _invalid_client(
                "client_assertion_type non pris en charge / unsupported client_assertion_type"
            )
        claimed = backend_auth.unverified_issuer(assertion)
        form_id = form.get("client_id")
        if claimed is None or (form_id is not None and form_id != claimed):
            raise _invalid_client("assertion illisible / unreadable assertion")
        row = await _client(rt, claimed)
        try:
            await backend_auth.verify_assertion(rt, row, assertion, token_url)
        except backend_auth.InvalidAssertion as exc:
            raise _invalid_client(str(exc)) from exc
        return row
    if basic is not None or form.get("client_secret"):
        client_id, secret = basic if basic is not None else (form.get("client_id", ""), form["client_secret"])
        if basic is not None and form.get("client_id") not in (None, client_id):
            raise _invalid_client()
        row = await _client(rt, client_id)
        if (
            row.auth_method != "client_secret"
            or row.secret_hash is None
            or not hmac.compare_digest(digest(secret), row.secret_hash)
        ):
            raise _invalid_client()
        return row
    public_id = form.get("client_id")
    if public_id:
        row = await _client(rt, public_id)
        if row.auth_method == "none":
            return row
    raise _invalid_client()


async def _client(rt: Runtime, client_id: str) -> store.ClientRow:
    if not client_id or len(client_id) > 200:
        raise _invalid_client()
    row = await rt.db.interaction("oauth_get_client", store.get_client, client_id)
    if row is None or row.disabled:
        raise _invalid_client()
    return row


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


Response = tuple[int, dict[str, Any], list[tuple[str, str]]]


def _error(exc: OAuthError) -> Response:
    headers = [("WWW-Authenticate", 'Basic realm="espace-sante"')] if exc.status == 401 else []
    return exc.status, exc.body(), headers


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
        return _error(exc)
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
        return _error(exc)
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
    await withdraw(
        rt,
        grant,
        reason="refresh_reuse",
        by_kind="client",
        by_id=client.client_id,
        by_name=client.name,
        request_id=request_id,
    )


async def _space_of(conn: Conn, kind: str, ident: str) -> uuid.UUID:
    """The chain a record about this person goes to: a holder's space, else the directory's."""
    if kind == "holder":
        found = await people_store.patient_by_ins(conn, ident)
        if found is not None:
            return found.space_id
    return DIRECTORY_SPACE


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
            space = await _space_of(conn, person.kind, person.ident)
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


# --- grants: given at /authorize (services/smart.py), withdrawn by the person or on reuse ---------------------


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
                await _space_of(conn, grant.person_kind, grant.person_id),
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
        return _error(exc)
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
        return _error(exc)
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


# --- bearer tokens --------------------------------------------------------------------------------------------


async def resolve_bearer(rt: Runtime, token: str) -> Actor:
    """The actor behind a bearer token, or Unauthorized. Served from the process's token cache when the
    revocation listener is up (services/token_cache.py), else from the database."""
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
