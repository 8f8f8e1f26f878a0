"""Holders sign in with FranceConnect+ and professionals with Pro Santé Connect, against a real OpenID Connect
provider: discovery, code + PKCE, state, nonce, the ID token's signature and claims, the assurance level, and
the national identifier that designates the person (never an e-mail address)."""

from __future__ import annotations

import secrets
import time

import httpx
import pytest

from espace_sante.people import federation
from espace_sante.runtime import Runtime
from tests.factories import new_nir
from tests.federation.conftest import federated_sign_in, set_user, sign_in_at_provider
from tests.oauth.conftest import Holder, Professional, make_holder, make_professional


@pytest.fixture
async def holder(fhir: httpx.AsyncClient) -> Holder:
    return await make_holder(fhir)


@pytest.fixture
async def professional(fhir: httpx.AsyncClient) -> Professional:
    return await make_professional(fhir)


def _sub() -> str:
    return "fc-" + secrets.token_hex(8)


async def _trace(runtime: Runtime, action: str, detail_like: str) -> int:
    count: int = await runtime.db.fetchval(
        "test_fed_trace",
        "SELECT count(*) FROM audit_event WHERE action = $1 AND detail LIKE $2",
        action,
        detail_like,
    )
    return count


async def test_a_holder_signs_in_with_franceconnect_plus(
    web: httpx.AsyncClient, provider_url: str, runtime: Runtime, holder: Holder
) -> None:
    """Jeanne chooses FranceConnect+, authenticates at eIDAS substantial, comes back signed in: her account is
    created for her INS, the session records the level and the method, and the trace says so."""
    sub = _sub()
    await set_user(provider_url, sub, {"acr": "eidas2", "ins": holder.nir, "given_name": "Jeanne"})
    answer = await federated_sign_in(web, provider_url, "fcplus", sub, next_path="/compte/applications")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/compte/applications"
    assert "__Host-es_session" in answer.headers.get("set-cookie", "")
    page = await web.get("/compte/applications")
    assert page.status_code == 200, page.text
    assert "Applications connectées" in page.text
    row = await runtime.db.read(
        "test_session",
        lambda conn: conn.fetchrow(
            "SELECT s.acr, s.method FROM web_session s JOIN account a USING (account_id) "
            "WHERE a.kind = 'holder' AND a.actor_id = $1 ORDER BY s.created_at DESC LIMIT 1",
            holder.nir,
        ),
    )
    assert dict(row) == {"acr": "eidas2", "method": "federation:fcplus"}
    assert await _trace(runtime, "federation:signin", "fcplus|eidas2") >= 1
    # A second sign-in reuses the same account.
    again = await federated_sign_in(web, provider_url, "fcplus", sub)
    assert again.status_code == 303
    accounts = await runtime.db.fetchval(
        "test_accounts", "SELECT count(*) FROM account WHERE kind = 'holder' AND actor_id = $1", holder.nir
    )
    assert accounts == 1


async def test_a_professional_signs_in_with_pro_sante_connect(
    web: httpx.AsyncClient, provider_url: str, runtime: Runtime, professional: Professional
) -> None:
    """Pro Santé Connect names the professional by IdNat_PS ("8" + RPPS) in SubjectNameID."""
    sub = _sub()
    await set_user(provider_url, sub, {"acr": "eidas1", "SubjectNameID": "8" + professional.rpps})
    answer = await federated_sign_in(web, provider_url, "psc", sub)
    assert answer.status_code == 303, answer.text
    method = await runtime.db.fetchval(
        "test_pro_session",
        "SELECT s.method FROM web_session s JOIN account a USING (account_id) "
        "WHERE a.kind = 'practitioner' AND a.actor_id = $1",
        professional.rpps,
    )
    assert method == "federation:psc"


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"acr": "eidas1"}, "niveau de garantie insuffisant"),  # FranceConnect (not +): too weak
        ({"acr": "eidas2"}, "identifiant national"),  # no INS claim
        ({"acr": "eidas2", "email": "jeanne@example.org", "email_verified": True}, "identifiant national"),
        ({"acr": "eidas2", "ins": "123"}, "invalide"),
        ({"acr": "eidas2", "ins": "NO_PATIENT"}, "aucun dossier"),
    ],
)
async def test_sign_in_is_refused_without_a_strong_level_and_a_known_ins(
    web: httpx.AsyncClient,
    provider_url: str,
    runtime: Runtime,
    holder: Holder,
    claims: dict[str, object],
    why: str,
) -> None:
    """A weak level, no INS (an e-mail address is no substitute), a malformed INS, an INS with no record: no
    session, a French explanation, and a refusal in the trace."""
    if claims.get("ins") == "NO_PATIENT":
        claims = {**claims, "ins": new_nir()}
    sub = _sub()
    await set_user(provider_url, sub, claims)
    answer = await federated_sign_in(web, provider_url, "fcplus", sub)
    assert answer.status_code == 403, answer.text
    assert why in answer.text.lower()  # the service's words, as a sentence
    assert "__Host-es_session=" not in answer.headers.get("set-cookie", "").replace(
        '__Host-es_session=""', ""
    )
    assert (await web.get("/compte/applications")).status_code in (303, 307)
    assert await _trace(runtime, "federation:refused", "fcplus|%") >= 1


async def test_a_tampered_state_or_a_replayed_answer_is_refused(
    web: httpx.AsyncClient, provider_url: str, holder: Holder
) -> None:
    sub = _sub()
    await set_user(provider_url, sub, {"acr": "eidas2", "ins": holder.nir})
    start = await web.get("/connexion/federation/fcplus")
    back = await sign_in_at_provider(start.headers["location"], sub)
    forged = dict(back.params)
    forged["state"] = "x" + forged["state"]
    refused = await web.get(back.path, params=forged)
    assert refused.status_code == 403
    # The flow was single use: the genuine answer afterwards is refused too (sign in again).
    replay = await web.get(back.path, params=dict(back.params))
    assert replay.status_code == 403
    # And an answer without this browser's flow cookie is refused.
    start2 = await web.get("/connexion/federation/fcplus")
    back2 = await sign_in_at_provider(start2.headers["location"], sub)
    web.cookies.delete(federation.COOKIE)
    assert (await web.get(back2.path, params=dict(back2.params))).status_code == 403


async def test_the_id_token_is_checked(federated_runtime: Runtime, provider_url: str, holder: Holder) -> None:
    """ID tokens from the real provider: the right nonce passes; another nonce, a flipped signature, `alg:
    none`, or a token for another client are refused."""
    sub = _sub()
    await set_user(provider_url, sub, {"acr": "eidas2", "ins": holder.nir})
    provider = federation.providers(federated_runtime.settings)["fcplus"]
    meta = await federation.discover(federated_runtime, provider)

    async def id_token(nonce: str, client_id: str = provider.client_id) -> str:
        query = httpx.QueryParams(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": "https://127.0.0.1:8000/cb",
                "scope": "openid",
                "state": "s",
                "nonce": nonce,
            }
        )
        back = await sign_in_at_provider(f"{meta['authorization_endpoint']}?{query}", sub)
        async with httpx.AsyncClient() as client:
            tokens = await client.post(
                meta["token_endpoint"],
                data={
                    "grant_type": "authorization_code",
                    "code": back.params["code"],
                    "redirect_uri": "https://127.0.0.1:8000/cb",
                },
                auth=(client_id, "x"),
            )
        return str(tokens.json()["id_token"])

    good = await id_token("n-1")
    claims = await federation.verify_id_token(federated_runtime, provider, meta, good, "n-1")
    assert claims["ins"] == holder.nir and claims["acr"] == "eidas2"
    with pytest.raises(federation.FederationRefused) as nonce:
        await federation.verify_id_token(federated_runtime, provider, meta, good, "n-2")
    assert nonce.value.reason == "nonce"
    head, body, signature = good.split(".")
    flipped = f"{head}.{body}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    with pytest.raises(federation.FederationRefused) as bad_sig:
        await federation.verify_id_token(federated_runtime, provider, meta, flipped, "n-1")
    assert bad_sig.value.reason == "signature"
    import base64
    import json

    from tests.oauth.conftest import unsigned

    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    with pytest.raises(federation.FederationRefused) as none_alg:
        await federation.verify_id_token(
            federated_runtime, provider, meta, unsigned({"alg": "none"}, payload), "n-1"
        )
    assert none_alg.value.reason == "alg"
    other = await id_token("n-3", client_id="another-service")
    with pytest.raises(federation.FederationRefused) as aud:
        await federation.verify_id_token(federated_runtime, provider, meta, other, "n-3")
    assert aud.value.reason == "aud"
    assert time.time() < claims["exp"]


async def test_an_unknown_provider_is_a_clear_404(web: httpx.AsyncClient) -> None:
    assert (await web.get("/connexion/federation/ameli")).status_code == 404


async def test_discovery_in_production_is_https_and_public_only(runtime: Runtime) -> None:
    """Without the development loopback allowance, a provider on a private or loopback address, or on http,
    is never fetched."""
    for url in ("http://localhost:9", "https://10.0.0.1", "https://127.0.0.1"):
        provider = federation.Provider("fcplus", "FC+", url, "c", "s", "openid", "eidas2", "holder", "ins")
        with pytest.raises(federation.FederationRefused) as caught:
            await federation.discover(runtime, provider)
        assert caught.value.reason == "discovery"
