"""Tokens are cached per process, and a revocation still takes effect at once on every process."""

from __future__ import annotations

import asyncio

import httpx

from espace_sante.services import oauth
from espace_sante.services.runtime import Runtime
from espace_sante.storage import clients


async def _token(runtime: Runtime, http: httpx.AsyncClient) -> tuple[str, str]:
    client = await oauth.create_client(runtime, "cache test", "system/Patient.rs")
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
    assert runtime.tokens.get(oauth.digest(token)) is not None  # served from the cache now
    await runtime.db.interaction("revoke", clients.revoke_token, oauth.digest(token))
    assert await _eventually(401, http, token) == 401


async def test_disabling_a_client_stops_all_its_tokens(runtime: Runtime, http: httpx.AsyncClient) -> None:
    client_id, token = await _token(runtime, http)
    assert await _status(http, token) == 200
    await runtime.db.interaction("disable", clients.disable_client, client_id)
    assert await _eventually(401, http, token) == 401


async def test_without_its_listener_the_process_trusts_no_cached_token(
    runtime: Runtime, http: httpx.AsyncClient
) -> None:
    """The notification connection drops (a database failover, a killed backend): notifications may be lost,
    so the cache is switched off and every token is checked in the database until the listener is back."""
    _, token = await _token(runtime, http)
    assert await _status(http, token) == 200
    async with runtime.db.pool.acquire() as conn:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'espace-sante-listener'"
        )
    for _ in range(100):
        if not runtime.tokens.enabled:
            break
        await asyncio.sleep(0.02)
    assert not runtime.tokens.enabled
    # Revoked while the listener is down: no notification reaches us, the database check refuses it anyway.
    await runtime.db.interaction("revoke", clients.revoke_token, oauth.digest(token))
    assert await _status(http, token) == 401
    for _ in range(150):  # the listener reconnects within a few seconds
        if runtime.tokens.enabled:
            break
        await asyncio.sleep(0.05)
    assert runtime.tokens.enabled
