"""The death check (docs/lifecycle.md): the spaces of people the registry says died are closed, for good.
The periodic run does it (spaces/lifecycle.run), and the notices first, so that nobody is sent a notice and a
code for a dead person (spaces/notices/issue.send)."""

from __future__ import annotations

import logging
import uuid
from datetime import date
from typing import Any

import orjson

from espace_sante import clock
from espace_sante.access.actors import LIFECYCLE
from espace_sante.access.policy import Decision, decide
from espace_sante.context import Context
from espace_sante.crypto import DecryptionFailed
from espace_sante.runtime import Runtime
from espace_sante.spaces import identity
from espace_sante.spaces.transitions import LIVE, record
from espace_sante.storage import audit as audit_store
from espace_sante.storage import lifecycle as store
from espace_sante.storage import resources
from espace_sante.storage.db import Conn

#: Spaces per transaction (as the lifecycle's run).
BATCH = 1000

log = logging.getLogger(__name__)


async def close_deceased(rt: Runtime, as_of: date | None = None) -> int:
    """Close now the spaces of people the registry says died (the run's own step): the notices call it first,
    so that nobody is sent a notice and a code for a dead person."""
    return await close_due(rt, Context(rt, LIFECYCLE), as_of or clock.today(), BATCH)


async def close_due(rt: Runtime, ctx: Context, day: date, batch: int) -> int:
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
                conn, "space_id = ANY($2::uuid[])", LIVE, "closed", dead, limit=batch, closed_reason="death"
            )
            await store.mark_death_checked(conn, checked)
            await audit_store.append_batch(
                conn, [(s, record(ctx.actor, "close", "", "closed", "death", ctx.request_id)) for s in moved]
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
