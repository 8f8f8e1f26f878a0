"""What cannot be undone, through the API (issue 16 #7; people/stepup.py, docs/access-policy.md "Actions that
cannot be undone"): a SMART token carries the sign-in time of the session that approved its code, so a
professional's software opens an emergency access only within five minutes of her sign-in (after, an RFC 9470
challenge and an OperationOutcome in French then English); a development token counts from its issue."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from espace_sante.access.actors import Actor
from espace_sante.app import create_app
from espace_sante.oauth import clients as oauth_clients
from espace_sante.oauth import devtokens
from espace_sante.people import accounts, sessions, stepup
from espace_sante.runtime import Runtime
from tests.factories import BASE
from tests.oauth.conftest import (
    APP_REDIRECT,
    SOFTWARE_REDIRECT,
    Holder,
    Professional,
    authorize_params,
    code_for,
    exchange,
    person,
    pkce,
)


def _client(http: httpx.AsyncClient, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=http._transport, base_url=BASE, headers={"Authorization": f"Bearer {token}"}
    )


async def _software_token(runtime: Runtime, http: httpx.AsyncClient, actor: Actor) -> str:
    """The professional approves her software's request in a session whose proof is `actor.auth_time`."""
    software = await oauth_clients.register_client(
        runtime,
        "Logiciel des urgences",
        "user/*.rs user/Consent.c",
        kind="software",
        redirect_uris=(SOFTWARE_REDIRECT,),
    )
    verifier, challenge = pkce()
    code, _ = await code_for(
        runtime,
        actor,
        authorize_params(
            software.client_id, challenge, redirect_uri=SOFTWARE_REDIRECT, scope="openid user/Consent.c"
        ),
    )
    issued = await exchange(http, software, code, verifier, redirect_uri=SOFTWARE_REDIRECT)
    assert issued.status_code == 200, issued.text
    return str(issued.json()["access_token"])


async def test_software_approved_just_after_signing_in_opens_an_emergency_access(
    http: httpx.AsyncClient, runtime: Runtime, professional: Professional, holder: Holder
) -> None:
    actor = replace(await person(runtime, "practitioner", professional.rpps), auth_time=datetime.now(UTC))
    token = await _software_token(runtime, http, actor)
    answer = await _client(http, token).post(
        "/access/emergency", json={"ins": holder.nir, "reason": "immediate_risk"}
    )
    assert answer.status_code == 200, answer.text


async def test_software_approved_in_an_old_session_gets_the_step_up_challenge(
    http: httpx.AsyncClient, runtime: Runtime, professional: Professional, holder: Holder
) -> None:
    signed_in = datetime.now(UTC) - timedelta(minutes=20)
    actor = replace(await person(runtime, "practitioner", professional.rpps), auth_time=signed_in)
    token = await _software_token(runtime, http, actor)
    answer = await _client(http, token).post(
        "/access/emergency", json={"ins": holder.nir, "reason": "immediate_risk"}
    )
    assert answer.status_code == 401, answer.text
    challenge_header = answer.headers["www-authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge_header
    assert "max_age=300" in challenge_header
    [issue] = answer.json()["issue"]
    assert issue["code"] == "login"
    assert issue["diagnostics"].startswith("Ouvrir un accès en urgence demande de confirmer votre identité")
    assert "/ Opening an emergency access needs a sign-in within the last 5 minutes" in issue["diagnostics"]


async def test_a_development_token_counts_from_its_issue(
    http: httpx.AsyncClient, runtime: Runtime, professional: Professional, holder: Holder
) -> None:
    fresh = (
        await devtokens.issue(runtime, f"practitioner:{professional.rpps}", "user/Consent.c")
    ).access_token
    opened = await _client(http, fresh).post(
        "/access/emergency", json={"ins": holder.nir, "reason": "immediate_risk"}
    )
    assert opened.status_code == 200, opened.text

    stale = (
        await devtokens.issue(runtime, f"practitioner:{professional.rpps}", "user/Consent.c")
    ).access_token
    async with runtime.db.pool.acquire() as conn:  # minted six minutes ago, not used since
        await conn.execute(
            "UPDATE oauth_token SET auth_time = now() - interval '6 minutes' WHERE token_hash = $1",
            oauth_clients.digest(stale),
        )
    refused = await _client(http, stale).post(
        "/access/emergency", json={"ins": holder.nir, "reason": "immediate_risk"}
    )
    assert refused.status_code == 401, refused.text


@pytest.mark.parametrize(
    ("auth_time", "acr", "recent"),
    [
        (timedelta(minutes=-4), "eidas2", True),
        (timedelta(minutes=-6), "eidas2", False),
        (timedelta(minutes=-1), "eidas1", False),  # recent, but one factor is not enough
        (None, "eidas3", False),  # nothing says when
    ],
)
def test_the_rule(auth_time: timedelta | None, acr: str, recent: bool) -> None:
    now = datetime.now(UTC)
    actor = Actor("holder", "x", acr=acr, auth_time=None if auth_time is None else now + auth_time)
    assert stepup.recent(actor, now=now) is recent


async def test_authorize_honours_max_age_through_the_step_up_page(runtime: Runtime, holder: Holder) -> None:
    """An app told to get a recent sign-in (the challenge's `max_age`) sends Jeanne to the authorization page
    with it: her sign-in is twenty minutes old, so she confirms who she is first, then comes back to it."""
    app = await oauth_clients.register_client(
        runtime, "Carnet Santé+", "patient/*.rs", kind="app", redirect_uris=(APP_REDIRECT,)
    )
    created = await accounts.create(
        runtime, kind="holder", actor_id=holder.nir, login=f"t-{secrets.token_hex(6)}", password=None
    )
    secret, _ = await sessions.start(
        runtime, created.account_id, acr="eidas2", method="passkey", user_agent="test", ip="127.0.0.1"
    )
    async with runtime.db.pool.acquire() as conn:
        await conn.execute(
            "UPDATE web_session SET auth_time = now() - interval '20 minutes' WHERE account_id = $1",
            created.account_id,
        )
    params = authorize_params(app.client_id, pkce()[1])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime=runtime)), base_url="https://127.0.0.1:8000"
    ) as browser:
        browser.cookies.set(sessions.COOKIE, secret, domain="127.0.0.1", path="/")
        plain = await browser.get("/oauth/authorize", params=params)
        assert plain.status_code == 200, plain.text  # no max_age: the consent page, as before
        asked = await browser.get("/oauth/authorize", params=[*params, ("max_age", "300")])
        assert asked.status_code == 303
        location = httpx.URL(asked.headers["location"])
        assert location.path == "/compte/confirmer-identite"
        assert (
            location.params["suite"].startswith("/oauth/authorize?")
            and "max_age=300" in location.params["suite"]
        )
