"""The portal's one answer to a service refusal (web/portal.py, issue 15): a page route that lets a FhirError
escape answers a page in the person's language (the service's own sentence: its half in that language) with its
status and the person's navigation; a database outage is a 503 page; an API route still answers an
OperationOutcome."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import httpx
from fastapi import FastAPI, Request
from starlette.responses import Response

from espace_sante.errors import Forbidden, NotFound, PreconditionFailed
from espace_sante.storage.db import DatabaseUnavailable
from espace_sante.web.portal import PageRefused, portal_router
from tests.accounts.helpers import browser, new_person, sign_in


def _tiny_app() -> FastAPI:
    """Page routes raising what services raise, on a portal router (no database: nobody is signed in)."""
    router = portal_router(not_found=("Chose introuvable", "Cette chose est introuvable.", "Not found."))

    @router.get("/refuse")
    async def refuse(request: Request) -> Response:
        raise Forbidden("accès refusé : pas ce document / access denied: not this document")

    @router.get("/absent")
    async def absent(request: Request) -> Response:
        raise NotFound()

    @router.get("/change")
    async def change(request: Request) -> Response:
        raise PreconditionFailed("version")

    @router.get("/panne")
    async def down(request: Request) -> Response:
        raise DatabaseUnavailable("test")

    @router.get("/titulaire")
    async def holder_only(request: Request) -> Response:
        raise PageRefused("Réservé", "Réservé au titulaire.", "For the holder only.")

    app = FastAPI()
    app.include_router(router)
    return app


def _alert(html: str) -> str:
    found = re.search(r'role="alert"[^>]*>([^<]*)<', html)
    assert found, "no alert on the page"
    return unescape(found.group(1)).strip()


def _title(html: str) -> str:
    found = re.search(r"<h1>([^<]*)</h1>", html)
    assert found, "no title"
    return unescape(found.group(1)).strip()


async def test_a_service_error_in_a_page_route_is_a_page_in_the_persons_language_with_its_status() -> None:
    transport = httpx.ASGITransport(app=_tiny_app())
    async with httpx.AsyncClient(transport=transport, base_url="https://test") as client:
        refused = await client.get("/refuse")
        assert refused.status_code == 403 and refused.headers["content-type"].startswith("text/html")
        assert _alert(refused.text) == "Accès refusé : pas ce document."
        assert _title(refused.text) == "Action refusée" and "not this document" not in refused.text
        assert refused.headers["cache-control"] == "no-store"

        absent = await client.get("/absent")
        assert absent.status_code == 404 and _alert(absent.text) == "Cette chose est introuvable."

        changed = await client.get("/change")
        assert changed.status_code == 409 and "changé entre-temps" in _alert(changed.text)

        down = await client.get("/panne")
        assert down.status_code == 503 and down.headers["retry-after"] == "5"
        assert "indisponible" in _alert(down.text) and "OperationOutcome" not in down.text

        own = await client.get("/titulaire")
        assert own.status_code == 403 and _alert(own.text) == "Réservé au titulaire."

        # In English: the service's English half, the router's and the page's own English, and titles the
        # catalogue lacks ("Chose introuvable", "Réservé") give way to their status's.
        client.headers["Accept-Language"] = "en"
        refused = await client.get("/refuse")
        assert _alert(refused.text) == "Access denied: not this document."
        assert _title(refused.text) == "Action refused" and '<html lang="en">' in refused.text
        absent = await client.get("/absent")
        assert (_title(absent.text), _alert(absent.text)) == ("Page not found", "Not found.")
        changed = await client.get("/change")
        assert "changed meanwhile" in _alert(changed.text)
        down = await client.get("/panne")
        assert _title(down.text) == "Service unavailable" and "indisponible" not in down.text
        own = await client.get("/titulaire")
        assert (_title(own.text), _alert(own.text)) == ("Action refused", "For the holder only.")
        assert "Continue" in own.text and "Continuer" not in own.text


async def test_the_holder_sees_the_page_with_her_navigation_and_the_api_keeps_its_operation_outcome(
    runtime: Any, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        missing = await client.get(f"/mon-espace/documents/{'0' * 48}/contenu")
        assert missing.status_code == 404
        assert _alert(missing.text) == "Ce document est introuvable : il a peut-être été supprimé."
        assert 'href="/mon-espace/documents"' in missing.text  # her navigation
        assert "Se déconnecter" in unescape(missing.text)
        client.cookies.set("langue", "en")
        missing = await client.get(f"/mon-espace/documents/{'0' * 48}/contenu")
        assert _alert(missing.text) == "This document cannot be found: it may have been deleted."
        assert _title(missing.text) == "Document not found" and "Sign out" in missing.text
    api = await fhir.get(f"/DocumentReference/{'0' * 48}")
    assert api.status_code == 404
    assert api.json()["resourceType"] == "OperationOutcome"


async def test_a_browser_lost_under_the_portal_gets_a_page_and_a_program_its_json(
    runtime: Any, app: Any, fhir: httpx.AsyncClient
) -> None:
    """An address no route answers is a page for a browser (with her navigation), JSON for a program, and an
    OperationOutcome under the FHIR API, whoever asks."""
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        lost = await client.get("/mon-espace/nulle-part", headers={"Accept": "text/html"})
        assert lost.status_code == 404 and lost.headers["content-type"].startswith("text/html")
        assert "Se déconnecter" in unescape(lost.text)
        program = await client.get("/mon-espace/nulle-part", headers={"Accept": "application/json"})
        assert program.status_code == 404 and program.json()["error"] == "not-found"
        # A program that would take a page at a pinch still prefers JSON (RFC 9110 §12.5.1: q-values).
        pinch = await client.get(
            "/mon-espace/nulle-part", headers={"Accept": "application/json, text/html;q=0.1"}
        )
        assert pinch.headers["content-type"].startswith("application/json")
        wrong = await client.delete("/mon-espace/acces", headers={"Accept": "text/html"})
        assert wrong.status_code == 405 and "allow" in wrong.headers  # the page says it, the header too
    api = await fhir.get("/nulle-part/1", headers={"Accept": "text/html"})
    assert api.status_code == 404 and api.json()["resourceType"] == "OperationOutcome"


async def test_a_service_error_on_her_home_is_the_message_page(
    runtime: Any, app: Any, fhir: httpx.AsyncClient, monkeypatch: Any
) -> None:
    """The home is a portal route like the others: a refusal from a service it calls is the message page."""
    from espace_sante.notifications import board

    jeanne = await new_person(runtime, fhir)

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise Forbidden("accès refusé / access denied")

    async with browser(app) as client:
        await sign_in(client, jeanne)
        monkeypatch.setattr(board, "latest", refused)
        home = await client.get("/")
        client.cookies.set("langue", "en")
        english = await client.get("/")
    assert home.status_code == 403 and home.headers["content-type"].startswith("text/html")
    assert _alert(home.text) == "Accès refusé." and _alert(english.text) == "Access denied."
