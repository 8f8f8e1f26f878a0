"""`espace-sante audit` as an operator uses it: real processes on a data folder of their own, and a tamper done
the way a superuser would, straight in the database, with no `serve` running."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.cli.test_commands import EXE, _env, run

#: What someone with the database's superuser password does, from outside the application: switch the
#: append-only trigger off, change who read record 2 of one patient's space, switch it back on. Prints the space.
TAMPER = """
import asyncio, sys
from pathlib import Path
import asyncpg
from espace_sante.storage.embedded import EmbeddedPostgres, database_uri

async def main(pg):
    server = EmbeddedPostgres(Path(pg))
    try:
        conn = await asyncpg.connect(database_uri(server.start()))
        try:
            async with conn.transaction():
                space = await conn.fetchval(
                    "SELECT space_id FROM audit_event WHERE space_id <> $1 AND seq = 2 ORDER BY space_id LIMIT 1",
                    "00000000-0000-0000-0000-000000000000",
                )
                await conn.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
                await conn.execute(
                    "UPDATE audit_event SET actor_id = 'quelqu-un' WHERE space_id = $1 AND seq = 2", space
                )
                await conn.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")
            print(space)
        finally:
            await conn.close()
    finally:
        server.stop()

asyncio.run(main(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("audit-cli")
    run(data, "demo")  # a few spaces with a trace
    return data


def _tamper(data: Path) -> uuid.UUID:
    done = subprocess.run(
        [sys.executable, "-c", TAMPER, str(data / "pg")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return uuid.UUID(done.stdout.strip())


def test_sealing_then_verifying_a_clean_trace(folder: Path) -> None:
    """The operator's timer seals the heads; a second run finds nothing new; verify finds everything intact."""
    first = run(folder, "audit", "seal").stdout
    assert int(first.split()[0]) >= 2
    assert run(folder, "audit", "seal").stdout.startswith("0 ")
    # Development: the signing key lives in the data folder, never in the database.
    assert (folder / "audit-signing.key").exists()
    done = run(folder, "audit", "verify")
    assert done.stdout.startswith("intact : ")
    report = json.loads(run(folder, "audit", "verify", "--json").stdout)
    assert report["ok"] is True and report["broken"] == []
    assert report["records"] > 0 and report["seals"] >= report["spaces"] - 1


def test_a_row_altered_in_the_database_fails_verify_and_is_named(folder: Path) -> None:
    """After someone rewrites record 2 of a patient's trace in the database, `audit verify` exits 1 and names
    that space and that record, on the whole trace and on that space alone; other spaces still verify."""
    run(folder, "audit", "seal")
    space = _tamper(folder)

    done = run(folder, "audit", "verify", check=False)
    assert done.returncode == 1, done.stderr
    assert f"espace / space {space} seq 2" in done.stdout
    assert "record 2 was altered: its content does not match its hash" in done.stdout
    assert "l'enregistrement 2 a été modifié" in done.stdout

    alone = run(folder, "audit", "verify", "--space", str(space), "--json", check=False)
    assert alone.returncode == 1
    report = json.loads(alone.stdout)
    assert report["ok"] is False and report["spaces"] == 1
    (broken,) = report["broken"]
    assert (broken["space"], broken["records"]) == (str(space), 1)
    assert (broken["broken"]["seq"], broken["broken"]["problem"]) == (2, "altered")

    other = json.loads(run(folder, "audit", "verify", "--json", check=False).stdout)
    intact = other["spaces"] - len(other["broken"])
    assert intact >= 1 and [b["space"] for b in other["broken"]] == [str(space)]


def test_a_space_that_is_not_a_uuid_is_a_usage_error(folder: Path) -> None:
    done = run(folder, "audit", "verify", "--space", "not-a-uuid", check=False)
    assert done.returncode == 2
    assert "« not-a-uuid » n'est pas un identifiant d'espace" in done.stderr
    assert "is not a space id" in done.stderr
    assert "Traceback" not in done.stderr


def test_audit_without_a_subcommand_shows_help(folder: Path) -> None:
    done = subprocess.run(
        [*EXE, "--data-dir", str(folder), "audit"], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert "verify" in done.stdout + done.stderr and "seal" in done.stdout + done.stderr
