"""Document content: taking a Binary's bytes out of its body, checking them from the bytes, storing them
encrypted in the blob store before the transaction commits, and serving them back (FHIR read, ITI-68)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from espace_sante.access.policy import Decision
from espace_sante.audit import trace
from espace_sante.content.checks import KINDS, Checked, ContentRefused, check_content
from espace_sante.context import Context
from espace_sante.crypto import DecryptionFailed, blob_aad, derive_subkey
from espace_sante.errors import FhirError, InvalidResource, NotFound, PayloadTooLarge
from espace_sante.logs import get_logger
from espace_sante.record import resources as fhir
from espace_sante.storage import blobcrypt
from espace_sante.storage import documents as docs_store
from espace_sante.storage import resources as store
from espace_sante.storage.blobs import BlobMissing, BlobStoreError
from espace_sante.storage.db import Conn

log = get_logger(__name__)

#: What a person may upload from the portal or an app: no CDA (structured documents come from professionals'
#: software), PDFs, photos and scans, plain text.
PERSON_KINDS = frozenset({"pdf", "jpeg", "png", "text"})


@dataclass(frozen=True)
class Content:
    """Content accepted and stored for one Binary write, attached to its version once the version exists."""

    blob: docs_store.BlobRow
    checked: Checked


def is_person(ctx: Context) -> bool:
    """A deposit by a person (the holder, a representative, or an app acting for them): their limits and kinds."""
    return ctx.actor.kind in ("holder", "representative", "app")


def _limit(ctx: Context) -> int:
    settings = ctx.runtime.settings
    return settings.upload_max_bytes if is_person(ctx) else settings.document_max_bytes


def size_words(n: int) -> str:
    """A size in words of a refusal: megabytes, or bytes below one."""
    return f"{n / (1024 * 1024):.0f} Mo" if n >= 1024 * 1024 else f"{n} octets"


async def take_content(
    conn: Conn, ctx: Context, space_id: uuid.UUID, binary_id: str, body: dict[str, Any]
) -> Content:
    """Take `Binary.data` out of `body`, check it, and store it encrypted: the body keeps only metadata."""
    data = body.pop("data", None)
    if not isinstance(data, str) or not data:
        raise InvalidResource(
            "Binary.data : le contenu du document est obligatoire / the document's content is required",
            expression="Binary.data",
        )
    limit = _limit(ctx)
    if len(data) > (limit + 2) // 3 * 4 + 4:
        raise PayloadTooLarge(
            f"Binary.data : document trop volumineux (plus de {size_words(limit)}) / document larger than {limit} bytes"
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidResource(
            "Binary.data : base64 invalide / invalid base64", expression="Binary.data"
        ) from None
    declared = body.get("contentType")
    try:
        checked = await asyncio.to_thread(
            check_content,
            raw,
            declared_type=declared if isinstance(declared, str) else None,
            max_size=limit,
            allowed=PERSON_KINDS if is_person(ctx) else frozenset(KINDS),
        )
    except ContentRefused as exc:
        if exc.code == "too-long":
            raise PayloadTooLarge(f"Binary.data : {exc}") from None
        raise InvalidResource(f"Binary.data : {exc}", expression="Binary.data") from None
    total = sum(c.size for c in ctx.deposits.values()) + checked.size
    if total > ctx.runtime.settings.submission_max_bytes:
        raise PayloadTooLarge(
            f"soumission trop volumineuse : plus de {size_words(ctx.runtime.settings.submission_max_bytes)} de "
            f"documents / submission larger than {ctx.runtime.settings.submission_max_bytes} bytes"
        )
    if not isinstance(declared, str):
        body["contentType"] = checked.media_type
    blob = await _store_blob(conn, ctx, space_id, raw, checked)
    ctx.deposits[binary_id] = checked
    return Content(blob, checked)


async def _store_blob(
    conn: Conn, ctx: Context, space_id: uuid.UUID, raw: bytes, checked: Checked
) -> docs_store.BlobRow:
    """The space's blob for this content: an identical one already stored, else a new object, written and
    flushed before the caller's transaction commits."""
    rt = ctx.runtime
    key_version, aead = await rt.keys.current(conn, space_id)
    mac = hmac.new(derive_subkey(aead, b"blob-mac"), raw, hashlib.sha256).digest()
    found = await docs_store.find_by_mac(conn, space_id, mac, key_version)
    if found is not None:
        return found
    blob_id = uuid.uuid4()
    await rt.db.autonomous("blob_upload_intent", docs_store.begin_upload, space_id, blob_id)
    sealed = await asyncio.to_thread(
        blobcrypt.encrypt, aead, raw, blob_aad(str(space_id), str(blob_id), key_version)
    )
    await rt.blob_store.put(docs_store.blob_key(space_id, blob_id), sealed)
    ctx.uploads.append((space_id, blob_id))
    row = await docs_store.record_blob(
        conn,
        space_id,
        blob_id,
        mac=mac,
        key_version=key_version,
        size=checked.size,
        stored_size=len(sealed),
        kind=checked.kind,
        media_type=checked.media_type,
    )
    if row is None:  # the same content was recorded meanwhile: ours is an orphan, collected with its intent
        row = await docs_store.find_by_mac(conn, space_id, mac, key_version)
        assert row is not None
    return row


async def attach(conn: Conn, stored: store.Stored, content: Content) -> None:
    await docs_store.attach(
        conn, stored.space_id, stored.resource_id, stored.version_id, content.blob.blob_id
    )


async def read_all(conn: Conn, ctx: Context, blob: docs_store.BlobRow) -> bytes:
    aead = await ctx.runtime.keys.version(conn, blob.space_id, blob.key_version)
    chunks = [
        c
        async for c in blobcrypt.read_plain(
            ctx.runtime.blob_store,
            blob.key,
            aead,
            blob_aad(str(blob.space_id), str(blob.blob_id), blob.key_version),
            plain_total=blob.size,
        )
    ]
    return b"".join(chunks)


async def inline(conn: Conn, ctx: Context, decision: Decision, stored: store.Stored) -> store.Stored:
    """A Binary version as FHIR JSON, with its content back in `data` (FHIR binary.html: a client asking for
    the resource gets the resource)."""
    if stored.resource_type != "Binary" or stored.body is None:
        return stored
    blob = await docs_store.content_of(conn, decision, stored.space_id, stored.resource_id, stored.version_id)
    if blob is None:
        return stored
    body = orjson.loads(stored.body)
    body["data"] = base64.b64encode(await read_all(conn, ctx, blob)).decode()
    return store.Stored(
        stored.resource_type,
        stored.resource_id,
        stored.version_id,
        stored.last_updated,
        orjson.dumps(body),
        stored.method,
        stored.space_id,
    )


# --- ITI-68: retrieving a document's content -------------------------------------------------------------


@dataclass(frozen=True)
class Retrieved:
    """What to send for a retrieve: the content's blob, the byte range asked (end exclusive), and the ETag."""

    blob: docs_store.BlobRow
    start: int
    end: int
    partial: bool
    etag: str
    aead: Any

    @property
    def length(self) -> int:
        return self.end - self.start

    async def opened(self, ctx: Context) -> AsyncIterator[bytes]:
        """The content's chunks, the first one already read and authenticated: a missing or altered object is
        answered with an OperationOutcome before any byte is sent, not with a response cut in the middle."""
        b = self.blob
        chunks = blobcrypt.read_plain(
            ctx.runtime.blob_store,
            b.key,
            self.aead,
            blob_aad(str(b.space_id), str(b.blob_id), b.key_version),
            plain_total=b.size,
            start=self.start,
            end=self.end,
        )
        try:
            first = await anext(chunks, b"")
        except (BlobMissing, BlobStoreError, DecryptionFailed) as exc:
            log.error("documents.content_unavailable", blob=b.key, error=type(exc).__name__)
            raise ContentUnavailable() from None

        async def rest() -> AsyncIterator[bytes]:
            if first:
                yield first
            async for chunk in chunks:
                yield chunk

        return rest()


class ContentUnavailable(FhirError):
    def __init__(self) -> None:
        super().__init__(
            "contenu du document momentanément indisponible / the document's content is unavailable",
            503,
            "transient",
        )


class RangeNotSatisfiable(FhirError):
    def __init__(self, size: int):
        super().__init__(f"plage d'octets hors du document / range outside the document (size {size})", 416)
        self.size = size


#: One `first-last` range with ASCII digits only (str.isdigit() takes "²" and other scripts' digits) and no
#: number longer than a file size can be.
_RANGE = re.compile(r"([0-9]{0,15})-([0-9]{0,15})", re.ASCII)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One `bytes=` range of RFC 9110 14.1.2 as [start, end); None to send everything (no header, several
    ranges, or another unit: a server may ignore Range). Raises RangeNotSatisfiable past the end."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = _RANGE.fullmatch(spec.strip())
    if match is None or not (match.group(1) or match.group(2)):
        return None  # malformed: ignored, the whole document is sent (RFC 9110 14.2)
    first, last = match.group(1), match.group(2)
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - n), size
    start = int(first)
    if start >= size:
        raise RangeNotSatisfiable(size)
    end = size if not last else min(size, int(last) + 1)
    if end <= start:
        return None
    return start, end


async def retrieve(
    ctx: Context, binary_id: str, *, range_header: str | None = None, if_range: str | None = None
) -> Retrieved:
    """ITI-68 Retrieve Document: the content of a Binary the actor may read, traced as a download."""
    decision = await fhir.authorize(ctx, "read", "Binary")

    async def run(conn: Conn) -> Retrieved:
        stored = await fhir.read_in(conn, ctx, decision, "Binary", binary_id, None, traced=False)
        scope = await fhir.scoped(conn, ctx, decision, [stored.space_id])
        blob = await docs_store.content_of(
            conn, scope, stored.space_id, stored.resource_id, stored.version_id
        )
        if blob is None:
            raise NotFound(f"Binary/{binary_id} : aucun contenu / no content")
        etag = f'"{blob.blob_id.hex}"'
        wanted = parse_range(range_header, blob.size) if (if_range is None or if_range == etag) else None
        start, end = wanted or (0, blob.size)
        await trace.access(
            conn,
            ctx,
            scope,
            "document:download",
            stored.space_id,
            entity_type="Binary",
            entity_id=binary_id,
            version=stored.version_id,
        )
        aead = await ctx.runtime.keys.version(conn, blob.space_id, blob.key_version)
        return Retrieved(blob, start, end, wanted is not None, etag, aead)

    return await ctx.runtime.db.interaction("document_retrieve", run)
