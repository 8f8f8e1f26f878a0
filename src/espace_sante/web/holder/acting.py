"""How the holder's pages make a change: the signed-in holder (or a child's representative, web/holder/whose.py)
and the session's anti-forgery token, then the service, then back to the page with its confirmation (a fixed
key in the address, never free text). A refusal is shown in words; a session that must confirm her identity
goes to the step-up page and comes back; one below the level the change needs is told to sign in more
strongly. The rule itself is the service's (rights/changes.py), never the page's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request
from starlette.datastructures import FormData
from starlette.responses import Response

from espace_sante.errors import FhirError
from espace_sante.people.stepup import StepUpRequired
from espace_sante.rights import changes
from espace_sante.web.account.signin import FORGED, step_up_url
from espace_sante.web.deps import check_csrf
from espace_sante.web.forms import field, see_other, small_form
from espace_sante.web.holder.whose import Whose, holder_whose
from espace_sante.web.messages import sentences
from espace_sante.web.portal import PageRefused

#: A change: the service call for the space the page is about; returns the confirmation's key.
Change = Callable[[Whose, FormData], Awaitable[str]]


async def act(request: Request, page: str, change: Change, *, max_fields: int = 10) -> Response:
    """Make `change` from a form posted on `page` (at most `max_fields` fields), and go back there with
    `?message=<its key>`."""
    session, w = await holder_whose(request, page)
    form = await small_form(request, max_fields=max_fields)
    if form is None or not check_csrf(request, session, field(form, "csrf")):
        fr, en = sentences(FORGED)
        raise PageRefused("Formulaire expiré", fr, en, status=403, link=page)
    try:
        done = await change(w, form)
    except StepUpRequired:
        return see_other(step_up_url(page))
    except changes.StrongerSignInRequired:
        # Confirming her identity on the step-up page proves it again at the session's own level; a stronger
        # level needs a stronger sign-in.
        raise PageRefused(
            "Connexion renforcée requise",
            "Ce changement demande une connexion renforcée : déconnectez-vous, puis reconnectez-vous avec votre "
            "code à usage unique, une clé d'accès ou FranceConnect+.",
            "This change needs a stronger sign-in: sign out, then sign in again with your one-time code, a "
            "passkey or FranceConnect+.",
            status=403,
            link=page,
        ) from None
    except FhirError as exc:
        if exc.status >= 500:
            raise
        fr, en = sentences(exc.message)
        raise PageRefused("Changement refusé", fr, en, status=exc.status, link=page) from None
    return see_other(f"{page}?message={done}")
