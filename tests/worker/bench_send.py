"""Throughput of `notices send` (persons/s), not a test: `python -m tests.worker.bench_send [N] [TRIALS]`.

One embedded PostgreSQL in /tmp/bench-notices; N registered persons (80 % with an e-mail, 20 % by letter, one
in 20 a minor with a representative) are imported once into a template database; each trial copies it
(CREATE DATABASE ... TEMPLATE) and times `notices/issue.send` in process: codes, transitions, traces, notices, and
the e-mails written to the outbox. Prints each trial and the median."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path

import asyncpg

from espace_sante.runtime import Runtime
from espace_sante.settings import Settings
from espace_sante.spaces.notices import issue
from espace_sante.spaces.registry.importer import import_file
from espace_sante.spaces.registry.rejects import RejectsFile
from espace_sante.storage import migrate
from espace_sante.storage.embedded import EmbeddedPostgres, database_uri, ensure_database
from tests.registry.test_import import person, write

ROOT = Path(os.environ.get("BENCH_DIR", "/tmp/bench-notices"))  # noqa: S108 (a scratch folder)
KEK = base64.b64encode(hashlib.sha256(b"bench").digest()).decode()


def settings(dsn: str) -> Settings:
    return Settings(data_dir=ROOT, database_url=dsn, dev=True, kek=KEK)


async def main(n: int, trials: int) -> None:
    embedded = EmbeddedPostgres(ROOT / "pg")
    server = embedded.start()
    template = f"tpl_{n}"
    admin = await asyncpg.connect(database_uri(server, "postgres"))
    try:
        have = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", template)
        if not have:
            dsn = await ensure_database(server, template)
            await migrate.migrate(dsn)
            rows = []
            for i in range(n):
                rep = rows[-1]["nir"] if i % 20 == 19 else ""
                rows.append(
                    person(
                        email="" if i % 5 == 4 else f"p{i}@exemple.fr",
                        birth_date="2015-01-01" if rep else "1970-01-01",
                        representative_1_nir=rep,
                    )
                )
            path = write(ROOT / f"r{n}.csv", rows)
            rt = await Runtime.open(settings(dsn))
            start = time.perf_counter()
            with RejectsFile(None) as out:
                await import_file(rt, path, rejects=out)
            print(f"import: {n / (time.perf_counter() - start):.0f} persons/s")
            await rt.close()
        rates = []
        for t in range(trials):
            name = f"trial_{t}"
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            rt = await Runtime.open(settings(database_uri(server, name)), apply_migrations=True)
            start = time.perf_counter()
            counts = await issue.send(rt)
            took = time.perf_counter() - start
            await rt.close()
            rates.append(counts.notified / took)
            print(f"trial {t}: {counts.as_json()} in {took:.1f} s = {rates[-1]:.0f} persons/s", flush=True)
        print(f"median: {statistics.median(rates):.0f} persons/s over {trials} trials of {n}")
    finally:
        await admin.close()
        embedded.stop()


if __name__ == "__main__":
    asyncio.run(
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000, int(sys.argv[2]) if len(sys.argv) > 2 else 3)
    )
