"""The holder's documents pages, « Mes documents » (PRODUCT §3 and §10: French, accessible, phone first).

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

Each route calls the services (record/resources.py, record/documents/); the rules stay there. Every POST
carries the session's anti-forgery token (web/deps.py). A refusal becomes a French page with its status, never
a 500; an upload refusal comes back on the form with what she typed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from espace_sante import clock
from espace_sante.access.policy import MASKED_FROM_PROFESSIONALS
from espace_sante.audit.wording import MONTHS_FR
from espace_sante.context import Context
from espace_sante.errors import FhirError, NotFound, PayloadTooLarge
from espace_sante.fhir import pdsm, valuesets
from espace_sante.fhir.text import bidi_control
from espace_sante.http import downloads
from espace_sante.people.sessions import Session
from espace_sante.record import documents
from espace_sante.record import interactions as fhir
from espace_sante.web import deps
from espace_sante.web.account.signin import FORGED
from espace_sante.web.deps import SignInRequired, check_csrf, current_session, session_context
from espace_sante.web.holder import space
from espace_sante.web.holder.whose import Whose, whose
from espace_sante.web.templating import render

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

router = APIRouter(include_in_schema=False)

HOME = "/mon-espace/documents"
UPLOAD = f"{HOME}/ajouter"
#: What the page says masking does (R1111-49, L1111-16), in plain words.
MASKING = (
    "Les professionnels de santé ne le verront plus, sauf votre médecin traitant et l'auteur du document. "
    "Vous pouvez le rendre visible à nouveau à tout moment."
)
NOT_DELETED = (
    "Ce document n'a pas été supprimé : vous pouvez supprimer seulement les documents que vous avez ajoutés "
    "vous-même. Vous pouvez en revanche le masquer aux professionnels de santé."
)
ACCEPTED = "un PDF, une photo (JPEG ou PNG) ou un texte"
INS_SYSTEM = f"urn:oid:{pdsm.INS_NIR_OID}"
#: How many documents the page lists (the newest).
PAGE_SIZE = 50

#: Messages after a redirection, by a fixed key (the URL never carries free text).
NOTICES: dict[str, str] = {
    "ajoute": "Votre document est ajouté.",
    "masque": "Le document est masqué aux professionnels de santé.",
    "affiche": "Le document est de nouveau visible par vos professionnels de santé.",
    "supprime": "Le document est supprimé.",
}

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class NotHolder(Exception):
    """The session is not a holder's (a professional's or an operator's): these pages are not for them."""


# --- small helpers ---------------------------------------------------------------------------------------


def _see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303, headers={"Cache-Control": "no-store"})


def french(message: str) -> str:
    """The French half of a service message written « français / English »."""
    return message.split(" / ", 1)[0].strip()


def _field(form: Mapping[str, Any], name: str, size: int = 4096) -> str:
    value = form.get(name)
    return value[:size] if isinstance(value, str) else ""


async def _small_form(request: Request) -> FormData | None:
    try:
        return await request.form(max_files=0, max_fields=10, max_part_size=8 * 1024)
    except (HTTPException, ValueError, UnicodeDecodeError):  # malformed or oversized: one refusal
        return None


def _message_page(
    request: Request, session: Session | None, title: str, error: str, status: int, link: str = HOME
) -> Response:
    return render(
        request,
        "message.html",
        {
            "title": title,
            "error": error,
            "signed_in": session is not None,
            "csrf": session.csrf_token if session else "",
            "link": link,
        },
        status=status,
    )


def _forged(request: Request, session: Session) -> Response:
    return _message_page(request, session, "Formulaire expiré", french(FORGED), 403)


def error_page(request: Request, session: Session | None, exc: FhirError) -> Response:
    """A service refusal as a French page with its status."""
    status = exc.status
    if status in (404, 410):
        return _message_page(
            request,
            session,
            "Document introuvable",
            "Ce document est introuvable : il a peut-être été supprimé.",
            status,
        )
    if status == 412:
        return _message_page(
            request,
            session,
            "Document modifié entre-temps",
            "Ce document a changé entre-temps : revenez à la liste et recommencez.",
            409,
        )
    if status == 401:
        return _message_page(request, session, "Connexion requise", "Connectez-vous d'abord.", 401)
    if status >= 500:
        return _message_page(
            request,
            session,
            "Service indisponible",
            "Le service est indisponible : réessayez plus tard.",
            status,
        )
    title = "Action refusée" if status == 403 else "Demande refusée"
    return _message_page(request, session, title, french(exc.message), status)


async def _holder(request: Request) -> tuple[Session, Context]:
    """The holder's session and request context. SignInRequired without a session (back here after signing
    in for a GET, to the list otherwise); NotHolder for a professional's or an operator's session."""
    session = await current_session(request)
    if session is None:
        raise SignInRequired(deps.here(request) if request.method == "GET" else HOME)
    if session.kind != "holder":
        raise NotHolder()
    ctx = await session_context(request)
    if ctx.actor.kind != "holder":
        raise NotHolder()
    return session, ctx


# --- reading documents for the page ----------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One document as the list shows it."""

    id: str
    title: str
    kind: str
    type: str
    date: str
    author: str
    own: bool
    masked: bool


def day(value: Any) -> str:
    """ "12 juin 2026" (in Paris time) from a FHIR instant, dateTime or date; "" when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        if len(value) <= 10:
            parts = [int(p) for p in value.split("-")]
            if len(parts) == 1:
                return str(parts[0])
            if len(parts) == 2:
                return f"{MONTHS_FR[parts[1] - 1]} {parts[0]}"
            when = date(parts[0], parts[1], parts[2])
        else:
            instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
            when = clock.day_of(instant)
    except (ValueError, IndexError):
        return ""
    return f"{'1er' if when.day == 1 else when.day} {MONTHS_FR[when.month - 1]} {when.year}"


def _name(resource: Mapping[str, Any]) -> str:
    """ "Dr Claire Lefèvre" from a Practitioner's (or Patient's) first HumanName."""
    names = resource.get("name")
    first = names[0] if isinstance(names, list) and names and isinstance(names[0], dict) else {}
    if isinstance(first.get("text"), str) and first["text"].strip():
        return str(first["text"]).strip()
    parts = [*(first.get("prefix") or []), *(first.get("given") or []), first.get("family") or ""]
    return " ".join(p for p in parts if isinstance(p, str) and p).strip()


def _identifies(resource: Mapping[str, Any], ins: str) -> bool:
    return any(
        isinstance(i, dict) and i.get("value") == ins and str(i.get("system", "")).endswith(pdsm.INS_NIR_OID)
        for i in resource.get("identifier") or ()
    )


def _author(
    body: Mapping[str, Any],
    ins: str,
    patient_id: str,
    directory: Mapping[str, Mapping[str, Any]],
    holder: str = "Vous",
) -> tuple[str, bool]:
    """Who wrote the document, in words, and whether it is the holder's own upload (`holder` names its
    author: "Vous", or a child's representatives, who upload in the child's name)."""
    contained = {
        f"#{c['id']}": c
        for c in body.get("contained") or ()
        if isinstance(c, dict) and isinstance(c.get("id"), str)
    }
    names: list[str] = []
    for author in body.get("author") or ():
        if not isinstance(author, dict):
            continue
        ref = author.get("reference")
        found: Mapping[str, Any] | None = contained.get(ref) if isinstance(ref, str) else None
        if found is None and isinstance(ref, str):
            found = directory.get("/".join(ref.split("/")[-2:]))
        if isinstance(ref, str) and ref.startswith("Patient/") and ref.split("/", 1)[1] == patient_id:
            return holder, True
        if found is not None:
            kind = found.get("resourceType")
            if kind == "Patient" and _identifies(found, ins):
                return holder, True
            if kind == "PractitionerRole":
                inner = (found.get("practitioner") or {}).get("reference")
                target = contained.get(inner) if isinstance(inner, str) else None
                name = (
                    _name(target) if target else str((found.get("practitioner") or {}).get("display") or "")
                )
                org = (found.get("organization") or {}).get("display")
                name = name or (org if isinstance(org, str) else "")
            elif kind == "Organization" or kind == "Device":
                name = str(found.get("name") or found.get("deviceName") or "")
            else:
                name = _name(found)
            if name:
                names.append(name)
                continue
        if isinstance(author.get("display"), str) and author["display"].strip():
            names.append(author["display"].strip())
    return (", ".join(names) if names else "Un professionnel de santé"), False


def _shown(concept: Any, vs: valuesets.ValueSet | None) -> str:
    """A CodeableConcept in words: the French display of its first known code, else a display it carries."""
    codings = concept.get("coding") if isinstance(concept, dict) else None
    for coding in codings if isinstance(codings, list) else ():
        if not isinstance(coding, dict):
            continue
        shown = vs.display(coding.get("system"), coding.get("code")) if vs is not None else None
        shown = shown or coding.get("display")
        if isinstance(shown, str) and shown.strip():
            return shown.strip()
    text = concept.get("text") if isinstance(concept, dict) else None
    return text.strip() if isinstance(text, str) else ""


def _kind(body: Mapping[str, Any]) -> tuple[str, str]:
    """The document's class (TRE_A03) and its type, in words ("" when unknown)."""
    categories = body.get("category")
    kind = next(
        (
            k
            for c in (categories if isinstance(categories, list) else ())
            if (k := _shown(c, valuesets.class_code()))
        ),
        "",
    )
    concept = body.get("type")
    codings = concept.get("coding") if isinstance(concept, dict) else None
    mine = [
        str(c["code"])
        for c in (codings if isinstance(codings, list) else ())
        if isinstance(c, dict) and c.get("code") in documents.UPLOAD_TYPES
    ]
    detail = documents.UPLOAD_TYPES[mine[0]][0] if mine else _shown(concept, valuesets.accepted_type_code())
    return kind, detail if detail != kind else ""


def title_of(body: Mapping[str, Any]) -> str:
    description = body.get("description")
    if isinstance(description, str) and description.strip():
        return description.strip()
    for content in body.get("content") or ():
        attachment = content.get("attachment") if isinstance(content, dict) else None
        if isinstance(attachment, dict) and isinstance(attachment.get("title"), str) and attachment["title"]:
            return str(attachment["title"]).strip()
    return "Document sans titre"


def binary_of(body: Mapping[str, Any]) -> str | None:
    """The Binary id of `content[0].attachment.url` (`Binary/<id>`, relative or absolute), or None."""
    contents = body.get("content") or ()
    first = contents[0] if isinstance(contents, list) and contents and isinstance(contents[0], dict) else {}
    url = (first.get("attachment") or {}).get("url")
    if not isinstance(url, str) or "Binary/" not in url:
        return None
    rid = url.rsplit("Binary/", 1)[1].split("/", 1)[0].split("?", 1)[0]
    return rid if _ID.match(rid) else None


async def _whose(request: Request) -> tuple[Session, Whose]:
    """The holder's session and the space the pages are about (web/holder/whose.py: hers, or a child's)."""
    session, ctx = await _holder(request)
    return session, await whose(request, session, ctx)


async def _patient(w: Whose) -> str | None:
    """The Patient id of the space's holder, found the way any search is (through the policy)."""
    found = await fhir.search(w.ctx, "Patient", [("identifier", f"{INS_SYSTEM}|{w.ins}"), ("_count", "1")])
    return found.matches[0].resource_id if found.matches else None


async def _items(w: Whose) -> tuple[list[Item], bool]:
    """The space's current documents, newest first, and whether there are more than the page shows."""
    ctx = w.ctx
    patient_id = await _patient(w)
    if patient_id is None:
        return [], False
    found = await fhir.search(
        ctx,
        "DocumentReference",
        [
            ("patient", patient_id),
            ("status", "current"),
            ("_sort", "-date"),
            ("_count", str(PAGE_SIZE)),
            ("_include", "DocumentReference:author"),
        ],
    )
    directory: dict[str, dict[str, Any]] = {}
    for inc in found.included:
        if inc.body is not None:
            directory[f"{inc.resource_type}/{inc.resource_id}"] = orjson.loads(inc.body)
    items = []
    for stored in found.matches:
        if stored.body is None:
            continue
        body = orjson.loads(stored.body)
        author, own = _author(
            body, w.ins, patient_id, directory, "Vous" if w.own else "Ses représentants légaux"
        )
        _, flags = pdsm.security_flags(body)
        kind, detail = _kind(body)
        items.append(
            Item(
                id=stored.resource_id,
                title=title_of(body),
                kind=kind or "Document",
                type=detail,
                date=day(body.get("date")) or day(stored.last_updated.isoformat()),
                author=author,
                own=own,
                masked=MASKED_FROM_PROFESSIONALS in flags,
            )
        )
    return items, found.has_next


# --- the list --------------------------------------------------------------------------------------------


async def _list_page(request: Request, session: Session, w: Whose) -> Response:
    # A closed or suspended space is out of everyone's reach, the holder's included: the page says so, and
    # where to reopen it or contest the suspension, rather than show an empty list.
    status = await space.status_of(w)
    unreachable = space.unreachable(status, w)
    items, more = ([], False) if unreachable else await _items(w)
    return render(
        request,
        "documents.html",
        space.holder_page(w, session)
        | {
            "title": "Mes documents" if w.own else f"Documents de {w.child}",
            "unreachable": unreachable,
            "unreachable_title": (
                "Pas encore de documents"
                if status.state in space.WAITING
                else f"{'Vos' if w.own else 'Ses'} documents ne sont pas consultables"
            ),
            "space_url": space.HOME,
            "notice": NOTICES.get(request.query_params.get("message", ""), ""),
            "documents": items,
            "more": more,
            "page_size": PAGE_SIZE,
            "masking": MASKING,
            "upload_url": UPLOAD,
            "home": HOME,
        },
    )


@router.get(HOME)
async def documents_list(request: Request) -> Response:
    session: Session | None = None
    try:
        session, w = await _whose(request)
        return await _list_page(request, session, w)
    except FhirError as exc:
        return error_page(request, session, exc)


@router.get(HOME + "/{rid}/contenu")
async def document_content(request: Request, rid: str) -> Response:
    session: Session | None = None
    try:
        session, w = await _whose(request)
        ctx = w.ctx
        if not _ID.match(rid):
            raise NotFound()
        stored = await fhir.read(ctx, "DocumentReference", rid)
        binary = binary_of(orjson.loads(stored.body or b"{}"))
        if binary is None:
            raise NotFound()
        retrieved = await documents.retrieve(ctx, binary)
        return await downloads.content_response(retrieved, ctx)
    except FhirError as exc:
        return error_page(request, session, exc)


async def _checked(request: Request) -> tuple[Session, Context, FormData | None]:
    """The holder's session, the context acting on the space the pages are about (hers, or a child's), and
    the form of a POST, the form None when it is forged or malformed."""
    session, w = await _whose(request)
    form = await _small_form(request)
    if form is None or not check_csrf(request, session, _field(form, "csrf", 200)):
        return session, w.ctx, None
    return session, w.ctx, form


async def _set_masked(request: Request, rid: str, masked: bool) -> Response:
    session: Session | None = None
    try:
        session, ctx, form = await _checked(request)
        if form is None:
            return _forged(request, session)
        if not _ID.match(rid):
            raise NotFound()
        await documents.set_masked(ctx, rid, masked)
        return _see_other(f"{HOME}?message={'masque' if masked else 'affiche'}#doc-{rid}")
    except FhirError as exc:
        return error_page(request, session, exc)


@router.post(HOME + "/{rid}/masquer")
async def document_mask(request: Request, rid: str) -> Response:
    return await _set_masked(request, rid, True)


@router.post(HOME + "/{rid}/afficher")
async def document_unmask(request: Request, rid: str) -> Response:
    return await _set_masked(request, rid, False)


@router.post(HOME + "/{rid}/supprimer")
async def document_delete(request: Request, rid: str) -> Response:
    session: Session | None = None
    try:
        session, ctx, form = await _checked(request)
        if form is None:
            return _forged(request, session)
        if not _ID.match(rid):
            raise NotFound()
        await fhir.delete(ctx, "DocumentReference", rid)
        return _see_other(f"{HOME}?message=supprime")
    except FhirError as exc:
        if exc.status in (403, 404, 422):  # the service answers "not found" for a document she may only read
            return _message_page(request, session, "Document non supprimé", NOT_DELETED, exc.status)
        return error_page(request, session, exc)


# --- upload ----------------------------------------------------------------------------------------------


@dataclass
class Upload:
    """What an upload form carried: its fields, the file's bytes (at most the limit) and whether it was
    larger than the limit."""

    fields: dict[str, str]
    filename: str | None = None
    content: bytes = b""
    too_large: bool = False
    malformed: bool = False


class _UploadParser:
    """A streaming multipart/form-data reader: fields up to 8 KiB each, one file kept up to `limit` bytes.
    Past the limit the file's bytes are dropped and reading goes on, so that the browser gets the answer and
    the form's other fields are kept, until `drain` bytes have come; then it stops reading altogether."""

    MAX_FIELD = 8 * 1024
    MAX_PARTS = 10

    def __init__(self, limit: int, drain: int) -> None:
        self.limit = limit
        self.drain = drain
        self.result = Upload({})
        self._buffer = bytearray()
        self._file = bytearray()
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name = ""
        self._is_file = False
        self._parts = 0
        self._files = 0
        self._skip = False

    def on_part_begin(self) -> None:
        self._buffer = bytearray()
        self._disposition = b""
        self._skip = False
        self._parts += 1
        if self._parts > self.MAX_PARTS:
            raise FormParserError("too many parts")

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value[:4096]
        self._header_name = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if name is None:
            raise FormParserError("a part without a name")
        self._name = name.decode("utf-8", "replace")[:64]
        self._is_file = b"filename" in options
        if self._is_file:
            self._files += 1
            self._skip = self._files > 1 or self._name != "fichier"
            if not self._skip:
                self.result.filename = options[b"filename"].decode("utf-8", "replace")[:255]

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._skip:
            return
        if self._is_file:
            if self.result.too_large:
                return
            if len(self._file) + (end - start) > self.limit:
                self.result.too_large = True
                self._file = bytearray()
                return
            self._file += data[start:end]
            return
        if len(self._buffer) + (end - start) > self.MAX_FIELD:
            raise FormParserError("field too large")
        self._buffer += data[start:end]

    def on_part_end(self) -> None:
        if self._skip:
            return
        if self._is_file:
            self.result.content = bytes(self._file)
        elif self._name not in self.result.fields:
            self.result.fields[self._name] = self._buffer.decode("utf-8", "replace")

    async def read(self, request: Request) -> Upload:
        ctype, options = parse_options_header(request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            self.result.malformed = True
            return self.result
        callbacks: MultipartCallbacks = {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }
        parser = MultipartParser(boundary, callbacks)
        received = 0
        try:
            async for chunk in request.stream():
                received += len(chunk)
                parser.write(chunk)
                if self.result.too_large and received > self.drain:
                    return self.result  # enough: stop reading
            parser.finalize()
        except FormParserError:
            self.result.malformed = True
        except PayloadTooLarge:  # the app's limit on any request body (api/middleware.py)
            self.result.too_large = True
        return self.result


def _too_large_message(limit: int) -> str:
    return f"Ce fichier est trop volumineux : {limit / (1024 * 1024):.0f} Mo au plus."


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
            "title": "Ajouter un document" if w.own else f"Ajouter un document pour {w.child}",
            "upload_error": error,
            "error_field": error_field,
            "doc_title": title,
            "type_code": type_code,
            "types": [(code, labels[1]) for code, labels in documents.UPLOAD_TYPES.items()],
            "limit_mb": f"{limit / (1024 * 1024):.0f}",
            "accepted": ACCEPTED,
            "upload_url": UPLOAD,
            "home": HOME,
        },
        status=status,
    )


@router.get(UPLOAD)
async def upload_form(request: Request) -> Response:
    session: Session | None = None
    try:
        session, w = await _whose(request)
        if space.unreachable(await space.status_of(w), w):
            return _see_other(HOME)  # the list says why nothing can be added now
        return _upload_page(request, session, w)
    except FhirError as exc:
        return error_page(request, session, exc)


def _upload_refusal(exc: FhirError, limit: int) -> tuple[str, str]:
    """(French sentence, field in error) for a refusal of `documents.upload`."""
    if isinstance(exc, PayloadTooLarge) or exc.status == 413:
        return _too_large_message(limit), "fichier"
    if exc.expression == "title":
        return "Donnez un titre au document.", "titre"
    if exc.expression == "type":
        return "Choisissez le type de document.", "type"
    detail = french(exc.message).removeprefix("Binary.data : ").rstrip(". ")
    if exc.expression == "file" or exc.expression == "Binary.data":
        return f"Ce fichier n'a pas été ajouté : {ACCEPTED} sont acceptés. Détail : {detail}.", "fichier"
    return f"Ce document n'a pas pu être ajouté : {detail}.", ""


@router.post(UPLOAD)
async def upload(request: Request) -> Response:
    session: Session | None = None
    try:
        session, w = await _whose(request)
        if space.unreachable(await space.status_of(w), w):
            return _see_other(HOME)  # the list says why nothing can be added now
        limit = w.ctx.runtime.settings.upload_max_bytes
        sent = await _UploadParser(limit, drain=4 * limit + 64 * 1024).read(request)
        if sent.malformed and not sent.fields:
            return _upload_page(
                request, session, w, error="Le formulaire n'a pas pu être lu : recommencez.", status=400
            )
        if not check_csrf(request, session, sent.fields.get("csrf", "")[:200]):
            return _forged(request, session)
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
                error="Le formulaire n'a pas pu être lu : recommencez.",
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
                error=f"Le titre contient un caractère invisible qui change l'ordre d'affichage du texte ({hidden}) : "
                "retirez-le.",
                error_field="titre",
                status=422,
            )
        if not sent.filename and not sent.content:
            return _upload_page(
                request,
                session,
                w,
                **again,
                error="Choisissez un fichier.",
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
            message, field = _upload_refusal(exc, limit)
            return _upload_page(
                request, session, w, **again, error=message, error_field=field, status=exc.status
            )
        return _see_other(f"{HOME}?message=ajoute#doc-{stored.resource_id}")
    except FhirError as exc:
        return error_page(request, session, exc)


# --- wiring ----------------------------------------------------------------------------------------------


def install_documents_pages(app: FastAPI) -> None:
    """Add the pages and the answer to a session that is not a holder's."""
    app.include_router(router)

    @app.exception_handler(NotHolder)
    async def not_holder(request: Request, exc: NotHolder) -> Response:
        session = await current_session(request)
        return _message_page(
            request,
            session,
            "Page réservée au titulaire",
            "Cette page montre les documents de votre propre espace santé : elle est réservée à son titulaire.",
            403,
            link="/compte/securite",
        )
