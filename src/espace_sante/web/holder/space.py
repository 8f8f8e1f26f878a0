"""The holder's page about her space itself, « État de mon espace santé » (PRODUCT §2 and §10: French,
accessible, phone first; docs/lifecycle.md "The holder's page").

Routes:
- `GET /mon-espace/mon-espace-sante`: the state in plain words (since when; when closed, until when it is
  kept, and the day of an asked destruction), what each choice means, and the choices the transition table
  allows in this state.
- `GET/POST /mon-espace/mon-espace-sante/fermer`: the confirmation step, then `lifecycle.close`.
- `GET/POST /mon-espace/mon-espace-sante/detruire`: a stronger confirmation (a box to tick, the day shown),
  then `lifecycle.erase`.
  Closing and destroying need a recent proof of identity (people/stepup.py): without one, the POST sends her
  to confirm it (web/account/signin.py `STEP_UP`) and back to the confirmation page, the box still ticked.
- `POST /mon-espace/mon-espace-sante/rouvrir`: `lifecycle.reopen` (everything comes back; an asked
  destruction is cancelled).
- `POST /mon-espace/mon-espace-sante/contester`: `lifecycle.resume` (the holder contests a suspension).
- `POST /mon-espace/mon-espace-sante/demander`: `notices/issue.ask_again` (an opposed person asks for her space
  after all: a new notice and code at once).
- `POST /mon-espace/pour` (web/holder/whose.py): switch to the space of a child she represents, or back to hers.

A holder signs in whatever the state of her space (sessions do not depend on it: people/sessions.py), so
that she can reopen it or contest its suspension here. A parent switches here to the space of a child she
represents; the page then shows and acts on that space. The rules stay in spaces/lifecycle.py (which
state allows what, who may ask, a space closed after a death is not reopened); this page reads the table to
offer only what it allows, and shows the service's refusal in French with its English line, never a 500.
Every POST carries the session's anti-forgery token (web/deps.py); results come back as a message on the
page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from espace_sante import clock
from espace_sante.audit.wording import MONTHS_FR
from espace_sante.errors import FhirError
from espace_sante.people.sessions import Session
from espace_sante.people.stepup import StepUpRequired
from espace_sante.spaces import lifecycle
from espace_sante.spaces.notices import issue
from espace_sante.web.account.signin import FORGED, step_up_url
from espace_sante.web.deps import check_csrf
from espace_sante.web.forms import field, see_other, small_form
from espace_sante.web.holder.whose import CHOOSE, Whose, holder_whose, install_whose
from espace_sante.web.messages import sentences
from espace_sante.web.portal import portal_router
from espace_sante.web.templating import render

HOME = "/mon-espace/mon-espace-sante"
#: Where "Continuer" leads from a message: the account's page works whatever became of the space.
ACCOUNT = "/compte/securite"

router = portal_router(
    not_found=(
        "Espace santé introuvable",
        "Aucun espace santé n'est disponible pour votre compte.",
        "No health space is available for your account.",
    ),
    link=ACCOUNT,
)
CLOSE = f"{HOME}/fermer"
ERASE = f"{HOME}/detruire"
REOPEN = f"{HOME}/rouvrir"
CONTEST = f"{HOME}/contester"
ASK = f"{HOME}/demander"
DOCUMENTS = "/mon-espace/documents"

#: The state in the holder's words ("Votre espace santé est …").
PLAIN: dict[str, str] = {
    "registered": "en préparation",
    "notified": "en attente d'ouverture",
    "open": "ouvert",
    "active": "ouvert",
    "suspended": "suspendu",
    "closed": "fermé",
    "opposed": "refusé (opposition enregistrée)",
}

#: The same, for the English line under a refusal.
PLAIN_EN: dict[str, str] = {
    "registered": "being prepared",
    "notified": "not open yet",
    "open": "open",
    "active": "open",
    "suspended": "suspended",
    "closed": "closed",
    "opposed": "refused (objection recorded)",
}

#: Messages after a redirection, by a fixed key (the URL never carries free text).
NOTICES: dict[str, str] = {
    "ferme": "{sujet} est fermé. Vous pouvez le rouvrir depuis cette page.",
    "destruction": "Votre demande de destruction est enregistrée : {espace} est fermé.",
    "rouvert": "{sujet} est rouvert : vous retrouvez tout son contenu.",
    "annule": "{sujet} est rouvert et la destruction est annulée : vous retrouvez tout son contenu.",
    "conteste": "Votre contestation est enregistrée : la suspension est levée.",
    "demande": (
        "Votre demande est enregistrée : un avis avec un code d'activation est envoyé (par courriel, ou par "
        "courrier sans adresse électronique)."
    ),
    "enfant": "Vous gérez maintenant l'espace santé de votre enfant : le haut de chaque page le rappelle.",
    "moi": "Vous êtes de retour sur votre propre espace santé.",
    "introuvable": (
        "Vous ne gérez plus cet espace santé (votre enfant a peut-être eu 18 ans) : voici votre propre espace "
        "santé."
    ),
    "refuse": "Le formulaire a expiré : rien n'a changé. Réessayez depuis cette page.",
}

#: What the documents page says instead of an empty list when the space is out of the holder's reach
#: (`{sujet}`: whose space, `{ses}`: whose documents).
UNREACHABLE: dict[str, str] = {
    "closed": (
        "{sujet} est fermé : {ses} documents sont conservés, mais personne ne peut les consulter "
        "tant qu'il est fermé, vous non plus."
    ),
    "suspended": (
        "{sujet} est suspendu : {ses} documents sont conservés, mais personne ne peut les consulter "
        "pendant la suspension, vous non plus."
    ),
    "opposed": (
        "{sujet} n'a pas été créé : une opposition a été enregistrée. Il ne contient aucun document."
    ),
    # Registered or notified: within reach, but empty until it opens (nobody deposits before; an activation
    # opens it at once).
    "waiting": (
        "{sujet} n'est pas encore ouvert{quand} : il ne contient pas encore de documents. Vous pourrez en "
        "ajouter dès son ouverture, ou dès maintenant en l'activant avec le code d'activation reçu."
    ),
}
UNDERSTOOD = "compris"
#: States before the opening: the space exists, nothing is in it yet.
WAITING = frozenset({"registered", "notified"})


@dataclass(frozen=True)
class Refusal:
    """A refusal as the page shows it: a French sentence and the English line under it."""

    fr: str
    en: str


# --- small helpers ---------------------------------------------------------------------------------------


def day(value: date) -> str:
    """ "1er mars 2027"."""
    return f"{'1er' if value.day == 1 else value.day} {MONTHS_FR[value.month - 1]} {value.year}"


def _local_day(instant: Any) -> date:
    if isinstance(instant, datetime):
        return clock.day_of(instant)
    return instant if isinstance(instant, date) else clock.today()


def _delay(days: int) -> str:
    """ "3 mois" for 90 days, "6 semaines" for 42; "45 jours" otherwise."""
    if days % 30 == 0:
        return f"{days // 30} mois"
    return f"{days // 7} semaines" if days % 7 == 0 else f"{days} jours"


async def _whose(request: Request) -> tuple[Session, Whose]:
    return await holder_whose(request, HOME, children=True)


async def status_of(w: Whose) -> lifecycle.Status:
    """The state of the space the page is about (spaces/lifecycle.py decides who may read it)."""
    return await lifecycle.status(w.ctx, w.space_id)


def its(w: Whose) -> str:
    """ "mon espace santé", or "l'espace santé de Léa Martin" when she acts for a child."""
    return f"l'espace santé de {w.child}" if w.child else "mon espace santé"


def _your(w: Whose) -> str:
    return f"l'espace santé de {w.child}" if w.child else "votre espace santé"


def _your_cap(w: Whose) -> str:
    """`_your` to start a sentence: "Votre espace santé", "L'espace santé de Léa Martin"."""
    your = _your(w)
    return your[0].upper() + your[1:]


def holder_page(w: Whose, session: Session) -> dict[str, Any]:
    """What every holder page's frame needs: whose space it is (the line at the top, the way back) and how
    to name it, in her voice (`its`: "mon espace santé") and in ours (`your`: "votre espace santé")."""
    your = _your(w)
    return {
        "signed_in": True,
        "holder_nav": True,
        "csrf": session.csrf_token,
        "acting_for": w.child,
        "choose_url": CHOOSE,
        "its": its(w),
        "your": your,
        "your_cap": _your_cap(w),
    }


# --- the page --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """What the page says about the space, and which choices it offers."""

    state: str
    headline: str
    details: list[str]
    destroy_on: str
    close: bool
    erase: bool
    reopen: bool
    contest: bool
    ask: bool


def view(status: lifecycle.Status, w: Whose) -> View:
    settings = w.ctx.runtime.settings
    since = day(_local_day(status.since))
    state = status.state
    plain = PLAIN.get(state, lifecycle.STATE_WORDS.get(state, (state, state))[0])
    details: list[str] = []
    if state in ("open", "active"):
        details.append(
            "Vous et les professionnels de santé que vous autorisez pouvez le consulter ; les professionnels "
            "peuvent y ajouter des documents."
        )
    elif state == "notified" and status.opens_on is not None:
        details.append(f"Il ouvrira le {day(status.opens_on)}, sauf si vous vous y opposez.")
    elif state == "suspended":
        closes = _local_day(status.since) + timedelta(days=settings.suspension_days)
        details.append(
            "L'Assurance Maladie l'a suspendu (suspicion de fraude ou problème technique). Pendant la "
            "suspension, personne ne peut le consulter, vous non plus, et rien n'y est ajouté."
        )
        details.append(
            f"Si vous pensez que c'est une erreur, contestez la suspension. Sans contestation, il sera fermé "
            f"à partir du {day(closes)}."
        )
    elif state == "closed":
        details.append(
            "Tant qu'il est fermé, personne ne peut le consulter, vous non plus, et les professionnels de santé "
            "ne peuvent plus y ajouter de documents. Son contenu est conservé."
        )
        if status.closed_reason == "death":
            details.append("Il a été fermé à la suite d'un décès : il ne peut pas être rouvert.")
        elif status.destroy_on is not None:
            details.append(
                f"Vous avez demandé sa destruction : il sera détruit définitivement le "
                f"{day(status.destroy_on)}. D'ici là, vous pouvez encore le rouvrir, ce qui annule la "
                "destruction."
            )
        else:
            if status.closed_reason == "suspension":
                details.append("Il a été fermé à la fin d'une suspension qui n'a pas été contestée.")
            until = lifecycle.kept_until(status.since, settings.archive_years)
            details.append(
                f"Il est conservé jusqu'au {day(until)} : d'ici là, vous pouvez le rouvrir et retrouver tout son "
                "contenu. Ensuite, il sera détruit définitivement."
            )
    allowed = {
        e
        for e in ("close", "erase", "reopen", "resume", "request")
        if state in lifecycle.TRANSITIONS[e].sources
    }
    return View(
        state=state,
        headline=f"{_your_cap(w)} est {plain} depuis le {since}.",
        details=details,
        destroy_on=day(status.destroy_on) if status.destroy_on else "",
        close="close" in allowed,
        # Asked again, a destruction would move its day later: once asked, reopening is the way back.
        erase="erase" in allowed and status.destroy_on is None,
        reopen="reopen" in allowed and status.closed_reason != "death",
        contest="resume" in allowed,
        ask="request" in allowed,
    )


def unreachable(status: lifecycle.Status, w: Whose) -> str:
    """Why the documents page lists nothing and takes no upload in this state ("" when the space is open
    and within her reach)."""
    state = status.state
    if state in lifecycle.USABLE:
        return ""
    words = UNREACHABLE["waiting"] if state in WAITING else UNREACHABLE.get(state, UNREACHABLE["closed"])
    when = f" (il ouvrira le {day(status.opens_on)})" if status.opens_on and state == "notified" else ""
    return words.format(sujet=_your_cap(w), ses="vos" if w.own else "ses", quand=when)


def _notice(request: Request, w: Whose) -> str:
    words = NOTICES.get(request.query_params.get("message", ""), "")
    return words.format(sujet=_your_cap(w), espace=_your(w))


def _page(
    request: Request,
    session: Session,
    w: Whose,
    status: lifecycle.Status,
    *,
    refusal: Refusal | None = None,
    code: int = 200,
) -> Response:
    settings = w.ctx.runtime.settings
    return render(
        request,
        "space.html",
        holder_page(w, session)
        | {
            "title": f"État de {its(w)}",
            "own": w.own,
            "children": w.children,
            "notice": "" if refusal else _notice(request, w),
            "refusal": refusal,
            "space": view(status, w),
            "archive_years": settings.archive_years,
            "delay": _delay(settings.destruction_delay_days),
            "close_url": CLOSE,
            "erase_url": ERASE,
            "reopen_url": REOPEN,
            "contest_url": CONTEST,
            "ask_url": ASK,
            "window": _delay(settings.opposition_window_days),
            "documents": DOCUMENTS,
        },
        status=code,
    )


def refusal_of(exc: FhirError, state: str, w: Whose) -> Refusal:
    """A service refusal in the holder's words: an illegal change names the state the space is in; any other
    refusal (a space closed after a death is not reopened; a role that may not ask) is the service's own
    sentence, its English half under it."""
    fr, en = sentences(exc.message)
    if exc.status == 409 and exc.message.startswith("changement impossible"):
        fr = f"Ce changement n'est pas possible : {_your(w)} est {PLAIN.get(state, state)}."
        whose_en = "your health space" if w.own else f"the health space of {w.child}"
        en = f"This change is not possible: {whose_en} is {PLAIN_EN.get(state, state)}."
    elif exc.status == 403:
        fr = f"Cette action ne vous est pas permise. {fr}"
    return Refusal(fr, en)


async def _refused(request: Request, session: Session, w: Whose, exc: FhirError) -> Response:
    """The page again, its current state shown, with the refusal on top."""
    if exc.status >= 500 or exc.status in (401, 404):
        raise exc  # no state to show it on: the space is gone, or the service is down (web/portal.py)
    status = await status_of(w)
    return _page(request, session, w, status, refusal=refusal_of(exc, status.state, w), code=exc.status)


async def _forged(request: Request, session: Session, w: Whose) -> Response:
    fr, en = sentences(FORGED)
    status = await status_of(w)
    return _page(request, session, w, status, refusal=Refusal(fr, en), code=403)


@router.get(HOME)
async def space_page(request: Request) -> Response:
    session, w = await _whose(request)
    return _page(request, session, w, await status_of(w))


# --- closing ---------------------------------------------------------------------------------------------


def _confirm_close(request: Request, session: Session, w: Whose) -> Response:
    settings = w.ctx.runtime.settings
    return render(
        request,
        "space_close.html",
        holder_page(w, session)
        | {
            "title": f"Fermer {its(w)}",
            "archive_years": settings.archive_years,
            "kept_until": day(lifecycle.kept_until(datetime.now(UTC), settings.archive_years)),
            "close_url": CLOSE,
            "home": HOME,
        },
    )


@router.get(CLOSE)
async def close_confirm(request: Request) -> Response:
    session, w = await _whose(request)
    status = await status_of(w)
    if status.state not in lifecycle.TRANSITIONS["close"].sources:
        return see_other(HOME)  # nothing to confirm: the page says what she may do
    return _confirm_close(request, session, w)


async def _checked(request: Request) -> tuple[Session, Whose, FormData | None]:
    """The holder's session, the space and the form of a POST, the form None when it is forged or
    malformed."""
    session, w = await _whose(request)
    form = await small_form(request)
    if form is None or not check_csrf(request, session, field(form, "csrf")):
        return session, w, None
    return session, w, form


def _kept(request: Request, form: FormData) -> str:
    """This form's page again with what she filled in (the box she ticked), for after the step-up."""
    query = urlencode({"confirmation": UNDERSTOOD} if field(form, "confirmation") == UNDERSTOOD else {})
    return request.url.path + (f"?{query}" if query else "")


#: A change the page asks of the service: the key of the message to come back with, or a page of its own.
Change = Callable[[Session, Whose, FormData], Awaitable[Response | str]]


async def _act(request: Request, change: Change) -> Response:
    """What every POST here does: the signed-in holder and the anti-forgery token, the change through the
    lifecycle service (its refusal shown on the page, in words), then back to the page with a message."""
    session, w, form = await _checked(request)
    if form is None:
        return await _forged(request, session, w)
    try:
        done = await change(session, w, form)
    except StepUpRequired:
        return see_other(step_up_url(_kept(request, form)))
    except FhirError as exc:
        return await _refused(request, session, w, exc)
    return done if isinstance(done, Response) else see_other(f"{HOME}?message={done}")


@router.post(CLOSE)
async def close(request: Request) -> Response:
    async def change(session: Session, w: Whose, form: FormData) -> str:
        await lifecycle.close(w.ctx, w.space_id, reason="holder")
        return "ferme"

    return await _act(request, change)


# --- asking for destruction ------------------------------------------------------------------------------


def _confirm_erase(
    request: Request, session: Session, w: Whose, *, error: str = "", code: int = 200, ticked: bool = False
) -> Response:
    settings = w.ctx.runtime.settings
    return render(
        request,
        "space_erase.html",
        holder_page(w, session)
        | {
            "title": f"Demander la destruction de {its(w)}",
            "erase_error": error,
            "ticked": ticked,
            "destroy_on": day(lifecycle.destruction_day(clock.today(), settings.destruction_delay_days)),
            "understood": UNDERSTOOD,
            "erase_url": ERASE,
            "home": HOME,
        },
        status=code,
    )


@router.get(ERASE)
async def erase_confirm(request: Request) -> Response:
    session, w = await _whose(request)
    status = await status_of(w)
    if status.state not in lifecycle.TRANSITIONS["erase"].sources or status.destroy_on is not None:
        return see_other(HOME)
    ticked = request.query_params.get("confirmation") == UNDERSTOOD  # back from the step-up
    return _confirm_erase(request, session, w, ticked=ticked)


@router.post(ERASE)
async def erase(request: Request) -> Response:
    async def change(session: Session, w: Whose, form: FormData) -> Response | str:
        if field(form, "confirmation") != UNDERSTOOD:
            return _confirm_erase(
                request,
                session,
                w,
                error="Cochez la case pour confirmer que vous avez compris : rien n'a été demandé.",
                code=400,
            )
        await lifecycle.erase(w.ctx, w.space_id)
        return "destruction"

    return await _act(request, change)


# --- reopening, contesting a suspension ------------------------------------------------------------------


@router.post(REOPEN)
async def reopen(request: Request) -> Response:
    async def change(session: Session, w: Whose, form: FormData) -> str:
        asked = (await status_of(w)).destroy_on is not None
        await lifecycle.reopen(w.ctx, w.space_id)
        return "annule" if asked else "rouvert"

    return await _act(request, change)


@router.post(CONTEST)
async def contest(request: Request) -> Response:
    async def change(session: Session, w: Whose, form: FormData) -> str:
        await lifecycle.resume(w.ctx, w.space_id)
        return "conteste"

    return await _act(request, change)


@router.post(ASK)
async def ask(request: Request) -> Response:
    async def change(session: Session, w: Whose, form: FormData) -> str:
        await issue.ask_again(w.ctx, w.space_id)
        return "demande"

    return await _act(request, change)


def install_space_page(app: FastAPI) -> None:
    """Add the holder's page about her space, and the choice of whose space (hers, or a child's)."""
    app.include_router(router)
    install_whose(app)
