"""`registry import --notify` (spaces/registry/importer.py): one pass that creates the spaces and notifies them in the
same batch transactions ends exactly as `registry import` followed by `notices send` would: the same states and
opening dates, the same notices to the same people with the same words (codes aside), codes that redeem with
the birth date, the same trace, chains that verify; minors' notices go to their representatives wherever they
are in the file; a real process killed midway and run again ends as one clean run."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from benchmarks.provisioning import generate

from espace_sante import clock
from espace_sante.audit import chains as audit
from espace_sante.context import Context
from espace_sante.runtime import Runtime
from espace_sante.settings import Settings
from espace_sante.spaces import activation
from espace_sante.spaces.notices import delivery, issue, letters, words
from espace_sante.spaces.registry.importer import import_file
from espace_sante.spaces.registry.rejects import RejectsFile
from espace_sante.storage import migrate
from espace_sante.storage.db import Conn
from espace_sante.storage.embedded import EmbeddedPostgres, database_uri, ensure_database
from tests.cli.test_commands import EXE, _env, run
from tests.registry.test_import import person, write

CODE = re.compile(
    r"\b[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{2}\b"
)
ON = clock.today()

Fresh = Callable[[], Awaitable[Runtime]]


@pytest.fixture
async def fresh(runtime: Runtime) -> AsyncIterator[Fresh]:
    """Runtimes on new, empty databases of the session's server (the paths compared see only their own data)."""
    assert runtime.embedded is not None
    server = runtime.embedded.uri  # the session's server (a second start() would hold it past the session)
    opened: list[Runtime] = []

    async def make() -> Runtime:
        name = f"notify_{uuid.uuid4().hex[:12]}"
        dsn = await ensure_database(server, name)
        await migrate.migrate(dsn)
        s = runtime.settings
        rt = await Runtime.open(
            Settings(data_dir=s.data_dir, database_url=dsn, dev=True, base_url=s.base_url, kek=s.kek)
        )
        opened.append(rt)
        return rt

    yield make
    for rt in opened:
        await rt.close()
        admin = await asyncpg.connect(database_uri(server, "postgres"))
        try:
            name = str(rt.settings.database_url).rsplit("/", 1)[1].split("?")[0]
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def _import(rt: Runtime, path: Path, **kw: Any) -> dict[str, int]:
    with RejectsFile(None) as out:
        counts = await import_file(rt, path, rejects=out, **kw)
    return counts.as_json()


def _uncoded(text: str) -> str:
    return CODE.sub("<code>", text)


async def _picture(rt: Runtime) -> dict[str, Any]:
    """Everything the notices decided, by NIR (space ids differ between databases): state, opening date,
    notices (words with the code masked, letters opened), the trace's records in order, and the codes."""

    async def q(conn: Conn) -> list[Any]:
        return list(
            await conn.fetch(
                "SELECT p.nir, s.space_id, s.state, s.opens_on, s.closed_reason FROM registry_person p "
                "JOIN space s USING (space_id) ORDER BY p.nir"
            )
        )

    async def details(conn: Conn, space: uuid.UUID) -> tuple[list[Any], list[Any]]:
        trace = await conn.fetch(
            "SELECT action, outcome, actor_kind, actor_id, basis, entity_type, detail FROM audit_event "
            "WHERE space_id = $1 ORDER BY seq",
            space,
        )
        # The e-mails of this space that a delivery job names (one job for one e-mail, or one for many).
        jobs = await conn.fetch(
            "SELECT args->>'notice_id' AS n FROM procrastinate_jobs WHERE args->>'space_id' = $1 "
            "UNION ALL SELECT e->>1 FROM procrastinate_jobs, jsonb_array_elements(args->'emails') AS e "
            "WHERE args ? 'emails' AND e->>0 = $1",
            str(space),
        )
        return list(trace), [j["n"] for j in jobs]

    picture: dict[str, Any] = {}
    for r in await rt.db.read("t", q):
        trace, jobs = await rt.db.read("t", details, r["space_id"])
        mails = await delivery.emails_of(rt, r["space_id"])
        paper = await letters.letters_of(rt, r["space_id"])
        codes = [c for _, _, text in mails for c in CODE.findall(text or "")] + [x["code"] for x in paper]
        picture[r["nir"]] = {
            "state": (r["state"], r["opens_on"], r["closed_reason"]),
            "mails": sorted((to, subject, _uncoded(text or "")) for to, subject, text in mails),
            "letters": sorted(
                json.dumps({k: v for k, v in x.items() if k != "code"}, sort_keys=True) for x in paper
            ),
            "trace": [tuple(t) for t in trace],
            "jobs": len(jobs),
            "codes": set(codes),
            "space": r["space_id"],
        }
    return picture


def _file(tmp_path: Path) -> tuple[Path, dict[str, dict[str, str]]]:
    """A file in batches of 4 with every case: adults by e-mail and by letter, one without any address, a
    death, minors whose representatives are in their batch (before or after them), in an earlier batch, in a
    later batch, nowhere in the registry, or unreachable (neither e-mail nor address)."""
    p: dict[str, dict[str, str]] = {}
    p["mail"] = person(email=f"m-{uuid.uuid4().hex[:8]}@exemple.fr")
    p["paper"] = person(email="", last_name="Ngô", first_names="Văn")
    p["nowhere_to_write"] = person(email="", address_line="", postal_code="", city="")
    p["dead"] = person(death_date="2024-01-05")
    p["early_parent"] = person(email=f"e-{uuid.uuid4().hex[:8]}@exemple.fr", first_names="Eve")
    p["unreachable_parent"] = person(email="", address_line="", postal_code="", city="", first_names="Ugo")
    absent = person()["nir"]  # never in the file
    late_parent = person(email="", first_names="Luc", last_name="Tardif")
    kid = {"birth_date": "2014-04-04", "email": ""}
    p["child_of_earlier"] = person(**kid, first_names="Ana", representative_1_nir=p["early_parent"]["nir"])
    p["child_of_late"] = person(
        **kid,
        first_names="Bob",
        representative_1_nir=p["early_parent"]["nir"],
        representative_2_nir=late_parent["nir"],
    )
    p["child_of_absent"] = person(**kid, first_names="Cléo", representative_1_nir=absent)
    p["child_of_unreachable"] = person(
        **kid, first_names="Dan", representative_1_nir=p["unreachable_parent"]["nir"]
    )
    same_batch_parent = person(email=f"s-{uuid.uuid4().hex[:8]}@exemple.fr", first_names="Sam")
    p["child_in_batch"] = person(**kid, first_names="Zoé", representative_1_nir=same_batch_parent["nir"])
    p["same_batch_parent"] = same_batch_parent
    p["filler"] = person()
    p["late_parent"] = late_parent
    order = [
        "mail", "paper", "nowhere_to_write", "dead",  # batch 1
        "early_parent", "unreachable_parent", "filler", "child_in_batch",  # batch 2
        "same_batch_parent", "child_of_earlier", "child_of_late", "child_of_absent",  # batch 3
        "child_of_unreachable", "late_parent",  # batch 4
    ]  # fmt: skip
    return write(tmp_path / "registre.csv", [p[k] for k in order]), p


def folded(trace: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Import-then-send's trace as one pass writes it: a registration followed, with nothing else of the
    holder's in between but representatives, by `space:notify` and `activation:issue` is one registration
    record saying `notified|until=...` (the one pass made and notified the space in one transaction). A minor
    notified later in the same transaction (a representative looked up in the database) keeps the three."""
    actions = [t[0] for t in trace]
    if actions[:1] != ["space:register"] or "space:notify" not in actions:
        return trace
    at = actions.index("space:notify")
    if actions[at + 1 : at + 2] != ["activation:issue"] or any(
        a != "rights:representative" for a in actions[1:at]
    ):
        return trace
    until = trace[at + 1][-1]  # activation:issue's detail, "until=YYYY-MM-DD"
    first = (*trace[0][:-1], f"notified|{until}")
    return [first, *trace[1:at], *trace[at + 2 :]]


async def test_one_pass_equals_import_then_send(fresh: Fresh, tmp_path: Path) -> None:
    path, people = _file(tmp_path)
    earlier = write(tmp_path / "earlier.csv", [person(email="", first_names="Avant")])
    one, two = await fresh(), await fresh()
    # A space registered by an earlier import without --notify: both paths notify it too.
    for rt in (one, two):
        await _import(rt, earlier)

    counts = await _import(one, path, notify=ON, batch_size=4)
    await _import(two, path, batch_size=4)
    sent = await issue.send(two, ON, deliver_now=False)
    assert counts["created"] == len(people) and counts["notified"] == sent.notified == len(people)  # dead out
    assert (counts["emails"], counts["letters"]) == (sent.emails, sent.letters)

    a, b = await _picture(one), await _picture(two)
    assert a.keys() == b.keys()
    for nir in a:
        for part in ("state", "mails", "letters", "jobs"):
            assert a[nir][part] == b[nir][part], (nir, part)
        assert a[nir]["trace"] in (folded(b[nir]["trace"]), b[nir]["trace"]), nir
    # Made and notified in their batch: one record.
    for key in ("mail", "paper", "nowhere_to_write", "early_parent", "filler"):
        nir = people[key]["nir"]
        assert a[nir]["trace"] != b[nir]["trace"] and a[nir]["trace"][0][-1].startswith("notified|until=")
    for rt in (one, two):
        report = await audit.verify(rt)
        assert report.ok and report.spaces >= len(people)

    def of(key: str) -> dict[str, Any]:
        return a[people[key]["nir"]]

    opens = ON + timedelta(days=one.settings.opposition_window_days)
    assert of("mail")["state"] == ("notified", opens, None) and of("dead")["state"][0] == "closed"
    assert not of("dead")["mails"] and not of("dead")["letters"] and not of("dead")["codes"]
    # Minors: to their representatives wherever they are in the file; none to the child.
    child = of("child_of_late")
    assert {m[0] for m in child["mails"]} == {people["early_parent"]["email"]}
    assert [json.loads(x)["name"] for x in child["letters"]] == ["Luc Tardif"]
    assert all(m[1] == words.SUBJECT_CHILD for m in child["mails"])
    assert [m[0] for m in of("child_in_batch")["mails"]] == [people["same_batch_parent"]["email"]]
    assert [m[0] for m in of("child_of_earlier")["mails"]] == [people["early_parent"]["email"]]
    for alone in ("child_of_absent", "child_of_unreachable"):
        [letter] = [json.loads(x) for x in of(alone)["letters"]]
        assert letter["name"].startswith("Aux représentants légaux de") and not of(alone)["mails"]

    # Each space's notices carry one code, which redeems with the holder's birth date (once).
    for key, row in people.items():
        if key == "dead":
            continue
        [code] = of(key)["codes"]
        redeemed = await activation.redeem(
            Context.system(one),
            code,
            date.fromisoformat(row["birth_date"]),
            ip=f"2001:db8:{len(key)}::{hash(key) % 999}",
        )
        assert redeemed == of(key)["space"]


async def test_a_second_run_and_a_later_file_notify_nothing_twice(fresh: Fresh, tmp_path: Path) -> None:
    path, people = _file(tmp_path)
    rt = await fresh()
    first = await _import(rt, path, notify=ON, batch_size=4)
    again = await _import(rt, path, notify=ON, batch_size=4)
    assert first["notified"] == len(people) - 1
    assert again["created"] == 0 and again["notified"] == 0 and again["unchanged"] == len(people)
    more = person(email=f"n-{uuid.uuid4().hex[:8]}@exemple.fr")
    later = await _import(rt, write(tmp_path / "more.csv", [more]), notify=ON)
    assert later["created"] == 1 and later["notified"] == 1 and later["emails"] == 1

    async def per_space(conn: Conn) -> list[int]:
        rows = await conn.fetch(
            "SELECT count(*) AS n FROM notice n JOIN registry_person p USING (space_id) GROUP BY space_id"
        )
        return [r["n"] for r in rows]

    assert max(await rt.db.read("t", per_space)) <= 2  # a minor's two representatives at most


SUMMARY = """WITH n AS (SELECT space_id, count(*) FILTER (WHERE channel = 'email') AS emails,
      count(*) FILTER (WHERE channel = 'letter') AS letters FROM notice GROUP BY space_id),
    t AS (SELECT space_id, string_agg(action, ',' ORDER BY seq) AS trace FROM audit_event GROUP BY space_id),
    j AS (SELECT (args->>'space_id')::uuid AS space_id, count(*) AS jobs FROM procrastinate_jobs GROUP BY 1)
  SELECT p.nir, s.state, s.opens_on, s.closed_reason, n.emails, n.letters, c.space_id IS NOT NULL AS code,
    t.trace, j.jobs
  FROM registry_person p JOIN space s USING (space_id) LEFT JOIN n USING (space_id) LEFT JOIN t USING (space_id)
    LEFT JOIN j USING (space_id) LEFT JOIN activation_code c USING (space_id) ORDER BY p.nir"""


async def _rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def _value(dsn: str, sql: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def test_a_notifying_import_killed_midway_then_run_again_equals_one_clean_run(tmp_path: Path) -> None:
    registry = tmp_path / "registre.csv"
    generate(registry, 20_000)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    command = ["registry", "import", str(registry), "--notify", "--no-deliver", "--json"]
    run(clean, "migrate")
    expected = json.loads(run(clean, *command).stdout)
    assert expected["created"] > 19_900 and expected["notified"] > 19_700
    run(killed, "migrate")
    holder = EmbeddedPostgres(killed / "pg")
    dsn = asyncio.run(ensure_database(holder.start()))
    try:
        proc = subprocess.Popen(
            [*EXE, "--data-dir", str(killed), *command],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        sql = "SELECT coalesce(max(last_line), 0) FROM registry_import"
        while asyncio.run(_value(dsn, sql)) < 6_000:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        assert proc.poll() is None, "the import ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert 6_000 <= asyncio.run(_value(dsn, sql)) < 20_001
        # Killed: what committed is whole (every notified space has its code, notices and jobs).
        assert (
            asyncio.run(
                _value(
                    dsn,
                    "SELECT count(*) FROM space s WHERE s.state = 'notified' AND (NOT EXISTS (SELECT 1 FROM "
                    "activation_code c WHERE c.space_id = s.space_id) OR NOT EXISTS (SELECT 1 FROM notice n "
                    "WHERE n.space_id = s.space_id))",
                )
            )
            == 0
        )
        again = json.loads(run(killed, *command).stdout)
        keys = ("read", "created", "updated", "unchanged", "rejected")
        assert {k: again[k] for k in keys} == {k: expected[k] for k in keys}
        after_kill = asyncio.run(_rows(dsn, SUMMARY))
        verified = json.loads(run(killed, "audit", "verify", "--json").stdout)
    finally:
        holder.stop()
    other = EmbeddedPostgres(clean / "pg")
    try:
        after_clean = asyncio.run(_rows(asyncio.run(ensure_database(other.start())), SUMMARY))
    finally:
        other.stop()
    assert verified["ok"] and verified["spaces"] == expected["created"]
    assert after_kill == after_clean
    assert sum((r[4] or 0) + (r[5] or 0) for r in after_kill) == expected["emails"] + expected["letters"]
