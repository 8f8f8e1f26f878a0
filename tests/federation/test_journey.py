"""A journey: Jeanne signs in with FranceConnect+ because her weight-tracking app asked to connect to her
record, approves it, the app reads her record, and she disconnects it from her account page."""

from __future__ import annotations

import re

import httpx

from espace_sante.oauth import clients as oauth_clients
from espace_sante.runtime import Runtime
from tests.federation.conftest import set_user, sign_in_at_provider
from tests.oauth.conftest import (
    APP_REDIRECT,
    authorize_params,
    bearer,
    exchange,
    make_holder,
    pkce,
    refused_soon,
)


async def test_connect_an_app_after_signing_in_with_franceconnect_plus(
    web: httpx.AsyncClient,
    http: httpx.AsyncClient,
    fhir: httpx.AsyncClient,
    provider_url: str,
    federated_runtime: Runtime,
) -> None:
    holder = await make_holder(fhir)
    app = await oauth_clients.register_client(
        federated_runtime,
        "Suivi Poids",
        "patient/*.rs",
        kind="app",
        redirect_uris=(APP_REDIRECT,),
        public=True,
    )
    await set_user(provider_url, "jeanne-journey", {"acr": "eidas3", "ins": holder.nir})
    verifier, challenge = pkce()

    # The app sends her to us; she is not signed in, so she goes to the sign-in page and picks FranceConnect+.
    asked = await web.get("/oauth/authorize", params=authorize_params(app.client_id, challenge))
    assert asked.status_code == 303
    next_path = httpx.URL(asked.headers["location"]).params["next"]
    start = await web.get("/connexion/federation/fcplus", params={"next": next_path})
    back = await sign_in_at_provider(start.headers["location"], "jeanne-journey")
    signed_in = await web.get(back.path, params=dict(back.params))
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == next_path

    # Back at the authorization request: the consent page, then her approval.
    consent = await web.get(next_path)
    assert consent.status_code == 200
    assert "« Suivi Poids »" in consent.text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', consent.text))
    approved = await web.post("/oauth/authorize", data={**fields, "decision": "autoriser"})
    code = httpx.URL(approved.headers["location"]).params["code"]
    token = await exchange(http, app, code, verifier)
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["patient"] == holder.patient_id
    as_app = bearer(http, body["access_token"])
    assert (await as_app.get(f"/Observation/{holder.observation_id}")).status_code == 200
    # The token carries the level she reached at FranceConnect+.
    acr = await federated_runtime.db.fetchval(
        "test_acr",
        "SELECT acr FROM oauth_token WHERE token_hash = $1",
        oauth_clients.digest(body["access_token"]),
    )
    assert acr == "eidas3"

    # She disconnects it.
    listing = await web.get("/compte/applications")
    action = re.search(r'action="(/compte/applications/[^"]+/deconnecter)"', listing.text)
    csrf = re.search(r'name="csrf" value="([^"]+)"', listing.text)
    assert action and csrf
    assert (await web.post(action.group(1), data={"csrf": csrf.group(1)})).status_code == 303
    assert await refused_soon(as_app, f"/Observation/{holder.observation_id}")
