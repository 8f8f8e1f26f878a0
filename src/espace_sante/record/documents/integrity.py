"""The store kept whole: objects of submissions that never committed are deleted (at the end of the request,
or by the collector after the grace period), and `verify` compares the rows and the store."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from espace_sante.context import Context
from espace_sante.logs import get_logger
from espace_sante.record.documents.content import read_all
from espace_sante.storage import documents as docs_store
from espace_sante.storage.blobs import TEMP_PREFIX, LocalBlobStore
from espace_sante.storage.db import Conn

log = get_logger(__name__)


async def discard_unrecorded(ctx: Context) -> None:
    """Delete what this request put in the store and did not record (its transaction failed or lost a race
    for the same content): a refused submission leaves nothing behind (review of 2026-12-03, D10). A failure
    here leaves the intent to the collector."""
    uploads, ctx.uploads = ctx.uploads, []
    for space_id, blob_id in uploads:
        try:
            if await ctx.runtime.db.autonomous("blob_recorded", docs_store.is_recorded, space_id, blob_id):
                continue
            await ctx.runtime.blob_store.delete(docs_store.blob_key(space_id, blob_id))
            await ctx.runtime.db.autonomous("blob_forget", docs_store.forget_upload, space_id, blob_id)
        except Exception as exc:  # the collector will do it after the grace period
            log.warning("documents.discard_failed", error=type(exc).__name__)


async def collect_orphans(ctx: Context, *, now: datetime | None = None) -> int:
    """Delete the objects of upload intents older than the grace period whose blob was never recorded (a
    rollback, a retry or a crash between the put and the commit). Idempotent; safe with serving processes."""
    now = now or datetime.now(UTC)
    grace = timedelta(seconds=ctx.runtime.settings.blob_orphan_grace_seconds)
    before = now - grace
    removed = 0
    store = ctx.runtime.blob_store
    if isinstance(store, LocalBlobStore):
        # Local writes a crash cut short before their rename (S3 never shows a partial object). Deleting an
        # intent's key below removes its own; this catches any other left behind.
        removed += await store.delete_stale_temps(grace)
    while True:
        stale = await ctx.runtime.db.interaction("blob_orphans", docs_store.stale_uploads, before, 500)
        if not stale:
            return removed
        for space_id, blob_id in stale:
            recorded = await ctx.runtime.db.interaction(
                "blob_recorded", docs_store.is_recorded, space_id, blob_id
            )
            if not recorded:
                await ctx.runtime.blob_store.delete(docs_store.blob_key(space_id, blob_id))
                removed += 1
            await ctx.runtime.db.interaction("blob_forget", docs_store.forget_upload, space_id, blob_id)
        if len(stale) < 500:
            return removed


@dataclass
class Verification:
    blobs: int = 0
    checked_content: int = 0
    missing: list[str] | None = None
    wrong_size: list[str] | None = None
    unreadable: list[str] | None = None
    orphans: list[str] | None = None
    pending: int = 0
    without_content: list[str] | None = None

    @property
    def clean(self) -> bool:
        return not (
            self.missing or self.wrong_size or self.unreadable or self.orphans or self.without_content
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "blobs": self.blobs,
            "content_checked": self.checked_content,
            "missing": self.missing or [],
            "wrong_size": self.wrong_size or [],
            "unreadable": self.unreadable or [],
            "orphans": self.orphans or [],
            "pending_uploads": self.pending,
            "binaries_without_content": self.without_content or [],
            "clean": self.clean,
        }


async def verify(ctx: Context, *, deep: bool = False, page: int = 1000) -> Verification:
    """Compare the database and the store: every recorded blob is there with its size (and, with `deep`,
    decrypts and authenticates), every Binary version has content, and every object in the store is recorded
    or belongs to an upload still within its grace period (else it is an orphan)."""
    rt = ctx.runtime
    result = Verification(missing=[], wrong_size=[], unreadable=[], orphans=[], without_content=[])
    assert result.missing is not None and result.wrong_size is not None and result.unreadable is not None
    assert result.orphans is not None and result.without_content is not None
    after: tuple[uuid.UUID, uuid.UUID] | None = None
    while True:
        rows = await rt.db.interaction("documents_verify_page", docs_store.blobs_page, after, page)
        for b in rows:
            result.blobs += 1
            size = await rt.blob_store.size(b.key)
            if size is None:
                result.missing.append(b.key)
            elif size != b.stored_size:
                result.wrong_size.append(b.key)
            elif deep:
                try:

                    async def whole(conn: Conn, blob: docs_store.BlobRow = b) -> bytes:
                        return await read_all(conn, ctx, blob)

                    data = await rt.db.interaction("documents_verify_read", whole)
                    if len(data) != b.size:
                        raise ValueError("size")
                    result.checked_content += 1
                except Exception:  # any failure to read back is what verify reports
                    result.unreadable.append(b.key)
        if len(rows) < page:
            break
        after = (rows[-1].space_id, rows[-1].blob_id)
    pending = await rt.db.interaction("documents_verify_pending", docs_store.pending_upload_keys)
    result.pending = len(pending)
    async for info in rt.blob_store.list("spaces/"):
        parsed = docs_store.parse_blob_key(info.key)
        if parsed is None:
            result.orphans.append(info.key)
            continue
        if parsed in pending:
            continue
        if not await rt.db.interaction("documents_verify_recorded", docs_store.is_recorded, *parsed):
            result.orphans.append(info.key)
    if isinstance(rt.blob_store, LocalBlobStore):
        grace = timedelta(seconds=rt.settings.blob_orphan_grace_seconds)
        for temp in await rt.blob_store.stale_temps(grace):
            # `.tmp-<name>.<random>`: a write cut short; its key's intent, if still pending, will collect it.
            folder, _, name = temp.rpartition("/")
            parsed = docs_store.parse_blob_key(f"{folder}/{name[len(TEMP_PREFIX) :].rsplit('.', 1)[0]}")
            if parsed is None or parsed not in pending:
                result.orphans.append(temp)
    missing_content = await rt.db.interaction(
        "documents_verify_binaries", docs_store.binaries_without_content
    )
    result.without_content.extend(f"Binary/{rid}/_history/{v}" for _, rid, v in missing_content)
    return result
