"""The rules of Binary and DocumentReference in the resource service (record/resources.Rule): what a write, a
read, a delete and a PATCH of either adds to the generic rules. record/interactions.py dispatches to them, so a
single request and a Bundle entry take the same path: a DocumentReference carrying its content inline
(`attachment.data`) is an ITI-105 Simplified Publish wherever it comes from."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson

from espace_sante.access.policy import Decision, decide, needs_facts
from espace_sante.context import Context
from espace_sante.errors import FhirError, Forbidden, InvalidResource, Issue, NotFound
from espace_sante.fhir import compartment, pdsm
from espace_sante.fhir.searchquery import SearchRequest
from espace_sante.fhir.validation import validate_resource
from espace_sante.record import resources as fhir
from espace_sante.record.documents import content, metadata, submission
from espace_sante.storage import access as access_store
from espace_sante.storage import documents as docs_store
from espace_sante.storage import resources as store
from espace_sante.storage import visibility
from espace_sante.storage.db import Conn


class BinaryRule(fhir.Rule):
    """A Binary's bytes go to the blob store, encrypted, never to the resource tables; a deposited document's
    content is not rewritten; a read asking for the resource gets its content back in `data`, any other read
    the content itself (ITI-68, content.retrieve)."""

    serves_content = True

    async def check_write(
        self,
        conn: Conn,
        ctx: Context,
        decision: Decision,
        space_id: uuid.UUID,
        rid: str,
        body: dict[str, Any],
        previous: store.Current | None,
    ) -> None:
        if previous is not None and not previous.deleted:
            await metadata.check_content_update(conn, space_id, rid)

    def names_its_patient(self, body: Mapping[str, Any]) -> bool:
        # A Binary may have no securityContext (a transaction puts it in the space of the document that points
        # at it); its id already fixes its space.
        return bool(compartment.patient_references(body))

    async def write(
        self,
        conn: Conn,
        ctx: Context,
        decision: Decision,
        space_id: uuid.UUID,
        rid: str,
        body: dict[str, Any],
        method: str,
        previous: store.Current | None,
    ) -> store.Stored:
        taken = await content.take_content(conn, ctx, space_id, rid, body)
        stored = await super().write(conn, ctx, decision, space_id, rid, body, method, previous)
        await content.attach(conn, stored, taken)
        return stored

    async def shown(self, conn: Conn, ctx: Context, decision: Decision, found: store.Stored) -> store.Stored:
        return await content.inline(conn, ctx, decision, found)


class DocumentRule(fhir.Rule):
    """PDSm's rules of a document: the classes a profession may deposit, the author and content a person may
    give, security labels of the right systems, one document per uniqueId in a record, the metadata rules on
    update, the hidden documents' schedule and replacement after a write, its content deleted with it, PATCH
    of its metadata, ITI-105 for a create carrying its content, and ITI-67's refusal of a professional's
    unknown search parameter."""

    offers = fhir.Rule.offers | {"patch"}

    def parse_search(self, ctx: Context, rtype: str, pairs: Sequence[tuple[str, str]]) -> SearchRequest:
        # A professional's DocumentReference search is ITI-67, which names the patient: an unknown parameter
        # there is a mistake to report, never a filter to drop (issue 16).
        return fhir.parse_request(ctx, rtype, pairs, refuse_unknown=ctx.actor.kind == "practitioner")

    async def check_body(
        self,
        conn: Conn,
        ctx: Context,
        decision: Decision,
        space_id: uuid.UUID,
        rid: str,
        body: dict[str, Any],
    ) -> None:
        _check_category(decision, body)
        await _check_links(conn, ctx, body, space_id, rid)

    async def check_write(
        self,
        conn: Conn,
        ctx: Context,
        decision: Decision,
        space_id: uuid.UUID,
        rid: str,
        body: dict[str, Any],
        previous: store.Current | None,
    ) -> None:
        if previous is None:
            metadata.check_label_systems(body)
            await _check_unique_document(conn, body, space_id)
        elif not previous.deleted:
            await metadata.check_update(conn, ctx, space_id, rid, body)

    async def after_write(self, conn: Conn, ctx: Context, stored: store.Stored, body: dict[str, Any]) -> None:
        await metadata.after_document_write(conn, ctx, stored, body)

    async def after_delete(
        self, conn: Conn, ctx: Context, decision: Decision, space_id: uuid.UUID, rid: str
    ) -> None:
        # The document's content goes with it (a holder who deletes her upload expects the file gone). Its
        # bytes stay under the space's key for the history until the space is destroyed.
        removal = decide(ctx.actor, "delete", "Binary")
        if removal.allowed:
            removal = await fhir.scoped(conn, ctx, removal, [space_id])
            for binary in await docs_store.content_ids(conn, space_id, rid):
                # Content the actor does not reach (another document's, or none) stays.
                with contextlib.suppress(NotFound):
                    await fhir.delete_in(conn, ctx, removal, binary, rule=BINARY)
        await docs_store.unhide(conn, space_id, rid)

    async def create_in(
        self,
        conn: Conn,
        ctx: Context,
        decision: Decision,
        body: dict[str, Any],
        if_none_exist: str | None,
        *,
        assigned: tuple[uuid.UUID, str] | None = None,
    ) -> fhir.Written:
        if has_inline_content(body):
            existing = await fhir.existing_match(conn, ctx, "DocumentReference", if_none_exist)
            if existing is not None:
                return fhir.Written(existing, False)
            return await publish_in(conn, ctx, decision, body, assigned=assigned)
        return await super().create_in(conn, ctx, decision, body, if_none_exist, assigned=assigned)

    async def patch_in(
        self,
        conn: Conn,
        ctx: Context,
        decision: Decision,
        rid: str | None,
        condition: str | None,
        payload: Any,
        json_patch: bool,
        expected: int | None,
    ) -> store.Stored:
        return await metadata.patch_in(conn, ctx, decision, rid, condition, payload, json_patch, expected)


BINARY = BinaryRule()
DOCUMENT = DocumentRule()


async def _check_unique_document(conn: Conn, body: dict[str, Any], space_id: uuid.UUID) -> None:
    """A document's uniqueId (masterIdentifier) names one document in a record (XDS: a second document with
    the same uniqueId is refused; a replacement carries a new one). A resent submission never gets here: it
    is recognised by its SubmissionSet's uniqueId first (record/bundles.py)."""
    master = body.get("masterIdentifier")
    if not isinstance(master, dict) or not isinstance(master.get("value"), str):
        return
    system = master.get("system") or ""
    if await docs_store.identifier_exists(conn, space_id, "DocumentReference", system, master["value"]):
        raise InvalidResource(
            f"DocumentReference.masterIdentifier : un document de ce dossier porte déjà l'identifiant « "
            f"{master['value']} » / a document of this record already has this uniqueId",
            expression="DocumentReference.masterIdentifier",
        )


# --- who signs a document and what it holds, for people ---------------------------------------------


def _document_classes(body: Mapping[str, Any]) -> list[str]:
    classes = []
    for concept in body.get("category") or ():
        for coding in concept.get("coding") or () if isinstance(concept, dict) else ():
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                classes.append(coding["code"])
    return classes


async def _check_links(conn: Conn, ctx: Context, body: dict[str, Any], space_id: uuid.UUID, rid: str) -> None:
    """A document's author and content, for people (SECURITY 5.1.2, and the review of 2026-11-24):

    - the author is the person writing: a professional names themselves, a holder or a representative the
      holder; the server adds it when absent, and refuses someone else;
    - a Binary is the content of one document only, and a person's document takes as content only a Binary
      written in the same transaction or already its own: pointing a new document at another document's
      content would give its reader and its author's rights over that content."""
    if not needs_facts(ctx.actor):
        return
    actor = ctx.actor
    own = (
        f"Practitioner/{actor.practitioner_id}"
        if actor.kind == "practitioner"
        else f"Patient/{(await _patient_of_space(conn, space_id))}"
    )
    authors = body.get("author")
    if not isinstance(authors, list) or not authors:
        body["author"] = [{"reference": own}]
    else:
        for i, author in enumerate(authors):
            ref = author.get("reference") if isinstance(author, dict) else None
            kind = ref.split("/", 1)[0] if isinstance(ref, str) else ""
            if kind in ("Practitioner", "Patient", "RelatedPerson", "PractitionerRole") and ref != own:
                raise InvalidResource(
                    f"DocumentReference.author[{i}] : vous ne pouvez signer qu'en votre nom ({own}) / you may "
                    f"only author as yourself",
                    expression=f"DocumentReference.author[{i}]",
                )
        if not any(isinstance(a, dict) and a.get("reference") == own for a in authors):
            authors.append({"reference": own})
    if actor.kind == "practitioner":
        _check_contained_authors(body, actor.id)
    else:
        _check_person_authors(body)
    for i, item in enumerate(body.get("content") or []):
        url = item.get("attachment", {}).get("url") if isinstance(item, dict) else None
        if not isinstance(url, str):
            continue
        target = fhir.referenced_id(url) if "Binary/" in url else None
        if target is None:
            continue
        where = f"DocumentReference.content[{i}].attachment.url"
        owners = await visibility.documents_pointing_at(conn, space_id, target)
        if any(owner != rid for owner in owners):
            raise InvalidResource(
                f"{where} : ce contenu appartient à un autre document / this content belongs to another document",
                expression=where,
            )
        if rid not in owners and not await store.created_here(conn, space_id, "Binary", target):
            raise InvalidResource(
                f"{where} : le contenu doit être déposé avec le document (même transaction) / the content "
                "must be submitted with the document (same transaction)",
                expression=where,
            )


#: A professional's national identifiers as PDSm authors carry them: the RPPS, or the IdNat_PS ("8" + RPPS).
_RPPS_SYSTEM = "https://rpps.esante.gouv.fr"
_IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"


def _contained_authors(body: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(index, contained resource) of each author given as `#id` (PDSm contains its authors)."""
    contained = {
        c.get("id"): c
        for c in body.get("contained") or ()
        if isinstance(c, dict) and isinstance(c.get("id"), str)
    }
    for i, author in enumerate(body.get("author") or ()):
        ref = author.get("reference") if isinstance(author, dict) else None
        if isinstance(ref, str) and ref.startswith("#"):
            yield i, contained.get(ref[1:])


def _check_contained_authors(body: dict[str, Any], rpps: str) -> None:
    """PDSm authors are contained resources (`#id`): a professional may name only themselves there too."""
    for i, target in _contained_authors(body):
        named_by = [target]
        if isinstance(target, dict) and target.get("resourceType") == "PractitionerRole":
            # The role's own IdNat_PS counts as much as its practitioner's (PDSm accepts either; review D4).
            inner = (target.get("practitioner") or {}).get("reference")
            if isinstance(inner, str) and inner.startswith("#"):
                named_by += [t for j, t in _contained_authors({**body, "author": [{"reference": inner}]})]
        ids = {
            (ident.get("system"), ident.get("value"))
            for resource in named_by
            if isinstance(resource, dict)
            and resource.get("resourceType") in ("Practitioner", "PractitionerRole")
            for ident in resource.get("identifier") or ()
            if isinstance(ident, dict)
        }
        named = {v for s_, v in ids if s_ == _RPPS_SYSTEM} | {
            v[1:] for s_, v in ids if s_ == _IDNPS_SYSTEM and isinstance(v, str) and v.startswith("8")
        }
        if named and named != {rpps}:
            raise InvalidResource(
                f"DocumentReference.author[{i}] : vous ne pouvez signer qu'en votre nom (RPPS {rpps}) / you may "
                "only author as yourself",
                expression=f"DocumentReference.author[{i}]",
            )


def _check_person_authors(body: dict[str, Any]) -> None:
    """A holder's (or representative's, or app's) document is theirs: no contained professional or organisation
    as its author (review of 2026-12-03, D5: a prescription "signed" by her doctor)."""
    for i, target in _contained_authors(body):
        if isinstance(target, dict) and target.get("resourceType") in (
            "Practitioner",
            "PractitionerRole",
            "Organization",
        ):
            raise InvalidResource(
                f"DocumentReference.author[{i}] : vous ne pouvez signer qu'en votre nom / you may only author as "
                "yourself",
                expression=f"DocumentReference.author[{i}]",
            )


async def _patient_of_space(conn: Conn, space_id: uuid.UUID) -> str:
    found = await access_store.patient_of_space(conn, space_id)
    return found or ""


def _check_category(decision: Decision, body: Mapping[str, Any]) -> None:
    """A professional deposits only the document classes the habilitation matrix lets their profession write."""
    if decision.write_categories is None:
        return
    classes = _document_classes(body)
    if not classes or not all(decision.may_write_category(c) for c in classes):
        raise Forbidden(
            "votre profession ne peut pas déposer cette classe de document (matrice d'habilitation) / your "
            "profession may not deposit this class of document (habilitation matrix): "
            + (", ".join(classes) or "aucune classe / no class")
        )


# --- ITI-105 Simplified Publish --------------------------------------------------------------------------


def has_inline_content(body: Any) -> bool:
    """A DocumentReference carrying its document in `attachment.data` (ITI-105, PDSm_SimplifiedPublish)."""
    return isinstance(body, dict) and any(
        isinstance(c, dict) and isinstance(c.get("attachment"), dict) and "data" in c["attachment"]
        for c in body.get("content") or ()
    )


async def publish_in(
    conn: Conn,
    ctx: Context,
    decision: Decision,
    body: dict[str, Any],
    *,
    assigned: tuple[uuid.UUID, str] | None = None,
) -> fhir.Written:
    """ITI-105 inside the caller's transaction `conn`, with the decision to create a DocumentReference: the
    document is checked against PDSm_SimplifiedPublish; each `attachment.data` becomes a Binary of the same
    record (content checks, blob store, trace), the attachment points at it with the size and SHA-1 the server
    computed where the client gave none, and a declared size or hash that is not the content's is refused.
    The caller clears `ctx.deposits` at the start of its transaction and discards the uploads of one that did
    not commit (documents.discard_unrecorded)."""
    report = pdsm.check_document_reference(
        body,
        lenient=ctx.runtime.settings.documents_lenient_codes,
        simplified=True,
        by_patient=content.is_person(ctx),
    )
    doc: dict[str, Any] = orjson.loads(orjson.dumps(body))
    await fhir.resolve_references(conn, ctx, doc)
    space_id = assigned[0] if assigned is not None else await fhir.space_for_new(conn, ctx, doc)
    subject = (doc.get("subject") or {}).get("reference")
    contents = [
        (i, c["attachment"])
        for i, c in enumerate(doc.get("content") or ())
        if isinstance(c, dict) and isinstance(c.get("attachment"), dict) and "data" in c["attachment"]
    ]
    binary_decision = await fhir.authorize(ctx, "create", "Binary")
    for i, attachment in contents:
        where = f"DocumentReference.content[{i}].attachment.data"
        data = attachment.pop("data")
        raw = _decoded(data, where)
        binary: dict[str, Any] = {"resourceType": "Binary", "data": data}
        if isinstance(attachment.get("contentType"), str):
            binary["contentType"] = attachment["contentType"]
        if isinstance(subject, str):
            binary["securityContext"] = {"reference": subject}
        rid = compartment.new_resource_id(space_id)
        try:
            validate_resource(binary, expected_type="Binary")
            await BINARY.create_in(conn, ctx, binary_decision, binary, None, assigned=(space_id, rid))
        except FhirError as exc:
            raise _said_of_attachment(exc, i) from None
        attachment["url"] = f"Binary/{rid}"
        attachment.setdefault("size", len(raw))
        attachment.setdefault(
            "hash", base64.b64encode(hashlib.sha1(raw, usedforsecurity=False).digest()).decode()
        )
    written = await fhir.create_in(conn, ctx, decision, doc, None, rule=DOCUMENT, assigned=assigned)
    submission.check_attachments(ctx, doc)
    return fhir.Written(written.stored, True, report.warnings)


def _decoded(data: Any, where: str) -> bytes:
    if not isinstance(data, str):
        raise InvalidResource(f"{where} : base64 attendu / base64 expected", expression=where)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidResource(f"{where} : base64 invalide / invalid base64", expression=where) from None


def _said_of_attachment(exc: FhirError, index: int) -> FhirError:
    """An error of the Binary made from attachment `index`, said about the DocumentReference the client sent."""

    def fix(text: str | None) -> str | None:
        if text is None:
            return None
        return text.replace("Binary.data", f"DocumentReference.content[{index}].attachment.data").replace(
            "Binary.securityContext", "DocumentReference.subject"
        )

    issues = [
        Issue(fix(i.diagnostics) or "", i.code, i.severity, fix(i.expression)) for i in exc.all_issues()
    ]
    return FhirError(fix(exc.message) or exc.message, exc.status, exc.code, issues[0].expression, issues)
