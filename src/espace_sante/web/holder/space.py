"""The holder's page about her space itself, « État de mon espace santé » (PRODUCT §2 and §10: French or
English, accessible, phone first; docs/lifecycle.md "The holder's page").

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
offer only what it allows, and shows the service's refusal in the page's language, never a 500.
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
from espace_sante.errors import FhirError
from espace_sante.people.sessions import Session
from espace_sante.people.stepup import StepUpRequired
from espace_sante.spaces import lifecycle
from espace_sante.spaces.notices import issue
from espace_sante.web import i18n
from espace_sante.web.account.signin import FORGED, step_up_url
from espace_sante.web.deps import check_csrf
from espace_sante.web.forms import field, see_other, small_form
from espace_sante.web.holder.whose import CHOOSE, Whose, holder_whose, install_whose
from espace_sante.web.i18n import N_
from espace_sante.web.i18n import gettext as _
from espace_sante.web.messages import in_language, shown
from espace_sante.web.portal import portal_router
from espace_sante.web.templating import render

HOME = "/mon-espace/mon-espace-sante"
#: Where "Continuer" leads from a message: the account's page works whatever became of the space.
ACCOUNT = "/compte/securite"

router = portal_router(
    not_found=(
        N_("Espace santé introuvable"),
        N_("Aucun espace santé n'est disponible pour votre compte."),
        "",
    ),
    link=ACCOUNT,
)
CLOSE = f"{HOME}/fermer"
ERASE = f"{HOME}/detruire"
REOPEN = f"{HOME}/rouvrir"
CONTEST = f"{HOME}/contester"
ASK = f"{HOME}/demander"
DOCUMENTS = "/mon-espace/documents"
UNDERSTOOD = "compris"
#: States before the opening: the space exists, nothing is in it yet.
WAITING = frozenset({"registered", "notified"})


# --- small helpers ---------------------------------------------------------------------------------------


def _plain(state: str) -> str:
    """The state in the holder's words, after « est » ("Votre espace santé est …")."""
    return {
        "registered": _("en préparation"),
        "notified": _("en attente d'ouverture"),
        "open": _("ouvert"),
        "active": _("ouvert"),
        "suspended": _("suspendu"),
        "closed": _("fermé"),
        "opposed": _("refusé (opposition enregistrée)"),
    }.get(state) or in_language(*lifecycle.STATE_WORDS.get(state, (state, state)))


def _notices() -> dict[str, str]:
    """Messages after a redirection, by the fixed key the URL carries (never free text); `%(subject)s` is whose
    space it is, as a sentence starts ("Votre espace santé"), `%(space)s` the same within one."""
    return {
        "ferme": _("%(subject)s est fermé. Vous pouvez le rouvrir depuis cette page."),
        "destruction": _("Votre demande de destruction est enregistrée : %(space)s est fermé."),
        "rouvert": _("%(subject)s est rouvert : vous retrouvez tout son contenu."),
        "annule": _(
            "%(subject)s est rouvert et la destruction est annulée : vous retrouvez tout son contenu."
        ),
        "conteste": _("Votre contestation est enregistrée : la suspension est levée."),
        "demande": _(
            "Votre demande est enregistrée : un avis avec un code d'activation est envoyé (par courriel, ou "
            "par courrier sans adresse électronique)."
        ),
        "enfant": _(
            "Vous gérez maintenant l'espace santé de votre enfant : le haut de chaque page le rappelle."
        ),
        "moi": _("Vous êtes de retour sur votre propre espace santé."),
        "introuvable": _(
            "Vous ne gérez plus cet espace santé (votre enfant a peut-être eu 18 ans) : voici votre propre "
            "espace santé."
        ),
        "refuse": _("Le formulaire a expiré : rien n'a changé. Réessayez depuis cette page."),
    }


def _local_day(instant: Any) -> date:
    if isinstance(instant, datetime):
        return clock.day_of(instant)
    return instant if isinstance(instant, date) else clock.today()


def _delay(days: int) -> str:
    """ "3 mois" for 90 days, "6 semaines" for 42; "45 jours" otherwise."""
    if days % 30 == 0:
        return i18n.ngettext("%(num)s mois", "%(num)s mois", days // 30) % {"num": days // 30}
    if days % 7 == 0:
        return i18n.ngettext("%(num)s semaine", "%(num)s semaines", days // 7) % {"num": days // 7}
    return i18n.ngettext("%(num)s jour", "%(num)s jours", days) % {"num": days}


async def _whose(request: Request) -> tuple[Session, Whose]:
    return await holder_whose(request, HOME, children=True)


async def status_of(w: Whose) -> lifecycle.Status:
    """The state of the space the page is about (spaces/lifecycle.py decides who may read it)."""
    return await lifecycle.status(w.ctx, w.space_id)


def its(w: Whose) -> str:
    """ "mon espace santé", or "l'espace santé de Léa Martin" when she acts for a child."""
    return _("l'espace santé de %(name)s") % {"name": w.child} if w.child else _("mon espace santé")


def _your(w: Whose) -> str:
    return _("l'espace santé de %(name)s") % {"name": w.child} if w.child else _("votre espace santé")


def _your_cap(w: Whose) -> str:
    """`_your` to start a sentence: "Votre espace santé", "L'espace santé de Léa Martin"."""
    return _("L'espace santé de %(name)s") % {"name": w.child} if w.child else _("Votre espace santé")


def holder_page(w: Whose, session: Session) -> dict[str, Any]:
    """What every holder page's frame needs: whose space it is (the line at the top, the way back) and how
    to name it, in her voice (`its`: "mon espace santé") and in ours (`your`: "votre espace santé"), in the
    page's language."""
    return {
        "signed_in": True,
        "holder_nav": True,
        "csrf": session.csrf_token,
        "acting_for": w.child,
        "choose_url": CHOOSE,
        "its": its(w),
        "your": _your(w),
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


def _details(status: lifecycle.Status, w: Whose) -> list[str]:
    """What the state means for her, sentence by sentence."""
    settings = w.ctx.runtime.settings
    state = status.state
    day = i18n.date_text
    details: list[str] = []
    if state in ("open", "active"):
        details.append(
            _(
                "Vous et les professionnels de santé que vous autorisez pouvez le consulter ; les "
                "professionnels peuvent y ajouter des documents."
            )
        )
    elif state == "notified" and status.opens_on is not None:
        details.append(
            _("Il ouvrira le %(day)s, sauf si vous vous y opposez.") % {"day": day(status.opens_on)}
        )
    elif state == "suspended":
        closes = _local_day(status.since) + timedelta(days=settings.suspension_days)
        details.append(
            _(
                "L'Assurance Maladie l'a suspendu (suspicion de fraude ou problème technique). Pendant la "
                "suspension, personne ne peut le consulter, vous non plus, et rien n'y est ajouté."
            )
        )
        details.append(
            _(
                "Si vous pensez que c'est une erreur, contestez la suspension. Sans contestation, il sera "
                "fermé à partir du %(day)s."
            )
            % {"day": day(closes)}
        )
    elif state == "closed":
        details.append(
            _(
                "Tant qu'il est fermé, personne ne peut le consulter, vous non plus, et les professionnels de "
                "santé ne peuvent plus y ajouter de documents. Son contenu est conservé."
            )
        )
        if status.closed_reason == "death":
            details.append(_("Il a été fermé à la suite d'un décès : il ne peut pas être rouvert."))
        elif status.destroy_on is not None:
            details.append(
                _(
                    "Vous avez demandé sa destruction : il sera détruit définitivement le %(day)s. D'ici là, "
                    "vous pouvez encore le rouvrir, ce qui annule la destruction."
                )
                % {"day": day(status.destroy_on)}
            )
        else:
            if status.closed_reason == "suspension":
                details.append(_("Il a été fermé à la fin d'une suspension qui n'a pas été contestée."))
            until = lifecycle.kept_until(status.since, settings.archive_years)
            details.append(
                _(
                    "Il est conservé jusqu'au %(day)s : d'ici là, vous pouvez le rouvrir et retrouver tout son "
                    "contenu. Ensuite, il sera détruit définitivement."
                )
                % {"day": day(until)}
            )
    return details


def view(status: lifecycle.Status, w: Whose) -> View:
    state = status.state
    allowed = {
        e
        for e in ("close", "erase", "reopen", "resume", "request")
        if state in lifecycle.TRANSITIONS[e].sources
    }
    headline = _("%(subject)s est %(state)s depuis le %(since)s.") % {
        "subject": _your_cap(w),
        "state": _plain(state),
        "since": i18n.date_text(_local_day(status.since)),
    }
    return View(
        state=state,
        headline=headline,
        details=_details(status, w),
        destroy_on=i18n.date_text(status.destroy_on) if status.destroy_on else "",
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
    words = {"subject": _your_cap(w)}
    if state in WAITING:
        # Within reach, but empty until it opens (nobody deposits before; an activation opens it at once).
        if status.opens_on and state == "notified":
            return _(
                "%(subject)s n'est pas encore ouvert (il ouvrira le %(day)s) : il ne contient pas encore de "
                "documents. Vous pourrez en ajouter dès son ouverture, ou dès maintenant en l'activant avec le "
                "code d'activation reçu."
            ) % (words | {"day": i18n.date_text(status.opens_on)})
        return (
            _(
                "%(subject)s n'est pas encore ouvert : il ne contient pas encore de documents. Vous pourrez en "
                "ajouter dès son ouverture, ou dès maintenant en l'activant avec le code d'activation reçu."
            )
            % words
        )
    if state == "opposed":
        return (
            _(
                "%(subject)s n'a pas été créé : une opposition a été enregistrée. Il ne contient aucun document."
            )
            % words
        )
    if state == "suspended":
        return (
            _(
                "%(subject)s est suspendu : vos documents sont conservés, mais personne ne peut les consulter "
                "pendant la suspension, vous non plus."
            )
            if w.own
            else _(
                "%(subject)s est suspendu : ses documents sont conservés, mais personne ne peut les consulter "
                "pendant la suspension, vous non plus."
            )
        ) % words
    return (
        _(
            "%(subject)s est fermé : vos documents sont conservés, mais personne ne peut les consulter tant "
            "qu'il est fermé, vous non plus."
        )
        if w.own
        else _(
            "%(subject)s est fermé : ses documents sont conservés, mais personne ne peut les consulter tant "
            "qu'il est fermé, vous non plus."
        )
    ) % words


def _notice(request: Request, w: Whose) -> str:
    words = _notices().get(request.query_params.get("message", ""), "")
    return words % {"subject": _your_cap(w), "space": _your(w)} if words else ""


def _page(
    request: Request,
    session: Session,
    w: Whose,
    status: lifecycle.Status,
    *,
    refusal: str = "",
    code: int = 200,
) -> Response:
    settings = w.ctx.runtime.settings
    return render(
        request,
        "space.html",
        holder_page(w, session)
        | {
            "title": _("État de %(space)s") % {"space": its(w)},
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


def refusal_of(exc: FhirError, state: str, w: Whose) -> str:
    """A service refusal in the holder's words, in the page's language: an illegal change names the state the
    space is in; any other refusal (a space closed after a death is not reopened; a role that may not ask) is
    the service's own sentence."""
    if exc.status == 409 and exc.message.startswith("changement impossible"):
        return _("Ce changement n'est pas possible : %(space)s est %(state)s.") % {
            "space": _your(w),
            "state": _plain(state),
        }
    if exc.status == 403:
        return _("Cette action ne vous est pas permise. %(reason)s") % {"reason": shown(exc.message)}
    return shown(exc.message)


async def _refused(request: Request, session: Session, w: Whose, exc: FhirError) -> Response:
    """The page again, its current state shown, with the refusal on top."""
    if exc.status >= 500 or exc.status in (401, 404):
        raise exc  # no state to show it on: the space is gone, or the service is down (web/portal.py)
    status = await status_of(w)
    return _page(request, session, w, status, refusal=refusal_of(exc, status.state, w), code=exc.status)


async def _forged(request: Request, session: Session, w: Whose) -> Response:
    status = await status_of(w)
    return _page(request, session, w, status, refusal=shown(FORGED), code=403)


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
            "title": _("Fermer %(space)s") % {"space": its(w)},
            "archive_years": settings.archive_years,
            "kept_until": i18n.date_text(lifecycle.kept_until(datetime.now(UTC), settings.archive_years)),
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
            "title": _("Demander la destruction de %(space)s") % {"space": its(w)},
            "erase_error": error,
            "ticked": ticked,
            "destroy_on": i18n.date_text(
                lifecycle.destruction_day(clock.today(), settings.destruction_delay_days)
            ),
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
                error=_("Cochez la case pour confirmer que vous avez compris : rien n'a été demandé."),
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
