"""French value sets (ANS JDV / NOS TRE) for the PDSm document metadata, matched by code-system OID.

The JSON files under ``data/valuesets/`` are copies of public ANS data (their sources in
``data/SOURCES.md``): ``url``, ``oid``, ``version``, ``sources`` and the
``concepts`` (code, display, system, systemOid). They ship inside the package and are read once.

One code system has several spellings in the wild (fr-interop.md §2 and §4): ``urn:oid:<OID>``, the NOS
URL ``https://mos.esante.gouv.fr/NOS/TRE_…/FHIR/TRE-…``, a NOS alias of an external system (TRE_A08 for
HL7 confidentiality, TRE_A04 for LOINC) or the system's own canonical URL (``http://loinc.org``,
``http://terminology.hl7.org/CodeSystem/v3-Confidentiality``). Membership is therefore decided on the pair
(OID, code): :func:`system_oid` turns any known spelling into the OID, from an alias table built from the
concepts' ``system``/``systemOid`` plus the few well-known HL7, LOINC, SNOMED CT and IHE URLs below.

Two NOS "systems" have no real OID: TRE_A10-NomenclatureURN (``URN``) and TRE_A12-NomenclatureASTM
(``ASTM``); their pseudo-OIDs are used as keys like any other.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any

__all__ = [
    "CONFIDENTIALITY_OID",
    "IHE_FORMAT_OID",
    "LOINC_OID",
    "SNOMED_OID",
    "VISIBILITY_OID",
    "VISIBILITY_SYSTEM",
    "Concept",
    "ValueSet",
    "accepted_type_code",
    "author_specialty",
    "class_code",
    "confidentiality",
    "content_type",
    "facility_type",
    "format_code",
    "load",
    "practice_setting",
    "system_label",
    "system_oid",
    "type_code",
    "visibility",
]

LOINC_OID = "2.16.840.1.113883.6.1"
SNOMED_OID = "2.16.840.1.113883.6.96"
CONFIDENTIALITY_OID = "2.16.840.1.113883.5.25"  # HL7 v3 Confidentiality (N/R/V…)
IHE_FORMAT_OID = "1.3.6.1.4.1.19376.1.2.3"  # IHE format codes = NOS TRE_A11-IheFormatCode
VISIBILITY_OID = "1.2.250.1.213.1.1.4.13"  # TRE_A07-StatutVisibiliteDocument
VISIBILITY_SYSTEM = (
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"
)

_NOS = "https://mos.esante.gouv.fr/NOS/"

# System URLs that appear in real messages but not in the concepts of our files.
_WELL_KNOWN: dict[str, str] = {
    "http://loinc.org": LOINC_OID,
    # The 2023 NOS FHIR files wrote LOINC with this alias (typeCode file, notes).
    _NOS + "TRE_A04-Loinc/FHIR/TRE-A04-Loinc": LOINC_OID,
    "http://snomed.info/sct": SNOMED_OID,
    "http://terminology.hl7.org/CodeSystem/v3-Confidentiality": CONFIDENTIALITY_OID,
    "http://hl7.org/fhir/v3/Confidentiality": CONFIDENTIALITY_OID,  # FHIR STU3 spelling
    # IHE's own FHIR code system for format codes: MHD examples and the PDSM4DMP draft use the first one.
    "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode": IHE_FORMAT_OID,
    "https://profiles.ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode": IHE_FORMAT_OID,
}

# Human names of the external systems, for messages (the NOS ones are named by their TRE, see system_label).
_SYSTEM_NAMES: dict[str, str] = {
    LOINC_OID: "LOINC",
    SNOMED_OID: "SNOMED CT",
    CONFIDENTIALITY_OID: "HL7 v3 Confidentiality",
    IHE_FORMAT_OID: "IHE formatCode (TRE_A11)",
}

_OID_RE = re.compile(r"[0-2](\.(0|[1-9]\d*))+", re.ASCII)

# File of each value set, by its short name (data/SOURCES.md).
_FILES = {
    "J01": "authorSpecialty-JDV_J01-XdsAuthorSpecialty-CISIS.json",
    "J02": "healthcareFacilityTypeCode-JDV_J02-XdsHealthcareFacilityTypeCode-CISIS.json",
    "J03": "contentTypeCode-JDV_J03-XdsContentTypeCode-CISIS.json",
    "J04": "practiceSettingCode-JDV_J04-XdsPracticeSettingCode-CISIS.json",
    "J06": "classCode-JDV_J06-XdsClassCode-CISIS.json",
    "J07": "typeCode-JDV_J07-XdsTypeCode-CISIS.json",
    "J08": "confidentialityCode-JDV_J08-XdsConfidentialityCode-CISIS.json",
    "J10": "formatCode-JDV_J10-XdsFormatCode-CISIS.json",
    "A07": "visibility-TRE_A07-StatutVisibiliteDocument.json",
    # The DMP's own restrictions (fr-interop.md §1): what the national record accepted.
    "J57": "dmp-classCode-JDV_J57-ClassCode-DMP.json",
    "J58": "dmp-confidentialityCode-JDV_J58-ConfidentialityCode-DMP.json",
    "J66": "dmp-typeCode-JDV_J66-TypeCode-DMP.json",
    # Directory codes: a professional's profession, specialty and role (PractitionerRole).
    "G15": "profession-TRE_G15-ProfessionSante.json",
    "R38": "specialty-TRE_R38-SpecialiteOrdinale.json",
    "R85": "role-TRE_R85-RolePriseCharge.json",
}


@dataclass(frozen=True)
class Concept:
    code: str
    display: str | None
    system: str
    system_oid: str


@dataclass(frozen=True)
class ValueSet:
    """A French value set (JDV) or code system (TRE) with its concepts, indexed by (OID, code)."""

    name: str
    oid: str
    url: str
    version: str
    concepts: tuple[Concept, ...]
    _index: Mapping[tuple[str, str], Concept] = field(repr=False, compare=False, hash=False)
    #: The labels of the value sets `plus` added to this one.
    also: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``JDV_J07-XdsTypeCode-CISIS (1.2.250.1.213.1.1.5.471)``: what messages call it (followed by
        `` + JDV_J66-TypeCode-DMP (…)`` for a union)."""
        return " + ".join((f"{self.name} ({self.oid})", *self.also))

    @property
    def system_oids(self) -> frozenset[str]:
        return frozenset(c.system_oid for c in self.concepts)

    def concept(self, system: str | None, code: str | None) -> Concept | None:
        if not isinstance(system, str) or not isinstance(code, str):
            return None
        oid = system_oid(system)
        return None if oid is None else self._index.get((oid, code))

    def plus(self, other: ValueSet) -> ValueSet:
        """This value set with the concepts of `other` it lacks: the codes either one accepts."""
        concepts = self.concepts + tuple(
            c for c in other.concepts if (c.system_oid, c.code) not in self._index
        )
        return ValueSet(
            name=self.name,
            oid=self.oid,
            url=self.url,
            version=self.version,
            concepts=concepts,
            _index=MappingProxyType({(c.system_oid, c.code): c for c in concepts}),
            also=(*self.also, other.label),
        )

    def contains(self, system: str | None, code: str | None) -> bool:
        """Whether ``code`` of ``system`` (any known spelling of the system, see :func:`system_oid`) is in
        the value set."""
        return self.concept(system, code) is not None

    def display(self, system: str | None, code: str | None) -> str | None:
        """The ANS (French) display of the code, or None when it is not in the value set."""
        concept = self.concept(system, code)
        return None if concept is None else concept.display

    def codes(self, oid: str | None = None) -> tuple[str, ...]:
        """The codes, in file order (only those of the code system ``oid`` if given)."""
        return tuple(c.code for c in self.concepts if oid is None or c.system_oid == oid)


def _read(filename: str) -> dict[str, Any]:
    # importlib.resources, not a path relative to the repository: the files ship in the wheel.
    path = resources.files("espace_sante.fhir").joinpath("data", "valuesets", filename)
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


@functools.cache
def load(key: str) -> ValueSet:
    """The value set ``key`` (``"J07"``, ``"A07"``… or a file name from data/valuesets/), read once."""
    data = _read(_FILES.get(key, key))
    concepts = tuple(
        Concept(
            code=str(c["code"]),
            display=c.get("display"),
            system=str(c["system"]),
            system_oid=str(c["systemOid"]),
        )
        for c in data["concepts"]
    )
    return ValueSet(
        name=str(data.get("valueSet") or data.get("codeSystem")),
        oid=str(data["oid"]),
        url=str(data["url"]),
        version=str(data.get("version", "")),
        concepts=concepts,
        _index=MappingProxyType({(c.system_oid, c.code): c for c in concepts}),
    )


@functools.cache
def _aliases() -> Mapping[str, str]:
    table: dict[str, str] = {}
    for key in _FILES:
        vs = load(key)
        for concept in vs.concepts:
            table.setdefault(_normalise(concept.system), concept.system_oid)
        if "/NOS/TRE_" in vs.url:
            # A code system file (TRE_A07): its own URL is a system URL too.
            table.setdefault(_normalise(vs.url), vs.oid)
    for url, oid in _WELL_KNOWN.items():
        table.setdefault(_normalise(url), oid)
    return MappingProxyType(table)


def _normalise(system: str) -> str:
    # Seen in hand-written messages: a trailing slash, or http instead of https for the NOS.
    system = system.strip().rstrip("/")
    if system.startswith("http://mos.esante.gouv.fr/"):
        system = "https://" + system[len("http://") :]
    return system


def system_oid(system: str | None) -> str | None:
    """The OID of a code system URI: ``urn:oid:X`` gives X, a known URL gives its OID (alias table),
    anything else None."""
    if not isinstance(system, str) or not system:
        return None
    if system.startswith("urn:oid:"):
        oid = system[len("urn:oid:") :]
        return oid if _OID_RE.fullmatch(oid) else None
    return _aliases().get(_normalise(system))


def system_label(oid: str) -> str:
    """A readable name for a code system OID: LOINC, SNOMED CT, or the NOS TRE name (TRE_A03-…)."""
    if oid in _SYSTEM_NAMES:
        return _SYSTEM_NAMES[oid]
    for url, known in _aliases().items():
        if known == oid and url.startswith(_NOS):
            return url[len(_NOS) :].split("/", 1)[0]
    return oid


def type_code() -> ValueSet:
    """DocumentReference.type (XDS typeCode): JDV_J07-XdsTypeCode-CISIS."""
    return load("J07")


@functools.cache
def accepted_type_code() -> ValueSet:
    """What a DocumentReference.type may be: JDV_J07, plus the codes of the DMP's own JDV_J66 that J07 no
    longer lists. There is one, LOINC 11526-1 (anatomopathology; J07 now has 60568-3): the DMP accepted it,
    so the legacy DMP's export and software written for the DMP still send it. The DMP's class and
    confidentiality lists, J57 and J58, are inside J06 and J08 (tests/fhir/test_valuesets.py)."""
    return type_code().plus(load("J66"))


def class_code() -> ValueSet:
    """DocumentReference.category (XDS classCode): JDV_J06-XdsClassCode-CISIS."""
    return load("J06")


def format_code() -> ValueSet:
    """DocumentReference.content.format (XDS formatCode): JDV_J10-XdsFormatCode-CISIS."""
    return load("J10")


def facility_type() -> ValueSet:
    """DocumentReference.context.facilityType (XDS healthcareFacilityTypeCode): JDV_J02."""
    return load("J02")


def practice_setting() -> ValueSet:
    """DocumentReference.context.practiceSetting (XDS practiceSettingCode): JDV_J04."""
    return load("J04")


def confidentiality() -> ValueSet:
    """DocumentReference.securityLabel (XDS confidentialityCode): JDV_J08, i.e. N/R/V + the three DMP
    visibility codes of TRE_A07."""
    return load("J08")


def visibility() -> ValueSet:
    """TRE_A07-StatutVisibiliteDocument, the whole code system (five codes, three of them in J08)."""
    return load("A07")


def content_type() -> ValueSet:
    """SubmissionSet ``ihe-designationType`` (XDS contentTypeCode): JDV_J03-XdsContentTypeCode-CISIS."""
    return load("J03")


def author_specialty() -> ValueSet:
    """XDS author.authorSpecialty: JDV_J01-XdsAuthorSpecialty-CISIS (profession/savoir-faire codes)."""
    return load("J01")
