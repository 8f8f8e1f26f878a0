"""The ebRIM metadata of an XDM subset (METADATA.XML) and its PDSm DocumentReference.

METADATA.XML holds a `lcm:SubmitObjectsRequest` (or a bare `rim:RegistryObjectList`) as ITI-41 would send it
(ITI TF-2 ITI-32 §3.32.4.1.3.2): one `RegistryPackage` (the SubmissionSet), one `ExtrinsicObject` per
DocumentEntry, `Association`s. A DocumentEntry's attributes are coded as ITI TF-3 §4.2.3.2 says: Slots
(`creationTime`, `hash`, `size`, `URI`…), Classifications told apart by their `classificationScheme` UUID
(§4.2.5.1, Table 4.2.5-1) and ExternalIdentifiers by their `identificationScheme` UUID (uniqueId,
patientId). Values are HL7 v2 data types: CX for patient ids, XCN/XON for authors, DTM (UTC) for times.

`parse` refuses the whole file when it is not well-formed ebRIM or carries a DOCTYPE (no DTD, no entity, no
network: SECURITY FHIR/IHE attack 6); a DocumentEntry with a missing or malformed attribute is kept with its
`problems`, so that its document is set aside with the reason rather than lost. `document_reference` maps an
entry to the DocumentReference an MHD ITI-65 deposit carries (IHE MHD §4.5.1.1 "DocumentEntry Metadata
Attributes" mapping; docs/legacy.md has the table), the French specifics from PDSm (fr-interop.md §1)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from lxml import etree

from espace_sante.fhir import pdsm
from espace_sante.fhir import valuesets as vsets
from espace_sante.fhir.identifiers import explain_identifier

__all__ = [
    "Author",
    "Code",
    "DocumentEntry",
    "MetadataRefused",
    "Problem",
    "document_reference",
    "entry_from_json",
    "parse",
    "patient_ins",
]

RIM = "{urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0}"
LCM = "{urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0}"
QUERY = "{urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0}"

# ITI TF-3 §4.2.5.1, Table 4.2.5-1: DocumentEntry classification and identification schemes.
AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
CONFIDENTIALITY_CODE = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
EVENT_CODE = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
FORMAT_CODE = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
FACILITY_CODE = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
PRACTICE_CODE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SUBMISSION_SET = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
SUBMISSION_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
_NAMES = {  # the same, when a producer names them instead (ExternalIdentifier Name, ITI TF-3 §4.2.3.2)
    "XDSDocumentEntry.uniqueId": UNIQUE_ID,
    "XDSDocumentEntry.patientId": PATIENT_ID,
}
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"

INS_OIDS = frozenset({pdsm.INS_NIR_OID, pdsm.INS_NIA_OID, pdsm.INS_NIR_TEST_OID, pdsm.INS_NIR_DEMO_OID})
IDNPS_OID = "1.2.250.1.71.4.2.1"
IDNST_OID = "1.2.250.1.71.4.2.2"
RPPS_SYSTEM = "https://rpps.esante.gouv.fr"
FINESS_SYSTEM = "https://finess.esante.gouv.fr"
_OID = re.compile(r"[0-2](\.(0|[1-9]\d*))+", re.ASCII)
_DTM = re.compile(r"\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2})?)?)?)?)?", re.ASCII)
_SHA1_HEX = re.compile(r"[0-9a-fA-F]{40}", re.ASCII)
_URI_PART = re.compile(r"(\d+)\|(.*)", re.DOTALL)
#: Who keeps a legacy document whose metadata names no organisation (PDSm custodian 1..1).
LEGACY_CUSTODIAN = "Dossier Médical Partagé (reprise des documents)"


class MetadataRefused(Exception):
    """METADATA.XML cannot be read at all: none of its subset's documents can be attributed to a person."""

    def __init__(self, fr: str, en: str) -> None:
        super().__init__(f"{fr} / {en}")
        self.fr = fr
        self.en = en


@dataclass(frozen=True)
class Code:
    """An XDS coded value: `nodeRepresentation`, the `codingScheme` slot (an OID in France), the Name."""

    code: str
    scheme: str
    display: str = ""


@dataclass(frozen=True)
class Author:
    """An XDS author (ITI TF-3 §4.2.3.1.4): authorPerson (XCN), authorInstitution (XON), authorSpecialty (CE),
    each split into its HL7 v2 components."""

    person: tuple[str, ...] = ()
    institutions: tuple[tuple[str, ...], ...] = ()
    specialties: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class Problem:
    """What is wrong with one attribute: `where` names the XDS attribute only (never a value), so that it can
    be stored and shown in clear."""

    where: str
    fr: str
    en: str


@dataclass(frozen=True)
class DocumentEntry:
    entry_id: str = ""
    unique_id: str = ""
    status: str = APPROVED
    patient: tuple[str, str] = ("", "")  # (assigning authority OID, id) of XDSDocumentEntry.patientId
    source_patient: tuple[str, str] = ("", "")
    patient_info: tuple[str, ...] = ()  # sourcePatientInfo values ("PID-5|…")
    mime_type: str = ""
    title: str = ""
    comments: str = ""
    language: str = ""
    creation_time: str = ""
    service_start: str = ""
    service_stop: str = ""
    submission_time: str = ""
    hash: str = ""
    size: int | None = None
    uri: str = ""
    class_code: Code | None = None
    type_code: Code | None = None
    format_code: Code | None = None
    facility: Code | None = None
    practice: Code | None = None
    confidentiality: tuple[Code, ...] = ()
    events: tuple[Code, ...] = ()
    authors: tuple[Author, ...] = ()
    problems: tuple[Problem, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def entry_from_json(data: dict[str, Any]) -> DocumentEntry:
    """The entry `as_json` gave (the set-aside store keeps it encrypted and retries from it)."""

    def code(value: Any) -> Code | None:
        return None if value is None else Code(**value)

    return DocumentEntry(
        **{
            **data,
            "patient": tuple(data["patient"]),
            "source_patient": tuple(data["source_patient"]),
            "patient_info": tuple(data["patient_info"]),
            "class_code": code(data["class_code"]),
            "type_code": code(data["type_code"]),
            "format_code": code(data["format_code"]),
            "facility": code(data["facility"]),
            "practice": code(data["practice"]),
            "confidentiality": tuple(Code(**c) for c in data["confidentiality"]),
            "events": tuple(Code(**c) for c in data["events"]),
            "authors": tuple(
                Author(
                    tuple(a["person"]),
                    tuple(tuple(i) for i in a["institutions"]),
                    tuple(tuple(s) for s in a["specialties"]),
                )
                for a in data["authors"]
            ),
            "problems": tuple(Problem(**p) for p in data["problems"]),
        }
    )


# --- reading METADATA.XML ----------------------------------------------------------------------------------


def parse(data: bytes) -> list[DocumentEntry]:
    """Every DocumentEntry of one subset's METADATA.XML, with its problems; raises MetadataRefused when the
    file is not ebRIM or not safe to read."""
    # STACK.md: entities unresolved, no DTD, no network; huge_tree off keeps libxml2's limits.
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_pis=True
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        raise MetadataRefused(
            f"METADATA.XML mal formé (ligne {line}, colonne {column})",
            f"METADATA.XML not well-formed (line {line}, column {column})",
        ) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:  # type: ignore[union-attr]  # lxml-stubs lag
        raise MetadataRefused(
            "METADATA.XML avec DOCTYPE refusé (DTD et entités interdites)",
            "METADATA.XML with a DOCTYPE refused (no DTDs or entities)",
        )
    if root.tag == f"{RIM}RegistryObjectList":
        objects = root
    elif root.tag in (f"{LCM}SubmitObjectsRequest", f"{QUERY}AdhocQueryResponse"):
        found = root.find(f"{RIM}RegistryObjectList")
        if found is None:
            raise MetadataRefused("RegistryObjectList absent", "no RegistryObjectList")
        objects = found
    else:
        raise MetadataRefused(
            "METADATA.XML n'est pas une soumission ebRIM (SubmitObjectsRequest attendu)",
            "METADATA.XML is not an ebRIM submission (SubmitObjectsRequest expected)",
        )
    submission_time = ""
    for package in objects.iter(f"{RIM}RegistryPackage"):
        classified = {c.get("classificationNode") for c in package.iter(f"{RIM}Classification")}
        if SUBMISSION_SET in classified or _external(package, SUBMISSION_UNIQUE_ID):
            submission_time = _slot(package, "submissionTime")
            break
    entries = [_entry(eo, submission_time) for eo in objects.iter(f"{RIM}ExtrinsicObject")]
    if not entries:
        raise MetadataRefused(
            "aucune fiche de document (ExtrinsicObject)", "no DocumentEntry (ExtrinsicObject)"
        )
    return entries


def _text(value: str | None) -> str:
    return " ".join((value or "").split())


def _slots(node: etree._Element, name: str) -> list[str]:
    for slot in node.findall(f"{RIM}Slot"):
        if slot.get("name") == name:
            return [v.text or "" for v in slot.iter(f"{RIM}Value")]
    return []


def _slot(node: etree._Element, name: str) -> str:
    values = _slots(node, name)
    return values[0].strip() if values else ""


def _name(node: etree._Element, tag: str = "Name") -> str:
    found = node.find(f"{RIM}{tag}/{RIM}LocalizedString")
    return _text(found.get("value")) if found is not None else ""


def _external(node: etree._Element, scheme: str) -> str | None:
    for ident in node.findall(f"{RIM}ExternalIdentifier"):
        named = _NAMES.get(_name(ident), "")
        if ident.get("identificationScheme") == scheme or named == scheme:
            return (ident.get("value") or "").strip()
    return None


def _codes(node: etree._Element, scheme: str) -> list[Code]:
    return [
        Code((c.get("nodeRepresentation") or "").strip(), _slot(c, "codingScheme"), _name(c))
        for c in node.findall(f"{RIM}Classification")
        if c.get("classificationScheme") == scheme
    ]


def unescape(value: str) -> str:
    """HL7 v2 escapes (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\) in a component, as XDS carries them (ITI TF-3 §4.2.3.1.7)."""
    for escaped, plain in (("\\F\\", "|"), ("\\S\\", "^"), ("\\T\\", "&"), ("\\R\\", "~"), ("\\E\\", "\\")):
        value = value.replace(escaped, plain)
    return value


def _cx(value: str) -> tuple[str, str]:
    """(assigning authority OID, id) of an HL7 v2 CX `id^^^&OID&ISO` (ITI TF-3 §4.2.3.1.7, patientId)."""
    parts = value.split("^")
    authority = parts[3].split("&") if len(parts) > 3 else []
    oid = authority[1] if len(authority) > 1 else ""
    return oid.strip(), unescape(parts[0]).strip()


def _entry(eo: etree._Element, submission_time: str) -> DocumentEntry:
    problems: list[Problem] = []

    def need(where: str, value: object, what_fr: str = "absent", what_en: str = "missing") -> None:
        if value in (None, "", ()):
            problems.append(Problem(f"XDSDocumentEntry.{where}", what_fr, what_en))

    def one(scheme: str, where: str) -> Code | None:
        found = _codes(eo, scheme)
        if len(found) > 1:
            problems.append(Problem(f"XDSDocumentEntry.{where}", "plusieurs valeurs", "several values"))
        code = found[0] if found else None
        need(where, code)
        if code is not None and (not code.code or not code.scheme):
            problems.append(
                Problem(
                    f"XDSDocumentEntry.{where}", "code ou codingScheme absent", "code or codingScheme missing"
                )
            )
        return code

    unique_id = _external(eo, UNIQUE_ID) or ""
    need("uniqueId", unique_id)
    if unique_id and not (_OID.fullmatch(unique_id) or unique_id.startswith("urn:uuid:")):
        problems.append(
            Problem("XDSDocumentEntry.uniqueId", "OID attendu", "an OID is expected (ITI TF-3 §4.2.3.2.26)")
        )
    patient = _cx(_external(eo, PATIENT_ID) or "")
    need("patientId", patient[1])
    source = _cx(_slot(eo, "sourcePatientId"))
    times = {}
    for slot in ("creationTime", "serviceStartTime", "serviceStopTime"):
        value = _slot(eo, slot)
        if value and _fhir_datetime(value) is None:
            problems.append(
                Problem(f"XDSDocumentEntry.{slot}", "date invalide (DTM)", "invalid date (DTM, UTC)")
            )
            value = ""
        times[slot] = value
    need("creationTime", times["creationTime"])
    if submission_time and _fhir_datetime(submission_time) is None:
        submission_time = ""
    digest = _slot(eo, "hash")
    need("hash", digest)  # XDM: hash and size are required (ITI TF-3 Table 4.3.1-3)
    if digest and not _SHA1_HEX.fullmatch(digest):
        problems.append(Problem("XDSDocumentEntry.hash", "SHA-1 hexadécimal attendu", "hex SHA-1 expected"))
        digest = ""
    size_text = _slot(eo, "size")
    size = int(size_text) if size_text.isascii() and size_text.isdigit() and len(size_text) < 19 else None
    need("size", size)
    language = _slot(eo, "languageCode")
    need("languageCode", language)
    mime = (eo.get("mimeType") or "").strip()
    need("mimeType", mime)
    uri = _uri(_slots(eo, "URI"))
    need("URI", uri)  # ITI-32 §3.32.4.1.3.2: the document's file, relative to METADATA.XML
    status = (eo.get("status") or APPROVED).strip()
    if status not in (APPROVED, DEPRECATED):
        problems.append(Problem("XDSDocumentEntry.availabilityStatus", "statut inconnu", "unknown status"))
    authors = tuple(
        _author(c) for c in eo.findall(f"{RIM}Classification") if c.get("classificationScheme") == AUTHOR
    )
    need("author", authors)
    for author in authors:
        if not author.person:
            problems.append(Problem("XDSDocumentEntry.author", "authorPerson absent", "authorPerson missing"))
    confidentiality = tuple(_codes(eo, CONFIDENTIALITY_CODE))
    need("confidentialityCode", confidentiality)
    return DocumentEntry(
        entry_id=(eo.get("id") or "").strip(),
        unique_id=unique_id,
        status=status,
        patient=patient,
        source_patient=source,
        patient_info=tuple(_slots(eo, "sourcePatientInfo")),
        mime_type=mime,
        title=_name(eo),
        comments=_name(eo, "Description"),
        language=language,
        creation_time=times["creationTime"],
        service_start=times["serviceStartTime"],
        service_stop=times["serviceStopTime"],
        submission_time=submission_time,
        hash=digest,
        size=size,
        uri=uri,
        class_code=one(CLASS_CODE, "classCode"),
        type_code=one(TYPE_CODE, "typeCode"),
        format_code=one(FORMAT_CODE, "formatCode"),
        facility=one(FACILITY_CODE, "healthcareFacilityTypeCode"),
        practice=one(PRACTICE_CODE, "practiceSettingCode"),
        confidentiality=confidentiality,
        events=tuple(_codes(eo, EVENT_CODE)),
        authors=authors,
        problems=tuple(problems),
    )


def _uri(values: list[str]) -> str:
    """The URI slot: one value, or several `n|part` values to be joined in order when longer than one slot
    value may be (ITI TF-3 §4.2.3.2.24)."""
    if len(values) <= 1:
        return values[0].strip() if values else ""
    parts = []
    for value in values:
        match = _URI_PART.fullmatch(value.strip())
        if match is None:
            return ""
        parts.append((int(match.group(1)), match.group(2)))
    return "".join(part for _, part in sorted(parts))


def _author(node: etree._Element) -> Author:
    person = _slots(node, "authorPerson")
    return Author(
        tuple(person[0].split("^")) if person and person[0].strip() else (),
        tuple(tuple(v.split("^")) for v in _slots(node, "authorInstitution") if v.strip()),
        tuple(tuple(v.split("^")) for v in _slots(node, "authorSpecialty") if v.strip()),
    )


def _fhir_datetime(value: str, *, instant: bool = False) -> str | None:
    """An XDS DTM (`YYYY[MM[DD[hh[mm[ss]]]]]`, UTC: ITI TF-3 §4.2.3.1.5) as a FHIR dateTime, or a full instant
    (padded to midnight UTC) for elements that need one; None when invalid."""
    value = value.strip()
    if not _DTM.fullmatch(value):
        return None
    padded = value + "0101000000"[len(value) - 4 :] if len(value) < 14 else value
    try:
        moment = datetime.strptime(padded, "%Y%m%d%H%M%S")
    except ValueError:
        return None
    if instant or len(value) >= 10:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.strftime({4: "%Y", 6: "%Y-%m"}.get(len(value), "%Y-%m-%d"))


# --- the patient ------------------------------------------------------------------------------------------------


def patient_ins(entry: DocumentEntry, *, production: bool) -> tuple[str, str] | Problem:
    """(INS OID, NIR) naming the document's person: XDSDocumentEntry.patientId when it is an INS, else
    sourcePatientId when that is one (a local domain's export). The test (…4.10) and demo (…4.11) INS systems
    are matched as INS-NIR outside production only, where they are fictitious numbers."""
    for oid, value in (entry.patient, entry.source_patient):
        if oid not in INS_OIDS or not value:
            continue
        if oid == pdsm.INS_NIA_OID:
            return Problem(
                "XDSDocumentEntry.patientId",
                "INS-NIA (identifiant provisoire) : pas de rapprochement possible",
                "INS-NIA (temporary identifier): cannot be matched",
            )
        if production and oid != pdsm.INS_NIR_OID:
            return Problem(
                "XDSDocumentEntry.patientId",
                "INS de test refusé en production",
                "test INS refused in production",
            )
        error = explain_identifier(f"urn:oid:{pdsm.INS_NIR_OID}", value)
        if error is not None:
            return Problem(
                "XDSDocumentEntry.patientId", f"INS invalide, {error.fr}", f"invalid INS, {error.en}"
            )
        return oid, value
    return Problem(
        "XDSDocumentEntry.patientId",
        f"aucun INS (urn:oid:{pdsm.INS_NIR_OID}) dans patientId ni sourcePatientId",
        f"no INS (urn:oid:{pdsm.INS_NIR_OID}) in patientId or sourcePatientId",
    )


# --- the DocumentReference -------------------------------------------------------------------------------------


def _system(scheme: str) -> str:
    return f"urn:oid:{scheme}" if _OID.fullmatch(scheme) else scheme


def _coding(code: Code, vs: vsets.ValueSet | None = None) -> dict[str, Any]:
    """A Coding in the system spelling of the French value set when the code is in it (so that searches by the
    NOS URL match), else `urn:oid:<codingScheme>` for the PDSm checks to judge."""
    system = _system(code.scheme)
    concept = vs.concept(system, code.code) if vs is not None else None
    if concept is not None:
        out: dict[str, Any] = {"system": concept.system, "code": code.code}
        display = concept.display or code.display
    else:
        out = {"system": system, "code": code.code}
        display = code.display
    if display:
        out["display"] = display
    return out


def _security_label(code: Code) -> dict[str, Any]:
    """confidentialityCode → securityLabel, one entry per code: N/R/V in HL7's system, the DMP visibility codes
    in TRE_A07's (docs/documents.md: the access SQL and the rules read them from these systems)."""
    oid = vsets.system_oid(_system(code.scheme))
    if oid == vsets.CONFIDENTIALITY_OID:
        return {"coding": [{"system": pdsm.CONFIDENTIALITY_SYSTEM, "code": code.code}]}
    if oid == vsets.VISIBILITY_OID:
        return {"coding": [{"system": pdsm.VISIBILITY_SYSTEM, "code": code.code}]}
    return {"coding": [_coding(code)]}


def _part(parts: Sequence[str], index: int) -> str:
    return unescape(parts[index]).strip() if len(parts) > index else ""


def _practitioner(rid: str, xcn: tuple[str, ...]) -> dict[str, Any]:
    """XCN `IdNat_PS^family^given^^^prefix^^^&1.2.250.1.71.4.2.1&ISO^…` (CI-SIS: IdNat_PS = "8" + RPPS)."""
    identifier = _part(xcn, 0)
    body: dict[str, Any] = {
        "resourceType": "Practitioner",
        "id": rid,
        "identifier": [{"system": pdsm.IDNPS_SYSTEM, "value": identifier}],
    }
    if identifier.startswith("8") and len(identifier) == 12:
        body["identifier"].append({"system": RPPS_SYSTEM, "value": identifier[1:]})
    name: dict[str, Any] = {}
    if _part(xcn, 1):
        name["family"] = _part(xcn, 1)
    if _part(xcn, 2):
        name["given"] = [_part(xcn, 2)]
    if _part(xcn, 5):
        name["prefix"] = [_part(xcn, 5)]
    if name:
        body["name"] = [name]
    return body


def _organization(rid: str, xon: tuple[str, ...]) -> dict[str, Any]:
    """XON `name^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^<IDNST>` (IDNST = "1" + FINESS, "3" + SIRET…)."""
    body: dict[str, Any] = {"resourceType": "Organization", "id": rid}
    if _part(xon, 0):
        body["name"] = _part(xon, 0)
    idnst = _part(xon, 9)
    authority = _part(xon, 5).split("&")
    if idnst and (len(authority) < 2 or authority[1] in ("", IDNST_OID)):
        body["identifier"] = [{"system": f"urn:oid:{IDNST_OID}", "value": idnst}]
        if idnst.startswith("1") and len(idnst) == 10:
            body["identifier"].append({"system": FINESS_SYSTEM, "value": idnst[1:]})
    return body


def _patient(entry: DocumentEntry, ins: tuple[str, str]) -> dict[str, Any]:
    """The contained source patient (MHD sourcePatientInfo): the INS, and what sourcePatientInfo says of the
    identity (PID-5 name, PID-7 birth date, PID-8 sex) when well formed."""
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "patient",
        "identifier": [{"use": "official", "system": f"urn:oid:{ins[0]}", "value": ins[1]}],
    }
    for value in entry.patient_info:
        field_, _, content = value.partition("|")
        if field_ == "PID-5" and content:
            xpn = content.split("^")
            name: dict[str, Any] = {}
            if _part(xpn, 0):
                name["family"] = _part(xpn, 0)
            if _part(xpn, 1):
                name["given"] = [_part(xpn, 1)]
            if name and "name" not in body:
                body["name"] = [name]
        elif field_ == "PID-7" and re.fullmatch(r"\d{8}", content.strip()):
            birth = _fhir_datetime(content.strip())
            if birth:
                body["birthDate"] = birth
        elif field_ == "PID-8":
            gender = {"M": "male", "F": "female", "U": "unknown", "A": "other", "O": "other"}.get(
                content.strip()
            )
            if gender:
                body["gender"] = gender
    return body


def document_reference(entry: DocumentEntry, *, ins: tuple[str, str], subject: str) -> dict[str, Any]:
    """The DocumentReference for `entry` in the PDSm comprehensive form (attachment with size and SHA-1, no
    content: the caller adds `url` or `data`). `subject` is the literal reference to the person's Patient."""
    contained: list[dict[str, Any]] = [_patient(entry, ins)]
    authors: list[dict[str, str]] = []
    custodian = ""
    for i, author in enumerate(entry.authors):
        org_id = ""
        if author.institutions:
            org_id = f"org-{i}"
            contained.append(_organization(org_id, author.institutions[0]))
            custodian = custodian or org_id
        authority = _part(author.person, 8).split("&")
        oid = authority[1] if len(authority) > 1 else ""
        if oid in INS_OIDS:
            authors.append({"reference": "#patient"})  # the person's own document
            continue
        contained.append(_practitioner(f"auteur-{i}", author.person))
        role: dict[str, Any] = {
            "resourceType": "PractitionerRole",
            "id": f"role-{i}",
            "practitioner": {"reference": f"#auteur-{i}"},
        }
        if org_id:
            role["organization"] = {"reference": f"#{org_id}"}
        specialties = [
            _coding(Code(_part(s, 0), _part(s, 2), _part(s, 1)), vsets.author_specialty())
            for s in author.specialties
            if _part(s, 0) and _part(s, 2)
        ]
        if specialties:
            role["specialty"] = [{"coding": [c]} for c in specialties]
        contained.append(role)
        authors.append({"reference": f"#role-{i}"})
    if not custodian:
        custodian = "dmp"
        contained.append({"resourceType": "Organization", "id": "dmp", "name": LEGACY_CUSTODIAN})
    created = _fhir_datetime(entry.creation_time) if entry.creation_time else None
    dr: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "contained": contained,
        "masterIdentifier": {
            "system": pdsm.RFC3986,
            "value": entry.unique_id if entry.unique_id.startswith("urn:") else f"urn:oid:{entry.unique_id}",
        },
        "status": "current",
        "subject": {"reference": subject},
        "author": authors,
        "custodian": {"reference": f"#{custodian}"},
        "securityLabel": [_security_label(c) for c in entry.confidentiality],
    }
    if entry.entry_id.startswith("urn:uuid:"):
        dr["identifier"] = [{"use": "official", "system": pdsm.RFC3986, "value": entry.entry_id}]
    if entry.type_code:
        dr["type"] = {"coding": [_coding(entry.type_code, vsets.accepted_type_code())]}
    if entry.class_code:
        dr["category"] = [{"coding": [_coding(entry.class_code, vsets.class_code())]}]
    moment = entry.submission_time or entry.creation_time
    if moment:
        dr["date"] = _fhir_datetime(moment, instant=True)
    if entry.comments:
        dr["description"] = entry.comments
    # PDSm titreDocument 1..1; an XDS title is optional: the type's name is what the DMP showed without one.
    title = entry.title or (entry.type_code.display if entry.type_code else "") or "Document"
    attachment: dict[str, Any] = {"contentType": entry.mime_type, "language": entry.language, "title": title}
    if created:
        attachment["creation"] = created
    if entry.size is not None:
        attachment["size"] = entry.size
    if entry.hash:
        attachment["hash"] = base64.b64encode(binascii.unhexlify(entry.hash)).decode()
    content: dict[str, Any] = {"attachment": attachment}
    if entry.format_code:
        content["format"] = _coding(entry.format_code, vsets.format_code())
    dr["content"] = [content]
    context: dict[str, Any] = {"sourcePatientInfo": {"reference": "#patient"}}
    if entry.events:
        context["event"] = [{"coding": [_coding(c)]} for c in entry.events]
    # PDSm period.start 1..1 where XDS serviceStartTime is R2: the creation time bounds the act when absent.
    start = entry.service_start or entry.creation_time
    if start:
        context["period"] = {"start": _fhir_datetime(start)}
        if entry.service_stop:
            context["period"]["end"] = _fhir_datetime(entry.service_stop)
    if entry.facility:
        context["facilityType"] = {"coding": [_coding(entry.facility, vsets.facility_type())]}
    if entry.practice:
        context["practiceSetting"] = {"coding": [_coding(entry.practice, vsets.practice_setting())]}
    dr["context"] = context
    return dr
