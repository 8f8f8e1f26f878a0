"""One raw ASGI middleware for every request: a request id, the body size limit (enforced while streaming, not
only from Content-Length), security headers (SECURITY V14 14.4) and one access-log line that carries the route
template, never the query string or the body (V7 7.1.1, V8 8.3.1)."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from espace_sante.errors import PayloadTooLarge
from espace_sante.logs import get_logger

log = get_logger("espace_sante.access")

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


class RequestGuard:
    def __init__(self, app: ASGIApp, *, max_body: int, hsts: bool) -> None:
        self.app = app
        self.max_body = max_body
        self.headers = list(_SECURITY_HEADERS)
        if hsts:
            self.headers.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        start = time.perf_counter()
        status = 0
        limit = self.max_body

        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                await self._too_large(scope, send, request_id)
                return

        received = 0

        async def guarded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(
                        f"corps de requête trop grand / request body too large (> {limit} bytes)"
                    )
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [h for h in message.get("headers", []) if h[0] not in (b"server",)]
                # A response that sets one of these (a portal page's own CSP) keeps it: two CSP headers
                # would both apply, and the default `default-src 'none'` would block the page's script.
                present = {h[0].lower() for h in headers}
                headers += [h for h in self.headers if h[0] not in present]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        finally:
            route: Any = scope.get("route")
            log.info(
                "http",
                request_id=request_id,
                method=scope["method"],
                route=getattr(route, "path", "(unmatched)"),
                status=status,
                ms=round((time.perf_counter() - start) * 1000, 2),
            )

    async def _too_large(self, scope: Scope, send: Send, request_id: str) -> None:
        message = f"corps de requête trop grand / request body too large (> {self.max_body} bytes)"
        if str(scope.get("path", "")).startswith("/fhir"):
            ctype = b"application/fhir+json; charset=utf-8"
            body = orjson.dumps(
                {
                    "resourceType": "OperationOutcome",
                    "id": uuid.uuid4().hex,
                    "issue": [{"severity": "error", "code": "too-costly", "diagnostics": message}],
                }
            )
        else:  # the same shape as every other error outside /fhir (api/errors.py)
            ctype = b"application/json"
            body = orjson.dumps({"error": "too-costly", "error_description": message})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", ctype),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                    (b"x-request-id", request_id.encode()),
                    *self.headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
