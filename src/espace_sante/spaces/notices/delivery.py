"""Delivering the e-mail notices (docs/notices.md, "Guarantees"), and an operator's way out of an uncertain one.

The notices are recorded with their delivery jobs in one transaction (`record`); a worker's job delivers one
e-mail or a batch of them (`espace-sante worker`), or `notices send` does it inline (`deliver`):
- the embedded default (no SMTP relay): the e-mail is written to the `outbox` under the notice's id in the
  transaction that marks it delivered (and erases what it said): never twice, never lost;
- an SMTP relay: the notice's delivery lock is held by the delivering connection; `handed_at` is committed
  just before the "." that ends DATA, `delivered_at` when the relay says 250. An attempt that died before the
  "." left nothing at the relay: it is sent again. One that died after may have been accepted: it is never
  sent again automatically, but marked `uncertain_at` for an operator (`uncertain`, `resolve`). So: never
  twice; never skipped without a trace (docs/notices.md, "Guarantees", measures the residual window).

The e-mail's text is rendered at delivery from the notice's sealed words (spaces/notices/words.py)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from espace_sante.access.actors import Actor
from espace_sante.context import Context
from espace_sante.crypto import DecryptionFailed
from espace_sante.errors import Conflict, NotFound
from espace_sante.logs import get_logger
from espace_sante.mail import (
    DeliveryDeferred,
    Message,
    OutboxMailer,
    SmtpMailer,
    hand_over,
    mailer,
    stable_message_id,
)
from espace_sante.people.passwords import peppers
from espace_sante.runtime import Runtime
from espace_sante.spaces import activation, identity
from espace_sante.spaces.notices import addressees, words
from espace_sante.spaces.notices.words import OPPOSABLE, SUBJECT_CHILD, SUBJECT_OF_AGE, OfAge, Person
from espace_sante.storage import accounts as accounts_store
from espace_sante.storage import audit as audit_store
from espace_sante.storage import jobs as jobs_store
from espace_sante.storage import lifecycle as lifecycle_store
from espace_sante.storage import locks
from espace_sante.storage import notices as store
from espace_sante.storage.audit import SUCCESS, Record
from espace_sante.storage.db import Conn

log = get_logger(__name__)

#: E-mails read per transaction by `deliver`.
BATCH = 1000


#: The delivery job of one e-mail notice (registered in jobs/queue.py; deferred here, in SQL, with the notice).
DELIVER_TASK = "notices.deliver"
#: The delivery job of the e-mails one transaction recorded (a batch of `notices send` or of the registry
#: import): one job row per batch instead of one per e-mail, a third of what a notified person cost the
#: database (benchmarks/README.md, "Provisioning"); each e-mail is still delivered on its own (deliver_one).
DELIVER_MANY_TASK = "notices.deliver_many"
QUEUE = "notices"


def delivery_job(space_id: uuid.UUID, notice_id: uuid.UUID) -> jobs_store.JobToDefer:
    """The job that delivers exactly this notice."""
    args = {"space_id": str(space_id), "notice_id": str(notice_id)}
    return jobs_store.one_at_a_time(DELIVER_TASK, args, queue=QUEUE, key=f"notice:{notice_id}")


def delivery_batch_job(emails: list[tuple[uuid.UUID, uuid.UUID]]) -> jobs_store.JobToDefer:
    """The job that delivers these e-mail notices, (space, notice) each, one after the other."""
    return jobs_store.JobToDefer(
        DELIVER_MANY_TASK, {"emails": [[str(s), str(n)] for s, n in emails]}, queue=QUEUE
    )


async def record(conn: Conn, rt: Runtime, notices: list[store.NewNotice]) -> None:
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
        said = words.open_notice(aead, n.key_version, n.space_id, n.notice_id, n.sealed)
    except DecryptionFailed:
        return None
    return words.email_text_of(rt.settings.base_url, said)


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
    n = await store.email_to_keep(conn, addressees.reading(), space_id, notice_id)
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
    due = await store.due_emails(conn, addressees.reading(), limit)
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
    async with locks.held_session(rt.db, b"notice-delivery", notice_id) as conn:
        if conn is None:
            return "busy"
        async with conn.transaction():
            claim = await store.claim_email(conn, addressees.reading(), space_id, notice_id)
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
        states = _NoticeStates(space_id, notice_id)
        outcome = await hand_over(conn, sender, message, stable_message_id(notice_id, sender.domain), states)
        if outcome == "uncertain":
            log.warning("notice.uncertain", notice=str(notice_id), error=states.why)
        return outcome


@dataclass
class _NoticeStates:
    """A notice's delivery states (mail.hand_over), in its row."""

    space_id: uuid.UUID
    notice_id: uuid.UUID
    why: str = ""

    async def failed(self, conn: Conn, why: str) -> None:
        await store.mark_failed(conn, self.space_id, self.notice_id, why)

    async def handed(self, conn: Conn) -> None:
        await store.mark_handed(conn, self.space_id, self.notice_id)

    async def unhanded(self, conn: Conn, why: str) -> None:
        await store.unhand(conn, self.space_id, self.notice_id, why)

    async def uncertain(self, conn: Conn, why: str) -> None:
        self.why = why
        await store.mark_uncertain(conn, self.space_id, self.notice_id, why)

    async def delivered(self, conn: Conn) -> None:
        await store.mark_delivered(conn, self.space_id, self.notice_id)


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


async def emails_of(rt: Runtime, space_id: uuid.UUID) -> list[tuple[str, str, str | None]]:
    """A space's e-mails still waiting, as they will be sent (operators, tests): (recipient, subject, text;
    None when it cannot be rendered any more)."""

    async def q(conn: Conn) -> list[tuple[str, str, str | None]]:
        waiting = await store.waiting_emails(conn, addressees.reading(), space_id)
        keys = await identity.keys_of(conn, rt, [space_id])
        return [
            (n.recipient, n.subject, _text(rt, n, keys.get((space_id, n.key_version or 0)))) for n in waiting
        ]

    return await rt.db.read("notice_emails", q)


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
    found = await rt.db.read("notices_uncertain", store.uncertain, addressees.reading(), limit)
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
    holder = await addressees.holder(conn, rt, space_id)
    if row is None or holder is None:
        raise NotFound("Patient introuvable / no Patient in the space")
    to: Person | None = holder if holder.email == email.recipient else None
    child: str | None = None
    if email.subject == SUBJECT_CHILD:
        to, child = None, holder.name
        rep_ins, known = await addressees.representatives(conn, rt, space_id)
        to = next((rep for ins in rep_ins if (rep := known.get(ins)) and rep.email == email.recipient), None)
    if to is None or not to.address_line:
        raise Conflict("pas d'adresse postale pour ce destinataire / no postal address for this recipient")
    to = Person(to.name, to.birth_date, "", to.address_line, to.postal_code, to.city)  # a letter, not a mail
    key = await rt.keys.current(conn, space_id)
    if email.subject == SUBJECT_OF_AGE:
        expires = await store.code_expiry(conn, space_id)
        assert expires is not None  # the code is live
        opposable = row.state in OPPOSABLE
        o = OfAge(code, expires.astimezone(UTC).date(), opposable, row.opens_on if opposable else None)
        return words.of_age_notice(space_id, key, to, o)
    opens_on = row.opens_on or (await store.code_expiry(conn, space_id) or datetime.now(UTC)).date()
    return words.new_notice(space_id, key, to, opens_on, code, child)


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
        held = await store.lock_uncertain(conn, addressees.reading(), notice_id)
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
