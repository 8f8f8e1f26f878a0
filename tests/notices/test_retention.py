"""Codes in clear are not kept longer than needed (issue 16 #7, ASVS 8.3.8, docs/notices.md "Retention"): a
letter batch's PDFs and manifest go when the operator confirms their hand-over or once past
`letter_files_days`; an outbox message's text goes `outbox_body_days` after its delivery, its row stays; a
message a relay refused keeps its text."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from espace_sante.errors import NotFound
from espace_sante.jobs import queue
from espace_sante.runtime import Runtime
from espace_sante.spaces.notices import issue, letters
from espace_sante.storage import accounts as accounts_store
from espace_sante.storage.db import Conn
from tests.cli.test_commands import run as cli
from tests.notices.test_notices import mail
from tests.registry.test_import import person, run, write


async def sql(runtime: Runtime, statement: str, *args: object) -> None:
    async def q(conn: Conn) -> None:
        await conn.execute(statement, *args)

    await runtime.db.interaction("t", q)


async def built_letters(runtime: Runtime, tmp_path: Path, folder: str) -> letters.Built:
    rows = [person(email="", last_name=f"Lettre{i}") for i in range(2)]
    await run(runtime, write(tmp_path / f"{folder}.csv", rows))
    await issue.send(runtime)
    built = await letters.build_letters(runtime, tmp_path / folder)
    assert built.letters >= 2 and built.batch is not None
    return built


async def test_a_letter_batch_past_its_retention_is_purged(runtime: Runtime, tmp_path: Path) -> None:
    old = await built_letters(runtime, tmp_path, "old")
    assert old.batch is not None and (tmp_path / "old" / str(old.manifest)).exists()
    # The files of a batch built today stay: the mailing house may not have them yet.
    assert old.batch not in (await letters.purge(runtime)).unreachable
    assert len(list((tmp_path / "old").iterdir())) == len(old.files) + 1

    days = runtime.settings.letter_files_days
    await sql(
        runtime,
        "UPDATE letter_batch SET built_at = now() - make_interval(days => $2, mins => 1) WHERE batch_id = $1",
        old.batch,
        days,
    )
    recent = await built_letters(runtime, tmp_path, "recent")
    (tmp_path / "old" / "autre.txt").write_text("not ours")  # the operator's own file in the same folder
    purged = await letters.purge(runtime)
    assert purged.files >= len(old.files) + 1 and purged.batches >= 1
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["autre.txt"]
    assert len(list((tmp_path / "recent").iterdir())) == len(recent.files) + 1  # not due yet
    assert (await letters.purge(runtime)).files == 0  # nothing left to do


async def test_handing_a_batch_over_deletes_its_files_at_once(runtime: Runtime, tmp_path: Path) -> None:
    built = await built_letters(runtime, tmp_path, "remis")
    done = await letters.hand_over(runtime, str(tmp_path / "remis" / str(built.manifest)), operator="agent.x")
    assert done.files == len(built.files) + 1 and list((tmp_path / "remis").iterdir()) == []

    async def q(conn: Conn) -> tuple[object, ...]:
        r = await conn.fetchrow(
            "SELECT handed_by, handed_at, purged_at FROM letter_batch WHERE batch_id = $1", built.batch
        )
        assert r is not None
        return tuple(r)

    by, handed, gone = await runtime.db.read("t", q)
    assert by == "agent.x" and handed is not None and gone is not None
    with pytest.raises(NotFound):
        await letters.hand_over(runtime, "manifest-20991231T000000Z-abcdef.csv")
    with pytest.raises(NotFound):
        await letters.hand_over(runtime, "mes-lettres.csv")


async def test_a_batch_whose_folder_is_not_on_this_machine_is_left_for_a_run_there(
    runtime: Runtime, tmp_path: Path
) -> None:
    built = await built_letters(runtime, tmp_path, "ailleurs")
    (tmp_path / "ailleurs").rename(tmp_path / "deplace")
    done = await letters.hand_over(runtime, str(built.batch))
    assert done.unreachable == [built.batch] and done.batches == 0
    assert built.batch in (await letters.purge(runtime)).unreachable  # still due, still reported
    (tmp_path / "deplace").rename(tmp_path / "ailleurs")
    assert built.batch not in (await letters.purge(runtime)).unreachable
    assert list((tmp_path / "ailleurs").iterdir()) == []


async def outbox_row(runtime: Runtime, to: str) -> dict[str, object]:
    async def q(conn: Conn) -> dict[str, object]:
        r = await conn.fetchrow(
            "SELECT recipient, subject, body, error, created_at FROM outbox WHERE recipient = $1", to
        )
        assert r is not None
        return dict(r)

    return await runtime.db.read("t", q)


async def test_a_delivered_outbox_text_is_dropped_after_the_delay_an_undelivered_one_kept(
    runtime: Runtime, tmp_path: Path
) -> None:
    row = person(email=mail())
    await run(runtime, write(tmp_path / "r.csv", [row]))
    await issue.send(runtime)  # no relay: delivered into the outbox, code included
    delivered = await outbox_row(runtime, row["email"])
    assert "Code d'activation" in str(delivered["body"])
    refused = mail()  # a security notice a relay refused: never delivered, kept with its error

    async def keep(conn: Conn) -> None:
        await accounts_store.add_outbox(
            conn, uuid.uuid4(), recipient=refused, subject="s", body="à renvoyer", error="SMTPDataError"
        )

    await runtime.db.interaction("t", keep)

    await letters.purge(runtime)
    assert (await outbox_row(runtime, row["email"]))["body"] == delivered["body"]  # within the delay

    days = runtime.settings.outbox_body_days
    for to in (row["email"], refused):
        await sql(
            runtime,
            "UPDATE outbox SET created_at = now() - make_interval(days => $2, mins => 1) WHERE recipient = $1",
            to,
            days,
        )
    assert (await letters.purge(runtime)).outbox_texts >= 1
    after = await outbox_row(runtime, row["email"])
    assert after["body"] == "" and after["subject"] == delivered["subject"]
    assert after["recipient"] == row["email"] and after["error"] == ""
    kept = await outbox_row(runtime, refused)
    assert kept["body"] == "à renvoyer" and kept["error"] == "SMTPDataError"


def test_the_purge_runs_hourly_in_the_worker() -> None:
    assert "notices.purge" in queue.app.tasks
    crons = {p.task.name: p.cron for p in queue.app.periodic_registry.periodic_tasks.values()}
    assert crons["notices.purge"] == "47 * * * *"


def test_the_commands_as_an_operator_runs_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli(data, "registry", "import", str(write(tmp_path / "r.csv", [person(email="")])))
    cli(data, "notices", "send")
    out = tmp_path / "out"
    shown = cli(data, "letters", "build", "--out", str(out)).stdout
    assert "espace-sante letters handed " in shown
    [manifest] = [p.name for p in out.iterdir() if p.suffix == ".csv"]
    assert json.loads(cli(data, "notices", "purge", "--json").stdout) == {
        "batches": 0, "files": 0, "unreachable": [], "outbox_texts": 0,
    }  # fmt: skip
    handed = cli(data, "letters", "handed", manifest, "--operator", "agent.dupont").stdout
    assert "2 fichier(s) effacé(s)" in handed and list(out.iterdir()) == []
    unknown = cli(data, "letters", "handed", "lettres.pdf", check=False)
    assert unknown.returncode == 2 and "ne désigne pas un lot de lettres" in unknown.stderr
