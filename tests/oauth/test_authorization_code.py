"""Apps a holder connects and professionals' software: the authorization code with PKCE (S256 only), exact
redirect URIs, single-use codes, refresh tokens that rotate, and the end of everything when a grant ends.

The person's approval is given through oauth/authorize.py (what the consent page calls); every token request
goes through the real token endpoint."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from espace_sante.access.actors import Actor
from espace_sante.context import Context
from espace_sante.oauth import authorize as smart
from espace_sante.oauth import bearer as oauth_bearer
from espace_sante.oauth import clients as oauth_clients
from espace_sante.runtime import Runtime
from tests.oauth.conftest import (
    APP_REDIRECT,
    SOFTWARE_REDIRECT,
    Holder,
    Professional,
    authorize_params,
    bearer,
    code_for,
    exchange,
    person,
    pkce,
    refresh,
    refused_soon,
)


async def _app(
    runtime: Runtime, *, public: bool = False, scope: str = "patient/*.rs"
) -> oauth_clients.RegisteredClient:
    return await oauth_clients.register_client(
        runtime, "Mon Suivi Poids", scope, kind="app", redirect_uris=(APP_REDIRECT,), public=public
    )


async def _connected(
    http: httpx.AsyncClient, runtime: Runtime, holder: Holder, app: oauth_clients.RegisteredClient
) -> tuple[dict[str, str], Actor]:
    actor = await person(runtime, "holder", holder.nir)
    verifier, challenge = pkce()
    code, _ = await code_for(runtime, actor, authorize_params(app.client_id, challenge))
    response = await exchange(http, app, code, verifier)
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body, actor


async def test_a_holder_connects_an_app_that_reads_only_their_record(
    http: httpx.AsyncClient, runtime: Runtime, holder: Holder, fhir: httpx.AsyncClient
) -> None:
    """Jeanne connects a weight-tracking app: it gets a one-hour token with her patient context and a refresh
    token; it reads her Patient and her observation, and nobody else's record."""
    app = await _app(runtime)
    token, _ = await _connected(http, runtime, holder, app)
    assert token["token_type"] == "Bearer"
    assert 0 < int(token["expires_in"]) <= 3600
    assert token["patient"] == holder.patient_id
    assert set(token["scope"].split()) == {"launch/patient", "patient/*.rs", "offline_access"}
    assert token["refresh_token"]
    as_app = bearer(http, token["access_token"])
    assert (await as_app.get(f"/Patient/{holder.patient_id}")).status_code == 200
    assert (await as_app.get(f"/Observation/{holder.observation_id}")).status_code == 200
    from tests.oauth.conftest import make_holder

    other = await make_holder(fhir)
    assert (await as_app.get(f"/Patient/{other.patient_id}")).status_code == 404
    row = await runtime.db.read(
        "test_row",
        lambda conn: conn.fetchrow(
            "SELECT actor_kind, subject, client_id, acr FROM oauth_token WHERE token_hash = $1",
            hashlib.sha256(token["access_token"].encode()).digest(),
        ),
    )
    assert dict(row) == {
        "actor_kind": "app",
        "subject": holder.nir,
        "client_id": app.client_id,
        "acr": "eidas2",
    }


async def test_a_public_app_proves_itself_with_pkce_alone(
    http: httpx.AsyncClient, runtime: Runtime, holder: Holder
) -> None:
    app = await _app(runtime, public=True)
    assert app.client_secret is None and app.auth_method == "none"
    token, _ = await _connected(http, runtime, holder, app)
    assert token["patient"] == holder.patient_id


@pytest.mark.parametrize(
    ("challenge", "method", "why"),
    [
        (None, None, "PKCE"),
        (None, "S256", "PKCE"),
        ("x" * 43, "plain", "S256"),
        ("x" * 43, None, "PKCE"),
        ("short", "S256", "code_challenge"),
    ],
)
async def test_authorize_refuses_missing_or_plain_pkce_before_anyone_signs_in(
    runtime: Runtime, challenge: str | None, method: str | None, why: str
) -> None:
    """SECURITY FHIR item 10: S256 only, at /authorize itself. The error goes back to the app with its state."""
    app = await _app(runtime)
    with pytest.raises(smart.AuthorizeError) as caught:
        await smart.validate(runtime, authorize_params(app.client_id, challenge, method=method))
    error = caught.value
    assert error.error == "invalid_request"
    assert why in error.description
    location = httpx.URL(error.location())
    assert str(location).startswith(APP_REDIRECT)
    assert location.params["state"] == "etat-123"
    assert location.params["error"] == "invalid_request"


async def test_a_redirect_uri_that_is_not_registered_exactly_is_never_followed(runtime: Runtime) -> None:
    """SECURITY V5 5.1.5: a path, a query, a port or a scheme away from the registered URI is shown to the
    person as an error, never redirected to; so is an unknown client."""
    app = await _app(runtime)
    _, challenge = pkce()
    for uri in (
        APP_REDIRECT + "/",
        APP_REDIRECT + "?x=1",
        APP_REDIRECT.replace("https://app.example.org", "https://app.example.org:444"),
        APP_REDIRECT.replace("https", "http"),
        "https://evil.example.net/callback",
        "",
    ):
        with pytest.raises(smart.AuthorizeError) as caught:
            await smart.validate(runtime, authorize_params(app.client_id, challenge, redirect_uri=uri))
        assert caught.value.redirect_uri is None, uri
    with pytest.raises(smart.AuthorizeError) as unknown:
        await smart.validate(runtime, authorize_params("cli_unknown", challenge))
    assert unknown.value.redirect_uri is None


async def test_other_bad_requests_go_back_to_the_app(runtime: Runtime) -> None:
    app = await _app(runtime)
    _, challenge = pkce()
    cases = {
        "unsupported_response_type": [("response_type", "token")],
        "invalid_scope": [("scope", "patient/*.cruds")],  # more than registered
        "invalid_request": [("aud", "https://autre.example.org/fhir")],
    }
    for error, changes in cases.items():
        params = dict(authorize_params(app.client_id, challenge))
        params.update(changes)
        with pytest.raises(smart.AuthorizeError) as caught:
            await smart.validate(runtime, list(params.items()))
        assert caught.value.error == error
        assert caught.value.redirect_uri == APP_REDIRECT
    repeated = [*authorize_params(app.client_id, challenge), ("scope", "patient/*.rs")]
    with pytest.raises(smart.AuthorizeError, match="repeated"):
        await smart.validate(runtime, repeated)


async def test_code_reuse_is_refused_and_revokes_what_the_first_use_got(
    http: httpx.AsyncClient, runtime: Runtime, holder: Holder
) -> None:
    """RFC 6749 4.1.2: the second exchange of a code fails, and the token from the first stops working."""
    app = await _app(runtime)
    actor = await person(runtime, "holder", holder.nir)
    verifier, challenge = pkce()
    code, _ = await code_for(runtime, actor, authorize_params(app.client_id, challenge))
    first = await exchange(http, app, code, verifier)
    assert first.status_code == 200
    as_app = bearer(http, first.json()["access_token"])
    assert (await as_app.get(f"/Patient/{holder.patient_id}")).status_code == 200
    second = await exchange(http, app, code, verifier)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    assert await refused_soon(as_app, f"/Patient/{holder.patient_id}")
    used_refresh = await refresh(http, app, first.json()["refresh_token"])
    assert used_refresh.status_code == 400


async def test_a_code_needs_its_verifier_its_redirect_uri_its_client_and_its_minute(
    http: httpx.AsyncClient, runtime: Runtime, holder: Holder
) -> None:
    app = await _app(runtime)
    other = await _app(runtime)
    actor = await person(runtime, "holder", holder.nir)
    verifier, challenge = pkce()
    code, _ = await code_for(runtime, actor, authorize_params(app.client_id, challenge))
    wrong_verifier = await exchange(http, app, code, pkce()[0])
    assert wrong_verifier.status_code == 400
    assert wrong_verifier.json()["error"] == "invalid_grant"
    no_verifier = await http.post(
        "/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": APP_REDIRECT},
        auth=(app.client_id, app.client_secret or ""),
    )
    assert no_verifier.status_code == 400
    wrong_uri = await exchange(http, app, code, verifier, redirect_uri=APP_REDIRECT + "/")
    assert wrong_uri.json()["error"] == "invalid_grant"
    stolen = await exchange(http, other, code, verifier)
    assert stolen.json()["error"] == "invalid_grant"
    # Lifetime: at most 60 s. Age the code past it.
    await runtime.db.fetchval(
        "test_age",
        "UPDATE oauth_code SET expires_at = now() - interval '1 second' WHERE code_hash = $1 RETURNING 1",
        oauth_clients.digest(code),
    )
    late = await exchange(http, app, code, verifier)
    assert late.json()["error"] == "invalid_grant"
    lifetime = await runtime.db.fetchval(
        "test_code_lifetime",
        "SELECT max(extract(epoch FROM expires_at - now())) FROM oauth_code WHERE client_id = $1",
        app.client_id,
    )
    assert lifetime < 0


async def test_codes_live_at_most_a_minute(runtime: Runtime, holder: Holder) -> None:
    app = await _app(runtime)
    actor = await person(runtime, "holder", holder.nir)
    code, _ = await code_for(runtime, actor, authorize_params(app.client_id, pkce()[1]))
    seconds = await runtime.db.fetchval(
        "test_code_lifetime",
        "SELECT extract(epoch FROM expires_at - now()) FROM oauth_code WHERE code_hash = $1",
        oauth_clients.digest(code),
    )
    assert 0 < seconds <= 60


async def test_refresh_tokens_rotate_and_a_reuse_ends_the_whole_grant(
    http: httpx.AsyncClient, runtime: Runtime, holder: Holder
) -> None:
    """SECURITY FHIR item 10: each refresh returns a new refresh token; presenting an old one again means a
    copy exists, so the grant ends: every token of it stops, introspection says inactive, the holder's list
    no longer shows the app, and the trace says why."""
    app = await _app(runtime)
    token, actor = await _connected(http, runtime, holder, app)
    rotated = await refresh(http, app, token["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    fresh = rotated.json()
    assert fresh["refresh_token"] != token["refresh_token"]
    assert fresh["patient"] == holder.patient_id
    as_app = bearer(http, fresh["access_token"])
    assert (await as_app.get(f"/Patient/{holder.patient_id}")).status_code == 200

    replay = await refresh(http, app, token["refresh_token"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert await refused_soon(as_app, f"/Patient/{holder.patient_id}")
    assert (await refresh(http, app, fresh["refresh_token"])).status_code == 400
    intro = await http.post(
        "/oauth/introspect",
        data={"token": fresh["access_token"]},
        auth=(app.client_id, app.client_secret or ""),
    )
    assert intro.json() == {"active": False}
    assert await smart.connected(Context(runtime, actor)) == []
    reason = await runtime.db.fetchval(
        "test_reason",
        "SELECT basis FROM audit_event WHERE action = 'oauth:withdraw' AND detail LIKE $1",
        app.client_id + "|%",
    )
    assert reason == "refresh_reuse"


async def test_a_narrower_refresh_is_allowed_a_wider_one_is_not(
    http: httpx.AsyncClient, runtime: Runtime, holder: Holder
) -> None:
    app = await _app(runtime)
    token, _ = await _connected(http, runtime, holder, app)
    wider = await http.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "scope": "patient/*.cruds",
        },
        auth=(app.client_id, app.client_secret or ""),
    )
    assert wider.status_code == 400
    assert wider.json()["error"] == "invalid_scope"


async def test_disconnecting_an_app_stops_its_tokens_at_once(
    http: httpx.AsyncClient, runtime: Runtime, holder: Holder
) -> None:
    """SECURITY V3 3.5.1: the holder disconnects the app; its access token (already cached by this process)
    and its refresh token stop working immediately; introspection says inactive."""
    app = await _app(runtime)
    token, actor = await _connected(http, runtime, holder, app)
    as_app = bearer(http, token["access_token"])
    assert (await as_app.get(f"/Patient/{holder.patient_id}")).status_code == 200  # now cached
    ctx = Context(runtime, actor)
    [grant] = [g for g in await smart.connected(ctx) if g.client_id == app.client_id]
    assert grant.client_name == "Mon Suivi Poids"
    assert set(grant.scope.split()) >= {"patient/*.rs"}
    await smart.disconnect(ctx, grant.grant_id)
    assert await refused_soon(as_app, f"/Patient/{holder.patient_id}")
    assert (await refresh(http, app, token["refresh_token"])).status_code == 400
    intro = await http.post(
        "/oauth/introspect",
        data={"token": token["access_token"]},
        auth=(app.client_id, app.client_secret or ""),
    )
    assert intro.status_code == 200
    assert intro.json() == {"active": False}


async def test_a_holder_cannot_disconnect_someone_elses_app(
    http: httpx.AsyncClient, runtime: Runtime, holder: Holder, fhir: httpx.AsyncClient
) -> None:
    from espace_sante.errors import NotFound
    from tests.oauth.conftest import make_holder

    app = await _app(runtime)
    _, actor = await _connected(http, runtime, holder, app)
    [grant] = [g for g in await smart.connected(Context(runtime, actor)) if g.client_id == app.client_id]
    other = await make_holder(fhir)
    intruder = await person(runtime, "holder", other.nir)
    with pytest.raises(NotFound):
        await smart.disconnect(Context(runtime, intruder), grant.grant_id)


async def test_a_professional_authorises_their_software(
    http: httpx.AsyncClient, runtime: Runtime, professional: Professional
) -> None:
    """Dr Lefèvre signs in and allows her practice software: the token acts for her (RPPS, her rights), names
    the software, and the response carries her directory entry as fhirUser."""
    software = await oauth_clients.register_client(
        runtime, "Logiciel du cabinet", "user/*.rs", kind="software", redirect_uris=(SOFTWARE_REDIRECT,)
    )
    actor = await person(runtime, "practitioner", professional.rpps)
    verifier, challenge = pkce()
    code, _ = await code_for(
        runtime,
        actor,
        authorize_params(
            software.client_id, challenge, redirect_uri=SOFTWARE_REDIRECT, scope="openid fhirUser user/*.rs"
        ),
    )
    response = await exchange(http, software, code, verifier, redirect_uri=SOFTWARE_REDIRECT)
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["fhirUser"] == f"http://127.0.0.1:8000/fhir/Practitioner/{professional.practitioner_id}"
    assert "refresh_token" not in token  # no offline_access / online_access asked
    assert "patient" not in token
    row = await runtime.db.read(
        "test_pro_row",
        lambda conn: conn.fetchrow(
            "SELECT actor_kind, actor_id, client_id FROM oauth_token WHERE token_hash = $1",
            oauth_clients.digest(token["access_token"]),
        ),
    )
    assert dict(row) == {
        "actor_kind": "practitioner",
        "actor_id": professional.rpps,
        "client_id": software.client_id,
    }
    resolved = await oauth_bearer.resolve_bearer(runtime, token["access_token"])
    assert (resolved.kind, resolved.id, resolved.via) == (
        "practitioner",
        professional.rpps,
        software.client_id,
    )
    # Without a basis on a space she reads nothing, through her software as anywhere.
    assert (await bearer(http, token["access_token"]).get("/Observation")).json()["total"] == 0


async def test_people_authorise_only_their_kind_of_client(
    runtime: Runtime, holder: Holder, professional: Professional
) -> None:
    """A holder cannot hand a professional's software a token, nor a professional a holder's app."""
    software = await oauth_clients.register_client(
        runtime, "Logiciel", "user/*.rs", kind="software", redirect_uris=(SOFTWARE_REDIRECT,)
    )
    app = await _app(runtime)
    holder_actor = await person(runtime, "holder", holder.nir)
    pro_actor = await person(runtime, "practitioner", professional.rpps)
    soft_request = await smart.validate(
        runtime,
        authorize_params(software.client_id, pkce()[1], redirect_uri=SOFTWARE_REDIRECT, scope="user/*.rs"),
    )
    app_request = await smart.validate(runtime, authorize_params(app.client_id, pkce()[1]))
    assert not smart.may_authorise(holder_actor, soft_request)
    assert not smart.may_authorise(pro_actor, app_request)
    with pytest.raises(smart.AuthorizeError) as caught:
        await smart.approve(Context(runtime, holder_actor), soft_request, consented=True)
    assert caught.value.error == "access_denied"


async def test_introspection_is_for_authenticated_clients_and_their_own_tokens(
    http: httpx.AsyncClient, runtime: Runtime, holder: Holder
) -> None:
    app = await _app(runtime)
    other = await _app(runtime)
    token, _ = await _connected(http, runtime, holder, app)
    anonymous = await http.post("/oauth/introspect", data={"token": token["access_token"]})
    assert anonymous.status_code == 401
    own = await http.post(
        "/oauth/introspect",
        data={"token": token["access_token"]},
        auth=(app.client_id, app.client_secret or ""),
    )
    body = own.json()
    assert body["active"] is True
    assert body["client_id"] == app.client_id
    assert body["patient"] == holder.patient_id
    assert "patient/*.rs" in body["scope"].split()
    assert body["exp"] > body["iat"]
    foreign = await http.post(
        "/oauth/introspect",
        data={"token": token["access_token"]},
        auth=(other.client_id, other.client_secret or ""),
    )
    assert foreign.json() == {"active": False}
    refresh_info = await http.post(
        "/oauth/introspect",
        data={"token": token["refresh_token"], "token_type_hint": "refresh_token"},
        auth=(app.client_id, app.client_secret or ""),
    )
    assert refresh_info.json()["active"] is True
    unknown = await http.post(
        "/oauth/introspect", data={"token": "nope"}, auth=(app.client_id, app.client_secret or "")
    )
    assert unknown.json() == {"active": False}


async def test_revocation_of_an_access_or_a_refresh_token(
    http: httpx.AsyncClient, runtime: Runtime, holder: Holder
) -> None:
    """RFC 7009: the app revokes its access token (it stops at once), then its refresh token (the refresh
    and every access token it produced stop). Unknown tokens are answered 200 too."""
    app = await _app(runtime)
    auth = (app.client_id, app.client_secret or "")
    token, _ = await _connected(http, runtime, holder, app)
    as_app = bearer(http, token["access_token"])
    assert (await as_app.get(f"/Patient/{holder.patient_id}")).status_code == 200
    assert (
        await http.post("/oauth/revoke", data={"token": token["access_token"]}, auth=auth)
    ).status_code == 200
    assert await refused_soon(as_app, f"/Patient/{holder.patient_id}")
    rotated = (await refresh(http, app, token["refresh_token"])).json()
    assert (
        await http.post("/oauth/revoke", data={"token": rotated["refresh_token"]}, auth=auth)
    ).status_code == 200
    assert await refused_soon(bearer(http, rotated["access_token"]), f"/Patient/{holder.patient_id}")
    assert (await refresh(http, app, rotated["refresh_token"])).status_code == 400
    assert (await http.post("/oauth/revoke", data={"token": "unknown"}, auth=auth)).status_code == 200
    assert (await http.post("/oauth/revoke", data={"token": "unknown"})).status_code == 401


async def test_the_holder_sees_the_app_in_their_trace(
    http: httpx.AsyncClient, runtime: Runtime, holder: Holder
) -> None:
    """The grant, every token and the disconnection are in the holder's own trace, in plain words."""
    from espace_sante.audit import wording
    from espace_sante.storage.audit import Record

    app = await _app(runtime)
    _, actor = await _connected(http, runtime, holder, app)
    ctx = Context(runtime, actor)
    [grant] = [g for g in await smart.connected(ctx) if g.client_id == app.client_id]
    await smart.disconnect(ctx, grant.grant_id)
    rows = await runtime.db.read(
        "test_trace",
        lambda conn: conn.fetch(
            "SELECT e.action, e.outcome, e.actor_kind, e.actor_id, e.actor_display, e.basis, e.detail, "
            "e.recorded_at FROM audit_event e JOIN sp_token t ON t.space_id = e.space_id "
            "WHERE t.resource_type = 'Patient' AND t.param = 'identifier' AND t.code = $1 "
            "AND e.action LIKE 'oauth:%' ORDER BY e.seq",
            holder.nir,
        ),
    )
    assert [r["action"] for r in rows] == ["oauth:grant", "oauth:token", "oauth:withdraw"]
    sentences = [wording.sentence(Record(**dict(r))) for r in rows]
    assert "autorisé l'application « Mon Suivi Poids »" in sentences[0]
    assert sentences[1].startswith("L'application « Mon Suivi Poids » a obtenu un accès à vos données")
    assert "retiré" in sentences[2] and "déconnexion" in sentences[2]
    assert holder.nir not in " ".join(sentences)


def test_scopes_in_plain_words() -> None:
    assert smart.describe("patient/Observation.rs launch/patient offline_access") == [
        "consulter vos mesures et observations",
        "savoir quel est votre dossier",
        "garder l'accès quand vous n'êtes pas connecté, jusqu'à ce que vous le retiriez",
    ]
    assert smart.describe("patient/*.cruds", "en") == ["read, add to, change and delete all your health data"]


async def test_smart_configuration_advertises_everything(http: httpx.AsyncClient) -> None:
    config = (await http.get("/.well-known/smart-configuration")).json()
    base = "http://127.0.0.1:8000"
    assert config["authorization_endpoint"] == f"{base}/oauth/authorize"
    assert config["token_endpoint"] == f"{base}/oauth/token"
    assert config["introspection_endpoint"] == f"{base}/oauth/introspect"
    assert config["revocation_endpoint"] == f"{base}/oauth/revoke"
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert {"launch-standalone", "client-confidential-asymmetric", "permission-offline"} <= set(
        config["capabilities"]
    )
    assert set(config["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
