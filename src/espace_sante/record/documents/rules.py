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
from typing import Any

import orjson

from espace_sante.access.policy import Decision, decide
from espace_sante.context import Context
from espace_sante.errors import FhirError, InvalidResource, Issue, NotFound
from espace_sante.fhir import compartment, pdsm
from espace_sante.fhir.validation import validate_resource
from espace_sante.record import resources as fhir
from espace_sante.record.documents import content, metadata, submission
from espace_sante.storage import documents as docs_store
from espace_sante.storage import resources as store
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
    """PDSm's rules of a document: security labels of the right systems, one document per uniqueId in a record,
    the metadata rules on update, the hidden documents' schedule and replacement after a write, its content
    deleted with it, PATCH of its metadata, and ITI-105 for a create carrying its content."""

    offers = fhir.Rule.offers | {"patch"}

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
