"""Search over the index tables (STYLE habit 10): the parsed request becomes one parameterised query, limited
by the policy's decision inside SQL so that paging, counts and includes see exactly what the actor may see.
No search reads a resource body.

Date, number and quantity comparisons follow FHIR R4 search.html#prefix, with both the stored value and the
searched value read as half-open ranges [low, high)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from espace_sante.access.policy import Decision
from espace_sante.fhir import compartment
from espace_sante.fhir.searchquery import (
    Clause,
    DateQuery,
    NumberQuery,
    QuantityQuery,
    ReferenceQuery,
    SearchRequest,
    StringQuery,
    TokenQuery,
)
from espace_sante.storage import db, resources, visibility
from espace_sante.storage.db import Conn
from espace_sante.storage.keys import DIRECTORY_SPACE, KeyStore
from espace_sante.storage.resources import JOIN_KEYS, WRAPPED_KEY, Stored
from espace_sante.storage.tables import Tables, tables_for

MAX_INCLUDED = 1000
_TOP = "\U0010ffff"


class _Sql:
    """Collects positional arguments: every value from the request becomes a $n parameter."""

    def __init__(self) -> None:
        self.args: list[Any] = []
        #: The parameter holding the one space a search is confined to, when it is: its subqueries then name
        #: that space rather than follow the outer row's, which Citus routes to one shard (it does not follow
        #: a correlation through nested subqueries); the rows are the same, every match lying in that space.
        self.space: str | None = None

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"


def _owned(q: _Sql, alias: str, table: str, rtype: str, param: str, condition: str | None) -> str:
    """`alias` (a resource row) owns an index row of `param` satisfying `condition`. Correlated on the space
    (an EXISTS, which PostgreSQL plans as the same semi-join as an IN): Citus runs a subquery with its outer row
    on the same shard only when they are joined on the distribution column."""
    # The one space a search is confined to names a space table's rows only: the directory's all carry the
    # nil space (a chain into the directory, `author:Practitioner.family=`, follows its row as before).
    space = q.space if q.space and not table.startswith("dir_") else f"{alias}.space_id"
    where = (
        f"x.space_id = {space} AND x.resource_id = {alias}.resource_id AND "
        f"x.resource_type = {q.arg(rtype)} AND x.param = {q.arg(param)}"
    )
    if condition:
        where += f" AND ({condition})"
    return f"EXISTS (SELECT 1 FROM {table} x WHERE {where})"


def _date_cond(q: _Sql, lo: str, hi: str, v: DateQuery) -> str:
    # Only the bounds a prefix uses become parameters: PostgreSQL cannot type a parameter the query never
    # mentions (gt, lt, sa and eb compare one bound only).
    def ql() -> str:
        return q.arg(v.low)

    def qh() -> str:
        return q.arg(v.high)

    def inside() -> str:
        return f"({lo} >= {ql()} AND {hi} <= {qh()})"

    match v.prefix:
        case "eq":
            return inside()
        case "ne":
            return f"NOT {inside()}"
        case "gt":
            return f"{hi} > {qh()}"
        case "lt":
            return f"{lo} < {ql()}"
        case "ge":
            return f"({hi} > {qh()} OR {inside()})"
        case "le":
            return f"({lo} < {ql()} OR {inside()})"
        case "sa":
            return f"{lo} >= {qh()}"
        case "eb":
            return f"{hi} <= {ql()}"
        case _:  # ap: the ranges overlap
            return f"({lo} < {qh()} AND {hi} > {ql()})"


def _half_unit(value: Decimal) -> Decimal:
    """Half of the last significant digit written: 5.4 -> 0.05, 100 -> 0.5 (search.html#number)."""
    exponent = value.as_tuple().exponent
    return Decimal(5).scaleb(int(exponent) - 1) if isinstance(exponent, int) else Decimal(0)


def _number_cond(q: _Sql, col: str, prefix: str, value: Decimal) -> str:
    match prefix:
        case "eq" | "ne":
            half = _half_unit(value)
            cond = f"({col} >= {q.arg(value - half)} AND {col} < {q.arg(value + half)})"
            return cond if prefix == "eq" else f"NOT {cond}"
        case "gt" | "sa":
            return f"{col} > {q.arg(value)}"
        case "lt" | "eb":
            return f"{col} < {q.arg(value)}"
        case "ge":
            return f"{col} >= {q.arg(value)}"
        case "le":
            return f"{col} <= {q.arg(value)}"
        case _:  # ap: within 10 %
            spread = abs(value) / 10
            return f"({col} >= {q.arg(value - spread)} AND {col} <= {q.arg(value + spread)})"


def _token_cond(q: _Sql, v: TokenQuery, code_column: str = "x.code") -> str:
    if v.code is None:
        return f"x.system = {q.arg(v.system)}" if v.system else "false"
    code = f"{code_column} = {q.arg(v.code)}"
    if v.any_system:
        return code
    if v.system is None:
        return f"(x.system IS NULL AND {code})"
    return f"(x.system = {q.arg(v.system)} AND {code})"


def _value_cond(q: _Sql, v: object) -> str:
    if isinstance(v, TokenQuery):
        return _token_cond(q, v)
    if isinstance(v, StringQuery):
        if v.mode == "exact":
            return f"x.exact = {q.arg(v.text)}"
        if v.mode == "contains":
            escaped = v.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            return f"x.normalized LIKE {q.arg('%' + escaped + '%')}"
        return f"(x.normalized >= {q.arg(v.text)} AND x.normalized < {q.arg(v.text + _TOP)})"
    if isinstance(v, DateQuery):
        return _date_cond(q, "x.low", "x.high", v)
    if isinstance(v, ReferenceQuery):
        cond = f"x.target_id = {q.arg(v.target_id)}"
        return cond if v.target_type is None else f"({cond} AND x.target_type = {q.arg(v.target_type)})"
    if isinstance(v, QuantityQuery):
        cond = _number_cond(q, "x.value", v.prefix, v.value)
        if v.system is not None:
            cond += f" AND x.system = {q.arg(v.system)}"
        if v.code is not None:
            cond += f" AND x.code = {q.arg(v.code)}"
        return f"({cond})"
    if isinstance(v, NumberQuery):
        return _number_cond(q, "x.value", v.prefix, v.value)
    raise TypeError(f"unsupported search value {type(v).__name__}")


_TABLE_OF = {
    "token": "token",
    "uri": "token",
    "string": "string",
    "date": "date",
    "reference": "reference",
    "quantity": "quantity",
    "number": "number",
}


def _clause(
    q: _Sql, t: Tables, alias: str, rtype: str, clause: Clause, decision: Decision, *, anchor: bool = False
) -> str:
    """One AND-ed clause as a boolean SQL expression about the resource row `alias`. `anchor`: this clause is
    the chain `_where` checks the lifecycle state on (`_anchor`)."""
    if clause.param is None:  # _id, _lastUpdated
        if clause.name == "_id":
            ids = [v.code for v in clause.values if isinstance(v, TokenQuery) and v.code is not None]
            return f"{alias}.resource_id = ANY({q.arg(ids)}::text[])"
        parts = [
            _date_cond(q, f"{alias}.last_updated", f"({alias}.last_updated + interval '1 millisecond')", v)
            for v in clause.values
            if isinstance(v, DateQuery)
        ]
        return "(" + " OR ".join(parts or ["false"]) + ")"
    param = clause.param
    table = getattr(t, _TABLE_OF[param.type])
    if clause.missing is not None:
        owned = _owned(q, alias, table, rtype, param.name, None)
        return f"NOT {owned}" if clause.missing else owned
    if clause.chain is not None:
        chain = clause.chain
        target = tables_for(chain.target_type)
        inner = _clause(q, target, "c", chain.target_type, chain.inner, decision)
        # The chain's target passes the policy too: a chain never tests what the actor may not see.
        reach: str | None = None
        if decision.slices is not None:
            chained = decision.chains.get(chain.target_type)
            reach = "false" if chained is None else visibility.scope_sql(q.arg, "c", chained)
        states = visibility.state_only(decision) if anchor else None
        if states is not None:
            # The chained target in the row's own space (references never cross spaces), and that space in a
            # state the decision reaches: one probe of `space` per target, that is per space, instead of one
            # per row (_where leaves the row-level check out).
            sub = (
                f"x.target_type = {q.arg(chain.target_type)} AND EXISTS (SELECT 1 FROM {target.resource} c "
                f"WHERE c.space_id = {q.space or 'x.space_id'} AND c.resource_id = x.target_id AND c.resource_type = "
                f"{q.arg(chain.target_type)} AND NOT c.deleted AND {inner} AND "
                f"{visibility.live_sql('c.space_id', states)})"
            )
        else:
            # A target in a space is in the row's own space (references never cross spaces): said, so that
            # Citus keeps the chain on the row's shard. The directory's targets are everywhere (reference tables).
            same_space = (
                f"c.space_id = {q.space or 'x.space_id'} AND " if target.resource == "resource" else ""
            )
            sub = (
                f"x.target_type = {q.arg(chain.target_type)} AND x.target_id IN (SELECT c.resource_id FROM "
                f"{target.resource} c WHERE {same_space}c.resource_type = {q.arg(chain.target_type)} "
                f"AND NOT c.deleted AND {inner}{'' if reach is None else f' AND {reach}'})"
            )
        return _owned(q, alias, table, rtype, param.name, sub)
    condition = " OR ".join(_value_cond(q, v) for v in clause.values) or "false"
    if clause.modifier == "not":
        return f"NOT {_owned(q, alias, table, rtype, param.name, condition)}"
    return _owned(q, alias, table, rtype, param.name, condition)


def space_hint(request: SearchRequest) -> uuid.UUID | None:
    """A search pinned to one patient (patient=..., subject=Patient/...) runs in that patient's space only."""
    for clause in request.clauses:
        if clause.param is None or clause.param.type != "reference" or clause.modifier == "not":
            continue
        if len(clause.values) == 1 and isinstance(clause.values[0], ReferenceQuery):
            ref = clause.values[0]
            if ref.target_type in (None, "Patient"):
                space = compartment.space_of(ref.target_id)
                if space is not None:
                    return space
    if request.resource_type == "Patient":
        for clause in request.clauses:
            if clause.name == "_id" and len(clause.values) == 1 and isinstance(clause.values[0], TokenQuery):
                code = clause.values[0].code
                return compartment.space_of(code) if code else None
    return None


#: More spaces than this behind one patient's identifier is not one patient: the search names none.
MAX_NAMED_SPACES = 100


def _identifier_values(request: SearchRequest) -> list[list[TokenQuery]]:
    """The patient identifiers a search requires, one list (OR-ed values) per clause: ITI-67's
    `patient.identifier=system|value`, `subject:Patient.identifier=…`, and `Patient?identifier=…`. A value
    without a code (`system|`) names no one."""
    found = []
    for clause in request.clauses:
        inner: Clause | None = None
        if clause.chain is not None and clause.chain.target_type == "Patient":
            inner = clause.chain.inner
        elif request.resource_type == "Patient" and clause.chain is None:
            inner = clause
        if inner is None or inner.param is None or inner.param.name != "identifier" or inner.modifier:
            continue
        values = [v for v in inner.values if isinstance(v, TokenQuery)]
        if values and len(values) == len(inner.values) and all(v.code is not None for v in values):
            found.append(values)
    return found


async def named_spaces(conn: Conn, request: SearchRequest) -> list[uuid.UUID] | None:
    """The spaces of the patients a search names by identifier (`_identifier_values`), looked up in the index
    before the policy decides, so that a care team reaching thousands of records decides on these only; None
    when the search names no patient this way. Every match lies in these spaces: the clause is AND-ed, and
    references never cross spaces."""
    for values in _identifier_values(request):
        q = _Sql()
        # The identifiers by value (migrations/0029): one shard on Citus for one value.
        condition = " OR ".join(_token_cond(q, v, "x.value") for v in values)
        rows = await conn.fetch(
            f"SELECT DISTINCT x.space_id FROM patient_identifier x WHERE ({condition}) "
            f"LIMIT {q.arg(MAX_NAMED_SPACES + 1)}",
            *q.args,
        )
        if len(rows) <= MAX_NAMED_SPACES:
            return sorted(r["space_id"] for r in rows)
    return None


async def _pinned(conn: Conn, request: SearchRequest) -> list[uuid.UUID] | None:
    """On Citus, the spaces a search that names its patient by identifier can match (`named_spaces`), so that
    it runs on their shards only instead of every shard; None elsewhere, or when the search names no patient
    this way or names a space already (one server finds the same rows through its index without the lookup's
    round trip). Pinning changes no answer: every match lies in these spaces."""
    if not db.distributed(conn) or space_hint(request) is not None:
        return None
    if tables_for(request.resource_type).resource != "resource":
        return None
    return await named_spaces(conn, request)


def _where(
    q: _Sql, decision: Decision, request: SearchRequest, pinned: list[uuid.UUID] | None = None
) -> tuple[Tables, str]:
    rtype = request.resource_type
    decision.require("search", rtype)
    t = tables_for(rtype)
    where = [f"r.resource_type = {q.arg(rtype)}", "NOT r.deleted"]
    hint = space_hint(request) if t.resource == "resource" else None
    space = None if hint is None else q.arg(hint)
    # A decision limited to live spaces (a machine client's) checks the state once per space the search
    # reaches, not on every row: on the space the search names, or on the target of a chain (ITI-67's
    # patient.identifier), whose space every row shares; otherwise on each row.
    anchor = None if space is not None else _anchor(t, request, decision)
    if anchor is None:
        scope = visibility.scope_sql(q.arg, "r", decision, space=space)
        if scope is not None:
            where.append(scope)
    if space is None and pinned is not None and len(pinned) == 1:
        space = q.arg(pinned[0])
    if space is not None:
        where.append(f"r.space_id = {space}")
        q.space = space
    elif pinned is not None:
        where.append(f"r.space_id = ANY({q.arg(pinned)})")
    where += [_clause(q, t, "r", rtype, c, decision, anchor=c is anchor) for c in request.clauses]
    return t, " AND ".join(where)


def _anchor(t: Tables, request: SearchRequest, decision: Decision) -> Clause | None:
    """The chain clause on which a state-limited decision is checked instead of on every row: the first chain
    (clauses are AND-ed: every row satisfies it) from a space type to a space type."""
    if visibility.state_only(decision) is None or t.resource != "resource":
        return None
    for clause in request.clauses:
        chain = clause.chain
        if (
            chain is not None
            and clause.param is not None
            and clause.missing is None
            and tables_for(chain.target_type).resource == "resource"
        ):
            return clause
    return None


def _order(q: _Sql, t: Tables, request: SearchRequest) -> str:
    keys = []
    for key in request.sort:
        direction = "DESC" if key.descending else "ASC"
        if key.param is None:
            column = "r.resource_id" if key.name == "_id" else "r.last_updated"
        else:
            table, column_name = {
                "date": (t.date, "low" if not key.descending else "high"),
                "string": (t.string, "normalized"),
                "token": (t.token, "code"),
            }[key.param.type]
            agg = "max" if key.descending else "min"
            column = (
                f"(SELECT {agg}(s.{column_name}) FROM {table} s WHERE s.space_id = r.space_id AND "
                f"s.resource_type = r.resource_type AND s.resource_id = r.resource_id AND "
                f"s.param = {q.arg(key.param.name)})"
            )
        keys.append(f"{column} {direction} NULLS LAST")
    if not keys:
        keys.append("r.last_updated ASC")
    keys.append("r.resource_id ASC")
    return ", ".join(keys)


async def page(
    conn: Conn, keys: KeyStore, decision: Decision, request: SearchRequest
) -> tuple[list[Stored], bool]:
    """One page of matches with their current bodies (one query), and whether another page follows."""
    pinned = await _pinned(conn, request)
    if pinned == []:
        return [], False
    q = _Sql()
    t, where = _where(q, decision, request, pinned)
    order = _order(q, t, request)
    limit, offset = q.arg(request.count + 1), q.arg(request.offset)
    rows = await conn.fetch(
        f"SELECT r.space_id, r.resource_id, v.version_id, v.last_updated, v.method, v.key_version, v.body, "
        f"{WRAPPED_KEY} FROM {t.resource} r JOIN {t.version} v ON v.space_id = r.space_id AND "
        f"v.resource_type = r.resource_type AND v.resource_id = r.resource_id AND v.version_id = r.version_id "
        f"{JOIN_KEYS} WHERE {where} ORDER BY {order} LIMIT {limit} OFFSET {offset}",
        *q.args,
    )
    found = await resources.bodies_of(conn, keys, decision, request.resource_type, rows[: request.count])
    return found, len(rows) > request.count


async def counts(conn: Conn, decision: Decision, request: SearchRequest) -> dict[uuid.UUID, int]:
    """The number of matches in each space that has any: a count tells whether a patient has such data as
    well as a page does, so the caller traces every space counted (issue 16)."""
    pinned = await _pinned(conn, request)
    if pinned == []:
        return {}
    q = _Sql()
    t, where = _where(q, decision, request, pinned)
    rows = await conn.fetch(
        f"SELECT r.space_id, count(*) AS n FROM {t.resource} r WHERE {where} GROUP BY r.space_id", *q.args
    )
    return {row["space_id"]: int(row["n"]) for row in rows}


async def includes(
    conn: Conn, request: SearchRequest, page_keys: Sequence[tuple[uuid.UUID, str]]
) -> list[tuple[str, list[tuple[uuid.UUID, str]]]]:
    """Keys of the resources `_include`d and `_revinclude`d by a page, grouped by type. The caller passes
    each group through the policy before reading it."""
    if not page_keys or not (request.includes or request.revincludes):
        return []
    rtype = request.resource_type
    t = tables_for(rtype)
    spaces = [s for s, _ in page_keys]
    ids = [i for _, i in page_keys]
    found: dict[str, list[tuple[uuid.UUID, str]]] = {}
    budget = MAX_INCLUDED
    for inc in request.includes:
        if inc.source_type != rtype or budget <= 0:
            continue
        rows = await conn.fetch(
            f"SELECT DISTINCT x.target_type, x.target_id FROM {t.reference} x "
            f"JOIN unnest($1::uuid[], $2::text[]) AS k(space_id, resource_id) USING (space_id, resource_id) "
            f"WHERE x.resource_type = $3 AND x.param = $4 AND ($5::text IS NULL OR x.target_type = $5) LIMIT $6",
            spaces,
            ids,
            rtype,
            inc.param.name,
            inc.target_type,
            budget,
        )
        budget -= len(rows)
        for row in rows:
            space = (
                DIRECTORY_SPACE
                if compartment.is_directory(row["target_type"])
                else compartment.space_of(row["target_id"])
            )
            if space is not None:
                found.setdefault(row["target_type"], []).append((space, row["target_id"]))
    for inc in request.revincludes:
        if budget <= 0 or (inc.target_type is not None and inc.target_type != rtype):
            continue
        source = tables_for(inc.source_type)
        # References never cross spaces, so a space page is referenced only from its own spaces; the
        # directory is referenced from anywhere.
        within = list(set(spaces)) if source.resource == "resource" and t.resource == "resource" else None
        rows = await conn.fetch(
            f"SELECT DISTINCT x.space_id, x.resource_id FROM {source.reference} x "
            f"WHERE x.resource_type = $1 AND x.param = $2 AND x.target_type = $3 AND x.target_id = ANY($4::text[]) "
            f"AND ($5::uuid[] IS NULL OR x.space_id = ANY($5::uuid[])) LIMIT $6",
            inc.source_type,
            inc.param.name,
            rtype,
            ids,
            within,
            budget,
        )
        budget -= len(rows)
        found.setdefault(inc.source_type, []).extend((row["space_id"], row["resource_id"]) for row in rows)
    return list(found.items())
