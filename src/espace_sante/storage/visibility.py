"""The policy's answer as SQL: which rows of a type a decision reaches, space by space (access/policy.py
`Slice` and `Rows`). Search, read, history and includes all filter through here, so a count, a page, an
included resource and a read by id agree on what exists for the actor (SECURITY FHIR attacks 1 and 2).

Documents are filtered on their current index rows: their class (`category`), their visibility codes
(`security-label`) and their author; a Binary is reached through the documents that point at it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from espace_sante.access.policy import EVERYTHING, MASKED_FROM_PROFESSIONALS, Decision, Rows
from espace_sante.fhir.searchparams import ATTACHMENT_PARAM
from espace_sante.storage.db import Conn
from espace_sante.storage.tables import tables_for

Arg = Callable[[Any], str]

#: What a lifecycle state looks like (space.state's CHECK constraint, 0009_lifecycle.sql): the only text
#: written into SQL rather than passed as a parameter (`live_sql`).
_STATE = re.compile(r"[a-z]{1,20}")


def _owns(alias: str, table: str, param: str, condition: str, space: str | None = None) -> str:
    # `space`: the one space the rows lie in, named rather than followed from the row (see rows_sql).
    return (
        f"EXISTS (SELECT 1 FROM {table} f WHERE f.space_id = {space or f'{alias}.space_id'} AND f.resource_type = "
        f"{alias}.resource_type AND f.resource_id = {alias}.resource_id AND f.param = '{param}' AND {condition})"
    )


def _labelled(arg: Arg, alias: str, codes: list[str], space: str | None = None) -> str:
    return _owns(alias, "sp_token", "security-label", f"f.code = ANY({arg(codes)}::text[])", space)


def _authored(arg: Arg, alias: str, reference: str, space: str | None = None) -> str:
    target_type, _, target_id = reference.partition("/")
    return _owns(
        alias,
        "sp_reference",
        "author",
        f"f.target_type = {arg(target_type)} AND f.target_id = {arg(target_id)}",
        space,
    )


def _document_rows(arg: Arg, alias: str, rows: Rows, space: str | None = None) -> list[str]:
    conds = []
    if rows.categories is not None:
        conds.append(
            _owns(
                alias, "sp_token", "category", f"f.code = ANY({arg(sorted(rows.categories))}::text[])", space
            )
        )
    hidden = set(rows.hidden)
    if rows.masked_author and MASKED_FROM_PROFESSIONALS in hidden:
        hidden.discard(MASKED_FROM_PROFESSIONALS)
        conds.append(
            f"(NOT {_labelled(arg, alias, [MASKED_FROM_PROFESSIONALS], space)} OR "
            f"{_authored(arg, alias, 'Practitioner/' + rows.masked_author, space)})"
        )
    if hidden:
        conds.append(f"NOT {_labelled(arg, alias, sorted(hidden), space)}")
    if rows.author:
        conds.append(_authored(arg, alias, rows.author, space))
    return conds


def rows_sql(arg: Arg, alias: str, rtype: str, rows: Rows, *, space: str | None = None) -> str:
    """A boolean SQL expression over the resource row `alias`: true for the rows `rows` reaches.

    `space` is for rows that all lie in one space named by a parameter: the subqueries then name it instead of
    following the row's, which Citus routes to one shard (it does not follow a correlation through OR-ed
    subqueries); the rows reached are the same."""
    if rows.everything or rtype not in ("DocumentReference", "Binary"):
        return "true"
    if rtype == "DocumentReference":
        conds = _document_rows(arg, alias, rows, space)
        return " AND ".join(conds) if conds else "true"
    # A Binary is a document's content: reached through a live document that points at it, and never when any
    # document pointing at it (live or deleted: deleted documents keep these index rows, storage/resources.py
    # VISIBILITY_PARAMS) hides it. Content no document points at any more (replaced by a correction) is reached
    # by no person: it may be the first version of a result hidden from them (review of 2026-12-03, D1).
    pointing = (
        "SELECT 1 FROM sp_reference b JOIN resource d ON d.space_id = b.space_id AND d.resource_type = "
        "b.resource_type AND d.resource_id = b.resource_id WHERE b.space_id = "
        f"{space or f'{alias}.space_id'} AND b.resource_type = 'DocumentReference' AND b.param = '{ATTACHMENT_PARAM}' "
        f"AND b.target_type = 'Binary' AND b.target_id = {alias}.resource_id"
    )
    if rows.categories is None and not rows.masked_author and not rows.author:
        if not rows.hidden:
            return "true"
        return (
            f"EXISTS ({pointing} AND NOT d.deleted) AND "
            f"NOT EXISTS ({pointing} AND {_labelled(arg, 'd', sorted(rows.hidden), space)})"
        )
    conds = _document_rows(arg, "d", rows, space)
    return f"EXISTS ({pointing} AND NOT d.deleted{''.join(' AND ' + c for c in conds)})"


def scope_sql(arg: Arg, alias: str, decision: Decision, *, space: str | None = None) -> str | None:
    """The decision's reach over `alias` (a row of the decided type): None when it reaches everything.

    `space` is for a query whose rows all lie in one space known without reading them (a parameter: the
    patient a search names): the lifecycle state is then checked once on it rather than once per row."""
    if decision.slices is None:
        if decision.states is None:
            return None
        return live_sql(space or f"{alias}.space_id", decision.states)
    if not decision.slices:
        return "false"
    parts = []
    for s in decision.slices:
        rows = rows_sql(arg, alias, decision.resource_type, s.rows, space=space)
        spaces = f"{alias}.space_id = ANY({arg(sorted(s.spaces))}::uuid[])"
        parts.append(spaces if rows == "true" else f"({spaces} AND {rows})")
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def state_only(decision: Decision) -> frozenset[str] | None:
    """The lifecycle states a decision that reaches every space is limited to (a machine client's: open and
    active); None when the decision limits no state or reaches named spaces (a person's, decided on facts
    that include the state)."""
    return decision.states if decision.slices is None else None


def live_sql(space: str, states: frozenset[str]) -> str:
    """The space `space` (an SQL expression of a space id) is in one of `states`: one primary-key probe of
    `space`. The states are the policy's constants (PROFESSIONAL_STATES), written into the SQL: sent as a
    `text[]` parameter they cost the ITI-67 search as much as the whole condition (benchmarks/README.md,
    "Machine clients reach open and active spaces only"). Callers give an expression evaluated once per space
    where they have one rather than `r.space_id` (a probe per row)."""
    if not states or not all(_STATE.fullmatch(state) for state in states):
        raise ValueError(f"not lifecycle states: {sorted(states)!r}")
    listed = ", ".join(f"'{state}'" for state in sorted(states))
    return f"EXISTS (SELECT 1 FROM space s WHERE s.space_id = {space} AND s.state IN ({listed}))"


async def covers(conn: Conn, decision: Decision, space_id: uuid.UUID) -> bool:
    """`decision.covers(space_id)`, and the space's lifecycle state among the decision's `states` (a machine
    client's decision reaches every space, but only open or active ones): for readers that check a space, not
    a resource (the trace)."""
    if not decision.covers(space_id):
        return False
    if decision.slices is None and decision.states is not None:
        state = await conn.fetchval("SELECT state FROM space WHERE space_id = $1", space_id)
        return state in decision.states
    return True


async def reaches(conn: Conn, decision: Decision, space_id: uuid.UUID, rtype: str, rid: str) -> bool:
    """Whether the decision reaches this resource (its current index rows), whatever its version."""
    rows = decision.rows_in(space_id)
    if rows is None or not await covers(conn, decision, space_id):
        return False
    if rows == EVERYTHING or rtype not in ("DocumentReference", "Binary"):
        return True
    args: list[Any] = [space_id, rtype, rid]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    t = tables_for(rtype)
    return bool(
        await conn.fetchval(
            f"SELECT 1 FROM {t.resource} r WHERE r.space_id = $1 AND r.resource_type = $2 AND r.resource_id = $3 "
            f"AND {rows_sql(arg, 'r', rtype, rows, space='$1')}",
            *args,
        )
    )


async def hidden_documents(conn: Conn, space_id: uuid.UUID, labels: frozenset[str]) -> list[tuple[str, str]]:
    """(type, id) of the documents carrying one of these visibility codes in a space, and of their content:
    what a trace listing must leave out for a reader those documents are hidden from."""
    if not labels:
        return []
    rows = await conn.fetch(
        "SELECT 'DocumentReference' AS t, t.resource_id AS id FROM sp_token t WHERE t.space_id = $1 "
        "AND t.resource_type = 'DocumentReference' AND t.param = 'security-label' AND t.code = ANY($2::text[]) "
        "UNION SELECT 'Binary', b.target_id FROM sp_reference b JOIN sp_token t ON t.space_id = b.space_id "
        "AND t.resource_type = b.resource_type AND t.resource_id = b.resource_id AND t.param = 'security-label' "
        f"AND t.code = ANY($2::text[]) WHERE b.space_id = $1 AND b.resource_type = 'DocumentReference' "
        f"AND b.param = '{ATTACHMENT_PARAM}' AND b.target_type = 'Binary'",
        space_id,
        sorted(labels),
    )
    return [(r["t"], r["id"]) for r in rows]


async def documents_pointing_at(conn: Conn, space_id: uuid.UUID, binary_id: str) -> list[str]:
    """The documents (live or deleted) whose content is this Binary."""
    rows = await conn.fetch(
        "SELECT resource_id FROM sp_reference WHERE space_id = $1 AND resource_type = 'DocumentReference' "
        f"AND param = '{ATTACHMENT_PARAM}' AND target_type = 'Binary' AND target_id = $2",
        space_id,
        binary_id,
    )
    return [r["resource_id"] for r in rows]
