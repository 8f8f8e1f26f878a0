"""Notices of new spaces (spaces/notices/): codes that redeem, spaces notified, e-mails in the outbox,
letters queued and built into PDFs once, a minor's notice to the representative, nothing sent twice."""

from __future__ import annotations

import csv
import json
import re
import uuid
from datetime import date
from pathlib import Path

import pikepdf

from espace_sante import clock
from espace_sante.context import Context
from espace_sante.runtime import Runtime
from espace_sante.spaces import activation, lifecycle
from espace_sante.spaces.notices import issue, letters, words
from espace_sante.storage.db import Conn
from tests.cli.test_commands import run as cli
from tests.registry.test_import import person, run, write

CODE = re.compile(
    r"\b([2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{2})\b"
)


def mail() -> str:
    return f"p-{uuid.uuid4().hex[:10]}@exemple.fr"


async def outbox_for(runtime: Runtime, to: str) -> list[tuple[str, str]]:
    async def q(conn: Conn) -> list[tuple[str, str]]:
        rows = await conn.fetch("SELECT subject, body FROM outbox WHERE recipient = $1", to)
        return [(r["subject"], r["body"]) for r in rows]

    return await runtime.db.read("t", q)


async def space_of(runtime: Runtime, nir: str) -> uuid.UUID:
    """The space the registry made for this person (its Patient is written when it opens)."""
    found = await lifecycle.space_of_ins(runtime, nir)
    assert found is not None
    return found


async def letters_of(runtime: Runtime, space: uuid.UUID) -> list[dict[str, object]]:
    """The space's letters, opened with its data key (they are stored sealed), with where they were built."""

    async def q(conn: Conn) -> list[dict[str, object]]:
        rows = await conn.fetch(
            "SELECT built_at, batch_file, page, letter FROM notice WHERE space_id = $1 AND channel = 'letter' "
            "ORDER BY created_at, notice_id",
            space,
        )
        return [
            {
                "built": r["built_at"] is not None,
                "file": r["batch_file"],
                "page": r["page"],
                "clear": r["letter"],
            }
            for r in rows
        ]

    opened = await letters.letters_of(runtime, space)
    stored = await runtime.db.read("t", q)
    assert all(s["clear"] is None for s in stored)  # nothing in clear
    return [o | {k: v for k, v in s.items() if k != "clear"} for o, s in zip(opened, stored, strict=True)]


async def test_send_notifies_mails_codes_that_redeem_and_queues_letters(
    runtime: Runtime, tmp_path: Path
) -> None:
    adult, paper = person(email=mail()), person(email="", last_name="Ngô", first_names="Văn")
    parent = person(email=mail(), first_names="Paul", last_name="Martin", birth_date="1980-05-05")
    child = person(
        email="",
        first_names="Léa",
        last_name="Martin",
        birth_date="2015-06-01",
        representative_1_nir=parent["nir"],
    )
    await run(runtime, write(tmp_path / "r.csv", [adult, paper, parent, child]))
    counts = await issue.send(runtime)
    assert counts.notified >= 4 and counts.failed == 0

    for row in (adult, paper, parent, child):
        assert await lifecycle.state(runtime, await space_of(runtime, row["nir"])) == "notified"

    [(subject, body)] = await outbox_for(runtime, adult["email"])
    assert "créé" in subject and "Hello" in body and "34 22" in body and "caisse" in body
    opens = clock.today().toordinal() + runtime.settings.opposition_window_days
    assert words.day_fr(date.fromordinal(opens)) in body
    code = CODE.search(body)
    assert code is not None
    redeemed = await activation.redeem(
        Context.system(runtime), code.group(1), date.fromisoformat(adult["birth_date"])
    )
    assert redeemed == await space_of(runtime, adult["nir"])

    # The parent gets their own notice and the child's, which names the child; the child gets none directly.
    parent_mails = await outbox_for(runtime, parent["email"])
    assert len(parent_mails) == 2
    [(_, about_child)] = [m for m in parent_mails if "Léa Martin" in m[1]]
    child_code = CODE.search(about_child)
    assert child_code is not None
    assert await activation.redeem(
        Context.system(runtime), child_code.group(1), date(2015, 6, 1)
    ) == await space_of(runtime, child["nir"])

    # No e-mail: a letter queued with the code and the address, nothing in the outbox.
    [letter] = await letters_of(runtime, await space_of(runtime, paper["nir"]))
    assert letter["name"] == "Văn Ngô" and letter["postal_code"] == "69003" and letter["code"]
    assert not letter["built"]
    assert not await letters_of(runtime, await space_of(runtime, child["nir"]))

    # Delivered e-mails keep no text (the code) in the notice table.
    async def bodies(conn: Conn) -> list[str]:
        space = await space_of(runtime, adult["nir"])
        return [r["body"] for r in await conn.fetch("SELECT body FROM notice WHERE space_id = $1", space)]

    assert await runtime.db.read("t", bodies) == [""]

    again = await issue.send(runtime)
    assert again.notified == 0 and again.delivered == 0
    assert len(await outbox_for(runtime, adult["email"])) == 1
    assert len(await letters_of(runtime, await space_of(runtime, paper["nir"]))) == 1


async def test_letters_build_one_page_each_with_a_manifest_once(runtime: Runtime, tmp_path: Path) -> None:
    rows = [person(email="", last_name=f"Durand{i}") for i in range(3)]
    await run(runtime, write(tmp_path / "r.csv", rows))
    await issue.send(runtime)
    spaces = [await space_of(runtime, r["nir"]) for r in rows]
    out = tmp_path / "lettres"
    built = await letters.build_letters(runtime, out, per_file=2)
    assert built.letters >= 3 and built.manifest is not None
    with (out / built.manifest).open(encoding="utf-8") as fh:
        manifest = list(csv.DictReader(fh))
    assert len(manifest) == built.letters
    for name in built.files:
        with pikepdf.open(out / name) as pdf:
            assert len(pdf.pages) == sum(1 for m in manifest if m["file"] == name)
    for row, space in zip(rows, spaces, strict=True):
        [letter] = await letters_of(runtime, space)
        assert letter["built"] and "code" not in letter  # the code exists only on paper now
        [line] = [m for m in manifest if m["file"] == letter["file"] and m["page"] == str(letter["page"])]
        assert line["name"] == f"Anne Marie {row['last_name']}" and line["city"] == "Lyon"
    second = await letters.build_letters(runtime, tmp_path / "encore")
    assert second.letters == 0 and second.files == []


def test_the_commands_as_an_operator_runs_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    online, paper = person(email=mail()), person(email="")
    cli(data, "registry", "import", str(write(tmp_path / "r.csv", [online, paper])))
    sent = json.loads(cli(data, "notices", "send", "--as-of", "2030-01-01", "--json").stdout)
    assert sent == {"notified": 2, "emails": 1, "letters": 1, "delivered": 1, "failed": 0, "uncertain": 0}
    assert json.loads(cli(data, "notices", "send", "--json").stdout)["notified"] == 0
    listed = json.loads(cli(data, "outbox", "list", "--json").stdout)
    [message] = [m for m in listed if m["to"] == online["email"]]
    assert "body" not in message and message["subject"] and message["date"]
    [full] = [
        m
        for m in json.loads(cli(data, "outbox", "list", "--json", "--with-body").stdout)
        if m["to"] == online["email"]
    ]
    assert "12 février 2030" in full["body"] and CODE.search(full["body"])
    built = json.loads(cli(data, "letters", "build", "--out", str(tmp_path / "out"), "--json").stdout)
    assert built["letters"] == 1
    with pikepdf.open(tmp_path / "out" / built["files"][0]) as pdf:
        assert len(pdf.pages) == 1
    assert (
        json.loads(cli(data, "letters", "build", "--out", str(tmp_path / "out"), "--json").stdout)["letters"]
        == 0
    )
    assert "aucune lettre" in cli(data, "letters", "build", "--out", str(tmp_path / "out")).stdout
