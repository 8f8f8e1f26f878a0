"""Batch and transaction Bundles (FHIR R4 http.html#transaction).

A transaction runs in one database transaction: every entry passes through the same service code as a single
request, and any failure rolls back all of them. Before executing, the server resolves the bundle's
references (http.html#trules): `urn:uuid:` fullUrls of created resources become `Type/id`, and conditional
references (`Patient?identifier=system|value`, common in French PDSm submissions) must match exactly one
resource. Entries run in the order the spec sets: DELETE, POST, PUT, GET."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from espace_sante.access.policy import Decision, decide
from espace_sante.audit import trace
from espace_sante.context import Context
from espace_sante.errors import (
    BadRequest,
    FhirError,
    InvalidResource,
    Issue,
    MethodNotAllowed,
    PayloadTooLarge,
    PreconditionFailed,
    TooManyRequests,
)
from espace_sante.fhir import compartment, pdsm
from espace_sante.fhir.searchparams import extract, params_for
from espace_sante.fhir.validation import validate_resource
from espace_sante.record import documents, interactions
from espace_sante.record import resources as fhir
from espace_sante.storage import documents as docs_store
from espace_sante.storage import locks
from espace_sante.storage import resources as store
from espace_sante.storage.db import Conn
from espace_sante.storage.keys import DIRECTORY_SPACE

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3}
_PLACEHOLDER = fhir.PLACEHOLDERS


@dataclass
class Entry:
    index: int
    method: str
    url: str
    resource_type: str
    resource_id: str | None = None
    version: str | None = None
    query: str | None = None
    full_url: str | None = None
    body: dict[str, Any] | None = None
    if_none_exist: str | None = None
    if_match: str | None = None
    decision: Decision | None = None
    assigned: tuple[uuid.UUID, str] | None = None
    #: PATCH entries: the patch document (FHIRPath Patch Parameters, or a JSON Patch array) and its kind.
    patch: Any = None
    json_patch: bool = False


@dataclass
class EntryResult:
    """What one entry did. Exactly one of stored / search / error is set, or none for a DELETE."""

    status: int
    stored: store.Stored | None = None
    search: fhir.SearchResult | None = None
    error: FhirError | None = None
    created: bool = False
    #: Warnings for this entry (response.outcome): PDSm codes accepted in lenient mode.
    warnings: list[Issue] = field(default_factory=list)
    #: What the entry names when its body is not returned (a resent submission's sender without read rights).
    location: str | None = None


@dataclass
class BundleResult:
    bundle_type: str  # "batch-response" or "transaction-response"
    entries: list[EntryResult] = field(default_factory=list)


def _where(entry: int, detail: str | None = None) -> str:
    return f"Bundle.entry[{entry}]" + (f".{detail}" if detail else "")


def _in_entry(index: int, expression: str | None, in_request: bool = False) -> str:
    """An issue location inside entry `index`: `Observation.subject` becomes `Bundle.entry[i].resource.subject`;
    a location already in the Bundle is kept; a search parameter of a GET entry is in its request.url."""
    if expression is None:
        return _where(index)
    if expression.startswith("Bundle."):
        return expression
    if in_request:
        return _where(index, "request.url")
    head, dot, rest = expression.partition(".")
    if dot and head[:1].isupper() and head.isalpha():
        expression = rest
    return _where(index, f"resource.{expression}")


def _entry_error(index: int, exc: FhirError, *, in_request: bool = False) -> FhirError:
    """Prefix every issue location with the entry, so the client knows which one failed."""
    prefix = f"Bundle.entry[{index}]"

    def named(text: str) -> str:
        return text if text.startswith(prefix) else f"{prefix} : {text}"

    issues = [
        Issue(named(i.diagnostics), i.code, i.severity, _in_entry(index, i.expression, in_request))
        for i in exc.all_issues()
    ]
    if isinstance(exc, TooManyRequests):  # keeps its Retry-After (a transaction's answer is this error)
        return TooManyRequests(named(exc.message), retry_after=exc.retry_after, issues=issues)
    return FhirError(named(exc.message), exc.status, exc.code, issues[0].expression, issues)


async def _parse_entry(ctx: Context, index: int, raw: Any) -> Entry:
    if not isinstance(raw, dict):
        raise BadRequest(
            "chaque entrée doit être un objet / each entry must be an object", expression=_where(index)
        )
    request = raw.get("request")
    if not isinstance(request, dict):
        raise BadRequest(
            "Bundle.entry.request est obligatoire / is required", expression=_where(index, "request")
        )
    method, url = request.get("method"), request.get("url")
    if method not in _ORDER:
        raise MethodNotAllowed(
            f"{_where(index, 'request.method')} : méthode non prise en charge / unsupported "
            f"method « {method} » (GET, POST, PUT, PATCH, DELETE)"
        )
    if not isinstance(url, str) or not url:
        raise BadRequest(
            "Bundle.entry.request.url est obligatoire / is required", expression=_where(index, "request.url")
        )
    base = ctx.runtime.settings.fhir_base + "/"
    path = url[len(base) :] if url.startswith(base) else url
    path, _, query = path.partition("?")
    if "://" in path:
        raise BadRequest(
            f"URL hors de ce serveur / URL outside this server: « {url} »",
            expression=_where(index, "request.url"),
        )
    parts = path.strip("/").split("/")
    entry = Entry(index, method, url, parts[0], query=query or None)
    if len(parts) >= 2:
        entry.resource_id = parts[1]
    if method == "PATCH":
        return await _parse_patch(ctx, entry, raw)
    if len(parts) == 4 and parts[2] == "_history" and method == "GET":
        entry.version = parts[3]
    elif len(parts) > 2 or (len(parts) == 2 and query):
        raise BadRequest(
            f"URL d'entrée non prise en charge / unsupported entry URL « {url} »",
            expression=_where(index, "request.url"),
        )
    action = {"POST": "create", "PUT": "update", "DELETE": "delete"}.get(method) or (
        "search" if entry.resource_id is None else ("vread" if entry.version else "read")
    )
    # What the type does not offer is refused before its body is read, as over HTTP (record/interactions.py).
    interactions.check_offered(entry.resource_type, action)
    if method in ("PUT", "DELETE") and entry.resource_id is None:
        raise BadRequest(
            f"{method} sans id : les mises à jour conditionnelles ne sont pas prises en charge / "
            f"{method} needs an id: conditional {method} is not supported",
            expression=_where(index, "request.url"),
        )
    if method == "POST" and entry.resource_id is not None:
        raise BadRequest(
            "POST se fait sur le type / POST goes to the type URL", expression=_where(index, "request.url")
        )
    if method in ("POST", "PUT"):
        resource = raw.get("resource")
        if not isinstance(resource, dict):
            raise BadRequest(
                "Bundle.entry.resource est obligatoire pour POST et PUT / is required for POST and PUT",
                expression=_where(index, "resource"),
            )
        if resource.get("resourceType") != entry.resource_type:
            raise BadRequest(
                f"resourceType « {resource.get('resourceType')} » ne correspond pas à l'URL / does "
                f"not match the URL ({entry.resource_type})",
                expression=_where(index, "resource.resourceType"),
            )
        validate_resource(resource, expected_type=entry.resource_type)
        entry.body = resource
        if method == "PUT" and resource.get("id") != entry.resource_id:
            raise BadRequest(
                "Resource.id doit être égal à l'id de l'URL / must equal the id in the URL",
                expression=_where(index, "resource.id"),
            )
    full_url = raw.get("fullUrl")
    entry.full_url = full_url if isinstance(full_url, str) and full_url else None
    if isinstance(request.get("ifNoneExist"), str) and request["ifNoneExist"]:
        entry.if_none_exist = request["ifNoneExist"]
    if isinstance(request.get("ifMatch"), str) and request["ifMatch"]:
        entry.if_match = request["ifMatch"]
    entry.decision = await interactions.authorize(ctx, action, entry.resource_type)  # type: ignore[arg-type]
    return entry


async def _parse_patch(ctx: Context, entry: Entry, raw: dict[str, Any]) -> Entry:
    """A PATCH entry (PDSm metadata update, and the TD2.1 replacement's PATCH of the old document): a FHIRPath
    Patch `Parameters`, or a JSON Patch carried as a Binary (http.html#patch, transaction)."""
    where = _where(entry.index, "request.url")
    interactions.check_offered(entry.resource_type, "patch")
    if (entry.resource_id is None) == (entry.query is None):
        raise BadRequest(
            f"{where} : PATCH vise un id ou une condition / PATCH targets an id or a condition",
            expression=where,
        )
    resource = raw.get("resource")
    if isinstance(resource, dict) and resource.get("resourceType") == "Parameters":
        entry.patch = resource
    elif isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        try:
            entry.patch = orjson.loads(base64.b64decode(str(resource.get("data", "")), validate=True))
        except (binascii.Error, ValueError, orjson.JSONDecodeError):
            raise BadRequest(
                f"{_where(entry.index, 'resource.data')} : JSON Patch illisible / unreadable JSON Patch",
                expression=_where(entry.index, "resource.data"),
            ) from None
        entry.json_patch = True
    else:
        raise BadRequest(
            f"{_where(entry.index, 'resource')} : un PATCH porte un Parameters (FHIRPath Patch) ou un Binary (JSON "
            "Patch) / a PATCH carries a Parameters or a Binary",
            expression=_where(entry.index, "resource"),
        )
    if_match = raw["request"].get("ifMatch")
    entry.if_match = if_match if isinstance(if_match, str) and if_match else None
    entry.decision = await interactions.authorize(ctx, "patch", entry.resource_type)
    return entry


async def parse(ctx: Context, body: Any) -> tuple[str, list[Entry]]:
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise BadRequest(
            "POST sur la base attend un Bundle / POST to the base expects a Bundle", expression="Bundle"
        )
    kind = body.get("type")
    if kind not in ("batch", "transaction"):
        raise BadRequest(
            f"Bundle.type doit être batch ou transaction / must be batch or transaction (« {kind} »)",
            expression="Bundle.type",
        )
    raw_entries = body.get("entry", [])
    if not isinstance(raw_entries, list):
        raise BadRequest("Bundle.entry doit être une liste / must be an array", expression="Bundle.entry")
    limit = ctx.runtime.settings.max_bundle_entries
    if len(raw_entries) > limit:
        raise PayloadTooLarge(f"trop d'entrées / too many entries: {len(raw_entries)} > {limit}")
    entries = []
    for i, raw in enumerate(raw_entries):
        try:
            entries.append(await _parse_entry(ctx, i, raw))
        except FhirError as exc:
            if kind == "transaction":
                raise _entry_error(i, exc) from None
            entries.append(Entry(i, "INVALID", "", "", query=None, body={"error": _entry_error(i, exc)}))
    if kind == "transaction":
        urls = [e.full_url for e in entries if e.full_url]
        if len(urls) != len(set(urls)):
            raise BadRequest(
                "fullUrl en double dans la transaction / duplicate fullUrl in the transaction",
                expression="Bundle.entry.fullUrl",
            )
    return kind, entries


async def process(ctx: Context, body: Any) -> BundleResult:
    try:
        return await _process(ctx, body)
    finally:
        if ctx.uploads:
            await documents.discard_unrecorded(ctx)


async def _process(ctx: Context, body: Any) -> BundleResult:
    kind, entries = await parse(ctx, body)
    if kind == "transaction":
        warnings = _submission_checks(ctx, entries)
        name = "mhd_provide" if warnings is not None else "fhir_transaction"
        results = await ctx.runtime.db.interaction(name, _transaction, ctx, entries, warnings is not None)
        for index, issue in warnings or ():
            results[index].warnings.append(issue)
        return BundleResult("transaction-response", results)
    out = []
    for entry in entries:
        if entry.method == "INVALID":
            assert entry.body is not None
            error: FhirError = entry.body["error"]
            out.append(EntryResult(error.status, error=error))
            continue
        try:
            out.append(await ctx.runtime.db.interaction("fhir_batch_entry", _run_alone, ctx, entry))
        except FhirError as exc:
            out.append(EntryResult(exc.status, error=exc))
    return BundleResult("batch-response", out)


async def _run_alone(conn: Conn, ctx: Context, entry: Entry) -> EntryResult:
    if entry.body is not None:
        await _resolve_conditional_references(conn, ctx, entry)
    return await _execute(conn, ctx, entry)


def _submission_checks(ctx: Context, entries: list[Entry]) -> list[tuple[int, Issue]] | None:
    """An ITI-65 Provide Document Bundle (a transaction holding a SubmissionSet List) is checked against PDSm
    before anything runs; None for any other transaction."""
    if not any(documents.is_submission_set(e.body) for e in entries):
        return None
    found = [(_where(e.index, "resource"), e.body) for e in entries if e.body is not None]
    indexes = [e.index for e in entries if e.body is not None]
    return [(indexes[i], issue) for i, issue in documents.check_submission(ctx, found)]


async def _transaction(
    conn: Conn, ctx: Context, entries: list[Entry], submission: bool = False
) -> list[EntryResult]:
    ctx.deposits.clear()  # a retried transaction starts again from nothing
    refmap: dict[str, str] = {}
    results: dict[int, EntryResult] = {}
    posts = [e for e in entries if e.method == "POST"]
    try:
        # 1. Conditional creates that match, and ids for Patients (new spaces) and directory resources.
        for e in posts:
            assert e.body is not None and e.decision is not None
            if e.if_none_exist:
                found = await fhir.conditional_match(conn, ctx, e.resource_type, e.if_none_exist, lock=True)
                if len(found) > 1:
                    raise _entry_error(
                        e.index,
                        PreconditionFailed(
                            f"ifNoneExist : {len(found)} ressources correspondent / resources match"
                        ),
                    )
                if found:
                    results[e.index] = EntryResult(200, stored=found[0])
                    if e.full_url:
                        refmap[e.full_url] = f"{e.resource_type}/{found[0].resource_id}"
                    continue
            if e.resource_type == "Patient" or compartment.is_directory(e.resource_type):
                space = compartment.new_space_id() if e.resource_type == "Patient" else DIRECTORY_SPACE
                _assign(e, space, refmap)
        # 2. Conditional references anywhere in the bundle, matched against stored resources and against the
        #    resources this transaction creates.
        created = [e for e in posts if e.assigned is not None]
        resolved: dict[str, str] = {}
        for e in entries:
            if e.body is not None:
                try:
                    await _resolve_conditional_references(conn, ctx, e, created, resolved)
                except FhirError as exc:
                    raise _entry_error(e.index, exc) from None
        # 3. Spaces of the other new resources: from their patient, else from an entry that references them
        #    (a Binary takes the space of the DocumentReference whose attachment points at it).
        pending = [e for e in posts if e.index not in results and e.assigned is None]
        while pending:
            progressed = False
            for e in list(pending):
                found_space = await _space_from_patient(conn, ctx, e, refmap) or _space_from_referrers(
                    e, entries
                )
                if found_space is not None:
                    _assign(e, found_space, refmap)
                    pending.remove(e)
                    progressed = True
            if not progressed:
                e = pending[0]
                await fhir.space_for_new(conn, ctx, _rewritten(e.body, refmap))  # raises the precise error
                raise _entry_error(
                    e.index,
                    InvalidResource(
                        "impossible de rattacher la ressource à un patient / "
                        "cannot attach the resource to a patient"
                    ),
                )
        # 4. Rewrite references, then run the entries in the spec's order.
        for e in entries:
            if e.body is not None:
                e.body = _rewritten(e.body, refmap)
                _check_unresolved(e)
        if submission:
            replayed = await _replay(conn, ctx, entries)
            if replayed is not None:
                return replayed
        # Within POSTs: Patients first (new spaces), then content before the documents that point at it.
        for e in sorted(
            entries,
            key=lambda x: (
                _ORDER[x.method],
                x.resource_type != "Patient",
                x.resource_type != "Binary",
                x.index,
            ),
        ):
            if e.index not in results:
                results[e.index] = await _execute(conn, ctx, e)
        for e in entries:
            if e.body is not None and e.resource_type == "DocumentReference":
                try:
                    documents.check_attachments(ctx, e.body)
                except FhirError as exc:
                    raise _entry_error(e.index, exc) from None
    except FhirError as exc:
        if exc.message.startswith("Bundle.entry["):
            raise
        failing = next((e for e in entries if e.index not in results), entries[0] if entries else None)
        raise (_entry_error(failing.index, exc) if failing else exc) from None
    return [results[e.index] for e in entries]


async def _replay(conn: Conn, ctx: Context, entries: list[Entry]) -> list[EntryResult] | None:
    """A submission sent again (same SubmissionSet uniqueId, in the same record) is answered with what the
    first one stored, and stores nothing (ITI-65 retries after a lost response must not duplicate documents).
    Two concurrent copies are serialised on the uniqueId. Each entry names what the first submission made
    (`location`); its body comes back only if the sender may read it (a feed that only writes gets ids)."""
    sset = next(e for e in entries if documents.is_submission_set(e.body))
    assert sset.body is not None and sset.assigned is not None
    unique = pdsm.submission_unique_id(sset.body)
    if unique is None:
        return None
    space_id = sset.assigned[0]
    await locks.hold_until_commit(conn, f"mhd-submission {space_id} {unique}")
    system = next(
        (
            i.get("system") or ""
            for i in sset.body.get("identifier") or ()
            if isinstance(i, dict) and i.get("value") == unique
        ),
        "",
    )
    found = await docs_store.by_identifier(conn, space_id, "List", system, unique)
    if not found:
        return None
    made: dict[int, tuple[str, str]] = {sset.index: ("List", found[0])}
    binaries: dict[str, str] = {}  # this request's Binary reference -> the Binary the first submission made
    for e in entries:
        if e.resource_type != "DocumentReference" or e.body is None:
            continue
        master = e.body.get("masterIdentifier") or {}
        ids = await docs_store.by_identifier(
            conn, space_id, "DocumentReference", master.get("system") or "", str(master.get("value"))
        )
        if not ids:
            continue
        made[e.index] = ("DocumentReference", ids[0])
        stored_contents = await docs_store.content_ids(conn, space_id, ids[0])
        urls = [
            (c.get("attachment") or {}).get("url") for c in e.body.get("content") or () if isinstance(c, dict)
        ]
        if len(urls) == len(stored_contents) == 1 and isinstance(urls[0], str):
            binaries[urls[0]] = stored_contents[0]
    for e in entries:
        if e.resource_type == "Binary" and e.assigned is not None:
            first = next((b for url, b in binaries.items() if url.endswith(f"Binary/{e.assigned[1]}")), None)
            if first is not None:
                made[e.index] = ("Binary", first)
    results: list[EntryResult] = []
    for e in entries:
        if e.index not in made:
            raise _entry_error(
                e.index,
                InvalidResource(
                    "lot de soumission déjà reçu, mais cette entrée n'y figurait pas / submission set already "
                    "received, but without this entry (a resent submission must be identical)"
                ),
            )
        rtype, rid = made[e.index]
        readable = await fhir.scoped(conn, ctx, decide(ctx.actor, "read", rtype), [space_id])
        stored = None
        if readable.covers(space_id):
            stored = await store.read(conn, ctx.runtime.keys, readable, space_id, rtype, rid, None)
        results.append(EntryResult(200, stored=stored, location=f"{rtype}/{rid}"))
    list_read = await fhir.scoped(conn, ctx, decide(ctx.actor, "read", "List"), [space_id])
    if list_read.covers(space_id):
        await trace.access(
            conn,
            ctx,
            list_read,
            "resource:read",
            space_id,
            entity_type="List",
            entity_id=found[0],
            detail="mhd-resend",
        )
    return results


def _assign(e: Entry, space: uuid.UUID, refmap: dict[str, str]) -> None:
    rid = compartment.new_resource_id(None if space == DIRECTORY_SPACE else space)
    e.assigned = (space, rid)
    if e.full_url:
        refmap[e.full_url] = f"{e.resource_type}/{rid}"


async def _space_from_patient(conn: Conn, ctx: Context, e: Entry, refmap: dict[str, str]) -> uuid.UUID | None:
    assert e.body is not None
    body = _rewritten(e.body, refmap)
    refs = compartment.patient_references(body)
    if not refs or any(r.startswith(_PLACEHOLDER) for _, r in refs):
        return None
    return await fhir.space_for_new(conn, ctx, body)


def _space_from_referrers(e: Entry, entries: list[Entry]) -> uuid.UUID | None:
    if not e.full_url:
        return None
    for other in entries:
        if other is e or other.body is None:
            continue
        space = other.assigned[0] if other.assigned else None
        if other.method == "PUT" and other.resource_id:
            space = compartment.space_of(other.resource_id)
        if space is None or space == DIRECTORY_SPACE:
            continue
        if any(holder[key] == e.full_url for _, holder, key in fhir.iter_references(other.body, "")):
            return space
    return None


def _rewritten(body: Any, refmap: dict[str, str]) -> dict[str, Any]:
    """A copy of body with placeholder references replaced (Reference.reference and Attachment.url)."""

    def walk(node: Any, key: str | None = None) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if key in ("reference", "url") and isinstance(node, str) and node in refmap:
            return refmap[node]
        return node

    result: dict[str, Any] = walk(body)
    return result


def _check_unresolved(e: Entry) -> None:
    assert e.body is not None
    for where, holder, key in fhir.iter_references(e.body, e.resource_type):
        if key == "reference" and holder[key].startswith(_PLACEHOLDER):
            raise _entry_error(
                e.index,
                InvalidResource(
                    f"{where} : « {holder[key]} » ne désigne aucune entrée de la transaction / matches no fullUrl "
                    "in the transaction",
                    expression=where,
                ),
            )


def _matches_new(target_type: str, query: str, created: list[Entry]) -> list[str]:
    """`Type/id` of the resources created by this transaction that a token-only condition matches
    (`identifier=system|value`, the French INS case). Other conditions only match stored resources."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return []
    params = params_for(target_type)
    wanted = []
    for name, value in pairs:
        param = params.get(name)
        if param is None or param.type != "token" or "," in value:
            return []
        system, bar, code = value.rpartition("|")
        wanted.append((name, system if bar else None, code, bool(bar)))
    found = []
    for e in created:
        if e.resource_type != target_type or e.body is None or e.assigned is None:
            continue
        tokens = {(t.param, t.system, t.code) for t in extract(e.body).tokens}
        codes = {(t.param, t.code) for t in extract(e.body).tokens}
        if all(
            ((n, s or None, c) in tokens) if has_system else ((n, c) in codes)
            for n, s, c, has_system in wanted
        ):
            found.append(f"{target_type}/{e.assigned[1]}")
    return found


async def _resolve_conditional_references(
    conn: Conn,
    ctx: Context,
    e: Entry,
    created: list[Entry] | None = None,
    resolved: dict[str, str] | None = None,
) -> None:
    """Replace `Type?query` references by the one resource they match (http.html#trules): a stored one, or
    one this transaction creates (`created`); `resolved` keeps what this transaction already matched."""
    assert e.body is not None
    entries = created or []
    await fhir.resolve_references(
        conn, ctx, e.body, new_matches=lambda t, q: _matches_new(t, q, entries), resolved=resolved
    )


async def _execute(conn: Conn, ctx: Context, e: Entry) -> EntryResult:
    """One entry through the dispatcher, as the single request it stands for (record/interactions.py)."""
    decision = e.decision
    assert decision is not None
    try:
        if e.method == "POST":
            assert e.body is not None
            written = await interactions.create_in(
                conn, ctx, decision, e.body, e.if_none_exist, assigned=e.assigned
            )
            return EntryResult(
                201 if written.created else 200,
                stored=written.stored,
                created=written.created,
                warnings=list(written.warnings),
            )
        if e.method == "PUT":
            assert e.body is not None and e.resource_id is not None
            expected = fhir.parse_etag(e.if_match) if e.if_match else None
            written = await interactions.update_in(conn, ctx, decision, e.resource_id, e.body, expected)
            return EntryResult(
                201 if written.created else 200, stored=written.stored, created=written.created
            )
        if e.method == "DELETE":
            assert e.resource_id is not None
            await interactions.delete_in(conn, ctx, decision, e.resource_id)
            return EntryResult(204)
        if e.method == "PATCH":
            expected = fhir.parse_etag(e.if_match) if e.if_match else None
            patched = await interactions.patch_in(
                conn, ctx, decision, e.resource_id, e.query, e.patch, e.json_patch, expected
            )
            return EntryResult(200, stored=patched)
        if e.resource_id is None:
            pairs = parse_qsl(e.query or "", keep_blank_values=True)
            request = interactions.parse_search(ctx, e.resource_type, pairs)
            return EntryResult(200, search=await interactions.search_in(conn, ctx, decision, request))
        version = fhir.version_number(e.version) if e.version else None
        return EntryResult(
            200, stored=await interactions.read_in(conn, ctx, decision, e.resource_id, version)
        )
    except FhirError as exc:
        raise _entry_error(e.index, exc, in_request=e.method == "GET" and e.resource_id is None) from None


def split_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.path, parts.query
