"""Uncertain e-mails' way out (spaces/notices/delivery.uncertain and resolve, `notices uncertain|resolve`): an operator
lists them (recipient masked), and after checking the relay's logs marks one delivered, sends it once more on
purpose, or sends a letter with the same code instead; each decision traced in the space's chain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import date
from pathlib import Path

import pytest

from espace_sante.audit import chains as audit
from espace_sante.context import Context
from espace_sante.errors import NotFound
from espace_sante.runtime import Runtime
from espace_sante.spaces import activation
from espace_sante.spaces.notices import delivery, issue
from espace_sante.storage.db import Conn
from tests.notices.test_notices import CODE, letters_of, mail, outbox_for, space_of
from tests.registry.test_import import person, run, write


async def uncertain_mail(runtime: Runtime, tmp_path: Path, **values: str) -> tuple[dict[str, str], uuid.UUID]:
    """A person notified whose e-mail was handed to the relay by a worker that died before its answer."""
    row = person(email=mail(), **values)
    await run(runtime, write(tmp_path / f"{uuid.uuid4().hex}.csv", [row]))
    await issue.send(runtime, deliver_now=False)
    space = await space_of(runtime, row["nir"])

    async def q(conn: Conn) -> uuid.UUID:
        notice: uuid.UUID = await conn.fetchval(
            "UPDATE notice SET attempts = 1, handed_at = now(), uncertain_at = now(), "
            "error = 'uncertain: handed to the relay, answer not recorded' WHERE space_id = $1 "
            "AND channel = 'email' RETURNING notice_id",
            space,
        )
        return notice

    return row, await runtime.db.interaction("t", q)


async def state_of(runtime: Runtime, notice: uuid.UUID) -> dict[str, object]:
    async def q(conn: Conn) -> dict[str, object]:
        r = await conn.fetchrow(
            "SELECT delivered_at IS NOT NULL AS delivered, uncertain_at IS NOT NULL AS uncertain, "
            "handed_at IS NOT NULL AS handed, withdrawn_at IS NOT NULL AS withdrawn, body, sealed, resolution, "
            "resolved_by FROM notice WHERE notice_id = $1",
            notice,
        )
        assert r is not None
        return dict(r)

    return await runtime.db.read("t", q)


async def resolutions(runtime: Runtime, space: uuid.UUID) -> list[tuple[str, str, str]]:
    async def q(conn: Conn) -> list[tuple[str, str, str]]:
        rows = await conn.fetch(
            "SELECT basis, actor_id, detail FROM audit_event WHERE space_id = $1 AND action = 'notice:resolve' "
            "ORDER BY seq",
            space,
        )
        return [(r["basis"], r["actor_id"], r["detail"]) for r in rows]

    return await runtime.db.read("t", q)


def test_a_recipient_is_masked() -> None:
    assert delivery.masked("jeanne.dupont@example.fr") == "j***@example.fr"
    assert delivery.masked("x@y") == "x***@y" and delivery.masked("nope") == "***"


async def test_listed_masked_then_marked_delivered_once(runtime: Runtime, tmp_path: Path) -> None:
    row, notice = await uncertain_mail(runtime, tmp_path)
    space = await space_of(runtime, row["nir"])
    [listed] = [u for u in await delivery.uncertain(runtime) if u.notice_id == notice]
    assert listed.space_id == space and listed.recipient == f"{row['email'][0]}***@exemple.fr"
    assert row["email"] not in json.dumps(listed.as_json())

    done = await delivery.resolve(runtime, notice, "delivered", operator="agent.martin")
    assert done["resolution"] == "delivered"
    state = await state_of(runtime, notice)
    assert state["delivered"] and state["sealed"] is None and state["resolved_by"] == "agent.martin"
    assert notice not in {u.notice_id for u in await delivery.uncertain(runtime)}
    assert await resolutions(runtime, space) == [("delivered", "agent.martin", f"notice={notice}")]
    assert not (await audit.verify(runtime, space)).broken
    with pytest.raises(NotFound):  # resolved: nothing left to decide
        await delivery.resolve(runtime, notice, "resend")
    assert await outbox_for(runtime, row["email"]) == []  # we sent nothing


async def test_resend_sends_it_once_more_on_purpose(runtime: Runtime, tmp_path: Path) -> None:
    row, notice = await uncertain_mail(runtime, tmp_path)
    space = await space_of(runtime, row["nir"])
    assert await delivery.deliver(runtime) is not None
    assert await outbox_for(runtime, row["email"]) == []  # uncertain: never resent on its own

    await delivery.resolve(runtime, notice, "resend", operator="agent.durand")
    state = await state_of(runtime, notice)
    assert not state["uncertain"] and not state["handed"] and state["resolution"] == "resend"

    async def jobs(conn: Conn) -> int:
        n: int = await conn.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE queueing_lock = $1 AND status = 'todo'",
            f"notice:{notice}",
        )
        return n

    assert await runtime.db.read("t", jobs) >= 1  # its delivery job, deferred with the decision
    assert await delivery.deliver_one(runtime, space, notice) == "delivered"
    assert await delivery.deliver_one(runtime, space, notice) == "already"
    [(_, body)] = await outbox_for(runtime, row["email"])
    assert CODE.search(body)
    assert await resolutions(runtime, space) == [("resend", "agent.durand", f"notice={notice}")]


async def test_a_letter_instead_with_the_same_code(runtime: Runtime, tmp_path: Path) -> None:
    row, notice = await uncertain_mail(
        runtime, tmp_path, address_line="8 rue Victor Hugo", postal_code="69002"
    )
    space = await space_of(runtime, row["nir"])
    done = await delivery.resolve(runtime, notice, "letter")
    state = await state_of(runtime, notice)
    assert state["withdrawn"] and state["sealed"] is None and not state["delivered"]
    [letter] = await letters_of(runtime, space)
    assert letter["name"] == "Anne Marie Lefèvre" and letter["address_line"] == "8 rue Victor Hugo"
    assert letter["opens_on"] and not letter["child"]

    async def replaces(conn: Conn) -> uuid.UUID:
        value: uuid.UUID = await conn.fetchval(
            "SELECT replaces FROM notice WHERE notice_id = $1", uuid.UUID(done["letter"])
        )
        return value

    assert await runtime.db.read("t", replaces) == notice
    assert [r[0] for r in await resolutions(runtime, space)] == ["letter"]
    # The letter's code is the e-mail's, still the live one: it works.
    assert (
        await activation.redeem(
            Context.system(runtime), str(letter["code"]), date.fromisoformat(row["birth_date"])
        )
        == space
    )
    assert notice not in {u.notice_id for u in await delivery.uncertain(runtime)}


def cli(runtime: Runtime, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line on the session's database, keys and peppers (the operator's view of this service)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESPACE_SANTE_") and k != "DATABASE_URL"}
    s = runtime.settings
    env |= {
        "PYTHONWARNINGS": "ignore",
        "DATABASE_URL": str(s.database_url),
        "ESPACE_SANTE_KEK": str(s.kek),
        "ESPACE_SANTE_DEV": "true",
    }
    return subprocess.run(
        [sys.executable, "-m", "espace_sante", "--data-dir", str(s.data_dir), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


async def test_the_commands(runtime: Runtime, tmp_path: Path) -> None:
    row, notice = await uncertain_mail(runtime, tmp_path)
    space = await space_of(runtime, row["nir"])
    listed = cli(runtime, "notices", "uncertain", "--json")
    assert listed.returncode == 0, listed.stderr
    [mine] = [u for u in json.loads(listed.stdout) if u["notice"] == str(notice)]
    assert mine["space"] == str(space) and mine["to"].startswith(row["email"][0] + "***@") and mine["since"]
    text = cli(runtime, "notices", "uncertain").stdout
    assert str(notice) in text and row["email"] not in text

    both = cli(runtime, "notices", "resolve", str(notice), "--delivered", "--resend")
    assert both.returncode == 2 and "--delivered" in both.stderr
    done = cli(runtime, "notices", "resolve", str(notice), "--delivered", "--operator", "agent.leroy")
    assert done.returncode == 0, done.stderr
    assert (await state_of(runtime, notice))["delivered"]
    assert await resolutions(runtime, space) == [("delivered", "agent.leroy", f"notice={notice}")]
    again = cli(runtime, "notices", "resolve", str(notice), "--letter")
    assert again.returncode != 0 and "incertain" in again.stderr
