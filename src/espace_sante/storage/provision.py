"""Creating spaces in bulk (provisioning from the insurer's registry): one COPY per table for a whole batch
instead of a statement per person, with the same invariants as one-by-one creation:

- each space gets its own data key, wrapped by the key-encryption key (storage/keys.py);
- the Patient's body is encrypted with it, bound to (space, type, id, version, key version) like any write;
- the search index rows are those `fhir.searchparams.extract` gives;
- the creation is the first record of the space's audit chain, hashed as `audit_append` would
  (audit/record.py `chain_hash` from the genesis hash).

`tests/storage/test_provision.py` reads bulk-made spaces back through the API and `audit verify`."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime
from typing import Any

import orjson

from ..access.policy import Decision
from ..audit.record import GENESIS, Record
from ..crypto import resource_aad, seal
from ..fhir import searchparams
from .db import Conn
from .keys import KeyStore
from .people import INS_SYSTEM
from .resources import stamp


@dataclass(frozen=True)
class NewSpace:
    """A person's space to create: its id, its Patient's id and body (FHIR JSON), and its state. `more` are
    audit records that follow the creation in the space's chain (a representative recorded with it)."""

    space_id: uuid.UUID
    patient_id: str
    patient: dict[str, Any]
    state: str
    more: tuple[Record, ...] = ()
    #: The Patient's search values when the caller computed them already (`searchparams.extract(patient)`).
    values: searchparams.IndexValues | None = None


_RECORD_FIELDS = tuple(f.name for f in fields(Record))


def _chain_hash(prev_hash: bytes, space_id: uuid.UUID, seq: int, record: Record) -> bytes:
    """audit/record.py `chain_hash` without `dataclasses.asdict`'s deep copies (a third of a bulk creation's
    time); tests/storage/test_provision.py checks the two agree."""
    values = {name: getattr(record, name) for name in _RECORD_FIELDS}
    values["recorded_at"] = record.recorded_at.astimezone(UTC).isoformat(timespec="microseconds")
    values["space_id"] = str(space_id)
    canonical = orjson.dumps(values, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash + seq.to_bytes(8, "big", signed=True) + canonical).digest()


async def known_ins(conn: Conn, nirs: Sequence[str]) -> set[str]:
    """The INS among these that already have a Patient (a re-run of an import creates nothing twice)."""
    rows = await conn.fetch(
        "SELECT code FROM sp_token WHERE resource_type = 'Patient' AND param = 'identifier' AND system = $1 "
        "AND code = ANY($2::text[])",
        INS_SYSTEM,
        list(nirs),
    )
    return {r["code"] for r in rows}


async def create_spaces(
    conn: Conn, keys: KeyStore, decision: Decision, spaces: Sequence[NewSpace], *, record: Record
) -> None:
    """Create these spaces, their keys, Patients, index rows and first audit records, in the caller's
    transaction. `record` is the audit record of one creation (its entity id is set per space)."""
    decision.require("create", "Patient")
    if not spaces:
        return
    now = datetime.now(UTC)
    when = now.replace(microsecond=now.microsecond // 1000 * 1000)
    space_rows, key_rows, resource_rows, version_rows = [], [], [], []
    audit_rows, chain_rows = [], []
    index: dict[str, list[tuple[Any, ...]]] = {t: [] for t in ("token", "string", "date", "reference")}
    for s in spaces:
        if not decision.covers(s.space_id):
            raise PermissionError(f"decision does not cover space {s.space_id}")
        kek_id, wrapped, aead = keys.new_key(s.space_id)
        plaintext = stamp(s.patient, s.patient_id, 1, when)
        blob = seal(aead, plaintext, resource_aad(str(s.space_id), "Patient", s.patient_id, 1, 1))
        space_rows.append((s.space_id, s.state, now))
        key_rows.append((s.space_id, 1, kek_id, wrapped, now))
        resource_rows.append((s.space_id, "Patient", s.patient_id, 1, when, False))
        version_rows.append((s.space_id, "Patient", s.patient_id, 1, when, "POST", 1, blob))
        values = s.values if s.values is not None else searchparams.extract(s.patient)
        key = (s.space_id, "Patient", s.patient_id)
        index["token"] += [(*key, v.param, v.system, v.code) for v in values.tokens]
        index["string"] += [(*key, v.param, v.normalized, v.exact) for v in values.strings]
        index["date"] += [(*key, v.param, v.low, v.high) for v in values.dates]
        index["reference"] += [(*key, v.param, v.target_type, v.target_id) for v in values.references]
        if values.quantities or values.numbers:
            raise ValueError("a Patient has no quantity or number search values")
        mine = replace(
            record, entity_type="Patient", entity_id=s.patient_id, entity_version=1, recorded_at=now
        )
        digest = GENESIS
        for seq, r in enumerate((mine, *(replace(m, recorded_at=now) for m in s.more)), start=1):
            prev, digest = digest, _chain_hash(digest, s.space_id, seq, r)
            audit_rows.append(
                (
                    s.space_id, seq, r.recorded_at, r.action, r.outcome, r.actor_kind, r.actor_id,
                    r.actor_display, r.basis, r.entity_type, r.entity_id, r.entity_version, r.detail,
                    r.request_id, prev, digest,
                )
            )  # fmt: skip
        chain_rows.append((s.space_id, 1 + len(s.more), digest))
    await conn.copy_records_to_table("space", records=space_rows, columns=("space_id", "state", "created_at"))
    await conn.copy_records_to_table(
        "space_key",
        records=key_rows,
        columns=("space_id", "key_version", "kek_id", "wrapped_key", "created_at"),
    )
    await copy_rows(conn, resource_rows, version_rows, index, audit_rows)
    await conn.copy_records_to_table("audit_chain", records=chain_rows, columns=("space_id", "seq", "head"))


async def copy_rows(
    conn: Conn,
    resource_rows: list[tuple[Any, ...]],
    version_rows: list[tuple[Any, ...]],
    index: dict[str, list[tuple[Any, ...]]],
    audit_rows: list[tuple[Any, ...]],
) -> None:
    """One COPY per table for resources made in bulk: their current rows, versions (encrypted bodies), search
    index rows by kind (`token`, `string`, `date`, `reference`) and audit records."""
    await conn.copy_records_to_table(
        "resource",
        records=resource_rows,
        columns=("space_id", "resource_type", "resource_id", "version_id", "last_updated", "deleted"),
    )
    await conn.copy_records_to_table(
        "resource_version",
        records=version_rows,
        columns=(
            "space_id", "resource_type", "resource_id", "version_id", "last_updated", "method", "key_version",
            "body",
        ),
    )  # fmt: skip
    base = ("space_id", "resource_type", "resource_id", "param")
    for kind, columns in _INDEX_COLUMNS.items():
        if index.get(kind):
            await conn.copy_records_to_table(f"sp_{kind}", records=index[kind], columns=(*base, *columns))
    await conn.copy_records_to_table(
        "audit_event",
        records=audit_rows,
        columns=(
            "space_id", "seq", "recorded_at", "action", "outcome", "actor_kind", "actor_id", "actor_display",
            "basis", "entity_type", "entity_id", "entity_version", "detail", "request_id", "prev_hash", "hash",
        ),
    )  # fmt: skip


_INDEX_COLUMNS = {
    "token": ("system", "code"),
    "string": ("normalized", "exact"),
    "date": ("low", "high"),
    "reference": ("target_type", "target_id"),
}


# --- the registry import's bookkeeping (migrations/0008_registry.sql) -----------------------------------


@dataclass(frozen=True)
class Known:
    """A person the registry already gave a space to, and the fingerprint of their row last imported."""

    space_id: uuid.UUID
    patient_id: str
    fingerprint: bytes


async def registry_people(conn: Conn, nirs: Sequence[str]) -> dict[str, Known]:
    """The registry's people among these INS, locked until the transaction ends (a concurrent import of the
    same people waits, then sees what this one wrote)."""
    rows = await conn.fetch(
        "SELECT nir, space_id, patient_id, fingerprint FROM registry_person WHERE nir = ANY($1::text[]) "
        "ORDER BY nir FOR UPDATE",
        list(nirs),
    )
    return {r["nir"]: Known(r["space_id"], r["patient_id"], bytes(r["fingerprint"])) for r in rows}


async def patients_by_ins(conn: Conn, nirs: Sequence[str]) -> dict[str, tuple[uuid.UUID, str]]:
    """Live Patients carrying these INS (spaces made before or outside the registry import): INS -> (space,
    Patient id), the oldest when there are several."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (t.code) t.code, t.space_id, t.resource_id FROM sp_token t "
        "JOIN resource r USING (space_id, resource_type, resource_id) WHERE t.resource_type = 'Patient' "
        "AND t.param = 'identifier' AND t.system = $1 AND t.code = ANY($2::text[]) AND NOT r.deleted "
        "ORDER BY t.code, r.last_updated",
        INS_SYSTEM,
        list(nirs),
    )
    return {r["code"]: (r["space_id"], r["resource_id"]) for r in rows}


async def claim(conn: Conn, people: Sequence[tuple[str, uuid.UUID, str, bytes]]) -> set[str]:
    """Record (INS, space, Patient id, fingerprint) for people not yet in the registry table, in one
    statement; returns the INS this transaction claimed (another import may have claimed the rest first)."""
    if not people:
        return set()
    rows = await conn.fetch(
        "INSERT INTO registry_person (nir, space_id, patient_id, fingerprint) "
        "SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::bytea[]) ORDER BY 1 "
        "ON CONFLICT (nir) DO NOTHING RETURNING nir",
        [p[0] for p in people],
        [p[1] for p in people],
        [p[2] for p in people],
        [p[3] for p in people],
    )
    return {r["nir"] for r in rows}


async def set_fingerprints(conn: Conn, changes: Sequence[tuple[str, bytes]]) -> None:
    if changes:
        await conn.execute(
            "UPDATE registry_person p SET fingerprint = c.fingerprint, updated_at = now() "
            "FROM unnest($1::text[], $2::bytea[]) AS c (nir, fingerprint) WHERE p.nir = c.nir",
            [c[0] for c in changes],
            [c[1] for c in changes],
        )


async def add_representatives(
    conn: Conn, links: Sequence[tuple[uuid.UUID, str, date]]
) -> list[tuple[uuid.UUID, str]]:
    """Record (space, representative INS, end of rights) links in one statement, as storage/access.py
    `add_representative` does one by one; returns the links that were not there before (to be traced)."""
    if not links:
        return []
    rows = await conn.fetch(
        "INSERT INTO space_representative AS p (space_id, representative_ins, until) "
        "SELECT * FROM unnest($1::uuid[], $2::text[], $3::date[]) ORDER BY 1, 2 "
        "ON CONFLICT (space_id, representative_ins) DO UPDATE SET until = EXCLUDED.until "
        "WHERE p.until IS DISTINCT FROM EXCLUDED.until RETURNING space_id, representative_ins, (xmax = 0) AS new",
        [link[0] for link in links],
        [link[1] for link in links],
        [link[2] for link in links],
    )
    return [(r["space_id"], r["representative_ins"]) for r in rows if r["new"]]


@dataclass(frozen=True)
class Checkpoint:
    import_id: uuid.UUID
    last_line: int
    created: int
    updated: int
    unchanged: int


async def start_import(conn: Conn, file_sha256: bytes) -> Checkpoint:
    """The unfinished run of this file to resume (a crash left it), or a new run."""
    row = await conn.fetchrow(
        "SELECT import_id, last_line, created, updated, unchanged FROM registry_import "
        "WHERE file_sha256 = $1 AND finished_at IS NULL ORDER BY started_at DESC LIMIT 1",
        file_sha256,
    )
    if row is not None:
        return Checkpoint(
            row["import_id"], row["last_line"], row["created"], row["updated"], row["unchanged"]
        )
    import_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO registry_import (import_id, file_sha256) VALUES ($1, $2)", import_id, file_sha256
    )
    return Checkpoint(import_id, 0, 0, 0, 0)


async def advance_import(conn: Conn, checkpoint: Checkpoint) -> None:
    """Move the run's checkpoint, in the transaction of the batch it covers."""
    await conn.execute(
        "UPDATE registry_import SET last_line = $2, created = $3, updated = $4, unchanged = $5 "
        "WHERE import_id = $1",
        checkpoint.import_id,
        checkpoint.last_line,
        checkpoint.created,
        checkpoint.updated,
        checkpoint.unchanged,
    )


async def finish_import(conn: Conn, import_id: uuid.UUID) -> None:
    await conn.execute("UPDATE registry_import SET finished_at = now() WHERE import_id = $1", import_id)
