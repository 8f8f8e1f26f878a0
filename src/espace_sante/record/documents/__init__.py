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

Rules of who may see what stay in access/policy.py; this package asks it like every other service.

Modules: `content` (bytes in and out, ITI-68), `submission` (ITI-65 checks), `metadata` (PATCH, replacement),
`hidden` (the release of hidden documents), `integrity` (orphans, verify), `rules` (the Binary and
DocumentReference rules of the resource service, and ITI-105 inside a transaction), `publish` (ITI-105 as a
single request, uploads), `listing` (the holder's list of documents, one transaction and one trace record).
record/interactions.py dispatches requests and Bundle entries to the rules."""

from __future__ import annotations

from espace_sante.record.documents.content import (
    PERSON_KINDS,
    Content,
    ContentUnavailable,
    RangeNotSatisfiable,
    Retrieved,
    attach,
    inline,
    parse_range,
    read_all,
    retrieve,
    take_content,
)
from espace_sante.record.documents.hidden import ReleaseRun, run_hidden_documents
from espace_sante.record.documents.integrity import Verification, collect_orphans, discard_unrecorded, verify
from espace_sante.record.documents.metadata import (
    ARCHIVED_URL,
    PATCHABLE,
    Change,
    after_document_write,
    apply_fhirpath_patch,
    apply_json_patch,
    check_content_update,
    check_label_systems,
    check_update,
    patch,
    patch_in,
    schedule_release,
    set_masked,
)
from espace_sante.record.documents.publish import UPLOAD_TYPES, publish_simplified, upload
from espace_sante.record.documents.rules import (
    BINARY,
    DOCUMENT,
    BinaryRule,
    DocumentRule,
    has_inline_content,
    publish_in,
)
from espace_sante.record.documents.submission import check_attachments, check_submission, is_submission_set

__all__ = [
    "ARCHIVED_URL",
    "BINARY",
    "DOCUMENT",
    "PATCHABLE",
    "PERSON_KINDS",
    "UPLOAD_TYPES",
    "BinaryRule",
    "Change",
    "Content",
    "ContentUnavailable",
    "DocumentRule",
    "RangeNotSatisfiable",
    "ReleaseRun",
    "Retrieved",
    "Verification",
    "after_document_write",
    "apply_fhirpath_patch",
    "apply_json_patch",
    "attach",
    "check_attachments",
    "check_content_update",
    "check_label_systems",
    "check_submission",
    "check_update",
    "collect_orphans",
    "discard_unrecorded",
    "has_inline_content",
    "inline",
    "is_submission_set",
    "parse_range",
    "patch",
    "patch_in",
    "publish_in",
    "publish_simplified",
    "read_all",
    "retrieve",
    "run_hidden_documents",
    "schedule_release",
    "set_masked",
    "take_content",
    "upload",
    "verify",
]
