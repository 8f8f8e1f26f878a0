"""`espace-sante registry import` as an operator runs it: real processes on a real data folder, one of them
killed midway (SIGKILL) and the import run again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
from benchmarks.provisioning import generate

from espace_sante.storage.embedded import EmbeddedPostgres, ensure_database
from tests.cli.test_commands import EXE, _env, run
from tests.registry.test_import import person, write

SUMMARY = {
    "spaces": "SELECT count(*) FROM space",
    "patients": "SELECT count(*) FROM resource WHERE resource_type = 'Patient'",
    "versions": "SELECT count(*) FROM resource_version WHERE resource_type = 'Patient'",
    "records": "SELECT count(*) FROM audit_event",
    "representatives": "SELECT count(*) FROM space_representative",
    "registry": "SELECT count(*) FROM registry_person",
    "doubled": "SELECT count(*) FROM (SELECT code FROM sp_token WHERE resource_type = 'Patient' "
    "AND param = 'identifier' GROUP BY code HAVING count(DISTINCT space_id) > 1) d",
}


async def _query(dsn: str, sql: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def _summary(dsn: str) -> dict[str, int]:
    return {name: asyncio.run(_query(dsn, sql)) for name, sql in SUMMARY.items()}


def test_json_prints_exactly_the_counts_and_rejects_are_kept(tmp_path: Path) -> None:
    registry = write(tmp_path / "registre.csv", [person(), person(sex="X"), person()])
    rejects = tmp_path / "rejets.csv"
    done = run(tmp_path / "data", "registry", "import", str(registry), "--rejects", str(rejects), "--json")
    assert done.stdout.count("\n") == 1
    assert json.loads(done.stdout) == {"read": 3, "created": 2, "updated": 0, "unchanged": 0, "rejected": 1}
    assert rejects.read_text(encoding="utf-8").splitlines()[1].startswith("3,sex,")
    again = run(tmp_path / "data", "registry", "import", str(registry))
    assert "3 lignes lues, 0 créées, 0 mises à jour, 2 inchangées, 1 refusées" in again.stdout
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("nir,nom\n", encoding="utf-8")
    refused = run(tmp_path / "data", "registry", "import", str(wrong), check=False)
    assert (
        refused.returncode == 2
        and "colonnes manquantes" in refused.stderr
        and "Traceback" not in refused.stderr
    )


def test_an_import_killed_midway_then_run_again_equals_one_clean_run(tmp_path: Path) -> None:
    registry = tmp_path / "registre.csv"
    generate(registry, 20_000)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    run(clean, "migrate")
    expected = json.loads(run(clean, "registry", "import", str(registry), "--json").stdout)
    assert expected["created"] > 19_900 and expected["rejected"] > 0
    run(killed, "migrate")
    holder = EmbeddedPostgres(killed / "pg")  # held by the test, so that it can watch the import go
    dsn = asyncio.run(ensure_database(holder.start()))
    try:
        proc = subprocess.Popen(
            [*EXE, "--data-dir", str(killed), "registry", "import", str(registry), "--json"],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        sql = "SELECT coalesce(max(last_line), 0) FROM registry_import"
        while asyncio.run(_query(dsn, sql)) < 6_000:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        assert proc.poll() is None, "the import ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        line = asyncio.run(_query(dsn, sql))
        assert 6_000 <= line < 20_001
        again = run(killed, "registry", "import", str(registry), "--json")
        assert json.loads(again.stdout) == expected
        assert "resuming after line" in again.stderr
        after_kill = _summary(dsn)
    finally:
        holder.stop()
    other = EmbeddedPostgres(clean / "pg")
    try:
        after_clean = _summary(asyncio.run(ensure_database(other.start())))
    finally:
        other.stop()
    assert after_kill == after_clean
    assert after_kill["doubled"] == 0 and after_kill["spaces"] == expected["created"]
