"""Issuing notices (PRODUCT section 2, docs/notices.md): each `registered` space gets an activation code and a
notice, by e-mail when the registry gave an address, else by letter; a minor's notice goes to the
representative(s), naming the child.

Exactly once, crash or not: a batch of spaces is notified in ONE transaction: their move to `notified` (the
row and trace the lifecycle's `notify` writes), their codes (only HMAC digests stored, as
activation.issue_in does), the notice rows (what each says, code included, sealed under the space's data key:
the e-mail's text is rendered from it at delivery) and the e-mails' delivery jobs (procrastinate, through
storage/jobs.defer): all or none. `send` does it set-based for every registered space (`notices send`), as
the registry import does for the rows it writes (`notify_addressed`); one space at a time, `notify_in`,
`ask_again` (an opposed person asks again) and `of_age_in` (a minor came of age) do the same."""

from __future__ import annotations

import asyncio
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from espace_sante import clock
from espace_sante.access.actors import NOTICES
from espace_sante.context import Context
from espace_sante.errors import NotFound
from espace_sante.logs import get_logger
from espace_sante.people.passwords import peppers
from espace_sante.runtime import Runtime
from espace_sante.spaces import activation, deaths, identity, transitions
from espace_sante.spaces.notices import addressees, delivery, words
from espace_sante.spaces.notices.addressees import Addressee
from espace_sante.spaces.notices.words import OPPOSABLE, OfAge
from espace_sante.storage import audit as audit_store
from espace_sante.storage import lifecycle as lifecycle_store
from espace_sante.storage import notices as store
from espace_sante.storage.audit import SUCCESS, Record
from espace_sante.storage.db import Conn

log = get_logger(__name__)

#: Spaces notified per transaction.
BATCH = 1000
#: Batches of `notices send` in flight at once (one process): the database works on one while Python
#: prepares the other.
LANES = 3
#: How long the young adult's own code is valid (the notice may wait for a letter, then for the person).
OF_AGE_CODE_DAYS = 90
#: States in which the space has nothing to give (no data, no key, or closed: its codes are discarded).
_NOTHING_TO_GIVE = frozenset({"opposed", "destroyed", "closed"})


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


async def notify_in(conn: Conn, ctx: Context, space_id: uuid.UUID, on: date) -> list[str]:
    """One person, in the caller's transaction: to `notified` (Conflict if no longer `registered`), a code,
    the notice(s) recorded with their delivery jobs. Returns the channels of the notices queued."""
    rt = ctx.runtime
    await transitions.notify_in(conn, ctx, space_id, on)
    opens_on = on + timedelta(days=rt.settings.opposition_window_days)
    code = await activation.issue_in(conn, ctx, space_id, valid_until=valid_until(opens_on))
    holder = await addressees.holder(conn, rt, space_id)
    if holder is None:
        raise NotFound("Patient introuvable / no Patient in the space")
    rep_ins, known = await addressees.representatives(conn, rt, space_id)
    representatives = [
        rep for ins in rep_ins if (rep := known.get(ins)) is not None and (rep.email or rep.address_line)
    ]
    key = await rt.keys.current(conn, space_id)
    notices = [
        words.new_notice(space_id, key, to, opens_on, code, child)
        for to, child in words.recipients(holder, representatives, bool(rep_ins))
    ]
    await delivery.record(conn, rt, notices)
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
        await transitions.request_in(conn, ctx, space_id)
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
    holder = await addressees.holder(conn, rt, space_id)
    if holder is None:
        raise NotFound("Patient introuvable / no Patient in the space")
    until = on + timedelta(days=OF_AGE_CODE_DAYS)
    code = await activation.issue_in(conn, ctx, space_id, valid_until=valid_until(until))
    await store.withdraw_pending(conn, space_id)
    opposable = row.state in OPPOSABLE
    o = OfAge(code, until, opposable, row.opens_on if opposable else None)
    notice = words.of_age_notice(space_id, await rt.keys.current(conn, space_id), holder, o)
    await delivery.record(conn, rt, [notice])
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
        transitions.record(actor, "notify", "registered", "notified", "", ctx.request_id),
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
    return [
        words.new_notice(a.space_id, key, to, codes.opens_on, code, child) for to, child in a.recipients()
    ]


async def _notify_batch(conn: Conn, ctx: Context, on: date, after: uuid.UUID | None, limit: int) -> _Batch:
    """Up to `limit` registered spaces after `after`, in the caller's transaction, set-based: a handful of
    statements for the whole batch whatever its size (the per-person path, notify_in, takes about 20)."""
    rt = ctx.runtime
    result = _Batch()
    spaces = await store.lock_registered(conn, after, limit)
    result.seen, result.last = len(spaces), (spaces[-1] if spaces else None)
    if not spaces:
        return result
    holders = await identity.bodies(conn, rt, spaces, decision=addressees.reading())
    reps_ins = await store.representatives(conn, addressees.reading(), spaces)
    reps = await addressees.people_by_ins(conn, rt, [ins for found in reps_ins.values() for ins in found])
    # The newest data key of each space written (its notices are sealed with it), in one query.
    newest = await identity.newest_keys(conn, rt, spaces)

    ready: list[tuple[Addressee, tuple[int, AESGCM]]] = []
    for space_id in spaces:
        if space_id not in holders or space_id not in newest:
            result.skipped.append(f"{space_id}: Patient introuvable / no Patient in the space")
            continue
        holder = words.person_of(holders[space_id][1])
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
    await delivery.record(conn, rt, notices)
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
    await deaths.close_deceased(rt, as_of)
    counts = await notify_registered(rt, as_of, batch=batch, lanes=lanes)
    if deliver_now:
        result = await delivery.deliver(rt, batch=batch)
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
