"""« Qui peut voir mon dossier » (PRODUCT §4, L1110-4, L1111-15, L1111-17): who has access to the record the
holder's pages are about (hers, or a child's she represents: web/holder/whose.py), on what basis and since when,
who is blocked, what the emergency rules are, and for each professional « what can they see now? ».

- `GET /mon-espace/acces`: the overview, `rights/changes.overview`, the service `GET /access` answers.
- `GET /mon-espace/acces/apercu?rpps=…`: `rights/changes.preview`, the same decision as `/access/preview`: the
  policy run for that professional, within what she may see herself; the preview is recorded in the trace.

Nothing is decided here: the page shows what the services answer, in the page's language."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import FastAPI, Query, Request
from starlette.responses import Response

from espace_sante.fhir.identifiers import IdentifierError, validate_rpps
from espace_sante.rights import changes
from espace_sante.web import i18n
from espace_sante.web.holder import space
from espace_sante.web.holder.whose import holder_whose
from espace_sante.web.portal import PageRefused, portal_router
from espace_sante.web.templating import render

SHARING = "/mon-espace/acces"
PREVIEW = f"{SHARING}/apercu"

router = portal_router(
    not_found=(
        "Professionnel introuvable",
        "Ce professionnel n'a pas accès à ce dossier, ou n'est pas dans l'annuaire.",
        "This professional has no access to this record, or is not in the directory.",
    ),
    link=SHARING,
)


def _basis(code: str) -> str:
    """A basis of access in the page's language, with the article that grants it."""
    _ = i18n.gettext
    return {
        "medecin_traitant": _("médecin traitant (article L1111-15)"),
        "care_team": _("membre de l'équipe de soins qui vous prend en charge (article L1110-4)"),
        "consent": _("votre accord (article L1111-15)"),
        "emergency": _("accès en urgence, limité dans le temps (article L1111-17)"),
        "samu": _("régulation du SAMU, limitée dans le temps (article R1111-48)"),
    }.get(code, code)


def _since(value: str) -> str:
    try:
        return i18n.date_text(datetime.fromisoformat(value))
    except ValueError:
        return ""


@router.get(SHARING)
async def sharing_page(request: Request) -> Response:
    session, w = await holder_whose(request, SHARING)
    seen = await changes.overview(w.ctx, ins=w.ins)
    lang = i18n.negotiate(request)
    with i18n.speaking(lang):
        _ = i18n.gettext
        people = [
            {
                "name": b["name"] or b["who"],
                "basis": _basis(b["basis"]),
                "since": _since(b["granted_at"]),
                "preview": None if b["who"].startswith("finess:") else f"{PREVIEW}?rpps={b['who']}",
                "establishment": b["who"].startswith("finess:"),
            }
            for b in seen["bases"]
            if b["active"]
        ]
        settings = seen["settings"]
        emergency = [
            (
                _("Accès en urgence par un professionnel de santé (article L1111-17)"),
                not settings["emergency_refused"],
            ),
            (_("Accès par la régulation du SAMU (article R1111-48)"), not settings["samu_refused"]),
            (
                _("Les documents que vous avez masqués sont montrés en cas d'urgence (article L1111-17)"),
                bool(settings["masked_in_emergency"]),
            ),
        ]
        title = _("Qui peut voir son dossier") if w.child else _("Qui peut voir mon dossier")
    return render(
        request,
        "sharing.html",
        space.holder_page(w, session)
        | {
            "title": title,
            "people": people,
            "blocked": [b["name"] or b["rpps"] for b in seen["blocked"]],
            "emergency": emergency,
        },
        translated=True,
    )


@router.get(PREVIEW)
async def preview_page(request: Request, rpps: str = Query("", max_length=20)) -> Response:
    session, w = await holder_whose(request, SHARING)
    try:
        validate_rpps(rpps)
    except IdentifierError:
        raise PageRefused(
            "Professionnel introuvable",
            "Ce numéro RPPS n'est pas valide.",
            "This RPPS number is not valid.",
            status=400,
            link=SHARING,
        ) from None
    seen = await changes.preview(w.ctx, rpps=rpps, ins=w.ins)
    lang = i18n.negotiate(request)
    with i18n.speaking(lang):
        _ = i18n.gettext
        who = seen["professional"]["name"] or rpps
        title = _("Ce que %(name)s peut voir") % {"name": who}
        items: list[dict[str, Any]] = [
            {
                "label": item["label"] or item["type"],
                "kind": _kind(item["type"]),
                "reason": item["reason_en"] if lang == "en" else item["reason"],
            }
            for item in seen["items"]
        ]
        bases = [_basis(b) for b in seen["bases"]]
    return render(
        request,
        "sharing_preview.html",
        space.holder_page(w, session)
        | {"title": title, "items": items, "bases": bases, "blocked": seen["blocked"], "back": SHARING},
        translated=True,
    )


def _kind(rtype: str) -> str:
    _ = i18n.gettext
    return {
        "DocumentReference": _("Document"),
        "Observation": _("Mesure ou résultat"),
        "AllergyIntolerance": _("Allergie"),
        "Condition": _("Antécédent"),
        "Immunization": _("Vaccination"),
        "MedicationStatement": _("Traitement"),
        "Patient": _("Identité"),
    }.get(rtype, rtype)


def install_sharing_pages(app: FastAPI) -> None:
    app.include_router(router)
