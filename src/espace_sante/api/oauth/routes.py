"""OAuth 2 endpoints: the token endpoint (RFC 6749 section 3.2), introspection (RFC 7662), revocation (RFC 7009)
and SMART discovery. The authorization endpoint is a page (web/account/apps.py): a person signs in there."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from espace_sante.api.deps import runtime
from espace_sante.errors import UnsupportedMediaType
from espace_sante.oauth import authorize as smart
from espace_sante.oauth import introspection
from espace_sante.oauth import tokens as oauth_tokens

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

#: How a client authenticates in a form (RFC 6749 2.3.1, RFC 7523 2.2): the fields every endpoint documents.
_CLIENT_AUTH = {
    "client_id": {"type": "string"},
    "client_secret": {"type": "string"},
    "client_assertion_type": {"type": "string"},
    "client_assertion": {"type": "string"},
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
                        "grant_type": {
                            "type": "string",
                            "enum": ["client_credentials", "authorization_code", "refresh_token"],
                        },
                        "scope": {"type": "string"},
                        "code": {"type": "string"},
                        "redirect_uri": {"type": "string"},
                        "code_verifier": {"type": "string"},
                        "refresh_token": {"type": "string"},
                        **_CLIENT_AUTH,
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
                            "refresh_token": {"type": "string"},
                            "patient": {"type": "string"},
                            "fhirUser": {"type": "string"},
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


async def _form(request: Request) -> list[tuple[str, str]] | Response:
    """The form of an OAuth POST, or the error response (415 not a form, 400 NUL characters)."""
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
    return pairs


def _answer(status: int, body: dict[str, object], headers: list[tuple[str, str]]) -> Response:
    response = JSONResponse(body, status)
    for name, value in headers:
        if name.lower() != "content-type":
            response.headers[name] = value
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response


def _token_url(request: Request) -> str:
    return runtime(request).settings.base_url.rstrip("/") + "/oauth/token"


@router.post("/oauth/token", summary="Token endpoint", openapi_extra=_TOKEN_DOC)
async def token(request: Request) -> Response:
    pairs = await _form(request)
    if isinstance(pairs, Response):
        return pairs
    status, body, headers = await oauth_tokens.token_endpoint(
        runtime(request), _token_url(request), request.headers, pairs, request_id=request.state.request_id
    )
    return _answer(status, body, headers)


_INTROSPECT_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["token"],
                    "properties": {
                        "token": {"type": "string"},
                        "token_type_hint": {"type": "string"},
                        **_CLIENT_AUTH,
                    },
                }
            }
        },
    },
    "responses": {
        "200": {
            "description": "RFC 7662 section 2.2 (introspection) or RFC 7009 section 2.2 (revocation)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        "400": {"description": "OAuth error", "content": _OAUTH_ERROR},
        "401": {"description": "invalid_client", "content": _OAUTH_ERROR},
        "413": {
            "description": "Payload too large (OperationOutcome, from the request guard)",
            "content": {"application/fhir+json": {"schema": {"type": "object"}}},
        },
        "415": {"description": "not a form", "content": _OAUTH_ERROR},
    },
}


@router.post("/oauth/introspect", summary="Token introspection (RFC 7662)", openapi_extra=_INTROSPECT_DOC)
async def introspect(request: Request) -> Response:
    pairs = await _form(request)
    if isinstance(pairs, Response):
        return pairs
    return _answer(
        *await introspection.introspect(runtime(request), _token_url(request), request.headers, pairs)
    )


@router.post("/oauth/revoke", summary="Token revocation (RFC 7009)", openapi_extra=_INTROSPECT_DOC)
async def revoke(request: Request) -> Response:
    pairs = await _form(request)
    if isinstance(pairs, Response):
        return pairs
    return _answer(*await introspection.revoke(runtime(request), _token_url(request), request.headers, pairs))


@router.get("/.well-known/smart-configuration", summary="SMART configuration")
async def smart_configuration(request: Request) -> Response:
    return JSONResponse(smart.configuration(runtime(request).settings))
