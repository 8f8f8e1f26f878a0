"""A federated sign-in asks the provider for `max_age` and counts from the provider's `auth_time` (issue 16 #7,
people/stepup.py): a person the provider authenticated long ago is not taken as just signed in."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from espace_sante.runtime import Runtime
from tests.federation.conftest import federated_sign_in, set_user
from tests.oauth.conftest import Holder, make_holder


@pytest.fixture
async def holder(fhir: httpx.AsyncClient) -> Holder:
    return await make_holder(fhir)


async def _auth_time(runtime: Runtime, nir: str) -> datetime:
    at: datetime = await runtime.db.fetchval(
        "test_fed_auth_time",
        "SELECT s.auth_time FROM web_session s JOIN account a USING (account_id) "
        "WHERE a.kind = 'holder' AND a.actor_id = $1 ORDER BY s.created_at DESC LIMIT 1",
        nir,
    )
    return at


async def test_the_provider_is_asked_for_max_age(web: httpx.AsyncClient) -> None:
    start = await web.get("/connexion/federation/fcplus")
    assert start.status_code == 303
    assert httpx.URL(start.headers["location"]).params["max_age"] == "300"


async def test_the_session_counts_from_the_providers_auth_time(
    web: httpx.AsyncClient, provider_url: str, runtime: Runtime, holder: Holder
) -> None:
    sub = "fc-" + secrets.token_hex(8)
    long_ago = int(time.time()) - 20 * 60
    await set_user(provider_url, sub, {"acr": "eidas2", "ins": holder.nir, "auth_time": long_ago})
    answer = await federated_sign_in(web, provider_url, "fcplus", sub)
    assert answer.status_code == 303, answer.text
    assert await _auth_time(runtime, holder.nir) == datetime.fromtimestamp(long_ago, UTC)
    # So closing her space first asks her to confirm who she is.
    form = await web.get("/mon-espace/mon-espace-sante/fermer")
    csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    sent = await web.post("/mon-espace/mon-espace-sante/fermer", data={"csrf": csrf})
    assert sent.status_code == 303 and sent.headers["location"].startswith("/compte/confirmer-identite")

    # A provider's `auth_time` in the future is not believed beyond now.
    await set_user(
        provider_url, sub, {"acr": "eidas2", "ins": holder.nir, "auth_time": int(time.time()) + 3600}
    )
    assert (await federated_sign_in(web, provider_url, "fcplus", sub)).status_code == 303
    assert await _auth_time(runtime, holder.nir) <= datetime.now(UTC) + timedelta(seconds=1)


async def test_a_provider_that_does_not_say_when_is_not_taken_as_just_now(
    web: httpx.AsyncClient, provider_url: str, runtime: Runtime, holder: Holder
) -> None:
    """We send `max_age`, so the provider must send `auth_time` (OpenID Connect Core 3.1.2.1). Before, a
    missing one counted as now: the session could close a space at once. Now the session opens, but its
    proof is not recent and closing first asks her to confirm who she is."""
    sub = "fc-" + secrets.token_hex(8)
    # The test provider always sends `auth_time` unless told to send null: a value that says nothing.
    await set_user(provider_url, sub, {"acr": "eidas2", "ins": holder.nir, "auth_time": None})
    answer = await federated_sign_in(web, provider_url, "fcplus", sub)
    assert answer.status_code == 303, answer.text
    assert await _auth_time(runtime, holder.nir) < datetime.now(UTC) - timedelta(days=365)
    form = await web.get("/mon-espace/mon-espace-sante/fermer")
    csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    sent = await web.post("/mon-espace/mon-espace-sante/fermer", data={"csrf": csrf})
    assert sent.status_code == 303 and sent.headers["location"].startswith("/compte/confirmer-identite")
