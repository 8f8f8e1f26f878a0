"""A real OpenID Connect provider for the federation stories: `oidc-provider-mock` (a Flask app run by
werkzeug's server in a thread on a free port). It stands for FranceConnect+ and Pro Santé Connect, which live
outside our system; our own code runs for real against it."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from oidc_provider_mock import run_server_in_thread

from espace_sante.app import create_app
from espace_sante.runtime import Runtime

WEB = "https://127.0.0.1:8000"  # https so that the client keeps the __Host- cookies (Secure)


@pytest.fixture(scope="session")
def provider_url() -> Iterator[str]:
    with run_server_in_thread(port=0) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture(scope="session")
def federated_runtime(runtime: Runtime, provider_url: str) -> Runtime:
    """The test runtime configured with both national providers pointing at the provider in the thread."""
    settings = runtime.settings.model_copy(
        update={
            "outbound_allow_loopback": True,
            "fcplus_issuer": provider_url,
            "fcplus_client_id": "espace-sante-fcplus",
            "fcplus_client_secret": "secret-fcplus",
            "psc_issuer": provider_url,
            "psc_client_id": "espace-sante-psc",
            "psc_client_secret": "secret-psc",
        }
    )
    return dataclasses.replace(runtime, settings=settings, embedded=None)


@pytest.fixture
async def web(federated_runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """A browser on our app: it keeps cookies (a fresh one per story)."""
    app = create_app(runtime=federated_runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=WEB) as client:
        yield client


async def set_user(provider_url: str, sub: str, claims: dict[str, Any]) -> None:
    """What the person's account at the national provider says about them."""
    async with httpx.AsyncClient() as client:
        response = await client.put(f"{provider_url}/users/{sub}", json=claims)
        assert response.status_code == 204, response.text


async def sign_in_at_provider(location: str, sub: str) -> httpx.URL:
    """The person authenticates at the provider (its own page), which sends the browser back to us."""
    async with httpx.AsyncClient() as browser:
        response = await browser.post(location, data={"sub": sub})
    assert response.status_code == 302, response.text
    return httpx.URL(response.headers["location"])


async def federated_sign_in(
    web: httpx.AsyncClient, provider_url: str, provider: str, sub: str, next_path: str = ""
) -> httpx.Response:
    """The whole journey; returns our answer to the provider's redirection."""
    params = {"next": next_path} if next_path else {}
    start = await web.get(f"/connexion/federation/{provider}", params=params)
    assert start.status_code == 303, start.text
    assert start.headers["location"].startswith(provider_url)
    back = await sign_in_at_provider(start.headers["location"], sub)
    assert back.path == f"/connexion/federation/{provider}/retour"
    return await web.get(back.path, params=dict(back.params))
