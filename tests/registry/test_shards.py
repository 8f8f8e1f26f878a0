"""`registry import --jobs N` (spaces/registry/shards.py): the same file imported by several processes at once ends
as one process would end it: the same counts, the same rejects file, every person once with their
representatives, and with --notify the same notices (a minor whose parent fell in another shard included)."""

from __future__ import annotations

import asyncio
import csv
import json
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from espace_sante import clock
from espace_sante.runtime import Runtime
from espace_sante.spaces.registry.importer import import_file
from espace_sante.spaces.registry.rejects import RejectsFile
from espace_sante.spaces.registry.rows import read_registry, shard_of
from espace_sante.spaces.registry.sample import generate
from espace_sante.spaces.registry.shards import import_sharded
from espace_sante.storage.db import Conn
from espace_sante.storage.embedded import EmbeddedPostgres, ensure_database
from tests.cli.test_commands import EXE, _env, run
from tests.registry.test_import_command import _query, _summary
from tests.registry.test_import_notify import Fresh, fresh  # noqa: F401 (the fixture)

ON = clock.today()


async def state(rt: Runtime) -> dict[str, object]:
    """What an import leaves, by person: their space's state, representatives, notices by channel."""

    async def q(conn: Conn) -> dict[str, object]:
        people = await conn.fetch(
            "SELECT p.nir, s.state, p.pending IS NOT NULL AS waits FROM registry_person p "
            "JOIN space s USING (space_id) ORDER BY p.nir"
        )
        reps = await conn.fetch(
            "SELECT p.nir, r.representative_ins FROM space_representative r JOIN registry_person p "
            "USING (space_id) ORDER BY 1, 2"
        )
        sent = await conn.fetch(
            "SELECT p.nir, n.channel, count(*) AS n FROM notice n JOIN registry_person p USING (space_id) "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        )
        # Every e-mail notice named by exactly one delivery job (one job may name many).
        named = await conn.fetch(
            "SELECT args->>'notice_id' AS n FROM procrastinate_jobs WHERE args ? 'notice_id' "
            "UNION ALL SELECT e->>1 FROM procrastinate_jobs, jsonb_array_elements(args->'emails') AS e "
            "WHERE args ? 'emails'"
        )
        emails = await conn.fetch("SELECT notice_id::text AS n FROM notice WHERE channel = 'email'")
        assert sorted(r["n"] for r in named) == sorted(r["n"] for r in emails)
        jobs = len(emails)
        return {
            "people": [tuple(r) for r in people],
            "representatives": [tuple(r) for r in reps],
            "notices": [tuple(r) for r in sent],
            "jobs": jobs,
        }

    return await rt.db.read("t_state", q)


def rejects_of(path: Path) -> list[tuple[str, str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [(r["line"], r["field"], r["reason"]) for r in csv.DictReader(fh)]


def test_each_row_falls_in_exactly_one_shard_and_a_person_always_in_the_same(tmp_path: Path) -> None:
    registry = tmp_path / "r.csv"
    generate(registry, 600, seed=11)
    everyone = [r for r in read_registry(registry.open("rb"), today=ON)]
    by_shard = [
        [r for r in read_registry(registry.open("rb"), today=ON, keep=lambda t, k=k: shard_of(t, 3) == k)]
        for k in range(3)
    ]
    assert sorted(r.line for part in by_shard for r in part) == [r.line for r in everyone]
    assert all(part for part in by_shard)  # every shard has work
    assert shard_of(" 1710599000123 45 ".replace(" ", ""), 3) == shard_of("171059900012345", 3)
    assert shard_of("", 5) == 0  # a row with no NIR text: shard 0 reports it


@pytest.mark.parametrize("notify", [False, True])
async def test_two_shards_end_as_one_process(fresh: Fresh, tmp_path: Path, notify: bool) -> None:  # noqa: F811
    registry = tmp_path / "r.csv"
    generate(registry, 1500, seed=5)  # minors linked to parents anywhere in the file, bad rows, deaths
    one, two = await fresh(), await fresh()
    with RejectsFile(tmp_path / "one.csv") as out:
        single = await import_file(one, registry, rejects=out, notify=ON if notify else None, batch_size=200)
    sharded = await import_sharded(
        two, registry, jobs=2, rejects=tmp_path / "two.csv", notify=ON if notify else None
    )
    assert sharded.as_json() == single.as_json()
    assert sharded.by_field == single.by_field
    assert rejects_of(tmp_path / "two.csv") == rejects_of(tmp_path / "one.csv") != []
    assert await state(two) == await state(one)
    # The same command again: every shard finds its people unchanged.
    again = await import_sharded(two, registry, jobs=2, notify=ON if notify else None)
    assert (again.created, again.updated, again.unchanged) == (0, 0, single.created)


def test_a_shard_killed_midway_fails_the_command_clearly_and_the_same_command_resumes(tmp_path: Path) -> None:
    """`registry import --jobs 2` with one shard's process killed (SIGKILL): the command says to run it again
    (exit 1, no traceback); run again, it resumes that shard and ends with every person once."""
    registry = tmp_path / "registre.csv"
    generate(registry, 60_000, seed=9)
    data = tmp_path / "data"
    run(data, "migrate")
    holder = EmbeddedPostgres(data / "pg")  # held by the test, so that it can watch the shards go
    dsn = asyncio.run(ensure_database(holder.start()))
    try:
        proc = subprocess.Popen(
            [*EXE, "--data-dir", str(data), "registry", "import", str(registry), "--jobs", "2", "--json"],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        sql = "SELECT coalesce(min(last_line), 0) FROM registry_import"
        while asyncio.run(_query(dsn, sql)) < 2_000:  # both shards have committed a batch, far from done
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        shards = [  # the pool's workers, not multiprocessing's resource tracker
            c
            for c in psutil.Process(proc.pid).children(recursive=True)
            if "spawn_main" in " ".join(c.cmdline()) and "resource_tracker" not in " ".join(c.cmdline())
        ]
        assert len(shards) >= 2
        shards[0].send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err
        assert "relancez la même commande" in err and "Traceback" not in err
        again = run(data, "registry", "import", str(registry), "--jobs", "2", "--json")
        counts = json.loads(again.stdout)
        summary = _summary(dsn)
    finally:
        holder.stop()
    valid = 60_000 - counts["rejected"]
    # The shard that finished compares its rows anew (unchanged); the killed one resumes where it stopped.
    assert counts["created"] + counts["unchanged"] == valid and counts["created"] > 0
    assert summary["spaces"] == valid and summary["doubled"] == 0
