"""Tokens are cached per process, and a revocation still takes effect at once on every process."""

from __future__ import annotations

import asyncio

import httpx

from espace_sante.oauth import clients as oauth_clients
from espace_sante.runtime import Runtime
from espace_sante.storage import clients


async def _token(runtime: Runtime, http: httpx.AsyncClient) -> tuple[str, str]:
    client = await oauth_clients.create_client(runtime, "cache test", "system/Patient.rs")
    response = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client.client_id, client.client_secret),
    )
    return client.client_id, response.json()["access_token"]


async def _status(http: httpx.AsyncClient, token: str) -> int:
    response = await http.get(
        "/fhir/Patient", params={"_count": "1"}, headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code


async def _eventually(expected: int, http: httpx.AsyncClient, token: str) -> int:
    """Notifications arrive within milliseconds; give them up to a second."""
    status = 0
    for _ in range(50):
        status = await _status(http, token)
        if status == expected:
            break
        await asyncio.sleep(0.02)
    return status


async def test_a_revoked_token_stops_working_at_once(runtime: Runtime, http: httpx.AsyncClient) -> None:
    """A feed's token is in the cache after its first use; an operator revokes it (from any process): the
    very next requests are refused."""
    _, token = await _token(runtime, http)
    assert await _status(http, token) == 200
    assert runtime.tokens.get(oauth_clients.digest(token)) is not None  # served from the cache now
    await runtime.db.interaction("revoke", clients.revoke_token, oauth_clients.digest(token))
    assert await _eventually(401, http, token) == 401


async def test_disabling_a_client_stops_all_its_tokens(runtime: Runtime, http: httpx.AsyncClient) -> None:
    client_id, token = await _token(runtime, http)
    assert await _status(http, token) == 200
    await runtime.db.interaction("disable", clients.disable_client, client_id)
    assert await _eventually(401, http, token) == 401


async def test_without_its_listener_the_process_trusts_no_cached_token(
    runtime: Runtime, http: httpx.AsyncClient
) -> None:
    """While notifications may be lost, nothing is served from the cache; once the listener is back, the cache
    starts empty."""
    _, token = await _token(runtime, http)
    assert await _status(http, token) == 200
    digest = oauth_clients.digest(token)
    assert runtime.tokens.get(digest) is not None
    assert runtime.listener is not None
    runtime.listener.on_lost()
    assert runtime.tokens.get(digest) is None
    assert await _status(http, token) == 200  # checked in the database instead
    assert runtime.tokens.get(digest) is None  # and not cached while the listener is down
    runtime.listener.on_ready()
    assert runtime.tokens.enabled
    assert runtime.tokens.get(digest) is None  # a fresh start


async def test_a_dropped_listener_reconnects_and_revocations_still_hold(
    runtime: Runtime, http: httpx.AsyncClient
) -> None:
    """The notification connection is killed (a failover): the process notices, a token revoked meanwhile is
    refused, and the listener comes back by itself."""
    _, token = await _token(runtime, http)
    assert await _status(http, token) == 200
    listener = runtime.listener
    assert listener is not None
    losses = listener.losses
    async with runtime.db.pool.acquire() as conn:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'espace-sante-listener'"
        )
    for _ in range(250):  # the watchdog looks every second
        if listener.losses > losses:
            break
        await asyncio.sleep(0.02)
    assert listener.losses > losses
    await runtime.db.interaction("revoke", clients.revoke_token, oauth_clients.digest(token))
    assert await _eventually(401, http, token) == 401
    for _ in range(250):
        if listener.healthy and runtime.tokens.enabled:
            break
        await asyncio.sleep(0.02)
    assert listener.healthy and runtime.tokens.enabled
