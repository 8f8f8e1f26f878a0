"""The documents as « Mes documents » shows them (web/holder/documents.py): one line per document, its
title, class and type in words (the French value sets), its date in Paris time, its author's name, whether it
is the holder's own upload and whether it is masked to professionals, in the page's language (web/i18n.py).
The value sets' words are French: the classes and the holder's own types have their English in the
catalogue; the other types (JDV_J07's, a hundred and more) are shown as the value set words them. No I/O: the
page gives it what record/documents/listing.py read."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from espace_sante import clock
from espace_sante.access.policy import MASKED_FROM_PROFESSIONALS
from espace_sante.fhir import pdsm, valuesets
from espace_sante.record import documents
from espace_sante.record.documents.listing import Listing
from espace_sante.web import i18n
from espace_sante.web.i18n import N_
from espace_sante.web.i18n import gettext as _

#: What a document id may look like in a page address (anything else is "not found" at once).
DOCUMENT_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

#: The words of the document classes (JDV_J06, fhir/data) and of the holder's own types (UPLOAD_TYPES in
#: record/documents/publish.py), as those lists word them: marked so that the catalogue holds their English,
#: which `_words` finds.
VALUE_SET_WORDS = (
    N_("Compte rendu"),
    N_("Synthèse"),
    N_("Imagerie médicale"),
    N_("Prescription"),
    N_("Dispensation"),
    N_("Plan de soins, protocole de soins"),
    N_("Traitement administré"),
    N_("Certificat, déclaration"),
    N_("Données de remboursement"),
    N_("Autres documents déposés par le patient"),
    N_("Document de gestion"),
    N_("Document technique"),
    N_("Résultat de biologie"),
    N_("Imagerie"),
    N_("Ordonnance ou soins"),
    N_("Certificat"),
    N_("Document administratif"),
    N_("Autre document"),
    N_("Compte rendu (consultation, hospitalisation)"),
    N_("Résultats d'analyses"),
    N_("Imagerie (radio, échographie…)"),
    N_("Ordonnance, traitement, document de soins"),
)


def words(display: str) -> str:
    """A value set's French word in the page's language, when the catalogue has it (as written otherwise)."""
    return _(display) if display else ""


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
    """ "12 juin 2026" (in Paris time, in the page's language) from a FHIR instant, dateTime or date; "" when
    absent or unreadable."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        if len(value) <= 10:
            parts = [int(p) for p in value.split("-")]
            if len(parts) == 1:
                return str(parts[0])
            if len(parts) == 2:
                return i18n.month_text(parts[0], parts[1])
            when = date(parts[0], parts[1], parts[2])
        else:
            instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
            when = clock.day_of(instant)
    except (ValueError, IndexError):
        return ""
    return i18n.date_text(when)


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
    holder: str,
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
    return (", ".join(names) if names else _("Un professionnel de santé")), False


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
    return words(kind), words(detail) if detail != kind else ""


def title_of(body: Mapping[str, Any]) -> str:
    description = body.get("description")
    if isinstance(description, str) and description.strip():
        return description.strip()
    for content in body.get("content") or ():
        attachment = content.get("attachment") if isinstance(content, dict) else None
        if isinstance(attachment, dict) and isinstance(attachment.get("title"), str) and attachment["title"]:
            return str(attachment["title"]).strip()
    return _("Document sans titre")


def binary_of(body: Mapping[str, Any]) -> str | None:
    """The Binary id of `content[0].attachment.url` (`Binary/<id>`, relative or absolute), or None."""
    contents = body.get("content") or ()
    first = contents[0] if isinstance(contents, list) and contents and isinstance(contents[0], dict) else {}
    url = (first.get("attachment") or {}).get("url")
    if not isinstance(url, str) or "Binary/" not in url:
        return None
    rid = url.rsplit("Binary/", 1)[1].split("/", 1)[0].split("?", 1)[0]
    return rid if DOCUMENT_ID.match(rid) else None


def items(listing: Listing, ins: str, *, own: bool) -> list[Item]:
    """The listed documents as the page shows them, in the listing's order (newest first). `ins` is the
    space holder's INS, `own` whether she reads her own space (else her child's, as his representative)."""
    directory: dict[str, dict[str, Any]] = {}
    for entry in listing.authors:
        if entry.body is not None:
            directory[f"{entry.resource_type}/{entry.resource_id}"] = orjson.loads(entry.body)
    shown = []
    for stored in listing.documents:
        if stored.body is None:
            continue
        body = orjson.loads(stored.body)
        author, mine = _author(
            body, ins, listing.patient_id, directory, _("Vous") if own else _("Ses représentants légaux")
        )
        _labels, flags = pdsm.security_flags(body)
        kind, detail = _kind(body)
        shown.append(
            Item(
                id=stored.resource_id,
                title=title_of(body),
                kind=kind or _("Document"),
                type=detail,
                date=day(body.get("date")) or day(stored.last_updated.isoformat()),
                author=author,
                own=mine,
                masked=MASKED_FROM_PROFESSIONALS in flags,
            )
        )
    return shown
