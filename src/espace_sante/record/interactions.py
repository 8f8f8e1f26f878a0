"""The one dispatcher of FHIR interactions: each type's rule (record/resources.Rule) and the entry points of a
single request (api/fhir/routes.py, the portals) and of a Bundle entry (record/bundles.py).

A type's rule says which interactions it offers (anything else is 405 before the policy is asked) and does
the ones it overrides: a DocumentReference's create with its content inline is an ITI-105 publish and its
PATCH a PDSm metadata update (record/documents/rules.py), a Binary read without a FHIR format is ITI-68
(documents.retrieve), AuditEvent is read and searched from the trace (record/auditevents.py). The `*_in`
functions run one interaction inside the caller's transaction: a single request opens its own, a
transaction Bundle runs all its entries in one, a batch one per entry; so both take the same path.

This module sits above the types' modules and the generic service (resources.py), and below bundles.py."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from espace_sante.access.policy import Action, Decision
from espace_sante.context import Context
from espace_sante.errors import MethodNotAllowed, NotFound
from espace_sante.fhir.searchquery import SearchRequest
from espace_sante.fhir.validation import validate_resource
from espace_sante.record import auditevents, documents
from espace_sante.record import resources as fhir
from espace_sante.record.documents import rules as document_rules
from espace_sante.storage import resources as store
from espace_sante.storage.db import Conn

#: The rule of each type that adds to the generic one; every other type has `resources.GENERIC`.
RULES: Mapping[str, fhir.Rule] = {
    "Binary": document_rules.BINARY,
    "DocumentReference": document_rules.DOCUMENT,
    "AuditEvent": auditevents.AUDIT_EVENTS,
}


def rule_for(resource_type: str) -> fhir.Rule:
    return RULES.get(resource_type, fhir.GENERIC)


def check_offered(resource_type: str, action: str) -> None:
    """404 for a type this server does not serve, 405 for an interaction its type does not offer."""
    fhir.check_type(resource_type)
    rule = rule_for(resource_type)
    if action not in rule.offers:
        raise MethodNotAllowed(rule.refusal(action))


async def authorize(ctx: Context, action: Action, resource_type: str) -> Decision:
    """`resources.authorize` for an interaction the type offers."""
    check_offered(resource_type, action)
    return await fhir.authorize(ctx, action, resource_type)


# --- one interaction inside the caller's transaction (a single request or a Bundle entry) ---------------


def parse_search(ctx: Context, resource_type: str, pairs: Sequence[tuple[str, str]]) -> SearchRequest:
    """A search's parameters as its type reads them, before any transaction."""
    return rule_for(resource_type).parse_search(ctx, resource_type, pairs)


async def create_in(
    conn: Conn,
    ctx: Context,
    decision: Decision,
    body: dict[str, Any],
    if_none_exist: str | None,
    *,
    assigned: tuple[uuid.UUID, str] | None = None,
) -> fhir.Written:
    """A create inside the caller's transaction `conn` (see resources.create_in for the preconditions)."""
    rule = rule_for(decision.resource_type)
    return await rule.create_in(conn, ctx, decision, body, if_none_exist, assigned=assigned)


async def read_in(
    conn: Conn, ctx: Context, decision: Decision, rid: str, version: int | None
) -> store.Stored:
    """A read (`version` None) or vread inside the caller's transaction `conn`."""
    return await rule_for(decision.resource_type).read_in(conn, ctx, decision, rid, version)


async def search_in(
    conn: Conn, ctx: Context, decision: Decision, request: SearchRequest
) -> fhir.SearchResult:
    """A search (`parse_search` made `request`) inside the caller's transaction `conn`."""
    return await rule_for(decision.resource_type).search_in(conn, ctx, decision, request)


async def update_in(
    conn: Conn, ctx: Context, decision: Decision, rid: str, body: dict[str, Any], expected: int | None
) -> fhir.Written:
    """An update inside the caller's transaction `conn` (see resources.update_in)."""
    return await rule_for(decision.resource_type).update_in(conn, ctx, decision, rid, body, expected)


async def delete_in(conn: Conn, ctx: Context, decision: Decision, rid: str) -> store.Stored | None:
    """A delete inside the caller's transaction `conn` (see resources.delete_in)."""
    return await rule_for(decision.resource_type).delete_in(conn, ctx, decision, rid)


async def patch_in(
    conn: Conn,
    ctx: Context,
    decision: Decision,
    rid: str | None,
    condition: str | None,
    payload: Any,
    json_patch: bool,
    expected: int | None,
) -> store.Stored:
    """A PATCH of `rid`, or of the one resource `condition` matches, inside the caller's transaction `conn`."""
    rule = rule_for(decision.resource_type)
    return await rule.patch_in(conn, ctx, decision, rid, condition, payload, json_patch, expected)


# --- single requests: each one interaction in its own transaction ----------------------------------------


async def _discarding(ctx: Context) -> None:
    """Content put in the blob store by a write that did not commit is removed at once (the collector would
    find it later anyway: documents.collect_orphans)."""
    if ctx.uploads:
        await documents.discard_unrecorded(ctx)


async def create(ctx: Context, body: Any, *, if_none_exist: str | None = None) -> fhir.Written:
    rtype = fhir.body_type(body)
    decision = await authorize(ctx, "create", rtype)
    validate_resource(body, expected_type=rtype)

    async def run(conn: Conn) -> fhir.Written:
        ctx.deposits.clear()  # a retried transaction starts again from nothing
        return await create_in(conn, ctx, decision, body, if_none_exist)

    try:
        return await ctx.runtime.db.interaction("fhir_create", run)
    finally:
        await _discarding(ctx)


async def read(ctx: Context, resource_type: str, resource_id: str) -> store.Stored:
    decision = await authorize(ctx, "read", resource_type)
    run = ctx.runtime.db.interaction if rule_for(resource_type).read_in_transaction else ctx.runtime.db.read
    return await run("fhir_read", read_in, ctx, decision, resource_id, None)


async def vread(ctx: Context, resource_type: str, resource_id: str, version: str) -> store.Stored:
    decision = await authorize(ctx, "vread", resource_type)
    number = fhir.version_number(version)
    return await ctx.runtime.db.read("fhir_vread", read_in, ctx, decision, resource_id, number)


def serves_content(resource_type: str) -> bool:
    """Whether a read of this type without a FHIR format sends the content itself (binary.html, ITI-68)."""
    return resource_type in RULES and rule_for(resource_type).serves_content


async def retrieve(
    ctx: Context, resource_type: str, resource_id: str, *, range_header: str | None, if_range: str | None
) -> documents.Retrieved:
    """ITI-68 Retrieve Document: the content of a Binary (see documents.retrieve)."""
    if not serves_content(resource_type):
        raise NotFound(f"{resource_type}/{resource_id} : aucun contenu / no content")
    return await documents.retrieve(ctx, resource_id, range_header=range_header, if_range=if_range)


async def search(ctx: Context, resource_type: str, pairs: Sequence[tuple[str, str]]) -> fhir.SearchResult:
    fhir.check_type(resource_type)
    request = parse_search(ctx, resource_type, pairs)
    decision = await authorize(ctx, "search", resource_type)
    return await ctx.runtime.db.interaction("fhir_search", search_in, ctx, decision, request)


async def update(
    ctx: Context, resource_type: str, resource_id: str, body: Any, *, if_match: str | None = None
) -> fhir.Written:
    decision = await authorize(ctx, "update", resource_type)
    rtype = fhir.check_update_body(resource_type, resource_id, body)
    validate_resource(body, expected_type=rtype)
    expected = fhir.parse_etag(if_match) if if_match else None

    async def run(conn: Conn) -> fhir.Written:
        ctx.deposits.clear()
        return await update_in(conn, ctx, decision, resource_id, body, expected)

    try:
        return await ctx.runtime.db.interaction("fhir_update", run)
    finally:
        await _discarding(ctx)


async def delete(ctx: Context, resource_type: str, resource_id: str) -> None:
    decision = await authorize(ctx, "delete", resource_type)
    await ctx.runtime.db.interaction("fhir_delete", delete_in, ctx, decision, resource_id)


async def patch(
    ctx: Context,
    resource_type: str,
    resource_id: str | None,
    *,
    condition: str | None,
    payload: Any,
    json_patch: bool,
    if_match: str | None = None,
) -> store.Stored:
    """`PATCH Type/<id>`, or the conditional `PATCH Type?…`, of a type that offers it (405 otherwise)."""
    decision = await authorize(ctx, "patch", resource_type)
    expected = fhir.parse_etag(if_match) if if_match else None

    async def run(conn: Conn) -> store.Stored:
        return await patch_in(conn, ctx, decision, resource_id, condition, payload, json_patch, expected)

    return await ctx.runtime.db.interaction("fhir_patch", run)


async def history(
    ctx: Context,
    resource_type: str,
    resource_id: str | None,
    *,
    since: datetime | None,
    count: int,
    offset: int,
) -> fhir.HistoryPage:
    check_offered(resource_type, "history")
    return await fhir.history(ctx, resource_type, resource_id, since=since, count=count, offset=offset)
