"""Reading the trace as FHIR AuditEvent: read one record, search a patient's records (newest first).

The trace is not stored as FHIR: each record is rendered on the way out (audit/fhir.py), with its plain-words
sentence. A search must name its patient: listing the whole national trace is an operator function, for later.
Reading the trace is itself an access to the space's data (R1111-43): it is recorded in that space's chain,
after the listing, in the same transaction, so a listing never contains its own reading. Paging pins a
snapshot of the chain (`_upto`, the highest sequence number listed) in the page links, so the records those
readings append never shift the next page.

Supported search parameters (FHIR R4 auditevent.html#search): patient (required), date and _lastUpdated
(eq, ne, lt, le, gt, ge, sa, eb), action, subtype, outcome, type, entity, _id, agent and source.
The trace records who acted by identifier (audit/fhir.py: agent.who.identifier, RPPS for a professional), so
`agent` is answered in its R4 form for logical references, `agent:identifier=system|value` (search.html
#reference, modifier `identifier`; search-modifier-code: "applies to the identifier on the resource, not the
reference"), and `agent=Practitioner/<id>` by the RPPS the directory entry carries (Reference.identifier's
note allows a server to resolve a logical reference). Any other literal agent, and `source`, never match."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

import orjson

from espace_sante.access.policy import Decision
from espace_sante.audit import fhir as audit_fhir
from espace_sante.audit import trace
from espace_sante.context import Context
from espace_sante.errors import BadRequest, NotFound
from espace_sante.fhir import compartment
from espace_sante.fhir.searchquery import DateQuery, ReferenceQuery, SearchRequest, TokenQuery
from espace_sante.record import resources as fhir
from espace_sante.storage import auditevents as trace_store
from espace_sante.storage import people as people_store
from espace_sante.storage import visibility
from espace_sante.storage.audit import StoredRecord
from espace_sante.storage.db import Conn
from espace_sante.storage.keys import DIRECTORY_SPACE
from espace_sante.storage.resources import Stored

RTYPE = "AuditEvent"
#: The snapshot parameter of page links (not a FHIR parameter: it only appears in links the server makes).
UPTO = "_upto"

_SUPPORTED = frozenset(
    {
        "patient",
        "date",
        "_lastUpdated",
        "action",
        "subtype",
        "outcome",
        "type",
        "entity",
        "_id",
        "agent",
        "source",
    }
)
_NEWEST_FIRST = {("date", True), ("_lastUpdated", True)}
#: Reference parameters searched by `:identifier` (the only modifier this view takes).
_BY_IDENTIFIER = frozenset({"agent"})
#: Identifier system -> the actor kinds recorded under it (audit/fhir.py ACTOR_SYSTEMS), with the RPPS's OID
#: form, which the directory also uses for the same eleven digits.
_KINDS_OF_SYSTEM: dict[str, frozenset[str]] = {
    system: frozenset(k for k, s in audit_fhir.ACTOR_SYSTEMS.items() if s == system)
    for system in set(audit_fhir.ACTOR_SYSTEMS.values())
} | {system: frozenset({"practitioner"}) for system in people_store.RPPS_SYSTEMS}


def _bad(message_fr: str, message_en: str, expression: str | None = None) -> BadRequest:
    return BadRequest(f"{message_fr} / {message_en}", expression=expression)


def _split_upto(pairs: Sequence[tuple[str, str]]) -> tuple[int | None, list[tuple[str, str]]]:
    upto = [v for k, v in pairs if k == UPTO]
    rest = [(k, v) for k, v in pairs if k != UPTO]
    if not upto:
        return None, rest
    if len(upto) > 1 or not (upto[0].isascii() and upto[0].isdigit()) or len(upto[0]) > 18:
        raise _bad("_upto invalide", "invalid _upto", UPTO)
    return int(upto[0]), rest


def _patient(request: SearchRequest) -> str:
    """The patient id a search names; 400 when it names none, several, or not a Patient."""
    clauses = [c for c in request.clauses if c.name == "patient"]
    if not clauses:
        raise _bad(
            "AuditEvent : le paramètre patient est obligatoire (patient=Patient/<id>) ; la lecture de "
            "toute la trace est une fonction d'exploitation, non disponible",
            "AuditEvent: the patient parameter is required (patient=Patient/<id>); reading the whole "
            "trace is an operator function, not available",
            "patient",
        )
    values = [v for c in clauses for v in c.values]
    if len(clauses) > 1 or len(values) != 1 or clauses[0].modifier or clauses[0].chain:
        raise _bad(
            "AuditEvent : un seul patient par recherche", "AuditEvent: one patient per search", "patient"
        )
    value = values[0]
    if not isinstance(value, ReferenceQuery) or value.target_type not in (None, "Patient"):
        raise _bad("patient doit désigner un Patient", "patient must name a Patient", "patient")
    return value.target_id


def _check_shape(request: SearchRequest) -> None:
    """What this view does not do is refused, never silently ignored: a trace listing that quietly dropped a
    filter would show the holder accesses they did not ask about."""
    if request.includes or request.revincludes:
        raise _bad(
            "_include et _revinclude ne sont pas pris en charge sur AuditEvent",
            "_include and _revinclude are not supported on AuditEvent",
        )
    if any((s.name, s.descending) not in _NEWEST_FIRST for s in request.sort):
        raise _bad(
            "AuditEvent est toujours trié du plus récent au plus ancien (_sort=-date)",
            "AuditEvent is always sorted newest first (_sort=-date)",
            "_sort",
        )
    for clause in request.clauses:
        if clause.name not in _SUPPORTED:
            raise _bad(
                f"paramètre non pris en charge sur AuditEvent : {clause.name}",
                f"unsupported parameter on AuditEvent: {clause.name}",
                clause.name,
            )
        by_identifier = clause.modifier == "identifier" and clause.name in _BY_IDENTIFIER
        if (clause.modifier and not by_identifier) or clause.chain or clause.missing is not None:
            raise _bad(
                f"modificateurs et chaînage non pris en charge sur AuditEvent : {clause.name}",
                f"modifiers and chaining are not supported on AuditEvent: {clause.name}",
                clause.name,
            )


def _codes(values: Sequence[object], system: str) -> set[str | None]:
    """The codes a token clause accepts in `system` (None: any code of that system)."""
    codes: set[str | None] = set()
    for v in values:
        if not isinstance(v, TokenQuery):
            continue
        if v.any_system or v.system == system:
            codes.add(v.code)
    return codes


def _ranges(values: Sequence[object], name: str) -> list[trace_store.Range]:
    ranges = []
    for v in values:
        if not isinstance(v, DateQuery):
            continue
        low, high = v.low, v.high
        match v.prefix:
            case "eq":
                ranges.append(trace_store.Range(low, high))
            case "ne":
                ranges.append(trace_store.Range(low, high, negate=True))
            case "lt" | "eb":
                ranges.append(trace_store.Range(None, low))
            case "le":
                ranges.append(trace_store.Range(None, high))
            case "gt" | "sa":
                ranges.append(trace_store.Range(high, None))
            case "ge":
                ranges.append(trace_store.Range(low, None))
            case _:
                raise _bad(f"préfixe {v.prefix} non pris en charge", f"unsupported prefix {v.prefix}", name)
    return ranges


def _agents(
    values: Sequence[object], modifier: str | None, rpps: dict[str, set[str]]
) -> list[trace_store.Agent]:
    """The actors one `agent` clause names: (kind or None for any, id or None for any)."""
    found: list[trace_store.Agent] = []
    for v in values:
        if modifier == "identifier" and isinstance(v, TokenQuery):
            if v.any_system:
                found.append((None, v.code))  # `agent:identifier=123`: that value in any system
            elif v.system is not None:  # `|123` (no system) matches nothing: every actor has one
                found += [(kind, v.code) for kind in sorted(_KINDS_OF_SYSTEM.get(v.system, ()))]
        elif isinstance(v, ReferenceQuery) and v.target_type in (None, "Practitioner"):
            found += [("practitioner", number) for number in sorted(rpps.get(v.target_id, ()))]
    return found


def _practitioner_ids(request: SearchRequest) -> list[str]:
    """The directory Practitioners named by literal `agent` references, to resolve to their RPPS."""
    return sorted(
        {
            v.target_id
            for c in request.clauses
            if c.name == "agent" and c.modifier is None
            for v in c.values
            if isinstance(v, ReferenceQuery) and v.target_type in (None, "Practitioner")
        }
    )


def _query(
    request: SearchRequest,
    space_id: uuid.UUID,
    upto: int,
    patient_id: str,
    rpps: dict[str, set[str]] | None = None,
) -> trace_store.TraceQuery:
    dates: list[list[trace_store.Range]] = []
    agents: list[list[trace_store.Agent]] = []
    subtypes: set[str] | None = None
    outcomes: set[str] | None = None
    seqs: set[int] | None = None
    entities: list[tuple[str | None, str]] | None = None
    nothing = False

    def narrow(current: set[str] | None, allowed: set[str]) -> set[str]:
        return allowed if current is None else current & allowed

    every_subtype = set(audit_fhir.ACTIONS)
    for clause in request.clauses:
        values = clause.values
        if clause.name in ("date", "_lastUpdated"):
            dates.append(_ranges(values, clause.name))
        elif clause.name == "action":
            codes = _codes(values, audit_fhir.AUDIT_EVENT_ACTION)
            allowed = {s for s, a in audit_fhir.ACTIONS.items() if None in codes or a in codes}
            subtypes = narrow(subtypes, allowed)
        elif clause.name == "subtype":
            codes = _codes(values, audit_fhir.RESTFUL_INTERACTION)
            allowed = every_subtype if None in codes else {c for c in codes if c is not None}
            subtypes = narrow(subtypes, allowed)
        elif clause.name == "outcome":
            codes = _codes(values, audit_fhir.AUDIT_EVENT_OUTCOME)
            allowed = {"0", "4", "8", "12"} if None in codes else {c for c in codes if c is not None}
            outcomes = narrow(outcomes, allowed)
        elif clause.name == "type":
            # Every record is a RESTful operation (audit-event-type#rest).
            if not (_codes(values, audit_fhir.AUDIT_EVENT_TYPE) & {None, "rest"}):
                nothing = True
        elif clause.name == "_id":
            wanted = set()
            for v in values:
                parsed = audit_fhir.parse_id(v.code or "") if isinstance(v, TokenQuery) else None
                if parsed is not None and parsed[0] == space_id:
                    wanted.add(parsed[1])
            seqs = wanted if seqs is None else seqs & wanted
        elif clause.name == "entity":
            found: list[tuple[str | None, str]] = []
            for v in values:
                if not isinstance(v, ReferenceQuery):
                    continue
                if v.target_id == patient_id and v.target_type in (None, "Patient"):
                    break  # every record names the patient as an entity: no restriction
                found.append((v.target_type, v.target_id))
            else:
                entities = found if entities is None else [e for e in entities if e in found]
        elif clause.name == "agent":
            agents.append(_agents(values, clause.modifier, rpps or {}))
        elif clause.name == "source":
            nothing = True  # the observer (this server) carries an identifier, never a literal reference
    return trace_store.TraceQuery(
        space_id,
        upto,
        dates=dates,
        subtypes=None if subtypes is None else frozenset(subtypes),
        outcomes=None if outcomes is None else frozenset(outcomes),
        seqs=None if seqs is None else frozenset(seqs),
        entities=entities,
        agents=agents,
        nothing=nothing,
    )


def _searched(request: SearchRequest) -> str:
    """The trace's own record of this search: parameter names only (record/resources.py does the same)."""
    return "?" + "&".join(sorted({name for name, _ in request.echo if name != UPTO}))


async def _rendered(
    conn: Conn, ctx: Context, records: Sequence[StoredRecord], patient_id: str | None
) -> list[Stored]:
    """Stored-like AuditEvents, so that the FHIR renderers (and Bundles) treat them as any resource."""
    # Machine clients are recorded by id; show the name they were registered with.
    unnamed = sorted(
        {
            s.record.actor_id
            for s in records
            if s.record.actor_kind in ("client", "app") and not s.record.actor_display
        }
    )
    names = await trace_store.client_names(conn, unnamed)
    base = ctx.runtime.settings.fhir_base
    out = []
    for s in records:
        record = s.record
        if not record.actor_display and record.actor_id in names:
            record = replace(record, actor_display=names[record.actor_id])
        event = audit_fhir.audit_event(s.space_id, s.seq, record, patient_id=patient_id, base=base)
        out.append(
            Stored(RTYPE, str(event["id"]), 1, record.recorded_at, orjson.dumps(event), "POST", s.space_id)
        )
    return out


# --- read ------------------------------------------------------------------------------------------------


def _own_actions(decision: Decision, space_id: uuid.UUID) -> tuple[str, str] | None:
    """(kind, id) when the decision reaches only the actor's own records in this space (a professional who
    is not the médecin traitant), else None."""
    rows = decision.rows_in(space_id)
    if rows is None or not rows.own_actions:
        return None
    kind, _, ident = rows.own_actions.partition(":")
    return kind, ident


async def _hidden(conn: Conn, decision: Decision, space_id: uuid.UUID) -> set[tuple[str, str]]:
    """Documents hidden from this reader: their accesses stay out of the trace they read."""
    rows = decision.rows_in(space_id)
    if rows is None or not rows.hidden:
        return set()
    return set(await visibility.hidden_documents(conn, space_id, rows.hidden))


async def read_in(conn: Conn, ctx: Context, decision: Decision, rid: str) -> Stored:
    """One record of a patient's trace, inside the caller's transaction `conn`; the reading is recorded in
    the same space's chain."""
    parsed = audit_fhir.parse_id(rid)
    if parsed is not None and parsed[0] != DIRECTORY_SPACE:
        decision = await fhir.scoped(conn, ctx, decision, [parsed[0]])
    # The directory's chain (refusals, operator actions) is no patient's trace: not readable here.
    if (
        parsed is None
        or parsed[0] == DIRECTORY_SPACE
        or not await visibility.covers(conn, decision, parsed[0])
    ):
        raise NotFound(f"{RTYPE}/{rid} introuvable / not found")
    space_id, seq = parsed
    found = await trace_store.one(conn, decision, space_id, seq)
    own = _own_actions(decision, space_id)
    hidden = await _hidden(conn, decision, space_id)
    if (
        found is None
        or (own is not None and (found.record.actor_kind, found.record.actor_id) != own)
        or (found.record.entity_type or "", found.record.entity_id or "") in hidden
    ):
        raise NotFound(f"{RTYPE}/{rid} introuvable / not found")
    patient_id = await trace_store.patient_of(conn, space_id)
    (stored,) = await _rendered(conn, ctx, [found], patient_id)
    await trace.access(
        conn, ctx, decision, "resource:read", space_id, entity_type=RTYPE, entity_id=rid, version=1
    )
    return stored


# --- search ----------------------------------------------------------------------------------------------


def parse_search(ctx: Context, pairs: Sequence[tuple[str, str]]) -> SearchRequest:
    """A search of the trace, checked before any transaction: it names one patient, and asks nothing this view
    does not do. A page link's snapshot (`_upto`) is kept in the request's echo."""
    upto, rest = _split_upto(pairs)
    request = fhir.parse_request(ctx, RTYPE, rest, by_identifier=_BY_IDENTIFIER)
    _patient(request)
    _check_shape(request)
    if upto is not None:
        request.echo.append((UPTO, str(upto)))
    return request


@dataclass(frozen=True)
class Professional:
    """A professional who appears in a space's trace: his RPPS and his name as last recorded there."""

    rpps: str
    name: str


async def search_in(
    conn: Conn, ctx: Context, decision: Decision, request: SearchRequest, *, others_only: bool = False
) -> fhir.SearchResult:
    """A patient's trace, newest first, inside the caller's transaction `conn` (parse_search made `request`):
    listed up to the snapshot of its `_upto`, or the chain's head, then the reading recorded after it.
    `others_only` leaves out the reader's own records (her home lists what others did)."""
    found, _ = await _search_in(conn, ctx, decision, request, others_only=others_only, professionals=False)
    return found


async def _search_in(
    conn: Conn,
    ctx: Context,
    decision: Decision,
    request: SearchRequest,
    *,
    others_only: bool,
    professionals: bool,
) -> tuple[fhir.SearchResult, list[Professional]]:
    """search_in, and with `professionals` the professionals of the same snapshot whose records this reader
    may see, whatever the request's filters (what a filter by professional offers)."""
    upto = next((int(v) for k, v in request.echo if k == UPTO), None)
    patient_id = _patient(request)
    _check_shape(request)
    empty = fhir.SearchResult(request, [], [], 0, False)
    space_id = compartment.space_of(patient_id)
    if space_id is not None and space_id != DIRECTORY_SPACE:
        decision = await fhir.scoped(conn, ctx, decision, [space_id])
    if (
        space_id is None
        or space_id == DIRECTORY_SPACE
        or not await visibility.covers(conn, decision, space_id)
    ):
        return empty, []
    head = await trace_store.head_seq(conn, space_id)
    # The patient named must be the space's own (an id with the right prefix is not enough).
    if head is None or await trace_store.patient_of(conn, space_id) != patient_id:
        return empty, []
    snapshot = head if upto is None else min(upto, head)
    named = _practitioner_ids(request)
    rpps = await people_store.practitioners_rpps(conn, named) if named else {}
    # What this reader may see of the chain at all: their own records only (a professional), without
    # documents hidden from them, without their own records when asked.
    bounds = trace_store.TraceQuery(
        space_id,
        snapshot,
        actor=_own_actions(decision, space_id),
        not_actor=(ctx.actor.kind, ctx.actor.id) if others_only else None,
        excluded=sorted(await _hidden(conn, decision, space_id)),
    )
    query = replace(
        _query(request, space_id, snapshot, patient_id, rpps),
        actor=bounds.actor,
        not_actor=bounds.not_actor,
        excluded=bounds.excluded,
    )
    listed = (
        [Professional(n, name) for n, name in await trace_store.professionals(conn, decision, bounds)]
        if professionals
        else []
    )
    detail = _searched(request)
    if UPTO not in {name for name, _ in request.echo}:
        request.echo.append((UPTO, str(snapshot)))

    total: int | None = None
    matches: list[Stored] = []
    has_next = False
    if request.summary == "count" or request.count == 0:
        total = await trace_store.count(conn, query)
    else:
        found = await trace_store.page(conn, decision, query, limit=request.count + 1, offset=request.offset)
        has_next = len(found) > request.count
        found = found[: request.count]
        if request.total == "accurate" or (not has_next and not found and request.offset > 0):
            total = await trace_store.count(conn, query)
        elif not has_next:
            total = request.offset + len(found)
        matches = await _rendered(conn, ctx, found, patient_id)
    # Listed first, recorded second: the record lands after the snapshot, outside this listing.
    await trace.access(conn, ctx, decision, "resource:search", space_id, entity_type=RTYPE, detail=detail)
    return fhir.SearchResult(request, matches, [], total, has_next), listed


class AuditEventRule(fhir.Rule):
    """The trace read as AuditEvent: read and search only (the server writes the trace), rendered from the
    chain, never from the resource tables."""

    offers = frozenset({"read", "search"})
    #: The trace's own reading is recorded in the chain after the listing, in the same transaction.
    read_in_transaction = True

    def refusal(self, action: str) -> str:
        if action in ("create", "update", "patch", "delete"):
            return f"{RTYPE} est en lecture seule / {RTYPE} is read-only"
        return fhir.READ_AND_SEARCH_ONLY

    def parse_search(self, ctx: Context, rtype: str, pairs: Sequence[tuple[str, str]]) -> SearchRequest:
        return parse_search(ctx, pairs)

    async def read_in(
        self, conn: Conn, ctx: Context, decision: Decision, rid: str, version: int | None
    ) -> Stored:
        return await read_in(conn, ctx, decision, rid)

    async def search_in(
        self, conn: Conn, ctx: Context, decision: Decision, request: SearchRequest
    ) -> fhir.SearchResult:
        return await search_in(conn, ctx, decision, request)


AUDIT_EVENTS = AuditEventRule()


# --- the portal's access history ---------------------------------------------------------------------------


async def history(
    ctx: Context, space_id: uuid.UUID, pairs: Sequence[tuple[str, str]], *, others_only: bool = False
) -> fhir.SearchResult | None:
    """A space's trace as its holder (or a child's representative) reads it in the portal: the very search of
    `GET /fhir/AuditEvent?patient=…` (search_in: the same filters, snapshot, hidden documents and its own
    record once per page), named by the space the page is about rather than by a Patient id the page does not
    know. None when the person is neither the space's holder nor its current representative (the page then
    says it is not found), or the space has no Patient yet. `others_only`: without her own records."""
    decision = await fhir.authorize(ctx, "search", RTYPE)

    async def run(conn: Conn) -> fhir.SearchResult | None:
        patient_id = await fhir.own_patient(conn, ctx, space_id)
        if patient_id is None:
            return None
        request = parse_search(ctx, [("patient", f"Patient/{patient_id}"), *pairs])
        return await search_in(conn, ctx, decision, request, others_only=others_only)

    return await ctx.runtime.db.interaction("trace_history", run)


@dataclass(frozen=True)
class HistoryPage:
    """A page of a space's history, and the professionals who appear in it (the filter's choices)."""

    found: fhir.SearchResult
    professionals: list[Professional]


def by_professional(rpps: str) -> tuple[str, str]:
    """The search parameter that keeps one professional's records: his RPPS as the agent's identifier."""
    return "agent:identifier", f"{audit_fhir.ACTOR_SYSTEMS['practitioner']}|{rpps}"


async def history_page(
    ctx: Context, space_id: uuid.UUID, pairs: Sequence[tuple[str, str]]
) -> HistoryPage | None:
    """history(), with the professionals who appear in the space's trace up to the same snapshot, read in the
    same transaction and covered by the same record of her reading (a page makes one service call)."""
    decision = await fhir.authorize(ctx, "search", RTYPE)

    async def run(conn: Conn) -> HistoryPage | None:
        patient_id = await fhir.own_patient(conn, ctx, space_id)
        if patient_id is None:
            return None
        request = parse_search(ctx, [("patient", f"Patient/{patient_id}"), *pairs])
        found, listed = await _search_in(conn, ctx, decision, request, others_only=False, professionals=True)
        return HistoryPage(found, listed)

    return await ctx.runtime.db.interaction("trace_history", run)
