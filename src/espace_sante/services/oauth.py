"""OAuth 2 for machine clients: registration, the client-credentials grant (RFC 6749 section 4.4) with SMART
`system/` scopes, and bearer-token resolution.

The protocol rules come from authlib's generic server classes. authlib is synchronous and its servers are for
Flask/Django, so we fetch what it needs (the client row) before calling it, run it on a neutral request object,
and persist what it produced afterwards; no I/O happens inside authlib (STACK.md, authlib row).

Client secrets and access tokens are 256-bit random values and are stored as SHA-256 digests: with that much
entropy a slow password hash adds nothing, and every API request verifies a token."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant

from ..access.actors import Actor
from ..access.scopes import Scopes
from ..errors import BadRequest, FhirError, Unauthorized
from ..storage import clients as store
from . import people
from .runtime import Runtime

#: SMART Backend Services: system access tokens live five minutes at most, whatever the settings say.
MAX_SYSTEM_TOKEN_LIFETIME = 300


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True)
class NewClient:
    client_id: str
    client_secret: str
    name: str
    scope: str


async def create_client(rt: Runtime, name: str, scope: str) -> NewClient:
    """Register a machine client. The secret is returned once and never stored in clear."""
    name = name.strip()
    if not name or len(name) > 200:
        raise BadRequest("le nom du client est obligatoire (200 caractères au plus) / name is required")
    parsed = Scopes.parse(scope)
    unknown = [s for s in scope.split() if s not in parsed.raw]
    if unknown or not parsed.grants:
        raise BadRequest(
            f"portée non reconnue / unsupported scope: {' '.join(unknown) or '(vide / empty)'}; "
            "attendu / expected e.g. system/*.read, system/Patient.*, system/*.cruds"
        )
    client = NewClient("cli_" + secrets.token_urlsafe(12), secrets.token_urlsafe(32), name, str(parsed))
    await rt.db.interaction(
        "oauth_create_client",
        store.insert_client,
        client.client_id,
        client.name,
        digest(client.client_secret),
        client.scope,
    )
    return client


class _Client(ClientMixin):  # type: ignore[misc]
    def __init__(self, row: store.ClientRow) -> None:
        self.row = row

    def get_client_id(self) -> str:
        return self.row.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        registered = Scopes.parse(self.row.scope)
        if not scope:
            return str(registered)
        granted = Scopes.parse(scope).within(registered)
        if not granted.grants:
            raise InvalidScopeError("none of the requested scopes is granted to this client")
        return str(granted)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(digest(client_secret), self.row.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


class _ClientCredentials(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]  # noqa: RUF012


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


class _Server(AuthorizationServer):  # type: ignore[misc]
    """One request's server: the client is prefetched, the issued token is collected for saving."""

    def __init__(self, client: store.ClientRow | None, lifetime: int) -> None:
        super().__init__()
        self._client = client
        self.issued: list[tuple[dict[str, Any], str]] = []
        self.register_grant(_ClientCredentials)
        self.register_token_generator("default", self._generate)
        self._lifetime = lifetime

    def query_client(self, client_id: str) -> _Client | None:
        if self._client is None or self._client.client_id != client_id or self._client.disabled:
            return None
        return _Client(self._client)

    def _generate(
        self,
        grant_type: str,
        client: _Client,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        # SMART Backend Services: system tokens are short-lived (<= 300 s) and have no refresh token.
        return {
            "token_type": "Bearer",
            "access_token": secrets.token_urlsafe(32),
            "expires_in": self._lifetime,
            "scope": client.get_allowed_scope(scope),
        }

    def save_token(self, token: dict[str, Any], request: _Request) -> None:
        self.issued.append((token, request.client.get_client_id()))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> tuple[int, Any, Any]:
        return status, body, headers


def _client_id_of(headers: Mapping[str, str], form: Sequence[tuple[str, str]]) -> str | None:
    auth = headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        from urllib.parse import unquote

        return unquote(decoded.partition(":")[0])  # RFC 6749 2.3.1: form-urlencoded before Basic
    return dict(form).get("client_id")


async def token_endpoint(
    rt: Runtime, uri: str, headers: Mapping[str, str], form: Sequence[tuple[str, str]]
) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
    """POST /oauth/token. Returns (status, JSON body, headers) as RFC 6749 section 5 describes."""
    client_id = _client_id_of(headers, form)
    row = None
    if client_id:
        row = await rt.db.interaction("oauth_get_client", store.get_client, client_id)
    server = _Server(row, max(1, min(rt.settings.system_token_lifetime, MAX_SYSTEM_TOKEN_LIFETIME)))
    status, body, out_headers = server.create_token_response(_Request(uri, headers, form))
    for token, owner in server.issued:
        expires = datetime.now(UTC) + timedelta(seconds=int(token["expires_in"]))
        await rt.db.interaction(
            "oauth_issue_token",
            store.insert_token,
            digest(token["access_token"]),
            owner,
            token["scope"],
            expires,
        )
    return status, dict(body), list(out_headers)


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
        return Actor("app", row.client_id, scopes, row.name, subject=row.subject, acr=row.acr)
    if row.actor_kind in people.PERSON_KINDS and row.actor_id:
        kind = people.PERSON_KINDS[people.PERSON_KINDS.index(row.actor_kind)]  # narrows str to ActorKind
        try:
            return await people.actor_for(
                rt, kind, row.actor_id, scopes=scopes, acr=row.acr, via=row.client_id or ""
            )
        except FhirError as exc:  # the person left the directory since: the token no longer works
            raise Unauthorized("jeton d'accès invalide ou expiré / invalid or expired access token") from exc
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
