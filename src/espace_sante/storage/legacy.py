"""The set-aside store of the legacy DMP import (migrations 0013_legacy.sql and 0021, docs/legacy.md).

A document that cannot be deposited is kept here, encrypted with a data key of its own person: the
pseudo-space `person_space(nir)`, whose id is an HMAC of the INS (it reveals none) and whose key is a
`space_key` row wrapped by the KEK like any space's, so `keys rewrap` covers it and `forget` destroys it (the
person's documents then unreadable in every backup too, as a destroyed space's). A document whose INS cannot
be read (malformed metadata) has no person: it is kept under the shared pseudo-space `LEGACY_SPACE`, whose
key also derives the HMAC keys. Rows are found again by an HMAC of the document's uniqueId (`unique_key`),
whatever their space. Rows set aside before 0021 are all under `LEGACY_SPACE`; a retry moves each to its
person's key."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from espace_sante.access.policy import Decision
from espace_sante.crypto import derive_subkey, open_, seal
from espace_sante.storage.db import Conn
from espace_sante.storage.keys import KeyStore, MissingDataKey

#: The legacy import's shared pseudo-space: it holds no resource; its data key derives the store's HMAC keys
#: and encrypts the documents that name no readable INS.
LEGACY_SPACE = uuid.UUID("00000000-0000-0000-0000-00000000d309")


async def _cipher(conn: Conn, keys: KeyStore, space: uuid.UUID = LEGACY_SPACE) -> tuple[int, AESGCM]:
    try:
        return await keys.current(conn, space)
    except MissingDataKey:
        return await keys.create(conn, space)


def _aad(unique: bytes, what: str, key_version: int) -> bytes:
    return f"legacy/{unique.hex()}/{what}/k{key_version}".encode()


async def unique_key(conn: Conn, keys: KeyStore, identity: str) -> bytes:
    """The row key of a document: HMAC-SHA256 of its uniqueId (or, without one, its package and path) under a
    key derived from the store's data key."""
    _, aead = await _cipher(conn, keys)
    return hmac.new(derive_subkey(aead, b"legacy-set-aside"), identity.encode(), hashlib.sha256).digest()


async def person_space(conn: Conn, keys: KeyStore, nir: str) -> uuid.UUID:
    """The pseudo-space of one person's documents set aside: an id drawn from an HMAC of their INS-NIR under a
    key derived from the store's data key (the same INS, the same id; the id alone tells nothing)."""
    _, aead = await _cipher(conn, keys)
    digest = hmac.new(derive_subkey(aead, b"legacy-person"), nir.encode(), hashlib.sha256).digest()
    return uuid.UUID(bytes=digest[:16], version=4)


async def set_aside(
    conn: Conn,
    keys: KeyStore,
    *,
    nir: str | None,
    unique: bytes,
    reason: str,
    location: str,
    package: str,
    entry_path: str,
    entry: bytes,
    content: bytes | None,
    retried: bool = False,
) -> str:
    """Keep (or keep again) one document. Returns "new", "changed" (another reason, or set aside again after
    it had been resolved) or "unchanged" (a re-import with the same reason: nothing is written, unless
    `retried`, which counts the attempt). It is kept under `person_space(nir)`, or `LEGACY_SPACE` when its
    INS cannot be read (`nir` None); a row of the same document kept under another space (set aside before
    migration 0021) moves here, keeping its date and attempts."""
    space = LEGACY_SPACE if nir is None else await person_space(conn, keys, nir)
    moved = await conn.fetchrow(
        """DELETE FROM legacy_set_aside WHERE unique_key = $1 AND space_id <> $2
           RETURNING item_id, created_at, attempts""",
        unique,
        space,
    )
    key_version, aead = await _cipher(conn, keys, space)
    sealed_entry = seal(aead, entry, _aad(unique, "entry", key_version))
    sealed_content = None if content is None else seal(aead, content, _aad(unique, "content", key_version))
    row = await conn.fetchrow(
        """INSERT INTO legacy_set_aside AS s (space_id, item_id, unique_key, reason, location, package,
               entry_path, key_version, entry, content, created_at, attempts)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, coalesce($12, now()), coalesce($13 + 1, 1))
           ON CONFLICT (space_id, unique_key) DO UPDATE SET
               reason = EXCLUDED.reason, location = EXCLUDED.location, package = EXCLUDED.package,
               entry_path = EXCLUDED.entry_path, key_version = EXCLUDED.key_version, entry = EXCLUDED.entry,
               content = CASE WHEN EXCLUDED.content IS NULL AND s.key_version = EXCLUDED.key_version
                              THEN s.content ELSE EXCLUDED.content END,
               updated_at = now(), attempts = s.attempts + 1, resolved_at = NULL, outcome = NULL
           WHERE $11 OR s.resolved_at IS NOT NULL OR s.reason <> EXCLUDED.reason
                 OR s.location <> EXCLUDED.location
           RETURNING (xmax = 0) AS inserted""",
        space,
        moved["item_id"] if moved else uuid.uuid4(),
        unique,
        reason,
        location,
        package,
        entry_path,
        key_version,
        sealed_entry,
        sealed_content,
        retried,
        moved["created_at"] if moved else None,
        moved["attempts"] if moved else None,
    )
    if row is None:
        return "unchanged"
    return "new" if row["inserted"] and moved is None else "changed"


async def resolve(conn: Conn, unique: bytes, outcome: str) -> bool:
    """The document is in its space now ("imported", or "already" there): the row stays for the report, its
    encrypted entry and content are erased (nothing medical is kept twice)."""
    found = await conn.fetchval(
        """UPDATE legacy_set_aside SET resolved_at = now(), updated_at = now(), outcome = $2, entry = NULL,
               content = NULL
           WHERE unique_key = $1 AND resolved_at IS NULL RETURNING item_id""",
        unique,
        outcome,
    )
    return found is not None


@dataclass(frozen=True)
class Pending:
    """A document still set aside, its entry decrypted (the XDS metadata as JSON bytes)."""

    space_id: uuid.UUID
    item_id: uuid.UUID
    created_at: datetime
    unique: bytes
    reason: str
    package: str
    entry_path: str
    entry: bytes
    has_content: bool


async def pending_page(
    conn: Conn, keys: KeyStore, decision: Decision, *, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[Pending]:
    """The next documents still set aside, oldest first (keyset paging: a retry run walks them once), their
    metadata decrypted under a decision to read DocumentReference covering their pseudo-spaces."""
    decision.require_read("DocumentReference")
    rows = await conn.fetch(
        """SELECT space_id, item_id, created_at, unique_key, reason, package, entry_path, key_version, entry,
                  content IS NOT NULL AS has_content
           FROM legacy_set_aside
           WHERE resolved_at IS NULL
             AND ($1::timestamptz IS NULL OR (created_at, item_id) > ($1::timestamptz, $2::uuid))
           ORDER BY created_at, item_id LIMIT $3""",
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    decision.require_read("DocumentReference", {r["space_id"] for r in rows})
    out = []
    for r in rows:
        aead = await keys.version(conn, r["space_id"], r["key_version"])
        out.append(
            Pending(
                r["space_id"],
                r["item_id"],
                r["created_at"],
                r["unique_key"],
                r["reason"],
                r["package"],
                r["entry_path"],
                open_(aead, r["entry"], _aad(r["unique_key"], "entry", r["key_version"])),
                r["has_content"],
            )
        )
    return out


async def content_of(
    conn: Conn, keys: KeyStore, decision: Decision, space: uuid.UUID, item_id: uuid.UUID
) -> bytes | None:
    """The document kept for one row, decrypted (None when none could be read from its package), under a
    decision to read Binary covering its pseudo-space."""
    decision.require_read("Binary", [space])
    row = await conn.fetchrow(
        "SELECT unique_key, key_version, content FROM legacy_set_aside WHERE space_id = $1 AND item_id = $2",
        space,
        item_id,
    )
    if row is None or row["content"] is None:
        return None
    aead = await keys.version(conn, space, row["key_version"])
    return open_(aead, row["content"], _aad(row["unique_key"], "content", row["key_version"]))


@dataclass(frozen=True)
class ReportRow:
    """What the report shows of a document set aside: nothing medical, no identity."""

    item_id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    reason: str
    location: str
    package: str
    entry_path: str
    attempts: int


async def report(conn: Conn, *, limit: int) -> tuple[dict[str, int], dict[str, int], list[ReportRow]]:
    """(pending by reason, resolved by outcome, the oldest `limit` pending rows)."""
    counts = await conn.fetch(
        """SELECT resolved_at IS NULL AS pending, CASE WHEN resolved_at IS NULL THEN reason ELSE outcome END
                  AS label, count(*) AS n
           FROM legacy_set_aside GROUP BY 1, 2 ORDER BY 2"""
    )
    rows = await conn.fetch(
        """SELECT item_id, created_at, updated_at, reason, location, package, entry_path, attempts
           FROM legacy_set_aside WHERE resolved_at IS NULL
           ORDER BY created_at, item_id LIMIT $1""",
        limit,
    )
    pending = {r["label"]: r["n"] for r in counts if r["pending"]}
    resolved = {r["label"]: r["n"] for r in counts if not r["pending"]}
    return pending, resolved, [ReportRow(**dict(r)) for r in rows]


async def forget(conn: Conn, keys: KeyStore, nirs: Sequence[str]) -> int:
    """Erase what is set aside for these people: their rows deleted and their pseudo-spaces' data keys
    destroyed (crypto-shredding: a backup's copy of the rows can no longer be decrypted). Returns the number of
    documents erased (those already deposited included: only their report rows remained)."""
    spaces = [await person_space(conn, keys, nir) for nir in sorted(set(nirs))]
    status: str = await conn.execute("DELETE FROM legacy_set_aside WHERE space_id = ANY($1::uuid[])", spaces)
    for space in spaces:
        await keys.destroy(conn, space)
    return int(status.split()[-1])
