"""« Mes notifications »: what she was told of lately, and her choice, kind by kind, of being told by e-mail too
(notifications/). The lines come from `notifications.board.latest`, under the policy's decision to read the
space's trace; the choices from `rights/changes.notification_choices` and `save_notification_choices` (a change
of her choices needs the strong sign-in, as the sharing rules do). The same for a child's space, as his
representative. A holder without an e-mail address reads her notifications here and on her home page."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from espace_sante.notifications import board, kinds
from espace_sante.people.accounts import Account
from espace_sante.people.accounts import get as get_account
from espace_sante.rights import changes
from espace_sante.web import i18n
from espace_sante.web.holder import space
from espace_sante.web.holder.acting import act
from espace_sante.web.holder.whose import Whose, holder_whose
from espace_sante.web.portal import portal_router
from espace_sante.web.templating import render

NOTIFICATIONS = "/mon-espace/notifications"
#: How many lines the page shows (the home shows the latest few).
SHOWN = 30

router = portal_router(link=NOTIFICATIONS)


def sentence(line: board.Line, child: str) -> str:
    """A notification in the page's language, in plain words (who acted is the directory's name)."""
    _ = i18n.gettext
    if line.who_kind == "client":
        who = _("Le logiciel « %(name)s »") % {"name": line.who}
    else:
        who = line.who or _("Un professionnel de santé")
    if line.kind == kinds.FIRST_ACCESS:
        if child:
            return _("%(who)s a consulté le dossier de %(name)s pour la première fois.") % {
                "who": who,
                "name": child,
            }
        return _("%(who)s a consulté votre dossier pour la première fois.") % {"who": who}
    if line.kind == kinds.EMERGENCY:
        return _("%(who)s a ouvert un accès en urgence au dossier (article L1111-17).") % {"who": who}
    if line.kind == kinds.DOCUMENT:
        return _("%(who)s a ajouté un document au dossier.") % {"who": who}
    if line.kind == kinds.WAITING:
        return _(
            "Un document attend une consultation avec un professionnel avant d'être visible (article R1111-53)."
        )
    if line.kind == kinds.RELEASED:
        return _("Un document qui attendait sa consultation d'annonce est maintenant visible.")
    return _("Un événement dans le dossier.")


def lines_of(found: list[board.Line], child: str) -> list[dict[str, object]]:
    """The lines as the pages show them: the sentence, when, the page it opens, whether it is new."""
    return [
        {"sentence": sentence(n, child), "when": i18n.instant_text(n.at), "page": n.page, "new": n.new}
        for n in found
    ]


def _labels() -> list[tuple[str, str, str]]:
    """Each kind's name and what it tells of, in the page's language, in the order of kinds.KINDS."""
    _ = i18n.gettext
    words = {
        kinds.FIRST_ACCESS: (
            _("Première consultation par un professionnel"),
            _(
                "Un professionnel ou le logiciel d'un établissement consulte le dossier pour la première fois."
            ),
        ),
        kinds.EMERGENCY: (
            _("Accès en urgence"),
            _("Un professionnel ouvre un accès en urgence au dossier (article R1111-48)."),
        ),
        kinds.DOCUMENT: (
            _("Nouveau document"),
            _("Un professionnel ajoute un document au dossier."),
        ),
        kinds.WAITING: (
            _("Document en attente de consultation"),
            _("Un résultat attend une consultation d'annonce avant d'être visible (article R1111-53)."),
        ),
        kinds.RELEASED: (
            _("Document rendu visible"),
            _("Un résultat qui attendait sa consultation d'annonce devient visible."),
        ),
    }
    return [(k.code, *words[k.code]) for k in kinds.KINDS]


def _address(account: Account | None) -> str:
    return (account.notice_address or "") if account is not None else ""


@router.get(NOTIFICATIONS)
async def notifications_page(request: Request) -> Response:
    session, w = await holder_whose(request, NOTIFICATIONS)
    choices = await changes.notification_choices(w.ctx, ins=w.ins)
    found = await board.latest(w.ctx, w.space_id, since=session.previous_visit_at, limit=SHOWN) or []
    address = _address(await get_account(w.ctx.runtime, session.account_id))
    lang = i18n.negotiate(request)
    with i18n.speaking(lang):
        _ = i18n.gettext
        title = (
            _("Notifications de l'espace de %(name)s") % {"name": w.child}
            if w.child
            else _("Mes notifications")
        )
        rows = [
            {"code": code, "label": label, "hint": hint, "on": choices.get(code, False)}
            for code, label, hint in _labels()
        ]
        notice = (
            _("C'est fait : vos choix de notifications sont enregistrés.")
            if request.query_params.get("message") == "choix"
            else ""
        )
        lines = lines_of(found, w.child)
    return render(
        request,
        "notifications.html",
        space.holder_page(w, session)
        | {
            "title": title,
            "kinds": rows,
            "lines": lines,
            "address": address,
            "notice": notice,
            "save_url": NOTIFICATIONS,
        },
    )


@router.post(NOTIFICATIONS)
async def save_choices(request: Request) -> Response:
    async def change(w: Whose, form: FormData) -> str:
        # A box left unticked is not sent at all: every kind is said, on or off.
        chosen = {k.code: form.get(f"courriel-{k.code}") == "oui" for k in kinds.KINDS}
        await changes.save_notification_choices(w.ctx, chosen, ins=w.ins)
        return "choix"

    return await act(request, NOTIFICATIONS, change)


def install_notification_pages(app: FastAPI) -> None:
    app.include_router(router)
