"""The activation page, where every notice sends people (`<base_url>/activation`, PRODUCT section 2, issue 6):
with the code of their notice and their birth date (their child's, for a child's space) they activate their
space, at any time, or oppose its creation before it opens. In French or English (web/i18n.py), phone first
(docs/activation.md).

Routes:
- `GET /activation`: the two choices, explained.
- `GET/POST /activation/activer`: code and birth date; the code is spent and the space activated
  (spaces/activation.activate_with_code); then
- `GET/POST /activation/compte`: the person makes the sign-in means the access issue requires (password and an
  authenticator app, the same two factors as the sign-in pages; a passkey can be added after the first
  sign-in), and gets their recovery codes. A child's space is managed by the representatives with their own
  accounts: no account is made from a child's code.
- `GET/POST /activation/opposition`: code and birth date, checked without spending anything
  (spaces/activation.check); then `GET/POST /activation/opposition/confirmer`: the consequences and « Je
  confirme mon opposition », which spends the code and records the opposition (oppose_with_code); then
  `GET /activation/opposition/enregistree` and `GET /activation/opposition/attestation`: the proof (PDF).

Between steps, what the next step needs travels in one `__Host-es_act` cookie: AES-GCM under a pepper-derived
key (so the browser can neither read nor change it: it holds the code and birth date before an opposition is
confirmed, or a TOTP secret), bound to this browser's pre-session cookie, with its purpose and a short expiry.
Nothing reaches a URL; the code never comes back in a page but in the field it was typed in. Only a browser
that redeemed a code holds an account-making cookie, and only the browser that opposed can fetch the proof,
for 30 minutes (operators print it again with `espace-sante opposition proof`).

Every POST carries the signed double-submit token of the sign-in forms (web/deps.py). Errors come back on the
form with a summary linking to each field; what was typed is kept (the code too: comparing it with the letter
is easier than typing it again, the answer is `no-store`, and the field has `autocomplete=off`), but a locked
code, which no longer helps.
"""

from __future__ import annotations

import base64
import binascii
import time
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

import orjson
from babel import dates as babel_dates
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import Request
from starlette.datastructures import FormData
from starlette.responses import Response

from espace_sante import clock
from espace_sante.access.actors import ACTIVATION
from espace_sante.audit.wording import MONTHS_FR
from espace_sante.context import Context
from espace_sante.crypto import DecryptionFailed, open_, seal
from espace_sante.errors import NotFound
from espace_sante.people import accounts, passwords, totp
from espace_sante.people.accounts import AccountError, AccountTaken
from espace_sante.spaces import activation, opposition
from espace_sante.spaces.activation import ActivationRefused, Holder
from espace_sante.web import deps, i18n
from espace_sante.web.account.signin import FORGED
from espace_sante.web.deps import (
    PRE_COOKIE,
    check_pre_token,
    clear_cookie,
    client_ip,
    pre_binding,
    pre_cookie,
    pre_token,
    request_id,
    set_cookie,
)
from espace_sante.web.forms import Problem, field, see_other, small_form
from espace_sante.web.i18n import gettext as _
from espace_sante.web.messages import shown
from espace_sante.web.portal import portal_router
from espace_sante.web.templating import render

HOME = "/activation"
ACTIVATE = f"{HOME}/activer"
ACCOUNT = f"{HOME}/compte"
OPPOSE = f"{HOME}/opposition"
CONFIRM = f"{OPPOSE}/confirmer"
OPPOSED = f"{OPPOSE}/enregistree"
PROOF = f"{OPPOSE}/attestation"
PHONE = opposition.PHONE

FLOW_COOKIE = "__Host-es_act"

#: A service error these pages do not answer on the form becomes the portal's message page (web/portal.py).
router = portal_router(link=HOME)
#: How long each step waits: reading the consequences; installing an authenticator app; fetching the proof.
CONFIRM_SECONDS = 15 * 60
ACCOUNT_SECONDS = 30 * 60
PROOF_SECONDS = 30 * 60


def _notices() -> dict[str, str]:
    """Messages after a redirection, by the fixed key the URL carries (never free text), in the page's
    language."""
    return {"expire": _("Cette étape a expiré ou a déjà été faite : recommencez en saisissant votre code.")}


async def _form(request: Request) -> FormData | None:
    return await small_form(request, max_fields=12, max_part_size=16 * 1024)


def _context(request: Request) -> Context:
    """An anonymous visitor: the `activation` actor, which reaches only what these pages need
    (access/named.py); the activation service traces them as `anonymous`/`activation`."""
    rid = request_id(request)
    if rid:
        return Context(deps.runtime(request), ACTIVATION, request_id=rid)
    return Context(deps.runtime(request), ACTIVATION)


def _page(
    request: Request,
    template: str,
    values: dict[str, Any],
    *,
    status: int = 200,
    problems: Sequence[Problem] = (),
) -> Response:
    """A page of the flow with its anti-forgery token (the pre-session cookie is set on a first visit) and its
    error summary."""
    value, new = pre_cookie(request)
    context = {
        "csrf": pre_token(request, value),
        "problems": list(problems),
        "field_errors": {p.field: p for p in problems},
        "phone": PHONE.replace(" ", "\u00a0"),  # never cut across two lines
        **values,
    }
    response = render(request, template, context, status=status)
    if new:
        set_cookie(response, PRE_COOKIE, value)
    return response


def _expired(request: Request, path: str) -> Response:
    response = see_other(f"{path}?message=expire")
    clear_cookie(response, FLOW_COOKIE)
    return response


def _notice(request: Request) -> str:
    return _notices().get(request.query_params.get("message", ""), "")


# --- the state carried between steps ----------------------------------------------------------------------


def _aead(request: Request) -> AESGCM:
    return AESGCM(passwords.peppers(deps.runtime(request).settings).subkey("activation-flow"))


def _aad(request: Request, purpose: str) -> bytes:
    """Bound to its purpose and to this browser's pre-session cookie: a copied cookie does not work alone."""
    return b"activation-flow " + purpose.encode() + b" " + pre_binding(request)


def _set_flow(request: Request, response: Response, purpose: str, data: dict[str, Any], seconds: int) -> None:
    payload = orjson.dumps({**data, "x": int(time.time()) + seconds})
    blob = seal(_aead(request), payload, _aad(request, purpose))
    set_cookie(response, FLOW_COOKIE, base64.urlsafe_b64encode(blob).decode().rstrip("="), max_age=seconds)


def _flow(request: Request, purpose: str) -> dict[str, Any] | None:
    """The state this browser carries for `purpose`, or None (absent, altered, another purpose, expired)."""
    raw = request.cookies.get(FLOW_COOKIE, "")
    if not raw or len(raw) > 4096 or not request.cookies.get(PRE_COOKIE):
        return None
    try:
        blob = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        data = orjson.loads(open_(_aead(request), blob, _aad(request, purpose)))
    except (binascii.Error, ValueError, DecryptionFailed, orjson.JSONDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("x"), int) or data["x"] < time.time():
        return None
    return data


# --- reading the form -------------------------------------------------------------------------------------


def _folded(text: str) -> str:
    return unicodedata.normalize("NFKD", text.lower()).encode("ascii", "ignore").decode()


#: Month names in both languages of the page: whichever the person types.
_MONTH_NAMES: list[tuple[str, int]] = [(_folded(name), i + 1) for i, name in enumerate(MONTHS_FR)] + [
    (_folded(str(name)), int(number))
    for number, name in babel_dates.get_month_names("wide", locale="en").items()
]


def _month(text: str) -> int | None:
    """3, 03, « mars », « Mars », « fevrier », « févr. », "March", "sept": what people type for a month."""
    if text.isdecimal():  # not isdigit(): « ² » is a digit that int() refuses
        return int(text)
    folded = _folded(text).rstrip(".")
    if len(folded) >= 3:
        found = {n for name, n in _MONTH_NAMES if name.startswith(folded)}
        if len(found) == 1:
            return found.pop()
    return None


def birth_date_of(day: str, month: str, year: str) -> tuple[date | None, Problem | None]:
    """The date typed in three fields (GOV.UK's memorable-date pattern, which works with every screen reader
    and phone keyboard, unlike a date picker scrolled back 75 years), or the problem with it."""
    day, month, year = day.strip(), month.strip(), year.strip()
    if not (day or month or year):
        return None, Problem("jour", _("Saisissez la date de naissance."))
    for value, part, missing in (
        (
            day,
            "jour",
            _("La date de naissance doit comprendre un jour, un mois et une année : saisissez le jour."),
        ),
        (
            month,
            "mois",
            _("La date de naissance doit comprendre un jour, un mois et une année : saisissez le mois."),
        ),
        (
            year,
            "annee",
            _("La date de naissance doit comprendre un jour, un mois et une année : saisissez l'année."),
        ),
    ):
        if not value:
            return None, Problem(part, missing)
    if not (year.isdecimal() and len(year) == 4):
        return None, Problem("annee", _("L'année doit compter 4 chiffres, par exemple 1950."))
    number = _month(month)
    try:
        if not day.isdecimal() or number is None:
            raise ValueError
        born = date(int(year), number, int(day))
    except ValueError:
        return None, Problem(
            "jour", _("La date de naissance doit être une vraie date, par exemple 27 3 1950.")
        )
    if born > clock.today() or born.year < 1880:
        return None, Problem(
            "jour", _("La date de naissance doit être une date passée, par exemple 27 3 1950.")
        )
    return born, None


def code_problem(code: str) -> Problem | None:
    """What can be said of a code without looking it up (nothing about any person's code)."""
    typed = activation.normalise(code)
    if not typed:
        return Problem(
            "code", _("Saisissez votre code d'activation : il figure sur votre courrier ou votre courriel.")
        )
    if not activation.well_formed(typed):
        return Problem(
            "code",
            _(
                "Le code d'activation compte 14 lettres et chiffres (sans 0, O, 1, I ni L) : "
                "vérifiez-le sur votre courrier ou votre courriel."
            ),
        )
    return None


@dataclass(frozen=True)
class _Typed:
    code: str
    day: str
    month: str
    year: str

    def values(self) -> dict[str, str]:
        return {"code": self.code, "jour": self.day, "mois": self.month, "annee": self.year}


def _typed(form: FormData) -> _Typed:
    return _Typed(
        field(form, "code", 60), field(form, "jour", 10), field(form, "mois", 12), field(form, "annee", 6)
    )


def _problems(typed: _Typed) -> tuple[date | None, list[Problem]]:
    problems = [p for p in (code_problem(typed.code),) if p is not None]
    born, problem = birth_date_of(typed.day, typed.month, typed.year)
    if problem is not None:
        problems.append(problem)
    return born, problems


def _status_of(exc: ActivationRefused) -> int:
    if exc.message == activation.THROTTLED:
        return 429
    if exc.locked:
        return 403
    if exc.message in (activation.ALREADY_ACTIVE, activation.NOT_ACTIVABLE, activation.TOO_LATE):
        return 409
    return 400


# --- the choice ---------------------------------------------------------------------------------------------


@router.get(HOME)
async def choice(request: Request) -> Response:
    return _page(
        request, "activation.html", {"title": _("Activer mon espace santé ou m'opposer à sa création")}
    )


# --- code and birth date --------------------------------------------------------------------------------------


def _forms() -> dict[str, dict[str, str]]:
    """The two forms of a code and a birth date: to activate, to oppose (in the page's language)."""
    return {
        "activer": {
            "title": _("Activer mon espace santé"),
            "action": ACTIVATE,
            "lead": _(
                "Saisissez le code d'activation reçu par courrier ou par courriel, puis la date de naissance."
            ),
        },
        "opposer": {
            "title": _("M'opposer à la création de mon espace santé"),
            "action": OPPOSE,
            "lead": _(
                "Saisissez le code d'activation reçu par courrier ou par courriel, puis la date de naissance. "
                "Rien n'est enregistré à cette étape : vous confirmerez à l'étape suivante."
            ),
        },
    }


def _code_form(
    request: Request,
    which: str,
    typed: _Typed | None = None,
    *,
    problems: Sequence[Problem] = (),
    status: int = 200,
) -> Response:
    values = {
        **_forms()[which],
        **(typed or _Typed("", "", "", "")).values(),
        "notice": "" if problems else _notice(request),
    }
    return _page(request, "activation_code.html", values, status=status, problems=problems)


async def _read_code_form(request: Request, which: str) -> tuple[_Typed, date] | Response:
    """The typed code and birth date, or the form again with its problems (or the forged-form answer)."""
    form = await _form(request)
    if form is None or not check_pre_token(request, field(form, "csrf")):
        return _code_form(request, which, problems=[Problem("code", shown(FORGED))], status=403)
    typed = _typed(form)
    born, problems = _problems(typed)
    if problems or born is None:
        return _code_form(request, which, typed, problems=problems, status=400)
    return typed, born


def _refused(request: Request, which: str, typed: _Typed, exc: ActivationRefused) -> Response:
    kept = _Typed("", typed.day, typed.month, typed.year) if exc.locked else typed
    return _code_form(
        request, which, kept, problems=[Problem("code", shown(exc.message))], status=_status_of(exc)
    )


@router.get(ACTIVATE)
async def activate_form(request: Request) -> Response:
    return _code_form(request, "activer")


@router.post(ACTIVATE)
async def activate(request: Request) -> Response:
    read = await _read_code_form(request, "activer")
    if isinstance(read, Response):
        return read
    typed, born = read
    try:
        done = await activation.activate_with_code(_context(request), typed.code, born, ip=client_ip(request))
    except ActivationRefused as exc:
        return _refused(request, "activer", typed, exc)
    holder = done.holder
    if holder.minor or holder.has_account:
        return _done(request, holder, codes=[])
    response = see_other(ACCOUNT)
    _set_flow(
        request,
        response,
        "compte",
        {"s": holder.space_id.hex, "i": holder.ins, "n": holder.name, "t": totp.new_secret()},
        ACCOUNT_SECONDS,
    )
    return response


# --- the sign-in means -------------------------------------------------------------------------------------


def _done(request: Request, holder: Holder, *, codes: list[str]) -> Response:
    """The end of an activation: recovery codes of a new account; or what to do with an existing account or
    a child's space."""
    if codes:
        title = _("Votre compte est créé")
    elif holder.minor:
        title = _("L'espace santé de votre enfant est activé")
    else:
        title = _("Votre espace santé est activé")
    values = {
        "title": title,
        "codes": codes,
        "minor": holder.minor,
        "has_account": holder.has_account,
        "name": holder.name,
    }
    response = _page(request, "activation_done.html", values)
    clear_cookie(response, FLOW_COOKIE)
    return response


def _account_page(
    request: Request,
    flow: dict[str, Any],
    *,
    login: str = "",
    problems: Sequence[Problem] = (),
    status: int = 200,
) -> Response:
    secret = str(flow["t"])
    return _page(
        request,
        "activation_account.html",
        {
            "title": _("Créer vos moyens de connexion"),
            "name": flow.get("n", ""),
            "login": login,
            "secret": totp.grouped(secret),
            # The app shows this label next to the codes; the login is not chosen yet, the name is known.
            "uri": totp.provisioning_uri(secret, str(flow.get("n") or _("Mon compte"))),
        },
        status=status,
        problems=problems,
    )


@router.get(ACCOUNT)
async def account_form(request: Request) -> Response:
    flow = _flow(request, "compte")
    if flow is None:
        return _expired(request, ACTIVATE)
    return _account_page(request, flow)


def _account_problems(form: FormData, secret: str) -> tuple[str, list[Problem]]:
    login = field(form, "login", 254).strip()
    problems: list[Problem] = []
    if not login:
        problems.append(
            Problem("login", _("Choisissez un identifiant : votre adresse électronique, de préférence."))
        )
    else:
        try:
            accounts.check_login(login)
        except AccountError as exc:
            problems.append(Problem("login", shown(exc.message)))
    password = field(form, "password", 4096)
    if not password:
        problems.append(Problem("password", _("Choisissez un mot de passe.")))
    elif password != field(form, "confirm", 4096):
        problems.append(
            Problem("confirm", _("Les deux saisies du mot de passe diffèrent : saisissez-le à nouveau."))
        )
    code = field(form, "code", 20)
    if totp.matching_step(secret, code) is None:
        problems.append(
            Problem(
                "code",
                _("Code incorrect : saisissez le code à 6 chiffres que l'application affiche en ce moment."),
            )
        )
    return login, problems


@router.post(ACCOUNT)
async def account_create(request: Request) -> Response:
    flow = _flow(request, "compte")
    if flow is None:
        return _expired(request, ACTIVATE)
    form = await _form(request)
    if form is None or not check_pre_token(request, field(form, "csrf")):
        return _account_page(request, flow, problems=[Problem("login", shown(FORGED))], status=403)
    secret = str(flow["t"])
    login, problems = _account_problems(form, secret)
    if problems:
        return _account_page(request, flow, login=login, problems=problems, status=400)
    rt = deps.runtime(request)
    holder = Holder(
        uuid.UUID(str(flow["s"])), str(flow["i"]), str(flow.get("n", "")), None, "active", False, False
    )
    try:
        created = await accounts.create(
            rt,
            kind="holder",
            actor_id=holder.ins,
            login=login,
            password=field(form, "password", 4096),
            # Security notices go to the login when it is an e-mail address (Account.notice_address).
            totp_secret=secret,
            new_totp=True,
            # The code typed here proved the secret; spent, it cannot also sign in (replay, RFC 6238 §5.2).
            totp_step=totp.matching_step(secret, field(form, "code", 20)) or 0,
            request_id=request_id(request),
        )
    except AccountTaken as exc:
        existing = await accounts.find_by_actor(rt, "holder", holder.ins)
        if existing is not None:  # this person made their account meanwhile (another tab)
            return _done(request, replace(holder, has_account=True), codes=[])
        return _account_page(
            request, flow, login=login, problems=[Problem("login", shown(exc.message))], status=409
        )
    except AccountError as exc:
        return _account_page(
            request, flow, login=login, problems=[Problem("password", shown(exc.message))], status=400
        )
    if not created.created:  # the login was already this person's: nothing new to show
        return _done(request, replace(holder, has_account=True), codes=[])
    return _done(request, holder, codes=list(created.recovery_codes))


# --- opposition -----------------------------------------------------------------------------------------------


@router.get(OPPOSE)
async def oppose_form(request: Request) -> Response:
    return _code_form(request, "opposer")


@router.post(OPPOSE)
async def oppose_check(request: Request) -> Response:
    read = await _read_code_form(request, "opposer")
    if isinstance(read, Response):
        return read
    typed, born = read
    try:
        holder = await activation.check(_context(request), typed.code, born, ip=client_ip(request))
    except ActivationRefused as exc:
        return _refused(request, "opposer", typed, exc)
    if holder.state not in activation.OPPOSABLE:
        return _refused(request, "opposer", typed, ActivationRefused(activation.TOO_LATE))
    # Nothing is spent yet: the code and birth date wait, sealed, for the confirmation (they are checked
    # again then, and only that redemption spends the code).
    response = see_other(CONFIRM)
    data = {"c": activation.normalise(typed.code), "b": born.isoformat(), "n": holder.name, "m": holder.minor}
    _set_flow(request, response, "opposer", data, CONFIRM_SECONDS)
    return response


def _confirm_page(
    request: Request, flow: dict[str, Any], *, problems: Sequence[Problem] = (), status: int = 200
) -> Response:
    return _page(
        request,
        "activation_confirm.html",
        {"title": _("Confirmer votre opposition"), "name": flow.get("n", ""), "minor": bool(flow.get("m"))},
        status=status,
        problems=problems,
    )


@router.get(CONFIRM)
async def oppose_confirm_form(request: Request) -> Response:
    flow = _flow(request, "opposer")
    if flow is None:
        return _expired(request, OPPOSE)
    return _confirm_page(request, flow)


@router.post(CONFIRM)
async def oppose_confirm(request: Request) -> Response:
    flow = _flow(request, "opposer")
    if flow is None:
        return _expired(request, OPPOSE)
    form = await _form(request)
    if form is None or not check_pre_token(request, field(form, "csrf")):
        return _confirm_page(request, flow, problems=[Problem("confirmer", shown(FORGED))], status=403)
    try:
        holder = await activation.oppose_with_code(
            _context(request), str(flow["c"]), date.fromisoformat(str(flow["b"])), ip=client_ip(request)
        )
    except ActivationRefused as exc:
        response = _code_form(
            request, "opposer", problems=[Problem("code", shown(exc.message))], status=_status_of(exc)
        )
        clear_cookie(response, FLOW_COOKIE)
        return response
    response = see_other(OPPOSED)
    _set_flow(request, response, "preuve", {"s": holder.space_id.hex}, PROOF_SECONDS)
    return response


async def _proof_of(request: Request) -> opposition.Opposition | None:
    flow = _flow(request, "preuve")
    if flow is None:
        return None
    try:
        return await opposition.recorded(deps.runtime(request), uuid.UUID(str(flow["s"])))
    except (NotFound, ValueError):
        return None


@router.get(OPPOSED)
async def opposed(request: Request) -> Response:
    found = await _proof_of(request)
    if found is None:
        return _expired(request, OPPOSE)
    return _page(
        request,
        "activation_opposed.html",
        {
            "title": _("Votre opposition est enregistrée"),
            "name": found.name,
            "at": i18n.instant_text(found.at),
            "reference": found.reference,
            "minor": found.minor_then,
            "proof": PROOF,
            "minutes": PROOF_SECONDS // 60,
        },
    )


@router.get(PROOF)
async def proof(request: Request) -> Response:
    found = await _proof_of(request)
    if found is None:
        return _page(
            request,
            "message.html",
            {
                "title": _("Attestation introuvable"),
                "error": _(
                    "Cette attestation n'est plus disponible ici (le lien marche %(minutes)s minutes, sur "
                    "l'appareil où l'opposition a été faite). Pour la recevoir, appelez le %(phone)s."
                )
                % {"minutes": PROOF_SECONDS // 60, "phone": PHONE},
                "link": HOME,
            },
            status=404,
        )
    content = opposition.pdf(found)
    return Response(
        content,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{opposition.filename(found)}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
        },
    )
