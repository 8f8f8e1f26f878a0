"""The authorization endpoint as a browser sees it: refusals before sign-in, the sign-in detour, the consent
page (French, accessible, no inline script or style), the decision form with its anti-forgery token, and the
holder's page of connected apps with its « Déconnecter » button."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from espace_sante.app import create_app
from espace_sante.oauth import clients as oauth_clients
from espace_sante.people import accounts, sessions
from espace_sante.runtime import Runtime
from tests.oauth.conftest import (
    APP_REDIRECT,
    Holder,
    Professional,
    authorize_params,
    bearer,
    exchange,
    pkce,
    refused_soon,
)

WEB = "https://127.0.0.1:8000"


@pytest.fixture
async def browser(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime=runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=WEB) as client:
        yield client


async def sign_in(runtime: Runtime, browser: httpx.AsyncClient, kind: str, actor_id: str) -> None:
    """A person who has just proven who they are (the sign-in engineer's services open the session)."""
    created = await accounts.create(
        runtime, kind=kind, actor_id=actor_id, login=f"t-{secrets.token_hex(6)}", password=None
    )
    secret, _ = await sessions.start(
        runtime, created.account_id, acr="eidas2", method="passkey", user_agent="test", ip="127.0.0.1"
    )
    browser.cookies.set("__Host-es_session", secret, domain="127.0.0.1", path="/")


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def _hidden(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html)


async def _app(runtime: Runtime) -> oauth_clients.RegisteredClient:
    return await oauth_clients.register_client(
        runtime, "Carnet Santé+", "patient/*.rs", kind="app", redirect_uris=(APP_REDIRECT,)
    )


async def test_pkce_and_redirect_uri_are_checked_before_sign_in(
    browser: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await _app(runtime)
    for challenge, method in ((None, None), ("p" * 43, "plain")):
        answer = await browser.get(
            "/oauth/authorize", params=authorize_params(app.client_id, challenge, method=method)
        )
        assert answer.status_code == 302, answer.text
        location = httpx.URL(answer.headers["location"])
        assert str(location).startswith(APP_REDIRECT)
        assert location.params["error"] == "invalid_request"
        assert location.params["state"] == "etat-123"
    wrong = await browser.get(
        "/oauth/authorize",
        params=authorize_params(app.client_id, pkce()[1], redirect_uri="https://evil.example.net/callback"),
    )
    assert wrong.status_code == 400
    assert "location" not in wrong.headers
    assert "evil.example.net" not in wrong.text or "redirect" in wrong.text


async def test_an_anonymous_visitor_is_sent_to_sign_in_and_back(
    browser: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await _app(runtime)
    answer = await browser.get("/oauth/authorize", params=authorize_params(app.client_id, pkce()[1]))
    assert answer.status_code == 303
    location = httpx.URL(answer.headers["location"])
    assert location.path == "/connexion"
    assert location.params["next"].startswith("/oauth/authorize?")


async def test_a_holder_approves_on_the_consent_page(
    browser: httpx.AsyncClient, http: httpx.AsyncClient, runtime: Runtime, holder: Holder
) -> None:
    """Jeanne sees who asks for what in plain French, approves, and the app gets its code, then a token for
    her record. Asking again later for the same access goes straight back to the app."""
    app = await _app(runtime)
    await sign_in(runtime, browser, "holder", holder.nir)
    verifier, challenge = pkce()
    page = await browser.get("/oauth/authorize", params=authorize_params(app.client_id, challenge))
    assert page.status_code == 200, page.text
    html = page.text
    assert "« Carnet Santé+ »" in html
    assert "consulter toutes vos données de santé" in html
    assert "savoir quel est votre dossier" in html
    assert '<html lang="fr">' in html
    csp = page.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "script-src 'self'" in csp
    assert "<style" not in html and " style=" not in html and "onclick" not in html
    assert re.search(r"<script(?![^>]*\bsrc=)", html) is None
    assert page.headers["cache-control"] == "no-store"
    assert holder.nir not in html

    form = dict(_hidden(html))
    no_csrf = await browser.post(
        "/oauth/authorize", data={**{k: v for k, v in form.items() if k != "csrf"}, "decision": "autoriser"}
    )
    assert no_csrf.status_code == 403
    approved = await browser.post("/oauth/authorize", data={**form, "decision": "autoriser"})
    assert approved.status_code == 303, approved.text
    location = httpx.URL(approved.headers["location"])
    assert str(location).startswith(APP_REDIRECT)
    assert location.params["state"] == "etat-123"
    token = await exchange(http, app, location.params["code"], verifier)
    assert token.status_code == 200, token.text
    assert token.json()["patient"] == holder.patient_id

    again = await browser.get("/oauth/authorize", params=authorize_params(app.client_id, pkce()[1]))
    assert again.status_code == 302
    assert "code" in httpx.URL(again.headers["location"]).params


async def test_a_holder_refuses(browser: httpx.AsyncClient, runtime: Runtime, holder: Holder) -> None:
    app = await _app(runtime)
    await sign_in(runtime, browser, "holder", holder.nir)
    page = await browser.get("/oauth/authorize", params=authorize_params(app.client_id, pkce()[1]))
    refused = await browser.post("/oauth/authorize", data={**dict(_hidden(page.text)), "decision": "refuser"})
    assert refused.status_code == 303
    location = httpx.URL(refused.headers["location"])
    assert location.params["error"] == "access_denied"
    assert location.params["state"] == "etat-123"
    assert "code" not in location.params


async def test_a_professional_cannot_connect_a_holders_app(
    browser: httpx.AsyncClient, runtime: Runtime, professional: Professional
) -> None:
    app = await _app(runtime)
    await sign_in(runtime, browser, "practitioner", professional.rpps)
    page = await browser.get("/oauth/authorize", params=authorize_params(app.client_id, pkce()[1]))
    assert page.status_code == 403
    assert "titulaires" in page.text


async def test_the_holder_lists_and_disconnects_apps(
    browser: httpx.AsyncClient, http: httpx.AsyncClient, runtime: Runtime, holder: Holder
) -> None:
    """SECURITY V3 3.5.1 from the holder's side: « Déconnecter » ends the app's access at once."""
    app = await _app(runtime)
    await sign_in(runtime, browser, "holder", holder.nir)
    verifier, challenge = pkce()
    page = await browser.get("/oauth/authorize", params=authorize_params(app.client_id, challenge))
    approved = await browser.post(
        "/oauth/authorize", data={**dict(_hidden(page.text)), "decision": "autoriser"}
    )
    code = httpx.URL(approved.headers["location"]).params["code"]
    token = (await exchange(http, app, code, verifier)).json()
    as_app = bearer(http, token["access_token"])
    assert (await as_app.get(f"/Patient/{holder.patient_id}")).status_code == 200

    listing = await browser.get("/compte/applications")
    assert listing.status_code == 200
    assert "Carnet Santé+" in listing.text and "Déconnecter" in listing.text
    action = re.search(r'action="(/compte/applications/[^"]+/deconnecter)"', listing.text)
    assert action
    forged = await browser.post(action.group(1), data={"csrf": "wrong"})
    assert forged.status_code == 403
    done = await browser.post(action.group(1), data={"csrf": _csrf(listing.text)})
    assert done.status_code == 303
    assert await refused_soon(as_app, f"/Patient/{holder.patient_id}")
    intro = await http.post(
        "/oauth/introspect",
        data={"token": token["access_token"]},
        auth=(app.client_id, app.client_secret or ""),
    )
    assert intro.json() == {"active": False}
    after = await browser.get("/compte/applications?message=deconnectee")
    assert "Carnet Santé+" not in after.text
    assert "déconnectée" in after.text
    unknown = await browser.post(action.group(1), data={"csrf": _csrf(after.text)})
    assert unknown.status_code == 404
