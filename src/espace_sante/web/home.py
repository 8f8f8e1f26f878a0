"""The site's root and the language switch.

`/` says what the service is to anyone, with the three ways in: sign in, activate with the notice's code, or
refuse the space. A holder signed in sees her home (web/holder/dashboard.py); a professional or an operator
goes to their account, until their portals exist. `/langue` remembers the language chosen with the switch that
every page shows, and comes back to that page."""

from __future__ import annotations

from fastapi import FastAPI, Query, Request
from starlette.responses import RedirectResponse, Response

from espace_sante.web import i18n
from espace_sante.web.deps import current_session, runtime, safe_next
from espace_sante.web.holder.dashboard import dashboard
from espace_sante.web.holder.documents import HOME as HOLDER_HOME
from espace_sante.web.i18n import N_
from espace_sante.web.portal import message_page, portal_router
from espace_sante.web.templating import render

ROOT = "/"
SWITCH = "/langue"
#: Where a person signed in lands, by the kind of account.
LANDINGS = {"holder": HOLDER_HOME, "practitioner": "/compte/securite", "operator": "/compte/securite"}

#: A portal router: the request speaks the person's language throughout (her home's parts are built in it), and
#: a service error is the message page (web/portal.py).
router = portal_router(link=ROOT)


@router.get(ROOT)
async def home(request: Request) -> Response:
    session = await current_session(request)
    if session is not None and session.kind == "holder":
        return await dashboard(request, ROOT)
    if session is not None:
        return RedirectResponse(LANDINGS.get(session.kind, "/compte/securite"), status_code=303)
    return render(request, "home.html", {"title": i18n.gettext("Mon espace santé")})


@router.get(SWITCH)
async def switch(
    request: Request,
    vers: str = Query("", max_length=8),
    retour: str = Query("", max_length=2000),
) -> Response:
    """Remember the language chosen and go back to the page it was chosen on (never to another site)."""
    if vers not in i18n.LOCALES:
        return await message_page(
            request,
            N_("Langue inconnue"),
            N_("Cette langue n'est pas proposée : choisissez le français ou l'anglais."),
            status=400,
            link=ROOT,
        )
    response = RedirectResponse(safe_next(retour) or ROOT, status_code=303)
    response.set_cookie(
        i18n.COOKIE,
        vers,
        max_age=i18n.COOKIE_SECONDS,
        path="/",
        secure=runtime(request).settings.base_url.startswith("https://"),
        httponly=True,
        samesite="lax",
    )
    return response


def install_home(app: FastAPI) -> None:
    app.include_router(router)
