"""The trace is tamper-evident: `verify` recomputes every chain, checks heads and signed seals, and names the
first broken link (SECURITY V7 7.3.3).

Tampering needs a database of its own: the session's database is verified whole by other tests, so every test
that rewrites rows does it in `scratch`, a second database on the same server with its own runtime, and only
inside a space it created."""

from __future__ import annotations

import base64
import dataclasses
import os
import secrets
import stat
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from espace_sante.audit import chains as audit
from espace_sante.audit.seal import KeySet, Sealer, key_id, message, public_b64
from espace_sante.audit.verify import Report, SpaceReport, check_space
from espace_sante.context import Context
from espace_sante.fhir.compartment import space_of
from espace_sante.record import interactions as fhir_service
from espace_sante.runtime import Runtime
from espace_sante.settings import Settings, UnsafeSettings
from espace_sante.storage import audit as audit_store
from espace_sante.storage.audit import GENESIS, Record, chain_hash
from espace_sante.storage.db import Conn
from espace_sante.storage.embedded import database_uri
from tests.factories import BASE, FHIR_JSON, patient


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _new_signing_key() -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    return key, _b64(key.private_bytes_raw())


@pytest.fixture(scope="module")
async def scratch(runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Runtime]:
    """A runtime on a fresh database of the session's server, with its own signing key."""
    name = "audit_" + secrets.token_hex(4)
    async with runtime.db.pool.acquire() as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("audit-scratch"),
        database_url=database_uri(runtime.db.dsn, name),
        dev=True,
        base_url=BASE,
        kek=_b64(os.urandom(32)),
        audit_signing_key=_new_signing_key()[1],
    )
    rt = await Runtime.open(settings, apply_migrations=True)
    yield rt
    await rt.close()
    async with runtime.db.pool.acquire() as conn:
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _observation(pid: str, text: str = "Poids") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": text},
        "subject": {"reference": f"Patient/{pid}"},
    }


async def _space_with_records(rt: Runtime, measurements: int = 4) -> uuid.UUID:
    """A new patient and `measurements` observations: 1 + measurements records in the patient's chain."""
    ctx = Context.system(rt)
    pat = (await fhir_service.create(ctx, patient())).stored
    for _ in range(measurements):
        await fhir_service.create(ctx, _observation(pat.resource_id))
    return pat.space_id


async def _as_superuser(rt: Runtime, sql: str, *args: Any) -> None:
    """What someone with the database's superuser can do: switch the append-only trigger off, rewrite, switch it
    back on. One transaction, so the trigger is never left off."""
    async with rt.db.pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
        await conn.execute(sql, *args)
        await conn.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")


async def _add_seal(rt: Runtime, seal: audit_store.Seal) -> None:
    assert await rt.db.interaction("test_seal", audit_store.add_seal, seal)


async def _head(rt: Runtime, space: uuid.UUID) -> tuple[int, bytes]:
    head = await rt.db.read("test_head", audit_store.head, space)
    assert head is not None
    return head


# --- A clean trace ------------------------------------------------------------------------------------------------


async def test_a_clean_trace_verifies_after_work_through_the_services_and_the_api(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """A feed creates a patient through the API and the services add measurements; the patient's chain has a
    record for each, and the whole trace (every space, the directory's included) verifies, before and after the
    heads are sealed."""
    response = await fhir.post("/Patient", json=patient(), headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    pid = response.json()["id"]
    space = space_of(pid)
    assert space is not None
    ctx = Context.system(runtime)
    for text in ("Poids", "Taille", "Tension"):
        await fhir_service.create(ctx, _observation(pid, text))
    assert (await fhir.get(f"/Patient/{pid}")).status_code == 200

    one = await audit.verify(runtime, space)
    assert one.ok, one.as_dict()
    assert (one.spaces, one.records) == (1, 5)  # create patient, 3 creates, 1 read

    assert await audit.seal_heads(runtime) >= 1
    assert await audit.seal_heads(runtime) == 0  # nothing moved since
    seen: list[uuid.UUID] = []
    everything = await audit.verify(runtime, on_space=lambda s: seen.append(s.space_id))
    assert everything.ok, everything.as_dict()
    assert space in seen and everything.spaces == len(seen)
    assert everything.seals >= everything.spaces


async def test_a_space_without_a_trace_is_empty_not_broken(runtime: Runtime) -> None:
    report = await audit.verify(runtime, uuid.uuid4())
    assert report.ok and report.records == 0


async def test_records_written_while_verifying_are_not_a_break(scratch: Runtime) -> None:
    """Writers keep appending while an operator verifies: what arrives after the head was read is outside this
    check, never a false alarm."""
    import asyncio

    space = await _space_with_records(scratch, 2)
    pid = await scratch.db.read(
        "test_pid",
        lambda conn: conn.fetchval(
            "SELECT entity_id FROM audit_event WHERE space_id = $1 AND seq = 1", space
        ),
    )
    ctx = Context.system(scratch)
    results = await asyncio.gather(
        *(audit.verify(scratch, space) for _ in range(5)),
        *(fhir_service.create(ctx, _observation(pid)) for _ in range(10)),
    )
    assert all(r.ok for r in results if isinstance(r, Report))
    assert (await audit.verify(scratch, space)).records == 13


# --- Tampering ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["actor_id", "entity_id"])
async def test_a_record_altered_in_the_database_is_named(scratch: Runtime, column: str) -> None:
    """A superuser changes who acted, or on what, in record 3: verify names that space and record 3, and says
    the records before it checked."""
    space = await _space_with_records(scratch)
    await audit.seal_heads(scratch)
    await _as_superuser(
        scratch,
        f"UPDATE audit_event SET {column} = 'someone-else' WHERE space_id = $1 AND seq = 3",
        space,
    )
    report = await audit.verify(scratch, space)
    assert not report.ok
    (broken,) = report.broken
    assert broken.records == 2
    assert broken.broken is not None
    assert (broken.broken.space_id, broken.broken.seq, broken.broken.problem) == (space, 3, "altered")
    assert broken.broken.message == "record 3 was altered: its content does not match its hash"


async def test_a_changed_link_is_named(scratch: Runtime) -> None:
    space = await _space_with_records(scratch)
    await _as_superuser(
        scratch, "UPDATE audit_event SET prev_hash = $2 WHERE space_id = $1 AND seq = 4", space, bytes(32)
    )
    broken = (await audit.verify(scratch, space)).broken[0].broken
    assert broken is not None
    assert (broken.seq, broken.problem) == (4, "link")


async def test_a_record_deleted_in_the_middle_is_missing(scratch: Runtime) -> None:
    space = await _space_with_records(scratch)
    await _as_superuser(scratch, "DELETE FROM audit_event WHERE space_id = $1 AND seq = 2", space)
    broken = (await audit.verify(scratch, space)).broken[0].broken
    assert broken is not None
    assert (broken.space_id, broken.seq, broken.message) == (space, 2, "record 2 is missing")


async def test_the_last_records_deleted_leave_a_head_mismatch(scratch: Runtime) -> None:
    """Deleting the newest records leaves a chain that checks up to its end, but the chain head still counts
    them."""
    space = await _space_with_records(scratch)
    await _as_superuser(scratch, "DELETE FROM audit_event WHERE space_id = $1 AND seq >= 4", space)
    broken = (await audit.verify(scratch, space)).broken[0].broken
    assert broken is not None
    assert (broken.seq, broken.problem) == (4, "head")
    assert broken.message.startswith("head mismatch")


async def test_a_replaced_head_is_a_head_mismatch(scratch: Runtime) -> None:
    space = await _space_with_records(scratch)
    async with scratch.db.pool.acquire() as conn:  # audit_chain is the app's own bookkeeping: no trigger
        await conn.execute("UPDATE audit_chain SET head = $2 WHERE space_id = $1", space, os.urandom(32))
    broken = (await audit.verify(scratch, space)).broken[0].broken
    assert broken is not None
    assert (broken.seq, broken.message) == (5, "head mismatch: the chain's head does not match record 5")


async def test_a_consistent_rewrite_is_caught_by_the_seal(scratch: Runtime) -> None:
    """The attack the seals exist for: a superuser rewrites record 2 and recomputes every hash after it and the
    chain head. The chain alone checks again; the seal made before the rewrite does not."""
    space = await _space_with_records(scratch)
    assert await audit.seal_heads(scratch) >= 1
    sealed_at, _ = await _head(scratch, space)

    async def chain(conn: Conn) -> list[audit_store.StoredRecord]:
        return [r async for r in audit_store.chain(conn, space)]

    stored = await scratch.db.read("test_chain", chain)
    prev = GENESIS
    async with scratch.db.pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only")
        for r in stored:
            record = r.record
            if r.seq == 2:
                record = dataclasses.replace(record, actor_id="innocent")
                await conn.execute(
                    "UPDATE audit_event SET actor_id = $3 WHERE space_id = $1 AND seq = $2",
                    space,
                    r.seq,
                    record.actor_id,
                )
            digest = chain_hash(prev, space, r.seq, record)
            await conn.execute(
                "UPDATE audit_event SET prev_hash = $3, hash = $4 WHERE space_id = $1 AND seq = $2",
                space,
                r.seq,
                prev,
                digest,
            )
            prev = digest
        await conn.execute("UPDATE audit_chain SET head = $2 WHERE space_id = $1", space, prev)
        await conn.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only")

    async def without_seals(conn: Conn) -> SpaceReport:
        head = await audit_store.head(conn, space)
        return await check_space(space, audit_store.chain(conn, space), head, [], KeySet.of([]))

    unsealed = await scratch.db.read("test_unsealed", without_seals)
    assert unsealed.ok  # without the seal the rewrite would pass

    broken = (await audit.verify(scratch, space)).broken[0].broken
    assert broken is not None
    assert (broken.seq, broken.message) == (sealed_at, f"seal at {sealed_at} does not match the chain")


async def test_a_forged_seal_is_detected(scratch: Runtime) -> None:
    """A seal row with the right key id but a signature made without the key."""
    space = await _space_with_records(scratch)
    seq, head = await _head(scratch, space)
    sealer = Sealer.from_settings(scratch.settings)
    await _add_seal(scratch, audit_store.Seal(space, seq, head, sealer.key_id, os.urandom(64)))
    broken = (await audit.verify(scratch, space)).broken[0].broken
    assert broken is not None
    assert (broken.seq, broken.problem, broken.message) == (
        seq,
        "seal-signature",
        f"bad signature on seal at {seq}",
    )


async def test_a_genuine_signature_moved_to_another_position_is_detected(scratch: Runtime) -> None:
    """The signature is over (space, seq, head): a real seal copied to another space or position fails."""
    space = await _space_with_records(scratch)
    seq, head = await _head(scratch, space)
    genuine = Sealer.from_settings(scratch.settings).seal(space, seq, head)
    await _add_seal(scratch, dataclasses.replace(genuine, seq=seq - 1))
    broken = (await audit.verify(scratch, space)).broken[0].broken
    assert broken is not None
    assert (broken.seq, broken.problem) == (seq - 1, "seal-signature")


async def test_a_seal_from_an_unknown_key_is_detected(scratch: Runtime) -> None:
    """Someone seals a rewritten head with a key of their own: a valid signature, but from no key we know."""
    space = await _space_with_records(scratch)
    seq, head = await _head(scratch, space)
    stranger, _ = _new_signing_key()
    await _add_seal(scratch, Sealer(stranger).seal(space, seq, head))
    broken = (await audit.verify(scratch, space)).broken[0].broken
    assert broken is not None
    assert broken.problem == "seal-unknown-key"
    assert broken.message == f"seal at {seq} is signed by an unknown key ({key_id(stranger.public_key())})"


async def test_seals_made_before_a_key_rotation_still_verify(scratch: Runtime) -> None:
    """The operator rotates the signing key and lists the old public key in ESPACE_SANTE_AUDIT_VERIFY_KEYS: old
    seals verify; forgetting to list it makes them seals of an unknown key."""
    space = await _space_with_records(scratch, 1)
    await audit.seal_heads(scratch)
    old_public = public_b64(Sealer.from_settings(scratch.settings).public)
    new_key = _new_signing_key()[1]

    def rotated(verify_keys: str) -> Runtime:
        settings = scratch.settings.model_copy(
            update={"audit_signing_key": new_key, "audit_verify_keys": verify_keys}
        )
        return dataclasses.replace(scratch, settings=settings)

    forgot = await audit.verify(rotated(""), space)
    assert forgot.broken and forgot.broken[0].broken is not None
    assert forgot.broken[0].broken.problem == "seal-unknown-key"

    rt = rotated(f" {old_public} ,")
    await fhir_service.create(Context.system(rt), patient())  # elsewhere; keeps the runtime honest
    pid = await rt.db.read(
        "test_pid",
        lambda conn: conn.fetchval(
            "SELECT entity_id FROM audit_event WHERE space_id = $1 AND seq = 1", space
        ),
    )
    await fhir_service.create(Context.system(rt), _observation(pid))
    assert await audit.seal_heads(rt) >= 1  # under the new key
    report = await audit.verify(rt, space)
    assert report.ok, report.as_dict()
    assert report.seals == 2


# --- The application cannot rewrite the trace ------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_event SET actor_id = 'x' WHERE space_id = $1",
        "DELETE FROM audit_event WHERE space_id = $1",
        "TRUNCATE audit_event",
        "UPDATE audit_seal SET key_id = 'x' WHERE space_id = $1",
        "DELETE FROM audit_seal WHERE space_id = $1",
        "TRUNCATE audit_seal",
    ],
)
async def test_the_apps_sql_cannot_update_delete_or_truncate_the_trace(runtime: Runtime, sql: str) -> None:
    space = await _space_with_records(runtime, 1)
    await audit.seal_heads(runtime)  # so that the seal's row triggers have a row to fire on
    args = (space,) if "$1" in sql else ()

    async def attempt(conn: asyncpg.Connection) -> None:
        await conn.execute(sql, *args)

    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await runtime.db.interaction("test_rewrite", attempt)
    assert (await audit.verify(runtime, space)).ok


# --- Memory and keys ----------------------------------------------------------------------------------------------


async def test_a_long_chain_is_checked_in_constant_memory() -> None:
    """Verification streams: checking 5,000 records holds no more than a few of them at a time."""
    space, keys = uuid.uuid4(), KeySet.of([])
    n = 5_000
    when = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)

    async def records() -> AsyncIterator[audit_store.StoredRecord]:
        prev = GENESIS
        for seq in range(1, n + 1):
            record = Record("resource:read", "0", "client", f"c{seq}", recorded_at=when)
            digest = chain_hash(prev, space, seq, record)
            yield audit_store.StoredRecord(space, seq, record, prev, digest)
            prev = digest

    async def head() -> tuple[int, bytes]:
        prev = GENESIS
        async for r in records():
            prev = r.hash
        return n, prev

    last = await head()
    tracemalloc.start()
    try:
        result = await check_space(space, records(), last, [], keys)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.ok and result.records == n
    assert peak < 1_000_000  # 5,000 records kept would weigh several megabytes


def test_the_signed_message_names_space_position_and_head() -> None:
    space = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert message(space, 12, b"\xab" * 32) == (
        b"espace-sante audit seal v1|12345678-1234-5678-1234-567812345678|12|" + b"ab" * 32
    )


def test_development_generates_a_private_signing_key_once(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, environment="development")
    first = settings.audit_signing_key_bytes()
    assert Settings(data_dir=tmp_path).audit_signing_key_bytes() == first
    path = tmp_path / "audit-signing.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(tmp_path.glob("*.tmp"))


def test_production_requires_a_signing_key(tmp_path: Path) -> None:
    settings = Settings(
        environment="production",
        data_dir=tmp_path,
        kek=_b64(os.urandom(32)),
        password_pepper=_b64(os.urandom(32)),
        database_url="postgresql://db/espace_sante",
        base_url="https://espace-sante.example",
    )
    with pytest.raises(UnsafeSettings, match="no audit signing key"):
        settings.check_production()
    with pytest.raises(UnsafeSettings, match="AUDIT_SIGNING_KEY"):
        settings.audit_signing_key_bytes()
    key_file = tmp_path / "signing.key"
    key_file.write_text(_new_signing_key()[1] + "\n")
    settings.model_copy(update={"audit_signing_key_file": key_file}).check_production()
    assert not (tmp_path / "audit-signing.key").exists()  # never generated in production


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("audit_signing_key", "not base64!", "not valid base64"),
        ("audit_signing_key", _b64(b"short"), "raw Ed25519 private key (32 bytes), got 5"),
        ("audit_verify_keys", _b64(b"x" * 31), "raw Ed25519 public key (32 bytes), got 31"),
    ],
)
def test_a_malformed_key_is_a_readable_error(tmp_path: Path, field: str, value: str, error: str) -> None:
    settings = Settings(data_dir=tmp_path).model_copy(update={field: value})
    with pytest.raises(UnsafeSettings, match=error.replace("(", r"\(").replace(")", r"\)")):
        KeySet.from_settings(settings)
