"""The lifecycle of a space (PRODUCT.md section 2, docs/lifecycle.md): every change of state goes through
`TRANSITIONS`, the one table of what may happen, from which states, and by whom; each change is traced in the
space's own chain in the same transaction as the change.

    registered --notify--> notified --open (run, window ended)--> open --activate--> active
    registered|notified --oppose--> opposed --request--> registered
    registered|notified|open --activate--> active
    open|active --suspend--> suspended --resume--> (the state before) | --close (run)--> closed
    registered..active|suspended --close (holder, death)--> closed --reopen--> active
    open|active|closed --erase (holder asks destruction)--> closed, destroyed by the run after the delay
    closed --destroy (run: archive period ended, or the asked destruction is due)--> destroyed

`run(rt, as_of)` carries out every transition that is due on a date, set-based, in batches, idempotent: the
periodic job and `espace-sante lifecycle run --as-of` call the same function."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

import orjson

from espace_sante import clock
from espace_sante.access import lifecycle as rule
from espace_sante.access.actors import LIFECYCLE, Actor
from espace_sante.access.policy import Decision, SpaceFacts, decide
from espace_sante.audit import trace
from espace_sante.context import Context
from espace_sante.crypto import DecryptionFailed
from espace_sante.errors import BadRequest, Conflict, Forbidden, NotFound
from espace_sante.people import stepup
from espace_sante.runtime import Runtime
from espace_sante.spaces import identity
from espace_sante.storage import access as access_store
from espace_sante.storage import audit as audit_store
from espace_sante.storage import legacy as legacy_store
from espace_sante.storage import lifecycle as store
from espace_sante.storage import people as people_store
from espace_sante.storage import resources
from espace_sante.storage.audit import SUCCESS, Record
from espace_sante.storage.db import Conn
from espace_sante.storage.documents import blob_key

State = Literal["registered", "notified", "opposed", "open", "active", "suspended", "closed", "destroyed"]
Event = Literal[
    "notify", "oppose", "request", "open", "activate", "suspend", "resume", "close", "reopen", "erase", "destroy"
]  # fmt: skip
Channel = Literal["online", "phone", "counter"]

STATE_WORDS: Mapping[str, tuple[str, str]] = {
    "registered": ("créé, avis pas encore envoyé", "registered, no notice sent yet"),
    "notified": ("avis envoyé, en attente d'ouverture", "notice sent, waiting to open"),
    "opposed": ("opposition enregistrée", "objected to"),
    "open": ("ouvert", "open"),
    "active": ("activé par son titulaire", "activated by its holder"),
    "suspended": ("suspendu", "suspended"),
    "closed": ("fermé (archivé)", "closed (archived)"),
    "destroyed": ("détruit", "destroyed"),
}

#: The rule of who may see or change a space, and the transition table, live beside the policy
#: (access/lifecycle.py); this module reads the facts and carries the changes out.
PEOPLE = rule.PEOPLE
Transition = rule.Transition
TRANSITIONS = rule.TRANSITIONS
#: States in which a death date on the Patient closes the space at the next run.
LIVE = TRANSITIONS["close"].sources
#: States in which a space is used (professionals deposit, the holder reads): entering one writes the Patient
#: of a space the registry made, from the identity waiting for it (spaces/identity.py).
USABLE = frozenset({"open", "active"})
BATCH = 1000

log = logging.getLogger(__name__)


async def _check_sees(conn: Conn, actor: Actor, space_id: uuid.UUID) -> None:
    """The space is one the actor may know exists (access/lifecycle.sees): else "not found", before any other
    answer, so that no refusal tells whether someone else's INS has a space."""
    relation = await _relation(conn, actor, space_id) if rule.relation_needed(actor) else ""
    if not rule.sees(actor, relation):
        raise NotFound("Espace introuvable / space not found")


def _refused(event: str, state: str) -> Conflict:
    fr, en = STATE_WORDS.get(state, (state, state))
    return Conflict(
        f"changement impossible : « {event} » n'est pas permis pour un espace {fr} / "
        f"illegal transition: {event!r} is not allowed for a space that is {en} ({state})"
    )


def _record(actor: Actor, event: str, before: str, after: str, reason: str, request_id: str) -> Record:
    return Record(
        action=f"space:{event}",
        outcome=SUCCESS,
        actor_kind=actor.kind,
        actor_id=actor.id,
        actor_display=actor.display,
        basis="cycle de vie de l'espace / space lifecycle",
        detail=f"{before}>{after}|{reason}",
        request_id=request_id,
    )


async def _relation(conn: Conn, actor: Actor, space_id: uuid.UUID) -> rule.Relation:
    """How a person relates to the space: its holder (an app: its holder's), or a representative of the minor
    whose rights have not ended, or neither (the facts access/lifecycle.sees decides on)."""
    ins = actor.subject if actor.kind == "app" else actor.id
    own = decide(LIFECYCLE, "read", "Patient")  # the rule's fact, read by the lifecycle for the rule
    if (
        actor.kind in ("holder", "app")
        and ins
        and await people_store.ins_of_space(conn, own, space_id) == ins
    ):
        return "holder"
    if actor.kind == "representative" and await access_store.is_representative(
        conn, space_id, actor.id, on=clock.today()
    ):
        return "representative"
    return ""


async def _apply(
    conn: Conn, ctx: Context, event: str, space_id: uuid.UUID, reason: str, on: date
) -> tuple[str, str]:
    """One transition of one space in the caller's transaction: checks, side effects, new state, trace."""
    step = TRANSITIONS[event]
    row = await store.lock(conn, space_id)
    if row is None or row.state == "destroyed":
        raise NotFound("Espace introuvable / space not found")
    await _check_sees(conn, ctx.actor, space_id)
    allowed, why = rule.may(ctx.actor, event)
    if not allowed:
        raise Forbidden(f"« {event} » : action non permise à ce rôle / {why}")
    if row.state not in step.sources:
        raise _refused(event, row.state)
    if event in ("close", "erase"):  # allowed, but not undone alone: a recent proof of identity first
        stepup.require(ctx, "close" if event == "close" else "erase")
    target = (row.prior_state or "active") if step.target == "prior" else step.target
    settings = ctx.runtime.settings
    extra: dict[str, Any] = {}
    if event == "notify":
        extra["opens_on"] = on + timedelta(days=settings.opposition_window_days)
    elif event == "suspend":
        extra["prior_state"] = row.state
    elif event == "close":
        extra["closed_reason"] = reason
    elif event == "erase":
        extra["closed_reason"] = "erase"
        extra["destroy_on"] = destruction_day(on, settings.destruction_delay_days)
    elif event == "reopen":
        if row.closed_reason == "death":
            raise Conflict(
                "un espace fermé après un décès ne se rouvre pas / a space closed on death stays closed"
            )
        if on >= kept_until(row.state_at, settings.archive_years):
            raise _refused(event, "destroyed")
    elif event == "oppose":
        await _shred_keeping_identity(conn, ctx, space_id)
    elif event == "request":
        await ctx.runtime.keys.create(conn, space_id)  # a no-op: opposition already gave a fresh key
    moved = await store.move(conn, space_id, step.sources, target, **extra)
    if not moved:  # unreachable: the row is locked
        raise _refused(event, row.state)
    records = [(space_id, _record(ctx.actor, event, row.state, target, reason, ctx.request_id))]
    if target in USABLE:  # a space the registry made gets its Patient now, after the transition's record
        await identity.materialise(conn, ctx, [space_id], after=records)
    else:
        await audit_store.append_batch(conn, records)
    return row.state, target


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def kept_until(closed_at: Any, archive_years: int) -> date:
    """The day the archive period of a space closed at `closed_at` ends: it may be reopened until the day
    before, and is destroyed by the first run on or after it (what the holder's page shows)."""
    return _add_years(closed_at.date(), archive_years)


def destruction_day(asked_on: date, delay_days: int) -> date:
    """The day a destruction asked on `asked_on` is carried out (by the first run on or after it)."""
    return asked_on + timedelta(days=delay_days)


async def _shred_keeping_identity(conn: Conn, ctx: Context, space_id: uuid.UUID) -> None:
    """Opposition: nothing medical is kept. Every row of the space's data is deleted and its data key
    destroyed (what a backup holds can never be read), then the identity the registry gave (the Patient, which
    is the insurer's administrative data, not medical data) is written again under a fresh key, so that the
    person is recognised, their opposition proved, and a space can be made again if they ask."""
    keys = ctx.runtime.keys
    # The identity is the registry's, kept by the service whoever asked the opposition (access/named.py).
    reading = decide(LIFECYCLE, "read", "Patient")
    patient_id = await access_store.patient_of_space(conn, space_id)
    body = None
    if patient_id is not None:
        stored = await resources.read(conn, keys, reading, space_id, "Patient", patient_id)
        body = None if stored is None or stored.body is None else orjson.loads(stored.body)
    waiting = (
        None if patient_id is not None else await identity.body(conn, ctx.runtime, space_id, decision=reading)
    )
    ctx.uploads.extend(await store.blob_keys(conn, [space_id]))  # deleted from the store after commit
    await store.erase(conn, keys, [space_id])
    await keys.create(conn, space_id)
    if waiting is not None:  # a space that never opened: its identity goes on waiting, under the new key
        await identity.reseal(conn, ctx.runtime, space_id, *waiting)
    if body is not None and patient_id is not None:
        body.pop("meta", None)
        writing = decide(LIFECYCLE, "create", "Patient")
        await resources.write(
            conn, keys, writing, space_id, "Patient", patient_id, body, method="POST", previous=None
        )


async def _delete_objects(rt: Runtime, objects: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Best effort, after commit: the objects are unreadable anyway (their key is destroyed); what a failure
    leaves is found by `documents verify` as an object without a row."""
    for space_id, blob_id in objects:
        try:
            await rt.blob_store.delete(blob_key(space_id, blob_id))
        except Exception as exc:  # crypto-shredded already: a left object is unreadable
            log.warning("blob of destroyed space %s left in the store: %s", space_id, exc)


async def transition(
    ctx: Context, space_id: uuid.UUID, event: Event, *, reason: str = "", on: date | None = None
) -> tuple[str, str]:
    """Apply `event` to one space now (or as of `on`, for dates the transition computes); returns (before,
    after). An illegal transition raises Conflict (409), an unknown or destroyed space NotFound."""
    if event not in TRANSITIONS:
        raise BadRequest(f"événement inconnu / unknown event {event!r}")
    objects_before = len(ctx.uploads)
    result = await ctx.runtime.db.interaction(
        f"lifecycle_{event}", _apply, ctx, event, space_id, reason, on or clock.today()
    )
    shredded = ctx.uploads[objects_before:]
    del ctx.uploads[objects_before:]
    await _delete_objects(ctx.runtime, shredded)
    return result


# --- the named steps (what the services, the API and the CLI call) --------------------------------------------


async def notify(ctx: Context, space_id: uuid.UUID, *, on: date | None = None) -> tuple[str, str]:
    """The notice was sent (on `on`): the space opens `opposition_window_days` later unless opposed."""
    return await transition(ctx, space_id, "notify", on=on)


async def notify_in(conn: Conn, ctx: Context, space_id: uuid.UUID, on: date) -> tuple[str, str]:
    """`notify` in the caller's transaction: the notices record the notice, its code and the new state in one
    transaction (spaces/notices.py), so that a crash never sends a notice twice nor skips one."""
    return await _apply(conn, ctx, "notify", space_id, "", on)


async def oppose_in(conn: Conn, ctx: Context, space_id: uuid.UUID, channel: Channel) -> tuple[str, str]:
    """`oppose` in the caller's transaction: an online opposition spends the activation code and records the
    opposition in one transaction (spaces/activation.py), so that a code is never spent without it. The
    document objects to delete after commit are appended to `ctx.uploads` (`transition` does it for `oppose`)."""
    if channel not in ("online", "phone", "counter"):
        raise BadRequest(f"canal inconnu / unknown channel {channel!r} (online, phone, counter)")
    return await _apply(conn, ctx, "oppose", space_id, channel, clock.today())


async def request_in(conn: Conn, ctx: Context, space_id: uuid.UUID) -> tuple[str, str]:
    """`request` in the caller's transaction: an opposed person's new notice is recorded with it
    (spaces/notices.ask_again)."""
    return await _apply(conn, ctx, "request", space_id, "", clock.today())


async def activate_in(conn: Conn, ctx: Context, space_id: uuid.UUID) -> tuple[str, str]:
    """`activate` in the caller's transaction: the activation code is spent if and only if this commits."""
    return await _apply(conn, ctx, "activate", space_id, "", clock.today())


async def oppose(ctx: Context, space_id: uuid.UUID, channel: Channel) -> tuple[str, str]:
    """Record an opposition (online by the person, whose code the activation service checked; by phone or at
    a counter by an operator). The space's data and data key are destroyed; only the identity stays."""
    if channel not in ("online", "phone", "counter"):
        raise BadRequest(f"canal inconnu / unknown channel {channel!r} (online, phone, counter)")
    return await transition(ctx, space_id, "oppose", reason=channel)


async def request(ctx: Context, space_id: uuid.UUID) -> tuple[str, str]:
    """An opposed person asks for a space after all: back to `registered`, a new notice follows."""
    return await transition(ctx, space_id, "request")


async def activate(ctx: Context, space_id: uuid.UUID) -> tuple[str, str]:
    return await transition(ctx, space_id, "activate")


async def suspend(ctx: Context, space_id: uuid.UUID, reason: str = "") -> tuple[str, str]:
    return await transition(ctx, space_id, "suspend", reason=reason)


async def resume(ctx: Context, space_id: uuid.UUID) -> tuple[str, str]:
    """The holder objected to the suspension (or the insurer lifts it): back to the state before."""
    return await transition(ctx, space_id, "resume")


async def close(ctx: Context, space_id: uuid.UUID, *, reason: str = "holder") -> tuple[str, str]:
    return await transition(ctx, space_id, "close", reason=reason)


async def reopen(ctx: Context, space_id: uuid.UUID) -> tuple[str, str]:
    """Within the archive period, everything comes back: the data was never touched while closed."""
    return await transition(ctx, space_id, "reopen")


async def erase(ctx: Context, space_id: uuid.UUID, *, on: date | None = None) -> tuple[str, str]:
    """The holder asks for destruction: closed at once, destroyed by the run `destruction_delay_days` later
    (they may still reopen it until then)."""
    return await transition(ctx, space_id, "erase", on=on)


async def state(rt: Runtime, space_id: uuid.UUID) -> str | None:
    return await rt.db.read("lifecycle_state", store.state_of, space_id)


# --- asked through the API: which space, and what it is like ---------------------------------------------------

#: What people and operators may ask for through the API. `notify`, `open` and `destroy` are the service's
#: own; `activate` needs the activation code (spaces/activation.py), not only a signed-in account.
#: Why the insurer suspends a space (PRODUCT section 2): fraud, or a malfunction being investigated.
SUSPENSION_REASONS = frozenset({"fraud", "malfunction"})
REQUESTED: frozenset[str] = frozenset({"oppose", "request", "suspend", "resume", "close", "reopen", "erase"})


@dataclass(frozen=True)
class Status:
    space_id: uuid.UUID
    state: str
    since: Any
    opens_on: date | None
    destroy_on: date | None
    closed_reason: str | None

    def as_json(self) -> dict[str, Any]:
        fr, en = STATE_WORDS.get(self.state, (self.state, self.state))
        return {
            "state": self.state,
            "since": self.since.isoformat(),
            "opens_on": None if self.opens_on is None else self.opens_on.isoformat(),
            "destroy_on": None if self.destroy_on is None else self.destroy_on.isoformat(),
            "closed_reason": self.closed_reason,
            "words": {"fr": fr, "en": en},
        }


async def space_of(ctx: Context, ins: str | None) -> uuid.UUID:
    """The space a request is about: the one of this INS, or, when none is given, the signed-in holder's own
    (an app's holder's). Whether the caller may act on it is the transition's check (or `status`'s)."""
    actor = ctx.actor
    if ins is None:
        if actor.kind == "holder":
            ins = actor.id
        elif actor.kind == "app" and actor.subject:
            ins = actor.subject
        else:
            raise BadRequest("indiquez l'INS du titulaire / give the holder's INS (ins)")
    found = await space_of_ins(ctx.runtime, ins)
    if found is None:
        raise NotFound("Espace introuvable / space not found")
    return found


@dataclass(frozen=True)
class Represented:
    """A minor's space that a person manages as legal representative: whose, and in what state."""

    space_id: uuid.UUID
    ins: str
    name: str
    state: str


async def represented(ctx: Context) -> list[Represented]:
    """The minors' spaces the signed-in person represents today (rights not ended: at 18 they drop out of
    this list the same day the policy stops answering), with the child's INS and name from the space's
    identity (its Patient, or the registry's while it waits) and the space's state: what the portal offers to
    switch to. Empty for anyone but a person acting as themselves or as a representative.

    The children's identities are read as their representative, under the policy (a child's space in a state
    the policy does not reach shows no name), and each read is traced in the child's chain as hers."""
    actor = ctx.actor
    rt = ctx.runtime
    if actor.kind not in ("holder", "representative"):
        return []
    parent = dataclasses.replace(actor, kind="representative")
    acting = Context(rt, parent, request_id=ctx.request_id)

    async def work(conn: Conn) -> list[Represented]:
        today = clock.today()
        rows = await store.represented_by(conn, actor.id, today)
        spaces = [space_id for space_id, _, _ in rows]
        known = {f.space_id: f for f in await access_store.facts(conn, parent, spaces, today=today)}
        # A space the registry made has no Patient yet, hence no facts row: the representation and the state
        # just read are what the policy decides on for the identity waiting there.
        facts = [
            known.get(s) or SpaceFacts(s, relation="representative", representative_until=until, state=state)
            for s, state, until in rows
        ]
        reading = decide(parent, "read", "Patient", facts, today=today)
        found = await identity.bodies(conn, rt, spaces, decision=reading)
        own_ins = decide(LIFECYCLE, "read", "Patient")
        out = []
        for space_id, state, _ in rows:
            patient_id, body = found.get(space_id, ("", {}))
            if patient_id:
                await trace.access(
                    conn,
                    acting,
                    reading,
                    "resource:read",
                    space_id,
                    entity_type="Patient",
                    entity_id=patient_id,
                )
            # The INS names the space she acts on (its lifecycle's fact), whether or not its name is readable.
            ins = identity.ins_of(body) or await people_store.ins_of_space(conn, own_ins, space_id) or ""
            out.append(Represented(space_id, ins, identity.name_of(body), state))
        return out

    return await rt.db.interaction("lifecycle_represented", work)


async def space_of_ins(rt: Runtime, ins: str) -> uuid.UUID | None:
    """The space of this INS (storage/lifecycle.space_of_ins: the registry's link first), destroyed included."""
    return await rt.db.read("lifecycle_space_of_ins", store.space_of_ins, ins.strip())


async def status(ctx: Context, space_id: uuid.UUID) -> Status:
    """The state of a space, for its holder (or a representative with rights) and for the insurer's operators;
    anyone else is answered as if it did not exist."""
    actor = ctx.actor

    async def work(conn: Conn) -> store.SpaceRow:
        await _check_sees(conn, actor, space_id)
        row = await store.row_of(conn, space_id)
        if row is None or row.state == "destroyed":
            raise NotFound("Espace introuvable / space not found")
        return row

    row = await ctx.runtime.db.interaction("lifecycle_status", work)
    return Status(space_id, row.state, row.state_at, row.opens_on, row.destroy_on, row.closed_reason)


async def requested(
    ctx: Context, space_id: uuid.UUID, event: str, *, channel: str | None = None, reason: str = ""
) -> tuple[str, str]:
    """A transition asked through the API (REQUESTED): the same rules as every other caller."""
    if event not in REQUESTED:
        raise BadRequest(
            f"changement non demandable / this change cannot be asked for: {event!r} "
            f"({', '.join(sorted(REQUESTED))})"
        )
    # Whether the caller may know this space exists comes first: no later refusal must tell it.
    await ctx.runtime.db.read("lifecycle_sees", _check_sees, ctx.actor, space_id)
    if reason and (event != "suspend" or reason not in SUSPENSION_REASONS):
        # The reason goes into the trace the holder reads: a code, never free text (no medical data there).
        raise BadRequest(
            "motif : seulement pour une suspension, « fraud » ou « malfunction » / reason: only for a "
            "suspension, 'fraud' or 'malfunction'"
        )
    if event == "oppose":
        if ctx.actor.kind == "operator" and channel not in ("phone", "counter"):
            raise BadRequest("canal : phone ou counter / channel: phone or counter")
        if ctx.actor.kind != "operator" and channel not in (None, "online"):
            # The channel is printed on the proof: phone and counter are what an operator records.
            raise BadRequest("canal : online / channel: online (phone and counter are operators')")
        return await oppose(ctx, space_id, channel or "online")  # type: ignore[arg-type]
    if event == "close":  # an operator records the holder's own request (by phone, at a counter)
        return await close(ctx, space_id, reason="holder")
    if event == "request":
        # Asked for again: the new notice and code go at once, in the transaction of the request, as on the
        # holder's page (spaces/notices.ask_again), rather than wait for the next `notices send`.
        from espace_sante.spaces import notices  # notices calls this module's transitions

        await notices.ask_again(ctx, space_id)
        return "opposed", "notified"  # `request`'s only source, then `notify`'s target
    return await transition(ctx, space_id, event, reason=reason)  # type: ignore[arg-type]


# --- the periodic run ------------------------------------------------------------------------------------------


@dataclass
class RunCounts:
    opened: int = 0
    closed_suspended: int = 0
    closed_deceased: int = 0
    destroyed: int = 0
    of_age: int = 0

    def as_json(self) -> dict[str, int]:
        return {
            "opened": self.opened,
            "closed_suspended": self.closed_suspended,
            "closed_deceased": self.closed_deceased,
            "destroyed": self.destroyed,
            "of_age": self.of_age,
        }


async def run(rt: Runtime, as_of: date | None = None, *, batch: int = BATCH) -> RunCounts:
    """Every transition due on `as_of` (today by default), in batches of `batch` spaces, one transaction
    each; spaces another run holds are skipped (SKIP LOCKED), and a second run finds nothing left to do."""
    day = as_of or clock.today()
    counts = RunCounts()
    ctx = Context(rt, LIFECYCLE)
    settings = rt.settings

    async def due(event: str, before: str, due_sql: str, *args: Any, reason: str | None = None) -> int:
        change = TRANSITIONS[event]
        total = 0
        while True:

            async def step(conn: Conn) -> int:
                moved = await store.move_due(
                    conn, due_sql, change.sources, change.target, *args, limit=batch, closed_reason=reason
                )
                records = [
                    (s, _record(ctx.actor, event, before, change.target, reason or "", ctx.request_id))
                    for s in moved
                ]
                if change.target in USABLE:  # the Patients of spaces the registry made, after their records
                    await identity.materialise(conn, ctx, moved, after=records)
                else:
                    await audit_store.append_batch(conn, records)
                return len(moved)

            done = await rt.db.interaction(f"lifecycle_run_{event}", step)
            total += done
            if done < batch:
                return total

    counts.opened = await due("open", "notified", "opens_on <= $4", day)
    counts.closed_suspended = await due(
        "close",
        "suspended",
        "state = 'suspended' AND (state_at AT TIME ZONE 'Europe/Paris')::date + $4::int <= $5",
        settings.suspension_days,
        day,
        reason="suspension",
    )
    counts.closed_deceased = await _close_deceased(rt, ctx, day, batch)
    counts.destroyed = await _destroy_due(rt, ctx, day, batch)
    counts.of_age = await _of_age(rt, ctx, day, batch)
    return counts


#: A minor's space in these states, on the 18th birthday, sends the young adult their own notice and code.
#: A `registered` one is only marked: its first notice, still to come, goes to them. A suspended or closed
#: one waits: it is handled when it is live again.
OF_AGE_NOTICED = frozenset({"notified", "open", "active"})
OF_AGE_STATES = OF_AGE_NOTICED | {"registered"}


async def _of_age(rt: Runtime, ctx: Context, day: date, batch: int) -> int:
    """Minors who came of age by `day`: their representatives' rights ended on their `until` date (the policy
    compares it with each request's day: nothing to revoke); what is done here, once per space and in one
    transaction with its trace, is the young adult's own notice with a new activation code, which makes the
    child's code the representatives received useless. What was hidden from representatives stays as it
    was: the labels are on the documents, not on the people."""
    from espace_sante.spaces import notices  # notices calls this module's transitions

    total = 0
    while True:

        async def step(conn: Conn) -> int:
            due = await store.coming_of_age(conn, OF_AGE_STATES, day, limit=batch)
            records = []
            for space_id, state in due:
                if state in OF_AGE_NOTICED:
                    try:
                        await notices.of_age_in(conn, ctx, space_id, day)
                    except NotFound:  # no Patient to write to (an API-made space without one): traced only
                        log.warning("of-age notice without a Patient in space %s", space_id)
                records.append((space_id, _record(ctx.actor, "of_age", state, state, "", ctx.request_id)))
            await store.mark_of_age(conn, [s for s, _ in due], day)
            await audit_store.append_batch(conn, records)
            return len(due)

        done = await rt.db.interaction("lifecycle_run_of_age", step)
        total += done
        if done < batch:
            return total


async def close_deceased(rt: Runtime, as_of: date | None = None) -> int:
    """Close now the spaces of people the registry says died (the run's own step): the notices call it first,
    so that nobody is sent a notice and a code for a dead person."""
    return await _close_deceased(rt, Context(rt, LIFECYCLE), as_of or clock.today(), BATCH)


async def _close_deceased(rt: Runtime, ctx: Context, day: date, batch: int) -> int:
    """Spaces whose Patient carries a death date (deceasedDateTime, written by the registry import) on or
    before `day` are closed. Only identities changed since they were last checked are decrypted (the spaces'
    `identity_version` above their `death_checked`, migrations/0022)."""
    reading = decide(ctx.actor, "read", "Patient")
    closed = 0
    after: uuid.UUID | None = None
    while True:

        async def step(conn: Conn, start: uuid.UUID | None) -> tuple[int, uuid.UUID | None, int]:
            found = await store.death_candidates(conn, LIVE, after=start, limit=batch)
            dead: list[uuid.UUID] = []
            checked: list[tuple[uuid.UUID, int]] = []
            # No Patient yet: the identities waiting for them (spaces/identity.py), read in bulk.
            waiting, unreadable = await _waiting_identities(
                conn, rt, reading, [c.space_id for c in found if not c.patients and c.waiting is not None]
            )
            for c in found:
                bodies: list[dict[str, Any]] = []
                try:
                    for patient_id in c.patients:
                        stored = await resources.read(
                            conn, rt.keys, reading, c.space_id, "Patient", patient_id
                        )
                        bodies.append(
                            {} if stored is None or stored.body is None else orjson.loads(stored.body)
                        )
                except (resources.DataUnreadable, DecryptionFailed):
                    # One space whose Patient cannot be decrypted (a lost key, a damaged row: `documents
                    # verify` and `audit verify` are the tools) must not stop the run for everyone else; it is
                    # not marked checked, so every run logs it again until someone repairs it.
                    log.warning("death check: unreadable Patient in space %s", c.space_id)
                    continue
                if not c.patients and c.waiting is not None:
                    if c.space_id in unreadable:
                        continue  # logged; read again next run, as an unreadable Patient
                    bodies.append(waiting.get(c.space_id, {}))
                deaths = [died for b in bodies if (died := str(b.get("deceasedDateTime") or "")[:10])]
                if any(died <= day.isoformat() for died in deaths):
                    dead.append(c.space_id)  # checked too: a space closed on death is never reopened
                    checked.append((c.space_id, c.identity_version))
                elif not deaths:  # a death date still to come is read again next run
                    checked.append((c.space_id, c.identity_version))
            moved = await store.move_due(
                conn, "space_id = ANY($4::uuid[])", LIVE, "closed", dead, limit=batch, closed_reason="death"
            )
            await store.mark_death_checked(conn, checked)
            await audit_store.append_batch(
                conn, [(s, _record(ctx.actor, "close", "", "closed", "death", ctx.request_id)) for s in moved]
            )
            return len(moved), (found[-1].space_id if found else None), len(found)

        moved, last, seen = await rt.db.interaction("lifecycle_run_deaths", step, after)
        closed += moved
        if seen < batch or last is None:
            return closed
        after = last


async def _waiting_identities(
    conn: Conn, rt: Runtime, reading: Decision, spaces: list[uuid.UUID]
) -> tuple[dict[uuid.UUID, dict[str, Any]], set[uuid.UUID]]:
    """The identities waiting in these spaces, in a few statements, and the spaces whose identity cannot be
    decrypted (then each is read alone to find which, and logged)."""
    try:
        found = await identity.bodies(conn, rt, spaces, decision=reading)
        return {space_id: body for space_id, (_, body) in found.items()}, set()
    except (resources.DataUnreadable, DecryptionFailed):
        pass
    bodies: dict[uuid.UUID, dict[str, Any]] = {}
    unreadable: set[uuid.UUID] = set()
    for space_id in spaces:
        try:
            one = await identity.body(conn, rt, space_id, decision=reading)
        except (resources.DataUnreadable, DecryptionFailed):
            log.warning("death check: unreadable Patient in space %s", space_id)
            unreadable.add(space_id)
            continue
        if one is not None:
            bodies[space_id] = one[1]
    return bodies, unreadable


async def _destroy_due(rt: Runtime, ctx: Context, day: date, batch: int) -> int:
    """Closed spaces past the archive period, or whose asked destruction is due: rows deleted, data keys
    destroyed, one `space:destroy` record each (the trace stays)."""
    reading = decide(ctx.actor, "read", "Patient")  # the holders' INS, for their set-aside documents
    destroyed = 0
    while True:

        async def step(conn: Conn) -> tuple[int, list[tuple[uuid.UUID, uuid.UUID]]]:
            spaces = await store.due_for_destruction(conn, day, rt.settings.archive_years, limit=batch)
            if not spaces:
                return 0, []
            objects = await store.blob_keys(conn, spaces)
            # The holders' documents of the former DMP still set aside (never deposited: their space was
            # not open, or closed) go with the space, their keys too (storage/legacy.py).
            await legacy_store.forget(conn, rt.keys, await people_store.ins_of_spaces(conn, reading, spaces))
            await store.erase(conn, rt.keys, spaces)
            moved = await store.move_due(
                conn,
                "space_id = ANY($4::uuid[])",
                TRANSITIONS["destroy"].sources,
                "destroyed",
                spaces,
                limit=batch,
            )
            await audit_store.append_batch(
                conn,
                [
                    (s, _record(ctx.actor, "destroy", "closed", "destroyed", "", ctx.request_id))
                    for s in moved
                ],
            )
            return len(moved), objects

        done, objects = await rt.db.interaction("lifecycle_run_destroy", step)
        await _delete_objects(rt, objects)
        destroyed += done
        if done < batch:
            return destroyed
