"""Errors become responses here, and only here (STYLE habit 9). Under /fhir, /access and /space every error is an OperationOutcome;
elsewhere a small JSON object. A fault of ours answers 500 with an id to quote, never a stack trace."""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from espace_sante.api.fhir.render import error_response
from espace_sante.errors import BadRequest, FhirError, MethodNotAllowed, NotFound, TooManyRequests
from espace_sante.logs import get_logger
from espace_sante.storage.db import DatabaseUnavailable

log = get_logger(__name__)


#: A page for an error a browser meets outside any route (web/portal.error_page, given by app.py: the API does
#: not import the portal), or None to answer as a program.
Pages = Callable[[Request, FhirError], Awaitable[Response | None]]


def install(app: FastAPI, pages: Pages | None = None) -> None:
    async def _respond(
        request: Request, error: FhirError, headers: dict[str, str] | None = None, *, page: bool = True
    ) -> Response:
        if request.url.path.startswith(("/fhir", "/access", "/space")):
            return error_response(error, headers)
        # No page when the database or our own code failed: drawing one needs them (the session, the words).
        if page and pages is not None and (shown := await pages(request, error)) is not None:
            return shown
        return JSONResponse({"error": error.code, "error_description": error.message}, error.status, headers)

    @app.exception_handler(FhirError)
    async def fhir_error(request: Request, exc: FhirError) -> Response:
        headers = None
        if exc.status == 401:
            # RFC 6750 section 3.1: name the error when a token was presented, the bare challenge otherwise.
            presented = request.headers.get("authorization", "")[:7].lower() == "bearer "
            challenge = 'Bearer realm="espace-sante"' + (', error="invalid_token"' if presented else "")
            # A valid token without a recent sign-in says so (RFC 9470 section 3, people/stepup.py).
            headers = {"WWW-Authenticate": getattr(exc, "challenge", challenge)}
        elif isinstance(exc, TooManyRequests):
            headers = {"Retry-After": str(exc.retry_after)}
        return await _respond(request, exc, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        if first.get("loc", ("",))[0] == "path":
            return await _respond(request, NotFound(f"chemin invalide / invalid path: {where}"))
        return await _respond(
            request, BadRequest(f"requête invalide / invalid request: {where}: {first.get('msg', '')}")
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            return await _respond(request, NotFound("chemin inconnu / unknown path"))
        if exc.status_code == 405:
            return await _respond(
                request,
                MethodNotAllowed(f"méthode {request.method} non permise ici / not allowed here"),
                dict(exc.headers or {}),
            )
        return await _respond(request, FhirError(str(exc.detail), exc.status_code, "processing"))

    @app.exception_handler(asyncpg.exceptions.CharacterNotInRepertoireError)
    @app.exception_handler(asyncpg.exceptions.UntranslatableCharacterError)
    async def bad_characters(request: Request, exc: Exception) -> Response:
        # A value PostgreSQL cannot store as text (a NUL byte) that a check upstream missed: the client's fault.
        return await _respond(request, BadRequest("caractère invalide (NUL) / invalid character (NUL)"))

    @app.exception_handler(DatabaseUnavailable)
    async def unavailable(request: Request, exc: DatabaseUnavailable) -> Response:
        log.warning("db.unavailable", request_id=getattr(request.state, "request_id", None), error=str(exc))
        return await _respond(
            request,
            FhirError(
                "service momentanément indisponible / service temporarily unavailable", 503, "transient"
            ),
            {"Retry-After": "5"},
            page=False,
        )

    @app.exception_handler(Exception)
    async def fault(request: Request, exc: Exception) -> Response:
        request_id = getattr(request.state, "request_id", "-")
        # The traceback's frames only: an exception message may quote data we must not log (V7 7.1.1).
        log.error(
            "request.fault",
            request_id=request_id,
            error=type(exc).__name__,
            frames="".join(traceback.format_tb(exc.__traceback__))[-4000:],
        )
        return await _respond(
            request,
            FhirError(f"erreur interne / internal error (id {request_id})", 500, "exception"),
            page=False,
        )
