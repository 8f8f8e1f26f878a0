"""The holder's list of documents, as « Mes documents » shows it (web/holder/documents.py): one service call,
one transaction, one trace record.

`for_holder(ctx, space_id, count=…)` is for the space's holder, or a legal representative acting on a minor's
space. In one interaction it reads the facts of that space (access/policy decides on them: her relation, the
space's state, the holder's Patient), reads the current documents newest first with the authors they name in
the directory, and writes ONE `resource:search` record in the space's chain for the list shown. A generic
search would cost two (the Patient found by INS, then the documents) and a transaction each (issue 15).

The state comes from the same facts: an open space is listed at once. A space out of reach in its state
(closed, suspended) or before its opening (no Patient yet, so no facts) lists nothing and traces nothing: the
page then asks the lifecycle for the state's details (spaces/lifecycle.py `status`, which also answers "not
found" to anyone the space is not theirs)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from espace_sante import clock
from espace_sante.access.policy import PROFESSIONAL_STATES, Decision, decide, needs_facts
from espace_sante.access.reasons import words
from espace_sante.audit import trace
from espace_sante.context import Context
from espace_sante.errors import Forbidden
from espace_sante.record.resources import parse_request
from espace_sante.storage import access as access_store
from espace_sante.storage import resources as store
from espace_sante.storage import search as search_store
from espace_sante.storage.db import Conn

#: Who this list is for: the space's holder, or a representative acting on a minor's space.
KINDS = frozenset({"holder", "representative"})
#: What the trace says was asked: parameter names only, as every search's record does (record/resources.py).
SEARCHED = "?_count&_include&_sort&patient&status"


@dataclass(frozen=True)
class Listing:
    """What the page shows. `state` is the space's lifecycle state when the facts gave it (None: the space
    has no Patient yet, or is not hers: the lifecycle says which); `documents` is empty unless the space is
    open."""

    state: str | None
    patient_id: str = ""
    documents: tuple[store.Stored, ...] = ()
    #: Directory entries and contained-space resources the documents name as authors, by `Type/id`.
    authors: tuple[store.Stored, ...] = ()
    more: bool = False

    @property
    def open(self) -> bool:
        return self.state in PROFESSIONAL_STATES


async def for_holder(ctx: Context, space_id: uuid.UUID, *, count: int) -> Listing:
    """The space's current documents, newest first (at most `count`), with their authors."""
    actor = ctx.actor
    if actor.kind not in KINDS:  # a professional searches (ITI-67); an app uses the FHIR API
        raise Forbidden(
            "liste réservée au titulaire de l'espace ou à son représentant / this list is for the space's holder "
            "or their representative"
        )
    base = decide(actor, "search", "DocumentReference")
    if not base.allowed:
        await trace.refusal(ctx, base)
        raise Forbidden(
            f"accès refusé : liste des documents ({words(base.reason, 'fr')}) / access denied: list of "
            f"documents ({words(base.reason, 'en')})"
        )
    return await ctx.runtime.db.interaction("documents_list", _list_in, ctx, base, space_id, count)


async def _list_in(conn: Conn, ctx: Context, base: Decision, space_id: uuid.UUID, count: int) -> Listing:
    actor = ctx.actor
    today = clock.today()
    facts = [
        f
        for f in await access_store.facts(conn, actor, [space_id], today=today)
        if f.space_id == space_id and f.relation in ("holder", "representative")
    ]
    if not facts:
        return Listing(None)
    fact = facts[0]
    if fact.state not in PROFESSIONAL_STATES:
        return Listing(fact.state, fact.patient_id)
    decision = decide(actor, "search", "DocumentReference", facts, today=today)
    if not decision.allowed or not decision.covers(space_id):
        return Listing(fact.state, fact.patient_id)
    request = parse_request(
        ctx,
        "DocumentReference",
        [
            ("patient", fact.patient_id),
            ("status", "current"),
            ("_sort", "-date"),
            ("_count", str(count)),
            ("_include", "DocumentReference:author"),
        ],
    )
    keys = ctx.runtime.keys
    matches, more = await search_store.page(conn, keys, decision, request)
    authors: list[store.Stored] = []
    page = [(m.space_id, m.resource_id) for m in matches]
    for rtype, found in await search_store.includes(conn, request, page):
        # Each author passes the policy like a read, on the facts already read: what she may not read is
        # left out, as a search's `_include` does.
        read = decide(actor, "read", rtype)
        if read.allowed and read.slices is not None and needs_facts(actor):
            read = decide(actor, "read", rtype, facts, today=today)
        if not read.allowed:
            continue
        wanted = [k for k in dict.fromkeys(found) if read.covers(k[0])]
        authors += await store.fetch_current(conn, keys, read, rtype, wanted)
    if matches:
        # One record in the space's chain for the list shown (directory reads are not traced: audit/trace.py).
        await trace.accesses(
            conn,
            ctx,
            decision,
            "resource:search",
            [space_id],
            entity_type="DocumentReference",
            detail=SEARCHED,
        )
    return Listing(fact.state, fact.patient_id, tuple(matches), tuple(authors), more)
