"""OAuth 2 endpoints: the token endpoint (RFC 6749 section 3.2) and SMART discovery."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from ...errors import UnsupportedMediaType
from ...services import oauth
from ..deps import runtime
from ..fhir.capability import smart_configuration

router = APIRouter(tags=["OAuth 2 / SMART"])

_TOKEN_DOC = {
    "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["grant_type"],
        "properties": {"grant_type": {"type": "string", "enum": ["client_credentials"]},
                       "scope": {"type": "string"}, "client_id": {"type": "string"},
                       "client_secret": {"type": "string"}}}}}},
    "responses": {"400": {"description": "OAuth error (RFC 6749 section 5.2)"},
                  "401": {"description": "invalid_client"}, "415": {"description": "not a form"}},
}


@router.post("/oauth/token", summary="Token endpoint (client credentials)", openapi_extra=_TOKEN_DOC)
async def token(request: Request) -> Response:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("le point de jeton attend application/x-www-form-urlencoded / the token endpoint "
                                   "expects application/x-www-form-urlencoded (RFC 6749 section 4.4.2)")
    form = await request.form()
    pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    rt = runtime(request)
    status, body, headers = await oauth.token_endpoint(
        rt, rt.settings.base_url.rstrip("/") + "/oauth/token", request.headers, pairs)
    response = JSONResponse(body, status)
    for name, value in headers:
        if name.lower() != "content-type":
            response.headers[name] = value
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/.well-known/smart-configuration", summary="SMART configuration")
async def smart(request: Request) -> Response:
    return JSONResponse(smart_configuration(runtime(request).settings))
