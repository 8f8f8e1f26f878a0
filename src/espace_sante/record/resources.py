"""The FHIR resource service: the generic rules of create, read, vread, update, delete, history and search.

`authorize` asks the policy for a `Decision`; the `*_in` functions (`create_in`, `read_in`, `update_in`,
`delete_in`, `search_in`) do one interaction on a connection the caller opened, inside the caller's transaction,
so that a single request and each entry of a Bundle run the very same code. What a type adds (a Binary's
content, a document's rules, the trace read as AuditEvent) is its `Rule`: the writes take the type's rule and
call its hooks. record/interactions.py holds the rule of each type and is the one entry point of the surfaces,
for a single request and a Bundle entry alike. This module imports none of the types' modules."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson

from espace_sante import clock
from espace_sante.access.policy import PROFESSIONAL_STATES, Action, Decision, decide, needs_facts, with_chains
from espace_sante.access.reasons import Code, Reason, words
from espace_sante.audit import trace
from espace_sante.context import Context
from espace_sante.errors import (
    BadRequest,
    FhirError,
    Forbidden,
    Gone,
    InvalidResource,
    Issue,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    TooManyRequests,
)
from espace_sante.fhir import compartment
from espace_sante.fhir.identifiers import INS_NIA, INS_NIR, INS_NIR_DEMO, INS_NIR_TEST, explain_identifier
from espace_sante.fhir.searchquery import SearchRequest, dropped_filters, parse_search, refuse_ignored
from espace_sante.fhir.validation import RESOURCE_TYPES
from espace_sante.storage import access as access_store
from espace_sante.storage import lifecycle as lifecycle_store
from espace_sante.storage import locks, ratelimit, spaces, visibility
from espace_sante.storage import people as people_store
from espace_sante.storage import resources as store
from espace_sante.storage import search as search_store
from espace_sante.storage.db import Conn
from espace_sante.storage.keys import DIRECTORY_SPACE

#: Types a client may only read and search (the trace is written by the server). They are not in the generic
#: store: record/auditevents.py renders them from the trace, and its rule offers read and search-type only
#: (record/interactions.py refuses the rest first). `authorize` and `history` refuse them again, so that no
#: caller of this module can write one into the resource tables.
READ_ONLY_TYPES = frozenset({"AuditEvent"})
READ_AND_SEARCH_ONLY = (
    "AuditEvent : seules read et search-type sont prises en charge / only read and search-type are supported"
)

_ETAG = re.compile(r'^(?:W/)?"(\d{1,18})"$')


@dataclass(frozen=True)
class Written:
    """The result of a write: the stored version, whether it created something (201), and the warnings to
    give back (PDSm codes accepted in lenient mode)."""

    stored: store.Stored
    created: bool
    warnings: list[Issue] = field(default_factory=list)


@dataclass
class SearchResult:
    request: SearchRequest
    matches: list[store.Stored]
    included: list[store.Stored] = field(default_factory=list)
    total: int | None = None
    has_next: bool = False


class Rule:
    """What a resource type adds to the generic rules. This base class is the generic behaviour; a type's rule
    (record/documents/rules.py, record/auditevents.py) overrides the hooks and the interactions it needs, and
    record/interactions.py dispatches each interaction, from a single request or a Bundle entry, to the rule
    of its type. Every method runs inside the caller's transaction `conn` (except `parse_search`, before it),
    with the decision `authorize` gave, which the generic functions scope to the resource's space."""

    #: The interactions the type offers; anything else is 405 before the policy is asked (record/interactions).
    offers: frozenset[str] = frozenset({"read", "vread", "search", "history", "create", "update", "delete"})
    #: Whether a read writes more than its trace record and needs a transaction (record/interactions.py).
    read_in_transaction = False
    #: Why a PATCH is refused (405) when the type does not offer it.
    no_patch = (
        "PATCH n'est pris en charge que pour les métadonnées d'un DocumentReference (PDSm) / PATCH is supported "
        "for DocumentReference metadata only (PDSm); use PUT"
    )

    #: Whether a read without a FHIR format sends the content itself (binary.html, ITI-68).
    serves_content = False

    def refusal(self, action: str) -> str:
        """Why `action`, which the type does not offer, is refused (405)."""
        if action == "patch":
            return self.no_patch
        return f"{action} n'est pas pris en charge sur ce type / {action} is not supported on this type"

    # --- hooks of the generic write and read paths --------------------------------------------------------

    async def check_write(
        self,
        conn: Conn,
        ctx: Context,
        decision: Decision,
        space_id: uuid.UUID,
        rid: str,
        body: dict[str, Any],
        previous: store.Current | None,
    ) -> None:
        """After the generic checks, before the write: `previous` is None for a create, the locked current
        version (possibly a delete) for an update."""

    def names_its_patient(self, body: Mapping[str, Any]) -> bool:
        """Whether an update's body must keep naming its space's patient (every resource of a space does, but
        one the type lets stand without a patient: its id already fixes its space)."""
        return True

    async def check_body(
        self,
        conn: Conn,
        ctx: Context,
        decision: Decision,
        space_id: uuid.UUID,
        rid: str,
        body: dict[str, Any],
    ) -> None:
        """The type's first checks of a create or an update, once its space is known and covered, before the
        patient and references are checked: what the body may say for this actor (which may complete it)."""

    async def write(
        self,
        conn: Conn,
        ctx: Context,
        decision: Decision,
        space_id: uuid.UUID,
        rid: str,
        body: dict[str, Any],
        method: str,
        previous: store.Current | None,
    ) -> store.Stored:
        """Store the new version (a Binary's rule puts its content in the blob store first)."""
        keys = ctx.runtime.keys
        rtype = decision.resource_type
        return await store.write(
            conn, keys, decision, space_id, rtype, rid, body, method=method, previous=previous
        )

    async def after_write(self, conn: Conn, ctx: Context, stored: store.Stored, body: dict[str, Any]) -> None:
        """After a create or update is stored and traced."""

    async def after_delete(
        self, conn: Conn, ctx: Context, decision: Decision, space_id: uuid.UUID, rid: str
    ) -> None:
        """After a live resource is deleted and traced."""

    async def shown(self, conn: Conn, ctx: Context, decision: Decision, found: store.Stored) -> store.Stored:
        """A version read and traced, as the client gets it (a Binary's content comes back in `data`)."""
        return found

    # --- the interactions ---------------------------------------------------------------------------------

    def parse_search(self, ctx: Context, rtype: str, pairs: Sequence[tuple[str, str]]) -> SearchRequest:
        """A search's parameters, parsed and checked before any transaction."""
        return parse_request(ctx, rtype, pairs)

    async def create_in(
        self,
        conn: Conn,
        ctx: Context,
        decision: Decision,
        body: dict[str, Any],
        if_none_exist: str | None,
        *,
        assigned: tuple[uuid.UUID, str] | None = None,
    ) -> Written:
        return await create_in(conn, ctx, decision, body, if_none_exist, rule=self, assigned=assigned)

    async def read_in(
        self, conn: Conn, ctx: Context, decision: Decision, rid: str, version: int | None
    ) -> store.Stored:
        return await read_in(conn, ctx, decision, decision.resource_type, rid, version, rule=self)

    async def search_in(
        self, conn: Conn, ctx: Context, decision: Decision, request: SearchRequest
    ) -> SearchResult:
        return await search_in(conn, ctx, decision, request)

    async def update_in(
        self,
        conn: Conn,
        ctx: Context,
        decision: Decision,
        rid: str,
        body: dict[str, Any],
        expected: int | None,
    ) -> Written:
        return await update_in(conn, ctx, decision, rid, body, expected, rule=self)

    async def delete_in(self, conn: Conn, ctx: Context, decision: Decision, rid: str) -> store.Stored | None:
        return await delete_in(conn, ctx, decision, rid, rule=self)

    async def patch_in(
        self,
        conn: Conn,
        ctx: Context,
        decision: Decision,
        rid: str | None,
        condition: str | None,
        payload: Any,
        json_patch: bool,
        expected: int | None,
    ) -> store.Stored:
        """A PATCH (`rid`, or a conditional one on `condition`) of a JSON Patch or FHIRPath Patch `payload`."""
        raise MethodNotAllowed(self.no_patch)


#: The rule of a type that adds nothing to the generic one.
GENERIC = Rule()


# --- decisions -------------------------------------------------------------------------------------------


def check_type(resource_type: str) -> None:
    if resource_type not in RESOURCE_TYPES:
        raise NotFound(f"type de ressource non pris en charge / unsupported resource type: {resource_type}")


async def authorize(ctx: Context, action: Action, resource_type: str) -> Decision:
    """The policy's decision on `action` over `resource_type`, before any transaction: 404 for an unknown type,
    405 for a write of a read-only type, and a refusal of the interaction itself is a 403 (the type, not a
    resource, is refused), traced. The decision is not yet scoped to spaces: the `*_in` functions scope it on
    the facts they read."""
    check_type(resource_type)
    if resource_type in READ_ONLY_TYPES and action in ("create", "update", "patch", "delete"):
        raise MethodNotAllowed(f"{resource_type} est en lecture seule / {resource_type} is read-only")
    if resource_type in READ_ONLY_TYPES and action == "vread":
        raise MethodNotAllowed(READ_AND_SEARCH_ONLY)
    decision = decide(ctx.actor, action, resource_type)
    if not decision.allowed:
        await trace.refusal(ctx, decision)
        raise Forbidden(
            f"accès refusé : {action} {resource_type} ({words(decision.reason, 'fr')}) / access denied: "
            f"{action} {resource_type} ({words(decision.reason, 'en')})"
        )
    return decision


#: Above this many reachable records, a person's search must name its patient.
MAX_SPACES_WITHOUT_PATIENT = 1000


async def scoped(
    conn: Conn, ctx: Context, decision: Decision, spaces: Sequence[uuid.UUID] | None
) -> Decision:
    """The decision in these spaces (None: every space the actor relates to), decided on the facts read in
    this transaction. Machines and the directory need no facts; for a person, a decision that skipped this
    step reaches no space (storage answers "not found")."""
    if decision.slices is None or not needs_facts(ctx.actor) or not decision.allowed:
        return decision
    today = clock.today()
    if spaces is None:
        spaces = await access_store.related_spaces(conn, ctx.actor, today=today)
        if len(spaces) > MAX_SPACES_WITHOUT_PATIENT:
            # A hospital's care team reaches thousands of records: a professional's search names its patient
            # (as IHE MHD ITI-67 requires), which also keeps one request to one partition.
            raise BadRequest(
                "précisez le patient (paramètre patient ou patient.identifier) / name the patient "
                "(patient or patient.identifier parameter)",
                code="required",
                expression="patient",
            )
    facts = await access_store.facts(
        conn, ctx.actor, [s for s in spaces if s != DIRECTORY_SPACE], today=today
    )
    return decide(ctx.actor, decision.action, decision.resource_type, facts, today=today)


async def _out_of_reach(
    ctx: Context, decision: Decision, space_id: uuid.UUID | None, rid: str | None = None
) -> None:
    """A person asked for a record they have no basis on: they are answered "not found" like anyone, and
    the attempt is traced as a refusal (SECURITY V8 8.1.4: one professional opening many records shows),
    naming what was asked for (so that her history hides an attempt on what is hidden from its reader)."""
    if space_id is not None and needs_facts(ctx.actor) and decision.slices is not None:
        await trace.refusal(ctx, decision, reason=Reason(Code.NO_BASIS), space_id=space_id, entity_id=rid)


async def own_patient(conn: Conn, ctx: Context, space_id: uuid.UUID) -> str | None:
    """The Patient id of a space the person is the holder or the representative of (the facts the policy reads),
    or None: for her pages, which name the space and not the Patient."""
    today = clock.today()
    for fact in await access_store.facts(conn, ctx.actor, [space_id], today=today):
        current = fact.relation == "holder" or (
            fact.relation == "representative"
            and fact.representative_until is not None
            and fact.representative_until > today
        )
        if fact.space_id == space_id and current:
            return fact.patient_id
    return None


async def scoped_search(conn: Conn, ctx: Context, decision: Decision, request: SearchRequest) -> Decision:
    """A search's decision in the spaces it may reach, with the decisions on its chained types."""
    hint = search_store.space_hint(request)
    spaces = None if hint is None else [hint]
    if spaces is None and decision.slices is not None and needs_facts(ctx.actor) and decision.allowed:
        # ITI-67 names the patient by INS (patient.identifier): its space, not every space the actor relates
        # to, is what the decision is taken on (issue 15: a care team passes MAX_SPACES_WITHOUT_PATIENT).
        spaces = await search_store.named_spaces(conn, request)
    decision = await scoped(conn, ctx, decision, spaces)
    targets = {c.chain.target_type for c in request.clauses if c.chain is not None}
    if not targets or decision.slices is None:
        return decision
    spaces = sorted(decision.spaces or ())
    chains = {t: await scoped(conn, ctx, decide(ctx.actor, "search", t), spaces) for t in sorted(targets)}
    return with_chains(decision, chains)


def _locate(resource_type: str, resource_id: str) -> uuid.UUID | None:
    """The space of an existing resource from its id; None when the id cannot be one of ours."""
    if compartment.is_directory(resource_type):
        return DIRECTORY_SPACE if compartment.is_directory_id(resource_id) else None
    return compartment.space_of(resource_id)


def parse_etag(value: str) -> int:
    match = _ETAG.match(value.strip())
    if not match:
        raise BadRequest(
            'If-Match invalide / invalid If-Match: attendu / expected W/"<versionId>"', code="value"
        )
    return int(match.group(1))


# --- reads -----------------------------------------------------------------------------------------------


def version_number(version: str) -> int:
    """A vread's version id as a number; 404 for anything that cannot be one."""
    if not (version.isascii() and version.isdigit()) or len(version) > 18:
        raise NotFound(f"version introuvable / version not found: {version}")
    return int(version)


async def read_in(
    conn: Conn,
    ctx: Context,
    decision: Decision,
    rtype: str,
    rid: str,
    version: int | None,
    *,
    rule: Rule | None = None,
    traced: bool = True,
) -> store.Stored:
    """A read or vread inside the caller's transaction `conn`, with the decision `authorize` gave: traced, then
    shown as the type's `rule` says (a Binary with its content in `data`). With `traced` off, the version as
    stored, untraced: the document retrieve (record/documents/) streams the content itself and writes its own
    trace record."""
    space_id = _locate(rtype, rid)
    if space_id is not None:
        decision = await scoped(conn, ctx, decision, [space_id])
    if space_id is None or not decision.covers(space_id):
        await _out_of_reach(ctx, decision, space_id, rid)
        raise NotFound(f"{rtype}/{rid} introuvable / not found")
    found = await store.read(conn, ctx.runtime.keys, decision, space_id, rtype, rid, version)
    if found is None:
        raise NotFound(
            f"{rtype}/{rid}{'' if version is None else f'/_history/{version}'} introuvable / not found"
        )
    if found.deleted:
        raise Gone(f"{rtype}/{rid} a été supprimé / was deleted (version {found.version_id})")
    if not traced:
        return found
    action = "resource:read" if version is None else "resource:vread"
    await trace.access(
        conn, ctx, decision, action, space_id, entity_type=rtype, entity_id=rid, version=found.version_id
    )
    return found if rule is None else await rule.shown(conn, ctx, decision, found)


@dataclass(frozen=True)
class HistoryPage:
    """One page of a history, newest first, and whether a next page exists (for the Bundle's links)."""

    versions: list[store.Stored]
    count: int
    offset: int
    has_next: bool


async def history(
    ctx: Context,
    resource_type: str,
    resource_id: str | None,
    *,
    since: datetime | None,
    count: int,
    offset: int,
) -> HistoryPage:
    if resource_type in READ_ONLY_TYPES:
        raise MethodNotAllowed(READ_AND_SEARCH_ONLY)
    decision = await authorize(ctx, "history" if resource_id else "search", resource_type)

    async def run(conn: Conn) -> HistoryPage:
        space_id = None
        if resource_id is not None:
            space_id = _locate(resource_type, resource_id)
            scope = await scoped(conn, ctx, decision, [] if space_id is None else [space_id])
            if (
                space_id is None
                or not scope.covers(space_id)
                or not await visibility.reaches(conn, scope, space_id, resource_type, resource_id)
            ):
                raise NotFound(f"{resource_type}/{resource_id} introuvable / not found")
        else:
            scope = await scoped(conn, ctx, decision, None)
        rows = await store.history(
            conn,
            ctx.runtime.keys,
            scope,
            rtype=resource_type,
            space_id=space_id,
            rid=resource_id,
            since=since,
            count=count + 1,
            offset=offset,
        )
        # An empty page (_since after the last change, _count=0, past the end) of an existing resource is an
        # empty history, not a 404.
        if (
            resource_id is not None
            and space_id is not None
            and not rows
            and await store.current(conn, scope, space_id, resource_type, resource_id) is None
        ):
            raise NotFound(f"{resource_type}/{resource_id} introuvable / not found")
        page = rows[:count]
        if resource_id is not None and space_id is not None and page:
            await trace.access(
                conn,
                ctx,
                scope,
                "resource:history",
                space_id,
                entity_type=resource_type,
                entity_id=resource_id,
            )
        elif page:
            await trace.accesses(
                conn, ctx, scope, "resource:history", (v.space_id for v in page), entity_type=resource_type
            )
        return HistoryPage(page, count, offset, count > 0 and len(rows) > count)

    return await ctx.runtime.db.interaction("fhir_history", run)


def parse_request(
    ctx: Context,
    resource_type: str,
    pairs: Sequence[tuple[str, str]],
    *,
    by_identifier: frozenset[str] = frozenset(),
    refuse_unknown: bool = False,
) -> SearchRequest:
    """A search request parsed with this context's strictness and the configured page sizes; `by_identifier`
    names the reference parameters the type's own search matches by `:identifier` (fhir/searchquery.py); with
    `refuse_unknown`, an unknown parameter is refused even when the context is lenient (a type's rule says)."""
    settings = ctx.runtime.settings
    return parse_search(
        resource_type,
        pairs,
        strict=ctx.strict,
        default_count=settings.search_default_count,
        max_count=settings.search_max_count,
        refuse_unknown=refuse_unknown,
        by_identifier=by_identifier,
    )


async def search_in(conn: Conn, ctx: Context, decision: Decision, request: SearchRequest) -> SearchResult:
    """A search of the stored resources inside the caller's transaction `conn`, scoped and traced."""
    decision = await scoped_search(conn, ctx, decision, request)
    dropped = dropped_filters(request)
    if dropped and _reaches_several(decision):
        # `Observation?patinet=…` without its misspelt filter no longer names a patient: it would answer with
        # every record the caller reaches. Only a caller who reaches one record cannot be widened by a drop.
        refuse_ignored(
            request,
            "la recherche atteint plusieurs dossiers",
            "the search reaches several records",
            dropped[0],
        )
    keys = ctx.runtime.keys
    # Every space a search counts rows in is traced like the spaces of the rows it returns: "how many
    # documents of this class" tells as much as the documents' list (issue 16). Only zero matches are silent.
    counted: dict[uuid.UUID, int] = {}
    if request.summary == "count" or request.count == 0:
        counted = await search_store.counts(conn, decision, request)
        await _trace_search(conn, ctx, decision, request, counted)
        return SearchResult(request, [], [], sum(counted.values()), False)
    matches, has_next = await search_store.page(conn, keys, decision, request)
    page = [(m.space_id, m.resource_id) for m in matches]
    total: int | None = None
    if request.total == "accurate" or request.offset > 0:
        # Asked for, or a later page: a page at `_offset=N` tells that N rows come before it (and a page past
        # the end, how many there are), in spaces the page does not show. Counting traces those spaces too;
        # leaving `total` out would not, as the page itself reveals the skipped rows.
        counted = await search_store.counts(conn, decision, request)
        total = sum(counted.values())
    elif not has_next:
        total = request.offset + len(matches)
    included: list[store.Stored] = []
    seen = {(m.resource_type, m.resource_id) for m in matches}
    for target_type, found in await search_store.includes(conn, request, page):
        included += await _fetch_included(conn, ctx, target_type, found, seen)
    await _trace_search(conn, ctx, decision, request, [s.space_id for s in (*matches, *included)], counted)
    return SearchResult(request, matches, included, total, has_next)


def _reaches_several(decision: Decision) -> bool:
    """Whether the decision covers more than one record: every space (a machine client), or several (a
    professional, a representative, a holder's app that also reaches her children)."""
    spaces = decision.spaces
    return spaces is None or len(spaces) > 1


async def _trace_search(
    conn: Conn, ctx: Context, decision: Decision, request: SearchRequest, *reached: Iterable[uuid.UUID]
) -> None:
    """One record in each space the search returned or counted something from."""
    await trace.accesses(
        conn,
        ctx,
        decision,
        "resource:search",
        {space for spaces in reached for space in spaces},
        entity_type=request.resource_type,
        detail=_searched(request),
    )


def _searched(request: SearchRequest) -> str:
    """What a search asked for, for the trace: parameter names only, never their values (they hold INS,
    names, dates of birth)."""
    return "?" + "&".join(sorted({name for name, _ in request.echo}))


async def _fetch_included(
    conn: Conn, ctx: Context, rtype: str, keys_: list[tuple[uuid.UUID, str]], seen: set[tuple[str, str]]
) -> list[store.Stored]:
    """Included resources pass the policy like any read: what the actor may not read is silently left out."""
    if rtype not in RESOURCE_TYPES:
        return []
    decision = await scoped(conn, ctx, decide(ctx.actor, "read", rtype), sorted({s for s, _ in keys_}))
    if not decision.allowed:
        return []
    fresh = [k for k in dict.fromkeys(keys_) if (rtype, k[1]) not in seen and decision.covers(k[0])]
    seen.update((rtype, k[1]) for k in fresh)
    return await store.fetch_current(conn, ctx.runtime.keys, decision, rtype, fresh)


# --- writes ----------------------------------------------------------------------------------------------


def _body_type(body: Any) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise BadRequest(
            "le corps doit être une ressource FHIR JSON / the body must be a FHIR JSON resource",
            expression="resourceType",
        )
    return str(body["resourceType"])


def body_type(body: Any) -> str:
    """The resourceType of a request body; 400 when the body is not a FHIR resource."""
    return _body_type(body)


async def existing_match(
    conn: Conn, ctx: Context, rtype: str, if_none_exist: str | None
) -> store.Stored | None:
    """The resource a conditional create's `If-None-Exist` matches, inside the caller's transaction `conn`
    (which holds the condition's lock until it ends); None when there is no condition or nothing matches, 412
    when several do (http.html#ccreate)."""
    if not if_none_exist:
        return None
    existing = await conditional_match(conn, ctx, rtype, if_none_exist, lock=True)
    if len(existing) > 1:
        raise PreconditionFailed(
            f"If-None-Exist : {len(existing)} ressources correspondent / {len(existing)} resources match"
        )
    return existing[0] if existing else None


async def create_in(
    conn: Conn,
    ctx: Context,
    decision: Decision,
    body: dict[str, Any],
    if_none_exist: str | None,
    *,
    rule: Rule,
    assigned: tuple[uuid.UUID, str] | None = None,
) -> Written:
    """A create inside the caller's transaction `conn`: `body` already validated as `decision.resource_type`
    (validate_resource), its references resolved to `Type/id`; `assigned` is the space and id a transaction
    chose for it (its fullUrl is referenced). The type's `rule` checks and writes; the caller discards the
    uploads of a transaction that did not commit (documents.discard_unrecorded)."""
    rtype = decision.resource_type
    existing = await existing_match(conn, ctx, rtype, if_none_exist)
    if existing is not None:
        return Written(existing, False)
    if assigned is not None:
        space_id, rid = assigned
    else:
        space_id = await space_for_new(conn, ctx, body)
        rid = compartment.new_resource_id(None if space_id == DIRECTORY_SPACE else space_id)
    decision = await scoped(conn, ctx, decision, [space_id])
    if not decision.covers(space_id):
        # A space the actor has no basis on answers like one that does not exist.
        raise _no_such_patient(rtype, body)
    # Machine clients (professionals' software, feeds) are decided without facts; a deposit still waits for the
    # space to open, and a closed, opposed or suspended one takes nothing (PRODUCT §2).
    if (
        ctx.actor.kind == "client"
        and rtype != "Patient"
        and space_id != DIRECTORY_SPACE
        and await lifecycle_store.state_of(conn, space_id) not in PROFESSIONAL_STATES
    ):
        raise _no_such_patient(rtype, body)
    await rule.check_body(conn, ctx, decision, space_id, rid, body)
    if rtype == "Patient":
        await _check_opens_with_ins(conn, ctx, body)
        await _count_new_space(conn, ctx)
        await spaces.create(conn, ctx.runtime.keys, space_id)
    else:
        await _check_patient_exists(conn, decision, body, space_id)
    check_references_stay_in_space(body, space_id)
    await rule.check_write(conn, ctx, decision, space_id, rid, body, None)
    stored = await rule.write(conn, ctx, decision, space_id, rid, body, "POST", None)
    await traced_write(conn, ctx, decision, "resource:create", stored)
    await rule.after_write(conn, ctx, stored, body)
    return Written(stored, True)


def check_update_body(resource_type: str, resource_id: str, body: Any) -> str:
    """An update's body names the URL's type and id (FHIR http.html#update); its type."""
    rtype = _body_type(body)
    if rtype != resource_type:
        raise BadRequest(
            f"resourceType « {rtype} » ne correspond pas à l'URL / does not match the URL ({resource_type})",
            expression="resourceType",
        )
    if body.get("id") != resource_id:
        raise BadRequest(
            "Resource.id doit être présent et égal à l'id de l'URL / Resource.id must be present "
            "and equal the id in the URL (FHIR http.html#update)",
            expression=f"{rtype}.id",
        )
    return rtype


async def lock_current(
    conn: Conn, ctx: Context, decision: Decision, rid: str
) -> tuple[uuid.UUID | None, store.Current | None, Decision]:
    """The space and current state of a resource about to be written, locked until the caller's transaction
    `conn` ends, and the decision in that space; (space, None, decision) when it does not exist or the decision does not
    reach it."""
    space_id = _locate(decision.resource_type, rid)
    if space_id is not None:
        decision = await scoped(conn, ctx, decision, [space_id])
    if space_id is None or not decision.covers(space_id):
        return space_id, None, decision
    current = await store.current(conn, decision, space_id, decision.resource_type, rid, for_update=True)
    if current is not None and not await visibility.reaches(
        conn, decision, space_id, decision.resource_type, rid
    ):
        return space_id, None, decision
    return space_id, current, decision


async def update_in(
    conn: Conn,
    ctx: Context,
    decision: Decision,
    rid: str,
    body: dict[str, Any],
    expected: int | None,
    *,
    rule: Rule,
) -> Written:
    """An update inside the caller's transaction `conn`: `body` already validated, its id the URL's; `expected`
    the version of If-Match (412 when stale). The server assigns ids: an unknown id is 405, not a create."""
    rtype = decision.resource_type
    space_id, previous, decision = await lock_current(conn, ctx, decision, rid)
    if space_id is None or previous is None:
        # The server assigns ids (CapabilityStatement updateCreate = false): PUT cannot create.
        raise MethodNotAllowed(
            f"{rtype}/{rid} n'existe pas ; créez-la par POST / does not exist; the server "
            "assigns ids, create it with POST (update-as-create is not supported)"
        )
    if expected is not None and expected != previous.version_id:
        raise PreconditionFailed(
            f"version {expected} périmée, la version courante est {previous.version_id} / "
            f"stale version {expected}, current is {previous.version_id}"
        )
    # A space resource must keep naming the same patient (but one its type lets stand without: rule).
    if rtype != "Patient" and space_id != DIRECTORY_SPACE and rule.names_its_patient(body):
        if await space_for_new(conn, ctx, body) != space_id:
            raise InvalidResource(
                "une ressource ne peut pas changer de patient / a resource cannot move to another patient",
                expression=_patient_element(rtype),
            )
        await _check_patient_exists(conn, decision, body, space_id)
    if rtype == "Patient":
        await _check_keeps_ins(conn, ctx, decision, space_id, rid, body, previous)
    await rule.check_body(conn, ctx, decision, space_id, rid, body)
    check_references_stay_in_space(body, space_id)
    await rule.check_write(conn, ctx, decision, space_id, rid, body, previous)
    stored = await rule.write(conn, ctx, decision, space_id, rid, body, "PUT", previous)
    await traced_write(conn, ctx, decision, "resource:update", stored)
    await rule.after_write(conn, ctx, stored, body)
    return Written(stored, previous.deleted)


async def delete_in(
    conn: Conn, ctx: Context, decision: Decision, rid: str, *, rule: Rule
) -> store.Stored | None:
    """A delete inside the caller's transaction `conn`: a version without a body, traced; None when the
    resource was already deleted (http.html#delete: it succeeds and changes nothing)."""
    rtype = decision.resource_type
    space_id, previous, decision = await lock_current(conn, ctx, decision, rid)
    if space_id is None or previous is None:
        raise NotFound(f"{rtype}/{rid} introuvable / not found")
    if previous.deleted:
        return None  # deleting a deleted resource succeeds and changes nothing (http.html#delete)
    stored = await store.write(
        conn, ctx.runtime.keys, decision, space_id, rtype, rid, None, method="DELETE", previous=previous
    )
    await traced_write(conn, ctx, decision, "resource:delete", stored)
    await rule.after_delete(conn, ctx, decision, space_id, rid)
    return stored


async def traced_write(
    conn: Conn, ctx: Context, decision: Decision, action: str, stored: store.Stored
) -> None:
    """The trace record of a write (`resource:create`, `resource:update`, `resource:delete`) in the stored
    version's space, inside the caller's transaction `conn`."""
    await trace.access(
        conn,
        ctx,
        decision,
        action,
        stored.space_id,
        entity_type=stored.resource_type,
        entity_id=stored.resource_id,
        version=stored.version_id,
    )


# --- spaces and references -------------------------------------------------------------------------------

#: The INS systems a Patient opening a space may carry: the NIR, whose key is checked (validation.py). Not the
#: INS-NIA, a provisional number whose format nothing checks; the registry is keyed on the NIR.
_INS_SYSTEMS = (INS_NIR, INS_NIR_TEST, INS_NIR_DEMO)
_FROM_REGISTRY = (
    "Patient.identifier : un Patient qui ouvre un espace porte un INS valide (INS-NIR, système "
    f"{INS_NIR}) ; les espaces sont ouverts à partir du registre des bénéficiaires de l'Assurance Maladie, "
    "désignez un patient existant par son INS (Patient?identifier=…) / a Patient that opens a space carries a "
    "valid INS (INS-NIR); spaces are opened from the insurer's registry of beneficiaries: name an existing "
    "patient by their INS (Patient?identifier=…)"
)


_ONE_SPACE = (
    "Patient.identifier : un espace existe déjà pour cet INS ; désignez ce patient par son INS "
    "(If-None-Exist: identifier=…, ou Patient?identifier=…) / a space already exists for this INS: name that "
    "patient by their INS (If-None-Exist: identifier=…, or Patient?identifier=…)"
)


async def _check_opens_with_ins(conn: Conn, ctx: Context, body: Mapping[str, Any]) -> None:
    """A space belongs to a person the insurer knows: through the API, the Patient that opens one carries a
    valid INS (issue 16 #4: without this, any system client could open thousands of spaces, each with its key
    and trace chain, outside the registry's lifecycle), an INS that has no space yet (one person, one space:
    a second Patient with the same INS would take over lookups by INS), and a test or demo INS only in
    development."""
    systems = _INS_SYSTEMS if ctx.runtime.settings.development_mode else (INS_NIR,)
    for identifier in body.get("identifier") or ():
        if not isinstance(identifier, dict):
            continue
        system, value = identifier.get("system"), identifier.get("value")
        if (
            isinstance(system, str)
            and system in systems
            and isinstance(value, str)
            and explain_identifier(system, value) is None
        ):
            # Two requests with one INS wait for each other here, so that the second sees the first's space.
            await locks.hold_until_commit(conn, f"space-of-ins:{system}|{value}")
            if await people_store.ins_has_space(conn, system, value):
                raise InvalidResource(
                    _ONE_SPACE,
                    issues=[Issue(_ONE_SPACE, "duplicate", expression="Patient.identifier")],
                )
            return
    raise InvalidResource(
        _FROM_REGISTRY,
        issues=[Issue(_FROM_REGISTRY, "business-rule", expression="Patient.identifier")],
    )


#: Every INS system the server knows, the provisional INS-NIA included: none of them is the client's to change.
_ALL_INS_SYSTEMS = frozenset({INS_NIR, INS_NIA, INS_NIR_TEST, INS_NIR_DEMO})
_REGISTRY_ONLY = (
    "Patient.identifier : l'INS d'un patient ne se retire ni ne se change par l'API, seul le registre des "
    "bénéficiaires de l'Assurance Maladie le modifie ; renvoyez le Patient avec son INS inchangé / a patient's "
    "INS is neither removed nor changed through the API, an INS is changed only by the insurer's registry of "
    "beneficiaries: send the Patient back with its INS unchanged"
)


def _ins_of(body: Mapping[str, Any] | None) -> frozenset[tuple[str, str]]:
    """The INS (system, value) pairs a Patient body carries, whatever its other identifiers."""
    found: set[tuple[str, str]] = set()
    for identifier in (body or {}).get("identifier") or ():
        if isinstance(identifier, dict):
            system, value = identifier.get("system"), identifier.get("value")
            if system in _ALL_INS_SYSTEMS and isinstance(system, str) and isinstance(value, str):
                found.add((system, value))
    return frozenset(found)


async def _check_keeps_ins(
    conn: Conn,
    ctx: Context,
    decision: Decision,
    space_id: uuid.UUID,
    rid: str,
    body: Mapping[str, Any],
    previous: store.Current,
) -> None:
    """An update through the API keeps the Patient's INS as it is (issue 16): a PUT with `identifier: []` used
    to leave the space without INS, and a new Patient with that INS then opened a second space for the same
    person (see `_check_opens_with_ins`); changing it would make the space someone else's. The INS comes from
    the insurer's registry, whose feed writes the Patient itself (spaces/registry/importer.py), not here.

    A deleted Patient put back (PUT on a deleted resource, http.html#update) is compared with the last version
    it had, and its INS must not have found another space meanwhile: one person, one space."""
    if previous.deleted:
        # Deleting a deleted resource writes nothing: the version before the delete had a body.
        last = previous.version_id - 1
        stored = await store.read(conn, ctx.runtime.keys, decision, space_id, "Patient", rid, last)
    else:
        stored = await store.read(conn, ctx.runtime.keys, decision, space_id, "Patient", rid)
    before = _ins_of(None if stored is None or stored.body is None else orjson.loads(stored.body))
    if _ins_of(body) != before:
        raise InvalidResource(
            _REGISTRY_ONLY,
            issues=[Issue(_REGISTRY_ONLY, "business-rule", expression="Patient.identifier")],
        )
    if previous.deleted:
        for system, value in sorted(before):
            await locks.hold_until_commit(conn, f"space-of-ins:{system}|{value}")
            if await people_store.ins_has_space(conn, system, value, besides=space_id):
                raise InvalidResource(
                    _ONE_SPACE, issues=[Issue(_ONE_SPACE, "duplicate", expression="Patient.identifier")]
                )


async def _count_new_space(conn: Conn, ctx: Context) -> None:
    """Count a space opened by this client, and refuse it beyond the client's quota (SECURITY 11.1.4). The
    counter is a row in PostgreSQL (storage/ratelimit.py), shared by every process, counted in the write's own
    transaction: a refused or failed write gives its count back. The server's own actor (demo loader, jobs) is
    not counted."""
    if ctx.actor.kind == "system":
        return
    settings = ctx.runtime.settings
    count, left = await ratelimit.count_event(
        conn, f"spaces:{ctx.actor.kind}:{ctx.actor.id}", settings.api_spaces_window_seconds
    )
    if count > settings.api_spaces_per_client:
        limit, window = settings.api_spaces_per_client, settings.api_spaces_window_seconds
        raise TooManyRequests(
            f"trop d'espaces ouverts par ce client : {limit} au plus en {window} s, réessayez dans {left} s ; "
            "les espaces sont ouverts à partir du registre de l'Assurance Maladie / too many spaces opened by "
            f"this client: at most {limit} in {window} s, retry in {left} s; spaces are opened from the "
            "insurer's registry",
            retry_after=left,
        )


def _patient_element(rtype: str) -> str:
    return f"{rtype}.{compartment.PATIENT_ELEMENT.get(rtype, 'subject')}"


async def space_for_new(conn: Conn, ctx: Context, body: Mapping[str, Any]) -> uuid.UUID:
    """The space a new resource goes to: a new one for a Patient, the directory for directory types, else the
    space of the Patient it names (references already resolved to `Patient/<id>`)."""
    rtype = str(body["resourceType"])
    if rtype == "Patient":
        return compartment.new_space_id()
    if compartment.is_directory(rtype):
        return DIRECTORY_SPACE
    found: set[uuid.UUID] = set()
    for where, reference in compartment.patient_references(body):
        target = _local_patient(reference, ctx)
        if target is None:
            raise InvalidResource(
                f"{where} doit désigner un Patient de ce serveur (Patient/<id>) / must reference "
                f"a Patient of this server: « {reference} »",
                expression=where,
            )
        found.add(target)
    if not found:
        raise InvalidResource(
            f"{_patient_element(rtype)} doit désigner le patient / must reference the patient (Patient/<id>)",
            expression=_patient_element(rtype),
        )
    if len(found) > 1:
        raise InvalidResource(
            "la ressource désigne plusieurs patients / the resource references several patients",
            expression=_patient_element(rtype),
        )
    return found.pop()


def _local_patient(reference: str, ctx: Context) -> uuid.UUID | None:
    base = ctx.runtime.settings.fhir_base + "/"
    if reference.startswith(base):
        reference = reference[len(base) :]
    kind, _, rid = reference.partition("/")
    if kind != "Patient" or "/" in rid:
        return None
    return compartment.space_of(rid)


async def _check_patient_exists(
    conn: Conn, decision: Decision, body: Mapping[str, Any], space_id: uuid.UUID
) -> None:
    for where, reference in compartment.patient_references(body):
        rid = reference.rsplit("/", 1)[-1]
        if not await store.exists(conn, decision, space_id, "Patient", rid):
            raise _missing_patient(where, reference)


def _missing_patient(where: str, reference: str) -> InvalidResource:
    return InvalidResource(
        f"{where} : le patient « {reference} » n'existe pas / patient does not exist", expression=where
    )


def _no_such_patient(rtype: str, body: Mapping[str, Any]) -> InvalidResource:
    """The same answer as for a patient that does not exist (SECURITY FHIR attack 1: no existence leak)."""
    for where, reference in compartment.patient_references(body):
        return _missing_patient(where, reference)
    return InvalidResource(
        f"{_patient_element(rtype)} : le patient n'existe pas / patient does not exist",
        expression=_patient_element(rtype),
    )


def iter_references(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(location, holder object, key) of every literal reference and Attachment.url in a resource."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("reference", "url") and isinstance(value, str):
                yield f"{where}.{key}", node, key
            elif isinstance(value, (dict, list)):
                yield from iter_references(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from iter_references(item, f"{where}[{i}]")


#: Attachment.url values that point at a resource of this server (relative, or absolute under a base).
_ATTACHED = re.compile(r"(?:^|/)(?:Binary|DocumentReference)/")


def referenced_id(reference: str) -> str:
    """The logical id a literal reference names: `Type/id`, `Type/id/_history/v`, absolute or relative."""
    parts = reference.split("?", 1)[0].split("#", 1)[0].rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return parts[-1]


def check_references_stay_in_space(body: dict[str, Any], space_id: uuid.UUID) -> None:
    """A resource may reference its own space and the directory, never another space (SECURITY, FHIR attack 4:
    planted references)."""
    rtype = str(body.get("resourceType"))
    for where, holder, key in iter_references(body, rtype):
        value = holder[key]
        if key == "url" and not _ATTACHED.search(value):
            continue
        target = compartment.space_of(referenced_id(value)) if "/" in value else None
        if target is not None and target != space_id:
            raise InvalidResource(
                f"{where} désigne les données d'un autre patient / references another patient's data",
                expression=where,
            )


async def conditional_match(
    conn: Conn, ctx: Context, rtype: str, query: str, *, lock: bool = False
) -> list[store.Stored]:
    """Resources of `rtype` matching a conditional query (If-None-Exist, conditional references).
    The actor needs search rights on the type: a condition must not reveal what they could not search."""
    if "?" in query:
        prefix, _, query = query.partition("?")
        if prefix and prefix != rtype:
            raise BadRequest(
                f"condition sur {prefix}, attendu {rtype} / condition on {prefix}, expected {rtype}"
            )
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise BadRequest(f"condition invalide / invalid condition: « {query} »") from None
    if not pairs:
        raise BadRequest("condition vide / empty condition")
    decision = await authorize(ctx, "search", rtype)
    request = parse_search(rtype, pairs, strict=True, default_count=2, max_count=2)
    decision = await scoped_search(conn, ctx, decision, request)
    if lock:
        # Two concurrent conditional creates with one condition must not both create (http.html#ccreate).
        await locks.hold_until_commit(conn, f"conditional-create {rtype}?{query}")
    found, _ = await search_store.page(conn, ctx.runtime.keys, decision, _first_two(request))
    await trace.accesses(
        conn,
        ctx,
        decision,
        "resource:search",
        (f.space_id for f in found),
        entity_type=rtype,
        detail="conditional " + _searched(request),
    )
    return found


def _first_two(request: SearchRequest) -> SearchRequest:
    return replace(request, count=2, offset=0, includes=[], revincludes=[], sort=[])


#: fullUrls of a Bundle's entries, resolved by the Bundle before a reference to them reaches the service.
PLACEHOLDERS = ("urn:uuid:", "urn:oid:")


async def resolve_references(
    conn: Conn,
    ctx: Context,
    body: dict[str, Any],
    *,
    new_matches: Callable[[str, str], list[str]] | None = None,
    resolved: dict[str, str] | None = None,
) -> None:
    """Replace each conditional reference `Type?query` of `body` by the one resource it matches
    (http.html#trules), inside the caller's transaction `conn`: a stored resource the actor may search, or one
    `new_matches(type, query)` names (`Type/id` of what the caller's transaction creates). `resolved` keeps
    what was already matched: a submission names its patient's INS in the List, the document, the Binary and
    contained resources, and one search (and one trace record) is enough."""
    rtype = str(body.get("resourceType"))
    for where, holder, key in list(iter_references(body, rtype)):
        value = holder[key]
        if key != "reference" or "?" not in value or value.startswith(("#", *PLACEHOLDERS)):
            continue
        if resolved is not None and value in resolved:
            holder[key] = resolved[value]
            continue
        target_type = value.split("?", 1)[0].rsplit("/", 1)[-1]
        try:
            check_type(target_type)
            stored = await conditional_match(conn, ctx, target_type, value.split("?", 1)[1])
        except Forbidden:
            raise  # a refusal stays a 403: the actor may not search the target type
        except FhirError as exc:
            raise InvalidResource(
                f"{where} : référence conditionnelle invalide / invalid conditional reference "
                f"« {value} » : {exc.message}",
                expression=where,
            ) from None
        found = [f"{target_type}/{s.resource_id}" for s in stored]
        if new_matches is not None:
            found += [ref for ref in new_matches(target_type, value.split("?", 1)[1]) if ref not in found]
        if len(found) != 1:
            what = (
                "aucune ressource ne correspond / no resource matches"
                if not found
                else "plusieurs ressources correspondent / several resources match"
            )
            raise InvalidResource(f"{where} : « {value} » : {what}", expression=where)
        holder[key] = found[0]
        if resolved is not None:
            resolved[value] = found[0]
