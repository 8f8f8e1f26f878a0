"""Documents: the shared medical record's content path (IHE MHD in the French PDSm profile).

Every deposit takes this path, whoever sends it: an ITI-65 submission Bundle, an ITI-105 simplified publish, a
plain FHIR write of a Binary, or a holder's upload from the portal. Here:

- a Binary's bytes are checked from the bytes themselves (content/checks.py), encrypted with the space's data
  key and put in the blob store before the transaction commits; the resource tables keep only the Binary's
  metadata, and `binary_content` says which blob each version holds. An upload intent committed before the put
  lets the collector remove what a rollback or a crash left behind (`collect_orphans`);
- a submission's documents are checked against the hash, size and type of the content sent with them;
- document metadata changes (PDSm "mise à jour des métadonnées"): only `status`, `securityLabel` and the
  `isArchived` extension, each by whom the rules allow (`patch`);
- documents hidden from the holder (INVISIBLE_PATIENT) are released by their author or the médecin traitant,
  and otherwise by the scheduled job after a month (R1111-53), the holder being told after two weeks.

Rules of who may see what stay in access/policy.py; this module asks it like every other service."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ..access.policy import HIDDEN_FROM_HOLDER, MASKED_FROM_PROFESSIONALS, Decision, decide
from ..content.checks import KINDS, Checked, ContentRefused, check_content, media_types_for
from ..context import Context
from ..crypto import DecryptionFailed, blob_aad, derive_subkey
from ..errors import (
    BadRequest,
    FhirError,
    Forbidden,
    InvalidResource,
    Issue,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
)
from ..fhir import pdsm
from ..fhir.validation import validate_resource
from ..logs import get_logger
from ..storage import blobcrypt
from ..storage import documents as docs_store
from ..storage import resources as store
from ..storage.blobs import TEMP_PREFIX, BlobMissing, BlobStoreError, LocalBlobStore
from ..storage.db import Conn
from . import fhir, trace

log = get_logger(__name__)

#: What a person may upload from the portal or an app: no CDA (structured documents come from professionals'
#: software), PDFs, photos and scans, plain text.
PERSON_KINDS = frozenset({"pdf", "jpeg", "png", "text"})
ARCHIVED_URL = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived"
_ARCHIVED_URLS = (ARCHIVED_URL, "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/isArchived")


# --- content of Binaries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Content:
    """Content accepted and stored for one Binary write, attached to its version once the version exists."""

    blob: docs_store.BlobRow
    checked: Checked


def _person(ctx: Context) -> bool:
    return ctx.actor.kind in ("holder", "representative", "app")


def _limit(ctx: Context) -> int:
    settings = ctx.runtime.settings
    return settings.upload_max_bytes if _person(ctx) else settings.document_max_bytes


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} Mo" if n >= 1024 * 1024 else f"{n} octets"


async def take_content(
    conn: Conn, ctx: Context, space_id: uuid.UUID, binary_id: str, body: dict[str, Any]
) -> Content:
    """Take `Binary.data` out of `body`, check it, and store it encrypted: the body keeps only metadata."""
    data = body.pop("data", None)
    if not isinstance(data, str) or not data:
        raise InvalidResource(
            "Binary.data : le contenu du document est obligatoire / the document's content is required",
            expression="Binary.data",
        )
    limit = _limit(ctx)
    if len(data) > (limit + 2) // 3 * 4 + 4:
        raise PayloadTooLarge(
            f"Binary.data : document trop volumineux (plus de {_mib(limit)}) / document larger than {limit} bytes"
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidResource(
            "Binary.data : base64 invalide / invalid base64", expression="Binary.data"
        ) from None
    declared = body.get("contentType")
    try:
        checked = await asyncio.to_thread(
            check_content,
            raw,
            declared_type=declared if isinstance(declared, str) else None,
            max_size=limit,
            allowed=PERSON_KINDS if _person(ctx) else frozenset(KINDS),
        )
    except ContentRefused as exc:
        if exc.code == "too-long":
            raise PayloadTooLarge(f"Binary.data : {exc}") from None
        raise InvalidResource(f"Binary.data : {exc}", expression="Binary.data") from None
    total = sum(c.size for c in ctx.deposits.values()) + checked.size
    if total > ctx.runtime.settings.submission_max_bytes:
        raise PayloadTooLarge(
            f"soumission trop volumineuse : plus de {_mib(ctx.runtime.settings.submission_max_bytes)} de "
            f"documents / submission larger than {ctx.runtime.settings.submission_max_bytes} bytes"
        )
    if not isinstance(declared, str):
        body["contentType"] = checked.media_type
    blob = await _store_blob(conn, ctx, space_id, raw, checked)
    ctx.deposits[binary_id] = checked
    return Content(blob, checked)


async def _store_blob(
    conn: Conn, ctx: Context, space_id: uuid.UUID, raw: bytes, checked: Checked
) -> docs_store.BlobRow:
    """The space's blob for this content: an identical one already stored, else a new object, written and
    flushed before the caller's transaction commits."""
    rt = ctx.runtime
    key_version, aead = await rt.keys.current(conn, space_id)
    mac = hmac.new(derive_subkey(aead, b"blob-mac"), raw, hashlib.sha256).digest()
    found = await docs_store.find_by_mac(conn, space_id, mac, key_version)
    if found is not None:
        return found
    blob_id = uuid.uuid4()
    await rt.db.autonomous("blob_upload_intent", docs_store.begin_upload, space_id, blob_id)
    sealed = await asyncio.to_thread(
        blobcrypt.encrypt, aead, raw, blob_aad(str(space_id), str(blob_id), key_version)
    )
    await rt.blob_store.put(docs_store.blob_key(space_id, blob_id), sealed)
    ctx.uploads.append((space_id, blob_id))
    row = await docs_store.record_blob(
        conn,
        space_id,
        blob_id,
        mac=mac,
        key_version=key_version,
        size=checked.size,
        stored_size=len(sealed),
        kind=checked.kind,
        media_type=checked.media_type,
    )
    if row is None:  # the same content was recorded meanwhile: ours is an orphan, collected with its intent
        row = await docs_store.find_by_mac(conn, space_id, mac, key_version)
        assert row is not None
    return row


async def attach(conn: Conn, stored: store.Stored, content: Content) -> None:
    await docs_store.attach(
        conn, stored.space_id, stored.resource_id, stored.version_id, content.blob.blob_id
    )


async def read_all(conn: Conn, ctx: Context, blob: docs_store.BlobRow) -> bytes:
    aead = await ctx.runtime.keys.version(conn, blob.space_id, blob.key_version)
    chunks = [
        c
        async for c in blobcrypt.read_plain(
            ctx.runtime.blob_store,
            blob.key,
            aead,
            blob_aad(str(blob.space_id), str(blob.blob_id), blob.key_version),
            plain_total=blob.size,
        )
    ]
    return b"".join(chunks)


async def inline(conn: Conn, ctx: Context, stored: store.Stored) -> store.Stored:
    """A Binary version as FHIR JSON, with its content back in `data` (FHIR binary.html: a client asking for
    the resource gets the resource)."""
    if stored.resource_type != "Binary" or stored.body is None:
        return stored
    blob = await docs_store.content_of(conn, stored.space_id, stored.resource_id, stored.version_id)
    if blob is None:
        return stored
    body = orjson.loads(stored.body)
    body["data"] = base64.b64encode(await read_all(conn, ctx, blob)).decode()
    return store.Stored(
        stored.resource_type,
        stored.resource_id,
        stored.version_id,
        stored.last_updated,
        orjson.dumps(body),
        stored.method,
        stored.space_id,
    )


# --- ITI-68: retrieving a document's content -------------------------------------------------------------


@dataclass(frozen=True)
class Retrieved:
    """What to send for a retrieve: the content's blob, the byte range asked (end exclusive), and the ETag."""

    blob: docs_store.BlobRow
    start: int
    end: int
    partial: bool
    etag: str
    aead: Any

    @property
    def length(self) -> int:
        return self.end - self.start

    async def opened(self, ctx: Context) -> AsyncIterator[bytes]:
        """The content's chunks, the first one already read and authenticated: a missing or altered object is
        answered with an OperationOutcome before any byte is sent, not with a response cut in the middle."""
        b = self.blob
        chunks = blobcrypt.read_plain(
            ctx.runtime.blob_store,
            b.key,
            self.aead,
            blob_aad(str(b.space_id), str(b.blob_id), b.key_version),
            plain_total=b.size,
            start=self.start,
            end=self.end,
        )
        try:
            first = await anext(chunks, b"")
        except (BlobMissing, BlobStoreError, DecryptionFailed) as exc:
            log.error("documents.content_unavailable", blob=b.key, error=type(exc).__name__)
            raise ContentUnavailable() from None

        async def rest() -> AsyncIterator[bytes]:
            if first:
                yield first
            async for chunk in chunks:
                yield chunk

        return rest()


class ContentUnavailable(FhirError):
    def __init__(self) -> None:
        super().__init__(
            "contenu du document momentanément indisponible / the document's content is unavailable",
            503,
            "transient",
        )


class RangeNotSatisfiable(FhirError):
    def __init__(self, size: int):
        super().__init__(f"plage d'octets hors du document / range outside the document (size {size})", 416)
        self.size = size


#: One `first-last` range with ASCII digits only (str.isdigit() takes "²" and other scripts' digits) and no
#: number longer than a file size can be.
_RANGE = re.compile(r"([0-9]{0,15})-([0-9]{0,15})", re.ASCII)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One `bytes=` range of RFC 9110 14.1.2 as [start, end); None to send everything (no header, several
    ranges, or another unit: a server may ignore Range). Raises RangeNotSatisfiable past the end."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = _RANGE.fullmatch(spec.strip())
    if match is None or not (match.group(1) or match.group(2)):
        return None  # malformed: ignored, the whole document is sent (RFC 9110 14.2)
    first, last = match.group(1), match.group(2)
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - n), size
    start = int(first)
    if start >= size:
        raise RangeNotSatisfiable(size)
    end = size if not last else min(size, int(last) + 1)
    if end <= start:
        return None
    return start, end


async def retrieve(
    ctx: Context, binary_id: str, *, range_header: str | None = None, if_range: str | None = None
) -> Retrieved:
    """ITI-68 Retrieve Document: the content of a Binary the actor may read, traced as a download."""
    decision = await fhir._decide(ctx, "read", "Binary")

    async def run(conn: Conn) -> Retrieved:
        stored = await fhir._read_in(conn, ctx, decision, "Binary", binary_id, None, traced=False)
        blob = await docs_store.content_of(conn, stored.space_id, stored.resource_id, stored.version_id)
        if blob is None:
            raise NotFound(f"Binary/{binary_id} : aucun contenu / no content")
        etag = f'"{blob.blob_id.hex}"'
        wanted = parse_range(range_header, blob.size) if (if_range is None or if_range == etag) else None
        start, end = wanted or (0, blob.size)
        scope = await fhir.scoped(conn, ctx, decision, [stored.space_id])
        await trace.access(
            conn,
            ctx,
            scope,
            "document:download",
            stored.space_id,
            entity_type="Binary",
            entity_id=binary_id,
            version=stored.version_id,
        )
        aead = await ctx.runtime.keys.version(conn, blob.space_id, blob.key_version)
        return Retrieved(blob, start, end, wanted is not None, etag, aead)

    return await ctx.runtime.db.interaction("document_retrieve", run)


# --- checks of a submission ------------------------------------------------------------------------------


def _attachment_binary(url: Any) -> str | None:
    if not isinstance(url, str) or "Binary/" not in url:
        return None
    return url.split("Binary/", 1)[1].split("/", 1)[0].split("?", 1)[0] or None


def check_attachments(ctx: Context, body: dict[str, Any], where: str = "DocumentReference") -> None:
    """A document's declared size, SHA-1 and MIME type must be those of the content sent with it (PDSm:
    `attachment.size`, `attachment.hash`). Content stored by an earlier request is checked when it was sent."""
    problems: list[Issue] = []
    for i, content in enumerate(body.get("content") or ()):
        attachment = content.get("attachment") if isinstance(content, dict) else None
        if not isinstance(attachment, dict):
            continue
        binary = _attachment_binary(attachment.get("url"))
        checked = ctx.deposits.get(binary) if binary else None
        if checked is None:
            continue
        at = f"{where}.content[{i}].attachment"
        size = attachment.get("size")
        if size is not None and size != checked.size:
            problems.append(
                Issue(
                    f"{at}.size : {size} déclaré, le contenu fait {checked.size} octets / declared {size}, the "
                    f"content has {checked.size} bytes",
                    "value",
                    expression=f"{at}.size",
                )
            )
        digest = attachment.get("hash")
        if digest is not None and digest != base64.b64encode(checked.sha1).decode():
            problems.append(
                Issue(
                    f"{at}.hash : le SHA-1 déclaré ne correspond pas au contenu / the declared SHA-1 does not "
                    "match the content",
                    "value",
                    expression=f"{at}.hash",
                )
            )
        ctype = attachment.get("contentType")
        if isinstance(ctype, str) and ctype.split(";")[0].strip().lower() not in media_types_for(
            checked.kind
        ):
            problems.append(
                Issue(
                    f"{at}.contentType : « {ctype} » déclaré, le contenu est {checked.media_type} / declared "
                    f"{ctype}, the content is {checked.media_type}",
                    "value",
                    expression=f"{at}.contentType",
                )
            )
    if problems:
        raise InvalidResource(problems[0].diagnostics, issues=problems)


def is_submission_set(body: Any) -> bool:
    if not isinstance(body, dict) or body.get("resourceType") != "List":
        return False
    codings = (body.get("code") or {}).get("coding") or ()
    return any(isinstance(c, dict) and c.get("code") == "submissionset" for c in codings)


def check_submission(
    ctx: Context, resources: Sequence[tuple[str, dict[str, Any]]]
) -> list[tuple[int, Issue]]:
    """PDSm checks of an ITI-65 submission's SubmissionSet and DocumentReferences before anything runs:
    every problem of every entry is reported at once. Returns lenient-mode warnings by entry index."""
    lenient = ctx.runtime.settings.documents_lenient_codes
    warnings: list[tuple[int, Issue]] = []
    problems: list[Issue] = []
    sets = [where for where, body in resources if is_submission_set(body)]
    if len(sets) != 1:
        raise InvalidResource(
            "une soumission ITI-65 contient exactement un lot de soumission (List submissionset) / an ITI-65 "
            f"submission holds exactly one SubmissionSet List (found {len(sets)})",
            expression="Bundle.entry",
        )
    for index, (where, body) in enumerate(resources):
        try:
            if is_submission_set(body):
                report = pdsm.check_submission_set(body, where=where, lenient=lenient)
            elif body.get("resourceType") == "DocumentReference":
                report = pdsm.check_document_reference(body, where=where, lenient=lenient)
            else:
                continue
            warnings += [(index, w) for w in report.warnings]
        except InvalidResource as exc:
            problems += exc.all_issues()
    if problems:
        raise InvalidResource(
            f"{len(problems)} problème(s) dans la soumission / problem(s) in the submission : "
            + problems[0].diagnostics,
            issues=problems,
        )
    return warnings


# --- metadata updates (PDSm: status, securityLabel, isArchived) ------------------------------------------

PATCHABLE = ("status", "securityLabel", "extension")


def apply_json_patch(body: dict[str, Any], operations: Any) -> dict[str, Any]:
    """RFC 6902 applied to a copy (jsonpatch); a malformed patch is a 400 naming the operation."""
    import jsonpatch

    if not isinstance(operations, list):
        raise BadRequest(
            "JSON Patch : un tableau d'opérations est attendu / an array of operations is expected"
        )
    try:
        result = jsonpatch.JsonPatch(operations).apply(orjson.loads(orjson.dumps(body)))
    except (
        jsonpatch.JsonPatchException,
        jsonpatch.JsonPointerException,
        TypeError,
        KeyError,
        ValueError,
    ) as exc:
        raise BadRequest(f"JSON Patch invalide / invalid JSON Patch: {exc}") from None
    if not isinstance(result, dict):
        raise BadRequest("JSON Patch : le résultat n'est pas une ressource / the result is not a resource")
    return result


def apply_fhirpath_patch(body: dict[str, Any], parameters: Any) -> dict[str, Any]:
    """FHIRPath Patch (fhirpatch.html) limited to what PDSm changes: `replace` of DocumentReference.status,
    `add`/`delete`/`replace` on DocumentReference.securityLabel, and the isArchived extension."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise BadRequest(
            "FHIRPath Patch : une ressource Parameters est attendue / a Parameters resource is expected"
        )
    result: dict[str, Any] = orjson.loads(orjson.dumps(body))
    operations = parameters.get("parameter") or []
    if not isinstance(operations, list):
        raise BadRequest("Parameters.parameter : un tableau est attendu / an array is expected")
    for n, op in enumerate(operations):
        raw_parts = op.get("part") if isinstance(op, dict) else None
        if not isinstance(raw_parts, list):
            raise BadRequest(
                f"Parameters.parameter[{n}].part : un tableau est attendu / an array is expected"
            )
        parts = {
            p.get("name"): p for p in raw_parts if isinstance(p, dict) and isinstance(p.get("name"), str)
        }
        kind = (parts.get("type") or {}).get("valueCode")
        path = (parts.get("path") or {}).get("valueString")
        value_part = parts.get("value") or {}
        value = next((v for k, v in value_part.items() if k.startswith("value")), None)
        where = f"Parameters.parameter[{n}]"
        if not isinstance(path, str) or not isinstance(kind, str):
            raise BadRequest(f"{where} : type et path sont obligatoires / type and path are required")
        if path == "DocumentReference.status" and kind == "replace" and isinstance(value, str):
            result["status"] = value
        elif (
            path == "DocumentReference"
            and kind == "add"
            and (parts.get("name") or {}).get("valueString") == "securityLabel"
        ):
            result.setdefault("securityLabel", []).append(value)
        elif path == "DocumentReference.securityLabel" and kind == "replace" and isinstance(value, dict):
            result["securityLabel"] = [value]
        elif path is not None and path.startswith("DocumentReference.securityLabel") and kind == "delete":
            index = path[len("DocumentReference.securityLabel") :]
            labels = result.get("securityLabel") or []
            if (
                index.startswith("[")
                and index.endswith("]")
                and index[1:-1].isdigit()
                and int(index[1:-1]) < len(labels)
            ):
                labels.pop(int(index[1:-1]))
            elif index == "":
                result.pop("securityLabel", None)
            else:
                raise BadRequest(f"{where} : chemin non pris en charge / unsupported path « {path} »")
        elif (
            path is not None
            and "extension" in path
            and "isArchived" in path.replace("is-archived", "isArchived")
            and kind == "replace"
        ):
            _set_archived(result, value is True)
        elif (
            path is not None
            and path.split(".")[1:2]
            and path.split(".")[1].split("[")[0].split("(")[0] not in PATCHABLE
        ):
            raise MethodNotAllowed(
                f"{where} : seuls status, securityLabel et isArchived sont modifiables / only status, "
                f"securityLabel and isArchived may be changed (PDSm), not « {path} »"
            )
        else:
            raise BadRequest(
                f"{where} : opération non prise en charge / unsupported operation ({kind} {path})"
            )
    return result


def check_label_systems(body: dict[str, Any], where: str = "DocumentReference") -> None:
    """Visibility codes are TRE_A07's and confidentiality codes HL7's, whatever the spelling of the system, and
    nothing else: access SQL matches a label by its code, the rules read it by its system's OID, and both must
    mean the same label (review of 2026-12-03, D3 and D14)."""
    from ..fhir import valuesets

    problems = []
    for i, label in enumerate(body.get("securityLabel") or ()):
        for j, coding in enumerate((label.get("coding") or ()) if isinstance(label, dict) else ()):
            if not isinstance(coding, dict):
                continue
            code, oid = coding.get("code"), valuesets.system_oid(coding.get("system"))
            at = f"{where}.securityLabel[{i}].coding[{j}]"
            if code in pdsm.VISIBILITY_CODES and oid != valuesets.VISIBILITY_OID:
                problems.append(
                    Issue(
                        f"{at} : {code} appartient à TRE_A07-StatutVisibiliteDocument ({valuesets.VISIBILITY_OID}) / "
                        f"{code} belongs to TRE_A07-StatutVisibiliteDocument",
                        "code-invalid",
                        expression=at,
                    )
                )
            elif oid == valuesets.VISIBILITY_OID and code not in pdsm.VISIBILITY_CODES:
                problems.append(
                    Issue(
                        f"{at} : code de visibilité inconnu « {str(code)[:40]} » (MASQUE_PS, INVISIBLE_PATIENT, "
                        "INVISIBLE_REPRESENTANTS_LEGAUX) / unknown visibility code",
                        "code-invalid",
                        expression=at,
                    )
                )
            elif oid == valuesets.CONFIDENTIALITY_OID and code not in pdsm.CONFIDENTIALITY_CODES:
                problems.append(
                    Issue(
                        f"{at} : niveau de confidentialité inconnu « {str(code)[:40]} » (N, R, V) / unknown "
                        "confidentiality code",
                        "code-invalid",
                        expression=at,
                    )
                )
    if problems:
        raise InvalidResource(problems[0].diagnostics, issues=problems)


async def check_update(
    conn: Conn, ctx: Context, space_id: uuid.UUID, rid: str, after: dict[str, Any]
) -> None:
    """A PUT of a document follows the metadata rules of a PATCH: its uniqueId never changes (XDS) and its
    visibility codes change only as their owners may (review of 2026-12-03, D2 and D7)."""
    check_label_systems(after)
    read = await fhir.scoped(conn, ctx, decide(ctx.actor, "read", "DocumentReference"), [space_id])
    if not read.covers(space_id):
        return
    current = await store.read(conn, ctx.runtime.keys, read, space_id, "DocumentReference", rid, None)
    if current is None or current.body is None:
        return
    before = orjson.loads(current.body)
    if before.get("masterIdentifier") != after.get("masterIdentifier"):
        raise InvalidResource(
            "DocumentReference.masterIdentifier : l'identifiant unique d'un document ne change pas ; une nouvelle "
            "version est un remplacement (relatesTo) / a document's uniqueId never changes; a new version is a "
            "replacement",
            expression="DocumentReference.masterIdentifier",
        )
    _, flags_before = pdsm.security_flags(before)
    _, flags_after = pdsm.security_flags(after)
    _allowed_change(ctx, Change(None, flags_after - flags_before, flags_before - flags_after, None, None))


async def check_content_update(conn: Conn, space_id: uuid.UUID, binary_id: str) -> None:
    """A document's content is what its size and SHA-1 describe: it is not rewritten in place; a corrected
    document is a replacement with new content (review of 2026-12-03, D8)."""
    if await docs_store.pointed_by_live_document(conn, space_id, binary_id):
        raise InvalidResource(
            "Binary : le contenu d'un document déposé ne se modifie pas ; déposez une nouvelle version "
            "(DocumentReference.relatesTo replaces) / a deposited document's content is not rewritten; submit a "
            "replacement",
            expression="Binary",
        )


def _set_labels(body: dict[str, Any], labels: list[dict[str, Any]]) -> None:
    """FHIR forbids empty arrays: a document left without any label loses the element."""
    if labels:
        body["securityLabel"] = labels
    else:
        body.pop("securityLabel", None)


def _archived(body: dict[str, Any]) -> bool:
    return any(
        isinstance(e, dict) and e.get("url") in _ARCHIVED_URLS and e.get("valueBoolean") is True
        for e in body.get("extension") or ()
    )


def _set_archived(body: dict[str, Any], archived: bool) -> None:
    body["extension"] = [*_other_extensions(body), {"url": ARCHIVED_URL, "valueBoolean": archived}]


def _client_meta(body: dict[str, Any]) -> dict[str, Any]:
    meta = body.get("meta")
    return (
        {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        if isinstance(meta, dict)
        else {}
    )


def _changed_elements(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    keys = (set(before) | set(after)) - {"meta", "id"}
    changed = {k for k in keys if before.get(k) != after.get(k)}
    if _client_meta(before) != _client_meta(after):
        changed.add("meta")  # profiles, tags and security labels of meta are not the patcher's (review D9)
    if "extension" in changed and _other_extensions(before) == _other_extensions(after):
        changed.discard("extension")
        if _archived(before) != _archived(after):
            changed.add("isArchived")
    return changed


def _other_extensions(body: dict[str, Any]) -> list[Any]:
    """A document's extensions but isArchived (the one PDSm lets a metadata update change)."""
    return [
        e for e in body.get("extension") or () if not (isinstance(e, dict) and e.get("url") in _ARCHIVED_URLS)
    ]


@dataclass(frozen=True)
class Change:
    """What a metadata update changes, for the rules of who may and for the trace."""

    status: tuple[str, str] | None
    added: frozenset[str]
    removed: frozenset[str]
    confidentiality: tuple[str | None, str | None] | None
    archived: bool | None


def _describe(before: dict[str, Any], after: dict[str, Any]) -> Change:
    changed = _changed_elements(before, after)
    forbidden = changed - {"status", "securityLabel", "isArchived"}
    if forbidden:
        raise MethodNotAllowed(
            "seuls status, securityLabel et isArchived sont modifiables (PDSm) / only status, securityLabel and "
            f"isArchived may be changed (PDSm): {', '.join(sorted(forbidden))}"
        )
    status = (before.get("status"), after.get("status")) if "status" in changed else None
    if status is not None and status[1] not in ("current", "superseded", "entered-in-error"):
        raise InvalidResource(
            f"DocumentReference.status : « {status[1]} » invalide / invalid (current | superseded | entered-in-error)",
            expression="DocumentReference.status",
        )
    conf_before, vis_before = pdsm.security_flags(before)
    conf_after, vis_after = pdsm.security_flags(after)
    if conf_after is None:
        # A patch that replaced the list without the N/R/V code (the ANS TD3.3 examples replace
        # securityLabel/0) keeps the document's confidentiality: flags and confidentiality never drop each other.
        conf_after = conf_before
    return Change(
        status,  # type: ignore[arg-type]
        vis_after - vis_before,
        vis_before - vis_after,
        (conf_before, conf_after) if conf_before != conf_after else None,
        _archived(after) if "isArchived" in changed else None,
    )


def _allowed_change(ctx: Context, change: Change) -> None:
    """Who changes what (PRODUCT §3): the holder (or a minor's representative) masks or unmasks a document to
    professionals and archives it; the author or the médecin traitant (the policy's `patch` rows) changes the
    status, hides a result until the announcement consultation or releases it, and hides a minor's confidential
    document from the representatives; masking is the holder's decision alone (R1111-49)."""
    kind = ctx.actor.kind
    flags = change.added | change.removed
    if kind in ("holder", "representative", "app"):
        if change.status or change.confidentiality or flags - {MASKED_FROM_PROFESSIONALS}:
            raise Forbidden(
                "le titulaire peut masquer un document aux professionnels ou l'archiver, rien d'autre / the holder "
                "may mask a document from professionals or archive it, nothing else"
            )
    elif kind == "practitioner" and MASKED_FROM_PROFESSIONALS in flags:
        raise Forbidden(
            "seul le titulaire masque un document aux professionnels / only the holder masks a document from "
            "professionals (R1111-49)"
        )


async def patch(
    ctx: Context,
    *,
    rid: str | None,
    condition: str | None,
    payload: Any,
    json_patch: bool,
    if_match: str | None = None,
) -> store.Stored:
    """PDSm metadata update: `PATCH DocumentReference/<id>` or the conditional `PATCH DocumentReference?
    identifier=…` (one match, else 404 / 412), JSON Patch or FHIRPath Patch, limited to status, securityLabel
    and isArchived (anything else is 405)."""
    decision = await fhir._decide(ctx, "patch", "DocumentReference")
    expected = fhir.parse_etag(if_match) if if_match else None

    async def run(conn: Conn) -> store.Stored:
        return await patch_in(conn, ctx, decision, rid, condition, payload, json_patch, expected)

    return await ctx.runtime.db.interaction("document_patch", run)


async def patch_in(
    conn: Conn,
    ctx: Context,
    decision: Decision,
    rid: str | None,
    condition: str | None,
    payload: Any,
    json_patch: bool,
    expected: int | None = None,
) -> store.Stored:
    if rid is None:
        if not condition:
            raise BadRequest("PATCH : un id ou une condition est attendu / an id or a condition is required")
        found = await fhir.conditional_match(conn, ctx, "DocumentReference", condition)
        if not found:
            raise NotFound("aucun document ne correspond / no document matches")
        if len(found) > 1:
            raise PreconditionFailed("plusieurs documents correspondent / several documents match")
        rid = found[0].resource_id
    space_id, previous, scope = await fhir._lock_current(conn, ctx, decision, rid)
    if space_id is None or previous is None or previous.deleted:
        raise NotFound(f"DocumentReference/{rid} introuvable / not found")
    if expected is not None and expected != previous.version_id:
        raise PreconditionFailed(
            f"version {expected} périmée, la version courante est {previous.version_id} / stale version"
        )
    read_decision = await fhir.scoped(conn, ctx, decide(ctx.actor, "read", "DocumentReference"), [space_id])
    current = await store.read(
        conn, ctx.runtime.keys, read_decision, space_id, "DocumentReference", rid, None
    )
    if current is None or current.body is None:
        raise NotFound(f"DocumentReference/{rid} introuvable / not found")
    before = orjson.loads(current.body)
    after = apply_json_patch(before, payload) if json_patch else apply_fhirpath_patch(before, payload)
    check_label_systems(after)
    change = _describe(before, after)
    validate_resource(after, expected_type="DocumentReference")  # a patched document is still a valid one
    if change == Change(None, frozenset(), frozenset(), None, None):
        return current  # nothing changes (e.g. the TD2.1 PATCH of a document the replacement superseded)
    _allowed_change(ctx, change)
    if "securityLabel" in _changed_elements(before, after):
        conf, flags = pdsm.security_flags(after)
        _set_labels(after, pdsm.with_flags(after, conf or pdsm.security_flags(before)[0], flags))
    return await _write_metadata(conn, ctx, scope, space_id, rid, previous, after, change)


async def _write_metadata(
    conn: Conn,
    ctx: Context,
    decision: Decision,
    space_id: uuid.UUID,
    rid: str,
    previous: store.Current,
    after: dict[str, Any],
    change: Change,
) -> store.Stored:
    stored = await store.write(
        conn,
        ctx.runtime.keys,
        decision,
        space_id,
        "DocumentReference",
        rid,
        after,
        method="PATCH",
        previous=previous,
    )
    await fhir._traced_write(conn, ctx, decision, "resource:update", stored)
    for flag, action in (
        *(
            (f, "document:mask" if f == MASKED_FROM_PROFESSIONALS else "document:hide")
            for f in sorted(change.added)
        ),
        *(
            (f, "document:unmask" if f == MASKED_FROM_PROFESSIONALS else "document:release")
            for f in sorted(change.removed)
        ),
    ):
        await trace.access(
            conn,
            ctx,
            decision,
            action,
            space_id,
            entity_type="DocumentReference",
            entity_id=rid,
            version=stored.version_id,
            detail=flag,
        )
    if HIDDEN_FROM_HOLDER in change.removed:
        await docs_store.unhide(conn, space_id, rid)
    if HIDDEN_FROM_HOLDER in change.added:
        await schedule_release(conn, ctx, space_id, rid, datetime.now(UTC))
    if change.status is not None and change.status[1] != "current":
        await docs_store.unhide(conn, space_id, rid)
    return stored


async def schedule_release(
    conn: Conn, ctx: Context, space_id: uuid.UUID, rid: str, deposited: datetime
) -> None:
    settings = ctx.runtime.settings
    await docs_store.hide(
        conn,
        space_id,
        rid,
        deposited_at=deposited,
        notice_at=deposited + timedelta(days=settings.hidden_notice_days),
        release_at=deposited + timedelta(days=settings.hidden_release_days),
    )


# --- after a document is written -------------------------------------------------------------------------


async def after_document_write(conn: Conn, ctx: Context, stored: store.Stored, body: dict[str, Any]) -> None:
    """Bookkeeping of a new document version: its release schedule when hidden from the holder, and the
    document it replaces (`relatesTo` replaces) set to superseded, by someone allowed to change that one."""
    _, flags = pdsm.security_flags(body)
    if HIDDEN_FROM_HOLDER in flags and (body.get("status") in (None, "current")):
        await schedule_release(conn, ctx, stored.space_id, stored.resource_id, stored.last_updated)
    for i, relation in enumerate(body.get("relatesTo") or ()):
        if not isinstance(relation, dict) or relation.get("code") != "replaces":
            continue
        target = (relation.get("target") or {}).get("reference")
        where = f"DocumentReference.relatesTo[{i}].target"
        if not isinstance(target, str) or not target.startswith("DocumentReference/"):
            raise InvalidResource(
                f"{where} : un DocumentReference est attendu / a DocumentReference is expected",
                expression=where,
            )
        old = target.split("/", 1)[1]
        if old == stored.resource_id:
            raise InvalidResource(
                f"{where} : un document ne se remplace pas lui-même / cannot replace itself", expression=where
            )
        await _supersede(conn, ctx, old, stored.space_id, where)


async def _supersede(conn: Conn, ctx: Context, old: str, space_id: uuid.UUID, where: str) -> None:
    decision = decide(ctx.actor, "update", "DocumentReference")
    if not decision.allowed:
        raise Forbidden(f"{where} : remplacement non autorisé / replacement not allowed")
    target_space, previous, scope = await fhir._lock_current(conn, ctx, decision, old)
    if target_space != space_id or previous is None or previous.deleted:
        raise InvalidResource(
            f"{where} : le document remplacé n'existe pas, ou vous ne pouvez pas le remplacer (seuls son auteur "
            "et le médecin traitant le peuvent) / the replaced document does not exist, or you may not replace it "
            "(only its author and the médecin traitant may)",
            expression=where,
        )
    read_decision = await fhir.scoped(conn, ctx, decide(ctx.actor, "read", "DocumentReference"), [space_id])
    current = await store.read(
        conn, ctx.runtime.keys, read_decision, space_id, "DocumentReference", old, None
    )
    if current is None or current.body is None:
        raise InvalidResource(
            f"{where} : document remplacé introuvable / replaced document not found", expression=where
        )
    before = orjson.loads(current.body)
    # XDS replaces only an approved document. The TD2.1 example's own PATCH to superseded runs after the new
    # document (POST before PATCH, http.html#trules) and then changes nothing.
    if before.get("status") != "current":
        raise InvalidResource(
            f"{where} : seul un document courant peut être remplacé / only a current document can be replaced",
            expression=where,
        )
    after = dict(before, status="superseded")
    await _write_metadata(conn, ctx, scope, space_id, old, previous, after, _describe(before, after))


# --- the scheduled release of hidden documents (R1111-53) ------------------------------------------------


@dataclass(frozen=True)
class ReleaseRun:
    noticed: int
    released: int


async def run_hidden_documents(ctx: Context, now: datetime | None = None) -> ReleaseRun:
    """Tell holders about documents waiting two weeks for their announcement consultation, and release those
    waiting a month. Runs as the system actor; every release is traced in the space's chain."""
    from . import mail

    now = now or datetime.now(UTC)
    told: list[tuple[uuid.UUID, str]] = []

    async def notices(conn: Conn) -> list[tuple[uuid.UUID, str]]:
        due = await docs_store.due_notices(conn, now)
        await docs_store.mark_noticed(conn, due, now)
        return due

    told = await ctx.runtime.db.interaction("documents_hidden_notices", notices)
    for space_id, _ in told:
        await _tell_holder(ctx, space_id, mail)
    released = 0
    while True:

        async def releases(conn: Conn) -> int:
            due = await docs_store.due_releases(conn, now, limit=100)
            for space_id, rid in due:
                await _release(conn, ctx, space_id, rid)
            return len(due)

        n = await ctx.runtime.db.interaction("documents_hidden_release", releases)
        released += n
        if n < 100:
            break
    return ReleaseRun(len(told), released)


async def _release(conn: Conn, ctx: Context, space_id: uuid.UUID, rid: str) -> None:
    decision = decide(ctx.actor, "patch", "DocumentReference")
    target_space, previous, scope = await fhir._lock_current(conn, ctx, decision, rid)
    if target_space is None or previous is None or previous.deleted:
        await docs_store.unhide(conn, space_id, rid)
        return
    read_decision = decide(ctx.actor, "read", "DocumentReference")
    current = await store.read(
        conn, ctx.runtime.keys, read_decision, space_id, "DocumentReference", rid, None
    )
    if current is None or current.body is None:
        await docs_store.unhide(conn, space_id, rid)
        return
    before = orjson.loads(current.body)
    conf, flags = pdsm.security_flags(before)
    if HIDDEN_FROM_HOLDER not in flags:
        await docs_store.unhide(conn, space_id, rid)
        return
    after = dict(before)
    _set_labels(after, pdsm.with_flags(before, conf, flags - {HIDDEN_FROM_HOLDER}))
    await _write_metadata(conn, ctx, scope, space_id, rid, previous, after, _describe(before, after))


async def _tell_holder(ctx: Context, space_id: uuid.UUID, mail: Any) -> None:
    """No medical content in the message: only that a document waits for a consultation with a professional."""
    from ..storage import people
    from . import accounts

    async def ins_of(conn: Conn) -> str | None:
        return await people.ins_of_space(conn, space_id)

    ins = await ctx.runtime.db.interaction("documents_holder_ins", ins_of)
    if not ins:
        return
    account = await accounts.find_by_actor(ctx.runtime, "holder", ins)
    address = account.notice_address if account is not None and not account.disabled else None
    if not address:
        return
    page = ctx.runtime.settings.base_url.rstrip("/")
    text = (
        "Bonjour,\n\nUn document de votre dossier attend une consultation avec un professionnel de santé avant "
        "d'être visible. Prenez rendez-vous avec votre médecin ou avec le professionnel qui vous suit. Sans "
        f"cette consultation, le document deviendra visible dans votre espace dans deux semaines : {page}\n\n"
        "Mon espace santé\n\n---\n\nHello,\n\nA document in your record is waiting for a consultation with a "
        "health professional before it is shown to you. Please make an appointment with your doctor. Without "
        f"that consultation, it will become visible in your space in two weeks: {page}\n"
    )
    message = mail.Message(
        address, "Mon espace santé : un document vous attend / a document awaits you", text
    )
    try:
        await mail.mailer(ctx.runtime).send(message)
    except OSError:
        await mail.OutboxMailer(ctx.runtime).send(message)


# --- orphans and verification ----------------------------------------------------------------------------


async def discard_unrecorded(ctx: Context) -> None:
    """Delete what this request put in the store and did not record (its transaction failed or lost a race
    for the same content): a refused submission leaves nothing behind (review of 2026-12-03, D10). A failure
    here leaves the intent to the collector."""
    uploads, ctx.uploads = ctx.uploads, []
    for space_id, blob_id in uploads:
        try:
            if await ctx.runtime.db.autonomous("blob_recorded", docs_store.is_recorded, space_id, blob_id):
                continue
            await ctx.runtime.blob_store.delete(docs_store.blob_key(space_id, blob_id))
            await ctx.runtime.db.autonomous("blob_forget", docs_store.forget_upload, space_id, blob_id)
        except Exception as exc:  # the collector will do it after the grace period
            log.warning("documents.discard_failed", error=type(exc).__name__)


async def collect_orphans(ctx: Context, *, now: datetime | None = None) -> int:
    """Delete the objects of upload intents older than the grace period whose blob was never recorded (a
    rollback, a retry or a crash between the put and the commit). Idempotent; safe with serving processes."""
    now = now or datetime.now(UTC)
    grace = timedelta(seconds=ctx.runtime.settings.blob_orphan_grace_seconds)
    before = now - grace
    removed = 0
    store = ctx.runtime.blob_store
    if isinstance(store, LocalBlobStore):
        # Local writes a crash cut short before their rename (S3 never shows a partial object). Deleting an
        # intent's key below removes its own; this catches any other left behind.
        removed += await store.delete_stale_temps(grace)
    while True:
        stale = await ctx.runtime.db.interaction("blob_orphans", docs_store.stale_uploads, before, 500)
        if not stale:
            return removed
        for space_id, blob_id in stale:
            recorded = await ctx.runtime.db.interaction(
                "blob_recorded", docs_store.is_recorded, space_id, blob_id
            )
            if not recorded:
                await ctx.runtime.blob_store.delete(docs_store.blob_key(space_id, blob_id))
                removed += 1
            await ctx.runtime.db.interaction("blob_forget", docs_store.forget_upload, space_id, blob_id)
        if len(stale) < 500:
            return removed


@dataclass
class Verification:
    blobs: int = 0
    checked_content: int = 0
    missing: list[str] | None = None
    wrong_size: list[str] | None = None
    unreadable: list[str] | None = None
    orphans: list[str] | None = None
    pending: int = 0
    without_content: list[str] | None = None

    @property
    def clean(self) -> bool:
        return not (
            self.missing or self.wrong_size or self.unreadable or self.orphans or self.without_content
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "blobs": self.blobs,
            "content_checked": self.checked_content,
            "missing": self.missing or [],
            "wrong_size": self.wrong_size or [],
            "unreadable": self.unreadable or [],
            "orphans": self.orphans or [],
            "pending_uploads": self.pending,
            "binaries_without_content": self.without_content or [],
            "clean": self.clean,
        }


async def verify(ctx: Context, *, deep: bool = False, page: int = 1000) -> Verification:
    """Compare the database and the store: every recorded blob is there with its size (and, with `deep`,
    decrypts and authenticates), every Binary version has content, and every object in the store is recorded
    or belongs to an upload still within its grace period (else it is an orphan)."""
    rt = ctx.runtime
    result = Verification(missing=[], wrong_size=[], unreadable=[], orphans=[], without_content=[])
    assert result.missing is not None and result.wrong_size is not None and result.unreadable is not None
    assert result.orphans is not None and result.without_content is not None
    after: tuple[uuid.UUID, uuid.UUID] | None = None
    while True:
        rows = await rt.db.interaction("documents_verify_page", docs_store.blobs_page, after, page)
        for b in rows:
            result.blobs += 1
            size = await rt.blob_store.size(b.key)
            if size is None:
                result.missing.append(b.key)
            elif size != b.stored_size:
                result.wrong_size.append(b.key)
            elif deep:
                try:

                    async def whole(conn: Conn, blob: docs_store.BlobRow = b) -> bytes:
                        return await read_all(conn, ctx, blob)

                    data = await rt.db.interaction("documents_verify_read", whole)
                    if len(data) != b.size:
                        raise ValueError("size")
                    result.checked_content += 1
                except Exception:  # any failure to read back is what verify reports
                    result.unreadable.append(b.key)
        if len(rows) < page:
            break
        after = (rows[-1].space_id, rows[-1].blob_id)
    pending = await rt.db.interaction("documents_verify_pending", docs_store.pending_upload_keys)
    result.pending = len(pending)
    async for info in rt.blob_store.list("spaces/"):
        parsed = docs_store.parse_blob_key(info.key)
        if parsed is None:
            result.orphans.append(info.key)
            continue
        if parsed in pending:
            continue
        if not await rt.db.interaction("documents_verify_recorded", docs_store.is_recorded, *parsed):
            result.orphans.append(info.key)
    if isinstance(rt.blob_store, LocalBlobStore):
        grace = timedelta(seconds=rt.settings.blob_orphan_grace_seconds)
        for temp in await rt.blob_store.stale_temps(grace):
            # `.tmp-<name>.<random>`: a write cut short; its key's intent, if still pending, will collect it.
            folder, _, name = temp.rpartition("/")
            parsed = docs_store.parse_blob_key(f"{folder}/{name[len(TEMP_PREFIX) :].rsplit('.', 1)[0]}")
            if parsed is None or parsed not in pending:
                result.orphans.append(temp)
    missing_content = await rt.db.interaction(
        "documents_verify_binaries", docs_store.binaries_without_content
    )
    result.without_content.extend(f"Binary/{rid}/_history/{v}" for _, rid, v in missing_content)
    return result


# --- ITI-105 Simplified Publish, and the holder's uploads ----------------------------------------------


def has_inline_content(body: Any) -> bool:
    return isinstance(body, dict) and any(
        isinstance(c, dict) and isinstance(c.get("attachment"), dict) and "data" in c["attachment"]
        for c in body.get("content") or ()
    )


async def publish_simplified(ctx: Context, body: dict[str, Any]) -> tuple[store.Stored, list[Issue]]:
    """ITI-105: one DocumentReference with its document in `attachment.data` (PDSm_SimplifiedPublish). The
    content becomes a Binary, the attachment points at it with the size and SHA-1 the server computed, and
    both are written in one transaction through the same path as an ITI-65 submission."""
    from . import bundles

    person = _person(ctx)
    report = pdsm.check_document_reference(
        body, lenient=ctx.runtime.settings.documents_lenient_codes, simplified=True, by_patient=person
    )
    doc = orjson.loads(orjson.dumps(body))
    subject = (doc.get("subject") or {}).get("reference")
    entries: list[dict[str, Any]] = []
    for i, content in enumerate(doc.get("content") or ()):
        attachment = content.get("attachment") if isinstance(content, dict) else None
        if not isinstance(attachment, dict) or "data" not in attachment:
            continue
        data = attachment.pop("data")
        full_url = f"urn:uuid:{uuid.uuid4()}"
        binary: dict[str, Any] = {"resourceType": "Binary", "data": data}
        if isinstance(attachment.get("contentType"), str):
            binary["contentType"] = attachment["contentType"]
        if isinstance(subject, str):
            binary["securityContext"] = {"reference": subject}
        entries.append(
            {"fullUrl": full_url, "resource": binary, "request": {"method": "POST", "url": "Binary"}}
        )
        attachment["url"] = full_url
        raw = _decoded(data, f"DocumentReference.content[{i}].attachment.data")
        attachment.setdefault("size", len(raw))
        attachment.setdefault(
            "hash", base64.b64encode(hashlib.sha1(raw, usedforsecurity=False).digest()).decode()
        )
    doc_url = f"urn:uuid:{uuid.uuid4()}"
    entries.append(
        {"fullUrl": doc_url, "resource": doc, "request": {"method": "POST", "url": "DocumentReference"}}
    )
    try:
        result = await bundles.process(
            ctx, {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        )
    except FhirError as exc:
        raise _unwrapped(exc, len(entries) - 1) from None
    stored = result.entries[-1].stored
    assert stored is not None
    return stored, report.warnings


def _decoded(data: Any, where: str) -> bytes:
    if not isinstance(data, str):
        raise InvalidResource(f"{where} : base64 attendu / base64 expected", expression=where)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidResource(f"{where} : base64 invalide / invalid base64", expression=where) from None


def _unwrapped(exc: FhirError, doc: int) -> FhirError:
    """An error of the inner transaction, said about the DocumentReference the client sent (the last entry;
    entry i before it holds the content of its attachment i)."""

    def fix(text: str | None) -> str | None:
        if text is None:
            return None
        text = text.replace(f"Bundle.entry[{doc}].resource.", "DocumentReference.").replace(
            f"Bundle.entry[{doc}] : ", ""
        )
        for i in range(doc):
            text = text.replace(
                f"Bundle.entry[{i}].resource.data", f"DocumentReference.content[{i}].attachment.data"
            )
            text = text.replace(f"Bundle.entry[{i}] : ", "")
        return text

    issues = [
        Issue(fix(i.diagnostics) or "", i.code, i.severity, fix(i.expression)) for i in exc.all_issues()
    ]
    return FhirError(fix(exc.message) or exc.message, exc.status, exc.code, issues[0].expression, issues)


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
    ctx: Context, *, content: bytes, title: str, type_code: str, when: datetime | None = None
) -> store.Stored:
    """A holder's (or a minor's representative's) upload from the portal: the metadata PDSm asks for, built
    here, and the same path as ITI-105 (checks, blob store, trace)."""
    from ..storage import people

    title = " ".join(title.split())[:200]
    if not title:
        raise InvalidResource("titre obligatoire / a title is required", expression="title")
    if type_code not in UPLOAD_TYPES:
        raise InvalidResource("type de document inconnu / unknown document type", expression="type")
    if len(content) > ctx.runtime.settings.upload_max_bytes:
        raise PayloadTooLarge(
            f"fichier trop volumineux : {_mib(ctx.runtime.settings.upload_max_bytes)} au plus / file larger than "
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
        raise Forbidden("précisez l'enfant concerné / name the child")  # the portal passes the child's INS
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
