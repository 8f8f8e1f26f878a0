"""Importing the insurer's registry (docs/registry-format.md, "Import"): each valid row makes, updates or
leaves alone the space of the person it names.

The file is streamed (constant memory) and cut into batches of at most `BATCH` people, each one transaction:
- people the registry never named get their space in bulk (storage/provision.py: COPY of the space rows,
  their data keys, their `registry_person` rows and the first records of their chains, representatives traced
  in the same chain). Their Patient is NOT written now: its body waits sealed under the space's key in
  `registry_person.pending` and becomes the space's Patient when the space opens or is activated
  (spaces/identity.py `materialise`). A FHIR Patient costs its version, a dozen search rows and a trace
  record; spread over the opposition window instead of the import, and never made for people who oppose;
- people whose row changed since the last import (a fingerprint of the row is kept in `registry_person`) get a
  new version of their Patient through the app's own storage (storage/resources.py `write`), or their waiting
  identity sealed again, traced in their space's chain as written by the system (the insurer's feed);
- a person the registry names whose Patient was made otherwise (through the API) is adopted: their space is
  recorded and their Patient brought up to date, never a second space;
- the batch moves the run's checkpoint (`registry_import`) in the same transaction, so a run killed at any
  point is resumed by the next run of the same file and ends as one clean run would;
- with `notify` (`registry import --notify`), the people the batch creates are notified in the same
  transaction, from the rows in memory: their spaces are written `notified`, their registration record
  saying so with the code's validity (`notices send` writes it as `space:notify` and `activation:issue`),
  their codes (only HMAC digests) and notices (and the e-mails' delivery jobs) alongside, as `notices send`
  would write them, their representatives read from the batch's rows, from the database, or (--jobs) from
  the other shards' latest rows (spaces/registry/rows.py `Neighbours`). A minor whose representative is not yet
  known (later in the file) and a person with a death date stay `registered`; the run's last step is
  `notices send` for what is left (spaces/notices/issue.py).

The INS is the key: `registry_person`'s primary key makes a second space for one NIR impossible, even with two
imports at once. A person absent from a later file is left as is."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, BinaryIO, cast

import orjson

from espace_sante import clock
from espace_sante.access.actors import NOTICES, REGISTRY
from espace_sante.access.policy import Decision, decide
from espace_sante.context import Context
from espace_sante.fhir import compartment
from espace_sante.runtime import Runtime
from espace_sante.spaces import identity as waiting_identity
from espace_sante.spaces.notices import addressees, delivery, issue, words
from espace_sante.spaces.registry.rejects import RejectsFile
from espace_sante.spaces.registry.rows import Beneficiary, Keep, Neighbours, Rejected, in_shard, read_registry
from espace_sante.storage import audit as audit_store
from espace_sante.storage import locks, provision
from espace_sante.storage import resources as store
from espace_sante.storage.audit import SUCCESS, Record
from espace_sante.storage.db import Conn
from espace_sante.storage.notices import NewNotice
from espace_sante.storage.people import INS_SYSTEM

BATCH = 2000
#: Batches between two collections of cyclic garbage during a run (see `import_file`).
_COLLECT_EVERY = 20
#: The state of a space made from the registry, before its notice is sent (the lifecycle step moves it on).
NEW_STATE = "registered"
FEED = waiting_identity.FEED
_GENDER = {"F": "female", "M": "male", "U": "unknown"}


class ImportRunning(RuntimeError):
    """Another run of the same file holds its lock."""


@dataclass
class Counts:
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    by_field: dict[str, int] = field(default_factory=dict)

    #: With --notify: the notices this process recorded (in the batches and the last step; a resumed run counts
    #: its own), and the e-mails delivered at the end.
    notices: issue.SendCounts | None = None

    def as_json(self) -> dict[str, int]:
        out = {
            "read": self.read,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
        }
        if self.notices is not None:
            out |= {k: v for k, v in self.notices.as_json().items() if k in _NOTICE_COUNTS}
        return out


_NOTICE_COUNTS = ("notified", "emails", "letters", "delivered")


def eighteenth_birthday(born: date) -> date:
    try:
        return born.replace(year=born.year + 18)
    except ValueError:  # born on 29 February: of age on 1 March
        return date(born.year + 18, 3, 1)


def fingerprint(b: Beneficiary) -> bytes:
    """What the registry said about a person (the line number aside): equal rows, equal fingerprints."""
    return hashlib.sha256(
        orjson.dumps(
            [
                b.nir, b.last_name, b.first_names, b.birth_date.isoformat(), b.sex, b.address_line,
                b.postal_code, b.city, b.email, list(b.representatives),
                b.death_date.isoformat() if b.death_date else None,
            ]
        )
    ).digest()  # fmt: skip


def identity(b: Beneficiary) -> dict[str, Any]:
    """The Patient elements the registry owns, from its row."""
    body: dict[str, Any] = {
        "identifier": [{"system": INS_SYSTEM, "value": b.nir}],
        "name": [{"use": "official", "family": b.last_name, "given": b.first_names.split()}],
        "gender": _GENDER[b.sex],
        "birthDate": b.birth_date.isoformat(),
    }
    if b.address_line:
        body["address"] = [
            {
                "use": "home",
                "line": [b.address_line],
                "postalCode": b.postal_code,
                "city": b.city,
                "country": "FR",
            }
        ]
    if b.email:
        body["telecom"] = [{"system": "email", "value": b.email}]
    if b.death_date:
        body["deceasedDateTime"] = b.death_date.isoformat()
    return body


def new_patient(b: Beneficiary) -> dict[str, Any]:
    return {"resourceType": "Patient", **identity(b)}


def person(b: Beneficiary) -> words.Person:
    """What a notice needs of the person a row names (as `words.person_of` reads it from their Patient)."""
    return words.person_from(
        b.first_names, b.last_name, b.birth_date.isoformat(), b.email, b.address_line, b.postal_code, b.city
    )


def merged(current: dict[str, Any], b: Beneficiary) -> dict[str, Any]:
    """The current Patient with the registry's elements replaced by the row's: other identifiers, other
    telecoms (a phone the holder gave) and other elements are kept; an address or e-mail the row no longer
    has is removed, as is a death the row no longer states."""
    mine = identity(b)
    body = {k: v for k, v in current.items() if k not in ("meta", "deceasedDateTime", "deceasedBoolean")}
    others = [
        i for i in body.get("identifier", []) if not (isinstance(i, dict) and i.get("system") == INS_SYSTEM)
    ]
    body["identifier"] = mine["identifier"] + others
    body["name"] = mine["name"]
    body["gender"] = mine["gender"]
    body["birthDate"] = mine["birthDate"]
    body.pop("address", None)
    if "address" in mine:
        body["address"] = mine["address"]
    telecom = [t for t in body.pop("telecom", []) if not (isinstance(t, dict) and t.get("system") == "email")]
    telecom = mine.get("telecom", []) + telecom
    if telecom:
        body["telecom"] = telecom
    if "deceasedDateTime" in mine:
        body["deceasedDateTime"] = mine["deceasedDateTime"]
    return body


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = ("id", "meta")
    return {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}


def _representative_record(decision: Decision, space_id: uuid.UUID, patient_id: str, ins: str) -> Record:
    return Record(
        action="rights:representative",
        outcome=SUCCESS,
        actor_kind=REGISTRY.kind,
        actor_id=REGISTRY.id,
        actor_display=REGISTRY.display,
        basis=decision.reason_in(space_id).recorded,
        entity_type="Patient",
        entity_id=patient_id,
        detail=f"|{ins}|",
        request_id=FEED,
    )


@dataclass
class Built:
    """A batch's new spaces' rows (`build`) and, with --notify, their notices (written with them) and the
    minors whose representatives are not all in the batch (notified in the transaction once looked up)."""

    rows: provision.SpaceRows
    notices: list[NewNotice] = field(default_factory=list)
    later: list[Prepared] = field(default_factory=list)
    counts: tuple[int, int, int] = (0, 0, 0)  # notified, e-mails, letters among `notices`

    def only(self, keep: set[uuid.UUID]) -> Built:
        mine = [n for n in self.notices if n.space_id in keep]
        emails = sum(1 for n in mine if n.channel == "email")
        return Built(
            self.rows.only(keep),
            mine,
            [p for p in self.later if p.space_id in keep],
            (len({n.space_id for n in mine}), emails, len(mine) - emails),
        )


@dataclass(frozen=True)
class Prepared:
    """A valid row and what can be computed from it before the database is asked (by the reading task),
    including the ids its space gets if the person turns out to be new."""

    row: Beneficiary
    fingerprint: bytes
    patient: dict[str, Any]
    space_id: uuid.UUID
    patient_id: str


def prepare(row: Beneficiary, ids: tuple[uuid.UUID, str] | None = None) -> Prepared:
    """A row made ready, with the ids its space would get (`ids`, drawn in bulk by the caller, or new)."""
    if ids is None:
        [ids] = compartment.new_spaces(1)
    return Prepared(row, fingerprint(row), new_patient(row), *ids)


class Importer:
    def __init__(self, runtime: Runtime, *, today: date | None = None, notify: date | None = None) -> None:
        self.rt = runtime
        self.today = today or clock.today()
        #: The notice date of --notify (None: spaces are created `registered`, as before).
        self.notify = notify
        #: The notices of --notify are the notices' own work (access/named.py: `notices`).
        self.ctx = Context(runtime, NOTICES)
        #: With --notify and --jobs: the latest rows of the other shards, where a minor's representative is
        #: looked for when not in the batch (set by `import_file`, filled by the reader).
        self.neighbours: Neighbours | None = None
        #: (notified, e-mails, letters) of the last batch's transaction, read once it committed.
        self.sent: tuple[int, int, int] = (0, 0, 0)
        self.create = decide(REGISTRY, "create", "Patient")
        self.update = decide(REGISTRY, "update", "Patient")
        self.reading = decide(REGISTRY, "read", "Patient")
        self.record = Record(
            action="space:register",
            outcome=SUCCESS,
            actor_kind=REGISTRY.kind,
            actor_id=REGISTRY.id,
            actor_display=REGISTRY.display,
            basis=self.create.reason.recorded,
            request_id=FEED,
        )

    def build(self, prepared: list[Prepared], batch: list[Prepared] | None = None) -> Built:
        """The rows that create the spaces of these people (keys, sealed identities, first records),
        as if all were new: CPU only, so the reading task does it while the previous batch is in the
        database; `batch` keeps the rows of those who really are new. With --notify, those who can be
        notified from the batch's rows (`batch`: the whole batch, `prepared` by default) are created
        `notified`, with their codes and notices."""
        spaces: list[provision.NewSpace] = []
        on = self.notify
        people = {p.row.nir: person(p.row) for p in batch or prepared} if on else {}
        addressed: list[addressees.Addressee] = []
        later: list[Prepared] = []
        notified: list[tuple[Prepared, tuple[Record, ...]]] = []
        for p in prepared:
            links = self._links(p.row, p.space_id)
            more = tuple(
                _representative_record(self.create, p.space_id, p.patient_id, rep) for _, rep, _ in links
            )
            alive = p.row.death_date is None
            if on is None or not alive:
                pass
            elif all(rep in people or self._neighbour(rep, people) for _, rep, _ in links):
                reps = tuple(people[rep] for _, rep, _ in links)
                addressed.append(addressees.Addressee(p.space_id, people[p.row.nir], reps, bool(links)))
                notified.append((p, more))
                continue
            else:  # a representative not in this batch: looked up in the transaction
                later.append(p)
            spaces.append(
                provision.NewSpace(
                    p.space_id, p.patient_id, p.patient, NEW_STATE, more, death_checked=1 if alive else 0
                )
            )
        codes = None
        if on is not None and addressed:
            codes = issue.draw_codes(self.rt, [a.space_id for a in addressed], on)
            # One record says it all: made from the registry and notified, with the code's validity (what
            # `notices send` writes as `space:notify` and `activation:issue`).
            first = replace(self.record, detail=f"notified|until={codes.until.date().isoformat()}")
            for p, more in notified:
                spaces.append(
                    provision.NewSpace(
                        p.space_id, p.patient_id, p.patient, "notified", more, opens_on=codes.opens_on,
                        death_checked=1, first=first,
                    )
                )  # fmt: skip
        rows = provision.build_spaces(
            self.rt.keys, self.create, spaces, record=self.record, remember=False, keep_keys=on is not None,
            pending=True,
        )  # fmt: skip
        built = Built(rows, later=later)
        if codes is not None:
            rows.codes = [
                (a.space_id, codes.digests[a.space_id], codes.pepper_id, codes.until) for a in addressed
            ]
            for a in addressed:
                built.notices += issue.notices_of(a, (1, rows.aeads[a.space_id]), codes)
            emails = sum(1 for n in built.notices if n.channel == "email")
            built.counts = (len(addressed), emails, len(built.notices) - emails)
        rows.aeads = {p.space_id: rows.aeads[p.space_id] for p in later}  # the keys still needed
        return built

    def _neighbour(self, nir: str, people: dict[str, words.Person]) -> bool:
        """Whether a representative not in the batch is in another shard's latest rows (then into `people`)."""
        found = self.neighbours.find(nir) if self.neighbours is not None else None
        if found is not None:
            people[nir] = person(found)
        return found is not None

    def _links(self, b: Beneficiary, space_id: uuid.UUID) -> list[tuple[uuid.UUID, str, date]]:
        until = eighteenth_birthday(b.birth_date)
        if until <= self.today or b.death_date is not None:
            return []
        return [(space_id, rep, until) for rep in b.representatives]

    async def batch(
        self, conn: Conn, prepared: list[Prepared], built: Built | None = None
    ) -> tuple[int, int, int]:
        """One batch in the caller's transaction (one row per NIR). `built` is `build(prepared)` when the
        reading task made it. Returns (created, updated, unchanged)."""
        await provision.bulk_transaction(conn)
        ready = {p.row.nir: p for p in prepared}
        # One lock order for every import: no deadlock between two of them.
        rows = sorted((p.row for p in prepared), key=lambda r: r.nir)
        nirs = [r.nir for r in rows]
        known = await provision.registry_people(conn, self.reading, nirs)
        fresh = [r for r in rows if r.nir not in known]
        adopted: dict[str, tuple[uuid.UUID, str]] = {}
        claimed: set[str] = set()
        if fresh:
            adopted = await provision.patients_by_ins(conn, [r.nir for r in fresh])
            # The rows of the spaces this batch may create (their sealed identities go in the claim).
            maybe = {ready[r.nir].space_id for r in fresh if r.nir not in adopted}
            if built is None:
                built = self.build([ready[r.nir] for r in fresh if r.nir not in adopted], prepared)
            elif len(maybe) < len(prepared):
                built = built.only(maybe)
            sealed = built.rows.pending
            planned = {
                r.nir: adopted.get(r.nir) or (ready[r.nir].space_id, ready[r.nir].patient_id) for r in fresh
            }
            claimed = await provision.claim(
                conn,
                [
                    (
                        r.nir,
                        *planned[r.nir],
                        ready[r.nir].fingerprint,
                        None if r.nir in adopted else sealed.get(ready[r.nir].space_id),
                    )
                    for r in fresh
                ],
            )
            if len(claimed) < len(fresh):  # another import claimed some since: they are now known
                known |= await provision.registry_people(
                    conn, self.reading, [r.nir for r in fresh if r.nir not in claimed]
                )
        new: list[Prepared] = []
        links: list[tuple[uuid.UUID, str, date]] = []
        changed: list[tuple[Beneficiary, uuid.UUID, str, provision.Pending | None]] = []
        fingerprints: list[tuple[str, bytes]] = []
        unchanged = 0
        for r in rows:
            if r.nir in claimed and r.nir not in adopted:
                new.append(ready[r.nir])
                links += self._links(r, ready[r.nir].space_id)
            elif r.nir in claimed:
                changed.append((r, *adopted[r.nir], None))
            else:
                k = known[r.nir]
                if k.fingerprint == ready[r.nir].fingerprint:
                    unchanged += 1
                else:
                    changed.append((r, k.space_id, k.patient_id, k.pending))
                    fingerprints.append((r.nir, ready[r.nir].fingerprint))
        if built is None or len(new) < len(prepared):  # some were known after all: only the new people's rows
            built = (built or Built(provision.SpaceRows())).only({p.space_id for p in new})
        await provision.write_spaces(conn, built.rows)
        await provision.add_representatives(conn, links)
        await delivery.record(conn, self.rt, built.notices)
        sent = built.counts
        updated = 0
        for r, space, pid, waiting in changed:
            if await self._update(conn, r, space, pid, waiting):
                updated += 1
            else:
                unchanged += 1
        await provision.set_fingerprints(conn, fingerprints)
        if built.later:
            more = await self._notify_later(conn, prepared, built)
            sent = (sent[0] + more.notified, sent[1] + more.emails, sent[2] + more.letters)
        self.sent = sent
        return len(new), updated, unchanged

    async def _notify_later(self, conn: Conn, prepared: list[Prepared], built: Built) -> Any:
        """Notify the minors just created whose representatives were not all in the batch, those found in the
        database (earlier batches, earlier imports) read from their Patients or sealed identities; a minor with
        a representative found nowhere yet (later in the file, or not in the registry) stays `registered` for
        the run's last step, as `notices send` after the import would find them."""
        assert self.notify is not None
        rows = {p.row.nir: p.row for p in prepared}
        needed = {p.row.nir for p in built.later} | {r for p in built.later for r in p.row.representatives}
        people = {nir: person(rows[nir]) for nir in needed if nir in rows}
        people |= await addressees.people_by_ins(conn, self.rt, sorted(needed - people.keys()))
        ready = []
        for p in built.later:
            reps = [rep for _, rep, _ in self._links(p.row, p.space_id)]
            if all(rep in people for rep in reps):
                addressee = addressees.Addressee(
                    p.space_id, people[p.row.nir], tuple(people[r] for r in reps), bool(reps)
                )
                ready.append((addressee, (1, built.rows.aeads[p.space_id])))
        return await issue.notify_addressed(conn, self.ctx, self.notify, ready)

    def _updated(self, space_id: uuid.UUID, patient_id: str, version: int | None) -> Record:
        """The record of a registry change to a person's identity: a Patient version, or (None) the identity
        waiting for the Patient sealed again."""
        return replace(
            self.record,
            action="resource:update",
            basis=self.update.reason_in(space_id).recorded,
            entity_type="Patient",
            entity_id=patient_id,
            entity_version=version,
        )

    async def _update(
        self,
        conn: Conn,
        b: Beneficiary,
        space_id: uuid.UUID,
        patient_id: str,
        waiting: provision.Pending | None,
    ) -> bool:
        """Bring one person's Patient (or the identity waiting for it) and representatives up to date; False
        when nothing needed to change."""
        decision = self.update
        touched = False
        current = None
        if waiting is not None:
            before = await waiting_identity.unseal(conn, self.rt, waiting)
            after = merged(before, b)
            if not _same(before, after):
                await waiting_identity.reseal(conn, self.rt, space_id, patient_id, after, recheck_death=True)
                await audit_store.append(conn, space_id, self._updated(space_id, patient_id, None))
                touched = True
        else:
            current = await store.current(conn, decision, space_id, "Patient", patient_id, for_update=True)
        if current is not None and not current.deleted:
            stored = await store.read(conn, self.rt.keys, decision, space_id, "Patient", patient_id)
            assert stored is not None and stored.body is not None
            before = orjson.loads(stored.body)
            after = merged(before, b)
            if not _same(before, after):
                written = await store.write(
                    conn, self.rt.keys, decision, space_id, "Patient", patient_id, after,
                    method="PUT", previous=current,
                )  # fmt: skip
                await audit_store.append(
                    conn, space_id, self._updated(space_id, patient_id, written.version_id)
                )
                touched = True
        for _, rep in await provision.add_representatives(conn, self._links(b, space_id)):
            await audit_store.append(
                conn, space_id, _representative_record(decision, space_id, patient_id, rep)
            )
            touched = True
        return touched


def file_digest(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.digest()


async def import_file(
    runtime: Runtime,
    path: Path,
    *,
    rejects: RejectsFile,
    progress: Callable[[Counts], None] | None = None,
    resumed: Callable[[int], None] | None = None,
    batch_size: int = BATCH,
    today: date | None = None,
    notify: date | None = None,
    deliver: bool = False,
    shard: tuple[int, int] | None = None,
) -> Counts:
    """Import a registry file (resuming an unfinished run of the same bytes). Raises RegistryFormatError for a
    file that is not a registry, ImportRunning when another run of the same file is going on. With `notify`
    (the notice date), the people created are notified in their batch's transaction, then what is still
    `registered` by `notices send` (spaces/notices/issue.py), which delivers the e-mails when `deliver`.

    With `shard` (k, n), only the rows of shard k of n (spaces/registry/rows.py `shard_of`) are imported, as one
    run of its own (its own checkpoint and lock), and the last `notices send` step is left to the caller,
    which runs it once every shard is done (spaces/registry/shards.py)."""
    digest = file_digest(path)
    keep: Keep | None = None
    if shard is not None:
        digest = hashlib.sha256(digest + f"|shard {shard[0]}/{shard[1]}".encode()).digest()
        keep = in_shard(*shard)
    importer = Importer(runtime, today=today, notify=notify)
    if shard is not None and notify is not None:
        importer.neighbours = Neighbours()
    async with runtime.db.pool.acquire() as lock:
        # A session lock for the run: a second run of the same file refuses to start; a killed run's lock goes
        # with its connection.
        key = int.from_bytes(digest[:8], "big", signed=True)
        if not await locks.try_session_lock(cast(Conn, lock), key):
            raise ImportRunning("un import de ce fichier est en cours / this file is being imported")
        # The cyclic garbage collector ran on every few hundred of the millions of short-lived tuples a run
        # makes, rescanning the batches in flight each time: 40 % of the Python time per row. Those rows hold
        # no cycles (reference counting frees them), so automatic collection is off during the run and one
        # collection per `_COLLECT_EVERY` batches frees what cycles asyncio or the driver leave (constant
        # memory); the objects alive before the run are frozen out of those collections.
        was_enabled = gc.isenabled()
        gc.freeze()
        gc.disable()
        try:
            with path.open("rb") as stream:
                return await _run(
                    runtime, importer, stream, digest, rejects, progress, resumed, batch_size, deliver,
                    keep=keep, last_step=shard is None,
                )  # fmt: skip
        finally:
            if was_enabled:
                gc.enable()
            gc.unfreeze()
            await locks.session_unlock(cast(Conn, lock), key)


class _Reader:
    """Reads the file in batches (in a task of the event loop, while the previous batch is in the database): rejected
    rows go to the rejects file, rows the resumed run committed are skipped, the others are prepared and,
    while most people turn out new (`eager`), their spaces' rows built."""

    def __init__(
        self,
        stream: BinaryIO,
        today: date,
        rejects: RejectsFile,
        counts: Counts,
        after: int,
        size: int,
        build: Callable[[list[Prepared]], Built],
        keep: Keep | None = None,
        neighbours: Neighbours | None = None,
    ) -> None:
        self.rows = iter(read_registry(stream, today=today, keep=keep, neighbours=neighbours))
        self.build = build
        #: Build spaces ahead: right for a first import, wasted on a re-import where nearly every row is
        #: unchanged (the transaction then builds the few new ones itself). Set from the last batch's counts.
        self.eager = True
        self.rejects = rejects
        self.counts = counts
        self.after = after
        self.size = size
        self.carried: Beneficiary | None = None

    def next_batch(self) -> tuple[list[Prepared], int, Built | None]:
        """Up to `size` rows, one per NIR (the same person twice: the later row goes in the next batch, so it
        applies after the earlier one), the last line they cover, and their spaces' rows if `eager`;
        ([], 0, None) at the end."""
        batch: list[Beneficiary] = []
        nirs: set[str] = set()
        last = 0
        if self.carried is not None:
            batch.append(self.carried)
            nirs.add(self.carried.nir)
            last = self.carried.line
            self.carried = None
        for row in self.rows:
            self.counts.read += 1
            if isinstance(row, Rejected):
                self.counts.rejected += 1
                name = row.field or "(ligne)"
                self.counts.by_field[name] = self.counts.by_field.get(name, 0) + 1
                self.rejects.write(row)
                continue
            if row.line <= self.after:
                continue  # committed by the run this one resumes
            if row.nir in nirs:
                self.carried = row
                break
            batch.append(row)
            nirs.add(row.nir)
            last = row.line
            if len(batch) >= self.size:
                break
        ready = [
            prepare(row, ids) for row, ids in zip(batch, compartment.new_spaces(len(batch)), strict=True)
        ]
        return ready, last, self.build(ready) if self.eager and ready else None


async def _run(
    runtime: Runtime,
    importer: Importer,
    stream: BinaryIO,
    digest: bytes,
    rejects: RejectsFile,
    progress: Callable[[Counts], None] | None,
    resumed: Callable[[int], None] | None,
    batch_size: int,
    deliver: bool = False,
    *,
    keep: Keep | None = None,
    last_step: bool = True,
) -> Counts:
    checkpoint = await runtime.db.interaction("registry_start", provision.start_import, digest)
    if checkpoint.last_line and resumed is not None:
        resumed(checkpoint.last_line)
    counts = Counts(created=checkpoint.created, updated=checkpoint.updated, unchanged=checkpoint.unchanged)
    if importer.notify is not None:
        counts.notices = issue.SendCounts()
    reader = _Reader(
        stream, importer.today, rejects, counts, checkpoint.last_line, batch_size, importer.build, keep,
        importer.neighbours,
    )  # fmt: skip

    async def read_next() -> tuple[list[Prepared], int, Built | None]:
        return reader.next_batch()

    # The next batch is read and built by a task of this event loop, which runs while this batch's
    # statements are in PostgreSQL (the loop is otherwise idle, waiting for their answers). A worker thread
    # did the same with two threads taking turns at the GIL: each handover cost more than the overlap gained
    # (1,000,000 rows, two shards: 7,227 rows/s in threads, 8,787 in the loop; 151 -> 123 µs of Python per row).
    pending = asyncio.ensure_future(read_next())
    batches = 0
    while True:
        batch, last, built = await pending
        if not batch:
            break
        pending = asyncio.ensure_future(read_next())  # read on while this one commits

        async def work(
            conn: Conn,
            batch: list[Prepared] = batch,
            last: int = last,
            base: provision.Checkpoint = checkpoint,
            built: Built | None = built,
        ) -> provision.Checkpoint:
            created, updated, unchanged = await importer.batch(conn, batch, built)
            moved = replace(
                base,
                last_line=last,
                created=base.created + created,
                updated=base.updated + updated,
                unchanged=base.unchanged + unchanged,
            )
            await provision.advance_import(conn, moved)
            return moved

        try:
            checkpoint = await runtime.db.interaction("registry_batch", work)
        except BaseException:
            await asyncio.gather(pending, return_exceptions=True)
            raise
        reader.eager = 2 * (checkpoint.created - counts.created) >= len(batch)
        if counts.notices is not None:
            n = counts.notices
            notified, emails, letters = importer.sent
            n.notified, n.emails, n.letters = n.notified + notified, n.emails + emails, n.letters + letters
        batches += 1
        if batches % _COLLECT_EVERY == 0:
            gc.collect()
        counts.created, counts.updated, counts.unchanged = (
            checkpoint.created, checkpoint.updated, checkpoint.unchanged,
        )  # fmt: skip
        if progress is not None:
            progress(counts)
    if importer.notify is not None and counts.notices is not None and last_step:
        # The rest, as `notices send` after the import: the deceased closed, then every space still
        # `registered` (minors whose representative came later in the file, people registered earlier).
        counts.notices.add(await issue.send(runtime, importer.notify, deliver_now=deliver))
    await runtime.db.interaction("registry_finish", provision.finish_import, checkpoint.import_id)
    if progress is not None:
        progress(counts)
    return counts
