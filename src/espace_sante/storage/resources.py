"""FHIR resources with full history, encrypted bodies and search index rows (all SQL for them).

A body is stored as the client's JSON plus `id` and `meta.versionId` / `meta.lastUpdated`, serialised once
with orjson, encrypted with the space's data key, and returned on read exactly as stored (never re-serialised
through the models). Every function that touches space data takes the policy's `Decision` and checks it
covers the space (STYLE habit 2)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from espace_sante.access.policy import Decision
from espace_sante.crypto import DecryptionFailed, open_, resource_aad, seal
from espace_sante.fhir import searchparams
from espace_sante.storage import spaces, visibility
from espace_sante.storage.db import Conn
from espace_sante.storage.keys import DIRECTORY_SPACE, KeyStore
from espace_sante.storage.tables import Tables, tables_for


@dataclass(frozen=True)
class Stored:
    """One version of a resource. `body` is the stored JSON (None for a delete)."""

    resource_type: str
    resource_id: str
    version_id: int
    last_updated: datetime
    body: bytes | None
    method: str = "PUT"
    space_id: uuid.UUID = DIRECTORY_SPACE

    @property
    def deleted(self) -> bool:
        return self.body is None


@dataclass(frozen=True)
class Current:
    """The current state of a resource, without its body (for preconditions)."""

    version_id: int
    last_updated: datetime
    deleted: bool


class DataUnreadable(DecryptionFailed):
    """A stored body failed to decrypt: tampered with, swapped, or its space key was destroyed."""


def _guard(decision: Decision, action: Any, resource_type: str, space_id: uuid.UUID) -> None:
    decision.require(action, resource_type)
    if not decision.covers(space_id):
        raise PermissionError(f"decision does not cover space {space_id}")


def stamp(body: dict[str, Any], resource_id: str, version_id: int, when: datetime) -> bytes:
    """The stored form: the client's JSON with the server's id and meta (FHIR http.html#create: the server
    sets id, meta.versionId and meta.lastUpdated; it ignores what the client sent there)."""
    body["id"] = resource_id
    meta = body.get("meta")
    meta = dict(meta) if isinstance(meta, dict) else {}
    meta["versionId"] = str(version_id)
    meta["lastUpdated"] = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    body["meta"] = meta
    return orjson.dumps(body)


async def _encrypt(
    conn: Conn, keys: KeyStore, space_id: uuid.UUID, rtype: str, rid: str, version: int, plaintext: bytes
) -> tuple[int, bytes]:
    key_version, aead = await keys.current(conn, space_id)
    return key_version, seal(aead, plaintext, resource_aad(str(space_id), rtype, rid, version, key_version))


#: Hot reads fetch the row's wrapped data key in the same query (`JOIN_KEY` on the version alias `v`), so a
#: key-cache miss costs an unwrap, not another round trip.
WRAPPED_KEY = "k.kek_id, k.wrapped_key"
JOIN_KEY = "LEFT JOIN space_key k ON k.space_id = v.space_id AND k.key_version = v.key_version"
#: The same for many rows (a search page): an inner join, which Citus plans beside the search's EXISTS clauses
#: where it refuses the outer join ("complex joins are only supported..."). A version whose key is gone (a
#: destroyed space, whose rows are erased with it) cannot be read anyway: it is left out rather than refused.
JOIN_KEYS = "JOIN space_key k ON k.space_id = v.space_id AND k.key_version = v.key_version"


async def _decrypt(
    conn: Conn,
    keys: KeyStore,
    space_id: uuid.UUID,
    rtype: str,
    rid: str,
    version: int,
    key_version: int,
    blob: bytes,
    aead: AESGCM | None = None,
) -> bytes:
    try:
        if aead is None:
            aead = await keys.version(conn, space_id, key_version)
        return open_(aead, blob, resource_aad(str(space_id), rtype, rid, version, key_version))
    except DecryptionFailed as exc:
        raise DataUnreadable(f"{rtype}/{rid}/_history/{version}: {exc}") from None


async def current(
    conn: Conn, decision: Decision, space_id: uuid.UUID, rtype: str, rid: str, *, for_update: bool = False
) -> Current | None:
    _guard(decision, decision.action, rtype, space_id)
    t = tables_for(rtype)
    row = await conn.fetchrow(
        f"SELECT version_id, last_updated, deleted FROM {t.resource} "
        f"WHERE space_id = $1 AND resource_type = $2 AND resource_id = $3{' FOR UPDATE' if for_update else ''}",
        space_id,
        rtype,
        rid,
    )
    return None if row is None else Current(row["version_id"], row["last_updated"], row["deleted"])


async def exists(conn: Conn, decision: Decision, space_id: uuid.UUID, rtype: str, rid: str) -> bool:
    """Whether a live resource exists in a space the decision covers (integrity checks on write)."""
    if not decision.covers(space_id):
        raise PermissionError(f"decision does not cover space {space_id}")
    t = tables_for(rtype)
    return bool(
        await conn.fetchval(
            f"SELECT 1 FROM {t.resource} WHERE space_id = $1 AND resource_type = $2 AND resource_id = $3 "
            f"AND NOT deleted",
            space_id,
            rtype,
            rid,
        )
    )


async def write(
    conn: Conn,
    keys: KeyStore,
    decision: Decision,
    space_id: uuid.UUID,
    rtype: str,
    rid: str,
    body: dict[str, Any] | None,
    *,
    method: str,
    previous: Current | None,
) -> Stored:
    """Write a new version (create, update or delete when body is None). `previous` is the current state read
    FOR UPDATE in this transaction (None when creating)."""
    _guard(decision, decision.action, rtype, space_id)
    t = tables_for(rtype)
    version = 1 if previous is None else previous.version_id + 1
    now = datetime.now(UTC)
    when = now.replace(microsecond=now.microsecond // 1000 * 1000)  # meta.lastUpdated has milliseconds
    if previous is not None and when <= previous.last_updated:  # clocks differ between app processes
        when = previous.last_updated + timedelta(milliseconds=1)
    plaintext = None if body is None else stamp(body, rid, version, when)
    key_version, blob = (
        (0, None)
        if plaintext is None
        else await _encrypt(conn, keys, space_id, rtype, rid, version, plaintext)
    )
    await conn.execute(
        f"INSERT INTO {t.version} (space_id, resource_type, resource_id, version_id, last_updated, method, "
        f"key_version, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        space_id,
        rtype,
        rid,
        version,
        when,
        method,
        key_version,
        blob,
    )
    identifying = rtype == "Patient" and t.resource == "resource"
    held = await _identifiers_of(conn, space_id, rid) if identifying and previous is not None else set()
    if previous is None:
        await conn.execute(
            f"INSERT INTO {t.resource} (space_id, resource_type, resource_id, version_id, last_updated, deleted) "
            f"VALUES ($1, $2, $3, $4, $5, false)",
            space_id,
            rtype,
            rid,
            version,
            when,
        )
    else:
        await conn.execute(
            f"UPDATE {t.resource} SET version_id = $4, last_updated = $5, deleted = $6 "
            f"WHERE space_id = $1 AND resource_type = $2 AND resource_id = $3",
            space_id,
            rtype,
            rid,
            version,
            when,
            body is None,
        )
        # A deleted document keeps the index rows its visibility is judged on (class, visibility codes,
        # author, content): its old versions and its content stay hidden from whom they were hidden from.
        keep = VISIBILITY_PARAMS if body is None and rtype == "DocumentReference" else ()
        await _clear_index(conn, t, space_id, rtype, rid, keep=keep)
    values = None if body is None else searchparams.extract(body)
    if values is not None:
        await _write_index(conn, t, space_id, rtype, rid, values)
    if identifying:
        now_held = (
            set()
            if values is None
            else {(v.system, v.code) for v in values.tokens if v.param == "identifier"}
        )
        await _index_identifiers(conn, space_id, rid, held, now_held)
        if body is not None:
            await spaces.identity_changed(conn, space_id)
    return Stored(rtype, rid, version, when, plaintext, method, space_id)


async def read(
    conn: Conn,
    keys: KeyStore,
    decision: Decision,
    space_id: uuid.UUID,
    rtype: str,
    rid: str,
    version_id: int | None = None,
) -> Stored | None:
    """The current version (or a given one). A deleted resource comes back with body None. A resource the
    decision does not reach (a hidden or masked document) is None, as if absent."""
    _guard(decision, decision.action, rtype, space_id)
    if not await visibility.reaches(conn, decision, space_id, rtype, rid):
        return None
    t = tables_for(rtype)
    if version_id is None:
        row = await conn.fetchrow(
            f"SELECT v.version_id, v.last_updated, v.method, v.key_version, v.body, {WRAPPED_KEY} "
            f"FROM {t.resource} r JOIN {t.version} v USING (space_id, resource_type, resource_id, version_id) "
            f"{JOIN_KEY} WHERE r.space_id = $1 AND r.resource_type = $2 AND r.resource_id = $3",
            space_id,
            rtype,
            rid,
        )
    else:
        row = await conn.fetchrow(
            f"SELECT version_id, last_updated, method, key_version, body FROM {t.version} "
            f"WHERE space_id = $1 AND resource_type = $2 AND resource_id = $3 AND version_id = $4",
            space_id,
            rtype,
            rid,
            version_id,
        )
    if row is None:
        return None
    return await _decode(conn, keys, space_id, rtype, rid, row)


async def _decode(conn: Conn, keys: KeyStore, space_id: uuid.UUID, rtype: str, rid: str, row: Any) -> Stored:
    """A version row (version_id, last_updated, method, key_version, body) as a Stored, body decrypted.
    Storage-internal: callers fetched the row under a Decision."""
    body = row["body"]
    if body is not None:
        aead = None
        wrapped = row.get("wrapped_key")  # present when the query joined the key (JOIN_KEY)
        if wrapped is not None:
            aead = keys.from_row(space_id, row["key_version"], row["kek_id"], wrapped)
        body = await _decrypt(
            conn, keys, space_id, rtype, rid, row["version_id"], row["key_version"], body, aead
        )
    return Stored(rtype, rid, row["version_id"], row["last_updated"], body, row["method"], space_id)


async def bodies_of(
    conn: Conn, keys: KeyStore, decision: Decision, rtype: str, rows: Sequence[Any]
) -> list[Stored]:
    """Version rows a search fetched under `decision` (space_id, resource_id and the columns `_decode` reads),
    decrypted; each row's space must be one the decision covers."""
    decision.require_read(rtype, {row["space_id"] for row in rows})
    return [await _decode(conn, keys, row["space_id"], rtype, row["resource_id"], row) for row in rows]


async def history(
    conn: Conn,
    keys: KeyStore,
    decision: Decision,
    *,
    rtype: str,
    space_id: uuid.UUID | None,
    rid: str | None,
    since: datetime | None,
    count: int,
    offset: int,
) -> list[Stored]:
    """Versions newest first: of one resource (rid given), or of a type (within the decision's spaces)."""
    t = tables_for(rtype)
    decision.require(decision.action, rtype)
    where = ["resource_type = $1"]
    args: list[Any] = [rtype]
    if space_id is not None:
        _guard(decision, decision.action, rtype, space_id)
        args.append(space_id)
        where.append(f"space_id = ${len(args)}")
    else:

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        scope = visibility.scope_sql(arg, "r", decision)
        if scope is not None:
            where.append(scope)
    if rid is not None:
        if space_id is None or not await visibility.reaches(conn, decision, space_id, rtype, rid):
            return []
        args.append(rid)
        where.append(f"resource_id = ${len(args)}")
    if since is not None:
        args.append(since)
        where.append(f"last_updated >= ${len(args)}")
    args += [count, offset]
    rows = await conn.fetch(
        f"SELECT space_id, resource_id, version_id, last_updated, method, key_version, body FROM {t.version} r "
        f"WHERE {' AND '.join(where)} ORDER BY last_updated DESC, resource_id, version_id DESC "
        f"LIMIT ${len(args) - 1} OFFSET ${len(args)}",
        *args,
    )
    return [await _decode(conn, keys, r["space_id"], rtype, r["resource_id"], r) for r in rows]


async def fetch_current(
    conn: Conn, keys: KeyStore, decision: Decision, rtype: str, keys_: Sequence[tuple[uuid.UUID, str]]
) -> list[Stored]:
    """Current bodies of the given (space, id) pairs, in that order, skipping deleted or missing ones.
    Used for search pages and includes, whose ids come from a query the decision already scoped."""
    decision.require(decision.action, rtype)
    if not keys_:
        return []
    t = tables_for(rtype)
    allowed = [(s, i) for s, i in keys_ if decision.covers(s)]
    args: list[Any] = [rtype, [s for s, _ in allowed], [i for _, i in allowed]]

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    scope = visibility.scope_sql(arg, "r", decision)
    rows = await conn.fetch(
        f"SELECT v.space_id, v.resource_id, v.version_id, v.last_updated, v.method, v.key_version, v.body "
        f"FROM unnest($2::uuid[], $3::text[]) AS k(space_id, resource_id) "
        f"JOIN {t.resource} r ON r.space_id = k.space_id AND r.resource_type = $1 AND r.resource_id = k.resource_id "
        f"JOIN {t.version} v ON v.space_id = r.space_id AND v.resource_type = r.resource_type "
        f"AND v.resource_id = r.resource_id AND v.version_id = r.version_id WHERE NOT r.deleted"
        + ("" if scope is None else f" AND {scope}"),
        *args,
    )
    by_key = {(r["space_id"], r["resource_id"]): r for r in rows}
    out = []
    for key in allowed:
        row = by_key.get(key)
        if row is not None:
            out.append(await _decode(conn, keys, key[0], rtype, key[1], row))
    return out


#: The index rows storage/visibility.py judges a document on.
VISIBILITY_PARAMS = ("category", "security-label", "author", searchparams.ATTACHMENT_PARAM)


async def _clear_index(
    conn: Conn, t: Tables, space_id: uuid.UUID, rtype: str, rid: str, *, keep: Sequence[str] = ()
) -> None:
    for table in t.index_tables:
        await conn.execute(
            f"DELETE FROM {table} WHERE space_id = $1 AND resource_type = $2 AND resource_id = $3 "
            "AND NOT (param = ANY($4::text[]))",
            space_id,
            rtype,
            rid,
            list(keep),
        )


async def _identifiers_of(conn: Conn, space_id: uuid.UUID, rid: str) -> set[tuple[str | None, str]]:
    rows = await conn.fetch(
        "SELECT system, code FROM sp_token WHERE space_id = $1 AND resource_type = 'Patient' AND resource_id = $2 "
        "AND param = 'identifier'",
        space_id,
        rid,
    )
    return {(r["system"], r["code"]) for r in rows}


async def _index_identifiers(
    conn: Conn,
    space_id: uuid.UUID,
    rid: str,
    before: set[tuple[str | None, str]],
    after: set[tuple[str | None, str]],
) -> None:
    """Keep `patient_identifier` (migrations/0029) in step with the Patient's identifier search rows. One
    statement per identifier: each names its value, so on Citus each runs on that value's shard. Every value
    the Patient held or holds is rewritten, not only those that changed: a row missing for any reason (a
    process still on the code before 0029 while it was applied) is put back at the Patient's next write."""
    for system, value in sorted(before | after, key=str):
        await conn.execute(
            "DELETE FROM patient_identifier WHERE value = $1 AND system IS NOT DISTINCT FROM $2 "
            "AND space_id = $3 AND resource_id = $4",
            value,
            system,
            space_id,
            rid,
        )
    for system, value in sorted(after, key=str):
        await conn.execute(
            "INSERT INTO patient_identifier (value, system, space_id, resource_id) VALUES ($1, $2, $3, $4)",
            value,
            system,
            space_id,
            rid,
        )


async def created_here(conn: Conn, space_id: uuid.UUID, rtype: str, rid: str) -> bool:
    """Whether this resource was created by the current transaction (its row's xmin is our transaction id):
    a document may take as content a Binary written in the same transaction."""
    t = tables_for(rtype)
    return bool(
        await conn.fetchval(
            f"SELECT xmin::text = (pg_current_xact_id()::text::bigint % 4294967296)::text FROM {t.resource} "
            "WHERE space_id = $1 AND resource_type = $2 AND resource_id = $3",
            space_id,
            rtype,
            rid,
        )
    )


#: Per index table: the IndexValues field that feeds it, and its value columns with their SQL types.
_INDEX_COLUMNS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("token", "tokens", (("system", "text"), ("code", "text"))),
    ("string", "strings", (("normalized", "text"), ("exact", "text"))),
    ("date", "dates", (("low", "timestamptz"), ("high", "timestamptz"))),
    ("reference", "references", (("target_type", "text"), ("target_id", "text"))),
    ("quantity", "quantities", (("value", "numeric"), ("system", "text"), ("code", "text"))),
    ("number", "numbers", (("value", "numeric"),)),
)


async def _write_index(
    conn: Conn, t: Tables, space_id: uuid.UUID, rtype: str, rid: str, values: searchparams.IndexValues
) -> None:
    """One multi-row INSERT per index table that has values (unnest of parallel arrays)."""
    for table, field, columns in _INDEX_COLUMNS:
        rows = getattr(values, field)
        if not rows:
            continue
        names = ", ".join(name for name, _ in columns)
        arrays = ", ".join(f"${i}::{sqltype}[]" for i, (_, sqltype) in enumerate(columns, start=5))
        await conn.execute(
            f"INSERT INTO {getattr(t, table)} (space_id, resource_type, resource_id, param, {names}) "
            f"SELECT $1, $2, $3, * FROM unnest($4::text[], {arrays})",
            space_id,
            rtype,
            rid,
            [row.param for row in rows],
            *([getattr(row, name) for row in rows] for name, _ in columns),
        )
