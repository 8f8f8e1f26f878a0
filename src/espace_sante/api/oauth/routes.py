"""OAuth 2 endpoints: the token endpoint (RFC 6749 section 3.2) and SMART discovery."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from ...errors import UnsupportedMediaType
from ...services import oauth
from ..deps import runtime
from ..fhir.capability import smart_configuration

router = APIRouter(tags=["OAuth 2 / SMART"])

_OAUTH_ERROR = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
        }
    }
}

_TOKEN_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "scope": {"type": "string"},
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                    },
                }
            }
        },
    },
    "responses": {
        "200": {
            "description": "Access token (RFC 6749 section 5.1)",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["access_token", "token_type", "expires_in"],
                        "properties": {
                            "access_token": {"type": "string"},
                            "token_type": {"type": "string"},
                            "expires_in": {"type": "integer"},
                            "scope": {"type": "string"},
                        },
                    }
                }
            },
        },
        "400": {"description": "OAuth error (RFC 6749 section 5.2)", "content": _OAUTH_ERROR},
        "401": {"description": "invalid_client", "content": _OAUTH_ERROR},
        "413": {
            "description": "Payload too large (OperationOutcome, from the request guard)",
            "content": {"application/fhir+json": {"schema": {"type": "object"}}},
        },
        "415": {"description": "not a form", "content": _OAUTH_ERROR},
    },
}


def _has_nul(authorization: str, pairs: list[tuple[str, str]]) -> bool:
    if any("\x00" in k or "\x00" in v for k, v in pairs):
        return True
    if authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False  # not credentials at all: the token endpoint answers invalid_client
        return "\x00" in unquote(decoded)  # RFC 6749 2.3.1: form-urlencoded before Basic
    return False


@router.post("/oauth/token", summary="Token endpoint (client credentials)", openapi_extra=_TOKEN_DOC)
async def token(request: Request) -> Response:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType(
            "le point de jeton attend application/x-www-form-urlencoded / the token endpoint "
            "expects application/x-www-form-urlencoded (RFC 6749 section 4.4.2)"
        )
    form = await request.form()
    pairs = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    if _has_nul(request.headers.get("authorization", ""), pairs):
        # No client id, secret or scope holds U+0000, and PostgreSQL text cannot: refuse it here (RFC 6749
        # section 5.2 invalid_request) rather than let it reach the database.
        return JSONResponse(
            {
                "error": "invalid_request",
                "error_description": "caractère nul interdit / NUL character not allowed",
            },
            400,
            headers={"Cache-Control": "no-store"},
        )
    rt = runtime(request)
    status, body, headers = await oauth.token_endpoint(
        rt, rt.settings.base_url.rstrip("/") + "/oauth/token", request.headers, pairs
    )
    response = JSONResponse(body, status)
    for name, value in headers:
        if name.lower() != "content-type":
            response.headers[name] = value
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/.well-known/smart-configuration", summary="SMART configuration")
async def smart(request: Request) -> Response:
    return JSONResponse(smart_configuration(runtime(request).settings))
