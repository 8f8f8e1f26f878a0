"""The probes a load balancer and an orchestrator call: /healthz (the process answers) and /readyz (the
database answers and its schema is current). Neither needs a token; readiness failures are 503, never 500."""

from __future__ import annotations

from typing import Any

import httpx

from espace_sante.app import create_app
from espace_sante.runtime import Runtime
from espace_sante.storage.db import DatabaseUnavailable
from tests.factories import BASE


class _Db:
    def __init__(self, fault: Exception | None) -> None:
        self.fault = fault

    async def ping(self) -> None:
        if self.fault is not None:
            raise self.fault


class _Runtime:
    """A stand-in runtime whose database is down, or whose schema is behind."""

    def __init__(
        self, real: Runtime, *, fault: Exception | None = None, pending: list[str] | None = None
    ) -> None:
        self.settings = real.settings
        self.db = _Db(fault)
        self.pending = pending or []

    async def migrations_pending(self) -> list[str]:
        return self.pending


async def _probe(runtime: Any, path: str) -> httpx.Response:
    app = create_app(runtime=runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        return await client.get(path)


async def test_healthz_says_the_process_is_alive(http: httpx.AsyncClient) -> None:
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_readyz_says_ready_when_the_database_answers_and_is_migrated(http: httpx.AsyncClient) -> None:
    response = await http.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready"}


async def test_readyz_is_503_when_the_database_is_down(runtime: Runtime) -> None:
    """The database is unreachable: 503 naming the kind of failure, no stack trace, no connection string."""
    response = await _probe(_Runtime(runtime, fault=DatabaseUnavailable("readyz: OSError")), "/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "DatabaseUnavailable"}
    broken = await _probe(
        _Runtime(runtime, fault=OSError("postgresql://user:secret@db/x refused")), "/readyz"
    )
    assert broken.status_code == 503
    assert "secret" not in broken.text and "Traceback" not in broken.text


async def test_readyz_is_503_while_migrations_are_pending(runtime: Runtime) -> None:
    response = await _probe(_Runtime(runtime, pending=["0002_next"]), "/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "pending_migrations": ["0002_next"]}


async def test_healthz_answers_even_when_the_database_is_down(runtime: Runtime) -> None:
    response = await _probe(_Runtime(runtime, fault=DatabaseUnavailable("down")), "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
