"""Notices of a new space (PRODUCT section 2, docs/notices.md): each `registered` space gets an activation code
and a notice, by e-mail when the registry gave an address, else by letter; a minor's notice goes to the
representative(s), naming the child.

Exactly once, crash or not: a batch of spaces is notified in ONE transaction: their move to `notified` (the
row and trace the lifecycle's `notify` writes), their codes (only HMAC digests stored, as
activation.issue_in does), the notice rows (what each says, code included, sealed under the space's data key:
the e-mail's text is rendered from it at delivery) and the e-mails' delivery jobs (procrastinate, through
storage/jobs.defer): all or none.

Delivery (a worker's job per e-mail or per batch of e-mails, `espace-sante worker`; or inline, `notices send`):
- the embedded default (no SMTP relay): the e-mail is written to the `outbox` under the notice's id in the
  transaction that marks it delivered (and erases what it said): never twice, never lost;
- an SMTP relay: the notice's delivery lock is held by the delivering connection; `handed_at` is committed
  just before the "." that ends DATA, `delivered_at` when the relay says 250. An attempt that died before the
  "." left nothing at the relay: it is sent again. One that died after may have been accepted: it is never
  sent again automatically, but marked `uncertain_at` for an operator. So: never twice; never skipped
  without a trace (docs/notices.md, "Guarantees", measures the residual window);
- a letter waits for `letters build`, which prints it into a batch PDF and, in the transaction that marks it
  built, erases its code from the database (the code then exists only on paper).

No medical content is ever in a notice: only the dates, the code and how to oppose or activate."""

from __future__ import annotations

import asyncio
import csv
import hmac
import os
import re
import secrets
import smtplib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from espace_sante import clock
from espace_sante.access.actors import NOTICES, SYSTEM, Actor
from espace_sante.access.policy import Decision, decide
from espace_sante.audit.wording import MONTHS_FR
from espace_sante.context import Context
from espace_sante.crypto import DecryptionFailed, open_, seal
from espace_sante.errors import Conflict, NotFound
from espace_sante.fhir.compartment import random_id
from espace_sante.logs import get_logger
from espace_sante.mail import HandOff, Message, OutboxMailer, SmtpMailer, describe, mailer, stable_message_id
from espace_sante.people.passwords import peppers
from espace_sante.runtime import Runtime
from espace_sante.spaces import activation, identity, lifecycle
from espace_sante.storage import accounts as accounts_store
from espace_sante.storage import audit as audit_store
from espace_sante.storage import jobs as jobs_store
from espace_sante.storage import lifecycle as lifecycle_store
from espace_sante.storage import notices as store
from espace_sante.storage import people
from espace_sante.storage.audit import SUCCESS, Record
from espace_sante.storage.db import Conn

log = get_logger(__name__)

BATCH = 1000
#: Batches of `notices send` in flight at once (one process): the database works on one while Python
#: prepares the other.
LANES = 3
LETTERS_PER_FILE = 500
PHONE = "34 22"
_MONTHS_EN = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def day_fr(day: date) -> str:
    return f"{'1er' if day.day == 1 else day.day} {MONTHS_FR[day.month - 1]} {day.year}"


def day_en(day: date) -> str:
    return f"{day.day} {_MONTHS_EN[day.month - 1]} {day.year}"


# --- who the notice goes to ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """What a notice needs of a person, from their Patient (the registry's administrative data)."""

    name: str
    birth_date: str = ""
    email: str = ""
    address_line: str = ""
    postal_code: str = ""
    city: str = ""


def person_from(
    first_names: str,
    last_name: str,
    birth_date: str,
    email: str | None,
    line: str,
    postal_code: str,
    city: str,
) -> Person:
    """What `person_of` reads from the Patient the registry makes of these values, without making it."""
    return Person(
        name=f"{' '.join(first_names.split())} {last_name}".strip(),
        birth_date=birth_date,
        email=email or "",
        address_line=line,
        postal_code=postal_code,
        city=city,
    )


def person_of(body: dict[str, Any]) -> Person:
    name = identity.name_of(body)
    email = next((t.get("value", "") for t in body.get("telecom") or [] if t.get("system") == "email"), "")
    address = (body.get("address") or [{}])[0]
    return Person(
        name=name,
        birth_date=str(body.get("birthDate") or ""),
        email=str(email or ""),
        address_line=" ".join(address.get("line") or []),
        postal_code=str(address.get("postalCode") or ""),
        city=str(address.get("city") or ""),
    )


def _reading() -> Decision:
    """The notices' own decision to read identities (access/named.py: `notices` reads Patient)."""
    return decide(NOTICES, "read", "Patient")


async def _person(conn: Conn, rt: Runtime, space_id: uuid.UUID) -> Person | None:
    """The space's holder: from its Patient, or the registry's identity waiting for it (spaces/identity.py)."""
    found = await identity.body(conn, rt, space_id, decision=_reading())
    return None if found is None else person_of(found[1])


async def _representatives(
    conn: Conn, rt: Runtime, space_id: uuid.UUID
) -> tuple[list[str], dict[str, Person]]:
    """The INS of the space's representatives whose rights run, and those of them the registry knows."""
    rep_ins = await people.representatives_of(conn, _reading(), space_id)
    found = await identity.by_ins(conn, rt, rep_ins, decision=_reading())
    return rep_ins, {ins: person_of(body) for ins, body in found.items()}


# --- the words -------------------------------------------------------------------------------------------------

SUBJECT = "Mon espace santé : votre espace a été créé / your health space was created"
SUBJECT_CHILD = (
    "Mon espace santé : l'espace de votre enfant a été créé / your child's health space was created"
)


def paragraphs_fr(base_url: str, opens_on: date, code: str, child: str | None) -> list[str]:
    page = base_url.rstrip("/") + "/activation"
    whose = f"de l'espace de votre enfant {child}" if child else "de votre espace"
    born = "la date de naissance de votre enfant" if child else "votre date de naissance"
    return [
        (
            f"Un espace santé (Mon espace santé) a été créé pour votre enfant {child}."
            if child
            else "Votre espace santé (Mon espace santé) a été créé."
        ),
        f"Il sera ouvert le {day_fr(opens_on)}, sauf si vous vous y opposez d'ici là.",
        f"Code d'activation confidentiel : {code} (valable jusqu'au {day_fr(opens_on)}).",
        f"Pour vous opposer à la création {whose} : en ligne sur {page} avec ce code et {born} ; "
        f"par téléphone au {PHONE} ; ou à l'accueil de votre caisse d'assurance maladie.",
        f"Pour l'activer sans attendre : sur {page}, saisissez ce code et {born}, puis choisissez votre moyen "
        "de connexion.",
        "Ne communiquez jamais ce code : nos services ne vous le demanderont jamais.",
    ]


def paragraphs_en(base_url: str, opens_on: date, code: str, child: str | None) -> list[str]:
    page = base_url.rstrip("/") + "/activation"
    born = "your child's birth date" if child else "your birth date"
    return [
        (
            f"A health space (Mon espace santé) was created for your child {child}."
            if child
            else "Your health space (Mon espace santé) was created."
        ),
        f"It will open on {day_en(opens_on)}, unless you object before then.",
        f"Confidential activation code: {code} (valid until {day_en(opens_on)}).",
        f"To object: online at {page} with this code and {born}; by phone on {PHONE}; or at a counter of "
        "your health insurance office.",
        f"To activate it now: at {page}, type this code and {born}, then choose how you will sign in.",
        "Never share this code: we will never ask for it.",
    ]


def email_text(base_url: str, to_name: str, opens_on: date, code: str, child: str | None) -> str:
    fr = "\n\n".join(paragraphs_fr(base_url, opens_on, code, child))
    en = "\n\n".join(paragraphs_en(base_url, opens_on, code, child))
    return f"Bonjour {to_name},\n\n{fr}\n\nMon espace santé\n\n---\n\nHello {to_name},\n\n{en}\n"


# --- a minor comes of age: the young adult's own notice ---------------------------------------------------------

SUBJECT_OF_AGE = "Mon espace santé : vous avez 18 ans, votre espace santé est à vous / you are 18, your health space is yours"
#: How long the young adult's own code is valid (the notice may wait for a letter, then for the person).
OF_AGE_CODE_DAYS = 90
#: States in which a young adult's space can still be opposed (before it opens).
_OPPOSABLE = frozenset({"registered", "notified"})
#: States in which the space has nothing to give (no data, no key, or closed: its codes are discarded).
_NOTHING_TO_GIVE = frozenset({"opposed", "destroyed", "closed"})


@dataclass(frozen=True)
class OfAge:
    """What the young adult's notice says: the code, its validity, and whether opposing is still possible."""

    code: str
    valid_until: date
    opposable: bool
    opens_on: date | None = None


def of_age_paragraphs_fr(base_url: str, o: OfAge) -> list[str]:
    page = base_url.rstrip("/") + "/activation"
    if o.opposable:
        by = f" jusqu'au {day_fr(o.opens_on)}" if o.opens_on else " tant qu'il n'est pas ouvert"
        way_out = (
            f"Vous pouvez encore vous opposer à sa création{by} : en ligne sur {page} avec ce code et votre date "
            f"de naissance ; par téléphone au {PHONE} ; ou à l'accueil de votre caisse d'assurance maladie. Une "
            "fois ouvert, vous pourrez le fermer à tout moment."
        )
    else:
        way_out = (
            "Votre espace est ouvert : il n'est plus possible de s'opposer à sa création, mais vous pouvez le "
            f"fermer à tout moment, depuis votre espace, par téléphone au {PHONE} ou à l'accueil de votre caisse "
            "d'assurance maladie."
        )
    return [
        "Vous avez 18 ans : votre espace santé (Mon espace santé) est désormais le vôtre.",
        "Vos représentants légaux n'y ont plus accès.",
        f"Code d'activation confidentiel : {o.code} (valable jusqu'au {day_fr(o.valid_until)}).",
        f"Pour l'activer : sur {page}, saisissez ce code et votre date de naissance, puis choisissez votre moyen "
        "de connexion. Si votre espace est déjà activé, vous obtenez ainsi votre propre connexion ; les "
        "documents que vos représentants ne pouvaient pas voir restent tels qu'ils étaient.",
        way_out,
        "Ne communiquez jamais ce code : nos services ne vous le demanderont jamais.",
    ]


def of_age_paragraphs_en(base_url: str, o: OfAge) -> list[str]:
    page = base_url.rstrip("/") + "/activation"
    if o.opposable:
        by = f" until {day_en(o.opens_on)}" if o.opens_on else " until it opens"
        way_out = (
            f"You may still object to its creation{by}: online at {page} with this code and your birth date; by "
            f"phone on {PHONE}; or at a counter of your health insurance office. Once it is open, you may close "
            "it at any time."
        )
    else:
        way_out = (
            "Your space is open: it is no longer possible to object to its creation, but you may close it at "
            f"any time, from your space, by phone on {PHONE} or at a counter of your health insurance office."
        )
    return [
        "You are 18: your health space (Mon espace santé) is now yours.",
        "Your legal representatives no longer have access to it.",
        f"Confidential activation code: {o.code} (valid until {day_en(o.valid_until)}).",
        f"To activate it: at {page}, type this code and your birth date, then choose how you will sign in. If "
        "your space is already active, this gives you your own sign-in; the documents your representatives "
        "could not see stay as they were.",
        way_out,
        "Never share this code: we will never ask for it.",
    ]


def of_age_text(base_url: str, to_name: str, o: OfAge) -> str:
    fr = "\n\n".join(of_age_paragraphs_fr(base_url, o))
    en = "\n\n".join(of_age_paragraphs_en(base_url, o))
    return f"Bonjour {to_name},\n\n{fr}\n\nMon espace santé\n\n---\n\nHello {to_name},\n\n{en}\n"


def _of_age_letter(to: Person, o: OfAge) -> dict[str, Any]:
    words = {
        "kind": "of_age",
        "name": to.name,
        "child": "",
        "code": o.code,
        "valid_until": o.valid_until.isoformat(),
        "opposable": o.opposable,
        "opens_on": o.opens_on.isoformat() if o.opens_on else "",
    }
    if not to.email:
        words |= {"address_line": to.address_line, "postal_code": to.postal_code, "city": to.city}
    return words


def _of_age_notice(space_id: uuid.UUID, key: tuple[int, AESGCM], to: Person, o: OfAge) -> store.NewNotice:
    return _sealed_notice(space_id, key, to, SUBJECT_OF_AGE, _of_age_letter(to, o))


# --- sending ---------------------------------------------------------------------------------------------------

#: The delivery job of one e-mail notice (registered in jobs/queue.py; deferred here, in SQL, with the notice).
DELIVER_TASK = "notices.deliver"
#: The delivery job of the e-mails one transaction recorded (a batch of `notices send` or of the registry
#: import): one job row per batch instead of one per e-mail, a third of what a notified person cost the
#: database (benchmarks/README.md, "Provisioning"); each e-mail is still delivered on its own (deliver_one).
DELIVER_MANY_TASK = "notices.deliver_many"
QUEUE = "notices"


def delivery_job(space_id: uuid.UUID, notice_id: uuid.UUID) -> jobs_store.JobToDefer:
    """The job that delivers exactly this notice; its locks keep it to one waiting and one running job."""
    key = f"notice:{notice_id}"
    return jobs_store.JobToDefer(
        DELIVER_TASK,
        {"space_id": str(space_id), "notice_id": str(notice_id)},
        queue=QUEUE,
        lock=key,
        queueing_lock=key,
    )


@dataclass
class SendCounts:
    notified: int = 0
    emails: int = 0
    letters: int = 0
    delivered: int = 0
    failed: int = 0
    uncertain: int = 0
    skipped: list[str] = field(default_factory=list)

    def add(self, later: SendCounts) -> None:
        """Count a later step in: what it notified adds up; the delivery's outcome is the later step's."""
        self.notified += later.notified
        self.emails += later.emails
        self.letters += later.letters
        self.delivered, self.failed, self.uncertain, self.skipped = (
            later.delivered, later.failed, later.uncertain, later.skipped,
        )  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        return {
            "notified": self.notified,
            "emails": self.emails,
            "letters": self.letters,
            "delivered": self.delivered,
            "failed": self.failed,
            "uncertain": self.uncertain,
        }


#: Random bytes to code symbols: the 240 lowest values map 8 each to the 30 symbols (uniform); the 16 highest
#: are dropped (rejection sampling), as `secrets.choice` does one symbol at a time.
_SYMBOLS = bytes(ord(activation.ALPHABET[b % len(activation.ALPHABET)]) for b in range(256))
_DROPPED = bytes(range(256 - 256 % len(activation.ALPHABET), 256))


def new_codes(n: int) -> list[str]:
    """`n` codes as activation.new_code draws them (14 symbols, uniform over the alphabet, from `secrets`), in
    one pass over random bytes rather than one call per symbol."""
    return [activation.grouped(raw) for raw in _raw_codes(n)]


def _raw_codes(n: int) -> list[str]:
    """`n` codes' symbols, ungrouped: what activation.normalise makes of them, so that they are hashed as is."""
    need = n * activation.LENGTH
    pool = b""
    while len(pool) < need:
        pool += secrets.token_bytes(need - len(pool) + 32).translate(_SYMBOLS, _DROPPED)
    text = pool[:need].decode("ascii")
    step = activation.LENGTH
    return [text[i : i + step] for i in range(0, need, step)]


def valid_until(opens_on: date) -> datetime:
    """The code works until the space opens (the end of the opposition window)."""
    return datetime.combine(opens_on, time.min, tzinfo=UTC)


def _notice_aad(space_id: uuid.UUID, notice_id: uuid.UUID, key_version: int) -> bytes:
    return f"notice/{space_id}/{notice_id}/k{key_version}".encode()


def seal_notice(
    aead: AESGCM, key_version: int, space_id: uuid.UUID, notice_id: uuid.UUID, words: dict[str, Any]
) -> bytes:
    """What a notice says (name, address for a letter, dates, code) under the space's data key: a copy of
    the database shows none of it, and destroying the space's key (opposition, destruction) makes it
    unreadable."""
    return seal(aead, orjson.dumps(words), _notice_aad(space_id, notice_id, key_version))


def open_notice(
    aead: AESGCM, key_version: int, space_id: uuid.UUID, notice_id: uuid.UUID, sealed: bytes
) -> dict[str, Any]:
    words: dict[str, Any] = orjson.loads(open_(aead, sealed, _notice_aad(space_id, notice_id, key_version)))
    return words


def _letter(to: Person, opens_on: date, code: str, child: str | None) -> dict[str, Any]:
    """What a new space's notice says; a letter also carries the postal address, an e-mail does not."""
    words = {"name": to.name, "child": child or "", "opens_on": opens_on.isoformat(), "code": code}
    if not to.email:
        words |= {"address_line": to.address_line, "postal_code": to.postal_code, "city": to.city}
    return words


def _recipients(holder: Person, reps: list[Person], has_reps: bool) -> list[tuple[Person, str | None]]:
    """Who gets the notice, and the child it names (None for the holder's own)."""
    if has_reps and not reps:
        # A minor whose representatives the registry does not reach: a letter to the child's address,
        # addressed to the child's legal representatives.
        to = Person(
            name=f"Aux représentants légaux de {holder.name}",
            address_line=holder.address_line,
            postal_code=holder.postal_code,
            city=holder.city,
        )
        return [(to, holder.name)]
    if reps:
        return [(r, holder.name) for r in reps]
    return [(holder, None)]


def _sealed_notice(
    space_id: uuid.UUID, key: tuple[int, AESGCM], to: Person, subject: str, words: dict[str, Any]
) -> store.NewNotice:
    """An e-mail to `to.email`, else a letter to their address: either way what it says sealed under `key`
    (the e-mail's text is rendered from it at delivery: no code in clear in the database)."""
    notice_id = random_id()
    version, aead = key
    sealed = seal_notice(aead, version, space_id, notice_id, words)
    if to.email:
        return store.NewNotice(space_id, notice_id, "email", to.email, subject, version, sealed)
    return store.NewNotice(space_id, notice_id, "letter", key_version=version, sealed=sealed)


def _notice(
    space_id: uuid.UUID, key: tuple[int, AESGCM], to: Person, opens_on: date, code: str, child: str | None
) -> store.NewNotice:
    subject = SUBJECT_CHILD if child else SUBJECT
    return _sealed_notice(space_id, key, to, subject, _letter(to, opens_on, code, child))


def email_text_of(base_url: str, words: dict[str, Any]) -> str:
    """The text of an e-mail notice, from what it says (as sealed by _sealed_notice)."""
    if words.get("kind") == "of_age":
        return of_age_text(base_url, words["name"], _of_age_of(words))
    opens_on = date.fromisoformat(words["opens_on"])
    return email_text(base_url, words["name"], opens_on, words["code"], words["child"] or None)


def _of_age_of(words: dict[str, Any]) -> OfAge:
    opens_on = words.get("opens_on")
    return OfAge(
        words["code"],
        date.fromisoformat(words["valid_until"]),
        bool(words["opposable"]),
        date.fromisoformat(opens_on) if opens_on else None,
    )


def delivery_batch_job(emails: list[tuple[uuid.UUID, uuid.UUID]]) -> jobs_store.JobToDefer:
    """The job that delivers these e-mail notices, (space, notice) each, one after the other."""
    return jobs_store.JobToDefer(
        DELIVER_MANY_TASK, {"emails": [[str(s), str(n)] for s, n in emails]}, queue=QUEUE
    )


async def _record(conn: Conn, rt: Runtime, notices: list[store.NewNotice]) -> None:
    """The notices and, in the same transaction, their delivery jobs: one for a single e-mail, else one per
    `notice_emails_per_job` e-mails (a killed worker's job waits for jobs.recover: the fewer e-mails a job
    holds, the fewer wait; the more, the fewer job rows a batch writes)."""
    await store.add_many(conn, notices)
    emails = [(n.space_id, n.notice_id) for n in notices if n.channel == "email"]
    if len(emails) == 1:
        await jobs_store.defer(conn, [delivery_job(*emails[0])])
    elif emails:
        size = rt.settings.notice_emails_per_job
        await jobs_store.defer(
            conn, [delivery_batch_job(emails[i : i + size]) for i in range(0, len(emails), size)]
        )


async def notify_in(conn: Conn, ctx: Context, space_id: uuid.UUID, on: date) -> list[str]:
    """One person, in the caller's transaction: to `notified` (Conflict if no longer `registered`), a code,
    the notice(s) recorded with their delivery jobs. Returns the channels of the notices queued."""
    rt = ctx.runtime
    await lifecycle.notify_in(conn, ctx, space_id, on)
    opens_on = on + timedelta(days=rt.settings.opposition_window_days)
    code = await activation.issue_in(conn, ctx, space_id, valid_until=valid_until(opens_on))
    holder = await _person(conn, rt, space_id)
    if holder is None:
        raise NotFound("Patient introuvable / no Patient in the space")
    rep_ins, known = await _representatives(conn, rt, space_id)
    representatives = [
        rep for ins in rep_ins if (rep := known.get(ins)) is not None and (rep.email or rep.address_line)
    ]
    key = await rt.keys.current(conn, space_id)
    notices = [
        _notice(space_id, key, to, opens_on, code, child)
        for to, child in _recipients(holder, representatives, bool(rep_ins))
    ]
    await _record(conn, rt, notices)
    return [n.channel for n in notices]


async def ask_again(ctx: Context, space_id: uuid.UUID, on: date | None = None) -> list[str]:
    """An opposed person asks for a space after all, online (PRODUCT §2: "they may later ask for a space"):
    back to `registered` (the lifecycle's `request`, checked and traced as theirs) and, in the same
    transaction, notified as `notices send` would do it (by the service: a new code, the notice and its
    delivery job), so that the notice does not wait for the next run. Returns the channels of the notices
    queued."""
    rt = ctx.runtime
    service = Context(rt, NOTICES, request_id=ctx.request_id)

    async def work(conn: Conn) -> list[str]:
        await lifecycle.request_in(conn, ctx, space_id)
        return await notify_in(conn, service, space_id, on or clock.today())

    return await rt.db.interaction("notices_ask_again", work)


async def of_age_in(conn: Conn, ctx: Context, space_id: uuid.UUID, on: date) -> list[str]:
    """A minor came of age (the representatives' rights ended): in the caller's transaction, a fresh activation
    code for the space (activation.issue_in, valid OF_AGE_CODE_DAYS from `on`: it replaces the code the
    representatives received, which stops working), the representatives' notices still waiting withdrawn
    (they carry that dead code), and the young adult's own notice, to their e-mail or else by letter to their
    address, recorded with its delivery job. The space's state does not change. Returns the channels queued:
    none for a space with nothing to give (opposed, destroyed, or closed: its codes are discarded and it
    reopens only on request). NotFound when the space has no readable Patient."""
    rt = ctx.runtime
    row = await lifecycle_store.row_of(conn, space_id)
    if row is None or row.state == "destroyed":
        raise NotFound("Espace introuvable / space not found")
    if row.state in _NOTHING_TO_GIVE:
        return []
    holder = await _person(conn, rt, space_id)
    if holder is None:
        raise NotFound("Patient introuvable / no Patient in the space")
    until = on + timedelta(days=OF_AGE_CODE_DAYS)
    code = await activation.issue_in(conn, ctx, space_id, valid_until=valid_until(until))
    await store.withdraw_pending(conn, space_id)
    opposable = row.state in _OPPOSABLE
    o = OfAge(code, until, opposable, row.opens_on if opposable else None)
    notice = _of_age_notice(space_id, await rt.keys.current(conn, space_id), holder, o)
    await _record(conn, rt, [notice])
    return [notice.channel]


@dataclass
class _Batch:
    seen: int = 0
    last: uuid.UUID | None = None
    notified: int = 0
    emails: int = 0
    letters: int = 0
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Addressee:
    """Who one space's notice goes to: its holder and, for a minor (a space with representatives whose rights
    run), the representatives found in the registry (reachable or not: `recipients` keeps those with an e-mail
    or an address). `notices send` reads them from their Patients or sealed identities (spaces/identity.py);
    the registry import (`registry import --notify`) has them from the rows it is writing."""

    space_id: uuid.UUID
    holder: Person
    representatives: tuple[Person, ...] = ()
    minor: bool = False

    def recipients(self) -> list[tuple[Person, str | None]]:
        reps = [r for r in self.representatives if r.email or r.address_line]
        return _recipients(self.holder, reps, self.minor)


@dataclass(frozen=True)
class Codes:
    """A batch's activation codes, drawn here, with the keyed digests that alone are stored
    (activation.issue_in's rules, for a batch)."""

    opens_on: date
    until: datetime
    pepper_id: str
    codes: dict[uuid.UUID, str]
    digests: dict[uuid.UUID, bytes]


def draw_codes(rt: Runtime, spaces: list[uuid.UUID], on: date) -> Codes:
    """One code per space, valid until the space opens (`on` + the opposition window). CPU only."""
    p = peppers(rt.settings)
    opens_on = on + timedelta(days=rt.settings.opposition_window_days)
    raw = dict(zip(spaces, _raw_codes(len(spaces)), strict=True))
    key = p.subkey("activation")
    digests = {s: hmac.digest(key, b"activation " + c.encode(), "sha256") for s, c in raw.items()}
    codes = {s: activation.grouped(c) for s, c in raw.items()}
    return Codes(opens_on, valid_until(opens_on), p.current_id, codes, digests)


def notify_trace(ctx: Context, codes: Codes, replaced: bool = False) -> tuple[Record, Record]:
    """The two records a notified space's chain gets: the lifecycle's `notify` and the code's issue."""
    actor = ctx.actor
    return (
        lifecycle._record(actor, "notify", "registered", "notified", "", ctx.request_id),
        Record(
            action="activation:issue",
            outcome=SUCCESS,
            actor_kind=actor.kind,
            actor_id=actor.id,
            actor_display=actor.display,
            basis="reissue" if replaced else "",
            detail=f"until={codes.until.date().isoformat()}",
            request_id=ctx.request_id,
        ),
    )


def notices_of(a: Addressee, key: tuple[int, AESGCM], codes: Codes) -> list[store.NewNotice]:
    """The notice rows of one space (one per recipient, e-mail or letter, sealed under `key`). CPU only."""
    code = codes.codes[a.space_id]
    return [_notice(a.space_id, key, to, codes.opens_on, code, child) for to, child in a.recipients()]


async def record(conn: Conn, rt: Runtime, notices: list[store.NewNotice]) -> None:
    """The notices and, in the caller's transaction, their delivery jobs."""
    await _record(conn, rt, notices)


async def people_by_ins(conn: Conn, rt: Runtime, nirs: list[str]) -> dict[str, Person]:
    """The registry data of the people these INS name (their Patients or waiting identities, in bulk)."""
    return {
        ins: person_of(body)
        for ins, body in (await identity.by_ins(conn, rt, nirs, decision=_reading())).items()
    }


async def _notify_batch(conn: Conn, ctx: Context, on: date, after: uuid.UUID | None, limit: int) -> _Batch:
    """Up to `limit` registered spaces after `after`, in the caller's transaction, set-based: a handful of
    statements for the whole batch whatever its size (the per-person path, notify_in, takes about 20)."""
    rt = ctx.runtime
    result = _Batch()
    spaces = await store.lock_registered(conn, after, limit)
    result.seen, result.last = len(spaces), (spaces[-1] if spaces else None)
    if not spaces:
        return result
    holders = await identity.bodies(conn, rt, spaces, decision=_reading())
    reps_ins = await store.representatives(conn, _reading(), spaces)
    reps = await people_by_ins(conn, rt, [ins for found in reps_ins.values() for ins in found])
    # The newest data key of each space written (its notices are sealed with it), in one query.
    newest = await identity.newest_keys(conn, rt, spaces)

    ready: list[tuple[Addressee, tuple[int, AESGCM]]] = []
    for space_id in spaces:
        if space_id not in holders or space_id not in newest:
            result.skipped.append(f"{space_id}: Patient introuvable / no Patient in the space")
            continue
        holder = person_of(holders[space_id][1])
        theirs = tuple(reps[ins] for ins in reps_ins.get(space_id, []) if ins in reps)
        minor = bool(reps_ins.get(space_id))
        ready.append((Addressee(space_id, holder, theirs, minor), newest[space_id]))
    done = await notify_addressed(conn, ctx, on, ready)
    result.notified, result.emails, result.letters = done.notified, done.emails, done.letters
    return result


async def notify_addressed(
    conn: Conn, ctx: Context, on: date, ready: list[tuple[Addressee, tuple[int, AESGCM]]]
) -> _Batch:
    """Notify these `registered` spaces (locked by the caller, or created in its transaction) in the caller's
    transaction, their addressees given: to `notified` (the row and trace the lifecycle's `notify` writes), a
    code each (only its digest stored), the notices and their delivery jobs. A space no longer `registered` is
    left alone."""
    rt = ctx.runtime
    result = _Batch()
    opens_on = on + timedelta(days=rt.settings.opposition_window_days)
    moved = set(await store.notify_many(conn, [a.space_id for a, _ in ready], opens_on))
    ready = [(a, k) for a, k in ready if a.space_id in moved]
    if not ready:
        return result
    codes = draw_codes(rt, [a.space_id for a, _ in ready], on)
    replaced = await store.replace_codes(
        conn, [(a.space_id, codes.digests[a.space_id]) for a, _ in ready], codes.pepper_id, codes.until
    )
    records: list[tuple[uuid.UUID, Record]] = []
    for a, _ in ready:
        records += [(a.space_id, r) for r in notify_trace(ctx, codes, bool(replaced.get(a.space_id)))]
    await audit_store.append_batch(conn, records)
    notices: list[store.NewNotice] = []
    for a, key in ready:
        notices += notices_of(a, key, codes)
    await _record(conn, rt, notices)
    result.notified = len(ready)
    result.emails = sum(1 for n in notices if n.channel == "email")
    result.letters = len(notices) - result.emails
    return result


async def send(
    rt: Runtime,
    as_of: date | None = None,
    *,
    batch: int = BATCH,
    deliver_now: bool = True,
    lanes: int = LANES,
) -> SendCounts:
    """Notify every `registered` space, `batch` spaces per transaction (each with its codes, trace, notices
    and delivery jobs), then, with `deliver_now`, deliver the e-mails waiting (else the worker's jobs do).
    `lanes` transactions run at once (SKIP LOCKED: never the same space twice), so that the database works
    on one batch while this process prepares the next."""
    # A death date in the registry closes the space (lifecycle run's step, done here first): no notice, no
    # code for a person who died.
    await lifecycle.close_deceased(rt, as_of)
    counts = await notify_registered(rt, as_of, batch=batch, lanes=lanes)
    if deliver_now:
        result = await deliver(rt, batch=batch)
        counts.delivered, counts.failed, counts.uncertain = result.delivered, result.failed, result.uncertain
    return counts


async def notify_registered(
    rt: Runtime, as_of: date | None = None, *, batch: int = BATCH, lanes: int = LANES
) -> SendCounts:
    """`send`'s notifying step alone, the deceased already closed: every `registered` space notified, `batch`
    per transaction. Several processes may run it at once on one database (`registry import --jobs`: one per
    shard once all are imported): each lane locks its batch with SKIP LOCKED, so none notifies a space twice
    and, when they all end, none is left."""
    on = as_of or clock.today()
    ctx = Context(rt, NOTICES)
    counts = SendCounts()

    async def lane() -> None:
        after: uuid.UUID | None = None
        while True:
            done = await rt.db.interaction("notices_notify", _notify_batch, ctx, on, after, batch)
            counts.notified += done.notified
            counts.emails += done.emails
            counts.letters += done.letters
            counts.skipped += [s for s in done.skipped if s not in counts.skipped]
            if done.seen < batch:
                return
            after = done.last

    await asyncio.gather(*(lane() for _ in range(max(1, lanes))))
    return counts


# --- delivering ------------------------------------------------------------------------------------------------


class DeliveryDeferred(Exception):
    """The relay did not take the message now (down, or refused it): not accepted, tried again later (the
    job's retries with backoff, then the periodic sweep). Its text is the error's type (with what a failed TLS
    check found: mail.describe), never an address."""


@dataclass
class Delivered:
    delivered: int = 0
    failed: int = 0
    uncertain: int = 0


def _text(rt: Runtime, n: store.EmailNotice, aead: AESGCM | None) -> str | None:
    """The text of this e-mail, rendered from its sealed words with the space's data key `aead` (None when
    they cannot be opened: the key is gone), or as recorded before migration 0019."""
    if n.sealed is None or n.key_version is None:
        return n.body
    if aead is None:
        return None
    try:
        words = open_notice(aead, n.key_version, n.space_id, n.notice_id, n.sealed)
    except DecryptionFailed:
        return None
    return email_text_of(rt.settings.base_url, words)


async def _key(conn: Conn, rt: Runtime, n: store.EmailNotice) -> AESGCM | None:
    if n.key_version is None:
        return None
    try:
        return await rt.keys.version(conn, n.space_id, n.key_version)
    except DecryptionFailed:
        return None


async def _unreadable(conn: Conn, n: store.EmailNotice) -> str:
    await store.mark_unreadable(conn, n.space_id, n.notice_id)
    log.warning("notice.unreadable", notice=str(n.notice_id))
    return "unreadable"


async def _keep_in_outbox(conn: Conn, rt: Runtime, space_id: uuid.UUID, notice_id: uuid.UUID) -> str:
    n = await store.email_to_keep(conn, _reading(), space_id, notice_id)
    if n is None:
        return "already"
    text = _text(rt, n, await _key(conn, rt, n))
    if text is None:
        return await _unreadable(conn, n)
    await accounts_store.add_outbox(conn, n.notice_id, recipient=n.recipient, subject=n.subject, body=text)
    await store.mark_delivered(conn, n.space_id, n.notice_id)
    return "delivered"


async def _keep_due_in_outbox(conn: Conn, rt: Runtime, limit: int) -> int:
    """The outbox path for up to `limit` e-mails waiting (locked, SKIP LOCKED: another sender takes others):
    their texts rendered, kept in the outbox under their notices' ids and marked delivered, in this one
    transaction, a few statements for the batch. Returns how many were taken (kept, or withdrawn as
    unreadable)."""
    due = await store.due_emails(conn, _reading(), limit)
    keys = await identity.keys_of(conn, rt, {n.space_id for n in due})
    kept: list[tuple[uuid.UUID, str, str, str]] = []
    for n in due:
        text = _text(rt, n, keys.get((n.space_id, n.key_version or 0)))
        if text is None:
            await _unreadable(conn, n)
        else:
            kept.append((n.notice_id, n.recipient, n.subject, text))
    await accounts_store.add_outbox_many(conn, kept)
    delivered = {k[0] for k in kept}
    await store.mark_delivered_many(
        conn, [(n.space_id, n.notice_id) for n in due if n.notice_id in delivered]
    )
    return len(due)


async def deliver_these(rt: Runtime, emails: list[tuple[uuid.UUID, uuid.UUID]]) -> dict[str, int]:
    """Deliver these e-mail notices one by one (deliver_one each: never twice, whatever happened before);
    returns how many ended how. One the relay cannot take now does not stop the others: once all were tried,
    DeliveryDeferred is raised so that the job is tried again later, which skips those delivered since."""
    outcomes: dict[str, int] = {}
    deferred: DeliveryDeferred | None = None
    for space_id, notice_id in emails:
        try:
            outcome = await deliver_one(rt, space_id, notice_id)
        except DeliveryDeferred as exc:
            deferred, outcome = exc, "deferred"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    if deferred is not None:
        raise DeliveryDeferred(f"{outcomes.get('deferred', 0)} deferred: {deferred}")
    return outcomes


async def deliver_one(rt: Runtime, space_id: uuid.UUID, notice_id: uuid.UUID) -> str:
    """Deliver exactly this e-mail notice: "delivered", "already" (delivered or uncertain before),
    "busy" (another live process is delivering it) or "uncertain" (a dead attempt had handed it to the relay:
    not sent again). Raises DeliveryDeferred when the relay cannot take it now."""
    sender = mailer(rt)
    if isinstance(sender, OutboxMailer):
        return await rt.db.interaction("notice_outbox", _keep_in_outbox, rt, space_id, notice_id)
    assert isinstance(sender, SmtpMailer)
    async with store.delivery_session(rt.db, notice_id) as conn:
        if conn is None:
            return "busy"
        async with conn.transaction():
            claim = await store.claim_email(conn, _reading(), space_id, notice_id)
            if claim is not None and claim.handed:
                await store.mark_uncertain(
                    conn, space_id, notice_id, "uncertain: handed to the relay, answer not recorded"
                )
            text = None if claim is None else _text(rt, claim.email, await _key(conn, rt, claim.email))
            if claim is not None and not claim.handed and text is None:
                return await _unreadable(conn, claim.email)
        if claim is None:
            return "already"
        if claim.handed:
            log.warning("notice.uncertain", notice=str(notice_id), attempts=claim.attempts)
            return "uncertain"
        assert text is not None
        message = Message(claim.email.recipient, claim.email.subject, text)
        handoff = HandOff(sender, message, stable_message_id(notice_id, sender.domain))
        try:
            await asyncio.to_thread(handoff.stage)
        except (OSError, smtplib.SMTPException) as exc:  # nothing accepted: the relay saw no final "."
            # A relay that failed the TLS check lands here too (ssl.SSLError is an OSError): the message was
            # never sent, so it waits for the next attempt with the check's reason as its error.
            why = describe(exc)
            async with conn.transaction():
                await store.mark_failed(conn, space_id, notice_id, why)
            raise DeliveryDeferred(why) from exc
        try:
            async with conn.transaction():
                await store.mark_handed(conn, space_id, notice_id)
        except BaseException:
            handoff.abort()
            raise
        # From here the relay may accept the message. The "." goes at once (three bytes, no thread hop) to keep
        # short the window where a crash loses it (after the commit of handed_at, before the "." leaves): such
        # a notice is marked uncertain by the next attempt, never silently dropped.
        try:
            handoff.hand()
        except OSError as exc:  # the relay had gone: the "." did not reach it, nothing accepted
            handoff.abort()
            async with conn.transaction():
                await store.unhand(conn, space_id, notice_id, type(exc).__name__)
            raise DeliveryDeferred(type(exc).__name__) from exc
        try:
            await asyncio.to_thread(handoff.answer)
        except smtplib.SMTPResponseException as exc:  # a refusal, with its code: not accepted
            handoff.abort()
            async with conn.transaction():
                await store.unhand(conn, space_id, notice_id, f"{type(exc).__name__} {exc.smtp_code}")
            raise DeliveryDeferred(type(exc).__name__) from exc
        except (OSError, smtplib.SMTPException) as exc:  # the answer is lost: maybe accepted, never resent
            handoff.abort()
            async with conn.transaction():
                await store.mark_uncertain(conn, space_id, notice_id, f"uncertain: {type(exc).__name__}")
            log.warning("notice.uncertain", notice=str(notice_id), error=type(exc).__name__)
            return "uncertain"
        async with conn.transaction():
            await store.mark_delivered(conn, space_id, notice_id)
        return "delivered"


async def deliver(rt: Runtime, *, batch: int = BATCH, min_age_seconds: float = 0) -> Delivered:
    """Deliver the recorded e-mails not yet delivered (also those a crash or a failed job left): the inline
    path of `notices send` and the worker's periodic sweep, which leaves the notices younger than
    `min_age_seconds` to their own jobs. Stops at the first relay failure (the next run, or the job's
    retries, try again)."""
    sender = mailer(rt)
    result = Delivered()
    if isinstance(sender, OutboxMailer) and not min_age_seconds:
        while True:
            # The outbox is in this database: written under the notices' ids with their marks, at once.
            done = await rt.db.interaction("notices_deliver", _keep_due_in_outbox, rt, batch)
            result.delivered += done
            if done < batch:
                return result
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        due = await rt.db.read("notices_due", store.due_email_keys, batch, after, min_age_seconds)
        for space_id, notice_id, _ in due:
            try:
                outcome = await deliver_one(rt, space_id, notice_id)
            except DeliveryDeferred as exc:
                log.warning("notice.mail_failed", error=str(exc))
                result.failed += 1
                return result
            result.delivered += outcome == "delivered"
            result.uncertain += outcome == "uncertain"
        if len(due) < batch:
            return result
        after = (due[-1][2], due[-1][1])


async def letters_of(rt: Runtime, space_id: uuid.UUID) -> list[dict[str, Any]]:
    """A space's letters as stored, opened (operators, tests): their data, without the code once built."""

    async def q(conn: Conn) -> list[dict[str, Any]]:
        out = []
        for n in await store.letters(conn, _reading(), space_id):
            out.append(await _open(conn, rt, n))
        return out

    return await rt.db.read("notice_letters", q)


async def emails_of(rt: Runtime, space_id: uuid.UUID) -> list[tuple[str, str, str | None]]:
    """A space's e-mails still waiting, as they will be sent (operators, tests): (recipient, subject, text;
    None when it cannot be rendered any more)."""

    async def q(conn: Conn) -> list[tuple[str, str, str | None]]:
        waiting = await store.waiting_emails(conn, _reading(), space_id)
        keys = await identity.keys_of(conn, rt, [space_id])
        return [
            (n.recipient, n.subject, _text(rt, n, keys.get((space_id, n.key_version or 0)))) for n in waiting
        ]

    return await rt.db.read("notice_emails", q)


async def _open(conn: Conn, rt: Runtime, n: store.LetterNotice) -> dict[str, Any]:
    if n.sealed is None or n.key_version is None:
        return dict(n.letter or {})
    aead = await rt.keys.version(conn, n.space_id, n.key_version)
    return open_notice(aead, n.key_version, n.space_id, n.notice_id, n.sealed)


# --- uncertain e-mails: an operator's way out ----------------------------------------------------------------

Resolution = Literal["delivered", "resend", "letter"]
_CODE_IN_TEXT = re.compile(r"\b([%s]{4}-[%s]{4}-[%s]{4}-[%s]{2})\b" % ((activation.ALPHABET,) * 4))


def masked(address: str) -> str:
    """`j***@example.fr`: enough for an operator to match the relay's logs, not a list of addresses."""
    local, at, domain = address.partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


@dataclass(frozen=True)
class UncertainNotice:
    notice_id: uuid.UUID
    space_id: uuid.UUID
    recipient: str
    since: datetime
    attempts: int

    def as_json(self) -> dict[str, Any]:
        return {
            "notice": str(self.notice_id),
            "space": str(self.space_id),
            "to": self.recipient,
            "since": self.since.isoformat(),
            "attempts": self.attempts,
        }


async def uncertain(rt: Runtime, *, limit: int = 1000) -> list[UncertainNotice]:
    """E-mails handed to the relay whose answer was lost (a worker died, the connection dropped), waiting for
    an operator: their recipient masked."""
    found = await rt.db.read("notices_uncertain", store.uncertain, _reading(), limit)
    return [UncertainNotice(u.notice_id, u.space_id, masked(u.recipient), u.since, u.attempts) for u in found]


def _operator(rt: Runtime, login: str | None) -> Context:
    if login:
        return Context(rt, Actor("operator", login, display=login))
    return Context.system(rt)


async def _letter_instead(conn: Conn, rt: Runtime, held: store.Held) -> store.NewNotice:
    """The letter that stands in for an uncertain e-mail: the same code (still the space's live one: other
    notices, a minor's other representative, may carry it too), to the same person's postal address."""
    email = held.email
    space_id = email.space_id
    text = _text(rt, email, await _key(conn, rt, email))
    found = None if text is None else _CODE_IN_TEXT.search(text)
    if found is None:
        raise Conflict("le texte du courriel n'est plus disponible / the e-mail's text is gone")
    code = found.group(1)
    p = peppers(rt.settings)
    typed = activation.normalise(code)
    if not await store.code_is_live(conn, space_id, [activation.digest(p, typed, k) for k in p.keys]):
        raise Conflict(
            "le code de ce courriel ne fonctionne plus : émettez un nouveau code / the code of this e-mail no "
            "longer works: issue a new one"
        )
    row = await lifecycle_store.row_of(conn, space_id)
    holder = await _person(conn, rt, space_id)
    if row is None or holder is None:
        raise NotFound("Patient introuvable / no Patient in the space")
    to: Person | None = holder if holder.email == email.recipient else None
    child: str | None = None
    if email.subject == SUBJECT_CHILD:
        to, child = None, holder.name
        rep_ins, known = await _representatives(conn, rt, space_id)
        to = next((rep for ins in rep_ins if (rep := known.get(ins)) and rep.email == email.recipient), None)
    if to is None or not to.address_line:
        raise Conflict("pas d'adresse postale pour ce destinataire / no postal address for this recipient")
    to = Person(to.name, to.birth_date, "", to.address_line, to.postal_code, to.city)  # a letter, not a mail
    key = await rt.keys.current(conn, space_id)
    if email.subject == SUBJECT_OF_AGE:
        expires = await store.code_expiry(conn, space_id)
        assert expires is not None  # the code is live
        opposable = row.state in _OPPOSABLE
        o = OfAge(code, expires.astimezone(UTC).date(), opposable, row.opens_on if opposable else None)
        return _of_age_notice(space_id, key, to, o)
    opens_on = row.opens_on or (await store.code_expiry(conn, space_id) or datetime.now(UTC)).date()
    return _notice(space_id, key, to, opens_on, code, child)


async def resolve(
    rt: Runtime, notice_id: uuid.UUID, how: Resolution, *, operator: str | None = None
) -> dict[str, Any]:
    """An operator's decision on an uncertain e-mail, after checking the relay's logs, in one transaction with
    its `notice:resolve` record in the space's chain:
    - `delivered`: the relay's logs show it accepted the message; marked delivered (what it said erased);
    - `resend`: the logs show it was not accepted; sent once more, on purpose (a new delivery job);
    - `letter`: a letter to the person's postal address, with the same code, instead (the e-mail withdrawn).
    NotFound when the notice is not an uncertain, unresolved e-mail; Conflict when a letter cannot be made."""
    ctx = _operator(rt, operator)
    actor = ctx.actor

    async def work(conn: Conn) -> dict[str, Any]:
        held = await store.lock_uncertain(conn, _reading(), notice_id)
        if held is None:
            raise NotFound("aucun courriel incertain avec cet identifiant / no uncertain e-mail with this id")
        space_id = held.email.space_id
        result: dict[str, Any] = {"notice": str(notice_id), "space": str(space_id), "resolution": how}
        letter = await _letter_instead(conn, rt, held) if how == "letter" else None
        await store.resolve(conn, space_id, notice_id, how, actor.id)
        job = delivery_job(space_id, notice_id)
        if how == "resend" and not await store.job_waiting(conn, job.queueing_lock or ""):
            await jobs_store.defer(conn, [job])  # else the job already waiting delivers it
        if letter is not None:
            await store.add_many(conn, [letter])
            await store.mark_replaces(conn, space_id, letter.notice_id, notice_id)
            result["letter"] = str(letter.notice_id)
        await audit_store.append(
            conn,
            space_id,
            Record(
                action="notice:resolve",
                outcome=SUCCESS,
                actor_kind=actor.kind,
                actor_id=actor.id,
                actor_display=actor.display,
                basis=how,
                detail=f"notice={notice_id}",
                request_id=ctx.request_id,
            ),
        )
        return result

    done = await rt.db.interaction("notice_resolve", work)
    log.info("notice.resolved", notice=str(notice_id), resolution=how, operator=actor.id)
    return done


# --- letters ---------------------------------------------------------------------------------------------------

MANIFEST = ("file", "page", "name", "address", "postal_code", "city")


@dataclass
class Built:
    files: list[str] = field(default_factory=list)
    letters: int = 0
    manifest: str | None = None
    #: The run's id, in its file names: what `letters handed` names once the files went to the mailing house.
    batch: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"files": self.files, "letters": self.letters, "manifest": self.manifest, "batch": self.batch}


def _write_batch(
    out: Path, manifest: Path, pdf_name: str, letters: list[dict[str, Any]], base_url: str
) -> int:
    """The PDF (renamed into place once whole) and its manifest rows; returns the manifest's size before."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / pdf_name
    partial = target.with_suffix(".pdf.part")
    render(partial, letters, base_url)
    size = manifest.stat().st_size if manifest.exists() else 0
    with manifest.open("a", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        if size == 0:
            writer.writerow(MANIFEST)
        for page, a in enumerate(letters, start=1):
            writer.writerow([pdf_name, page, a["name"], a["address_line"], a["postal_code"], a["city"]])
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(partial, target)
    return size


def _undo_batch(out: Path, manifest: Path, pdf_name: str, size: int) -> None:
    (out / pdf_name).unlink(missing_ok=True)
    (out / pdf_name).with_suffix(".pdf.part").unlink(missing_ok=True)
    if manifest.exists():
        with manifest.open("r+b") as fh:
            fh.truncate(size)
        if size == 0:
            manifest.unlink()


async def build_letters(rt: Runtime, out: Path, *, per_file: int = LETTERS_PER_FILE) -> Built:
    """Print the queued letters into batch PDFs in `out` (one A4 page each) with one CSV manifest for the
    run. Each PDF, and its manifest rows, is written inside the transaction that marks its letters built and
    erases their codes: a failure before commit removes them, so a letter is built once."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    manifest = out / f"manifest-{stamp}.csv"
    folder = str(await asyncio.to_thread(out.resolve))
    result = Built()
    number = 0
    while True:
        number += 1
        name = f"lettres-{stamp}-{number:03d}.pdf"

        async def step(conn: Conn, pdf_name: str) -> int:
            letters = await store.due_letters(conn, _reading(), per_file)
            if not letters:
                return 0
            data = [await _open(conn, rt, n) for n in letters]
            built: list[tuple[uuid.UUID, uuid.UUID, str, int, bytes | None]] = []
            for page, (n, letter) in enumerate(zip(letters, data, strict=True), 1):
                resealed = None
                if n.sealed is not None and n.key_version is not None:
                    # Kept sealed, without the code (it exists only on paper now).
                    aead = await rt.keys.version(conn, n.space_id, n.key_version)
                    rest = {k: v for k, v in letter.items() if k != "code"}
                    resealed = seal_notice(aead, n.key_version, n.space_id, n.notice_id, rest)
                built.append((n.space_id, n.notice_id, pdf_name, page, resealed))
            # Where the run's files are, with the letters they hold: the retention purge finds them there.
            await store.add_letter_batch(conn, stamp, folder)
            size = await asyncio.to_thread(_write_batch, out, manifest, pdf_name, data, rt.settings.base_url)
            try:
                await store.mark_built(conn, built)
            except BaseException:
                await asyncio.to_thread(_undo_batch, out, manifest, pdf_name, size)
                raise
            return len(letters)

        done = await rt.db.interaction("letters_build", step, name)
        if done:
            result.files.append(name)
            result.letters += done
            result.manifest = manifest.name
            result.batch = stamp
        if done < per_file:
            return result


# --- retention: no code in clear kept longer than needed (ASVS 8.3.8, docs/notices.md "Retention") ----------

_BATCH_ID = re.compile(r"(?:manifest-|lettres-)?(\d{8}T\d{6}Z-[0-9a-f]{6})(?:-\d{3})?(?:\.csv|\.pdf)?")
#: Outbox texts dropped per statement (a national run's outbox: millions of rows, in short transactions).
_OUTBOX_BATCH = 10_000


def batch_id_of(text: str) -> str | None:
    """The batch a name stands for: its id, or one of its files' names or paths (the manifest, a PDF)."""
    found = _BATCH_ID.fullmatch(Path(text).name)
    return found.group(1) if found else None


def _delete_batch_files(out_dir: str, batch_id: str) -> int | None:
    """Delete the run's PDFs (whole or partial) and manifest; how many went, or None when its folder is not on
    this machine (the purge is then left to a run where it is)."""
    folder = Path(out_dir)
    if not folder.is_dir():
        return None
    deleted = 0
    patterns = (f"lettres-{batch_id}-*.pdf", f"lettres-{batch_id}-*.pdf.part", f"manifest-{batch_id}.csv")
    for pattern in patterns:
        for path in folder.glob(pattern):
            path.unlink(missing_ok=True)
            deleted += 1
    return deleted


@dataclass
class Purged:
    batches: int = 0
    files: int = 0
    #: Batches due whose folder this machine does not see (built elsewhere): left for a run there.
    unreachable: list[str] = field(default_factory=list)
    outbox_texts: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "files": self.files,
            "unreachable": self.unreachable,
            "outbox_texts": self.outbox_texts,
        }


async def _purge_batches(rt: Runtime, batches: list[store.LetterBatch], result: Purged) -> None:
    gone: list[str] = []
    for b in batches:
        deleted = await asyncio.to_thread(_delete_batch_files, b.out_dir, b.batch_id)
        if deleted is None:
            result.unreachable.append(b.batch_id)
            log.warning("letters.purge_unreachable", batch=b.batch_id, folder=b.out_dir)
            continue
        gone.append(b.batch_id)
        result.files += deleted
    if gone:
        await rt.db.interaction("letters_purged", store.mark_letter_batches_purged, gone)
        result.batches += len(gone)


async def hand_over(rt: Runtime, name: str, *, operator: str | None = None) -> Purged:
    """The operator confirms a batch of letters went to the mailing house: its files (the codes in clear) are
    deleted now. `name` is the batch's id or one of its files. NotFound when no batch by that name was built;
    confirming again deletes whatever is left."""
    batch_id = batch_id_of(name)
    if batch_id is None:
        raise NotFound(
            f"« {name} » ne désigne pas un lot de lettres (manifest-….csv) / does not name a letter batch"
        )
    who = operator or SYSTEM.id
    batch = await rt.db.interaction("letters_handed", store.hand_letter_batch, batch_id, who)
    if batch is None:
        raise NotFound(f"aucun lot de lettres « {batch_id} » / no letter batch {batch_id}")
    result = Purged()
    await _purge_batches(rt, [batch], result)
    log.info("letters.handed", batch=batch_id, operator=who, files=result.files)
    return result


async def purge(rt: Runtime) -> Purged:
    """What the retention rules say must go now (the worker's hourly `notices.purge`, `notices purge`): the
    files of letter batches handed over or built `letter_files_days` ago, and the texts of outbox messages
    delivered `outbox_body_days` ago (their rows stay). Idempotent."""
    result = Purged()
    due = await rt.db.read("letters_to_purge", store.letter_batches_to_purge, rt.settings.letter_files_days)
    await _purge_batches(rt, due, result)
    while True:
        dropped = await rt.db.interaction(
            "outbox_purge", store.drop_outbox_bodies, rt.settings.outbox_body_days, _OUTBOX_BATCH
        )
        result.outbox_texts += dropped
        if dropped < _OUTBOX_BATCH:
            break
    if result.batches or result.outbox_texts or result.unreachable:
        log.info("notices.purged", **{k: v for k, v in result.as_json().items() if k != "unreachable"})
    return result


_FONT_FILES = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
)


def _fonts() -> tuple[str, str]:
    """DejaVu when installed (every Latin name: Ngô Văn), else reportlab's Helvetica (Latin-1)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    regular, bold = _FONT_FILES
    if not (regular.exists() and bold.exists()):
        return "Helvetica", "Helvetica-Bold"
    if "NoticeSans" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("NoticeSans", str(regular)))
        pdfmetrics.registerFont(TTFont("NoticeSans-Bold", str(bold)))
    return "NoticeSans", "NoticeSans-Bold"


def _letter_words(letter: dict[str, Any], base_url: str) -> tuple[str, list[str]]:
    """The French title and paragraphs of a letter (a new space's notice, or a young adult's at 18)."""
    code = letter.get("code", "")
    if letter.get("kind") == "of_age":
        opens_on = letter.get("opens_on") or ""
        o = OfAge(
            code,
            date.fromisoformat(letter["valid_until"]),
            bool(letter.get("opposable")),
            date.fromisoformat(opens_on) if opens_on else None,
        )
        return SUBJECT_OF_AGE.split(" / ")[0], of_age_paragraphs_fr(base_url, o)
    child = letter.get("child") or None
    title = SUBJECT_CHILD.split(" / ")[0] if child else SUBJECT.split(" / ")[0]
    return title, paragraphs_fr(base_url, date.fromisoformat(letter["opens_on"]), code, child)


def render(path: Path, letters: list[dict[str, Any]], base_url: str) -> None:
    """One A4 page per letter, in French. The address block sits where a French DL window envelope shows it
    (left 110 mm, top 50 mm, 85 x 40 mm); the sender top left; then the same words as the e-mail."""
    from xml.sax.saxutils import escape

    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.pdfgen.canvas import Canvas
    from reportlab.platypus import Frame, Paragraph

    regular, bold = _fonts()
    width, height = A4
    body = ParagraphStyle("body", fontName=regular, fontSize=10.5, leading=14, spaceAfter=7)
    strong = ParagraphStyle("strong", parent=body, fontName=bold)
    pdf = Canvas(str(path), pagesize=A4, pageCompression=1)
    pdf.setTitle("Mon espace santé - avis de création")
    pdf.setAuthor("Mon espace santé")
    for letter in letters:
        pdf.setFont(bold, 11)
        pdf.drawString(20 * mm, height - 20 * mm, "Mon espace santé")
        pdf.setFont(regular, 9)
        pdf.drawString(20 * mm, height - 25 * mm, "Assurance maladie - service Mon espace santé")
        pdf.drawString(20 * mm, height - 29 * mm, f"Téléphone : {PHONE}")
        y = height - 55 * mm
        pdf.setFont(regular, 11)
        for line in (
            letter["name"],
            letter["address_line"],
            f"{letter['postal_code']} {letter['city']}".strip(),
        ):
            if line:
                pdf.drawString(110 * mm, y, line[:48])
                y -= 5 * mm
        title, paragraphs = _letter_words(letter, base_url)
        story: list[Any] = [
            Paragraph(escape(title), strong),
            Paragraph(escape(f"Bonjour {letter['name']},"), body),
        ]
        for text in paragraphs:
            style = strong if text.startswith("Code d'activation") else body
            story.append(Paragraph(escape(text), style))
        story.append(Paragraph("Mon espace santé", body))
        Frame(20 * mm, 20 * mm, width - 40 * mm, height - 120 * mm, showBoundary=0).addFromList(story, pdf)
        pdf.showPage()
    pdf.save()
