"""ITI-105 Simplified Publish as a single request, and the holder's uploads from the portal: both are one
transaction of a DocumentReference and the Binary of its content, through rules.publish_in, the path of a
Bundle entry carrying its content."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from espace_sante.content.checks import ContentRefused, check_content
from espace_sante.context import Context
from espace_sante.errors import Forbidden, InvalidResource, Issue, NotFound, PayloadTooLarge
from espace_sante.fhir import pdsm
from espace_sante.fhir.validation import validate_resource
from espace_sante.record import resources as fhir
from espace_sante.record.documents import integrity, rules
from espace_sante.record.documents.content import PERSON_KINDS, size_words
from espace_sante.storage import people
from espace_sante.storage import resources as store
from espace_sante.storage.db import Conn


async def publish_simplified(ctx: Context, body: dict[str, Any]) -> tuple[store.Stored, list[Issue]]:
    """ITI-105: one DocumentReference with its document in `attachment.data` (PDSm_SimplifiedPublish), in one
    transaction: the content becomes a Binary and the attachment points at it (rules.publish_in, the same path
    as a Bundle entry carrying its content). The stored document and the warnings of lenient mode."""
    decision = await fhir.authorize(ctx, "create", "DocumentReference")
    validate_resource(body, expected_type="DocumentReference")

    async def run(conn: Conn) -> fhir.Written:
        ctx.deposits.clear()  # a retried transaction starts again from nothing
        return await rules.publish_in(conn, ctx, decision, body)

    try:
        written = await ctx.runtime.db.interaction("mhd_publish", run)
    finally:
        if ctx.uploads:
            await integrity.discard_unrecorded(ctx)
    return written.stored, written.warnings


#: The holder's own documents (TRE_A03 class 90, types DOCPAT of TRE_A05), as offered on the upload form.
UPLOAD_TYPES: dict[str, tuple[str, str]] = {
    "DOCPAT03": ("Compte rendu", "Compte rendu (consultation, hospitalisation)"),
    "DOCPAT05": ("Résultat de biologie", "Résultats d'analyses"),
    "DOCPAT04": ("Imagerie", "Imagerie (radio, échographie…)"),
    "DOCPAT02": ("Ordonnance ou soins", "Ordonnance, traitement, document de soins"),
    "DOCPAT07": ("Certificat", "Certificat"),
    "DOCPAT09": ("Document administratif", "Document administratif"),
    "EXPPAT_2": ("Autre document", "Autre document"),
}
_A05 = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
_A03 = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
_A00 = "https://mos.esante.gouv.fr/NOS/TRE_A00-ProducteurDocNonPS/FHIR/TRE-A00-ProducteurDocNonPS"
_A11 = "https://mos.esante.gouv.fr/NOS/TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode"
_CONFIDENTIALITY = "https://mos.esante.gouv.fr/NOS/TRE_A08-HL7Confidentiality/FHIR/TRE-A08-HL7Confidentiality"
#: JDV_J10 format codes of unstructured documents (IHE XDS-SD and its French extensions). PNG has none in the
#: French value set: it takes IHE's "the MIME type is enough".
_FORMATS = {
    "pdf": (_A11, "urn:ihe:iti:xds-sd:pdf:2008"),
    "text": (_A11, "urn:ihe:iti:xds-sd:text:2008"),
    "jpeg": (_A11, "urn:ihe:iti-fr:xds-sd:jpeg:2010"),
    "png": (
        "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
        "urn:ihe:iti:xds:2017:mimeTypeSufficient",
    ),
}


async def upload(
    ctx: Context,
    *,
    content: bytes,
    title: str,
    type_code: str,
    when: datetime | None = None,
    for_ins: str | None = None,
) -> store.Stored:
    """A holder's (or a minor's representative's) upload from the portal: the metadata PDSm asks for, built
    here, and the same path as ITI-105 (checks, blob store, trace). A representative names the child
    (`for_ins`); the document is the child's own deposit (PDSm: a patient's deposit has the patient as its
    author), and the trace names the representative who made it. Whether they may write into that space is
    the policy's decision on the write, as for any deposit."""
    title = " ".join(title.split())[:200]
    if not title:
        raise InvalidResource("titre obligatoire / a title is required", expression="title")
    if type_code not in UPLOAD_TYPES:
        raise InvalidResource("type de document inconnu / unknown document type", expression="type")
    if len(content) > ctx.runtime.settings.upload_max_bytes:
        raise PayloadTooLarge(
            f"fichier trop volumineux : {size_words(ctx.runtime.settings.upload_max_bytes)} au plus / file larger than "
            f"{ctx.runtime.settings.upload_max_bytes} bytes"
        )
    try:
        checked = await asyncio.to_thread(
            check_content, content, max_size=ctx.runtime.settings.upload_max_bytes, allowed=PERSON_KINDS
        )
    except ContentRefused as exc:
        raise InvalidResource(str(exc), expression="file") from None
    ins = ctx.actor.subject if ctx.actor.kind == "app" else ctx.actor.id
    if ctx.actor.kind == "representative":
        if not for_ins:
            raise Forbidden(
                "précisez l'enfant concerné / name the child"
            )  # the portal passes the child's INS
        ins = for_ins
    elif for_ins and for_ins != ins:
        raise Forbidden(
            "seul un représentant légal dépose pour un autre / only a legal representative deposits "
            "for someone else"
        )
    ref = await ctx.runtime.db.read("documents_upload_patient", people.patient_by_ins, ins)
    if ref is None:
        raise NotFound("dossier introuvable / record not found")
    now = (when or datetime.now(UTC)).isoformat(timespec="seconds")
    fmt_system, fmt_code = _FORMATS[checked.kind]
    body: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "contained": [
            {
                "resourceType": "Patient",
                "id": "auteur",
                "identifier": [{"system": f"urn:oid:{pdsm.INS_NIR_OID}", "value": ins}],
            },
            # The custodian of a holder's own document is the service that keeps the record (PDSm custodian 1..1).
            {"resourceType": "Organization", "id": "hebergeur", "name": "Mon espace santé"},
        ],
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "status": "current",
        "type": {"coding": [{"system": _A05, "code": type_code, "display": UPLOAD_TYPES[type_code][0]}]},
        "category": [
            {"coding": [{"system": _A03, "code": "90", "display": "Autres documents déposés par le patient"}]}
        ],
        "subject": {"reference": f"Patient/{ref.patient_id}"},
        "date": now,
        "author": [{"reference": "#auteur"}],
        "custodian": {"reference": "#hebergeur"},
        "description": title,
        "securityLabel": [{"coding": [{"system": _CONFIDENTIALITY, "code": "N", "display": "Normal"}]}],
        "content": [
            {
                "attachment": {
                    "contentType": checked.media_type,
                    "language": "fr-FR",
                    "data": base64.b64encode(content).decode(),
                    "title": title,
                    "creation": now,
                },
                "format": {"system": fmt_system, "code": fmt_code},
            }
        ],
        "context": {
            "period": {"start": now},
            "facilityType": {
                "coding": [
                    {"system": _A00, "code": "EXP_PATIENT", "display": "Expression personnelle du patient"}
                ]
            },
            "practiceSetting": {
                "coding": [
                    {"system": _A00, "code": "EXP_PATIENT", "display": "Expression personnelle du patient"}
                ]
            },
            "sourcePatientInfo": {"reference": "#auteur"},
        },
    }
    stored, _ = await publish_simplified(ctx, body)
    return stored
