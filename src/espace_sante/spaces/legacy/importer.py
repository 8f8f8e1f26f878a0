"""The legacy DMP import (issue 6, PRODUCT.md §2 "Legacy record", CSP R1111-40): people who had a DMP find its
documents in their space, unless they opposed. docs/legacy.md is the full page.

The export arrives as IHE XDM packages (spaces/legacy/xdm.py opens them safely; spaces/legacy/metadata.py reads their ebRIM
metadata). Each document is matched on the INS of its XDSDocumentEntry.patientId and deposited through the very
path of an MHD deposit (record/documents.publish_simplified, ITI-105): PDSm checks, content checks, the
blob store under the space's key, and the trace in the same transaction. It is deposited by one named machine
actor, `ACTOR`, whose name the holder reads in their trace: « Le logiciel « Reprise de votre ancien DMP » a
ajouté un document à votre dossier ».

Which spaces take the documents: the rule of every feed (record/resources.create_in, access.policy
PROFESSIONAL_STATES), open and active spaces only. A registered or notified person may still oppose during the
window (R1111-28) and an opposition keeps nothing medical, so importing their record before the opening would
put medical data where it may have to be shredded; an early activation makes the space active, and the next
`legacy retry` brings the documents. So nothing bypasses the feed rule: everything else is **set aside**
(storage/legacy.py, encrypted, with the reason) and reported, never lost:

| reason | when | retried |
|---|---|---|
| `unknown-person` | no Patient with that INS (yet) | yes: after the registry import |
| `not-open` | registered or notified space | yes: once open or activated |
| `opposed`, `suspended`, `closed` | the space's state | yes (a request, a resumption, a reopening) |
| `superseded` | a deprecated (replaced) DocumentEntry | kept for an operator |
| `invalid-metadata` | an XDS attribute missing or malformed, a PDSm check failed | yes (value sets, lenient mode) |
| `invalid-content` | content absent, damaged, not an accepted type, size or SHA-1 not as declared | kept for an operator |
| `refused` | any other refusal of the deposit | yes |

Idempotent: a document whose uniqueId is already in its space is counted as `already` and nothing is written;
a document set aside again for the same reason changes nothing. One run (import or retry) at a time: a
session lock keeps two runs from depositing the same document twice."""

from __future__ import annotations

import asyncio
import base64
import copy
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import orjson

from espace_sante.access.actors import Actor
from espace_sante.access.policy import PROFESSIONAL_STATES, decide
from espace_sante.access.scopes import Scopes
from espace_sante.context import Context
from espace_sante.errors import FhirError, InvalidResource
from espace_sante.fhir import pdsm
from espace_sante.fhir.identifiers import validate_nir
from espace_sante.record.documents import publish_simplified
from espace_sante.runtime import Runtime
from espace_sante.spaces.legacy import metadata
from espace_sante.spaces.legacy.metadata import DocumentEntry, MetadataRefused, Problem
from espace_sante.spaces.legacy.xdm import EntryRefused, Limits, Package, PackageRefused, Subset
from espace_sante.storage import documents as docs_store
from espace_sante.storage import legacy as store
from espace_sante.storage import lifecycle as lifecycle_store
from espace_sante.storage import locks
from espace_sante.storage import people as people_store
from espace_sante.storage.db import Conn

#: The legacy migration's machine actor: a feed (`client`), so that the feed rules apply to it unchanged, with
#: only the rights a deposit needs. Its display is what the holder's trace shows.
ACTOR = Actor(
    "client",
    "reprise-dmp",
    Scopes.parse("system/DocumentReference.crs system/Binary.cr system/Patient.rs"),
    "Reprise de votre ancien DMP",
)

Outcome = Literal["imported", "already", "set_aside"]

#: A space state that takes no deposit, as the set-aside reason.
STATE_REASONS = {
    "registered": "not-open",
    "notified": "not-open",
    "opposed": "opposed",
    "suspended": "suspended",
    "closed": "closed",
    "destroyed": "closed",
}
_LOCK = int.from_bytes(b"legacyDM", "big", signed=True)
_PLACEHOLDER = "urn:uuid:00000000-0000-4000-8000-000000000000"


class LegacyInputError(Exception):
    """The PATH given cannot be imported at all (absent, empty folder): the CLI says so and exits 2."""


class LegacyRunning(LegacyInputError):
    """Another legacy import or retry is running on this database."""


@dataclass
class ImportCounts:
    packages: int = 0
    subsets: int = 0
    documents: int = 0
    imported: int = 0
    already: int = 0
    set_aside: int = 0
    refused_packages: int = 0
    refused_subsets: int = 0
    #: One line per refused package or subset (its file name and the reason; never document content).
    problems: list[str] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RetryCounts:
    retried: int = 0
    imported: int = 0
    already: int = 0
    set_aside: int = 0

    def add(self, outcome: Outcome) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def as_json(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Origin:
    """Where a document came from: the package's SHA-256 and its path inside the package."""

    package: str
    entry_path: str


@dataclass(frozen=True)
class _Aside:
    reason: str
    location: str
    details: tuple[str, ...] = ()


# --- import ----------------------------------------------------------------------------------------------------


def packages_in(path: Path) -> list[Path]:
    """The packages a PATH names: the file itself, or the `.zip` files of a folder (not its sub-folders)."""
    if not path.exists() and not path.is_symlink():
        raise LegacyInputError(f"{path} : introuvable / not found")
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".zip")
        if not found:
            raise LegacyInputError(f"{path} : aucun fichier .zip / no .zip file")
        return found
    return [path]


async def import_path(
    rt: Runtime, path: Path, *, progress: Callable[[ImportCounts], None] | None = None
) -> ImportCounts:
    """Import every package PATH names (docs/legacy.md). Refused packages and subsets are counted and named in
    `problems`; every document is imported, already there, or set aside."""
    paths = packages_in(path)
    counts = ImportCounts()
    async with _one_run(rt):
        for package_path in paths:
            counts.packages += 1
            await _import_package(rt, package_path, counts)
            if progress is not None:
                progress(counts)
    return counts


class _one_run:
    """The session lock of a run (a killed run's lock goes with its connection)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.conn: Any = None

    async def __aenter__(self) -> None:
        self.conn = await self.rt.db.pool.acquire()
        if not await locks.try_session_lock(cast(Conn, self.conn), _LOCK):
            await self.rt.db.pool.release(self.conn)
            raise LegacyRunning(
                "une reprise du DMP est déjà en cours / a legacy DMP import or retry is already running"
            )

    async def __aexit__(self, *exc: object) -> None:
        try:
            await locks.session_unlock(cast(Conn, self.conn), _LOCK)
        finally:
            await self.rt.db.pool.release(self.conn)


async def _import_package(rt: Runtime, path: Path, counts: ImportCounts) -> None:
    limits = Limits.from_settings(rt.settings)
    try:
        package = await asyncio.to_thread(Package, path, limits)
    except PackageRefused as exc:
        counts.refused_packages += 1
        counts.problems.append(f"{path.name} : {exc.fr} / {exc.en}")
        return
    try:
        for subset in package.subsets:
            counts.subsets += 1
            await _import_subset(rt, package, subset, path.name, counts)
    finally:
        package.close()


async def _import_subset(
    rt: Runtime, package: Package, subset: Subset, name: str, counts: ImportCounts
) -> None:
    try:
        raw = await asyncio.to_thread(package.read, subset.metadata)
        entries = await asyncio.to_thread(metadata.parse, raw)
    except (EntryRefused, MetadataRefused) as exc:
        counts.refused_subsets += 1
        counts.problems.append(f"{name} {subset.folder} : {exc.fr} / {exc.en}")
        return
    for entry in entries:
        counts.documents += 1
        path = package.resolve(subset, entry.uri) if entry.uri else None
        content: bytes | None = None
        problem: Problem | None = None
        if path is None:
            problem = Problem("XDSDocumentEntry.URI", "fichier du document absent", "document file missing")
        else:
            try:
                content = await asyncio.to_thread(package.read, path)
            except EntryRefused as exc:
                problem = Problem("XDSDocumentEntry.URI", exc.fr, exc.en)
        origin = Origin(package.digest, path or f"{subset.folder}/{entry.uri}"[:300])
        counts.add(await take(rt, entry, content, problem, origin))


# --- one document ----------------------------------------------------------------------------------------------


async def take(
    rt: Runtime,
    entry: DocumentEntry,
    content: bytes | None,
    content_problem: Problem | None,
    origin: Origin,
    *,
    retried: bool = False,
) -> Outcome:
    """Deposit one document, or set it aside with the reason; "already" when its uniqueId is in its space."""
    identity = entry.unique_id or f"{origin.package}/{origin.entry_path}"
    unique = await rt.db.interaction("legacy_unique_key", store.unique_key, rt.keys, identity)
    ins = metadata.patient_ins(entry, production=rt.settings.environment == "production")
    aside = await _deposit(rt, entry, content, content_problem, ins)
    if isinstance(aside, str):
        await rt.db.interaction("legacy_resolve", store.resolve, unique, aside)
        return aside
    wrapped = orjson.dumps({"entry": entry.as_json(), "problems": list(aside.details)})
    await rt.db.interaction(
        "legacy_set_aside",
        store.set_aside,
        rt.keys,
        # Kept under its person's own key when the INS can be read (`forget` erases it for good).
        nir=None if isinstance(ins, Problem) else validate_nir(ins[1]),
        unique=unique,
        reason=aside.reason,
        location=aside.location[:200],
        package=origin.package,
        entry_path=origin.entry_path,
        entry=wrapped,
        content=content,
        retried=retried,
    )
    return "set_aside"


def _problems(problems: list[Problem] | tuple[Problem, ...]) -> tuple[str, ...]:
    return tuple(f"{p.where} : {p.fr} / {p.en}" for p in problems)


async def _person(conn: Conn, nir: str) -> tuple[uuid.UUID, str, str] | None:
    """(space, Patient id, state) of the person with this INS-NIR: the space the registry made for them
    first (its Patient may not be written yet), else a Patient carrying it."""
    found = await people_store.registry_patient(conn, nir) or await people_store.patient_by_ins(conn, nir)
    if found is None:
        return None
    state = await lifecycle_store.state_of(conn, found.space_id)
    return found.space_id, found.patient_id, state or ""


async def _deposit(
    rt: Runtime,
    entry: DocumentEntry,
    content: bytes | None,
    content_problem: Problem | None,
    ins: tuple[str, str] | Problem,
) -> Literal["imported", "already"] | _Aside:
    if entry.problems:
        return _Aside("invalid-metadata", entry.problems[0].where, _problems(entry.problems))
    if entry.status == metadata.DEPRECATED:
        return _Aside("superseded", "XDSDocumentEntry.availabilityStatus")
    if isinstance(ins, Problem):
        return _Aside("invalid-metadata", ins.where, _problems([ins]))
    person = await rt.db.read("legacy_person", _person, ins[1])
    if person is None:
        return _Aside("unknown-person", "XDSDocumentEntry.patientId")
    space_id, patient_id, state = person
    if state not in PROFESSIONAL_STATES:
        return _Aside(STATE_REASONS.get(state, "refused"), "space.state")
    if content is None:
        problem = content_problem or Problem("XDSDocumentEntry.URI", "contenu absent", "content missing")
        return _Aside("invalid-content", problem.where, _problems([problem]))
    dr = metadata.document_reference(entry, ins=ins, subject=f"Patient/{patient_id}")
    master = dr["masterIdentifier"]
    if await rt.db.read(
        "legacy_document_exists",
        docs_store.identifier_exists,
        space_id,
        "DocumentReference",
        master["system"],
        master["value"],
    ):
        return "already"
    # The ITI-65 (comprehensive) checks first: ITI-105 requires less, and a legacy document must carry what an
    # MHD deposit carries (custodian, context, hash and size...).
    comprehensive = copy.deepcopy(dr)
    comprehensive["content"][0]["attachment"]["url"] = _PLACEHOLDER
    try:
        pdsm.check_document_reference(comprehensive, lenient=rt.settings.documents_lenient_codes)
    except InvalidResource as exc:
        issues = exc.all_issues()
        return _Aside(
            "invalid-metadata", issues[0].expression or "", tuple(i.diagnostics for i in issues[:20])
        )
    dr["content"][0]["attachment"]["data"] = base64.b64encode(content).decode()
    try:
        await publish_simplified(Context(rt, ACTOR), dr)
    except FhirError as exc:
        if await rt.db.read(
            "legacy_document_exists",
            docs_store.identifier_exists,
            space_id,
            "DocumentReference",
            master["system"],
            master["value"],
        ):
            return "already"  # a concurrent deposit of the same document (another feed) won
        now = await rt.db.read("legacy_person", _person, ins[1])
        if now is None or now[2] not in PROFESSIONAL_STATES:
            return _Aside(STATE_REASONS.get(now[2] if now else "", "unknown-person"), "space.state")
        issues = exc.all_issues()
        where = issues[0].expression or ""
        reason = "invalid-content" if ".attachment" in where or where.startswith("Binary") else "refused"
        return _Aside(reason, where, tuple(i.diagnostics for i in issues[:20]))
    return "imported"


# --- retry and report ------------------------------------------------------------------------------------------


async def retry(rt: Runtime, *, batch: int = 100) -> RetryCounts:
    """Try every document still set aside again, oldest first (after a registry import, an opening, a change of
    value sets...). Each one ends imported, already there, or still set aside with its current reason."""
    counts = RetryCounts()
    after = None
    # The migration's own actor reads what it set aside (its metadata, its content), as it deposits them.
    entries, contents = decide(ACTOR, "read", "DocumentReference"), decide(ACTOR, "read", "Binary")
    async with _one_run(rt):
        while True:
            page = await rt.db.read(
                "legacy_pending", store.pending_page, rt.keys, entries, after=after, limit=batch
            )
            if not page:
                break
            for row in page:
                after = (row.created_at, row.item_id)
                counts.retried += 1
                wrapped = orjson.loads(row.entry)
                entry = metadata.entry_from_json(wrapped["entry"])
                content = None
                if row.has_content:
                    content = await rt.db.read(
                        "legacy_content", store.content_of, rt.keys, contents, row.space_id, row.item_id
                    )
                problem = None
                if content is None:  # the package gave no readable content: the document stays aside
                    problem = Problem(
                        "XDSDocumentEntry.URI", "contenu illisible ou absent", "content unreadable or missing"
                    )
                origin = Origin(row.package, row.entry_path)
                counts.add(await take(rt, entry, content, problem, origin, retried=True))
    return counts


@dataclass(frozen=True)
class Report:
    pending: dict[str, int]
    resolved: dict[str, int]
    rows: list[store.ReportRow]

    def as_json(self) -> dict[str, Any]:
        return {
            "set_aside": sum(self.pending.values()),
            "by_reason": self.pending,
            "resolved": self.resolved,
            "documents": [
                {
                    "id": str(r.item_id),
                    "since": r.created_at.isoformat(),
                    "last_attempt": r.updated_at.isoformat(),
                    "reason": r.reason,
                    "location": r.location,
                    "package": r.package,
                    "entry": r.entry_path,
                    "attempts": r.attempts,
                }
                for r in self.rows
            ],
        }


async def forget(rt: Runtime, nir: str) -> int:
    """Erase for good what is set aside for one person (the insurer's decision on an opposed person's former
    DMP, or their request): the documents and their key (no backup can read them again). Returns how many
    rows went. Raises IdentifierError for an INS-NIR that is not valid."""
    return await rt.db.interaction("legacy_forget", store.forget, rt.keys, [validate_nir(nir)])


async def report(rt: Runtime, *, limit: int = 1000) -> Report:
    """What is set aside, by reason, and the oldest `limit` documents (no identity, nothing medical)."""
    pending, resolved, rows = await rt.db.read("legacy_report", store.report, limit=limit)
    return Report(pending, resolved, rows)
