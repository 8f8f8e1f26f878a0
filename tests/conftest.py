"""The test world: one embedded PostgreSQL for the session (a real server, migrated once), the real ASGI app
driven through httpx, and machine clients that get real tokens from the real token endpoint.

Tests share the database, so each builds its own data with unique identifiers (`new_nir()`) and never
assumes an empty table."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

from espace_sante.app import create_app  # noqa: E402
from espace_sante.oauth import clients as oauth_clients  # noqa: E402
from espace_sante.runtime import Runtime  # noqa: E402
from espace_sante.settings import Settings  # noqa: E402
from espace_sante.storage import migrate  # noqa: E402
from espace_sante.storage.embedded import EmbeddedPostgres, ensure_database  # noqa: E402
from tests.factories import BASE  # noqa: E402
from tests.seaweed import SeaweedFS, start_seaweedfs  # noqa: E402

pytest_plugins = ["tests.logcheck"]  # no INS, name or medical word in the logs of the whole run


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("espace-sante")


#: `make test-citus` runs the core stories on a Citus cluster instead of one server (docs/architecture.md "On Citus").
ON_CITUS = os.environ.get("ESPACE_SANTE_TEST_CITUS") == "1"
if not ON_CITUS:
    collect_ignore = ["citus"]  # the Citus-only stories (routing, rebalancing) need a cluster


@pytest.fixture(scope="session")
def citus_cluster() -> Iterator[Any]:
    """A coordinator and two workers on loopback, started for the session (only under `make test-citus`)."""
    if not ON_CITUS:
        pytest.fail("the Citus stories run under `make test-citus`")
    from tests.citus import cluster

    # Not under pytest's folder: the nodes run as another user when the tests run as root, and pytest makes
    # its folders readable by their owner only.
    base = Path(tempfile.mkdtemp(prefix="espace-sante-citus-"))
    started = cluster.start(base, workers=2)
    yield started
    started.stop()
    if not os.environ.get("ESPACE_SANTE_KEEP_CITUS"):  # kept to read the nodes' logs after a failure
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
async def runtime(data_dir: Path, request: pytest.FixtureRequest) -> AsyncIterator[Runtime]:
    embedded = None
    if ON_CITUS:
        from tests.citus import cluster

        dsn = await cluster.form(request.getfixturevalue("citus_cluster"))
    else:
        embedded = EmbeddedPostgres(data_dir / "pg")
        dsn = await ensure_database(embedded.start())
    await migrate.migrate(dsn)
    settings = Settings(
        data_dir=data_dir,
        database_url=dsn,
        dev=True,
        base_url=BASE,
        kek=base64.b64encode(os.urandom(32)).decode(),
        # The session's feed opens thousands of spaces across the suite; tests/api/test_space_quota.py lowers it.
        api_spaces_per_client=1_000_000,
    )
    rt = await Runtime.open(settings)
    if embedded is not None:
        rt.embedded = embedded  # closing the runtime stops the server
    yield rt
    await rt.close()


@pytest.fixture(scope="session")
async def app(runtime: Runtime) -> Any:
    return create_app(runtime=runtime)


@pytest.fixture(scope="session")
async def http(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


TokenFactory = Callable[..., Awaitable[str]]


@pytest.fixture(scope="session")
async def token_for(runtime: Runtime, http: httpx.AsyncClient) -> TokenFactory:
    """Registers a client with the given scopes once and returns an access token for it, a fresh one when the
    last is close to its end (system tokens live 300 s; the session lasts longer), or when `fresh` (the last
    one was refused)."""
    clients: dict[str, tuple[str, str]] = {}
    cache: dict[str, tuple[str, float]] = {}

    async def make(scope: str, fresh: bool = False) -> str:
        if scope not in clients:
            client = await oauth_clients.create_client(runtime, f"test {scope}", scope)
            clients[scope] = (client.client_id, client.client_secret)
        token, until = cache.get(scope, ("", 0.0))
        # The wall clock, as the server's `expires_at > now()` uses: a monotonic clock stands still while the
        # virtual machine is paused, the wall clock does not, so a token could expire while it looked fresh.
        if fresh or time.time() >= until:
            response = await http.post(
                "/oauth/token", data={"grant_type": "client_credentials"}, auth=clients[scope]
            )
            assert response.status_code == 200, response.text
            body = response.json()
            token, until = body["access_token"], time.time() + body["expires_in"] - 60
            cache[scope] = (token, until)
        return token

    return make


class _Bearer(httpx.Auth):
    """The current token of a scope on every request (a session-long client outlives any one token)."""

    requires_request_body = True  # a refused request is sent again, body and all

    def __init__(self, token_for: TokenFactory, scope: str) -> None:
        self.token_for, self.scope = token_for, scope

    async def async_auth_flow(self, request: httpx.Request) -> Any:
        if "Authorization" in request.headers:  # the test's own credentials: sent as they are
            yield request
            return
        request.headers["Authorization"] = f"Bearer {await self.token_for(self.scope)}"
        response = yield request
        if response.status_code == 401:
            # The session's token was refused (expired behind the cache's back): once more with a new one.
            # A test about refusals brings its own Authorization header, never this client's token.
            request.headers["Authorization"] = f"Bearer {await self.token_for(self.scope, True)}"
            yield request


@pytest.fixture(scope="session")
async def fhir(http: httpx.AsyncClient, token_for: TokenFactory) -> httpx.AsyncClient:
    """An httpx client for /fhir as a feed with every system scope."""
    return httpx.AsyncClient(
        transport=http._transport,
        base_url=f"{BASE}/fhir",
        headers={"Accept": "application/fhir+json"},
        auth=_Bearer(token_for, "system/*.*"),
    )


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    print(f"\nSeaweedFS S3 at {server.endpoint}: first put after {server.started_in:.1f} s")
    yield server
    server.stop()
