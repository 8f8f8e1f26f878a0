"""Creating spaces in bulk (provisioning from the insurer's registry): one COPY per table for a whole batch
instead of a statement per person, with the same invariants as one-by-one creation:

- each space gets its own data key, wrapped by the key-encryption key (storage/keys.py);
- the Patient's body is encrypted with it, bound to (space, type, id, version, key version) like any write;
- the search index rows are those `fhir.searchparams.extract` gives;
- the creation is the first record of the space's audit chain, hashed as `audit_append` would
  (audit/record.py `chain_hash` from the genesis hash).

`tests/storage/test_provision.py` reads bulk-made spaces back through the API and `audit verify`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from ..access.policy import Decision
from ..audit.record import GENESIS, Record, chain_hash
from ..crypto import resource_aad, seal
from ..fhir import searchparams
from .db import Conn
from .keys import KeyStore
from .people import INS_SYSTEM
from .resources import stamp


@dataclass(frozen=True)
class NewSpace:
    """A person's space to create: its id, its Patient's id and body (FHIR JSON), and its state."""

    space_id: uuid.UUID
    patient_id: str
    patient: dict[str, Any]
    state: str


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
        values = searchparams.extract(s.patient)
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
        digest = chain_hash(GENESIS, s.space_id, 1, mine)
        audit_rows.append(
            (
                s.space_id, 1, mine.recorded_at, mine.action, mine.outcome, mine.actor_kind, mine.actor_id,
                mine.actor_display, mine.basis, mine.entity_type, mine.entity_id, mine.entity_version,
                mine.detail, mine.request_id, GENESIS, digest,
            )
        )  # fmt: skip
        chain_rows.append((s.space_id, 1, digest))
    await conn.copy_records_to_table("space", records=space_rows, columns=("space_id", "state", "created_at"))
    await conn.copy_records_to_table(
        "space_key",
        records=key_rows,
        columns=("space_id", "key_version", "kek_id", "wrapped_key", "created_at"),
    )
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
    await conn.copy_records_to_table("sp_token", records=index["token"], columns=(*base, "system", "code"))
    await conn.copy_records_to_table(
        "sp_string", records=index["string"], columns=(*base, "normalized", "exact")
    )
    await conn.copy_records_to_table("sp_date", records=index["date"], columns=(*base, "low", "high"))
    await conn.copy_records_to_table(
        "sp_reference", records=index["reference"], columns=(*base, "target_type", "target_id")
    )
    await conn.copy_records_to_table(
        "audit_event",
        records=audit_rows,
        columns=(
            "space_id", "seq", "recorded_at", "action", "outcome", "actor_kind", "actor_id", "actor_display",
            "basis", "entity_type", "entity_id", "entity_version", "detail", "request_id", "prev_hash", "hash",
        ),
    )  # fmt: skip
    await conn.copy_records_to_table("audit_chain", records=chain_rows, columns=("space_id", "seq", "head"))
