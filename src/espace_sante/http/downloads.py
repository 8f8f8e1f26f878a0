"""A document's bytes over HTTP (ITI-68), the same for a professional's software and a person's browser:
streamed and decrypted segment by segment, one byte range when asked."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response, StreamingResponse

#: A document's content is served as a download that nothing renders in our origin: no sniffing, a sandbox
#: with no script, plugin or same-origin rights if a browser opens it anyway (SECURITY V12 12.5.2, V14).
CONTENT_HEADERS = {
    "Cache-Control": "private, no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'; frame-ancestors 'none'",
    "Accept-Ranges": "bytes",
}

_EXTENSIONS = {"pdf": "pdf", "cda": "xml", "jpeg": "jpg", "png": "png", "text": "txt"}


async def content_response(retrieved: Any, ctx: Any, *, head: bool = False) -> Response:
    """ITI-68: the document itself, streamed and decrypted segment by segment; one byte range when asked."""
    blob = retrieved.blob
    headers = {
        **CONTENT_HEADERS,
        "ETag": retrieved.etag,
        "Content-Length": str(retrieved.length),
        "Content-Disposition": f'attachment; filename="document.{_EXTENSIONS.get(blob.kind, "bin")}"',
    }
    if retrieved.partial:
        headers["Content-Range"] = f"bytes {retrieved.start}-{retrieved.end - 1}/{blob.size}"
    status = 206 if retrieved.partial else 200
    if head:
        return Response(b"", status, headers, media_type=blob.media_type)
    return StreamingResponse(await retrieved.opened(ctx), status, headers, media_type=blob.media_type)
