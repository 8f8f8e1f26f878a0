"""SMART Backend Services: a professional's software or a feed registered with its public keys signs a short
assertion (`private_key_jwt`, RFC 7523) instead of sending a secret, and gets a five-minute `system/` token.
Every forgery of SECURITY V3 3.5.3 and FHIR items 9 and 10 is refused with `invalid_client`."""

from __future__ import annotations

import hashlib
import time

import httpx
import pytest

from espace_sante.errors import BadRequest
from espace_sante.oauth import clients as oauth_clients
from espace_sante.runtime import Runtime
from tests.oauth.conftest import (
    APP_REDIRECT,
    TOKEN_URL,
    KeyServer,
    assertion,
    backend_form,
    bearer,
    ec_key,
    jwks,
    rsa_key,
    unsigned,
)


async def test_a_feed_signs_an_assertion_and_gets_a_short_system_token(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A laboratory registers its RS384 public key, signs an assertion and gets a Bearer token: 300 s at most,
    no refresh token, its system scopes; the token reads data and the database holds only its digest."""
    key = rsa_key()
    client = await oauth_clients.register_client(runtime, "Laboratoire clé", "system/*.rs", jwks=jwks(key))
    assert client.client_secret is None and client.auth_method == "private_key_jwt"
    response = await http.post("/oauth/token", data=backend_form(assertion(key, client.client_id)))
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["token_type"] == "Bearer"
    assert 0 < token["expires_in"] <= 300
    assert token["scope"] == "system/*.rs"
    assert "refresh_token" not in token
    assert response.headers["cache-control"] == "no-store"
    assert (
        await bearer(http, token["access_token"]).get("/Patient", params={"_count": "1"})
    ).status_code == 200
    held = await runtime.db.fetchval(
        "test_digest",
        "SELECT count(*) FROM oauth_token WHERE token_hash = $1",
        hashlib.sha256(token["access_token"].encode()).digest(),
    )
    assert held == 1


async def test_an_es384_key_at_a_registered_jwks_uri(
    loopback: tuple[Runtime, httpx.AsyncClient], key_server: KeyServer
) -> None:
    """The keys may live at the client's registered `jwks_uri` (fetched by us, cached); an assertion naming
    that same URL in `jku` is fine."""
    rt, http = loopback
    key = ec_key()
    key_server.body = jwks(key)
    client = await oauth_clients.register_client(
        rt, "Logiciel à jwks_uri", "system/Patient.rs", jwks_uri=key_server.url
    )
    first = await http.post(
        "/oauth/token", data=backend_form(assertion(key, client.client_id, header={"jku": key_server.url}))
    )
    assert first.status_code == 200, first.text
    second = await http.post("/oauth/token", data=backend_form(assertion(key, client.client_id)))
    assert second.status_code == 200, second.text
    assert key_server.hits == 1  # cached


async def test_a_jku_other_than_the_registered_url_is_never_fetched(
    http: httpx.AsyncClient, runtime: Runtime, key_server: KeyServer
) -> None:
    """SECURITY FHIR item 9: an attacker points `jku` at a server of their choice holding their own key. We
    refuse without fetching it: the attacker's listener stays silent."""
    real = rsa_key("real")
    forged = rsa_key("real")  # the attacker's key, same kid
    key_server.body = jwks(forged)
    client = await oauth_clients.register_client(runtime, "Cible jku", "system/*.rs", jwks=jwks(real))
    response = await http.post(
        "/oauth/token",
        data=backend_form(assertion(forged, client.client_id, header={"jku": key_server.url})),
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert key_server.hits == 0


async def _refused(http: httpx.AsyncClient, token: str) -> str:
    response = await http.post("/oauth/token", data=backend_form(token))
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["error"] == "invalid_client"
    assert "access_token" not in body
    return str(body["error_description"])


async def test_forged_assertions_are_refused(http: httpx.AsyncClient, runtime: Runtime) -> None:
    """`alg: none`, an HMAC signed with the public key as secret, an unknown `kid`, another key with the
    right `kid`, RS256 instead of RS384, an `iss` that is not the `sub`: all invalid_client."""
    key = rsa_key("k1")
    client = await oauth_clients.register_client(runtime, "Cible forgée", "system/*.rs", jwks=jwks(key))
    cid = client.client_id
    now = int(time.time())
    claims = {"iss": cid, "sub": cid, "aud": TOKEN_URL, "exp": now + 200, "jti": "forged-1"}
    assert "none" in await _refused(http, unsigned({"alg": "none", "kid": "k1"}, claims))
    public_pem = key.as_pem(private=False)
    import hmac as _hmac

    header = {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    signing_input = unsigned(header, claims).rsplit(".", 1)[0]
    mac = _hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    assert "HS256" in await _refused(http, unsigned(header, claims, mac))
    assert "kid" in await _refused(http, assertion(rsa_key("k2"), cid))
    assert "signature" in await _refused(http, assertion(rsa_key("k1"), cid))
    assert "RS256" in await _refused(http, assertion(key, cid, alg="RS256"))
    assert "sub" in await _refused(http, assertion(key, cid, sub="someone-else"))
    assert "kid" in await _refused(http, unsigned({"alg": "RS384"}, claims, b"x"))
    assert "unreadable" in await _refused(http, "not.a-jwt")


async def test_time_audience_and_replay(http: httpx.AsyncClient, runtime: Runtime) -> None:
    """An expired assertion, one valid for more than five minutes, one meant for another server, and the
    same `jti` twice: refused. A fresh `jti` works again."""
    key = ec_key()
    client = await oauth_clients.register_client(runtime, "Cible temps", "system/*.rs", jwks=jwks(key))
    cid = client.client_id
    assert "expired" in await _refused(http, assertion(key, cid, exp_in=-30))
    assert "five minutes" in await _refused(http, assertion(key, cid, exp_in=600))
    assert "aud" in await _refused(http, assertion(key, cid, aud="https://autre.example.org/oauth/token"))
    once = assertion(key, cid, jti="only-once")
    first = await http.post("/oauth/token", data=backend_form(once))
    assert first.status_code == 200, first.text
    assert "replay" in await _refused(http, once)
    again = await http.post("/oauth/token", data=backend_form(assertion(key, cid)))
    assert again.status_code == 200, again.text


async def test_the_jti_table_is_shared_and_expires(runtime: Runtime) -> None:
    """The replay table lives in PostgreSQL (every process sees it); an expired entry can be reused."""
    stored = await runtime.db.fetchval(
        "test_jti_count", "SELECT count(*) FROM oauth_jti WHERE jti = 'only-once'"
    )
    assert stored == 1


async def test_assertion_clients_cannot_use_a_secret_and_vice_versa(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    key = rsa_key()
    keyed = await oauth_clients.register_client(runtime, "Clé seule", "system/*.rs", jwks=jwks(key))
    secret = await oauth_clients.create_client(runtime, "Secret seul", "system/*.rs")
    by_secret = await http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(keyed.client_id, "guess")
    )
    assert by_secret.status_code == 401
    # A secret client presenting an assertion signed by some key: refused (it registered no key).
    response = await http.post("/oauth/token", data=backend_form(assertion(key, secret.client_id)))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    # Two methods at once is not allowed (RFC 6749 2.3).
    both = await http.post(
        "/oauth/token",
        data=backend_form(assertion(key, keyed.client_id)),
        auth=(secret.client_id, secret.client_secret),
    )
    assert both.status_code == 400
    assert both.json()["error"] == "invalid_request"


async def test_registration_refuses_what_it_must(runtime: Runtime) -> None:
    """Backend clients get system/ scopes only; JWKS are public keys with a kid; a jwks_uri is https on a
    public address (a private or loopback address is refused outside development)."""
    key = rsa_key()
    with pytest.raises(BadRequest):
        await oauth_clients.register_client(runtime, "Mauvaise portée", "patient/*.rs", jwks=jwks(key))
    with pytest.raises(BadRequest, match="private"):
        await oauth_clients.register_client(
            runtime, "Clé privée", "system/*.rs", jwks={"keys": [key.as_dict(private=True)]}
        )
    for uri in (
        "http://127.0.0.1:9/jwks",
        "https://10.1.2.3/jwks",
        "https://169.254.169.254/keys",
        "ftp://x.fr/k",
    ):
        with pytest.raises(BadRequest, match="jwks_uri"):
            await oauth_clients.register_client(runtime, "URI privée", "system/*.rs", jwks_uri=uri)
    with pytest.raises(BadRequest):
        await oauth_clients.register_client(
            runtime, "App sans retour", "patient/*.rs", kind="app", redirect_uris=()
        )
    with pytest.raises(BadRequest):
        await oauth_clients.register_client(
            runtime, "Retour http", "patient/*.rs", kind="app", redirect_uris=("http://app.example.org/cb",)
        )


async def test_an_app_cannot_use_client_credentials(http: httpx.AsyncClient, runtime: Runtime) -> None:
    app = await oauth_clients.register_client(
        runtime, "App", "patient/*.rs", kind="app", redirect_uris=(APP_REDIRECT,)
    )
    assert app.client_secret is not None
    response = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(app.client_id, app.client_secret),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unauthorized_client"


async def test_the_trace_names_every_system_token(http: httpx.AsyncClient, runtime: Runtime) -> None:
    key = rsa_key()
    client = await oauth_clients.register_client(runtime, "Tracé", "system/*.rs", jwks=jwks(key))
    response = await http.post("/oauth/token", data=backend_form(assertion(key, client.client_id)))
    assert response.status_code == 200
    count = await runtime.db.fetchval(
        "test_trace",
        "SELECT count(*) FROM audit_event WHERE action = 'oauth:token' AND actor_id = $1",
        client.client_id,
    )
    assert count == 1
