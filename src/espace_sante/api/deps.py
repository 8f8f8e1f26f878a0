"""Request dependencies: the runtime and the request context with its authenticated actor."""

from __future__ import annotations

from fastapi import Request

from espace_sante.context import Context
from espace_sante.errors import BadRequest, Unauthorized
from espace_sante.oauth import bearer as oauth_bearer
from espace_sante.runtime import Runtime


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def fhir_context(request: Request) -> Context:
    """Authenticate the bearer token (RFC 6750 section 2.1: header only) and build the context."""
    if "access_token" in request.query_params:
        # SECURITY V13 13.1.3: tokens in URLs end up in logs and histories.
        raise BadRequest(
            "access_token dans l'URL refusé : utilisez l'en-tête Authorization / access_token in the "
            "query string is refused: use the Authorization header"
        )
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized()
    rt = runtime(request)
    actor = await oauth_bearer.resolve_bearer(rt, token.strip())
    strict = "handling=strict" in request.headers.get("prefer", "")
    ctx = Context(rt, actor, request_id=request.state.request_id, strict=strict)
    return ctx
