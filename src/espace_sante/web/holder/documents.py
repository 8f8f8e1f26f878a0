"""The holder's documents pages, « Mes documents » (PRODUCT §3 and §10: French or English, accessible, phone
first).

Routes:
- `GET /mon-espace/documents`: her documents, newest first (what the policy lets her see: never a result
  hidden from her until the announcement consultation), each with its class, date, author and whether it is
  masked to professionals, and what she may do with it. A closed or suspended space is read by nobody, her
  included: the page then says so and links to « État de mon espace santé » (web/holder/space.py), never an empty list.
- `GET /mon-espace/documents/{id}/contenu`: the document itself (ITI-68 through the service, as an attachment
  with `nosniff` and a sandbox CSP).
- `POST /mon-espace/documents/{id}/masquer`, `POST /mon-espace/documents/{id}/afficher`: mask it to
  professionals, or show it again (a PDSm metadata update of `securityLabel`, version-checked).
- `POST /mon-espace/documents/{id}/supprimer`: delete one of her own uploads (the form sits behind a
  `<details>` confirmation step; the service refuses anyone else's document).
- `GET/POST /mon-espace/documents/ajouter`: upload a PDF, photo or text with a title and a type.

The pages are about the space chosen on « État de mon espace santé »: hers, or a child's she represents
(web/holder/whose.py), read and written as his representative.

Each route makes one call to the services (record/documents/, record/resources.py); the rules stay there. The
list is `record/documents/listing.for_holder`: one transaction and one trace record for what the page shows.
What the page shows of each document is built in web/holder/documents_view.py, the upload read by
web/uploads.py. Every POST carries the session's anti-forgery token (web/deps.py). A service refusal becomes
the portal's message page with its status (web/portal.py), never a 500; an upload refusal comes back on the
form with what she typed, a refused deletion says why; all in the page's language.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from espace_sante.context import Context
from espace_sante.errors import FhirError, NotFound, PayloadTooLarge
from espace_sante.fhir.text import bidi_control
from espace_sante.http import downloads
from espace_sante.people.sessions import Session
from espace_sante.record import documents
from espace_sante.record import interactions as fhir
from espace_sante.record.documents import listing
from espace_sante.web import deps
from espace_sante.web.account.signin import FORGED
from espace_sante.web.deps import check_csrf
from espace_sante.web.forms import field, see_other, small_form
from espace_sante.web.holder import space
from espace_sante.web.holder.documents_view import DOCUMENT_ID, Item, binary_of, items, words
from espace_sante.web.holder.whose import Whose, holder_whose
from espace_sante.web.i18n import N_
from espace_sante.web.i18n import gettext as _
from espace_sante.web.messages import halves, in_language, sentences
from espace_sante.web.portal import message_page, portal_router
from espace_sante.web.templating import render
from espace_sante.web.uploads import UploadParser

HOME = "/mon-espace/documents"
UPLOAD = f"{HOME}/ajouter"

router = portal_router(
    not_found=(
        N_("Document introuvable"),
        N_("Ce document est introuvable : il a peut-être été supprimé."),
        "",
    ),
    changed=(
        N_("Document modifié entre-temps"),
        N_("Ce document a changé entre-temps : revenez à la liste et recommencez."),
        "",
    ),
    link=HOME,
)

NOT_DELETED = N_(
    "Ce document n'a pas été supprimé : vous pouvez supprimer seulement les documents que vous avez ajoutés "
    "vous-même. Vous pouvez en revanche le masquer aux professionnels de santé."
)
#: How many documents the page lists (the newest).
PAGE_SIZE = 50


def _notices() -> dict[str, str]:
    """Messages after a redirection, by the fixed key the URL carries (never free text), in the page's
    language."""
    return {
        "ajoute": _("Votre document est ajouté."),
        "masque": _("Le document est masqué aux professionnels de santé."),
        "affiche": _("Le document est de nouveau visible par vos professionnels de santé."),
        "supprime": _("Le document est supprimé."),
    }


async def _whose(request: Request) -> tuple[Session, Whose]:
    return await holder_whose(request, HOME)


async def _forged(request: Request) -> Response:
    return await message_page(request, N_("Formulaire expiré"), *sentences(FORGED), status=403, link=HOME)


# --- the list --------------------------------------------------------------------------------------------


@router.get(HOME)
async def documents_list(request: Request) -> Response:
    session, w = await _whose(request)
    shown = await listing.for_holder(w.ctx, w.space_id, count=PAGE_SIZE)
    found: list[Item] = []
    unreachable = title = ""
    if shown.open:
        found = items(shown, w.ins, own=w.own)
    else:
        # A closed or suspended space is out of everyone's reach, the holder's included, and one not yet open
        # is empty: the page says so, and where to reopen it or contest the suspension, rather than show an
        # empty list. The lifecycle gives the state's details (since when, until when).
        status = await space.status_of(w)
        unreachable = space.unreachable(status, w)
        if status.state in space.WAITING:
            title = _("Pas encore de documents")
        else:
            title = (
                _("Vos documents ne sont pas consultables")
                if w.own
                else _("Ses documents ne sont pas consultables")
            )
    return render(
        request,
        "documents.html",
        space.holder_page(w, session)
        | {
            "title": _("Mes documents") if w.own else _("Documents de %(name)s") % {"name": w.child},
            "unreachable": unreachable,
            "unreachable_title": title,
            "space_url": space.HOME,
            "notice": _notices().get(request.query_params.get("message", ""), ""),
            "documents": found,
            "more": shown.more,
            "page_size": PAGE_SIZE,
            "upload_url": UPLOAD,
            "home": HOME,
        },
    )


@router.get(HOME + "/{rid}/contenu")
async def document_content(request: Request, rid: str) -> Response:
    _session, w = await _whose(request)
    if not DOCUMENT_ID.match(rid):
        raise NotFound()
    stored = await fhir.read(w.ctx, "DocumentReference", rid)
    binary = binary_of(orjson.loads(stored.body or b"{}"))
    if binary is None:
        raise NotFound()
    retrieved = await documents.retrieve(w.ctx, binary)
    return await downloads.content_response(retrieved, w.ctx)


async def _checked(request: Request) -> Context | None:
    """The context acting on the space the pages are about (hers, or a child's) for a POST, None when its
    form is forged or malformed."""
    session, w = await _whose(request)
    form = await small_form(request)
    if form is None or not check_csrf(request, session, field(form, "csrf")):
        return None
    return w.ctx


async def _set_masked(request: Request, rid: str, masked: bool) -> Response:
    ctx = await _checked(request)
    if ctx is None:
        return await _forged(request)
    if not DOCUMENT_ID.match(rid):
        raise NotFound()
    await documents.set_masked(ctx, rid, masked)
    return see_other(f"{HOME}?message={'masque' if masked else 'affiche'}#doc-{rid}")


@router.post(HOME + "/{rid}/masquer")
async def document_mask(request: Request, rid: str) -> Response:
    return await _set_masked(request, rid, True)


@router.post(HOME + "/{rid}/afficher")
async def document_unmask(request: Request, rid: str) -> Response:
    return await _set_masked(request, rid, False)


@router.post(HOME + "/{rid}/supprimer")
async def document_delete(request: Request, rid: str) -> Response:
    ctx = await _checked(request)
    if ctx is None:
        return await _forged(request)
    try:
        if not DOCUMENT_ID.match(rid):
            raise NotFound()
        await fhir.delete(ctx, "DocumentReference", rid)
    except FhirError as exc:
        if exc.status not in (403, 404, 422):
            raise
        # The service answers "not found" for a document she may only read: the page says why instead.
        return await message_page(request, "Document non supprimé", NOT_DELETED, status=exc.status, link=HOME)
    return see_other(f"{HOME}?message=supprime")


# --- upload ----------------------------------------------------------------------------------------------


def _megabytes(limit: int) -> str:
    return f"{limit / (1024 * 1024):.0f}"


def _too_large_message(limit: int) -> str:
    return _("Ce fichier est trop volumineux : %(size)s Mo au plus.") % {"size": _megabytes(limit)}


def _upload_page(
    request: Request,
    session: Session,
    w: Whose,
    *,
    title: str = "",
    type_code: str = "",
    error: str = "",
    error_field: str = "",
    status: int = 200,
) -> Response:
    limit = deps.runtime(request).settings.upload_max_bytes
    return render(
        request,
        "document_upload.html",
        space.holder_page(w, session)
        | {
            "title": _("Ajouter un document")
            if w.own
            else _("Ajouter un document pour %(name)s") % {"name": w.child},
            "upload_error": error,
            "error_field": error_field,
            "doc_title": title,
            "type_code": type_code,
            "types": [(code, words(labels[1])) for code, labels in documents.UPLOAD_TYPES.items()],
            "limit_mb": _megabytes(limit),
            "upload_url": UPLOAD,
            "home": HOME,
        },
        status=status,
    )


@router.get(UPLOAD)
async def upload_form(request: Request) -> Response:
    session, w = await _whose(request)
    if space.unreachable(await space.status_of(w), w):
        return see_other(HOME)  # the list says why nothing can be added now
    return _upload_page(request, session, w)


def _upload_refusal(exc: FhirError, limit: int) -> tuple[str, str]:
    """(sentence in the page's language, field in error) for a refusal of `documents.upload`."""
    if isinstance(exc, PayloadTooLarge) or exc.status == 413:
        return _too_large_message(limit), "fichier"
    if exc.expression == "title":
        return _("Donnez un titre au document."), "titre"
    if exc.expression == "type":
        return _("Choisissez le type de document."), "type"
    fr, en = halves(exc.message)
    detail = in_language(fr.removeprefix("Binary.data : "), en).rstrip(". ")
    if exc.expression == "file" or exc.expression == "Binary.data":
        return _(
            "Ce fichier n'a pas été ajouté : un PDF, une photo (JPEG ou PNG) ou un texte sont acceptés. "
            "Détail : %(detail)s."
        ) % {"detail": detail}, "fichier"
    return _("Ce document n'a pas pu être ajouté : %(detail)s.") % {"detail": detail}, ""


@router.post(UPLOAD)
async def upload(request: Request) -> Response:
    session, w = await _whose(request)
    if space.unreachable(await space.status_of(w), w):
        return see_other(HOME)  # the list says why nothing can be added now
    limit = w.ctx.runtime.settings.upload_max_bytes
    sent = await UploadParser(limit, drain=4 * limit + 64 * 1024).read(request)
    if sent.malformed and not sent.fields:
        return _upload_page(
            request, session, w, error=_("Le formulaire n'a pas pu être lu : recommencez."), status=400
        )
    if not check_csrf(request, session, sent.fields.get("csrf", "")[:200]):
        return await _forged(request)
    title = " ".join(sent.fields.get("titre", "").split())[:200]
    type_code = sent.fields.get("type", "")[:20]
    again = {"title": title, "type_code": type_code if type_code in documents.UPLOAD_TYPES else ""}
    if sent.too_large:
        return _upload_page(
            request,
            session,
            w,
            **again,
            error=_too_large_message(limit),
            error_field="fichier",
            status=413,
        )
    if sent.malformed:
        return _upload_page(
            request,
            session,
            w,
            **again,
            error=_("Le formulaire n'a pas pu être lu : recommencez."),
            status=400,
        )
    if (hidden := bidi_control(title)) is not None:
        # Refused beside the field rather than stripped: the person sees what was wrong with what they typed
        # (fhir/text.py; the write's validation would refuse it too, without naming the field).
        return _upload_page(
            request,
            session,
            w,
            **again,
            error=_(
                "Le titre contient un caractère invisible qui change l'ordre d'affichage du texte "
                "(%(character)s) : retirez-le."
            )
            % {"character": hidden},
            error_field="titre",
            status=422,
        )
    if not sent.filename and not sent.content:
        return _upload_page(
            request,
            session,
            w,
            **again,
            error=_("Choisissez un fichier."),
            error_field="fichier",
            status=400,
        )
    try:
        stored = await documents.upload(
            w.ctx,
            content=sent.content,
            title=title,
            type_code=type_code,
            for_ins=None if w.own else w.ins,
        )
    except FhirError as exc:
        if exc.status >= 500 or exc.status in (401, 403, 404):
            raise
        message, wrong = _upload_refusal(exc, limit)
        return _upload_page(request, session, w, **again, error=message, error_field=wrong, status=exc.status)
    return see_other(f"{HOME}?message=ajoute#doc-{stored.resource_id}")


def install_documents_pages(app: FastAPI) -> None:
    app.include_router(router)
