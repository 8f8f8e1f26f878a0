"""The portal's one answer to a service refusal: a page in the person's language with its status and the
person's navigation, never a 500 and never an OperationOutcome (that is the API's answer, api/errors.py).

A portal router is made by `portal_router(...)`: its routes are `PortalRoute`s, which speak the person's
language for the whole request (web/i18n.py: what a handler translates with `gettext` is in the page's
language), and whose handler turns what a page route lets escape into the message page:
- a service error (`FhirError` and its subclasses, errors.py) by its status: 404/410 "not found" in the
  router's own words, 412 "changed meanwhile" (answered 409: the person should reload, not retry as is), 401,
  5xx "unavailable", any other refusal with the service's own sentence, in the page's language;
- `DatabaseUnavailable`: 503 with `Retry-After`, like the API;
- `PageRefused`: a refusal a page raises in words of its own (a professional's session on a holder's page).
Pages keep local handling only where a refusal belongs beside a form field or on the page itself.

Words given ahead of the request (a router's `not_found`, a `PageRefused`) are French, the source, marked with
`N_` where they are written: the message page translates them. A text given with its English (a service's
sentence, « français / English », or a page that words both) shows the half of the page's language; a title
the catalogue lacks gives way to the status's own, so that an English page never shows a French title.

The handler sits on the route rather than on the app (`app.exception_handler(FhirError)` is the API's), so
that an API route keeps answering an OperationOutcome whatever path it has."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from espace_sante.errors import FhirError
from espace_sante.logs import get_logger
from espace_sante.storage.db import DatabaseUnavailable
from espace_sante.web import i18n
from espace_sante.web.deps import current_session, request_id
from espace_sante.web.i18n import N_
from espace_sante.web.messages import in_language, sentences
from espace_sante.web.templating import render

log = get_logger(__name__)

#: Where "Continuer" leads when the router names no page of its own.
ACCOUNT = "/compte/securite"


class PageRefused(Exception):
    """A refusal a page words itself: its title and text in French (the source, marked with `N_`), the text's
    English when the catalogue cannot hold it (""), the status, and where to go on."""

    def __init__(self, title: str, fr: str, en: str = "", *, status: int = 403, link: str = ACCOUNT) -> None:
        super().__init__(title)
        self.title, self.fr, self.en, self.status, self.link = title, fr, en, status, link


#: A title by status, for a title the catalogue lacks (one its page has not marked yet).
STATUS_TITLES: dict[int, str] = {
    400: N_("Demande refusée"),
    401: N_("Connexion requise"),
    403: N_("Action refusée"),
    404: N_("Page introuvable"),
    409: N_("Modifié entre-temps"),
    503: N_("Service indisponible"),
}


def _heading(title: str, status: int) -> str:
    if i18n.translated(title):
        return i18n.gettext(title)
    fallback = STATUS_TITLES.get(status) or STATUS_TITLES[503 if status >= 500 else 400]
    return i18n.gettext(fallback)


async def message_page(
    request: Request,
    title: str,
    text: str,
    en: str = "",
    *,
    status: int,
    link: str = ACCOUNT,
    headers: dict[str, str] | None = None,
) -> Response:
    """A message on its own page, in the person's language, with the navigation of the person signed in (a
    holder's pages' links). `title` and `text` are French, the source; `en` the text's English when the
    catalogue cannot hold it (a service's own sentence)."""
    session = await current_session(request)
    with i18n.speaking(i18n.negotiate(request)):
        heading = _heading(title, status)
        shown = in_language(i18n.gettext(text), en)
    return render(
        request,
        "message.html",
        {
            "title": heading,
            "error": shown,
            "signed_in": session is not None,
            "holder_nav": session is not None and session.kind == "holder",
            "csrf": session.csrf_token if session else "",
            "link": link,
        },
        status=status,
        headers=headers,
    )


class PortalRoute(APIRoute):
    """A page route: service errors become the message page (see the module's docstring). Subclassed by
    `portal_router` with the router's words for "not found" and its "Continuer" link."""

    #: (title, text, the text's English when the catalogue lacks it): French, marked with `N_`.
    not_found: tuple[str, str, str] = (
        N_("Page introuvable"),
        N_("Ce que vous cherchez est introuvable : il a peut-être été supprimé."),
        "",
    )
    changed: tuple[str, str, str] = (
        N_("Modifié entre-temps"),
        N_("Ceci a changé entre-temps : revenez à la page précédente et recommencez."),
        "",
    )
    link: str = ACCOUNT

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            with i18n.speaking(i18n.negotiate(request)):
                try:
                    return await handler(request)
                except FhirError as exc:
                    return await self.refusal(request, exc)
                except PageRefused as exc:
                    return await message_page(
                        request, exc.title, exc.fr, exc.en, status=exc.status, link=exc.link
                    )
                except DatabaseUnavailable as exc:
                    log.warning("db.unavailable", request_id=request_id(request), error=str(exc))
                    return await message_page(
                        request,
                        N_("Service indisponible"),
                        N_("Le service est momentanément indisponible : réessayez dans quelques instants."),
                        status=503,
                        link=self.link,
                        headers={"Retry-After": "5"},
                    )

        return page

    @classmethod
    async def refusal(cls, request: Request, exc: FhirError) -> Response:
        status = exc.status
        if status in (404, 410):
            title, fr, en = cls.not_found
        elif status == 412:
            title, fr, en = cls.changed
            status = 409
        elif status == 401:
            title, fr, en = N_("Connexion requise"), N_("Connectez-vous d'abord."), ""
        elif status >= 500:
            title, fr, en = (
                N_("Service indisponible"),
                N_("Le service est indisponible : réessayez plus tard."),
                "",
            )
        else:
            title = N_("Action refusée") if status == 403 else N_("Demande refusée")
            fr, en = sentences(exc.message)
        return await message_page(
            request, title, fr, en, status=status if status >= 400 else 500, link=cls.link
        )


def portal_router(
    *,
    not_found: tuple[str, str, str] | None = None,
    changed: tuple[str, str, str] | None = None,
    link: str = ACCOUNT,
) -> APIRouter:
    """A router of portal pages whose routes answer service errors with the message page, in these words."""
    words: dict[str, Any] = {"link": link}
    if not_found is not None:
        words["not_found"] = not_found
    if changed is not None:
        words["changed"] = changed
    route = type("PagesRoute", (PortalRoute,), words)
    return APIRouter(include_in_schema=False, route_class=route)


#: Addresses whose errors answer a program (OperationOutcome or JSON, api/errors.py), never a page.
PROGRAM_PATHS = ("/fhir", "/access", "/space", "/oauth", "/.well-known", "/health", "/static", "/openapi")


async def error_page(
    request: Request, error: FhirError, headers: dict[str, str] | None = None
) -> Response | None:
    """The message page for an error no page route answered (an unknown address under the portal, a wrong
    method), when a browser asked for a page; None for a program, which gets api/errors.py's answer (and when
    the database is down: drawing the page needs the session)."""
    if request.url.path.startswith(PROGRAM_PATHS) or not _wants_html(request.headers.get("accept", "")):
        return None
    try:
        page = await PortalRoute.refusal(request, error)
    except DatabaseUnavailable:
        return None
    page.headers.update(headers or {})  # Allow, WWW-Authenticate, Retry-After: said to a browser too
    return page


def _wants_html(accept: str) -> bool:
    """Whether HTML is among the media types `accept` prefers (RFC 9110 §12.5.1: the q-values)."""
    weights: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        weights[media.lower()] = max(q, weights.get(media.lower(), 0.0))
    html = weights.get("text/html", 0.0)
    return html > 0 and html >= max(
        weights.get("application/json", 0.0), weights.get("application/fhir+json", 0.0)
    )
