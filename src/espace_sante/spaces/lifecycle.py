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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from espace_sante import clock
from espace_sante.access import lifecycle as rule
from espace_sante.access.actors import LIFECYCLE
from espace_sante.access.policy import SpaceFacts, decide
from espace_sante.audit import trace
from espace_sante.context import Context
from espace_sante.errors import BadRequest, NotFound
from espace_sante.runtime import Runtime
from espace_sante.spaces import deaths, identity, transitions
from espace_sante.spaces.notices import issue
from espace_sante.spaces.transitions import Channel, Event, record
from espace_sante.storage import access as access_store
from espace_sante.storage import audit as audit_store
from espace_sante.storage import legacy as legacy_store
from espace_sante.storage import lifecycle as store
from espace_sante.storage import people as people_store
from espace_sante.storage.db import Conn
from espace_sante.storage.documents import blob_key

#: One transition of one space in the caller's transaction (its checks, side effects and record) is
#: spaces/transitions.py, which the notices and activation call too (`notify_in`, `request_in`, `activate_in`,
#: `oppose_in`); the names the surfaces read are kept here.
STATE_WORDS = transitions.STATE_WORDS
TRANSITIONS = rule.TRANSITIONS
LIVE = transitions.LIVE
USABLE = transitions.USABLE
kept_until = transitions.kept_until
destruction_day = transitions.destruction_day
BATCH = 1000

log = logging.getLogger(__name__)


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
        f"lifecycle_{event}", transitions.apply_in, ctx, event, space_id, reason, on or clock.today()
    )
    shredded = ctx.uploads[objects_before:]
    del ctx.uploads[objects_before:]
    await _delete_objects(ctx.runtime, shredded)
    return result


# --- the named steps (what the services, the API and the CLI call) --------------------------------------------


async def notify(ctx: Context, space_id: uuid.UUID, *, on: date | None = None) -> tuple[str, str]:
    """The notice was sent (on `on`): the space opens `opposition_window_days` later unless opposed."""
    return await transition(ctx, space_id, "notify", on=on)


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


async def represented(
    ctx: Context, *, named: Callable[[uuid.UUID], bool] = lambda _: True
) -> list[Represented]:
    """The minors' spaces the signed-in person represents today (rights not ended: at 18 they drop out of
    this list the same day the policy stops answering), with the child's INS and name from the space's
    identity (its Patient, or the registry's while it waits) and the space's state: what the portal offers to
    switch to. Empty for anyone but a person acting as themselves or as a representative.

    The children's identities are read as their representative, under the policy (a child's space in a state
    the policy does not reach shows no name), and each read is traced in the child's chain as hers: only for
    the spaces `named` picks (a page that shows one child's name reads that one; the others come with their
    space and state only, their identity neither read nor traced)."""
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
        wanted = [s for s in spaces if named(s)]
        found = await identity.bodies(conn, rt, wanted, decision=reading) if wanted else {}
        own_ins = decide(LIFECYCLE, "read", "Patient")
        out = []
        for space_id, state, _ in rows:
            if space_id not in wanted:
                out.append(Represented(space_id, "", "", state))
                continue
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
        await transitions.check_sees(conn, actor, space_id)
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
    await ctx.runtime.db.read("lifecycle_sees", transitions.check_sees, ctx.actor, space_id)
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
        # holder's page (spaces/notices/issue.ask_again), rather than wait for the next `notices send`.
        await issue.ask_again(ctx, space_id)
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
                    (s, record(ctx.actor, event, before, change.target, reason or "", ctx.request_id))
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

    counts.opened = await due("open", "notified", "opens_on <= $2", day)
    counts.closed_suspended = await due(
        "close",
        "suspended",
        "state = 'suspended' AND (state_at AT TIME ZONE 'Europe/Paris')::date + $2::int <= $3",
        settings.suspension_days,
        day,
        reason="suspension",
    )
    counts.closed_deceased = await deaths.close_due(rt, ctx, day, batch)
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
    total = 0
    while True:

        async def step(conn: Conn) -> int:
            due = await store.coming_of_age(conn, OF_AGE_STATES, day, limit=batch)
            records = []
            for space_id, state in due:
                if state in OF_AGE_NOTICED:
                    try:
                        await issue.of_age_in(conn, ctx, space_id, day)
                    except NotFound:  # no Patient to write to (an API-made space without one): traced only
                        log.warning("of-age notice without a Patient in space %s", space_id)
                records.append((space_id, record(ctx.actor, "of_age", state, state, "", ctx.request_id)))
            await store.mark_of_age(conn, [s for s, _ in due], day)
            await audit_store.append_batch(conn, records)
            return len(due)

        done = await rt.db.interaction("lifecycle_run_of_age", step)
        total += done
        if done < batch:
            return total


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
                "space_id = ANY($2::uuid[])",
                TRANSITIONS["destroy"].sources,
                "destroyed",
                spaces,
                limit=batch,
            )
            await audit_store.append_batch(
                conn,
                [(s, record(ctx.actor, "destroy", "closed", "destroyed", "", ctx.request_id)) for s in moved],
            )
            return len(moved), objects

        done, objects = await rt.db.interaction("lifecycle_run_destroy", step)
        await _delete_objects(rt, objects)
        destroyed += done
        if done < batch:
            return destroyed
