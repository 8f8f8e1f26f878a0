"""Sign-in through the national identity providers, as an OpenID Connect relying party (OpenID Connect Core
1.0, authorization code flow with PKCE S256, `state` and `nonce`): FranceConnect+ for holders, Pro Santé Connect
for professionals. Each is configured by its issuer URL and our client id and secret (settings `fcplus_*`,
`psc_*`); its endpoints and keys come from discovery (`<issuer>/.well-known/openid-configuration`, fetched
through the guarded fetch of oauth/backend.py: https and public addresses only in production).

The ID token is checked before anything is believed: signature by a key of the provider's JWKS with an
asymmetric algorithm (never `none` or an HMAC), `iss` = the discovered issuer, `aud` contains our client id
(`azp` too when several audiences), `exp` in the future, `iat` not in the future, `nonce` = the one we sent.
Then the assurance level: the returned `acr` must reach the configured level (FranceConnect+: eidas2 or
above; PGSSI-S asks eIDAS substantial for holders). The level is stored on the session.

Who the person is, for health data, comes from a national identifier, never from an e-mail address or from
names and birth date:
- Pro Santé Connect returns the professional's national identifier, IdNat_PS ("8" + RPPS for RPPS-registered
  professionals) in `SubjectNameID` (also `preferred_username`); we take the RPPS from it.
- FranceConnect(+) returns the pivot identity (given_name, family_name, birthdate, gender, birthplace,
  birthcountry), not the INS. The INS is obtained from the pivot identity by the INSi teleservice, outside this
  system; the deployment must therefore put it in a claim (setting `fcplus_ins_claim`, default `ins`), e.g.
  through an identity gateway that calls INSi. Without that claim, sign-in is refused: matching a health
  record on names, birth date or a "verified" e-mail is not acceptable.
The person must exist (a Patient with that INS, a directory Practitioner with that RPPS); otherwise sign-in is
refused. Their account is found by (kind, national identifier) or created without a password, and a session is
started through people/sessions.py with `method="federation:<provider>"`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from espace_sante import outbound
from espace_sante.access.actors import level_at_least
from espace_sante.access.scopes import Scopes
from espace_sante.errors import FhirError
from espace_sante.fhir.identifiers import IdentifierError, validate_nir, validate_rpps
from espace_sante.logs import get_logger
from espace_sante.outbound import FetchRefused
from espace_sante.people import accounts, sessions, stepup
from espace_sante.people import actors as people
from espace_sante.people.sessions import Session
from espace_sante.runtime import Runtime
from espace_sante.settings import Settings
from espace_sante.storage import audit as audit_store
from espace_sante.storage import grants as flow_store
from espace_sante.storage.audit import SERIOUS_FAILURE, SUCCESS, Record
from espace_sante.storage.keys import DIRECTORY_SPACE

log = get_logger(__name__)

#: Asymmetric signatures only for ID tokens.
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
FLOW_SECONDS = 600
DISCOVERY_TTL = 3600
CLOCK_SKEW = 60
COOKIE = "__Host-es_oidc"


@dataclass(frozen=True)
class Provider:
    name: Literal["fcplus", "psc"]
    label: str
    issuer: str
    client_id: str
    client_secret: str
    scope: str
    acr: str
    person_kind: Literal["holder", "practitioner"]
    claim: str


def providers(settings: Settings) -> dict[str, Provider]:
    """The configured providers (an issuer and a client id each), by name."""
    found: dict[str, Provider] = {}
    if settings.fcplus_issuer and settings.fcplus_client_id:
        found["fcplus"] = Provider(
            "fcplus",
            "FranceConnect+",
            settings.fcplus_issuer.rstrip("/"),
            settings.fcplus_client_id,
            settings.fcplus_client_secret,
            settings.fcplus_scope,
            settings.fcplus_acr,
            "holder",
            settings.fcplus_ins_claim,
        )
    if settings.psc_issuer and settings.psc_client_id:
        found["psc"] = Provider(
            "psc",
            "Pro Santé Connect",
            settings.psc_issuer.rstrip("/"),
            settings.psc_client_id,
            settings.psc_client_secret,
            settings.psc_scope,
            settings.psc_acr,
            "practitioner",
            settings.psc_rpps_claim,
        )
    return found


class FederationRefused(Exception):
    """Sign-in refused; `message` (French / English) is shown to the person, `reason` is a code for the trace."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _refused(reason: str, fr: str, en: str) -> FederationRefused:
    return FederationRefused(reason, f"{fr} / {en}")


# --- discovery -----------------------------------------------------------------------------------------------

_DISCOVERY: dict[str, tuple[dict[str, Any], float]] = {}


async def discover(rt: Runtime, provider: Provider) -> dict[str, Any]:
    """The provider's metadata (cached per process for an hour); its `issuer` must be the configured one."""
    cached = _DISCOVERY.get(provider.issuer)
    if cached is not None and time.monotonic() - cached[1] < DISCOVERY_TTL:
        return cached[0]
    try:
        meta = await outbound.fetch_json(
            provider.issuer + "/.well-known/openid-configuration",
            allow_loopback=rt.settings.outbound_allow_loopback,
        )
    except FetchRefused as exc:
        raise _refused(
            "discovery", "fournisseur d'identité indisponible", "identity provider unavailable"
        ) from exc
    needed = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
    if not isinstance(meta, dict) or any(not isinstance(meta.get(k), str) for k in needed):
        raise _refused("discovery", "fournisseur d'identité mal configuré", "identity provider misconfigured")
    if meta["issuer"].rstrip("/") != provider.issuer:
        raise _refused("discovery", "émetteur inattendu", "unexpected issuer")
    _DISCOVERY[provider.issuer] = (meta, time.monotonic())
    return meta


def callback_url(settings: Settings, name: str) -> str:
    return f"{settings.base_url.rstrip('/')}/connexion/federation/{name}/retour"


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


# --- the flow ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """Where to send the browser, and the secret it keeps (cookie) to finish the flow."""

    location: str
    flow_secret: str


async def begin(rt: Runtime, name: str, next_path: str = "") -> Started:
    """Start a sign-in with provider `name`: state, nonce and PKCE verifier kept server-side (10 minutes)."""
    provider = providers(rt.settings).get(name)
    if provider is None:
        raise _refused("unknown_provider", "fournisseur d'identité inconnu", "unknown identity provider")
    meta = await discover(rt, provider)
    state, nonce, verifier, secret = (secrets.token_urlsafe(32) for _ in range(4))
    await rt.db.interaction(
        "federation_begin",
        flow_store.insert_flow,
        hashlib.sha256(secret.encode()).digest(),
        provider=name,
        state=state,
        nonce=nonce,
        code_verifier=verifier,
        next_path=next_path,
        expires_at=datetime.now(UTC) + timedelta(seconds=FLOW_SECONDS),
    )
    query = urlencode(
        {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": callback_url(rt.settings, name),
            "scope": provider.scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": _challenge(verifier),
            "code_challenge_method": "S256",
            "acr_values": provider.acr,
            # OpenID Connect Core 3.1.2.1: the provider re-authenticates the person if its own sign-in is
            # older, and says when it was (`auth_time`): a session opened here counts from then, so a sign-in
            # through the provider is a proof recent enough for what cannot be undone (people/stepup.py).
            "max_age": str(stepup.WINDOW_SECONDS),
        }
    )
    endpoint = str(meta["authorization_endpoint"])
    return Started(endpoint + ("&" if "?" in endpoint else "?") + query, secret)


@dataclass(frozen=True)
class Finished:
    session_secret: str
    session: Session
    next_path: str


async def finish(
    rt: Runtime,
    name: str,
    flow_secret: str,
    params: dict[str, str],
    *,
    user_agent: str = "",
    ip: str = "",
    request_id: str = "",
) -> Finished:
    """The provider sent the browser back: check everything, find the person, start their session. Every
    refusal is traced (directory chain) and raised as FederationRefused."""
    try:
        return await _finish(rt, name, flow_secret, params, user_agent, ip, request_id)
    except FederationRefused as exc:
        await _trace(
            rt, "federation:refused", SERIOUS_FAILURE, "federation", name, f"{name}|{exc.reason}", request_id
        )
        log.info("federation.refused", provider=name, reason=exc.reason)
        raise


async def _finish(
    rt: Runtime,
    name: str,
    flow_secret: str,
    params: dict[str, str],
    user_agent: str,
    ip: str,
    request_id: str,
) -> Finished:
    flow = None
    if flow_secret and len(flow_secret) <= 100:
        flow = await rt.db.interaction(
            "federation_take_flow", flow_store.take_flow, hashlib.sha256(flow_secret.encode()).digest()
        )
    if flow is None or flow.provider != name:
        raise _refused("no_flow", "connexion expirée, recommencez", "sign-in expired, start again")
    if not hmac.compare_digest(params.get("state", "").encode(), flow.state.encode()):
        raise _refused("state", "réponse inattendue du fournisseur", "unexpected answer from the provider")
    if params.get("error"):
        raise _refused("provider_error", "connexion annulée ou refusée", "sign-in cancelled or refused")
    code = params.get("code", "")
    if not code or len(code) > 2000:
        raise _refused("no_code", "réponse incomplète du fournisseur", "incomplete answer from the provider")
    provider = providers(rt.settings).get(name)
    if provider is None:
        raise _refused("unknown_provider", "fournisseur d'identité inconnu", "unknown identity provider")
    meta = await discover(rt, provider)
    try:
        tokens = await outbound.fetch_json(
            str(meta["token_endpoint"]),
            allow_loopback=rt.settings.outbound_allow_loopback,
            method="POST",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": callback_url(rt.settings, name),
                "code_verifier": flow.code_verifier,
            },
            auth=(provider.client_id, provider.client_secret),
        )
    except FetchRefused as exc:
        raise _refused("token", "échange refusé par le fournisseur", "token exchange refused") from exc
    if not isinstance(tokens, dict) or not isinstance(tokens.get("id_token"), str):
        raise _refused("token", "échange refusé par le fournisseur", "token exchange refused")
    claims = await verify_id_token(rt, provider, meta, tokens["id_token"], flow.nonce)
    acr = claims.get("acr")
    if not isinstance(acr, str) or not level_at_least(acr, provider.acr):
        raise _refused(
            "acr",
            f"niveau de garantie insuffisant (requis : {provider.acr})",
            f"assurance level too low (required: {provider.acr})",
        )
    value = claims.get(provider.claim)
    if (
        value is None
        and isinstance(meta.get("userinfo_endpoint"), str)
        and isinstance(tokens.get("access_token"), str)
    ):
        value = (await _userinfo(rt, provider, meta, tokens["access_token"], str(claims["sub"]))).get(
            provider.claim
        )
    actor_id = _national_id(provider, value)
    try:
        await people.actor_for(rt, provider.person_kind, actor_id, scopes=Scopes.none())
    except FhirError as exc:
        raise _refused(
            "no_person",
            "aucun dossier ne correspond à cette identité",
            "no record matches this identity",
        ) from exc
    account = await accounts.find_by_actor(rt, provider.person_kind, actor_id)
    if account is None:
        login = f"{name}-{hashlib.sha256(str(claims['sub']).encode()).hexdigest()[:24]}"
        try:
            created = await accounts.create(
                rt,
                kind=provider.person_kind,
                actor_id=actor_id,
                login=login,
                password=None,
                request_id=request_id,
            )
        except accounts.AccountError as exc:
            raise _refused("account", "compte indisponible", "account unavailable") from exc
        account_id = created.account_id
    else:
        if account.disabled:
            raise _refused("disabled", "compte désactivé", "account disabled")
        account_id = account.account_id
    try:
        secret, session = await sessions.start(
            rt,
            account_id,
            acr=acr,
            method=f"federation:{name}",
            user_agent=user_agent,
            ip=ip,
            request_id=request_id,
            auth_time=_auth_time(claims),
        )
    except ValueError as exc:
        raise _refused("session", "compte indisponible", "account unavailable") from exc
    await _trace(
        rt, "federation:signin", SUCCESS, provider.person_kind, actor_id, f"{name}|{acr}", request_id
    )
    return Finished(secret, session, flow.next_path)


def _national_id(provider: Provider, value: object) -> str:
    """The INS or the RPPS from the provider's claim (refused when absent or malformed)."""
    if not isinstance(value, str) or not value or len(value) > 64:
        raise _refused(
            "no_identifier",
            "le fournisseur n'a pas transmis d'identifiant national",
            "the provider sent no national identifier",
        )
    text = value.strip()
    try:
        if provider.person_kind == "holder":
            validate_nir(text)
            return text
        if len(text) == 12 and text.startswith("8"):  # IdNat_PS: "8" + RPPS
            text = text[1:]
        validate_rpps(text)
        return text
    except IdentifierError as exc:
        raise _refused(
            "bad_identifier", "identifiant national invalide", "invalid national identifier"
        ) from exc


async def _keys(rt: Runtime, meta: dict[str, Any], kid: str | None) -> Any:
    url = str(meta["jwks_uri"])
    for refresh in (False, True):
        try:
            value = await outbound.remote_key_set(rt, url, refresh=refresh)
            keys = KeySet.import_key_set(value)  # type: ignore[arg-type]
        except (FetchRefused, JoseError, ValueError, TypeError, KeyError) as exc:
            raise _refused("jwks", "clés du fournisseur indisponibles", "provider keys unavailable") from exc
        found = [k for k in keys if kid is None or k.kid == kid]
        if len(found) == 1 or (found and kid is not None):
            return found[0]
    raise _refused("kid", "signature inconnue", "unknown signing key")


async def verify_id_token(
    rt: Runtime, provider: Provider, meta: dict[str, Any], id_token: str, nonce: str
) -> dict[str, Any]:
    """The ID token's claims after every check of OpenID Connect Core 3.1.3.7, or FederationRefused."""
    if len(id_token) > 16 * 1024 or id_token.count(".") != 2:
        raise _refused("id_token", "jeton d'identité illisible", "unreadable ID token")
    try:
        header = outbound.jwt_segment(id_token.split(".")[0])
    except ValueError as exc:
        raise _refused("id_token", "jeton d'identité illisible", "unreadable ID token") from exc
    alg = header.get("alg")
    if alg not in ID_TOKEN_ALGORITHMS:
        raise _refused("alg", "algorithme refusé", "algorithm refused")
    kid = header.get("kid") if isinstance(header.get("kid"), str) else None
    key = await _keys(rt, meta, kid)
    try:
        claims: dict[str, Any] = jwt.decode(id_token, key, algorithms=[str(alg)]).claims
    except (JoseError, ValueError, TypeError) as exc:
        raise _refused("signature", "signature invalide", "invalid signature") from exc
    now = time.time()
    if claims.get("iss") != meta["issuer"]:
        raise _refused("iss", "émetteur inattendu", "unexpected issuer")
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if provider.client_id not in audiences:
        raise _refused("aud", "jeton destiné à un autre service", "token meant for another service")
    if len(audiences) > 1 and claims.get("azp") != provider.client_id:
        raise _refused("azp", "jeton destiné à un autre service", "token meant for another service")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or exp <= now - CLOCK_SKEW:
        raise _refused("exp", "jeton d'identité expiré", "ID token expired")
    iat = claims.get("iat")
    if iat is not None and (not isinstance(iat, int | float) or iat > now + CLOCK_SKEW):
        raise _refused("iat", "jeton d'identité daté du futur", "ID token from the future")
    if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(
        str(claims["nonce"]).encode(), nonce.encode()
    ):
        raise _refused("nonce", "réponse rejouée ou inattendue", "replayed or unexpected answer")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise _refused("sub", "jeton d'identité incomplet", "incomplete ID token")
    return claims


#: The proof of a provider that did not say when the person authenticated: long ago.
NOT_RECENT = datetime(1970, 1, 1, tzinfo=UTC)


def _auth_time(claims: dict[str, Any]) -> datetime:
    """When the provider authenticated the person (`auth_time`). We always send `max_age`, which makes the
    claim required (OpenID Connect Core 3.1.2.1): without it (or with a value that is no time) nothing says
    the person was asked again, so the session opens but its proof is not recent (`NOT_RECENT`: a step-up
    is needed for what cannot be undone, people/stepup.py). Later than now is not believed: storage keeps the
    earlier of it and now."""
    value = claims.get("auth_time")
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e11:
        return datetime.fromtimestamp(value, UTC)
    return NOT_RECENT


async def _userinfo(
    rt: Runtime, provider: Provider, meta: dict[str, Any], access_token: str, sub: str
) -> dict[str, Any]:
    """UserInfo (OpenID Connect Core 5.3), plain JSON or a signed JWT; its `sub` must be the ID token's."""
    try:
        answer = await outbound.fetch_json(
            str(meta["userinfo_endpoint"]),
            allow_loopback=rt.settings.outbound_allow_loopback,
            headers={"Authorization": f"Bearer {access_token}"},
        )
    except FetchRefused as exc:
        raise _refused(
            "userinfo", "informations du fournisseur indisponibles", "userinfo unavailable"
        ) from exc
    if isinstance(answer, str):  # application/jwt: signed by the provider like the ID token
        try:
            header = outbound.jwt_segment(answer.split(".")[0]) if answer.count(".") == 2 else {}
        except ValueError as exc:  # a provider's garbled answer refuses the sign-in
            raise _refused(
                "userinfo", "informations du fournisseur illisibles", "unreadable userinfo"
            ) from exc
        alg = header.get("alg")
        if alg not in ID_TOKEN_ALGORITHMS:
            raise _refused("userinfo", "informations du fournisseur illisibles", "unreadable userinfo")
        key = await _keys(rt, meta, header.get("kid") if isinstance(header.get("kid"), str) else None)
        try:
            answer = jwt.decode(answer, key, algorithms=[str(alg)]).claims
        except (JoseError, ValueError, TypeError) as exc:
            raise _refused(
                "userinfo", "informations du fournisseur illisibles", "unreadable userinfo"
            ) from exc
    if not isinstance(answer, dict) or answer.get("sub") != sub:
        raise _refused("userinfo", "informations du fournisseur incohérentes", "inconsistent userinfo")
    return answer


async def _trace(
    rt: Runtime, action: str, outcome: str, kind: str, actor_id: str, detail: str, request_id: str
) -> None:
    record = Record(
        action=action,
        outcome=outcome,
        actor_kind=kind,
        actor_id=actor_id,
        detail=detail,
        request_id=request_id,
    )
    await rt.db.interaction("federation_trace", audit_store.append, DIRECTORY_SPACE, record)
