"""One change of state of one space, in the caller's transaction (PRODUCT.md section 2, docs/lifecycle.md):
the checks (the space is one the actor may know exists, the event is theirs, the state allows it), the side
effects, the new state and its record in the space's chain. The lower half of the lifecycle: the notices
(the `notify` and `request` transitions they write with a notice), activation (`activate`, `oppose` with a
spent code) and spaces/lifecycle.py (the named steps, the periodic run) all call it, and it calls none of
them, so that the dependencies between them go one way."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any, Literal

import orjson

from espace_sante import clock
from espace_sante.access import lifecycle as rule
from espace_sante.access.actors import LIFECYCLE, Actor
from espace_sante.access.policy import decide
from espace_sante.access.reasons import words
from espace_sante.context import Context
from espace_sante.errors import BadRequest, Conflict, Forbidden, NotFound
from espace_sante.people import stepup
from espace_sante.spaces import identity
from espace_sante.storage import access as access_store
from espace_sante.storage import audit as audit_store
from espace_sante.storage import lifecycle as store
from espace_sante.storage import people as people_store
from espace_sante.storage import resources
from espace_sante.storage.audit import SUCCESS, Record
from espace_sante.storage.db import Conn

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


async def check_sees(conn: Conn, actor: Actor, space_id: uuid.UUID) -> None:
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


def record(actor: Actor, event: str, before: str, after: str, reason: str, request_id: str) -> Record:
    """A change of state as the space's chain records it (`space:<event>`, `before>after|reason`)."""
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


async def apply_in(
    conn: Conn, ctx: Context, event: str, space_id: uuid.UUID, reason: str, on: date
) -> tuple[str, str]:
    """One transition of one space in the caller's transaction: checks, side effects, new state, trace."""
    step = TRANSITIONS[event]
    row = await store.lock(conn, space_id)
    if row is None or row.state == "destroyed":
        raise NotFound("Espace introuvable / space not found")
    await check_sees(conn, ctx.actor, space_id)
    allowed, why = rule.may(ctx.actor, event)
    if not allowed:
        raise Forbidden(f"« {event} » : {words(why, 'fr')} / « {event} »: {words(why, 'en')}")
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
    records = [(space_id, record(ctx.actor, event, row.state, target, reason, ctx.request_id))]
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


async def notify_in(conn: Conn, ctx: Context, space_id: uuid.UUID, on: date) -> tuple[str, str]:
    """`notify` in the caller's transaction: the notices record the notice, its code and the new state in one
    transaction (spaces/notices/issue.py), so that a crash never sends a notice twice nor skips one."""
    return await apply_in(conn, ctx, "notify", space_id, "", on)


async def oppose_in(conn: Conn, ctx: Context, space_id: uuid.UUID, channel: Channel) -> tuple[str, str]:
    """`oppose` in the caller's transaction: an online opposition spends the activation code and records the
    opposition in one transaction (spaces/activation.py), so that a code is never spent without it. The
    document objects to delete after commit are appended to `ctx.uploads` (spaces/lifecycle.transition does it for `oppose`)."""
    if channel not in ("online", "phone", "counter"):
        raise BadRequest(f"canal inconnu / unknown channel {channel!r} (online, phone, counter)")
    return await apply_in(conn, ctx, "oppose", space_id, channel, clock.today())


async def request_in(conn: Conn, ctx: Context, space_id: uuid.UUID) -> tuple[str, str]:
    """`request` in the caller's transaction: an opposed person's new notice is recorded with it
    (spaces/notices/issue.ask_again)."""
    return await apply_in(conn, ctx, "request", space_id, "", clock.today())


async def activate_in(conn: Conn, ctx: Context, space_id: uuid.UUID) -> tuple[str, str]:
    """`activate` in the caller's transaction: the activation code is spent if and only if this commits."""
    return await apply_in(conn, ctx, "activate", space_id, "", clock.today())
