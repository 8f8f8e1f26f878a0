"""SQL for document content: blobs, the content of each Binary version, upload intents, hidden documents.

The bytes themselves are in the blob store (storage/blobs.py); nothing here does I/O outside PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from espace_sante.access.policy import Decision
from espace_sante.fhir.searchparams import ATTACHMENT_PARAM
from espace_sante.storage import locks
from espace_sante.storage.db import Conn


@dataclass(frozen=True)
class BlobRow:
    space_id: uuid.UUID
    blob_id: uuid.UUID
    key_version: int
    size: int
    stored_size: int
    kind: str
    media_type: str

    @property
    def key(self) -> str:
        return blob_key(self.space_id, self.blob_id)


def blob_key(space_id: uuid.UUID, blob_id: uuid.UUID) -> str:
    """The object's name in the store: by space, so that one space's objects can be listed and destroyed."""
    return f"spaces/{space_id}/{blob_id}"


def parse_blob_key(key: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "spaces":
        return None
    try:
        return uuid.UUID(parts[1]), uuid.UUID(parts[2])
    except ValueError:
        return None


_BLOB_COLUMNS = "space_id, blob_id, key_version, size, stored_size, kind, media_type"


def _blob(r: asyncpg.Record) -> BlobRow:
    return BlobRow(
        r["space_id"], r["blob_id"], r["key_version"], r["size"], r["stored_size"], r["kind"], r["media_type"]
    )


async def find_by_mac(conn: Conn, space_id: uuid.UUID, mac: bytes, key_version: int) -> BlobRow | None:
    row = await conn.fetchrow(
        f"SELECT {_BLOB_COLUMNS} FROM blob WHERE space_id = $1 AND mac = $2 AND key_version = $3",
        space_id,
        mac,
        key_version,
    )
    return None if row is None else _blob(row)


async def begin_upload(conn: Conn, space_id: uuid.UUID, blob_id: uuid.UUID) -> None:
    """Record the intent to put an object (on its own connection, committed before the put)."""
    await conn.execute("INSERT INTO blob_upload (space_id, blob_id) VALUES ($1, $2)", space_id, blob_id)


async def record_blob(
    conn: Conn,
    space_id: uuid.UUID,
    blob_id: uuid.UUID,
    *,
    mac: bytes,
    key_version: int,
    size: int,
    stored_size: int,
    kind: str,
    media_type: str,
) -> BlobRow | None:
    """Record a stored object in the caller's transaction and close its intent. None when an identical
    content was recorded meanwhile by a concurrent submission (the caller then uses that one; its own object
    is collected with the intent it leaves)."""
    row = await conn.fetchrow(
        "INSERT INTO blob (space_id, blob_id, mac, key_version, size, stored_size, kind, media_type) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (space_id, mac, key_version) DO NOTHING "
        f"RETURNING {_BLOB_COLUMNS}",
        space_id,
        blob_id,
        mac,
        key_version,
        size,
        stored_size,
        kind,
        media_type,
    )
    if row is None:
        return None
    await conn.execute("DELETE FROM blob_upload WHERE space_id = $1 AND blob_id = $2", space_id, blob_id)
    return _blob(row)


async def attach(
    conn: Conn, space_id: uuid.UUID, binary_id: str, version_id: int, blob_id: uuid.UUID
) -> None:
    await conn.execute(
        "INSERT INTO binary_content (space_id, binary_id, version_id, blob_id) VALUES ($1, $2, $3, $4)",
        space_id,
        binary_id,
        version_id,
        blob_id,
    )


async def content_of(
    conn: Conn, decision: Decision, space_id: uuid.UUID, binary_id: str, version_id: int
) -> BlobRow | None:
    """The blob holding this version of a Binary (None for a Binary without stored content): the way to a
    document's content, under a decision to read Binary covering the space."""
    decision.require_read("Binary", [space_id])
    row = await conn.fetchrow(
        f"SELECT b.{_BLOB_COLUMNS.replace(', ', ', b.')} FROM binary_content c JOIN blob b ON b.space_id = "
        "c.space_id AND b.blob_id = c.blob_id WHERE c.space_id = $1 AND c.binary_id = $2 AND c.version_id = $3",
        space_id,
        binary_id,
        version_id,
    )
    return None if row is None else _blob(row)


async def stale_uploads(conn: Conn, before: datetime, limit: int = 1000) -> list[tuple[uuid.UUID, uuid.UUID]]:
    rows = await conn.fetch(
        "SELECT space_id, blob_id FROM blob_upload WHERE started_at < $1 ORDER BY started_at LIMIT $2",
        before,
        limit,
    )
    return [(r["space_id"], r["blob_id"]) for r in rows]


async def is_recorded(conn: Conn, space_id: uuid.UUID, blob_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval("SELECT 1 FROM blob WHERE space_id = $1 AND blob_id = $2", space_id, blob_id)
    )


async def forget_upload(conn: Conn, space_id: uuid.UUID, blob_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM blob_upload WHERE space_id = $1 AND blob_id = $2", space_id, blob_id)


async def blobs_page(conn: Conn, after: tuple[uuid.UUID, uuid.UUID] | None, limit: int) -> list[BlobRow]:
    """Every recorded blob, in key order, a page at a time (for `documents verify`)."""
    if after is None:
        rows = await conn.fetch(
            f"SELECT {_BLOB_COLUMNS} FROM blob ORDER BY space_id, blob_id LIMIT $1", limit
        )
    else:
        rows = await conn.fetch(
            f"SELECT {_BLOB_COLUMNS} FROM blob WHERE (space_id, blob_id) > ($1, $2) "
            "ORDER BY space_id, blob_id LIMIT $3",
            after[0],
            after[1],
            limit,
        )
    return [_blob(r) for r in rows]


async def pending_upload_keys(conn: Conn) -> set[tuple[uuid.UUID, uuid.UUID]]:
    rows = await conn.fetch("SELECT space_id, blob_id FROM blob_upload")
    return {(r["space_id"], r["blob_id"]) for r in rows}


async def binaries_without_content(conn: Conn, limit: int = 100) -> list[tuple[uuid.UUID, str, int]]:
    """Live Binary versions that have no content row: a document whose content is missing."""
    rows = await conn.fetch(
        "SELECT v.space_id, v.resource_id, v.version_id FROM resource r JOIN resource_version v ON "
        "v.space_id = r.space_id AND v.resource_type = r.resource_type AND v.resource_id = r.resource_id "
        "AND v.version_id = r.version_id WHERE r.resource_type = 'Binary' AND NOT r.deleted AND NOT EXISTS "
        "(SELECT 1 FROM binary_content c WHERE c.space_id = v.space_id AND c.binary_id = v.resource_id "
        "AND c.version_id = v.version_id) LIMIT $1",
        limit,
    )
    return [(r["space_id"], r["resource_id"], r["version_id"]) for r in rows]


async def by_identifier(conn: Conn, space_id: uuid.UUID, rtype: str, system: str, value: str) -> list[str]:
    """Ids of the live resources of a space with this identifier (for MHD: a document's or a submission
    set's uniqueId). An internal lookup for the documents service's own rules, not a search by the actor."""
    rows = await conn.fetch(
        "SELECT DISTINCT t.resource_id FROM sp_token t JOIN resource r ON r.space_id = t.space_id AND "
        "r.resource_type = t.resource_type AND r.resource_id = t.resource_id AND NOT r.deleted "
        "WHERE t.space_id = $1 AND t.resource_type = $2 AND t.param = 'identifier' AND t.code = $4 "
        "AND t.system IS NOT DISTINCT FROM $3",
        space_id,
        rtype,
        system or None,
        value,
    )
    return [r["resource_id"] for r in rows]


async def identifier_exists(conn: Conn, space_id: uuid.UUID, rtype: str, system: str, value: str) -> bool:
    return bool(await by_identifier(conn, space_id, rtype, system, value))


# --- documents hidden from the holder (INVISIBLE_PATIENT) -------------------------------------------------


async def hide(
    conn: Conn,
    space_id: uuid.UUID,
    document_id: str,
    *,
    deposited_at: datetime,
    notice_at: datetime,
    release_at: datetime,
) -> None:
    await conn.execute(
        "INSERT INTO hidden_document (space_id, document_id, deposited_at, notice_at, release_at) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (space_id, document_id) DO NOTHING",
        space_id,
        document_id,
        deposited_at,
        notice_at,
        release_at,
    )


async def unhide(conn: Conn, space_id: uuid.UUID, document_id: str) -> None:
    await conn.execute(
        "DELETE FROM hidden_document WHERE space_id = $1 AND document_id = $2", space_id, document_id
    )


async def due_notices(conn: Conn, now: datetime, limit: int = 500) -> list[tuple[uuid.UUID, str]]:
    return await _due_hidden(conn, "noticed_at IS NULL AND notice_at <= $1", "notice_at", now, limit)


async def _due_hidden(
    conn: Conn, where: str, order: str, now: datetime, limit: int
) -> list[tuple[uuid.UUID, str]]:
    """Hidden documents due for their notice or their release, locked (another run skips them)."""
    rows = await locks.claim(
        conn,
        table="hidden_document",
        columns="space_id, document_id",
        where=where,
        args=(now,),
        key=("space_id", "document_id"),
        order=order,
        limit=limit,
    )
    return [(r["space_id"], r["document_id"]) for r in rows]


async def mark_noticed(conn: Conn, keys: Sequence[tuple[uuid.UUID, str]], now: datetime) -> None:
    for space_id, document_id in keys:
        await conn.execute(
            "UPDATE hidden_document SET noticed_at = $3 WHERE space_id = $1 AND document_id = $2",
            space_id,
            document_id,
            now,
        )


async def due_releases(conn: Conn, now: datetime, limit: int = 500) -> list[tuple[uuid.UUID, str]]:
    return await _due_hidden(conn, "release_at <= $1", "release_at", now, limit)


async def content_ids(conn: Conn, space_id: uuid.UUID, document_id: str) -> list[str]:
    """The Binaries a document's attachments point at (the attachment index)."""
    rows = await conn.fetch(
        "SELECT DISTINCT target_id FROM sp_reference WHERE space_id = $1 AND resource_type = 'DocumentReference' "
        "AND resource_id = $2 AND param = $3 AND target_type = 'Binary'",
        space_id,
        document_id,
        ATTACHMENT_PARAM,
    )
    return [r["target_id"] for r in rows]


async def pointed_by_live_document(conn: Conn, space_id: uuid.UUID, binary_id: str) -> bool:
    """Whether a live document's attachment points at this Binary."""
    return bool(
        await conn.fetchval(
            "SELECT 1 FROM sp_reference b JOIN resource d ON d.space_id = b.space_id AND d.resource_type = "
            "b.resource_type AND d.resource_id = b.resource_id AND NOT d.deleted WHERE b.space_id = $1 AND "
            "b.resource_type = 'DocumentReference' AND b.param = $2 AND b.target_type = 'Binary' "
            "AND b.target_id = $3 LIMIT 1",
            space_id,
            ATTACHMENT_PARAM,
            binary_id,
        )
    )
