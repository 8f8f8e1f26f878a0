"""OAuth 2 clients: registration (machine clients, apps, professionals' software, each with the SMART scopes
of its kind) and client authentication at the token endpoint (RFC 6749 2.3: a secret by HTTP Basic or form, a
`private_key_jwt` assertion (RFC 7523 2.2, oauth/backend.py) or none for a public app, whose proof is PKCE).

Client secrets are 256-bit random values stored as SHA-256 digests: with that much entropy a slow password hash
adds nothing."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from espace_sante import outbound
from espace_sante.access.scopes import Scopes
from espace_sante.errors import BadRequest
from espace_sante.fhir.text import bidi_control, bidi_message
from espace_sante.oauth import backend as backend_auth
from espace_sante.runtime import Runtime
from espace_sante.storage import clients as store
from espace_sante.storage.db import Conn

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
    if (hidden := bidi_control(name)) is not None:
        # The name is shown to the holder who connects the app and in her trace: it must read as it is.
        raise BadRequest(bidi_message("nom du client / client name", hidden))
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
            outbound.key_set(jwks)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
    if jwks_uri is not None:
        try:
            await outbound.check_url(jwks_uri, allow_loopback=rt.settings.outbound_allow_loopback)
        except outbound.FetchRefused as exc:
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


Response = tuple[int, dict[str, Any], list[tuple[str, str]]]


def error_response(exc: OAuthError) -> Response:
    headers = [("WWW-Authenticate", 'Basic realm="espace-sante"')] if exc.status == 401 else []
    return exc.status, exc.body(), headers
