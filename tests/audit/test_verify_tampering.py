"""`espace-sante audit verify` against an insider who alters the trace at random (issue 15): whatever is changed
in the stored rows (any column to any value, records deleted, added or reordered, the chain head rewritten or
removed, seals altered, moved or forged), the command names the first broken link and exits 1, or exits 0 when
nothing actually changed, and never stops on a traceback.

The insider is the table's owner: they switch the append-only triggers off, rewrite, and switch them back on, in
one transaction, in a database of this module's own and only inside a space each example creates. What no
verification can see is left out on purpose: a seal deleted (it only weakens the protection; the next
`audit seal` pins the head again) and a genuine seal over the right head (that is a seal).

The expected break is computed from the rows alone, without the verifier's code: the first position at which the
stored trace differs from what was written, with the few rules of where a head's damage shows (`_expected`)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from espace_sante.audit import chains as audit
from espace_sante.audit.seal import Sealer
from espace_sante.cli.main import app as cli
from espace_sante.runtime import Runtime
from espace_sante.settings import Settings
from espace_sante.storage import audit as audit_store
from espace_sante.storage.audit import ACTIONS, Record
from espace_sante.storage.db import Conn
from espace_sante.storage.embedded import database_uri
from tests.factories import BASE

N = 6  # records written in each example's space
SEALED = (3, N)  # positions sealed before the insider comes


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.fixture(scope="module")
async def scratch(runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Runtime]:
    """A runtime on a fresh database of the session's server, with its own keys."""
    name = "tamper_" + secrets.token_hex(4)
    async with runtime.db.pool.acquire() as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("tamper"),
        database_url=database_uri(runtime.db.dsn, name),
        dev=True,
        base_url=BASE,
        kek=_b64(os.urandom(32)),
        audit_signing_key=_b64(Ed25519PrivateKey.generate().private_bytes_raw()),
    )
    rt = await Runtime.open(settings, apply_migrations=True)
    yield rt
    await rt.close()
    async with runtime.db.pool.acquire() as conn:
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


# --- What the insider does --------------------------------------------------------------------------------------

_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
_bigint = st.integers(-(2**63), 2**63 - 1)
_position = st.integers(1, N)
_free = st.integers(-3, 0) | st.integers(N + 1, N + 4) | st.sampled_from([-(2**63), 2**63 - 1])
#: Instants Python holds, and some it cannot (PostgreSQL keeps them; a read must not fail on them).
_instant = st.datetimes(timezones=st.just(UTC)) | st.sampled_from(
    ["infinity", "-infinity", "20000-01-01 00:00:00+00", "4713-01-01 00:00:00+00 BC"]
)
_COLUMN_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "space_id": st.uuids(),
    "seq": _bigint | _free,
    "recorded_at": _instant,
    "action": st.sampled_from(ACTIONS) | _text,
    "outcome": st.sampled_from(["0", "4", "8"]) | _text,
    "actor_kind": _text,
    "actor_id": _text,
    "actor_display": _text,
    "basis": _text,
    "entity_type": st.none() | _text,
    "entity_id": st.none() | _text,
    "entity_version": st.none() | _bigint,
    "detail": _text,
    "request_id": _text,
    "prev_hash": st.binary(max_size=40),
    "hash": st.binary(max_size=40),
}

_record_ops = st.one_of(
    st.tuples(st.just("set"), _position, st.sampled_from(sorted(_COLUMN_VALUES))).flatmap(
        lambda t: st.tuples(*map(st.just, t), _COLUMN_VALUES[t[2]])
    ),
    st.tuples(st.just("delete"), _position),
    st.tuples(st.just("swap"), _position, _position),
    st.tuples(st.just("insert"), _position, _free),  # a copy of a record, at a new position
)
_head_ops = st.one_of(
    st.tuples(st.just("head-seq"), st.integers(1, N + 3)),
    st.tuples(st.just("head-hash"), st.binary(min_size=32, max_size=32)),
    st.tuples(st.just("head-delete")),
)
_seal_ops = st.one_of(
    st.tuples(st.just("seal-set"), st.sampled_from(SEALED), st.just("key_id"), _text),
    st.tuples(st.just("seal-set"), st.sampled_from(SEALED), st.just("signature"), st.binary(max_size=80)),
    st.tuples(st.just("seal-set"), st.sampled_from(SEALED), st.just("head"), st.binary(max_size=40)),
    st.tuples(st.just("seal-seq"), st.sampled_from(SEALED), _free | _position),
    st.tuples(st.just("seal-forge"), _free | _position, st.binary(min_size=64, max_size=64)),
    st.tuples(st.just("seal-genuine"), _free | _position, st.binary(min_size=32, max_size=32)),
)
tampering = st.lists(_record_ops | _head_ops | _seal_ops, min_size=1, max_size=3)


async def _tamper(rt: Runtime, space: uuid.UUID, ops: list[tuple[Any, ...]]) -> None:
    """Apply `ops` as the tables' owner would. An op that a constraint refuses (a position already taken) is
    skipped: the expectation is computed from the rows as they end up, not from the ops."""
    sealer = Sealer.from_settings(rt.settings)
    async with rt.db.pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
        await conn.execute("ALTER TABLE audit_seal DISABLE TRIGGER audit_seal_append_only")
        for op in ops:
            try:
                async with conn.transaction():  # a savepoint: a refused op leaves the others
                    await _apply(conn, space, sealer, op)
            except asyncpg.IntegrityConstraintViolationError:
                pass
        await conn.execute("ALTER TABLE audit_seal ENABLE TRIGGER audit_seal_append_only")
        await conn.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")


async def _apply(conn: asyncpg.Connection, space: uuid.UUID, sealer: Sealer, op: tuple[Any, ...]) -> None:
    where = "WHERE space_id = $1 AND seq = $2"
    match op:
        case ("set", k, "recorded_at", str(literal)):
            await conn.execute(
                f"UPDATE audit_event SET recorded_at = $3::text::timestamptz {where}", space, k, literal
            )
        case ("set", k, column, value):
            await conn.execute(f"UPDATE audit_event SET {column} = $3 {where}", space, k, value)
        case ("delete", k):
            await conn.execute(f"DELETE FROM audit_event {where}", space, k)
        case ("swap", i, j):
            move = "UPDATE audit_event SET seq = $3 WHERE space_id = $1 AND seq = $2"
            await conn.execute(move, space, i, -(2**63))
            await conn.execute(move, space, j, i)
            await conn.execute(move, space, -(2**63), j)
        case ("insert", k, v):
            columns = ", ".join(audit_store.AUDIT_COLUMNS[2:])
            await conn.execute(
                f"INSERT INTO audit_event (space_id, seq, {columns}) SELECT space_id, $3, {columns} "
                f"FROM audit_event {where}",
                space,
                k,
                v,
            )
        case ("head-seq", h):
            await conn.execute("UPDATE audit_chain SET seq = $2 WHERE space_id = $1", space, h)
        case ("head-hash", digest):
            await conn.execute("UPDATE audit_chain SET head = $2 WHERE space_id = $1", space, digest)
        case ("head-delete",):
            await conn.execute("DELETE FROM audit_chain WHERE space_id = $1", space)
        case ("seal-set", s, column, value):
            await conn.execute(f"UPDATE audit_seal SET {column} = $3 {where}", space, s, value)
        case ("seal-seq", s, v):
            await conn.execute(f"UPDATE audit_seal SET seq = $3 {where}", space, s, v)
        case ("seal-forge", v, signature):
            await audit_store.add_seal(
                conn, audit_store.Seal(space, v, os.urandom(32), sealer.key_id, signature)
            )
        case ("seal-genuine", v, head):  # signed with the real key, over a head that is not the chain's
            await audit_store.add_seal(conn, sealer.seal(space, v, head))
        case _:
            raise AssertionError(op)


# --- What was written, what is stored, and where the first difference shows ------------------------------------


@dataclass(frozen=True)
class State:
    records: dict[int, str]  # seq -> every other column, as PostgreSQL prints them
    head: tuple[int, bytes] | None
    seals: dict[int, str]
    hashes: dict[int, bytes]


async def _state(conn: Conn, space: uuid.UUID) -> State:
    rows = await conn.fetch(
        "SELECT seq, (to_jsonb(e) - 'seq')::text AS v, hash FROM audit_event e WHERE space_id = $1", space
    )
    head = await conn.fetchrow("SELECT seq, head FROM audit_chain WHERE space_id = $1", space)
    seals = await conn.fetch(
        "SELECT seq, (to_jsonb(s) - 'seq' - 'sealed_at')::text AS v FROM audit_seal s WHERE space_id = $1",
        space,
    )
    return State(
        {r["seq"]: r["v"] for r in rows},
        None if head is None else (head["seq"], bytes(head["head"])),
        {r["seq"]: r["v"] for r in seals},
        {r["seq"]: bytes(r["hash"]) for r in rows},
    )


def _expected(written: State, stored: State) -> int | None:
    """The position `verify` must name, or None when the stored trace is the written one (as far as anyone
    can tell: a deleted seal is not a difference)."""
    changed = {
        s
        for s in written.records.keys() | stored.records.keys()
        if written.records.get(s) != stored.records.get(s)
    }
    resealed = {s for s, v in stored.seals.items() if written.seals.get(s) != v}
    first = min(changed | resealed, default=None)
    if stored.head == written.head:
        return first
    if (
        stored.head is None
    ):  # the chain's end is lost: it shows where the records stop, or at the first change
        if first is None:
            return N
        if first > N:
            return N + 1 if any(s > N for s in changed) else N
        gone = first in changed and first not in stored.records and not any(s > first for s in stored.records)
        if gone:  # the records from `first` on are all gone: the walk ends before, with no head to compare
            return first - 1 if first > 1 else min(stored.seals, default=None)
        return first
    seq, digest = stored.head
    at = seq if seq < N else N + 1 if seq > N else N  # a head moved back shows at its own position
    assert digest != written.hashes.get(seq) or seq == N  # the strategies never forge a consistent head
    return min(at, first) if first is not None else at


# --- The property -----------------------------------------------------------------------------------------------


async def _written_space(rt: Runtime) -> uuid.UUID:
    """N records through the application's own append, sealed at SEALED with the application's key."""
    space = uuid.uuid4()
    when = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)

    async def write(conn: Conn) -> None:
        for i in range(N):
            record = Record(
                ACTIONS[i % len(ACTIONS)], "0", "practitioner", f"8100000000{i}", "Dr X", recorded_at=when
            )
            await audit_store.append(conn, space, record)
        sealer = Sealer.from_settings(rt.settings)
        hashes = {
            r["seq"]: bytes(r["hash"])
            for r in await conn.fetch("SELECT seq, hash FROM audit_event WHERE space_id = $1", space)
        }
        for s in SEALED:
            assert await audit_store.add_seal(conn, sealer.seal(space, s, hashes[s]))

    await rt.db.interaction("test_written", write)
    return space


def _cli_verify(settings_: Settings, space: uuid.UUID, extra: dict[str, str] | None = None) -> Any:
    """`espace-sante audit verify --space … --json` as an operator runs it (in-process, in its own thread and
    event loop, with the scratch database's settings in its environment)."""
    env = {
        "DATABASE_URL": str(settings_.database_url),
        "ESPACE_SANTE_DATA_DIR": str(settings_.data_dir),
        "ESPACE_SANTE_DEV": "true",
        "ESPACE_SANTE_KEK": str(settings_.kek),
        "ESPACE_SANTE_AUDIT_SIGNING_KEY": str(settings_.audit_signing_key),
        **(extra or {}),
    }
    return CliRunner().invoke(cli, ["audit", "verify", "--space", str(space), "--json"], env=env)


async def _triggers_on(rt: Runtime) -> bool:
    enabled = await rt.db.fetchval(
        "test_triggers",
        "SELECT bool_and(tgenabled = 'O') FROM pg_trigger WHERE tgname IN "
        "('audit_event_append_only', 'audit_seal_append_only')",
    )
    return bool(enabled)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=tampering)
async def test_verify_names_the_first_broken_link_whatever_an_insider_alters(
    scratch: Runtime, ops: list[tuple[Any, ...]]
) -> None:
    space = await _written_space(scratch)
    written = await scratch.db.read("test_state", _state, space)
    await _tamper(scratch, space, ops)
    assert await _triggers_on(scratch)
    stored = await scratch.db.read("test_state", _state, space)
    expected = _expected(written, stored)

    done = await asyncio.to_thread(_cli_verify, scratch.settings, space)
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    assert "Traceback" not in done.output
    report = json.loads(done.stdout)
    if expected is None:
        assert (done.exit_code, report["ok"]) == (0, True), report
        return
    assert done.exit_code == 1, done.output
    (space_report,) = report["broken"]
    broken = space_report["broken"]
    assert (broken["space"], broken["seq"]) == (str(space), expected), (ops, broken)
    assert broken["message"] and broken["message_fr"]


# --- Named cases (each failed before issue 15's fix) ------------------------------------------------------------


async def test_an_unknown_action_is_an_altered_record_not_a_crash(scratch: Runtime, tmp_path: Path) -> None:
    """The report of issue 15: an insider writes an action the code does not know into record 2."""
    space = await _written_space(scratch)
    await _tamper(scratch, space, [("set", 2, "action", "resource:obliterate")])
    done = await asyncio.to_thread(_cli_verify, scratch.settings, space)
    assert done.exit_code == 1 and done.exception is not None and isinstance(done.exception, SystemExit)
    broken = json.loads(done.stdout)["broken"][0]["broken"]
    assert (broken["seq"], broken["problem"]) == (2, "altered")


@pytest.mark.parametrize("instant", ["infinity", "20000-01-01 00:00:00+00", "4713-01-01 00:00:00+00 BC"])
async def test_an_instant_python_cannot_hold_is_an_altered_record(scratch: Runtime, instant: str) -> None:
    space = await _written_space(scratch)
    await _tamper(scratch, space, [("set", 4, "recorded_at", instant)])
    broken = (await audit.verify(scratch, space)).broken[0].broken
    assert broken is not None
    assert (broken.seq, broken.problem) == (4, "altered")


async def test_a_record_put_before_the_start_of_the_chain_is_named(scratch: Runtime) -> None:
    space = await _written_space(scratch)
    await _tamper(scratch, space, [("insert", 2, 0)])
    broken = (await audit.verify(scratch, space)).broken[0].broken
    assert broken is not None
    assert (broken.seq, broken.problem) == (0, "extra")
    assert broken.message == "record 0 was added: the chain starts at record 1"


async def test_a_record_put_after_the_head_is_named_not_taken_for_a_writer(scratch: Runtime) -> None:
    """A forged record after the head, the head left as it was: the holder's view would show it at the top of
    her trace. A writer's record moves the head in the same transaction; this one did not."""
    space = await _written_space(scratch)
    await _tamper(scratch, space, [("insert", 2, N + 1)])
    broken = (await audit.verify(scratch, space)).broken[0].broken
    assert broken is not None
    assert (broken.seq, broken.problem) == (N + 1, "extra")
    assert broken.message == f"record {N + 1} was added after the chain's head (record {N})"


async def test_a_key_id_is_quoted_without_its_control_characters(scratch: Runtime) -> None:
    space = await _written_space(scratch)
    await _tamper(scratch, space, [("seal-set", 3, "key_id", "\x1b[2Jclé")])
    broken = (await audit.verify(scratch, space)).broken[0].broken
    assert broken is not None
    assert broken.message == "seal at 3 is signed by an unknown key ('\\x1b[2Jcl\\xe9')"


async def test_a_check_that_cannot_run_says_so_in_one_line(scratch: Runtime) -> None:
    """The trace is locked longer than a statement may wait: the command could judge nothing. It says so on one
    line and exits 2 (1 is kept for "a link is broken"), no traceback."""
    space = await _written_space(scratch)
    async with scratch.db.pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE audit_event IN ACCESS EXCLUSIVE MODE")
        done = await asyncio.to_thread(
            _cli_verify, scratch.settings, space, {"ESPACE_SANTE_DB_STATEMENT_TIMEOUT_MS": "300"}
        )
    assert isinstance(done.exception, SystemExit), done.exception
    assert done.exit_code == 2
    assert done.stderr.startswith("espace-sante: vérification interrompue, rien n'a été jugé / ")
    assert "QueryCanceledError" in done.stderr and "Traceback" not in done.output
