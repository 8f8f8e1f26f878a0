"""PDSm document metadata: the DocumentReference and SubmissionSet checks of the French MHD profile.

Profiles (ANS ``ansforge/IG-fhir-partage-de-documents-de-sante``, PDSm 3.1.1 on IHE MHD 4.2.3;
fr-interop.md §1): ``PDSm_ComprehensiveDocumentReference`` (ITI-65), ``PDSm_SimplifiedPublish`` (ITI-105)
and ``PDSm_SubmissionSetComprehensive``. The structure (types, primitive formats, required FHIR bindings,
French identifiers wherever they appear) is ``validation.py``'s job; this module checks what the profiles
add: cardinalities, contained authors with their national identifier, the subject's INS, the security
labels, and the codes against the French value sets (``valuesets.py``, matched by code-system OID).

Every problem is collected and reported at once: ``InvalidResource`` carries one ``Issue`` per problem,
its ``expression`` under the caller's ``where`` prefix (``Bundle.entry[1].resource.type.coding[0]``), its
diagnostics French then English, naming the element and, for codes, the value set by name and OID.

Lenient mode (``lenient=True``)
-------------------------------
PDSm binds type, category, format, facilityType, practiceSetting and designationType with strength
*preferred*, but adds invariants (``constr-bind-type``, ``-category``, ``-format``, ``-ProducteurDoc``…)
saying the codes *must* come from the listed NOS terminologies; strict mode enforces the French value sets
(JDV_J07, J06, J10, J02, J04, J03). The ANS's own PDSM4DMP draft examples, and MHD producers built for
other countries, send international codes instead (fr-interop.md §6). So in lenient mode, an element none
of whose codings is in the French value set is accepted *with a warning* (``severity="warning"``, naming
element, code, system and value set) when at least one of its codings comes from an international system:
LOINC, SNOMED CT or the IHE format codes, recognised by OID whatever the spelling of the system
(``http://loinc.org``, ``urn:oid:2.16.840.1.113883.6.1``…). Everything else stays an error in both modes:
codes of an unknown or local system, French codes outside the value set (a TRE_A03 class code used as
designationType), and all non-code rules. securityLabel is never lenient: its binding is extensible and its
slices required (N/R/V; TRE_A07 visibility), with no international alternative.

Decisions (sources cited in the comments): ``simplified=True`` applies ``PDSm_SimplifiedPublish``, whose
parent is MHD Simplified Publish, not Comprehensive: type, category, securityLabel, format, context and
custodian are checked when present, not required. MHD allows one ``content`` (1..1), not several.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from espace_sante.errors import InvalidResource, Issue
from espace_sante.fhir import valuesets as vsets
from espace_sante.fhir.identifiers import SYSTEM_LABELS, explain_identifier
from espace_sante.fhir.valuesets import ValueSet, system_label, system_oid

__all__ = [
    "AUTHOR_ORG_URL",
    "CONFIDENTIALITY_CODES",
    "CONFIDENTIALITY_SYSTEM",
    "DESIGNATION_TYPE_URL",
    "IDNPS_SYSTEM",
    "INS_NIA_OID",
    "INS_NIR_DEMO_OID",
    "INS_NIR_OID",
    "INS_NIR_TEST_OID",
    "INS_SYSTEMS",
    "INTERNATIONAL_OIDS",
    "MHD_LIST_TYPES",
    "RFC3986",
    "SOURCE_ID_URL",
    "SUBMISSION_SET_CODE",
    "VISIBILITY_CODES",
    "VISIBILITY_SYSTEM",
    "Report",
    "check_document_reference",
    "check_submission_set",
    "security_flags",
    "submission_unique_id",
    "with_flags",
]

SUBMISSION_SET_CODE = "submissionset"
MHD_LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"
_MHD_SD = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/"
SOURCE_ID_URL = _MHD_SD + "ihe-sourceId"
DESIGNATION_TYPE_URL = _MHD_SD + "ihe-designationType"
AUTHOR_ORG_URL = _MHD_SD + "ihe-authorOrg"
RFC3986 = "urn:ietf:rfc:3986"

INS_NIR_OID = "1.2.250.1.213.1.4.8"
INS_NIA_OID = "1.2.250.1.213.1.4.9"
INS_NIR_TEST_OID = "1.2.250.1.213.1.4.10"
INS_NIR_DEMO_OID = "1.2.250.1.213.1.4.11"
INS_SYSTEMS = frozenset(
    f"urn:oid:{oid}" for oid in (INS_NIR_OID, INS_NIA_OID, INS_NIR_TEST_OID, INS_NIR_DEMO_OID)
)
IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"

CONFIDENTIALITY_CODES = ("N", "R", "V")
# The three TRE_A07 codes of JDV_J08/J58; MASQUE_PSOCIAL and MASQUE_PT are in TRE_A07 but not allowed.
VISIBILITY_CODES = ("MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX")
CONFIDENTIALITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
VISIBILITY_SYSTEM = vsets.VISIBILITY_SYSTEM
INTERNATIONAL_OIDS = frozenset({vsets.LOINC_OID, vsets.SNOMED_OID, vsets.IHE_FORMAT_OID})

_OID_RE = re.compile(r"[0-2](\.(0|[1-9]\d*))+", re.ASCII)
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", re.ASCII
)
_FHIR_ID = r"[A-Za-z0-9\-.]{1,64}"
_LITERAL_RE = {
    rtype: re.compile(rf"(?:https?://\S+/)?{rtype}/{_FHIR_ID}(?:/_history/{_FHIR_ID})?", re.ASCII)
    for rtype in ("Patient", "Organization")
}
# BCP 47, loosely: "fr-FR", "fr", "en-GB"…
_LANGUAGE_RE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*", re.ASCII)
_PS_TYPES = frozenset({"Practitioner", "PractitionerRole"})
_A00_OID = "1.2.250.1.213.1.1.4.6"  # TRE_A00-ProducteurDocNonPS (EXP_PATIENT, SNR)


@dataclass(frozen=True)
class Report:
    """A successful check: the lenient-mode acceptances, each naming element, code and value set."""

    warnings: list[Issue]


def _show(value: object, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text if text.isprintable() else repr(text)


def _is_oid_urn(value: object) -> bool:
    return isinstance(value, str) and value.startswith("urn:oid:") and bool(_OID_RE.fullmatch(value[8:]))


def _is_uuid_urn(value: object) -> bool:
    return isinstance(value, str) and value.startswith("urn:uuid:") and bool(_UUID_RE.fullmatch(value[9:]))


def _present(value: object) -> bool:
    return value is not None and value != "" and value != [] and value != {}


class _Checker:
    """Collects the issues of one resource; paths are relative to ``where``."""

    def __init__(self, where: str, lenient: bool) -> None:
        self.where = where
        self.lenient = lenient
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []

    def path(self, rel: str) -> str:
        return f"{self.where}.{rel}" if rel else self.where

    def error(self, rel: str, fr: str, en: str, code: str = "invalid") -> None:
        expr = self.path(rel)
        self.errors.append(Issue(f"{expr} : {fr} / {expr}: {en}", code, "error", expr))

    def warning(self, rel: str, fr: str, en: str) -> None:
        expr = self.path(rel)
        self.warnings.append(Issue(f"{expr} : {fr} / {expr}: {en}", "code-invalid", "warning", expr))

    def missing(self, rel: str, rule: str) -> None:
        """``rule`` says where the requirement comes from, e.g. ``PDSm custodian 1..1``."""
        self.error(
            rel, f"élément obligatoire absent ({rule})", f"required element missing ({rule})", "required"
        )

    def require(self, node: Mapping[str, Any], key: str, rel: str, rule: str) -> Any:
        value = node.get(key)
        if not _present(value):
            self.missing(rel, rule)
            return None
        return value

    def finish(self, what: str) -> Report:
        if self.errors:
            n = len(self.errors)
            raise InvalidResource(
                f"{what} non conforme au profil PDSm : {n} problème(s) / {what} does not conform to the "
                f"PDSm profile: {n} problem(s)",
                issues=[*self.errors, *self.warnings],
            )
        return Report(list(self.warnings))

    # -- codes ------------------------------------------------------------------------------------

    def _outside(self, rel: str, system: object, code: object, vs: ValueSet) -> tuple[str, str]:
        shown_system = _show(system, 200) if isinstance(system, str) and system else "sans système"
        shown_system_en = _show(system, 200) if isinstance(system, str) and system else "no system"
        fr = f"code {_show(code)} ({shown_system}) hors du jeu de valeurs {vs.label}"
        en = f"code {_show(code)} ({shown_system_en}) not in value set {vs.label}"
        oid = system_oid(system) if isinstance(system, str) else None
        if oid is None or oid not in vs.system_oids:
            expected = ", ".join(sorted({system_label(o) for o in vs.system_oids}))
            fr += f" ; systèmes attendus : {expected}"
            en += f"; expected systems: {expected}"
        return fr, en

    def codings(self, rel: str, codings: list[tuple[str, Any]], vs: ValueSet) -> None:
        """Check the codings (relative path, Coding) of one concept: one of them must be in ``vs``."""
        found: set[tuple[str, str]] = set()
        outside: list[tuple[str, Any, Any]] = []
        for coding_rel, coding in codings:
            if not isinstance(coding, dict):
                continue
            system, code = coding.get("system"), coding.get("code")
            concept = vs.concept(system, code)
            if concept is not None:
                found.add((concept.system_oid, concept.code))
            else:
                outside.append((coding_rel, system, code))
        if len(found) > 1:
            # XDS carries a single code per element (typeCode, classCode…): two would be ambiguous.
            codes = ", ".join(sorted(code for _, code in found))
            self.error(
                rel,
                f"plusieurs codes du jeu de valeurs {vs.label} ({codes}) : un seul attendu",
                f"several codes of value set {vs.label} ({codes}): exactly one expected",
                "code-invalid",
            )
        if found:
            return
        if not outside:
            self.error(
                rel,
                f"aucun codage (coding) : un code du jeu de valeurs {vs.label} est attendu",
                f"no coding: a code from value set {vs.label} is expected",
                "required",
            )
            return
        international = [o for o in outside if system_oid(o[1]) in INTERNATIONAL_OIDS]
        if self.lenient and international:
            for coding_rel, system, code in international:
                fr, en = self._outside(coding_rel, system, code, vs)
                name = system_label(system_oid(system) or "")
                self.warning(
                    coding_rel,
                    f"{fr} ; accepté en mode tolérant (système international {name})",
                    f"{en}; accepted in lenient mode (international system {name})",
                )
            return
        for coding_rel, system, code in outside:
            fr, en = self._outside(coding_rel, system, code, vs)
            self.error(coding_rel, fr, en, "code-invalid")

    def concept(self, rel: str, value: Any, vs: ValueSet, rule: str, *, required: bool = True) -> None:
        """A CodeableConcept bound to ``vs``."""
        if not _present(value):
            if required:
                self.missing(rel, rule)
            return
        if not isinstance(value, dict):
            self.error(rel, "CodeableConcept attendu", "CodeableConcept expected", "structure")
            return
        codings = value.get("coding")
        items = list(enumerate(codings)) if isinstance(codings, list) else []
        self.codings(rel, [(f"{rel}.coding[{i}]", c) for i, c in items], vs)

    def coding(self, rel: str, value: Any, vs: ValueSet, rule: str, *, required: bool = True) -> None:
        """A Coding bound to ``vs`` (content.format)."""
        if not _present(value):
            if required:
                self.missing(rel, rule)
            return
        self.codings(rel, [(rel, value)], vs)

    # -- references, identities -------------------------------------------------------------------

    def patient_identifier(self, rel: str, system: object, value: object) -> None:
        """An INS given as system|value (conditional or logical reference to the patient)."""
        if system not in INS_SYSTEMS:
            self.error(
                rel,
                f"système d'identifiant patient {_show(system)} non reconnu : INS attendu "
                f"(urn:oid:{INS_NIR_OID} NIR, …4.9 NIA, …4.10 test, …4.11 démo)",
                f"unrecognised patient identifier system {_show(system)}: an INS is expected "
                f"(urn:oid:{INS_NIR_OID} NIR, …4.9 NIA, …4.10 test, …4.11 demo)",
                "value",
            )
            return
        if not isinstance(value, str) or not value:
            self.missing(rel, "INS value")
            return
        error = explain_identifier(str(system), value)  # NIA: no published rule, None
        if error is not None:
            label = SYSTEM_LABELS.get(str(system), str(system))
            self.error(rel, f"{label} invalide, {error.fr}", f"invalid {label}, {error.en}", "value")

    def subject(self, rel: str, ref: Any) -> None:
        if not _present(ref):
            self.missing(rel, "MHD Comprehensive subject 1..1")
            return
        if not isinstance(ref, dict):
            self.error(rel, "Reference attendue", "Reference expected", "structure")
            return
        reference = ref.get("reference")
        if isinstance(reference, str):
            if reference.startswith("Patient?"):
                params = parse_qsl(reference[len("Patient?") :], keep_blank_values=True)
                tokens = [v for k, v in params if k == "identifier"]
                if len(tokens) != 1 or len(params) != 1 or "|" not in tokens[0]:
                    self.error(
                        f"{rel}.reference",
                        "référence conditionnelle attendue sous la forme "
                        f"Patient?identifier=urn:oid:{INS_NIR_OID}|<INS>",
                        f"conditional reference expected as Patient?identifier=urn:oid:{INS_NIR_OID}|<INS>",
                        "value",
                    )
                    return
                system, _, value = tokens[0].partition("|")
                self.patient_identifier(f"{rel}.reference", system, value)
            elif not _LITERAL_RE["Patient"].fullmatch(reference):
                # MHD: subject is the XDS patientId, a patient of the affinity domain, never contained.
                self.error(
                    f"{rel}.reference",
                    f"référence {_show(reference)} non reconnue : Patient/<id> ou "
                    f"Patient?identifier=urn:oid:{INS_NIR_OID}|<INS> attendu",
                    f"unrecognised reference {_show(reference)}: Patient/<id> or "
                    f"Patient?identifier=urn:oid:{INS_NIR_OID}|<INS> expected",
                    "value",
                )
        elif isinstance(ref.get("identifier"), dict):
            ident = ref["identifier"]
            self.patient_identifier(f"{rel}.identifier.value", ident.get("system"), ident.get("value"))
        else:
            self.missing(f"{rel}.reference", "MHD Comprehensive subject 1..1")


class _Contained:
    """The contained resources of a container, by id, with their index for expressions."""

    def __init__(self, checker: _Checker, resource: Mapping[str, Any]) -> None:
        self.checker = checker
        self.by_id: dict[str, tuple[int, dict[str, Any]]] = {}
        contained = resource.get("contained")
        for i, item in enumerate(contained if isinstance(contained, list) else []):
            if not isinstance(item, dict):
                continue
            rid = item.get("id")
            if not isinstance(rid, str) or not rid:
                checker.missing(f"contained[{i}].id", "FHIR contained.id")
            elif rid in self.by_id:
                checker.error(
                    f"contained[{i}].id",
                    f"id {_show(rid)} en double parmi les ressources contenues",
                    f"duplicate id {_show(rid)} among the contained resources",
                )
            else:
                self.by_id[rid] = (i, item)

    def check_references(self, resource: Mapping[str, Any]) -> None:
        """Every ``#id`` reference, anywhere in the resource, must name a contained resource."""
        for rel, ref in _local_references(resource):
            if ref != "#" and ref[1:] not in self.by_id:
                self.checker.error(
                    rel,
                    f"référence {_show(ref)} sans ressource contenue correspondante (contained)",
                    f"reference {_show(ref)} has no matching contained resource",
                    "not-found",
                )

    def target(self, rel: str, ref: Any, rule: str) -> tuple[str, dict[str, Any]] | None:
        """The contained resource a Reference points at (relative path, resource); None if absent. An
        unresolved ``#id`` is left to :meth:`check_references`, so that it is reported once."""
        if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
            self.checker.error(
                rel,
                f"référence #id vers une ressource contenue attendue ({rule})",
                f"a #id reference to a contained resource is expected ({rule})",
                "value",
            )
            return None
        reference: str = ref["reference"]
        if not reference.startswith("#"):
            self.checker.error(
                f"{rel}.reference",
                f"la ressource référencée ({_show(reference)}) doit être contenue (contained, #id) ({rule})",
                f"the referenced resource ({_show(reference)}) must be contained (#id) ({rule})",
                "value",
            )
            return None
        found = self.by_id.get(reference[1:])
        if found is None:
            return None
        index, resource = found
        return f"contained[{index}]", resource


def _local_references(node: Any, rel: str = "") -> Iterator[tuple[str, str]]:
    """(relative path, value) of every ``reference`` that starts with ``#``. Iterative: deep input is
    safe."""
    stack: list[tuple[str, Any]] = [(rel, node)]
    while stack:
        here, value = stack.pop()
        if isinstance(value, dict):
            children: list[tuple[str, Any]] = []
            for key, child in value.items():
                path = f"{here}.{key}" if here else str(key)
                if key == "reference" and isinstance(child, str) and child.startswith("#"):
                    yield path, child
                elif isinstance(child, (dict, list)):
                    children.append((path, child))
            stack.extend(reversed(children))
        elif isinstance(value, list):
            stack.extend((f"{here}[{i}]", item) for i, item in reversed(list(enumerate(value))))


def _identifiers(resource: Mapping[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    items = resource.get("identifier")
    for j, ident in enumerate(items if isinstance(items, list) else []):
        if isinstance(ident, dict):
            yield j, ident


def _check_ps_identity(
    c: _Checker, contained: _Contained, rel: str, resource: Mapping[str, Any], rule: str
) -> None:
    """A Practitioner, or a PractitionerRole (itself or through its contained Practitioner), must carry
    the national PS identifier IdNat_PS (XDS author.authorPerson is an XCN in 1.2.250.1.71.4.2.1)."""
    carriers: list[tuple[str, Mapping[str, Any]]] = [(rel, resource)]
    if resource.get("resourceType") == "PractitionerRole" and isinstance(resource.get("practitioner"), dict):
        pref = resource["practitioner"].get("reference")
        if isinstance(pref, str) and pref.startswith("#") and pref[1:] in contained.by_id:
            index, practitioner = contained.by_id[pref[1:]]
            if practitioner.get("resourceType") != "Practitioner":
                c.error(
                    f"{rel}.practitioner",
                    f"doit référencer un Practitioner, pas {_show(practitioner.get('resourceType'))}",
                    f"must reference a Practitioner, not {_show(practitioner.get('resourceType'))}",
                )
            else:
                carriers.append((f"contained[{index}]", practitioner))
    found = False
    for carrier_rel, carrier in carriers:
        for j, ident in _identifiers(carrier):
            if ident.get("system") != IDNPS_SYSTEM:
                continue
            found = True
            value = ident.get("value")
            error = explain_identifier(IDNPS_SYSTEM, value) if isinstance(value, str) else None
            if not isinstance(value, str) or error is not None:
                fr_why = error.fr if error else "valeur absente"
                en_why = error.en if error else "missing value"
                c.error(
                    f"{carrier_rel}.identifier[{j}].value",
                    f"IdNat_PS invalide, {fr_why}",
                    f"invalid IdNat_PS, {en_why}",
                    "value",
                )
    if not found:
        c.error(
            rel,
            f"identifiant national du professionnel absent : IdNat_PS ({IDNPS_SYSTEM}, « 8 » + RPPS) "
            f"attendu ({rule})",
            f"the professional's national identifier is missing: IdNat_PS ({IDNPS_SYSTEM}, '8' + RPPS) "
            f"expected ({rule})",
            "required",
        )


def _check_author(
    c: _Checker, contained: _Contained, rel: str, ref: Any, *, by_patient: bool, rule: str
) -> str | None:
    """One author (DocumentReference.author[i] or List.source): its kind, or None if unresolved."""
    found = contained.target(rel, ref, rule)
    if found is None:
        return None
    target_rel, resource = found
    rtype = resource.get("resourceType")
    if rtype in _PS_TYPES:
        if by_patient:
            c.error(
                rel,
                "dépôt par le titulaire : l'auteur doit être le patient, pas un professionnel",
                "holder's own deposit: the author must be the patient, not a professional",
            )
        else:
            _check_ps_identity(c, contained, target_rel, resource, rule)
        return "ps"
    if rtype == "Device":
        return "device"
    if rtype == "Patient":
        return "patient"
    c.error(
        rel,
        f"auteur de type {_show(rtype)} non autorisé : Practitioner, PractitionerRole, Device ou Patient "
        f"contenu attendu ({rule})",
        f"author of type {_show(rtype)} not allowed: a contained Practitioner, PractitionerRole, Device or "
        f"Patient is expected ({rule})",
    )
    return None


def _check_master_identifier(c: _Checker, dr: Mapping[str, Any]) -> None:
    mid = c.require(dr, "masterIdentifier", "masterIdentifier", "MHD masterIdentifier 1..1 (XDS uniqueId)")
    if not isinstance(mid, dict):
        return
    if mid.get("system") != RFC3986:
        c.error(
            "masterIdentifier.system",
            f"{RFC3986} attendu (PDSm : uniqueId XDS), reçu {_show(mid.get('system'))}",
            f"{RFC3986} expected (PDSm: XDS uniqueId), got {_show(mid.get('system'))}",
            "value",
        )
    value = mid.get("value")
    if not (_is_oid_urn(value) or _is_uuid_urn(value)):
        c.error(
            "masterIdentifier.value",
            f"urn:oid:<OID> ou urn:uuid:<UUID> attendu, reçu {_show(value)}",
            f"urn:oid:<OID> or urn:uuid:<UUID> expected, got {_show(value)}",
            "value",
        )


def _check_security_labels(c: _Checker, labels: Any, *, required: bool) -> None:
    """securityLabel (XDS confidentialityCode): PDSm slices ``confidentiality`` 1..1 (N/R/V, HL7 OID
    2.16.840.1.113883.5.25) and ``visibilityStatus`` 0..* (TRE_A07, only the three codes of JDV_J08)."""
    if not _present(labels):
        if required:
            c.missing("securityLabel", "MHD Comprehensive securityLabel 1..*, PDSm confidentiality 1..1")
        return
    if not isinstance(labels, list):
        c.error("securityLabel", "liste attendue", "list expected", "structure")
        return
    j08 = vsets.confidentiality()
    confidential_at: list[int] = []
    for i, label in enumerate(labels):
        codings = label.get("coding") if isinstance(label, dict) else None
        if not isinstance(codings, list) or not codings:
            c.error(
                f"securityLabel[{i}]",
                f"aucun codage (coding) : un code du jeu de valeurs {j08.label} est attendu",
                f"no coding: a code from value set {j08.label} is expected",
                "required",
            )
            continue
        levels: set[str] = set()
        for k, coding in enumerate(codings):
            rel = f"securityLabel[{i}].coding[{k}]"
            if not isinstance(coding, dict):
                continue
            system, code = coding.get("system"), coding.get("code")
            oid = system_oid(system) if isinstance(system, str) else None
            if oid == vsets.CONFIDENTIALITY_OID:
                if code in CONFIDENTIALITY_CODES:
                    levels.add(str(code))
                else:
                    c.error(
                        rel,
                        f"niveau de confidentialité {_show(code)} hors du jeu de valeurs {j08.label} : "
                        "N, R ou V attendu",
                        f"confidentiality level {_show(code)} not in value set {j08.label}: N, R or V expected",
                        "code-invalid",
                    )
            elif oid == vsets.VISIBILITY_OID:
                if code not in VISIBILITY_CODES:
                    c.error(
                        rel,
                        f"statut de visibilité {_show(code)} hors du jeu de valeurs {j08.label} : "
                        f"{', '.join(VISIBILITY_CODES)} attendu (TRE_A07)",
                        f"visibility status {_show(code)} not in value set {j08.label}: "
                        f"{', '.join(VISIBILITY_CODES)} expected (TRE_A07)",
                        "code-invalid",
                    )
            else:
                fr, en = c._outside(rel, system, code, j08)
                c.error(rel, fr, en, "code-invalid")
        if len(levels) > 1:
            c.error(
                f"securityLabel[{i}]",
                f"niveaux de confidentialité contradictoires ({', '.join(sorted(levels))})",
                f"contradictory confidentiality levels ({', '.join(sorted(levels))})",
                "code-invalid",
            )
        if levels:
            confidential_at.append(i)
    if not confidential_at:
        c.missing(
            "securityLabel",
            f"niveau de confidentialité N, R ou V ({vsets.CONFIDENTIALITY_OID}), PDSm confidentiality 1..1",
        )
    for i in confidential_at[1:]:
        c.error(
            f"securityLabel[{i}]",
            "un seul niveau de confidentialité N/R/V autorisé (PDSm confidentiality 1..1)",
            "only one N/R/V confidentiality level allowed (PDSm confidentiality 1..1)",
        )


def _check_attachment(c: _Checker, rel: str, att: Mapping[str, Any], *, simplified: bool) -> None:
    comprehensive = "MHD Comprehensive"
    c.require(att, "contentType", f"{rel}.contentType", "MHD contentType 1..1")
    language = att.get("language")
    if not _present(language):
        if not simplified:
            c.missing(f"{rel}.language", f"{comprehensive} language 1..1, fr-FR")
    elif not isinstance(language, str) or not _LANGUAGE_RE.fullmatch(language):
        c.error(
            f"{rel}.language",
            f"code de langue {_show(language)} invalide (ex. fr-FR)",
            f"invalid language code {_show(language)} (e.g. fr-FR)",
            "value",
        )
    if not simplified:
        c.require(att, "creation", f"{rel}.creation", f"{comprehensive} creation 1..1")
    # PDSm titreDocument is content.attachment.title 1.. in both profiles (description is the comment).
    c.require(att, "title", f"{rel}.title", "PDSm attachment.title 1..1 (titreDocument)")

    data_bytes: bytes | None = None
    if simplified:
        # ITI-105 / PDSm_SimplifiedPublish: the document travels in .data, .url 0..0.
        data = c.require(att, "data", f"{rel}.data", "PDSm_SimplifiedPublish data 1..1")
        if data is not None:
            data_bytes = _b64(data)
            if data_bytes is None:
                c.error(f"{rel}.data", "base64 invalide", "invalid base64", "value")
        if _present(att.get("url")):
            c.error(
                f"{rel}.url",
                "interdit en publication simplifiée (ITI-105 : url 0..0)",
                "not allowed in simplified publish (ITI-105: url 0..0)",
                "value",
            )
    else:
        # ITI-65 / MHD Minimal: .url points at the Binary of the bundle, .data 0..0.
        c.require(att, "url", f"{rel}.url", "MHD url 1..1, Binary")
        if _present(att.get("data")):
            c.error(
                f"{rel}.data",
                "interdit dans une fiche MHD (data 0..0) : le document va dans un Binary",
                "not allowed in an MHD DocumentReference (data 0..0): the document goes in a Binary",
                "value",
            )

    # hash and size: PDSm 1.. in ITI-65; in ITI-105 the server computes them from .data.
    hash_value = att.get("hash") if _present(att.get("hash")) else None
    if hash_value is None and not simplified:
        c.missing(f"{rel}.hash", "PDSm hash 1..1 (SHA-1)")
    elif hash_value is not None:
        digest = _b64(hash_value)
        if digest is None or len(digest) != 20:
            c.error(
                f"{rel}.hash",
                "SHA-1 attendu : base64 de 20 octets",
                "SHA-1 expected: base64 of 20 bytes",
                "value",
            )
        elif data_bytes is not None and digest != hashlib.sha1(data_bytes, usedforsecurity=False).digest():
            c.error(
                f"{rel}.hash",
                "ne correspond pas au SHA-1 de data",
                "does not match the SHA-1 of data",
                "value",
            )
    size = att.get("size")
    if size is None and not simplified:
        c.missing(f"{rel}.size", "PDSm size 1..1")
    elif size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            c.error(
                f"{rel}.size",
                f"entier positif ou nul attendu, reçu {_show(size)}",
                f"non-negative integer expected, got {_show(size)}",
                "value",
            )
        elif data_bytes is not None and size != len(data_bytes):
            c.error(
                f"{rel}.size",
                f"{size} ne correspond pas à la taille de data ({len(data_bytes)} octets)",
                f"{size} does not match the size of data ({len(data_bytes)} bytes)",
                "value",
            )


def _b64(value: object) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _producer_codes(ctx: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(element, code) of the facilityType/practiceSetting codings from TRE_A00-ProducteurDocNonPS."""
    for key in ("facilityType", "practiceSetting"):
        value = ctx.get(key)
        codings = value.get("coding") if isinstance(value, dict) else None
        for coding in codings if isinstance(codings, list) else []:
            if isinstance(coding, dict) and system_oid(coding.get("system")) == _A00_OID:
                yield key, str(coding.get("code"))


def check_document_reference(
    dr: dict[str, Any],
    *,
    where: str = "DocumentReference",
    lenient: bool = False,
    simplified: bool = False,
    by_patient: bool = False,
    deposit: bool = True,
) -> Report:
    """Check ``dr`` against PDSm_ComprehensiveDocumentReference (ITI-65) or, with ``simplified``,
    PDSm_SimplifiedPublish (ITI-105). ``by_patient``: a holder's own upload (built by our server): the
    author is the Patient, no IdNat_PS. ``deposit``: status must be ``current``; False for a stored or
    searched DocumentReference, where ``superseded`` is allowed too.

    Returns the warnings of lenient mode; raises InvalidResource with every problem (errors then warnings).
    """
    c = _Checker(where, lenient)
    if not isinstance(dr, dict) or dr.get("resourceType") != "DocumentReference":
        got = dr.get("resourceType") if isinstance(dr, dict) else type(dr).__name__
        c.error(
            "resourceType",
            f"DocumentReference attendu, reçu {_show(got)}",
            f"DocumentReference expected, got {_show(got)}",
            "structure",
        )
        return c.finish("DocumentReference")
    full = not simplified
    profile = "PDSm_SimplifiedPublish" if simplified else "PDSm_ComprehensiveDocumentReference"
    contained = _Contained(c, dr)
    if full and not _present(dr.get("contained")):
        c.missing("contained", "PDSm contained 1..*")
    contained.check_references(dr)

    _check_master_identifier(c, dr)
    status = c.require(dr, "status", "status", "MHD status 1..1")
    allowed = ("current",) if deposit or simplified else ("current", "superseded")
    if status is not None and status not in allowed:
        c.error(
            "status",
            f"{_show(status)} non autorisé : {' ou '.join(allowed)} attendu",
            f"{_show(status)} not allowed: {' or '.join(allowed)} expected",
            "value",
        )

    c.concept(
        "type", dr.get("type"), vsets.accepted_type_code(), "MHD Comprehensive type 1..1", required=full
    )
    category = dr.get("category")
    if isinstance(category, list) and len(category) > 1:
        c.error(
            "category",
            "une seule classe de document attendue (MHD category 1..1)",
            "exactly one document class expected (MHD category 1..1)",
        )
    first_category = category[0] if isinstance(category, list) and category else category
    c.concept(
        "category[0]" if isinstance(category, list) and category else "category",
        first_category,
        vsets.class_code(),
        "MHD Comprehensive category 1..1",
        required=full,
    )
    c.subject("subject", dr.get("subject"))
    if full:
        c.require(dr, "date", "date", "PDSm date 1..1")
    _check_custodian(c, contained, dr.get("custodian"), required=full)

    # Authors, PDSm author 1..* (contained AsPractitioner/AsPractitionerRole/Device/FRCorePatient).
    kinds: list[str | None] = []
    authors = c.require(dr, "author", "author", f"{profile} author 1..*")
    for i, author in enumerate(authors if isinstance(authors, list) else []):
        kinds.append(
            _check_author(
                c, contained, f"author[{i}]", author, by_patient=by_patient, rule=f"{profile} author"
            )
        )
    if by_patient and isinstance(authors, list) and authors and "patient" not in kinds:
        c.error(
            "author",
            "dépôt par le titulaire : le patient doit être auteur (Patient contenu)",
            "holder's own deposit: the patient must be an author (contained Patient)",
        )

    _check_security_labels(c, dr.get("securityLabel"), required=full)

    content = c.require(dr, "content", "content", "MHD content 1..1")
    if isinstance(content, list):
        if len(content) > 1:
            # MHD Minimal: content 1..1, one XDS DocumentEntry per document.
            c.error(
                "content",
                "un seul contenu par fiche (MHD content 1..1)",
                "one content per DocumentReference (MHD content 1..1)",
            )
        for i, item in enumerate(content):
            rel = f"content[{i}]"
            att = item.get("attachment") if isinstance(item, dict) else None
            if not isinstance(att, dict):
                c.missing(f"{rel}.attachment", "FHIR attachment 1..1")
            else:
                _check_attachment(c, f"{rel}.attachment", att, simplified=simplified)
            fmt = item.get("format") if isinstance(item, dict) else None
            c.coding(
                f"{rel}.format", fmt, vsets.format_code(), "MHD Comprehensive format 1..1", required=full
            )

    ctx = dr.get("context")
    if not isinstance(ctx, dict):
        if full:
            c.missing("context", "MHD Comprehensive context 1..1")
        ctx = {}
    rule = "MHD Comprehensive {} 1..1"
    c.concept(
        "context.facilityType",
        ctx.get("facilityType"),
        vsets.facility_type(),
        rule.format("facilityType"),
        required=full,
    )
    c.concept(
        "context.practiceSetting",
        ctx.get("practiceSetting"),
        vsets.practice_setting(),
        rule.format("practiceSetting"),
        required=full,
    )
    period = ctx.get("period")
    if full and not (isinstance(period, dict) and _present(period.get("start"))):
        c.missing("context.period.start", "PDSm period.start 1..1, dateDebutActe")
    source_patient = ctx.get("sourcePatientInfo")
    if not _present(source_patient):
        if full:
            c.missing("context.sourcePatientInfo", "MHD Comprehensive sourcePatientInfo 1..1, contained")
    else:
        found = contained.target("context.sourcePatientInfo", source_patient, "MHD Comprehensive, contained")
        if found is not None and found[1].get("resourceType") != "Patient":
            c.error(
                "context.sourcePatientInfo",
                "doit référencer un Patient contenu",
                "must reference a contained Patient",
            )
    # PDSm constr-bind-ProducteurDoc: TRE_A00 codes are for documents whose author is the patient (or a
    # device under their responsibility), TRE_R02 ones for professionals.
    known = [kind for kind in kinds if kind is not None]
    if known and all(kind == "ps" for kind in known):
        for key, code in _producer_codes(ctx):
            c.error(
                f"context.{key}",
                f"code {code} (TRE_A00-ProducteurDocNonPS) réservé aux documents dont l'auteur n'est pas "
                "un professionnel (PDSm constr-bind-ProducteurDoc)",
                f"code {code} (TRE_A00-ProducteurDocNonPS) is reserved for documents not authored by a "
                "professional (PDSm constr-bind-ProducteurDoc)",
                "code-invalid",
            )
    return c.finish("DocumentReference")


def _check_custodian(c: _Checker, contained: _Contained, ref: Any, *, required: bool) -> None:
    """PDSm custodian 1..1 (unmapped in MHD; in XDS it travels in the VIHF): an Organization."""
    if not _present(ref):
        if required:
            c.missing("custodian", "PDSm custodian 1..1")
        return
    if not isinstance(ref, dict):
        c.error("custodian", "Reference attendue", "Reference expected", "structure")
        return
    reference = ref.get("reference")
    if isinstance(reference, str) and reference.startswith("#"):
        found = contained.by_id.get(reference[1:])
        if found is not None and found[1].get("resourceType") != "Organization":
            c.error("custodian", "doit référencer une Organization", "must reference an Organization")
    elif isinstance(reference, str):
        if not (_LITERAL_RE["Organization"].fullmatch(reference) or reference.startswith("Organization?")):
            c.error(
                "custodian.reference",
                f"référence {_show(reference)} : Organization attendue",
                f"reference {_show(reference)}: an Organization is expected",
                "value",
            )
    elif not isinstance(ref.get("identifier"), dict):
        c.missing("custodian.reference", "PDSm custodian 1..1")


# -- SubmissionSet -------------------------------------------------------------------------------------


def _extensions(resource: Mapping[str, Any], url: str) -> list[tuple[int, dict[str, Any]]]:
    items = resource.get("extension")
    return [
        (i, e)
        for i, e in enumerate(items if isinstance(items, list) else [])
        if isinstance(e, dict) and e.get("url") == url
    ]


def _submission_identifiers(ss: Mapping[str, Any]) -> tuple[list[int], list[int]]:
    """Indexes of the (uniqueId, entryUUID) identifiers, recognised by their value: MHD 4 slices them by
    ``use`` (uniqueId usual, entryUUID official) while MHD 3 examples and several producers swap the two
    uses, so the value (urn:oid: / urn:uuid:) is what tells them apart."""
    unique: list[int] = []
    entry: list[int] = []
    for j, ident in _identifiers(ss):
        value = ident.get("value")
        if isinstance(value, str) and value.startswith("urn:oid:"):
            unique.append(j)
        elif isinstance(value, str) and value.startswith("urn:uuid:"):
            entry.append(j)
    return unique, entry


def submission_unique_id(ss: Mapping[str, Any]) -> str | None:
    """The SubmissionSet uniqueId (``urn:oid:…``, as written), or None."""
    unique, _ = _submission_identifiers(ss)
    for j in unique:
        ident = ss["identifier"][j]
        if ident.get("system") in (None, RFC3986) and _is_oid_urn(ident.get("value")):
            return str(ident["value"])
    return None


def check_submission_set(ss: dict[str, Any], *, where: str = "List", lenient: bool = False) -> Report:
    """Check ``ss`` against PDSm_SubmissionSetComprehensive (on MHD Comprehensive SubmissionSet)."""
    c = _Checker(where, lenient)
    if not isinstance(ss, dict) or ss.get("resourceType") != "List":
        got = ss.get("resourceType") if isinstance(ss, dict) else type(ss).__name__
        c.error(
            "resourceType",
            f"List attendu, reçu {_show(got)}",
            f"List expected, got {_show(got)}",
            "structure",
        )
        return c.finish("SubmissionSet")
    contained = _Contained(c, ss)
    contained.check_references(ss)

    code = c.require(ss, "code", "code", "MHD code 1..1 = MHDlistTypes#submissionset")
    if code is not None:
        codings = code.get("coding") if isinstance(code, dict) else None
        ok = any(
            isinstance(k, dict) and k.get("system") == MHD_LIST_TYPES and k.get("code") == SUBMISSION_SET_CODE
            for k in (codings if isinstance(codings, list) else [])
        )
        if not ok:
            c.error(
                "code",
                f"{MHD_LIST_TYPES}#{SUBMISSION_SET_CODE} attendu",
                f"{MHD_LIST_TYPES}#{SUBMISSION_SET_CODE} expected",
                "code-invalid",
            )
    for key, expected in (("mode", "working"), ("status", "current")):
        value = c.require(ss, key, key, f"MHD {key} = {expected}")
        if value is not None and value != expected:
            c.error(
                key,
                f"{expected} attendu, reçu {_show(value)}",
                f"{expected} expected, got {_show(value)}",
                "value",
            )

    unique, entry = _submission_identifiers(ss)
    raw_idents = ss.get("identifier")
    idents: list[Any] = raw_idents if isinstance(raw_idents, list) else []
    for j in [*unique, *entry]:
        ident = idents[j]
        if ident.get("system") != RFC3986:
            c.error(
                f"identifier[{j}].system",
                f"{RFC3986} attendu, reçu {_show(ident.get('system'))}",
                f"{RFC3986} expected, got {_show(ident.get('system'))}",
                "value",
            )
        if ident.get("use") not in (None, "official", "usual"):
            c.error(
                f"identifier[{j}].use",
                "official ou usual attendu (MHD uniqueId / entryUUID)",
                "official or usual expected (MHD uniqueId / entryUUID)",
                "value",
            )
        value = ident.get("value")
        if not (_is_oid_urn(value) or _is_uuid_urn(value)):
            c.error(
                f"identifier[{j}].value",
                f"{_show(value)} : OID ou UUID mal formé",
                f"{_show(value)}: malformed OID or UUID",
                "value",
            )
    if not unique:
        c.missing("identifier", "MHD identifier 2..*: uniqueId urn:oid:…")
    elif len(unique) > 1:
        c.error(
            f"identifier[{unique[1]}]",
            "un seul uniqueId (urn:oid:) attendu",
            "exactly one uniqueId (urn:oid:) expected",
        )
    if not entry:
        c.missing("identifier", "MHD identifier 2..*: entryUUID urn:uuid:…")

    source_ids = _extensions(ss, SOURCE_ID_URL)
    if not source_ids:
        c.missing("extension", f"MHD {SOURCE_ID_URL} 1..1, OID")
    for i, ext in source_ids:
        ident = ext.get("valueIdentifier")
        value = ident.get("value") if isinstance(ident, dict) else None
        if not _is_oid_urn(value):
            c.error(
                f"extension[{i}].valueIdentifier.value",
                f"urn:oid:<OID> attendu, reçu {_show(value)}",
                f"urn:oid:<OID> expected, got {_show(value)}",
                "value",
            )
    if len(source_ids) > 1:
        c.error(
            f"extension[{source_ids[1][0]}]",
            "un seul ihe-sourceId attendu",
            "exactly one ihe-sourceId expected",
        )

    designations = _extensions(ss, DESIGNATION_TYPE_URL)
    if not designations:
        c.missing("extension", f"MHD Comprehensive {DESIGNATION_TYPE_URL} 1..1 (JDV_J03)")
    for i, ext in designations:
        c.concept(
            f"extension[{i}].valueCodeableConcept",
            ext.get("valueCodeableConcept"),
            vsets.content_type(),
            "ihe-designationType valueCodeableConcept",
        )
    if len(designations) > 1:
        c.error(
            f"extension[{designations[1][0]}]",
            "un seul ihe-designationType attendu",
            "exactly one ihe-designationType expected",
        )

    c.subject("subject", ss.get("subject"))
    c.require(ss, "date", "date", "MHD date 1..1 (submissionTime)")
    _check_source(c, contained, ss.get("source"))
    return c.finish("SubmissionSet")


def _check_source(c: _Checker, contained: _Contained, source: Any) -> None:
    """PDSm source 1..1: a contained PractitionerRole/Practitioner/Device/Patient, or only the author
    organisation in ``source.extension[ihe-authorOrg]`` (a contained Organization)."""
    rule = "PDSm_SubmissionSetComprehensive source"
    if not isinstance(source, dict) or not source:
        c.missing("source", f"{rule} 1..1")
        return
    has_reference = _present(source.get("reference"))
    if has_reference:
        _check_author(c, contained, "source", source, by_patient=False, rule=rule)
    orgs = _extensions(source, AUTHOR_ORG_URL)
    for i, ext in orgs:
        found = contained.target(f"source.extension[{i}].valueReference", ext.get("valueReference"), rule)
        if found is not None and found[1].get("resourceType") != "Organization":
            c.error(
                f"source.extension[{i}].valueReference",
                "doit référencer une Organization contenue",
                "must reference a contained Organization",
            )
    if not has_reference and not orgs:
        c.missing("source.reference", f"{rule} 1..1: contained author or ihe-authorOrg")


# -- securityLabel flags -------------------------------------------------------------------------------


def _label_codings(dr: Mapping[str, Any]) -> Iterator[tuple[int, str | None, dict[str, Any]]]:
    """(label index, code-system OID, coding) for every coding of every securityLabel."""
    labels = dr.get("securityLabel")
    for i, label in enumerate(labels if isinstance(labels, list) else []):
        codings = label.get("coding") if isinstance(label, dict) else None
        for coding in codings if isinstance(codings, list) else []:
            if isinstance(coding, dict):
                system = coding.get("system")
                yield i, system_oid(system) if isinstance(system, str) else None, coding


def security_flags(dr: Mapping[str, Any]) -> tuple[str | None, frozenset[str]]:
    """(confidentiality code N/R/V or None, TRE_A07 visibility codes), read by OID whatever the spelling of
    the systems and however the codings are grouped in CodeableConcepts."""
    level: str | None = None
    flags: set[str] = set()
    for _, oid, coding in _label_codings(dr):
        code = coding.get("code")
        if not isinstance(code, str):
            continue
        if oid == vsets.CONFIDENTIALITY_OID and level is None:
            level = code
        elif oid == vsets.VISIBILITY_OID:
            flags.add(code)
    return level, frozenset(flags)


def _visibility_label(code: str) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": VISIBILITY_SYSTEM, "code": code}
    display = vsets.visibility().display(VISIBILITY_SYSTEM, code)
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def _confidentiality_label(code: str) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": CONFIDENTIALITY_SYSTEM, "code": code}
    display = vsets.confidentiality().display(CONFIDENTIALITY_SYSTEM, code)
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def with_flags(
    dr: Mapping[str, Any], confidentiality: str | None, visibility: Iterable[str]
) -> list[dict[str, Any]]:
    """A new ``securityLabel`` list: the confidentiality level (``confidentiality``, or the current one when
    None), exactly the ``visibility`` codes, and any other label untouched. ``dr`` is not modified.

    Each visibility code gets its own CodeableConcept with the NOS system of TRE_A07, so that setting or
    clearing one never drops another (the PDSM4DMP draft's "unmask" PATCH replaces ``securityLabel/0`` by N
    and loses the other flags: fr-interop.md §4). A confidentiality label already carrying the requested
    level is kept as written (the sender's system spelling and display)."""
    wanted = frozenset(visibility)
    bad = sorted(wanted.difference(VISIBILITY_CODES))
    if bad:
        raise ValueError(f"visibility codes not in JDV_J08 / TRE_A07: {', '.join(bad)}")
    if confidentiality is not None and confidentiality not in CONFIDENTIALITY_CODES:
        raise ValueError(f"confidentiality must be one of {', '.join(CONFIDENTIALITY_CODES)} (JDV_J08)")

    kept_levels: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    labels = dr.get("securityLabel")
    for label in labels if isinstance(labels, list) else []:
        if not isinstance(label, dict):
            continue
        raw = label.get("coding")
        codings: list[Any] = raw if isinstance(raw, list) else []
        level_codings: list[Any] = []
        other_codings: list[Any] = []
        for coding in codings:
            system = coding.get("system") if isinstance(coding, dict) else None
            oid = system_oid(system) if isinstance(system, str) else None
            if oid == vsets.CONFIDENTIALITY_OID:
                level_codings.append(coding)
            elif oid != vsets.VISIBILITY_OID:
                other_codings.append(coding)
        if confidentiality is not None:
            # Only the requested level survives, even from a label that mixed contradictory levels.
            level_codings = [k for k in level_codings if k.get("code") == confidentiality]
        if level_codings:
            rest = {k: v for k, v in label.items() if k != "coding"}
            kept_levels.append({**copy.deepcopy(rest), "coding": copy.deepcopy(level_codings)})
        if other_codings or not codings:
            # A label with no coding (text only) or foreign codings: not ours to drop.
            rest = {k: v for k, v in label.items() if k != "coding"}
            others.append(
                {**copy.deepcopy(rest), **({"coding": copy.deepcopy(other_codings)} if codings else {})}
            )
    if confidentiality is not None and not kept_levels:
        kept_levels = [_confidentiality_label(confidentiality)]
    elif confidentiality is not None:
        kept_levels = kept_levels[:1]
    flags = [_visibility_label(code) for code in VISIBILITY_CODES if code in wanted]
    return [*kept_levels, *others, *flags]
