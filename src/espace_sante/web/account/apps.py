"""Pages of OAuth 2 / SMART and of federated sign-in (issue 4, "Actors and sign-in").

- `GET /oauth/authorize`: the authorization endpoint (RFC 6749 4.1.1, SMART standalone launch). The request
  is checked first (oauth/authorize.py: PKCE S256, exact redirect_uri...), then the person must be signed in
  (else the sign-in page, coming back here), then they see the consent page, unless they already granted
  this client these scopes.
- `POST /oauth/authorize`: the consent form (anti-forgery token): « Autoriser » issues the code and goes back
  to the app; « Refuser » goes back with `access_denied`.
- `GET /compte/applications`: the apps (or, for a professional, the software) connected, in plain words.
- `POST /compte/applications/{grant_id}/deconnecter`: disconnect one; its tokens stop at once.
- `GET /connexion/federation/{provider}`: start a sign-in with FranceConnect+ (`fcplus`) or Pro Santé Connect
  (`psc`); `GET /connexion/federation/{provider}/retour`: the provider's answer, which starts the session.

Pages carry no inline script or style (the CSP forbids them) and never put a token or an INS in a URL; they
are in the person's language (web/i18n.py), refusals of the services too (web/messages.py `shown`)."""

from __future__ import annotations

import uuid

from fastapi import Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from espace_sante.errors import NotFound
from espace_sante.oauth import authorize as smart
from espace_sante.oauth.authorize import AuthorizeError
from espace_sante.people import federation, sessions, stepup
from espace_sante.people.federation import FederationRefused
from espace_sante.web import deps, i18n
from espace_sante.web.account.signin import FORGED, step_up_url
from espace_sante.web.deps import (
    SESSION_COOKIE,
    check_csrf,
    clear_cookie,
    client_ip,
    current_session,
    here,
    request_id,
    safe_next,
    session_context,
    set_cookie,
    sign_in_url,
    user_agent,
)
from espace_sante.web.forms import field, small_form
from espace_sante.web.i18n import gettext as _
from espace_sante.web.messages import shown
from espace_sante.web.portal import portal_router
from espace_sante.web.templating import render

router = portal_router()  # a service error that escapes a page: the message page (web/portal.py)

APPS = "/compte/applications"


def _notices() -> dict[str, str]:
    """Messages after a redirection, by the fixed key the URL carries, in the page's language."""
    return {"deconnectee": _("L'application est déconnectée : elle n'a plus accès à votre dossier.")}


def _redirect(location: str, status: int = 302) -> RedirectResponse:
    return RedirectResponse(location, status_code=status, headers={"Cache-Control": "no-store"})


def _problem(
    request: Request, title: str, explanation: str, *, status: int, link: str = "", link_text: str = ""
) -> Response:
    return render(
        request,
        "oauth_error.html",
        {"title": title, "explanation": explanation, "link": link, "link_text": link_text},
        status=status,
    )


def _authorize_error(request: Request, exc: AuthorizeError, status: int = 302) -> Response:
    if exc.redirect_uri is not None:
        return _redirect(exc.location(), status)
    return _problem(
        request,
        _("Demande d'accès refusée"),
        _(
            "Cette demande ne vient pas d'une application enregistrée, ou son adresse de retour ne correspond "
            "pas à celle qui est enregistrée : nous ne vous y renvoyons pas. (%(detail)s)"
        )
        % {"detail": shown(exc.description)},
        status=400,
    )


async def _form(request: Request) -> FormData | None:
    return await small_form(request, max_fields=40, max_part_size=16 * 1024)


# --- the authorization endpoint -------------------------------------------------------------------------------


@router.get("/oauth/authorize")
async def authorize(request: Request) -> Response:
    rt = deps.runtime(request)
    try:
        auth = await smart.validate(rt, list(request.query_params.multi_items()))
    except AuthorizeError as exc:
        return _authorize_error(request, exc)
    session = await current_session(request)
    if session is None:
        return _redirect(sign_in_url(here(request)), 303)
    if not stepup.within(session, request.query_params.get("max_age", "")):
        # The client asks for a recent sign-in (RFC 9470 after a step-up challenge): confirm it, come back.
        return _redirect(step_up_url(here(request)), 303)
    ctx = await session_context(request)
    if not smart.may_authorise(ctx.actor, auth):
        return _problem(
            request,
            _("Autorisation impossible avec ce compte"),
            _("Cette application s'adresse aux titulaires d'un dossier.")
            if auth.person_kind == "holder"
            else _("Ce logiciel s'adresse aux professionnels de santé."),
            status=403,
            link=smart.refusal(auth),
            link_text=_("Revenir à l'application"),
        )
    if await smart.covered(rt, ctx.actor, auth):
        return _redirect(await smart.approve(ctx, auth, consented=False))
    holder = auth.person_kind == "holder"
    return render(
        request,
        "oauth_consent.html",
        {
            "title": _("Autoriser une application") if holder else _("Autoriser un logiciel"),
            "holder": holder,
            "client_name": auth.client.name,
            "phrases": smart.describe(auth.scope, i18n.language(), holder=holder),
            "explanation": (
                _("Elle n'aura accès qu'à votre dossier, et seulement à ce qui est listé ci-dessus.")
                if holder
                else _(
                    "Il agira en votre nom, avec vos droits d'accès, et seulement pour ce qui est listé "
                    "ci-dessus."
                )
            ),
            "params": [(k, v) for k, v in auth.params if k not in ("csrf", "decision")],
            "csrf": session.csrf_token,
            "signed_in": True,
        },
    )


@router.post("/oauth/authorize")
async def authorize_decision(request: Request) -> Response:
    session = await current_session(request)
    form = await _form(request)
    if session is None:
        return _problem(
            request,
            _("Connexion requise"),
            _("Connectez-vous d'abord."),
            status=401,
            link=sign_in_url(""),
            link_text=_("Se connecter"),
        )
    if form is None or not check_csrf(request, session, _text(form, "csrf")):
        return _problem(request, _("Formulaire refusé"), shown(FORGED), status=403)
    params = [(k, v) for k, v in form.multi_items() if isinstance(v, str) and k not in ("csrf", "decision")]
    rt = deps.runtime(request)
    try:
        auth = await smart.validate(rt, params)
    except AuthorizeError as exc:
        return _authorize_error(request, exc, 303)
    if _text(form, "decision") != "autoriser":
        return _redirect(smart.refusal(auth), 303)
    ctx = await session_context(request)
    try:
        return _redirect(await smart.approve(ctx, auth, consented=True), 303)
    except AuthorizeError as exc:
        return _authorize_error(request, exc, 303)


def _text(form: FormData, name: str) -> str:
    return field(form, name, 4096)


# --- connected apps -----------------------------------------------------------------------------------------


@router.get(APPS)
async def connected_apps(request: Request) -> Response:
    ctx = await session_context(request)
    session = await current_session(request)
    assert session is not None
    holder = ctx.actor.kind == "holder"
    grants = [
        {
            "id": str(g.grant_id),
            "name": g.client_name,
            "since": i18n.instant_text(g.granted_at),
            "phrases": smart.describe(g.scope, i18n.language(), holder=holder),
        }
        for g in await smart.connected(ctx)
    ]
    return render(
        request,
        "oauth_apps.html",
        {
            "title": _("Applications connectées") if holder else _("Logiciels autorisés"),
            "intro": (
                _(
                    "Les applications que vous avez autorisées à accéder à votre dossier. Déconnecter une "
                    "application lui retire tout accès immédiatement."
                )
                if holder
                else _("Les logiciels que vous avez autorisés à agir en votre nom.")
            ),
            "grants": grants,
            "csrf": session.csrf_token,
            "signed_in": True,
            "notice": _notices().get(request.query_params.get("message", ""), ""),
        },
    )


@router.post(APPS + "/{grant_id}/deconnecter")
async def disconnect_app(request: Request, grant_id: str) -> Response:
    ctx = await session_context(request)
    session = await current_session(request)
    assert session is not None
    form = await _form(request)
    if form is None or not check_csrf(request, session, _text(form, "csrf")):
        return _problem(request, _("Formulaire refusé"), shown(FORGED), status=403)
    try:
        await smart.disconnect(ctx, uuid.UUID(grant_id))
    except (ValueError, NotFound):
        return _problem(
            request,
            _("Application introuvable"),
            _("Cette application n'est pas connectée à votre dossier."),
            status=404,
            link=APPS,
            link_text=_("Applications connectées"),
        )
    return _redirect(APPS + "?message=deconnectee", 303)


# --- federated sign-in -------------------------------------------------------------------------------------


@router.get("/connexion/federation/{provider}")
async def federation_start(request: Request, provider: str) -> Response:
    rt = deps.runtime(request)
    try:
        started = await federation.begin(rt, provider, safe_next(request.query_params.get("next")))
    except FederationRefused as exc:
        return _problem(
            request,
            _("Connexion impossible"),
            shown(exc.message),
            status=404 if exc.reason == "unknown_provider" else 502,
            link="/connexion",
            link_text=_("Autres moyens de connexion"),
        )
    response = _redirect(started.location, 303)
    set_cookie(response, federation.COOKIE, started.flow_secret, max_age=federation.FLOW_SECONDS)
    return response


@router.get("/connexion/federation/{provider}/retour")
async def federation_return(request: Request, provider: str) -> Response:
    rt = deps.runtime(request)
    params = {k: v for k, v in request.query_params.items() if k in ("code", "state", "error")}
    try:
        finished = await federation.finish(
            rt,
            provider,
            request.cookies.get(federation.COOKIE, ""),
            params,
            user_agent=user_agent(request),
            ip=client_ip(request),
            request_id=request_id(request),
        )
    except FederationRefused as exc:
        response = _problem(
            request,
            _("Connexion refusée"),
            shown(exc.message),
            status=403,
            link="/connexion",
            link_text=_("Revenir à la connexion"),
        )
        clear_cookie(response, federation.COOKIE)
        return response
    previous = await current_session(request)
    if previous is not None:  # a new sign-in replaces this browser's previous session (ASVS 3.2.1)
        await sessions.end(rt, previous, request_id=request_id(request))
    response = _redirect(finished.next_path or "/compte/securite", 303)
    set_cookie(response, SESSION_COOKIE, finished.session_secret)
    clear_cookie(response, federation.COOKIE)
    return response
