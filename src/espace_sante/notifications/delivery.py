"""Sending a notification's e-mail, once (the job `notifications.deliver`, and the sweep for lost jobs).

Who is written to is decided when the e-mail goes, from the space as it is then: the holder, and a minor's
representatives whose rights run (not for what is hidden from them), each at the address of their account,
if they have one and chose to be told of this kind; an emergency access is also told to the médecin traitant
(R1111-48), whatever the holder chose. One message goes to all of them, none seeing the others' addresses.

Delivery follows the notices' guarantee (docs/notices.md, "Guarantees"): to the local outbox, written in the
transaction that marks the line sent; to an SMTP relay, through mail.hand_over under the line's delivery lock
(handed just before the relay may accept, sent when it did; a line found handed by a later attempt is marked
uncertain and never sent again). A crash neither skips nor doubles an e-mail."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from espace_sante.access.actors import NOTICES
from espace_sante.access.policy import decide
from espace_sante.logs import get_logger
from espace_sante.mail import (
    DeliveryDeferred,
    Message,
    OutboxMailer,
    SmtpMailer,
    hand_over,
    keep,
    mailer,
    stable_message_id,
)
from espace_sante.notifications import kinds
from espace_sante.people.accounts import Account
from espace_sante.runtime import Runtime
from espace_sante.storage import access as access_store
from espace_sante.storage import accounts as accounts_store
from espace_sante.storage import locks
from espace_sante.storage import notifications as store
from espace_sante.storage import people as people_store
from espace_sante.storage.db import Conn

log = get_logger(__name__)

#: The sweep leaves younger lines to their own jobs (it is the safety net, not the main path).
SWEEP_AGE_SECONDS = 600
SWEEP_BATCH = 500


async def _addresses(conn: Conn, line: store.ToMail) -> list[str]:
    """The addresses this line's e-mail goes to, as the space is now (an empty list: nobody to write to)."""
    reading = decide(NOTICES, "read", "Patient")  # who is told is the notices' part (access/named.py)
    people: list[tuple[str, str]] = []
    choices = await store.choices(conn, line.space_id)
    if kinds.by_email(line.kind, choices):
        holder = await people_store.ins_of_space(conn, reading, line.space_id)
        if holder:
            people.append(("holder", holder))
        if line.audience == "all":
            people += [
                ("holder", i) for i in await people_store.representatives_of(conn, reading, line.space_id)
            ]
    if line.kind == kinds.EMERGENCY:
        mt = await access_store.medecin_traitant(conn, line.space_id)
        if mt and not mt.startswith("finess:"):
            people.append(("practitioner", mt))
    found: list[str] = []
    for kind, actor_id in people:
        row = await accounts_store.by_actor(conn, kind, actor_id)
        address = None if row is None or row.disabled else Account.of(row).notice_address
        if address and address not in found:
            found.append(address)
    return found


def _message(rt: Runtime, line: store.ToMail, addresses: list[str]) -> Message:
    subject, text = kinds.email_text(kinds.BY_CODE[line.kind], rt.settings.base_url)
    return Message(addresses[0], subject, text, also=tuple(addresses[1:]))


async def _to_outbox(conn: Conn, rt: Runtime, space_id: uuid.UUID, nid: uuid.UUID) -> str:
    line = await store.claim_mail(conn, space_id, nid)
    if line is None:
        return "already"
    addresses = await _addresses(conn, line)
    if not addresses:
        await store.set_mail_state(conn, space_id, nid, "none")
        return "none"
    await keep(conn, nid, _message(rt, line, addresses))
    await store.set_mail_state(conn, space_id, nid, "sent")
    return "sent"


async def deliver_one(rt: Runtime, space_id: uuid.UUID, notification_id: uuid.UUID) -> str:
    """Send exactly this notification's e-mail: "sent", "none" (nobody to write to), "already" (sent, found
    uncertain or with nobody before), "busy" (another live process is sending it) or "uncertain" (a dead
    attempt had handed it to the relay: not sent again). Raises mail.DeliveryDeferred when the relay cannot
    take it now (the job tries again later)."""
    sender = mailer(rt)
    if isinstance(sender, OutboxMailer):
        return await rt.db.interaction("notification_outbox", _to_outbox, rt, space_id, notification_id)
    assert isinstance(sender, SmtpMailer)
    async with locks.held_session(rt.db, b"notification-delivery", notification_id) as conn:
        if conn is None:
            return "busy"
        async with conn.transaction():
            line = await store.claim_mail(conn, space_id, notification_id)
            if line is not None and line.handed:
                await store.set_mail_state(
                    conn, space_id, notification_id, "uncertain", "handed to the relay, answer not recorded"
                )
            addresses = [] if line is None or line.handed else await _addresses(conn, line)
            if line is not None and not line.handed and not addresses:
                await store.set_mail_state(conn, space_id, notification_id, "none")
                return "none"
        if line is None:
            return "already"
        if line.handed:
            log.warning("notification.uncertain", notification=str(notification_id))
            return "uncertain"
        message_id = stable_message_id(notification_id, sender.domain, "note")
        states = _States(space_id, notification_id)
        outcome = await hand_over(conn, sender, _message(rt, line, addresses), message_id, states)
        return "sent" if outcome == "delivered" else outcome


@dataclass(frozen=True)
class _States:
    """A notification's delivery states (mail.hand_over), in its line."""

    space_id: uuid.UUID
    notification_id: uuid.UUID

    async def failed(self, conn: Conn, why: str) -> None:
        await store.set_mail_state(conn, self.space_id, self.notification_id, "waiting", why)

    async def handed(self, conn: Conn) -> None:
        await store.set_mail_state(conn, self.space_id, self.notification_id, "handed")

    async def unhanded(self, conn: Conn, why: str) -> None:
        await store.set_mail_state(conn, self.space_id, self.notification_id, "waiting", why)

    async def uncertain(self, conn: Conn, why: str) -> None:
        log.warning("notification.uncertain", notification=str(self.notification_id), error=why)
        await store.set_mail_state(conn, self.space_id, self.notification_id, "uncertain", why)

    async def delivered(self, conn: Conn) -> None:
        await store.set_mail_state(conn, self.space_id, self.notification_id, "sent")


async def sweep(rt: Runtime, *, min_age_seconds: float = SWEEP_AGE_SECONDS) -> dict[str, int]:
    """Send the e-mails whose job was lost (a killed worker, retries run out): lines still waiting
    `min_age_seconds` after they were written. Idempotent; returns how many ended how."""
    lines = await rt.db.read(
        "notifications_left", store.left_waiting, older_than_seconds=min_age_seconds, limit=SWEEP_BATCH
    )
    outcomes: dict[str, int] = {}
    for space_id, nid in lines:
        try:
            outcome = await deliver_one(rt, space_id, nid)
        except DeliveryDeferred as exc:  # the relay cannot take it now: the line waits for the next sweep
            log.warning("notification.deferred", notification=str(nid), error=str(exc))
            outcome = "deferred"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes
