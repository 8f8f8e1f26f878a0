"""A person's identity as the insurer's registry gave it, whether or not their space has its Patient yet.

The registry import does not write a FHIR Patient for a new person: it seals the Patient body the space will
have into `registry_person.pending` under the space's own data key (migrations/0018_pending_identity.sql), and
the space gets its Patient when it opens or is activated (`materialise`, called by the lifecycle on every
transition to `open` or `active`). The notice period (notices, activation's birth-date check, the death check,
coming of age, opposition) reads the identity through this module, which answers from the Patient when there
is one and from the sealed body otherwise: callers never need to know which."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from espace_sante.access.actors import REGISTRY
from espace_sante.access.policy import Decision, decide
from espace_sante.context import Context
from espace_sante.crypto import DecryptionFailed, open_, pending_aad, seal
from espace_sante.logs import get_logger
from espace_sante.runtime import Runtime
from espace_sante.storage import audit as audit_store
from espace_sante.storage import notices as notices_store
from espace_sante.storage import provision, resources
from espace_sante.storage.audit import SUCCESS, Record
from espace_sante.storage.db import Conn
from espace_sante.storage.people import INS_SYSTEM

#: The trace's request id of what the insurer's registry feed writes (the import, and the Patients written
#: from its identities).
FEED = "registre des bénéficiaires / beneficiaries registry"

log = get_logger(__name__)


def name_of(body: dict[str, Any]) -> str:
    """ "Léa Martin": the first name of a Patient body, given names then family name ("" without one)."""
    names = body.get("name") or [{}]
    first = names[0] if isinstance(names, list) and names and isinstance(names[0], dict) else {}
    given = " ".join(g for g in first.get("given") or [] if isinstance(g, str))
    family = first.get("family")
    return f"{given} {family if isinstance(family, str) else ''}".strip()


def ins_of(body: dict[str, Any]) -> str:
    """The INS a Patient body carries ("" without one)."""
    for identifier in body.get("identifier") or []:
        if isinstance(identifier, dict) and identifier.get("system") == INS_SYSTEM:
            return str(identifier.get("value") or "")
    return ""


async def keys_of(
    conn: Conn, rt: Runtime, spaces: Iterable[uuid.UUID]
) -> dict[tuple[uuid.UUID, int], AESGCM]:
    """Every data key of these spaces, by (space, version), in one query (and into the key store's cache)."""
    return {
        (space_id, version): rt.keys.from_row(space_id, version, kek_id, wrapped)
        for space_id, version, kek_id, wrapped in await notices_store.data_keys(conn, sorted(set(spaces)))
    }


async def newest_keys(
    conn: Conn, rt: Runtime, spaces: Iterable[uuid.UUID]
) -> dict[uuid.UUID, tuple[int, AESGCM]]:
    """Each space's newest (version, key), for writing, from `keys_of`."""
    newest: dict[uuid.UUID, tuple[int, AESGCM]] = {}
    for (space_id, version), aead in (await keys_of(conn, rt, spaces)).items():
        if version > newest.get(space_id, (0, aead))[0]:
            newest[space_id] = (version, aead)
    return newest


async def unseal(conn: Conn, rt: Runtime, p: provision.Pending) -> dict[str, Any]:
    """The Patient body a waiting identity holds (crypto.DecryptionFailed if its key is gone)."""
    aead = await rt.keys.version(conn, p.space_id, p.key_version)
    body: dict[str, Any] = orjson.loads(
        open_(aead, p.sealed, pending_aad(str(p.space_id), p.patient_id, p.key_version))
    )
    return body


async def reseal(
    conn: Conn,
    rt: Runtime,
    space_id: uuid.UUID,
    patient_id: str,
    body: dict[str, Any],
    *,
    recheck_death: bool = False,
) -> None:
    """Replace a space's waiting identity with `body`, under the space's newest key; `recheck_death` (a
    registry correction) has the next `lifecycle run` look at it for a death date again."""
    version, aead = await rt.keys.current(conn, space_id)
    sealed = seal(aead, orjson.dumps(body), pending_aad(str(space_id), patient_id, version))
    await provision.set_pending(conn, space_id, version, sealed, recheck_death=recheck_death)


def _reached(decision: Decision, spaces: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """The spaces among these that a decision to read identities (Patient) covers: an identity is read only
    under the policy, the waiting one as much as the written one."""
    decision.require("read", "Patient")
    return [s for s in spaces if decision.covers(s)]


async def bodies(
    conn: Conn, rt: Runtime, spaces: Sequence[uuid.UUID], *, decision: Decision
) -> dict[uuid.UUID, tuple[str, dict[str, Any]]]:
    """Each space's holder as (Patient id, body): the space's Patient (the oldest live one), else the identity
    waiting for it. A space with neither, or that `decision` (to read Patient) does not cover, is left out."""
    spaces = _reached(decision, spaces)
    if not spaces:
        return {}
    await keys_of(conn, rt, spaces)
    patients = await notices_store.patients_of(conn, spaces)
    found = await resources.fetch_current(conn, rt.keys, decision, "Patient", sorted(patients.items()))
    out = {b.space_id: (b.resource_id, orjson.loads(b.body)) for b in found if b.body}
    rest = [s for s in spaces if s not in out]
    if rest:
        for space_id, p in (await provision.pending_of(conn, decision, rest)).items():
            out[space_id] = (p.patient_id, await unseal(conn, rt, p))
    return out


async def body(
    conn: Conn, rt: Runtime, space_id: uuid.UUID, *, decision: Decision
) -> tuple[str, dict[str, Any]] | None:
    """`bodies` of one space."""
    return (await bodies(conn, rt, [space_id], decision=decision)).get(space_id)


async def by_ins(
    conn: Conn, rt: Runtime, nirs: Sequence[str], *, decision: Decision
) -> dict[str, dict[str, Any]]:
    """The identity of the people these INS name: their Patient (the oldest live one carrying the INS), else
    the identity waiting in their registry space (only in spaces `decision`, to read Patient, covers)."""
    wanted = sorted(set(nirs))
    if not wanted:
        return {}
    refs = await provision.patients_by_ins(conn, wanted)
    waiting = await provision.pending_by_nir(conn, decision, [n for n in wanted if n not in refs])
    covered = set(_reached(decision, {r[0] for r in refs.values()} | {p.space_id for p in waiting.values()}))
    refs = {ins: ref for ins, ref in refs.items() if ref[0] in covered}
    waiting = {ins: p for ins, p in waiting.items() if p.space_id in covered}
    await keys_of(conn, rt, [r[0] for r in refs.values()] + [p.space_id for p in waiting.values()])
    found = await resources.fetch_current(conn, rt.keys, decision, "Patient", sorted(set(refs.values())))
    loaded = {(b.space_id, b.resource_id): orjson.loads(b.body) for b in found if b.body}
    out = {ins: loaded[ref] for ins, ref in refs.items() if ref in loaded}
    for ins, p in waiting.items():
        out[ins] = await unseal(conn, rt, p)
    return out


async def birth_date(conn: Conn, rt: Runtime, space_id: uuid.UUID, *, decision: Decision) -> date | None:
    """The birth date of a space whose Patient is not written yet, from its waiting identity."""
    if not _reached(decision, [space_id]):
        return None
    waiting = (await provision.pending_of(conn, decision, [space_id])).get(space_id)
    if waiting is None:
        return None
    born = str((await unseal(conn, rt, waiting)).get("birthDate") or "")
    try:
        return date.fromisoformat(born)
    except ValueError:
        return None


async def materialise(
    conn: Conn, ctx: Context, spaces: Sequence[uuid.UUID], *, after: Sequence[tuple[uuid.UUID, Record]] = ()
) -> int:
    """Write the Patient of each of these spaces still waiting for one, from its sealed identity, in the
    caller's transaction: its version 1 under the space's newest key, its search rows, a `resource:create`
    record in its chain (the registry's feed, its own named actor), and the waiting identity cleared. Spaces that
    have their Patient already are left alone, so any transition may call it. `after`: records to append
    before those (the transition's own), in the same statements. Returns how many Patients were written."""
    rt = ctx.runtime
    decision = decide(REGISTRY, "create", "Patient")
    decision.require("create", "Patient")
    reading = decide(REGISTRY, "read", "Patient")
    waiting = await provision.pending_of(conn, reading, spaces, lock=True) if spaces else {}
    if not waiting:
        await audit_store.append_batch(conn, after)
        return 0
    newest = await newest_keys(conn, rt, list(waiting))
    now = datetime.now(UTC)
    when = now.replace(microsecond=now.microsecond // 1000 * 1000)
    rows = provision.SpaceRows()
    records: list[tuple[uuid.UUID, Record]] = list(after)
    written: list[uuid.UUID] = []
    for space_id, p in waiting.items():
        try:
            patient = await unseal(conn, rt, p)
        except DecryptionFailed:
            # One identity that cannot be read (a lost key: `documents verify` and `audit verify` are the
            # tools) must not stop a run that opens thousands; it stays waiting, and the next transition of
            # its space tries again.
            log.warning("identity.unreadable", space=str(space_id))
            continue
        written.append(space_id)
        version, aead = newest[space_id]
        provision.add_patient(rows, space_id, p.patient_id, patient, aead, version, when)
        records.append(
            (
                space_id,
                Record(
                    action="resource:create",
                    outcome=SUCCESS,
                    actor_kind=REGISTRY.kind,
                    actor_id=REGISTRY.id,
                    actor_display=REGISTRY.display,
                    basis=decision.reason_in(space_id).recorded,
                    entity_type="Patient",
                    entity_id=p.patient_id,
                    entity_version=1,
                    request_id=FEED,
                    recorded_at=now,
                ),
            )
        )
    await provision.write_patients(conn, rows)
    await audit_store.append_batch(conn, records)
    await provision.clear_pending(conn, written)
    return len(written)
