"""Document metadata changes (PDSm "mise à jour des métadonnées"): only `status`, `securityLabel` and the
`isArchived` extension, each by whom the rules allow; replacement (`relatesTo`) and the bookkeeping of a new
document version."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonpatch
import orjson

from espace_sante.access.policy import (
    HIDDEN_FROM_HOLDER,
    HIDDEN_FROM_REPRESENTATIVES,
    MASKED_FROM_PROFESSIONALS,
    Decision,
    decide,
)
from espace_sante.audit import trace
from espace_sante.context import Context
from espace_sante.errors import (
    BadRequest,
    Forbidden,
    InvalidResource,
    Issue,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
)
from espace_sante.fhir import pdsm, valuesets
from espace_sante.fhir.validation import validate_resource
from espace_sante.record import resources as fhir
from espace_sante.storage import documents as docs_store
from espace_sante.storage import notifications as notifications_store
from espace_sante.storage import resources as store
from espace_sante.storage.db import Conn

ARCHIVED_URL = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived"
_ARCHIVED_URLS = (ARCHIVED_URL, "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/isArchived")


PATCHABLE = ("status", "securityLabel", "extension")


def apply_json_patch(body: dict[str, Any], operations: Any) -> dict[str, Any]:
    """RFC 6902 applied to a copy (jsonpatch); a malformed patch is a 400 naming the operation."""
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
    problems = []
    for i, label in enumerate(body.get("securityLabel") or ()):
        for j, coding in enumerate((label.get("coding") or ()) if isinstance(label, dict) else ()):
            if not isinstance(coding, dict):
                continue
            code, oid = coding.get("code"), valuesets.system_oid(coding.get("system"))
            shown = str(code)[:40]
            if code in pdsm.VISIBILITY_CODES and oid != valuesets.VISIBILITY_OID:
                why = (
                    f"{shown} appartient à TRE_A07-StatutVisibiliteDocument ({valuesets.VISIBILITY_OID}) / "
                    f"{shown} belongs to TRE_A07-StatutVisibiliteDocument"
                )
            elif oid == valuesets.VISIBILITY_OID and code not in pdsm.VISIBILITY_CODES:
                why = (
                    f"code de visibilité inconnu « {shown} » (MASQUE_PS, INVISIBLE_PATIENT, "
                    "INVISIBLE_REPRESENTANTS_LEGAUX) / unknown visibility code"
                )
            elif oid == valuesets.CONFIDENTIALITY_OID and code not in pdsm.CONFIDENTIALITY_CODES:
                why = (
                    f"niveau de confidentialité inconnu « {shown} » (N, R, V) / unknown confidentiality code"
                )
            else:
                continue
            at = f"{where}.securityLabel[{i}].coding[{j}]"
            problems.append(Issue(f"{at} : {why}", "code-invalid", expression=at))
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


def set_labels(body: dict[str, Any], labels: list[dict[str, Any]]) -> None:
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


def describe(before: dict[str, Any], after: dict[str, Any]) -> Change:
    """What a metadata update changes; 405 when it touches anything but status, securityLabel and isArchived,
    422 for a status PDSm does not know."""
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
    decision = await fhir.authorize(ctx, "patch", "DocumentReference")
    expected = fhir.parse_etag(if_match) if if_match else None

    async def run(conn: Conn) -> store.Stored:
        return await patch_in(conn, ctx, decision, rid, condition, payload, json_patch, expected)

    return await ctx.runtime.db.interaction("document_patch", run)


async def set_masked(ctx: Context, rid: str, masked: bool) -> store.Stored:
    """The holder's "mask from professionals" switch (the portal): the current version read and patched with
    MASQUE_PS added or removed, its confidentiality level and other visibility codes kept; a version changed in
    between is a 412, not a lost update."""
    reading = await fhir.authorize(ctx, "read", "DocumentReference")
    current = await ctx.runtime.db.read(
        "fhir_read", fhir.read_in, ctx, reading, "DocumentReference", rid, None
    )
    body = orjson.loads(current.body or b"{}")
    _, flags = pdsm.security_flags(body)
    wanted = flags | {MASKED_FROM_PROFESSIONALS} if masked else flags - {MASKED_FROM_PROFESSIONALS}
    if wanted == flags:
        return current
    labels = pdsm.with_flags(body, None, wanted)
    payload = (
        [{"op": "add", "path": "/securityLabel", "value": labels}]
        if labels
        else [{"op": "remove", "path": "/securityLabel"}]
    )
    return await patch(
        ctx, rid=rid, condition=None, payload=payload, json_patch=True, if_match=f'W/"{current.version_id}"'
    )


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
    """`patch` inside the caller's transaction `conn`, with the decision to patch a DocumentReference; `expected`
    the version of If-Match (412 when stale)."""
    if rid is None:
        if not condition:
            raise BadRequest("PATCH : un id ou une condition est attendu / an id or a condition is required")
        found = await fhir.conditional_match(conn, ctx, "DocumentReference", condition)
        if not found:
            raise NotFound("aucun document ne correspond / no document matches")
        if len(found) > 1:
            raise PreconditionFailed("plusieurs documents correspondent / several documents match")
        rid = found[0].resource_id
    space_id, previous, scope = await fhir.lock_current(conn, ctx, decision, rid)
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
    change = describe(before, after)
    validate_resource(after, expected_type="DocumentReference")  # a patched document is still a valid one
    if change == Change(None, frozenset(), frozenset(), None, None):
        return current  # nothing changes (e.g. the TD2.1 PATCH of a document the replacement superseded)
    _allowed_change(ctx, change)
    if "securityLabel" in _changed_elements(before, after):
        conf, flags = pdsm.security_flags(after)
        set_labels(after, pdsm.with_flags(after, conf or pdsm.security_flags(before)[0], flags))
    return await write_metadata(conn, ctx, scope, space_id, rid, previous, after, change)


async def write_metadata(
    conn: Conn,
    ctx: Context,
    decision: Decision,
    space_id: uuid.UUID,
    rid: str,
    previous: store.Current,
    after: dict[str, Any],
    change: Change,
) -> store.Stored:
    """Write a document's new metadata inside the caller's transaction `conn`: `previous` locked by
    resources.lock_current, `decision` scoped to `space_id`, `change` what `describe` found, already allowed.
    Traced as an update, with one record per visibility flag added or removed; the hidden documents' schedule
    follows the flags and the status."""
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
    await fhir.traced_write(conn, ctx, decision, "resource:update", stored)
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
        await _tell(conn, ctx, notifications_store.RELEASED, space_id, rid, after)
    if HIDDEN_FROM_HOLDER in change.added:
        await schedule_release(conn, ctx, space_id, rid, datetime.now(UTC))
    if change.status is not None and change.status[1] != "current":
        await docs_store.unhide(conn, space_id, rid)
    return stored


#: Whose new documents the holder is told of: a professional's, her care's software. Not her own, her
#: representatives' or her apps', and not the service's (a legacy DMP import would write to millions at once).
TOLD_OF_DOCUMENTS_BY = frozenset({"practitioner", "client"})


async def _tell(
    conn: Conn, ctx: Context, kind: str, space_id: uuid.UUID, rid: str, body: dict[str, Any]
) -> None:
    """Tell the holder of this document (notifications/), in the write's transaction; its representatives
    only when it is not hidden from them (R1111-50)."""
    _, flags = pdsm.security_flags(body)
    audience = "holder" if HIDDEN_FROM_REPRESENTATIVES in flags else "all"
    actor = ctx.actor
    told = actor.kind in TOLD_OF_DOCUMENTS_BY
    await notifications_store.tell(
        conn,
        notifications_store.NewNotification(
            space_id,
            kind,
            audience,
            actor.kind if told else None,
            actor.id if told else None,
            actor.display if told else "",
            f"DocumentReference/{rid}",
        ),
    )


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
    elif stored.version_id == 1 and ctx.actor.kind in TOLD_OF_DOCUMENTS_BY:
        await _tell(conn, ctx, notifications_store.DOCUMENT, stored.space_id, stored.resource_id, body)
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
    target_space, previous, scope = await fhir.lock_current(conn, ctx, decision, old)
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
    await write_metadata(conn, ctx, scope, space_id, old, previous, after, describe(before, after))
