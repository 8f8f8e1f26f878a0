"""Sign-in and account security pages (issue 4, "Actors and sign-in"; SECURITY V2, V3).

Routes (French paths, the portal's language):
- `GET/POST /connexion`: login and password; then `GET/POST /connexion/code`: TOTP or recovery code.
- `POST /connexion/cle/options`, `POST /connexion/cle`: sign in with a passkey (JSON, from static/passkeys.js).
- `POST /deconnexion`: sign out (the server session is deleted).
- `GET /compte/securite`: sessions, passkeys, authenticator app, recovery codes, password.
- `POST /compte/sessions/{id}/fermer`, `POST /compte/sessions/fermer-toutes`: end one session, or all.
- `POST /compte/cle/options`, `POST /compte/cle`, `POST /compte/cle/{id}/retirer`: passkeys.
- `POST /compte/totp`, `POST /compte/totp/confirmer`: set up the authenticator app.
- `POST /compte/codes-secours`: new recovery codes. `POST /compte/mot-de-passe`: change the password.
- `GET/POST /compte/confirmer-identite?suite=…`: confirm one's identity again (password and second factor)
  before what cannot be undone (people/stepup.py), then back to `suite`, the form as it was filled in; an
  account without a password signs in again instead (passkey, FranceConnect+), and comes back the same way.

Every POST checks an anti-forgery token (web/deps.py). Pages call one service function each and show its
message when it refuses, in the page's language (web/messages.py `shown`); bad input gets a sentence, never a
500.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import FormData
from starlette.responses import JSONResponse, Response

from espace_sante.people import accounts, devices, passkeys, sessions, signin, stepup
from espace_sante.people.accounts import Account, AccountError, ReauthRequired
from espace_sante.people.signin import SignInRefused
from espace_sante.people.stepup import StepUpRefused
from espace_sante.people.totp import grouped
from espace_sante.web import deps, i18n
from espace_sante.web.deps import (
    FLOW_COOKIE,
    PRE_COOKIE,
    SESSION_COOKIE,
    SignInRequired,
    check_csrf,
    check_pre_token,
    clear_cookie,
    client_ip,
    current_session,
    pre_binding,
    pre_cookie,
    pre_token,
    request_id,
    safe_next,
    set_cookie,
    sign_in_url,
    user_agent,
)
from espace_sante.web.forms import field, see_other, small_form
from espace_sante.web.i18n import N_
from espace_sante.web.i18n import gettext as _
from espace_sante.web.messages import sentences, shown
from espace_sante.web.portal import message_page, portal_router
from espace_sante.web.templating import render

router = portal_router()  # a service error that escapes a page: the message page (web/portal.py)

HOME = "/compte/securite"
#: In both languages, as services word their refusals: pages show its half (web/messages.py `shown`).
FORGED = (
    "Ce formulaire a expiré ou ne vient pas de ce site : rechargez la page et recommencez. "
    "/ This form expired or does not come from this site: reload the page and try again."
)
TOO_LARGE = "Requête trop grande. / Request too large."
_MAX_JSON = 64 * 1024


def _notices() -> dict[str, str]:
    """Messages after a redirection, by the fixed key the URL carries (never free text), in the page's
    language (built per page: the language is the page's)."""
    return {
        "fin": _("Vous êtes déconnecté."),
        "partout": _("Toutes vos sessions sont fermées."),
        "session": _("La session a été fermée."),
        "cle": _("Votre clé d'accès est enregistrée."),
        "cle-retiree": _("La clé d'accès a été retirée."),
        "totp": _("L'application d'authentification est configurée."),
        "mot-de-passe": _("Votre mot de passe est changé ; vos autres sessions ont été fermées."),
        "expire": shown(signin.EXPIRED),
    }


def _notice(request: Request) -> str:
    return _notices().get(request.query_params.get("message", ""), "")


async def _form(request: Request) -> FormData | None:
    return await small_form(request, max_fields=20, max_part_size=64 * 1024)


async def _json(request: Request) -> dict[str, Any] | None:
    body = await request.body()
    if len(body) > _MAX_JSON:
        return None
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _json_error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"message": message}, status, headers={"Cache-Control": "no-store"})


def _status_of(message: str) -> int:
    return 429 if message == accounts.LOCKED else 400


# --- sign-in -----------------------------------------------------------------------------------------------


def _pre_session_page(request: Request, template: str, context: dict[str, str], status: int) -> Response:
    """A page of the sign-in steps, with its signed anti-forgery token (the browser's pre-session cookie is
    set on its first visit)."""
    value, new = pre_cookie(request)
    response = render(request, template, {"csrf": pre_token(request, value), **context}, status=status)
    if new:
        set_cookie(response, PRE_COOKIE, value)
    return response


def _signin_page(
    request: Request, *, error: str = "", status: int = 200, login: str = "", next_path: str = ""
) -> Response:
    context = {
        "error": error,
        "notice": _notice(request),
        "login": login,
        "next": next_path,
        "title": _("Se connecter"),
    }
    return _pre_session_page(request, "signin.html", context, status)


@router.get("/connexion")
async def signin_form(request: Request) -> Response:
    return _signin_page(request, next_path=safe_next(request.query_params.get("next")))


@router.post("/connexion")
async def signin_password(request: Request) -> Response:
    form = await _form(request)
    if form is None or not check_pre_token(request, field(form, "csrf", 200)):
        return _signin_page(request, error=shown(FORGED), status=403)
    login = field(form, "login", 254)
    next_path = safe_next(field(form, "next", 2000))
    try:
        flow = await signin.password_step(
            deps.runtime(request),
            login=login,
            password=field(form, "password", 4096),
            ip=client_ip(request),
            next_path=next_path,
            request_id=request_id(request),
            device_cookie=request.cookies.get(devices.COOKIE, ""),
        )
    except SignInRefused as exc:
        return _signin_page(
            request,
            error=shown(exc.message),
            status=_status_of(exc.message),
            login=login,
            next_path=next_path,
        )
    response = see_other("/connexion/code")
    set_cookie(response, FLOW_COOKIE, flow, max_age=deps.runtime(request).settings.signin_step_seconds)
    return response


def _code_page(request: Request, login: str, *, error: str = "", status: int = 200) -> Response:
    context = {"error": error, "login": login, "title": _("Code de vérification")}
    return _pre_session_page(request, "signin_code.html", context, status)


@router.get("/connexion/code")
async def signin_code_form(request: Request) -> Response:
    waiting = await signin.waiting_flow(deps.runtime(request), request.cookies.get(FLOW_COOKIE, ""))
    if waiting is None:
        return see_other("/connexion?message=expire")
    return _code_page(request, waiting.login)


def _signed_in(request: Request, response: Response, done: signin.SignedIn) -> Response:
    set_cookie(response, SESSION_COOKIE, done.secret)
    clear_cookie(response, FLOW_COOKIE)
    if done.device_cookie:
        # This browser is now a trusted device of the account: its own allowance of failures.
        set_cookie(
            response,
            devices.COOKIE,
            done.device_cookie,
            max_age=devices.max_age(deps.runtime(request).settings),
        )
    return response


async def _end_previous(request: Request) -> None:
    """A new sign-in in this browser replaces its previous session (never two live cookies' worth)."""
    previous = await current_session(request)
    if previous is not None:
        await sessions.end(deps.runtime(request), previous, request_id=request_id(request))


@router.post("/connexion/code")
async def signin_code(request: Request) -> Response:
    rt = deps.runtime(request)
    flow = request.cookies.get(FLOW_COOKIE, "")
    waiting = await signin.waiting_flow(rt, flow)
    if waiting is None:
        return see_other("/connexion?message=expire")
    form = await _form(request)
    if form is None or not check_pre_token(request, field(form, "csrf", 200)):
        return _code_page(request, waiting.login, error=shown(FORGED), status=403)
    try:
        done = await signin.second_factor_step(
            rt,
            flow_secret=flow,
            code=field(form, "code", 64),
            ip=client_ip(request),
            user_agent=user_agent(request),
            request_id=request_id(request),
            device_cookie=request.cookies.get(devices.COOKIE, ""),
        )
    except SignInRefused as exc:
        if exc.message in (signin.EXPIRED, accounts.LOCKED, signin.BLIND_WRONG):
            response = _signin_page(request, error=shown(exc.message), status=_status_of(exc.message))
            clear_cookie(response, FLOW_COOKIE)
            return response
        return _code_page(request, waiting.login, error=shown(exc.message), status=400)
    await _end_previous(request)
    return _signed_in(request, see_other(done.next_path or HOME), done)


@router.post("/connexion/cle/options")
async def signin_passkey_options(request: Request) -> Response:
    if not check_pre_token(request, None):
        return _json_error(shown(FORGED), 403)
    options = await passkeys.authentication_options(deps.runtime(request), binding=pre_binding(request))
    return JSONResponse(options, headers={"Cache-Control": "no-store"})


@router.post("/connexion/cle")
async def signin_passkey(request: Request) -> Response:
    if not check_pre_token(request, None):
        return _json_error(shown(FORGED), 403)
    data = await _json(request)
    if data is None or not isinstance(data.get("credential"), dict):
        return _json_error(shown(passkeys.FAILED))
    try:
        done = await passkeys.authenticate(
            deps.runtime(request),
            data["credential"],
            binding=pre_binding(request),
            ip=client_ip(request),
            user_agent=user_agent(request),
            request_id=request_id(request),
            device_cookie=request.cookies.get(devices.COOKIE, ""),
        )
    except SignInRefused as exc:
        return _json_error(shown(exc.message), _status_of(exc.message))
    await _end_previous(request)
    target = safe_next(str(data.get("next") or "")) or HOME
    return _signed_in(
        request, JSONResponse({"redirect": target}, headers={"Cache-Control": "no-store"}), done
    )


@router.post("/deconnexion")
async def signout(request: Request) -> Response:
    session = await current_session(request)
    if session is None:
        response = see_other("/connexion?message=fin")
        clear_cookie(response, SESSION_COOKIE)
        return response
    form = await _form(request)
    if form is None or not check_csrf(request, session, field(form, "csrf", 200)):
        return await _forged(request)
    await sessions.end(deps.runtime(request), session, request_id=request_id(request))
    response = see_other("/connexion?message=fin")
    clear_cookie(response, SESSION_COOKIE)
    clear_cookie(response, deps.CHOICE_COOKIE)  # bound to the session that ends: meaningless after it
    return response


# --- account security --------------------------------------------------------------------------------------


def _device(agent: str) -> str:
    """ "Firefox sur Android" from a user agent, in the page's language, or a neutral label (never shown
    unescaped)."""
    browsers = (
        ("Edg/", "Edge"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Chromium/", "Chromium"),
        ("Safari/", "Safari"),
    )
    systems = (
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS", "macOS"),
        ("Linux", "Linux"),
    )
    browser = next((name for token, name in browsers if token in agent), "")
    system = next((name for token, name in systems if token in agent), "")
    if browser and system:
        return _("%(browser)s sur %(system)s") % {"browser": browser, "system": system}
    return browser or system or _("Appareil non reconnu")


async def _account(request: Request, session: sessions.Session) -> Account:
    found = await accounts.get(deps.runtime(request), session.account_id)
    if found is None:
        raise SignInRequired(HOME)
    return found


def _method(code: str) -> str:
    """How a session was signed in, in the page's language."""
    return {
        "password+totp": _("mot de passe et application d'authentification"),
        "password+recovery": _("mot de passe et code de secours"),
        "passkey": _("clé d'accès"),
    }.get(code, code)


async def _security_page(
    request: Request, session: sessions.Session, *, error: str = "", status: int = 200
) -> Response:
    rt = deps.runtime(request)
    account = await _account(request, session)
    factors = await accounts.factors(rt, session.account_id)
    listed = await sessions.list_for(rt, session)
    keys = await passkeys.list_for(rt, session.account_id)
    return render(
        request,
        "security.html",
        {
            "title": _("Sécurité de votre compte"),
            "signed_in": True,
            "holder_nav": session.kind == "holder",
            "csrf": session.csrf_token,
            "error": error,
            "notice": _notice(request),
            "account": account,
            "method": _method(session.method),
            "acr": session.acr,
            "fresh": sessions.is_fresh(rt, session),
            "factors": factors,
            "sessions": [
                {
                    "id": str(s.session_id),
                    "current": s.session_id == session.session_id,
                    "device": _device(s.user_agent),
                    "ip": s.ip,
                    "started": i18n.instant_text(s.created_at),
                    "seen": i18n.instant_text(s.last_seen_at),
                    "method": _method(s.method),
                }
                for s in listed
            ],
            "passkeys": [
                {
                    "id": base64.urlsafe_b64encode(k.credential_id).decode().rstrip("="),
                    "name": k.name,
                    "added": i18n.instant_text(k.created_at),
                    "used": i18n.instant_text(k.last_used_at) if k.last_used_at else "",
                }
                for k in keys
            ],
            "signin_again": sign_in_url(HOME),
        },
        status=status,
    )


async def _session_or_redirect(request: Request) -> sessions.Session:
    session = await current_session(request)
    if session is None:
        raise SignInRequired(HOME if request.method != "GET" else deps.here(request))
    return session


@router.get("/compte/securite")
async def security(request: Request) -> Response:
    session = await _session_or_redirect(request)
    return await _security_page(request, session)


async def _checked_form(request: Request) -> tuple[sessions.Session, FormData | None]:
    """The session and the form of a cookie-authenticated POST, or (session, None) when forged."""
    session = await _session_or_redirect(request)
    form = await _form(request)
    if form is None or not check_csrf(request, session, field(form, "csrf", 200)):
        return session, None
    return session, form


async def _forged(request: Request) -> Response:
    return await message_page(request, N_("Formulaire expiré"), *sentences(FORGED), status=403, link=HOME)


@router.post("/compte/sessions/fermer-toutes")
async def sessions_end_all(request: Request) -> Response:
    session, form = await _checked_form(request)
    if form is None:
        return await _forged(request)
    await sessions.end_everywhere(deps.runtime(request), session, request_id=request_id(request))
    response = see_other("/connexion?message=partout")
    clear_cookie(response, SESSION_COOKIE)
    return response


@router.post("/compte/sessions/{session_id}/fermer")
async def session_revoke(request: Request, session_id: str) -> Response:
    session, form = await _checked_form(request)
    if form is None:
        return await _forged(request)
    try:
        target = uuid.UUID(session_id)
    except ValueError:
        return await _security_page(request, session, error=_("Session inconnue."), status=404)
    if not await sessions.revoke(deps.runtime(request), session, target, request_id=request_id(request)):
        return await _security_page(request, session, error=_("Session inconnue."), status=404)
    if target == session.session_id:
        response = see_other("/connexion?message=fin")
        clear_cookie(response, SESSION_COOKIE)
        return response
    return see_other(f"{HOME}?message=session")


def _require_fresh(request: Request, session: sessions.Session) -> None:
    if not sessions.is_fresh(deps.runtime(request), session):
        raise ReauthRequired()


@router.post("/compte/totp")
async def totp_begin(request: Request) -> Response:
    session, form = await _checked_form(request)
    if form is None:
        return await _forged(request)
    try:
        _require_fresh(request, session)
        account = await _account(request, session)
        secret, uri = await accounts.begin_totp(deps.runtime(request), account)
    except AccountError as exc:
        return await _security_page(request, session, error=shown(exc.message), status=403)
    return render(
        request,
        "totp_setup.html",
        {
            "title": _("Application d'authentification"),
            "signed_in": True,
            "csrf": session.csrf_token,
            "secret": grouped(secret),
            "uri": uri,
        },
    )


@router.post("/compte/totp/confirmer")
async def totp_confirm(request: Request) -> Response:
    session, form = await _checked_form(request)
    if form is None:
        return await _forged(request)
    try:
        _require_fresh(request, session)
        account = await _account(request, session)
        codes = await accounts.confirm_totp(
            deps.runtime(request),
            account,
            field(form, "code", 64),
            ip=client_ip(request),
            request_id=request_id(request),
        )
    except AccountError as exc:
        return await _security_page(
            request, session, error=shown(exc.message), status=_status_of(exc.message)
        )
    if codes:
        return _recovery_codes_page(request, session, codes, _notices()["totp"])
    return see_other(f"{HOME}?message=totp")


@router.post("/compte/codes-secours")
async def recovery_regenerate(request: Request) -> Response:
    session, form = await _checked_form(request)
    if form is None:
        return await _forged(request)
    try:
        _require_fresh(request, session)
        account = await _account(request, session)
        codes = await accounts.regenerate_recovery_codes(
            deps.runtime(request), account, request_id=request_id(request)
        )
    except AccountError as exc:
        return await _security_page(request, session, error=shown(exc.message), status=403)
    return _recovery_codes_page(request, session, codes, "")


def _recovery_codes_page(
    request: Request, session: sessions.Session, codes: list[str], notice: str
) -> Response:
    """The recovery codes, shown once (after the TOTP is set up, or regenerated)."""
    return render(
        request,
        "recovery_codes.html",
        {
            "title": _("Codes de secours"),
            "signed_in": True,
            "csrf": session.csrf_token,
            "codes": codes,
            "notice": notice,
        },
    )


@router.post("/compte/mot-de-passe")
async def password_change(request: Request) -> Response:
    session, form = await _checked_form(request)
    if form is None:
        return await _forged(request)
    new = field(form, "new", 4096)
    if new != field(form, "confirm", 4096):
        return await _security_page(
            request,
            session,
            error=_("Les deux saisies du nouveau mot de passe diffèrent."),
            status=400,
        )
    try:
        account = await _account(request, session)
        factors = await accounts.factors(deps.runtime(request), session.account_id)
        if not factors.password:
            _require_fresh(request, session)
        await accounts.change_password(
            deps.runtime(request),
            account,
            current=field(form, "current", 4096),
            new=new,
            keep_session=session.session_id,
            ip=client_ip(request),
            request_id=request_id(request),
        )
    except AccountError as exc:
        return await _security_page(
            request, session, error=shown(exc.message), status=_status_of(exc.message)
        )
    return see_other(f"{HOME}?message=mot-de-passe")


@router.post("/compte/cle/options")
async def passkey_register_options(request: Request) -> Response:
    session = await current_session(request)
    if session is None:
        return _json_error(_("Connectez-vous d'abord."), 401)
    if not check_csrf(request, session, None):
        return _json_error(shown(FORGED), 403)
    if not sessions.is_fresh(deps.runtime(request), session):
        return _json_error(shown(ReauthRequired().message), 403)
    try:
        options = await passkeys.registration_options(deps.runtime(request), session)
    except AccountError as exc:
        return _json_error(shown(exc.message))
    return JSONResponse(options, headers={"Cache-Control": "no-store"})


@router.post("/compte/cle")
async def passkey_register(request: Request) -> Response:
    session = await current_session(request)
    if session is None:
        return _json_error(_("Connectez-vous d'abord."), 401)
    if not check_csrf(request, session, None):
        return _json_error(shown(FORGED), 403)
    if not sessions.is_fresh(deps.runtime(request), session):
        return _json_error(shown(ReauthRequired().message), 403)
    data = await _json(request)
    if data is None or not isinstance(data.get("credential"), dict):
        return _json_error(shown(passkeys.FAILED))
    try:
        await passkeys.register(
            deps.runtime(request),
            session,
            data["credential"],
            name=str(data.get("name") or ""),
            request_id=request_id(request),
        )
    except AccountError as exc:
        return _json_error(shown(exc.message))
    return JSONResponse({"redirect": f"{HOME}?message=cle"}, headers={"Cache-Control": "no-store"})


@router.post("/compte/cle/{credential}/retirer")
async def passkey_remove(request: Request, credential: str) -> Response:
    session, form = await _checked_form(request)
    if form is None:
        return await _forged(request)
    try:
        _require_fresh(request, session)
        raw = base64.urlsafe_b64decode(credential + "=" * (-len(credential) % 4))
    except AccountError as exc:
        return await _security_page(request, session, error=shown(exc.message), status=403)
    except (binascii.Error, ValueError):
        raw = b""
    if not raw or not await passkeys.remove(
        deps.runtime(request), session, raw, request_id=request_id(request)
    ):
        return await _security_page(request, session, error=_("Clé d'accès inconnue."), status=404)
    return see_other(f"{HOME}?message=cle-retiree")


# --- confirming one's identity before what cannot be undone (step-up) --------------------------------------

STEP_UP = "/compte/confirmer-identite"


def step_up_url(suite: str) -> str:
    """The step-up page, coming back to `suite` (a local path, the form with what was typed) afterwards."""
    return f"{STEP_UP}?suite={quote(safe_next(suite) or HOME, safe='')}"


async def _step_up_page(
    request: Request, session: sessions.Session, suite: str, *, error: str = "", status: int = 200
) -> Response:
    factors = await accounts.factors(deps.runtime(request), session.account_id)
    return render(
        request,
        "stepup.html",
        {
            "title": _("Confirmer votre identité"),
            "signed_in": True,
            "holder_nav": session.kind == "holder",
            "csrf": session.csrf_token,
            "action": STEP_UP,
            "suite": suite,
            "login": session.login,
            "password": factors.password and factors.totp,
            "stepup_error": error,
            "signin_again": sign_in_url(suite),
            "back": urlsplit(suite).path or HOME,
        },
        status=status,
    )


@router.get(STEP_UP)
async def step_up_form(request: Request) -> Response:
    session = await _session_or_redirect(request)
    return await _step_up_page(request, session, safe_next(request.query_params.get("suite")) or HOME)


@router.post(STEP_UP)
async def step_up(request: Request) -> Response:
    session, form = await _checked_form(request)
    if form is None:
        return await _forged(request)
    suite = safe_next(field(form, "suite", 2000)) or HOME
    try:
        await stepup.confirm(
            deps.runtime(request),
            session,
            password=field(form, "password", 4096),
            code=field(form, "code", 64),
            ip=client_ip(request),
            request_id=request_id(request),
            device_cookie=request.cookies.get(devices.COOKIE, ""),
        )
    except StepUpRefused as exc:
        return await _step_up_page(
            request, session, suite, error=shown(exc.message), status=_status_of(exc.message)
        )
    return see_other(suite)


# --- wiring ------------------------------------------------------------------------------------------------


def install(app: FastAPI) -> None:
    """Add the pages, the static files (/static) and the answer to SignInRequired."""
    app.include_router(router)
    app.mount("/static", StaticFiles(packages=[("espace_sante.web", "static")]), name="static")

    @app.exception_handler(SignInRequired)
    async def sign_in_required(request: Request, exc: SignInRequired) -> Response:
        if request.method == "GET":
            return see_other(sign_in_url(exc.next_path))
        return await message_page(
            request,
            N_("Connexion requise"),
            N_("Connectez-vous d'abord."),
            status=401,
            link=sign_in_url(exc.next_path),
        )
