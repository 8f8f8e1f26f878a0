"""Encryption at rest: what an insider with the disk, a backup or the database sees."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

import pytest

from espace_sante.access.actors import SYSTEM
from espace_sante.access.policy import decide
from espace_sante.context import Context
from espace_sante.crypto import KeyRing, LocalKek
from espace_sante.fhir import compartment
from espace_sante.record import interactions as fhir
from espace_sante.runtime import Runtime
from espace_sante.storage import lifecycle as lifecycle_store
from espace_sante.storage import resources
from espace_sante.storage.keys import KeyStore, MissingDataKey
from espace_sante.storage.resources import DataUnreadable
from tests.factories import patient


async def _patient_with_note(runtime: Runtime, marker: str) -> tuple[str, str]:
    ctx = Context.system(runtime)
    pat = (await fhir.create(ctx, patient())).stored
    obs = await fhir.create(
        ctx,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "Note"},
            "subject": {"reference": f"Patient/{pat.resource_id}"},
            "note": [{"text": marker}],
        },
    )
    return pat.resource_id, obs.stored.resource_id


def _files_containing(root: Path, needle: bytes) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    found.append(str(path.relative_to(root)))
            except OSError:
                continue
    return found


async def test_the_database_files_never_hold_a_resource_body_in_clear(
    runtime: Runtime, data_dir: Path
) -> None:
    """SECURITY V6 6.1.1: a clinical note goes in; after a checkpoint, neither the table files nor the WAL on
    disk contain its text, while the API still reads it back."""
    marker = "note-confidentielle-" + secrets.token_hex(8)
    _, obs_id = await _patient_with_note(runtime, marker)
    async with runtime.db.pool.acquire() as conn:
        await conn.execute("CHECKPOINT")
        raw = await conn.fetchval(
            "SELECT body FROM resource_version WHERE resource_type = 'Observation' AND resource_id = $1",
            obs_id,
        )
    assert marker.encode() not in raw
    assert _files_containing(data_dir / "pg", marker.encode()) == []
    back = await fhir.read(Context.system(runtime), "Observation", obs_id)
    assert back.body is not None and marker.encode() in back.body


async def test_a_body_swapped_onto_another_row_fails_to_decrypt(runtime: Runtime) -> None:
    """An insider copies one patient's Observation ciphertext onto another's row: the associated data (space,
    resource, version) no longer matches and the read fails instead of showing the wrong patient's data."""
    _, victim = await _patient_with_note(runtime, "a")
    _, other = await _patient_with_note(runtime, "b")
    async with runtime.db.pool.acquire() as conn:
        await conn.execute(
            "UPDATE resource_version SET body = (SELECT body FROM resource_version WHERE resource_id = $1) "
            "WHERE resource_id = $2",
            other,
            victim,
        )
    with pytest.raises(DataUnreadable):
        await fhir.read(Context.system(runtime), "Observation", victim)


async def test_a_flipped_bit_fails_to_decrypt(runtime: Runtime) -> None:
    _, obs = await _patient_with_note(runtime, "c")
    async with runtime.db.pool.acquire() as conn:
        await conn.execute(
            "UPDATE resource_version SET body = set_byte(body, 20, get_byte(body, 20) # 1) WHERE resource_id = $1",
            obs,
        )
    with pytest.raises(DataUnreadable):
        await fhir.read(Context.system(runtime), "Observation", obs)


async def test_destroying_the_space_key_makes_every_body_unreadable(runtime: Runtime) -> None:
    """Crypto-shredding: once the space's data keys are gone, no process (nor a backup) can read its bodies."""
    pat_id, obs_id = await _patient_with_note(runtime, "d")
    space = compartment.space_of(pat_id)
    assert space is not None
    decision = decide(SYSTEM, "read", "Observation")
    async with runtime.db.pool.acquire() as conn, conn.transaction():
        assert await runtime.keys.destroy(conn, space) == 1
    fresh = KeyStore(runtime.keys.ring)  # another process: nothing cached
    async with runtime.db.pool.acquire() as conn:
        for keys in (runtime.keys, fresh):
            with pytest.raises((DataUnreadable, MissingDataKey)):
                await resources.read(conn, keys, decision, space, "Observation", obs_id)
    # What destruction does next (spaces/lifecycle): its rows deleted and the space `destroyed`, so that the
    # session's shared database holds no live space whose bodies nobody can read (the lifecycle run reads them).
    async with runtime.db.pool.acquire() as conn, conn.transaction():
        await lifecycle_store.erase(conn, runtime.keys, [space])
        await conn.execute("UPDATE space SET state = 'destroyed' WHERE space_id = $1", space)


async def test_rotating_the_key_encryption_key_keeps_every_body_readable(runtime: Runtime) -> None:
    """SECURITY V1 1.6.1: a new KEK is configured with the old one as previous; rewrapping moves every data
    key under the new KEK; then a process that knows only the new KEK reads everything."""
    _, obs_id = await _patient_with_note(runtime, "e")
    old = runtime.keys.ring.current
    new = LocalKek(base64.b64decode(base64.b64encode(os.urandom(32))))
    rotating = KeyStore(KeyRing(new, [old]))
    async with runtime.db.pool.acquire() as conn, conn.transaction():
        assert await rotating.rewrap(conn) >= 1
        remaining = await conn.fetchval("SELECT count(*) FROM space_key WHERE kek_id <> $1", new.key_id)
    assert remaining == 0
    only_new = KeyStore(KeyRing(new))
    space = compartment.space_of(obs_id)
    assert space is not None
    async with runtime.db.pool.acquire() as conn:
        got = await resources.read(
            conn, only_new, decide(SYSTEM, "read", "Observation"), space, "Observation", obs_id
        )
    assert got is not None and got.body is not None and b'"e"' in got.body
    # Put the session's runtime on the new KEK so later tests keep working.
    runtime.keys.ring = KeyRing(new, [old])
    runtime.keys.clear()
