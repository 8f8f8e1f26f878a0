"""SMART Backend Services client authentication (SMART App Launch 2.x "Backend Services", RFC 7523 section 3
and section 2.2 `private_key_jwt`)
(a client's registered `jwks_uri`, an identity provider's discovery document and keys).

An assertion is checked in this order, refusing as early as possible (SECURITY V3 3.5.3, FHIR item 10):
header `alg` in the allow-list (RS384, ES384: never `none` or an HMAC), `kid` present, `jku` absent or equal to
the registered `jwks_uri` (never fetched from the assertion); the key with that `kid` from the registered JWKS;
the signature; `iss` = `sub` = client id; `aud` = our token URL; `exp` in the future and at most five minutes
ahead; `jti` never seen before (PostgreSQL, shared by every process, kept until the assertion expires).

The keys of a registered `jwks_uri` are fetched through `outbound.py`, the one guarded way this server fetches
a URL it did not make up."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from espace_sante import outbound
from espace_sante.outbound import FetchRefused, key_set, remote_key_set
from espace_sante.runtime import Runtime
from espace_sante.storage import clients as store
from espace_sante.storage.clients import ClientRow

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: SMART Backend Services: servers SHALL support RS384 and ES384; nothing else is accepted.
ALGORITHMS = ("RS384", "ES384")
_KEY_TYPES = {"RS384": "RSA", "ES384": "EC"}
MAX_ASSERTION_BYTES = 8 * 1024
MAX_ASSERTION_LIFETIME = 300
CLOCK_SKEW = 5


class InvalidAssertion(Exception):
    """The client assertion is refused (RFC 6749 `invalid_client`). The message is safe to show."""


# --- client assertions ---------------------------------------------------------------------------------------


def _b64json(segment: str) -> dict[str, Any]:
    try:
        return outbound.jwt_segment(segment)
    except ValueError as exc:
        raise InvalidAssertion("assertion illisible / unreadable assertion") from exc


def unverified_issuer(assertion: str) -> str | None:
    """The `iss` an assertion claims, to find its client before anything is verified (None if unreadable)."""
    if len(assertion) > MAX_ASSERTION_BYTES or assertion.count(".") != 2:
        return None
    try:
        claims = _b64json(assertion.split(".")[1])
    except InvalidAssertion:
        return None
    iss = claims.get("iss")
    return iss if isinstance(iss, str) and 0 < len(iss) <= 200 else None


async def verify_assertion(rt: Runtime, client: ClientRow, assertion: str, token_url: str) -> None:
    """Authenticate `client` by its signed assertion, or raise InvalidAssertion. Records the `jti`."""
    if client.auth_method != "private_key_jwt":
        raise InvalidAssertion(
            "ce client ne s'authentifie pas par assertion / this client does not use private_key_jwt"
        )
    if len(assertion) > MAX_ASSERTION_BYTES or assertion.count(".") != 2:
        raise InvalidAssertion("assertion illisible / unreadable assertion")
    header = _b64json(assertion.split(".")[0])
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise InvalidAssertion(
            f"algorithme refusé / algorithm refused: {str(alg)[:20]!r} (RS384 ou/or ES384)"
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidAssertion("`kid` manquant / missing `kid`")
    jku = header.get("jku")
    if jku is not None and (client.jwks_uri is None or jku != client.jwks_uri):
        raise InvalidAssertion(
            "`jku` différent de l'adresse enregistrée / `jku` is not the registered jwks_uri"
        )

    async def keys_with(refresh: bool) -> KeySet:
        if client.jwks is not None:
            return key_set(client.jwks)
        assert client.jwks_uri is not None
        try:
            return key_set(await remote_key_set(rt, client.jwks_uri, refresh=refresh))
        except (FetchRefused, ValueError) as exc:
            raise InvalidAssertion(f"clés du client indisponibles / client keys unavailable: {exc}") from exc

    keys = await keys_with(False)
    found = [k for k in keys if k.kid == kid]
    if not found and client.jwks is None:
        keys = await keys_with(True)
        found = [k for k in keys if k.kid == kid]
    if not found:
        raise InvalidAssertion("`kid` inconnu / unknown `kid`")
    key = found[0]
    if key.key_type != _KEY_TYPES[alg]:
        raise InvalidAssertion("clé incompatible avec l'algorithme / key does not match the algorithm")
    try:
        token = jwt.decode(assertion, key, algorithms=[alg])
    except (JoseError, ValueError, TypeError) as exc:
        raise InvalidAssertion("signature invalide / invalid signature") from exc
    claims = token.claims
    if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
        raise InvalidAssertion(
            "`iss` et `sub` doivent être le client_id / `iss` and `sub` must be the client_id"
        )
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if token_url not in audiences:
        raise InvalidAssertion("`aud` doit être l'adresse du point de jeton / `aud` must be the token URL")
    exp = claims.get("exp")
    now = int(time.time())
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise InvalidAssertion("`exp` manquant / missing `exp`")
    if exp <= now - CLOCK_SKEW:
        raise InvalidAssertion("assertion expirée / assertion expired")
    if exp > now + MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
        raise InvalidAssertion("`exp` à plus de 5 minutes / `exp` more than five minutes ahead")
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is not None and (not isinstance(value, int | float) or value > now + CLOCK_SKEW):
            raise InvalidAssertion(f"`{name}` dans le futur / `{name}` in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 255:
        raise InvalidAssertion("`jti` manquant / missing `jti`")
    fresh = await rt.db.interaction(
        "oauth_use_jti", store.use_jti, client.client_id, jti, datetime.fromtimestamp(exp + CLOCK_SKEW, UTC)
    )
    if not fresh:
        raise InvalidAssertion("`jti` déjà utilisé / `jti` already used (replay)")
