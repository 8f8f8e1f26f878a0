"""Activation stories (spaces/activation.py) in the session's database, on spaces made by the registry
import: a person redeems with the right birth date; wrong dates count and lock; a new code unlocks and the old
one stops working; used and expired codes are refused; concurrent redemptions of one code give one success;
the limits per address and for the service hold; the database and the trace never hold the code."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import secrets
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from espace_sante.access.actors import Actor
from espace_sante.audit import chains as audit
from espace_sante.audit import wording
from espace_sante.context import Context
from espace_sante.errors import NotFound
from espace_sante.runtime import Runtime
from espace_sante.spaces import activation
from espace_sante.spaces.activation import LOCKED, THROTTLED, WRONG, ActivationRefused
from espace_sante.spaces.registry.importer import import_file
from espace_sante.spaces.registry.rejects import RejectsFile
from espace_sante.spaces.registry.rows import COLUMNS
from espace_sante.storage import audit as audit_store
from espace_sante.storage.db import Conn
from espace_sante.storage.keys import DIRECTORY_SPACE
from tests.factories import new_nir

BORN = date(1971, 3, 2)
OPERATOR = Actor("operator", "agent.dupont", display="Agent Dupont")


def new_ip() -> str:
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


async def new_space(runtime: Runtime, tmp_path: Path, born: date = BORN) -> uuid.UUID:
    nir = new_nir()
    row = {c: "" for c in COLUMNS} | {
        "nir": nir,
        "last_name": "Lefèvre",
        "first_names": "Anne",
        "birth_date": born.isoformat(),
        "sex": "F",
        "address_line": "12 rue Pasteur",
        "postal_code": "69003",
        "city": "Lyon",
    }
    path = tmp_path / f"registre-{nir}.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerow(row)
    with RejectsFile(None) as out:
        await import_file(runtime, path, rejects=out)
    space = await runtime.db.fetchval("space", "SELECT space_id FROM registry_person WHERE nir = $1", nir)
    assert isinstance(space, uuid.UUID)
    return space


def operator(runtime: Runtime) -> Context:
    return Context(runtime, OPERATOR)


def visitor(runtime: Runtime) -> Context:
    return Context.system(runtime)


async def refused(runtime: Runtime, code: str, born: date, ip: str) -> ActivationRefused:
    with pytest.raises(ActivationRefused) as caught:
        await activation.redeem(visitor(runtime), code, born, ip=ip)
    return caught.value


async def actions(runtime: Runtime, space: uuid.UUID) -> list[tuple[str, str, str]]:
    rows = await runtime.db.read(
        "trace",
        lambda conn: conn.fetch(
            "SELECT action, basis, detail FROM audit_event WHERE space_id = $1 AND action LIKE 'activation:%' "
            "ORDER BY seq",
            space,
        ),
    )
    return [(r["action"], r["basis"], r["detail"]) for r in rows]


async def test_a_person_redeems_with_the_right_birth_date(runtime: Runtime, tmp_path: Path) -> None:
    space = await new_space(runtime, tmp_path)
    code = await activation.issue(operator(runtime), space)
    typed = code.lower().replace("-", " ").replace("V", "u").replace("v", "u")
    assert await activation.redeem(visitor(runtime), typed, BORN, ip=new_ip()) == space
    trace = await actions(runtime, space)
    assert [a for a, _, _ in trace] == ["activation:issue", "activation:redeem"]
    assert trace[0][2] == f"until={(datetime.now(UTC) + timedelta(days=42)).date().isoformat()}"
    assert not (await audit.verify(runtime, space)).broken


async def test_a_wrong_birth_date_counts_a_failure_with_the_same_message(
    runtime: Runtime, tmp_path: Path
) -> None:
    space = await new_space(runtime, tmp_path)
    code = await activation.issue(operator(runtime), space)
    ip = new_ip()
    wrong_date = await refused(runtime, code, date(1971, 3, 3), ip)
    unknown = await refused(runtime, activation.new_code(), BORN, ip)
    malformed = await refused(runtime, "not a code", BORN, ip)
    assert wrong_date.message == unknown.message == malformed.message == WRONG
    assert not wrong_date.locked
    failures = await runtime.db.fetchval(
        "n", "SELECT failures FROM activation_code WHERE space_id = $1", space
    )
    assert failures == 1
    assert (await actions(runtime, space))[-1][:2] == ("activation:failure", "wrong birth date")
    assert await activation.redeem(visitor(runtime), code, BORN, ip=ip) == space


async def test_five_failures_lock_and_only_a_new_code_unlocks(runtime: Runtime, tmp_path: Path) -> None:
    space = await new_space(runtime, tmp_path)
    code = await activation.issue(operator(runtime), space)
    ip = new_ip()
    messages = [(await refused(runtime, code, date(1980, 1, day), ip)) for day in range(1, 6)]
    assert [m.locked for m in messages] == [False] * 4 + [True]
    assert messages[-1].message == LOCKED
    again = await refused(runtime, code, BORN, ip)  # the right date, too late
    assert again.locked and again.message == LOCKED
    trace = await actions(runtime, space)
    assert [a for a, _, _ in trace].count("activation:locked") == 1
    assert trace[-1][:2] == ("activation:failure", "locked")
    fresh = await activation.issue(operator(runtime), space)
    assert (await actions(runtime, space))[-1][:2] == ("activation:issue", "reissue")
    old = await refused(runtime, code, BORN, ip)
    assert old.message == WRONG and not old.locked
    assert await activation.redeem(visitor(runtime), fresh, BORN, ip=ip) == space


async def test_an_old_code_after_a_reissue_is_refused(runtime: Runtime, tmp_path: Path) -> None:
    space = await new_space(runtime, tmp_path)
    old = await activation.issue(operator(runtime), space)
    new = await activation.issue(operator(runtime), space)
    assert old != new
    ip = new_ip()
    assert (await refused(runtime, old, BORN, ip)).message == WRONG
    # The old code names no space any more: its failure is in the directory's chain.
    assert await activation.redeem(visitor(runtime), new, BORN, ip=ip) == space


async def test_a_used_code_is_refused(runtime: Runtime, tmp_path: Path) -> None:
    space = await new_space(runtime, tmp_path)
    code = await activation.issue(operator(runtime), space)
    ip = new_ip()
    assert await activation.redeem(visitor(runtime), code, BORN, ip=ip) == space
    assert (await refused(runtime, code, BORN, ip)).message == WRONG
    assert (await actions(runtime, space))[-1][:2] == ("activation:failure", "used")


async def test_an_expired_code_is_refused(runtime: Runtime, tmp_path: Path) -> None:
    space = await new_space(runtime, tmp_path)
    soon = datetime.now(UTC) + timedelta(days=1)
    code = await activation.issue(operator(runtime), space, valid_until=soon)
    assert (await actions(runtime, space))[-1][2] == f"until={soon.date().isoformat()}"
    await runtime.db.interaction(
        "expire",
        lambda conn: conn.execute(
            "UPDATE activation_code SET expires_at = now() - interval '1 second' WHERE space_id = $1", space
        ),
    )
    assert (await refused(runtime, code, BORN, new_ip())).message == WRONG
    assert (await actions(runtime, space))[-1][:2] == ("activation:failure", "expired")


async def test_concurrent_redemptions_of_one_code_give_exactly_one_success(
    runtime: Runtime, tmp_path: Path
) -> None:
    """SECURITY V2 2.6: 20 concurrent redeems, each on its own pooled connection, one wins."""
    space = await new_space(runtime, tmp_path)
    code = await activation.issue(operator(runtime), space)
    results = await asyncio.gather(
        *(activation.redeem(visitor(runtime), code, BORN, ip=new_ip()) for _ in range(20)),
        return_exceptions=True,
    )
    assert [r for r in results if not isinstance(r, BaseException)] == [space]
    assert all(isinstance(r, ActivationRefused) and r.message == WRONG for r in results if r != space)
    trace = await actions(runtime, space)
    assert [a for a, _, _ in trace].count("activation:redeem") == 1
    assert [b for a, b, _ in trace if a == "activation:failure"] == ["used"] * 19


async def test_the_lifecycle_step_runs_in_the_redeeming_transaction(runtime: Runtime, tmp_path: Path) -> None:
    """A `then` that raises spends nothing: the code still works afterwards."""
    space = await new_space(runtime, tmp_path)
    code = await activation.issue(operator(runtime), space)
    seen: list[uuid.UUID] = []

    async def fails(conn: Conn, space_id: uuid.UUID) -> None:
        raise RuntimeError("transition refused")

    async def records(conn: Conn, space_id: uuid.UUID) -> None:
        seen.append(space_id)

    with pytest.raises(RuntimeError):
        await activation.redeem(visitor(runtime), code, BORN, ip=new_ip(), then=fails)
    assert await activation.redeem(visitor(runtime), code, BORN, ip=new_ip(), then=records) == space
    assert seen == [space]


async def test_an_address_is_limited_then_locked(runtime: Runtime, tmp_path: Path) -> None:
    space = await new_space(runtime, tmp_path)
    code = await activation.issue(operator(runtime), space)
    ip = new_ip()
    for _ in range(runtime.settings.activation_ip_max_attempts):
        assert (await refused(runtime, activation.new_code(), BORN, ip)).message == WRONG
    assert (await refused(runtime, code, BORN, ip)).message == THROTTLED  # the right code, too
    locked = await runtime.db.read(
        "trace",
        lambda conn: conn.fetchval(
            "SELECT count(*) FROM audit_event WHERE space_id = $1 AND action = 'activation:locked' "
            "AND detail = $2",
            DIRECTORY_SPACE,
            f"ip={ip}",
        ),
    )
    assert locked == 1
    assert await activation.redeem(visitor(runtime), code, BORN, ip=new_ip()) == space


async def test_a_ceiling_for_the_whole_service_per_minute(runtime: Runtime, tmp_path: Path) -> None:
    """The ceiling is counted in PostgreSQL: a runtime with other settings (another process) shares the count,
    and past the ceiling even the right code and date are refused, whatever the address."""
    space = await new_space(runtime, tmp_path)
    code = await activation.issue(operator(runtime), space)
    assert (await refused(runtime, activation.new_code(), BORN, new_ip())).message == WRONG
    count = await runtime.db.fetchval(
        "n", "SELECT failures FROM signin_throttle WHERE key = $1", activation.GLOBAL_KEY
    )
    other = dataclasses.replace(
        runtime, settings=runtime.settings.model_copy(update={"activation_global_per_minute": count})
    )
    assert (await refused(other, code, BORN, new_ip())).message == THROTTLED
    assert await activation.redeem(visitor(runtime), code, BORN, ip=new_ip()) == space


async def test_the_database_and_the_trace_never_hold_the_code(runtime: Runtime, tmp_path: Path) -> None:
    space = await new_space(runtime, tmp_path)
    code = await activation.issue(operator(runtime), space)
    raw = activation.normalise(code)
    await refused(runtime, code, date(2000, 1, 1), new_ip())
    await activation.redeem(visitor(runtime), code, BORN, ip=new_ip())

    async def dump(conn: Conn) -> list[bytes]:
        await conn.execute("CHECKPOINT")
        rows = await conn.fetch("SELECT a::text AS t FROM activation_code a")
        trace = await conn.fetch(
            "SELECT e::text AS t FROM audit_event e WHERE space_id = ANY($1::uuid[]) AND action LIKE 'activation:%'",
            [space, DIRECTORY_SPACE],
        )
        return [r["t"].encode() for r in [*rows, *trace]]

    texts = await runtime.db.interaction("dump", dump)
    for needle in (code, raw, raw.lower(), code.lower()):
        assert not any(needle.encode() in t for t in texts)
    digest = await runtime.db.fetchval("d", "SELECT digest FROM activation_code WHERE space_id = $1", space)
    assert len(digest) == 32 and raw.encode() not in digest
    # The trace names no birth date either, and reads in plain words.
    async with runtime.db.pool.acquire() as conn:
        records = [s.record async for s in audit_store.chain(conn, space)]
    words = [wording.sentence(r) for r in records if r.action.startswith("activation:")]
    assert words[0].startswith("Un code d'activation a été émis pour votre espace le ")
    assert "date de naissance incorrecte" in words[1] and "2000" not in " ".join(words)
    assert words[-1].startswith("Votre code d'activation a été utilisé")
    assert {(r.actor_kind, r.actor_id) for r in records if r.action == "activation:issue"} == {
        ("operator", OPERATOR.id)
    }
    assert {r.actor_kind for r in records if r.action in ("activation:failure", "activation:redeem")} == {
        "anonymous"
    }


async def test_an_unknown_space_gets_no_code(runtime: Runtime) -> None:
    with pytest.raises(NotFound):
        await activation.issue(operator(runtime), uuid.uuid4())
