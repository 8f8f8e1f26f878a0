"""Creating spaces in bulk (provisioning from the insurer's registry): one COPY per table for a whole batch
instead of a statement per person, with the same invariants as one-by-one creation:

- each space gets its own data key, wrapped by the key-encryption key (storage/keys.py);
- the Patient's body is encrypted with it, bound to (space, type, id, version, key version) like any write;
- the search index rows are those `fhir.searchparams.extract` gives;
- the creation is the first record of the space's audit chain, hashed as `audit_append` would
  (storage/audit.py `chain_hash` from the genesis hash).

`tests/storage/test_provision.py` reads bulk-made spaces back through the API and `audit verify`."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from espace_sante.access.policy import Decision
from espace_sante.crypto import NONCE_BYTES, dek_context, pending_aad, resource_aad
from espace_sante.fhir import searchparams
from espace_sante.storage import db, locks
from espace_sante.storage.audit import AUDIT_COLUMNS, GENESIS, Record
from espace_sante.storage.db import Conn
from espace_sante.storage.keys import KeyStore
from espace_sante.storage.people import INS_SYSTEM
from espace_sante.storage.resources import stamp
from espace_sante.storage.spaces import identity_changed


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
    #: A space created `notified` (the registry import with --notify): the day it opens.
    opens_on: date | None = None
    #: The identity already checked for a death date (lifecycle's `death_checked`; the new space's identity,
    #: its Patient or the one waiting for it, is its `identity_version` 1): 1 when the caller knows the new
    #: Patient has none, so that `lifecycle run` does not decrypt it to find out.
    death_checked: int = 0
    #: The chain's first record when not `build_spaces`' `record` (its entity id is set to the Patient's).
    first: Record | None = None


_RECORD_FIELDS = tuple(f.name for f in fields(Record))


def _chain_hash(prev_hash: bytes, space_id: uuid.UUID, seq: int, record: Record) -> bytes:
    """storage/audit.py `chain_hash` without `dataclasses.asdict`'s deep copies (a third of a bulk creation's
    time); tests/storage/test_provision.py checks the two agree."""
    values = {name: getattr(record, name) for name in _RECORD_FIELDS}
    return _hash_values(prev_hash, space_id, seq, values)


def _hash_values(prev_hash: bytes, space_id: uuid.UUID, seq: int, values: dict[str, Any]) -> bytes:
    """`_chain_hash` of a record given as its fields' values (`recorded_at` a datetime)."""
    values = values | {
        "recorded_at": values["recorded_at"].astimezone(UTC).isoformat(timespec="microseconds"),
        "space_id": str(space_id),
    }
    canonical = orjson.dumps(values, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash + seq.to_bytes(8, "big", signed=True) + canonical).digest()


_AUDIT_COLUMNS = AUDIT_COLUMNS
_DEK_BYTES = 32


async def known_ins(conn: Conn, nirs: Sequence[str]) -> set[str]:
    """The INS among these that already have a Patient (a re-run of an import creates nothing twice)."""
    rows = await conn.fetch(
        "SELECT code FROM sp_token WHERE resource_type = 'Patient' AND param = 'identifier' AND system = $1 "
        "AND code = ANY($2::text[])",
        INS_SYSTEM,
        list(nirs),
    )
    return {r["code"] for r in rows}


@dataclass
class SpaceRows:
    """The rows of spaces about to be created, ready for COPY: built without the database (the registry
    import builds a batch's while the previous batch is in its transaction), written by `write_spaces`."""

    spaces: list[tuple[Any, ...]] = field(default_factory=list)
    keys: list[tuple[Any, ...]] = field(default_factory=list)
    resources: list[tuple[Any, ...]] = field(default_factory=list)
    versions: list[tuple[Any, ...]] = field(default_factory=list)
    index: dict[str, list[tuple[Any, ...]]] = field(
        default_factory=lambda: {t: [] for t in ("token", "string", "date", "reference")}
    )
    audit: list[tuple[Any, ...]] = field(default_factory=list)
    chains: list[tuple[Any, ...]] = field(default_factory=list)
    #: Activation codes of spaces created `notified`: (space, digest, pepper id, expires at).
    codes: list[tuple[Any, ...]] = field(default_factory=list)
    #: Each space's data key, when `build_spaces` was asked to keep them (to seal its letters).
    aeads: dict[uuid.UUID, AESGCM] = field(default_factory=dict)
    #: With `pending`: each space's Patient body sealed under its key (version 1), for `registry_person`.
    pending: dict[uuid.UUID, bytes] = field(default_factory=dict)

    def only(self, keep: set[uuid.UUID]) -> SpaceRows:
        """These rows for the spaces in `keep` only (every row's first column is its space)."""

        def mine(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
            return [r for r in rows if r[0] in keep]

        return SpaceRows(
            mine(self.spaces), mine(self.keys), mine(self.resources), mine(self.versions),
            {kind: mine(rows) for kind, rows in self.index.items()}, mine(self.audit), mine(self.chains),
            mine(self.codes), {s: a for s, a in self.aeads.items() if s in keep},
            {s: b for s, b in self.pending.items() if s in keep},
        )  # fmt: skip


def build_spaces(
    keys: KeyStore,
    decision: Decision,
    spaces: Sequence[NewSpace],
    *,
    record: Record,
    remember: bool = True,
    keep_keys: bool = False,
    pending: bool = False,
) -> SpaceRows:
    """The rows that create these spaces: a data key each (wrapped by the current KEK), the Patient encrypted
    with it, its index rows, the creation and `more` records hashed into the space's new chain. CPU only, no
    database. `remember` keeps the new keys in the key store's cache (a caller about to write into the spaces);
    a bulk import does not need them and would only churn the cache; `keep_keys` keeps them in the rows'
    `aeads` instead (the import seals its letters with them). With `pending` (the registry import) the
    Patient is not written: its body is sealed into `pending`, for `registry_person`, until the space opens
    (spaces/identity.py `materialise`), and `record` (the registration) names no version."""
    decision.require("create", "Patient")
    out = SpaceRows()
    if not spaces:
        return out
    now = datetime.now(UTC)
    when = now.replace(microsecond=now.microsecond // 1000 * 1000)
    kek = keys.ring.current
    # One read of the system's random source per batch for every data key and body nonce instead of two per
    # space: the bytes are as random, and the calls were a visible share of a bulk creation.
    entropy = os.urandom(len(spaces) * (_DEK_BYTES + NONCE_BYTES))

    # The records' canonical fields (storage/audit.canonical: recorded_at in ISO form, the space as text),
    # built once per record kind and batch rather than once per record.
    at = now.isoformat(timespec="microseconds")

    def first_of(r: Record) -> dict[str, Any]:
        return {name: getattr(r, name) for name in _RECORD_FIELDS} | {
            "entity_type": "Patient", "entity_version": None if pending else 1, "recorded_at": at,
        }  # fmt: skip

    base = first_of(record)
    firsts: dict[int, dict[str, Any]] = {}
    sha256, dumps, sort = hashlib.sha256, orjson.dumps, orjson.OPT_SORT_KEYS
    offset = 0
    for s in spaces:
        space_id, pid = s.space_id, s.patient_id
        if not decision.covers(space_id):
            raise PermissionError(f"decision does not cover space {space_id}")
        dek = entropy[offset : offset + _DEK_BYTES]
        nonce = entropy[offset + _DEK_BYTES : offset + _DEK_BYTES + NONCE_BYTES]
        offset += _DEK_BYTES + NONCE_BYTES
        sid = str(space_id)
        if remember:  # the key store draws, wraps and caches the key
            kek_id, wrapped, aead = keys.new_key(space_id)
        else:
            aead = AESGCM(dek)
            kek_id, wrapped = kek.key_id, kek.wrap(dek, dek_context(sid, 1))
        if keep_keys:
            out.aeads[space_id] = aead
        out.spaces.append((space_id, s.state, now, s.opens_on, s.death_checked, 1))
        out.keys.append((space_id, 1, kek_id, wrapped, now))
        if pending:
            # The layout of crypto.seal (nonce || ciphertext || tag), with the nonce drawn above.
            body = orjson.dumps(s.patient)
            out.pending[space_id] = nonce + aead.encrypt(nonce, body, pending_aad(sid, pid, 1))
        else:
            _patient_rows(out, space_id, pid, s, aead, nonce, when)
        digest = GENESIS
        head = base
        if s.first is not None:
            head = firsts.get(id(s.first)) or firsts.setdefault(id(s.first), first_of(s.first))
        chain: list[dict[str, Any]] = [head | {"entity_id": pid, "space_id": sid}]
        chain += [
            {name: getattr(m, name) for name in _RECORD_FIELDS} | {"recorded_at": at, "space_id": sid}
            for m in s.more
        ]
        for seq, v in enumerate(chain, start=1):
            # _hash_values' digest, its canonical fields ready.
            canonical = dumps(v, option=sort)
            prev, digest = digest, sha256(digest + seq.to_bytes(8, "big", signed=True) + canonical).digest()
            out.audit.append(
                (
                    space_id, seq, now, v["action"], v["outcome"], v["actor_kind"], v["actor_id"],
                    v["actor_display"], v["basis"], v["entity_type"], v["entity_id"], v["entity_version"],
                    v["detail"], v["request_id"], prev, digest,
                )
            )  # fmt: skip
        out.chains.append((space_id, len(chain), digest))
    return out


def _patient_rows(
    out: SpaceRows, space_id: uuid.UUID, pid: str, s: NewSpace, aead: AESGCM, nonce: bytes, when: datetime
) -> None:
    add_patient(out, space_id, pid, s.patient, aead, 1, when, nonce=nonce, values=s.values)


def add_patient(
    out: SpaceRows,
    space_id: uuid.UUID,
    pid: str,
    patient: dict[str, Any],
    aead: AESGCM,
    key_version: int,
    when: datetime,
    *,
    nonce: bytes | None = None,
    values: searchparams.IndexValues | None = None,
) -> None:
    """A new Patient's rows (version 1, under data key `key_version`) into `out`: its current row, its
    encrypted version and its search rows (`values` when the caller has them)."""
    plaintext = stamp(patient, pid, 1, when)
    nonce = nonce or os.urandom(NONCE_BYTES)
    # The layout of crypto.seal (nonce || ciphertext || tag).
    aad = resource_aad(str(space_id), "Patient", pid, 1, key_version)
    blob = nonce + aead.encrypt(nonce, plaintext, aad)
    out.resources.append((space_id, "Patient", pid, 1, when, False))
    out.versions.append((space_id, "Patient", pid, 1, when, "POST", key_version, blob))
    index = out.index
    values = values if values is not None else searchparams.extract(patient)
    key = (space_id, "Patient", pid)
    index["token"] += [(*key, v.param, v.system, v.code) for v in values.tokens]
    index["string"] += [(*key, v.param, v.normalized, v.exact) for v in values.strings]
    index["date"] += [(*key, v.param, v.low, v.high) for v in values.dates]
    index["reference"] += [(*key, v.param, v.target_type, v.target_id) for v in values.references]
    if values.quantities or values.numbers:
        raise ValueError("a Patient has no quantity or number search values")


async def write_spaces(conn: Conn, rows: SpaceRows) -> None:
    """COPY rows `build_spaces` made, in the caller's transaction."""
    if not rows.spaces:
        return
    await conn.copy_records_to_table(
        "space",
        records=rows.spaces,
        columns=("space_id", "state", "created_at", "opens_on", "death_checked", "identity_version"),
    )
    await conn.copy_records_to_table(
        "space_key",
        records=rows.keys,
        columns=("space_id", "key_version", "kek_id", "wrapped_key", "created_at"),
    )
    await copy_rows(conn, rows.resources, rows.versions, rows.index, rows.audit)
    await conn.copy_records_to_table("audit_chain", records=rows.chains, columns=("space_id", "seq", "head"))
    if rows.codes:  # new spaces: no code to replace (activation.issue_in's row, issued now)
        await conn.copy_records_to_table(
            "activation_code", records=rows.codes, columns=("space_id", "digest", "pepper_id", "expires_at")
        )


async def create_spaces(
    conn: Conn, keys: KeyStore, decision: Decision, spaces: Sequence[NewSpace], *, record: Record
) -> None:
    """Create these spaces, their keys, Patients, index rows and first audit records, in the caller's
    transaction. `record` is the audit record of one creation (its entity id is set per space)."""
    await write_spaces(conn, build_spaces(keys, decision, spaces, record=record))


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
    # The Patients' identifiers, also by value (migrations/0029, storage/resources.py _index_identifiers).
    identifiers = [
        (code, system, space_id, rid)
        for space_id, rtype, rid, param, system, code in index.get("token", ())
        if rtype == "Patient" and param == "identifier"
    ]
    if identifiers:
        await conn.copy_records_to_table(
            "patient_identifier", records=identifiers, columns=("value", "system", "space_id", "resource_id")
        )
    if audit_rows:
        await conn.copy_records_to_table("audit_event", records=audit_rows, columns=_AUDIT_COLUMNS)


_INDEX_COLUMNS = {
    "token": ("system", "code"),
    "string": ("normalized", "exact"),
    "date": ("low", "high"),
    "reference": ("target_type", "target_id"),
}


async def bulk_transaction(conn: Conn) -> None:
    """A batch of a bulk import commits without waiting for its WAL to reach the disk. Safe for resumability:
    a batch and its checkpoint (`advance_import`) are one transaction, so a crash loses both or neither, and
    the next run redoes exactly what was lost; PostgreSQL never sees a torn transaction. Only this
    transaction: the rest of the application keeps synchronous commits."""
    await conn.execute("SET LOCAL synchronous_commit = off")


# --- the registry import's bookkeeping (migrations/0008_registry.sql) -----------------------------------


@dataclass(frozen=True)
class Pending:
    """The identity the registry gave a person whose space has no Patient yet (migrations/0018): the Patient
    body sealed under the space's data key `key_version`, bound by crypto.pending_aad."""

    space_id: uuid.UUID
    patient_id: str
    nir: str
    key_version: int
    sealed: bytes


@dataclass(frozen=True)
class Known:
    """A person the registry already gave a space to, the fingerprint of their row last imported, and their
    sealed identity while the space has no Patient yet."""

    space_id: uuid.UUID
    patient_id: str
    fingerprint: bytes
    pending: Pending | None = None


def _pending(r: Any) -> Pending | None:
    if r["pending"] is None:
        return None
    return Pending(r["space_id"], r["patient_id"], r["nir"], int(r["pending_key"]), bytes(r["pending"]))


async def registry_people(conn: Conn, decision: Decision, nirs: Sequence[str]) -> dict[str, Known]:
    """The registry's people among these INS, locked until the transaction ends (a concurrent import of the
    same people waits, then sees what this one wrote); their sealed identities under a decision to read
    Patient (only those in spaces it covers)."""
    decision.require_read("Patient")
    rows = await locks.claim(
        conn,
        table="registry_person",
        columns="nir, space_id, patient_id, fingerprint, pending, pending_key",
        where="nir = ANY($1::text[])",
        args=(list(nirs),),
        key=("nir",),
        order="nir",
        skip_locked=False,
    )
    return {
        r["nir"]: Known(r["space_id"], r["patient_id"], bytes(r["fingerprint"]), _pending(r))
        for r in rows
        if decision.covers(r["space_id"])
    }


async def pending_of(
    conn: Conn, decision: Decision, spaces: Sequence[uuid.UUID], *, lock: bool = False
) -> dict[uuid.UUID, Pending]:
    """The sealed identities waiting in these spaces (none for a space whose Patient exists), under a decision
    to read Patient covering them; `lock` holds them until the transaction ends (the one that writes the
    Patient)."""
    decision.require_read("Patient", spaces)
    columns, where = (
        "nir, space_id, patient_id, pending, pending_key",
        "space_id = ANY($1::uuid[]) AND pending IS NOT NULL",
    )
    if lock:
        rows = await locks.claim(
            conn,
            table="registry_person",
            columns=columns,
            where=where,
            args=(list(spaces),),
            key=("nir",),
            order="nir",
            skip_locked=False,
        )
    else:
        rows = await conn.fetch(
            f"SELECT {columns} FROM registry_person WHERE {where} ORDER BY nir", list(spaces)
        )
    return {r["space_id"]: p for r in rows if (p := _pending(r)) is not None}


async def pending_by_nir(conn: Conn, decision: Decision, nirs: Sequence[str]) -> dict[str, Pending]:
    """The sealed identities waiting for these INS (people whose space has no Patient yet), in the spaces a
    decision to read Patient covers."""
    decision.require_read("Patient")
    rows = await conn.fetch(
        "SELECT nir, space_id, patient_id, pending, pending_key FROM registry_person "
        "WHERE nir = ANY($1::text[]) AND pending IS NOT NULL",
        list(nirs),
    )
    return {r["nir"]: p for r in rows if (p := _pending(r)) is not None and decision.covers(p.space_id)}


async def set_pending(
    conn: Conn, space_id: uuid.UUID, key_version: int, sealed: bytes, *, recheck_death: bool = False
) -> None:
    """Seal a space's waiting identity again (a registry correction, or the fresh key after an opposition);
    `recheck_death`: a changed identity, to check again for a death date (`spaces.identity_changed`)."""
    await conn.execute(
        "UPDATE registry_person SET pending = $2, pending_key = $3, updated_at = now() WHERE space_id = $1",
        space_id,
        sealed,
        key_version,
    )
    if recheck_death:
        await identity_changed(conn, space_id)


async def clear_pending(conn: Conn, spaces: Sequence[uuid.UUID]) -> None:
    """The identities are now Patients (or the spaces are erased): nothing waits any more."""
    await conn.execute(
        "UPDATE registry_person SET pending = NULL, pending_key = NULL WHERE space_id = ANY($1::uuid[]) "
        "AND pending IS NOT NULL",
        list(spaces),
    )


async def write_patients(conn: Conn, rows: SpaceRows) -> None:
    """COPY the Patients `add_patient` put in `rows` (current rows, versions, search rows), into existing
    spaces (their records are the caller's)."""
    if rows.resources:
        await copy_rows(conn, rows.resources, rows.versions, rows.index, [])


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


async def claim(conn: Conn, people: Sequence[tuple[str, uuid.UUID, str, bytes, bytes | None]]) -> set[str]:
    """Record (INS, space, Patient id, fingerprint, sealed identity or None) for people not yet in the
    registry table; returns the INS this transaction claimed (another import may have claimed the rest first).
    A sealed identity is under the new space's key version 1.

    The caller found none of them in the table (`registry_people`, in this transaction), so one COPY, in NIR
    order, claims them all; only when another import claimed one since (a unique violation, which undoes
    the COPY's savepoint alone) does the slower INSERT ... ON CONFLICT sort out who won."""
    if not people:
        return set()
    ordered = sorted(people, key=lambda p: p[0])
    try:
        async with conn.transaction():
            await conn.copy_records_to_table(
                "registry_person",
                records=[(*p, None if p[4] is None else 1) for p in ordered],
                columns=("nir", "space_id", "patient_id", "fingerprint", "pending", "pending_key"),
            )
        return {p[0] for p in ordered}
    except asyncpg.UniqueViolationError:
        pass
    except asyncpg.InternalServerError as err:
        # Citus hands a worker's error during a COPY back as an internal error, with the worker's message.
        if not (db.distributed(conn) and "duplicate key value violates unique constraint" in str(err)):
            raise
    rows = await conn.fetch(
        "INSERT INTO registry_person (nir, space_id, patient_id, fingerprint, pending, pending_key) "
        "SELECT n, s, p, f, x, CASE WHEN x IS NULL THEN NULL ELSE 1 END "
        "FROM unnest($1::text[], $2::uuid[], $3::text[], $4::bytea[], $5::bytea[]) AS u(n, s, p, f, x) "
        "ORDER BY 1 ON CONFLICT (nir) DO NOTHING RETURNING nir",
        [p[0] for p in ordered],
        [p[1] for p in ordered],
        [p[2] for p in ordered],
        [p[3] for p in ordered],
        [p[4] for p in ordered],
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
