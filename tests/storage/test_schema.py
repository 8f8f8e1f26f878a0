"""The schema keeps the promise that lets the data move to Citus: space data is keyed by space."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import uuid

import asyncpg
import pytest

from espace_sante import storage
from espace_sante.access.actors import SYSTEM, Actor
from espace_sante.access.policy import decide
from espace_sante.access.scopes import Scopes
from espace_sante.runtime import Runtime
from espace_sante.storage import citus, people

#: Tables outside spaces, and why: every table the Citus plan does not distribute on space_id
#: (storage/citus.py, which says where each lives and why; a new table must be placed there).
NOT_SPACE_DATA = set(citus.planned()) - set(citus.BY_SPACE)


async def _tables(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1"
    )
    return [r["relname"] for r in rows]


async def test_every_table_of_space_data_leads_its_keys_with_space_id(runtime: Runtime) -> None:
    """Reads the live schema: each table of space data has a NOT NULL space_id, and its primary key and every
    unique index start with it (Citus requires the distribution column in every unique constraint)."""
    async with runtime.db.pool.acquire() as conn:
        tables = await _tables(conn)
        problems = []
        for table in tables:
            if table in NOT_SPACE_DATA:
                continue
            column = await conn.fetchrow(
                "SELECT attnotnull FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'space_id'",
                table,
            )
            if column is None or not column["attnotnull"]:
                problems.append(f"{table}: no NOT NULL space_id column")
                continue
            indexes = await conn.fetch(
                "SELECT i.indexrelid::regclass::text AS name, a.attname AS first FROM pg_index i "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
                "WHERE i.indrelid = $1::regclass AND (i.indisunique OR i.indisprimary)",
                table,
            )
            problems += [
                f"{table}: unique index {ix['name']} starts with {ix['first']}"
                for ix in indexes
                if ix["first"] != "space_id"
            ]
        assert problems == []
        assert {"resource", "resource_version", "sp_token", "space_key"} <= set(tables)


async def test_every_table_has_a_place_on_citus(runtime: Runtime) -> None:
    """A new table says where it lives on a Citus cluster (storage/citus.py): distributed with its space,
    on a key of its own, replicated to every node, or local to the coordinator, and why."""
    async with runtime.db.pool.acquire() as conn:
        tables = set(await _tables(conn))
    assert tables - citus.planned() == set(), "place these tables in storage/citus.py"
    assert citus.planned() - tables == set(), "storage/citus.py places tables that no longer exist"
    by_space = set(citus.BY_SPACE)
    assert not by_space & set(citus.REFERENCE) and not by_space & set(citus.COORDINATOR)
    assert not set(citus.BY_OWN_KEY) & (by_space | set(citus.REFERENCE) | set(citus.COORDINATOR))


#: Storage modules that hold no medical or identity data, or only directory data, and why. Every other module's
#: public functions that return something are checked below.
NO_MEDICAL_DATA = {
    "accounts": "people who sign in and their credentials (directory): read to authenticate, before any actor",
    "blobcrypt": "encryption of content with a key its caller holds; the way to a content is documents.content_of",
    "citus": "where each table lives on Citus (table names)",
    "blobs": "the object store's plumbing (keys, backends); objects are encrypted, reached via documents.content_of",
    "clients": "machine clients and their tokens (directory)",
    "db": "connections and transactions",
    "embedded": "the development PostgreSQL server",
    "grants": "a person's authorisations of apps, codes and refresh tokens (directory)",
    "jobs": "background jobs: their arguments name rows, hold no data",
    "keys": "data keys, wrapped by the key-encryption key; what they open is read under a decision",
    "locks": "advisory locks",
    "migrate": "schema migrations",
    "notify": "PostgreSQL notifications (names of rows)",
    "ratelimit": "sign-in counters (directory)",
    "sessions": "sign-in sessions (directory)",
    "spaces": "space rows and keys, no content",
    "tables": "table names by resource type",
}

#: In the other modules, public functions that return something but no medical or identity data, and why.
#: (Functions returning None, a flag, a count or space ids are not listed: they cannot carry any.)
RETURNS_NO_SUCH_DATA = {
    "access.bases_of": "who holds rights on the space: professionals' directory identifiers (RPPS, FINESS)",
    "access.blocked_of": "professionals' RPPS the holder blocked (directory identifiers)",
    "access.medecin_traitant": "the médecin traitant's RPPS (directory identifier)",
    "access.facts": "the policy's own facts, read to make the decision",
    "access.related_spaces": "the policy's own facts: which spaces to decide on",
    "access.patient_of_space": "a Patient id (the space's own key), no identity",
    "activation.fail": "failure counts",
    "activation.find": "activation code digests and their spaces",
    "activation.last_opposition": "when and by which channel an opposition was recorded",
    "activation.replace": "whether a code was replaced, and until when",
    "audit.chain": "a space's trace chain whole, for sealing and `audit verify` (audit/chains.py), never for a "
    "person: people read the trace under a decision (auditevents, as AuditEvent)",
    "audit.head": "a chain's length and head hash",
    "audit.seals": "signed chain heads",
    "audit.unsealed_heads": "space ids, chain lengths and head hashes",
    "auditevents.client_names": "machine clients' names (directory)",
    "auditevents.head_seq": "a chain's length",
    "auditevents.patient_of": "a Patient id, no identity",
    "documents.binaries_without_content": "ids of Binaries to check (documents verify)",
    "documents.blobs_page": "objects' sizes, MACs and media types, never content",
    "documents.by_identifier": "resource ids",
    "documents.content_ids": "resource ids",
    "documents.due_notices": "resource ids",
    "documents.due_releases": "resource ids",
    "documents.find_by_mac": "an object's size, MAC and media type, never content",
    "documents.pending_upload_keys": "object keys",
    "documents.record_blob": "an object's size, MAC and media type, never content",
    "documents.stale_uploads": "object keys",
    "legacy.report": "counts and set-aside rows without anything medical or any identity",
    "legacy.set_aside": "the reason it was set aside",
    "legacy.unique_key": "an HMAC",
    "lifecycle.blob_keys": "object keys",
    "lifecycle.coming_of_age": "space ids and states",
    "lifecycle.death_candidates": "space ids, change counts and Patient ids (the bodies are read under a decision)",
    "lifecycle.lock": "a space's lifecycle state",
    "lifecycle.represented_by": "space ids, states and the end of the asker's own rights",
    "lifecycle.row_of": "a space's lifecycle state",
    "lifecycle.space_tables": "table names",
    "lifecycle.state_of": "a space's lifecycle state",
    "notices.code_expiry": "when an activation code expires",
    "notices.counts": "counts",
    "notices.data_keys": "wrapped data keys; what they open is read under a decision",
    "notices.due_email_keys": "notice ids",
    "notices.outbox": "the development outbox of every mail (sign-in mails too), no space: listed in development",
    "notices.patients_of": "Patient ids, no identity",
    "notices.replace_codes": "whether codes were replaced",
    "notifications.choices": "which kinds of notification she is told of by e-mail",
    "notifications.claim_mail": "a notification's kind and audience, not who acted nor what it is about",
    "notifications.left_waiting": "space and notification ids",
    "notices.hand_letter_batch": "a letter batch's folder and dates, no addressee",
    "notices.letter_batches_to_purge": "letter batches' folders and dates, no addressee",
    "people.operator_display": "an insurer agent's name (directory)",
    "people.patient_by_ins": "the ids an INS its caller holds leads to, no identity",
    "people.practitioner_by_rpps": "a professional's directory entry",
    "people.practitioners_rpps": "professionals' RPPS (directory identifiers)",
    "people.registry_patient": "the ids an INS its caller holds leads to, no identity",
    "provision.add_representatives": "the links it was given that were new",
    "provision.claim": "which of the INS it was given were claimed",
    "provision.known_ins": "which of the INS it was given are known",
    "provision.patients_by_ins": "the ids the INS its caller holds lead to, no identity",
    "provision.start_import": "an import's checkpoint",
    "search.includes": "keys only, passed through the policy before any read",
    "search.named_spaces": "the spaces an INS its caller holds leads to, decided on before anything is read",
    "visibility.documents_pointing_at": "resource ids",
    "visibility.hidden_documents": "resource ids and labels",
}
#: Return types that cannot carry medical or identity data.
HARMLESS = {"None", "bool", "int", "uuid.UUID", "uuid.UUID | None", "list[uuid.UUID]"}


def _storage_functions() -> list[tuple[str, str, inspect.Signature]]:
    out = []
    for info in pkgutil.iter_modules(storage.__path__):
        if info.ispkg or info.name in NO_MEDICAL_DATA:
            continue
        module = importlib.import_module(f"espace_sante.storage.{info.name}")
        for name, func in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("_") or func.__module__ != module.__name__:
                continue
            if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
                out.append((info.name, name, inspect.signature(func)))
    return out


def test_storage_functions_that_return_medical_or_identity_data_require_a_decision() -> None:
    """SECURITY V1 1.4.4: every storage function that returns medical or identity data (resource bodies,
    identities waiting for their Patient, INS, birth dates, representatives, a document's content, a notice's
    words, the trace) takes the access policy's Decision and checks it covers the space, so no path skips the
    policy. Each storage module is either checked here or listed with the reason it holds no such data."""
    modules = {i.name for i in pkgutil.iter_modules(storage.__path__) if not i.ispkg}
    assert set(NO_MEDICAL_DATA) <= modules, "a listed module no longer exists"
    missing, stale = [], set(RETURNS_NO_SUCH_DATA)
    for module, name, signature in _storage_functions():
        stale.discard(f"{module}.{name}")
        if "decision" in signature.parameters or f"{module}.{name}" in RETURNS_NO_SUCH_DATA:
            continue
        if str(signature.return_annotation) in HARMLESS:
            continue
        missing.append(f"{module}.{name} -> {signature.return_annotation}")
    assert missing == [], "take a Decision, or say in RETURNS_NO_SUCH_DATA why no such data is returned"
    assert stale == set(), "listed functions that no longer exist"


async def test_a_decision_that_does_not_cover_the_space_reads_no_identity(runtime: Runtime) -> None:
    """A person's decision made without the space's facts reaches no space: storage refuses it, and a
    decision on another type is refused too."""
    space = uuid.uuid4()
    holder = Actor("holder", "1", Scopes.parse("patient/*.*"))
    refused = [
        (people.ins_of_space, decide(holder, "read", "Patient")),
        (people.ins_of_space, decide(SYSTEM, "read", "Observation")),
        (people.representatives_of, decide(SYSTEM, "create", "Patient")),
    ]
    async with runtime.db.pool.acquire() as conn:
        for read, decision in refused:
            with pytest.raises(PermissionError):
                await read(conn, decision, space)
        assert await people.ins_of_space(conn, decide(SYSTEM, "read", "Patient"), space) is None
