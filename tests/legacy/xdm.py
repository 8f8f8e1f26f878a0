"""Builders of legacy DMP export packages (IHE XDM, ITI-32) as the former DMP's export would write them: a ZIP with
`IHE_XDM/SUBSETnn/METADATA.XML` (an ebRIM SubmitObjectsRequest with French codes, ITI TF-3 §4.2) and the
documents beside it, plus hostile variants for the ZIP checks."""

from __future__ import annotations

import hashlib
import io
import stat
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from espace_sante.spaces.legacy import metadata as m
from tests.content.samples import cda_non_xml, report_pdf

RIM_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RIM = f"{{{RIM_NS}}}"
EXTRINSIC = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
INS_NIR = "1.2.250.1.213.1.4.8"
#: The IdNat_PS of the PDSm examples' author (Dr Hélène Moreau-Lambert, RPPS 10003613289).
IDNPS = "810003613289"


def new_oid() -> str:
    return f"2.25.{uuid.uuid4().int}"


@dataclass
class Doc:
    """One DocumentEntry and its file. `omit` drops slots or classifications by their XDS name
    ("classCode", "hash", "URI"…); `hash`/`size` override the true ones."""

    nir: str
    content: bytes = field(default_factory=report_pdf)
    mime: str = "application/pdf"
    file: str = ""
    unique_id: str = field(default_factory=new_oid)
    title: str = "Compte rendu de consultation"
    class_code: tuple[str, str, str] = ("10", "1.2.250.1.213.1.1.4.1", "Compte rendu")
    type_code: tuple[str, str, str] = ("11488-4", "2.16.840.1.113883.6.1", "CR de consultation")
    format_code: tuple[str, str, str] = (
        "urn:ihe:iti:xds-sd:pdf:2008",
        "1.3.6.1.4.1.19376.1.2.3",
        "Document à corps non structuré en Pdf/A-1",
    )
    confidentiality: tuple[tuple[str, str, str], ...] = (("N", "2.16.840.1.113883.5.25", "Normal"),)
    facility: tuple[str, str, str] = ("SA01", "1.2.250.1.71.4.2.4", "Etablissement public de santé")
    practice: tuple[str, str, str] = ("ETABLISSEMENT", "1.2.250.1.213.1.1.4.9", "Etablissement de santé")
    ins_oid: str = INS_NIR
    author: str = f"{IDNPS}^MOREAU-LAMBERT^Hélène^^^Dr^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"
    institution: str = "Hôpital Édouard Herriot^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1690781810"
    status: str = m.APPROVED
    omit: frozenset[str] = frozenset()
    hash: str | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        if not self.file:
            self.file = f"DOC{uuid.uuid4().hex[:8].upper()}.{'XML' if self.mime == 'text/xml' else 'PDF'}"


def cda_doc(nir: str, **extra: object) -> Doc:
    """A French CDA R2 (non-XML body carrying a PDF, XDS-SD) as the DMP held most reports."""
    return Doc(nir, content=cda_non_xml(report_pdf()), mime="text/xml", **extra)  # type: ignore[arg-type]


def _slot(parent: etree._Element, name: str, *values: str) -> None:
    slot = etree.SubElement(parent, f"{RIM}Slot", name=name)
    value_list = etree.SubElement(slot, f"{RIM}ValueList")
    for value in values:
        etree.SubElement(value_list, f"{RIM}Value").text = value


def _name(parent: etree._Element, text: str, tag: str = "Name") -> None:
    name = etree.SubElement(parent, f"{RIM}{tag}")
    etree.SubElement(name, f"{RIM}LocalizedString", value=text)


def _classification(
    parent: etree._Element, scheme: str, eo_id: str, code: tuple[str, str, str] | None = None
) -> etree._Element:
    c = etree.SubElement(
        parent,
        f"{RIM}Classification",
        classificationScheme=scheme,
        classifiedObject=eo_id,
        id=f"urn:uuid:{uuid.uuid4()}",
        nodeRepresentation=code[0] if code else "",
    )
    if code:
        _slot(c, "codingScheme", code[1])
        _name(c, code[2])
    return c


def metadata_xml(docs: list[Doc], *, submission_unique: str | None = None) -> bytes:
    """METADATA.XML of one subset: a SubmissionSet and one ExtrinsicObject per document."""
    request = etree.Element(f"{{{LCM_NS}}}SubmitObjectsRequest", nsmap={"lcm": LCM_NS, "rim": RIM_NS})
    objects = etree.SubElement(request, f"{RIM}RegistryObjectList")
    ss_id = f"urn:uuid:{uuid.uuid4()}"
    ss = etree.SubElement(objects, f"{RIM}RegistryPackage", id=ss_id)
    _slot(ss, "submissionTime", "20240115103000")
    etree.SubElement(
        ss,
        f"{RIM}ExternalIdentifier",
        identificationScheme=m.SUBMISSION_UNIQUE_ID,
        value=submission_unique or new_oid(),
        registryObject=ss_id,
    )
    for doc in docs:
        eo_id = f"urn:uuid:{uuid.uuid4()}"
        eo = etree.SubElement(
            objects,
            f"{RIM}ExtrinsicObject",
            id=eo_id,
            mimeType=doc.mime,
            objectType=EXTRINSIC,
            status=doc.status,
        )
        slots = {
            "creationTime": "20230612091500",
            "serviceStartTime": "20230612080000",
            "languageCode": "fr-FR",
            "hash": doc.hash or hashlib.sha1(doc.content, usedforsecurity=False).hexdigest(),
            "size": str(doc.size if doc.size is not None else len(doc.content)),
            "URI": doc.file,
            "sourcePatientId": f"{doc.nir}^^^&{doc.ins_oid}&ISO^NH",
        }
        for name, value in slots.items():
            if name not in doc.omit:
                _slot(eo, name, value)
        _slot(eo, "sourcePatientInfo", "PID-5|MARTIN^JEANNE^^^^^L", "PID-7|19550814", "PID-8|F")
        _name(eo, doc.title)
        if "author" not in doc.omit:
            author = _classification(eo, m.AUTHOR, eo_id)
            _slot(author, "authorPerson", doc.author)
            _slot(author, "authorInstitution", doc.institution)
            _slot(
                author,
                "authorSpecialty",
                "G15_10/SM26^Médecin - Qualifié en Médecine Générale (SM)^1.2.250.1.213.1.1.4.5",
            )
        for scheme, name, code in (
            (m.CLASS_CODE, "classCode", doc.class_code),
            (m.TYPE_CODE, "typeCode", doc.type_code),
            (m.FORMAT_CODE, "formatCode", doc.format_code),
            (m.FACILITY_CODE, "healthcareFacilityTypeCode", doc.facility),
            (m.PRACTICE_CODE, "practiceSettingCode", doc.practice),
        ):
            if name not in doc.omit:
                _classification(eo, scheme, eo_id, code)
        if "confidentialityCode" not in doc.omit:
            for code in doc.confidentiality:
                _classification(eo, m.CONFIDENTIALITY_CODE, eo_id, code)
        if "patientId" not in doc.omit:
            etree.SubElement(
                eo,
                f"{RIM}ExternalIdentifier",
                identificationScheme=m.PATIENT_ID,
                value=f"{doc.nir}^^^&{doc.ins_oid}&ISO^NH",
                registryObject=eo_id,
            )
        if "uniqueId" not in doc.omit:
            etree.SubElement(
                eo,
                f"{RIM}ExternalIdentifier",
                identificationScheme=m.UNIQUE_ID,
                value=doc.unique_id,
                registryObject=eo_id,
            )
        etree.SubElement(
            objects,
            f"{RIM}Association",
            associationType="urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember",
            sourceObject=ss_id,
            targetObject=eo_id,
            id=f"urn:uuid:{uuid.uuid4()}",
        )
    data: bytes = etree.tostring(request, xml_declaration=True, encoding="UTF-8")
    return data


def package(
    subsets: list[list[Doc]],
    *,
    extra: tuple[tuple[str, bytes], ...] = (),
    metadata: dict[int, bytes] | None = None,
) -> bytes:
    """An XDM ZIP: README.TXT, INDEX.HTM, IHE_XDM/SUBSETnn/METADATA.XML and the documents (ITI-32)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("README.TXT", "Export du Dossier Médical Partagé\r\n")
        z.writestr("INDEX.HTM", "<html><body>Export DMP</body></html>")
        for n, docs in enumerate(subsets, start=1):
            folder = f"IHE_XDM/SUBSET{n:02d}"
            z.writestr(f"{folder}/METADATA.XML", (metadata or {}).get(n) or metadata_xml(docs))
            for doc in docs:
                if "file" not in doc.omit:
                    z.writestr(f"{folder}/{doc.file}", doc.content)
        for name, data in extra:
            z.writestr(name, data)
    return out.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def zip_with(entries: list[tuple[zipfile.ZipInfo | str, bytes]], *, base: bool = True) -> bytes:
    """A ZIP with raw entries (names and attributes as given), after a valid minimal XDM layout when `base`."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        if base:
            z.writestr("IHE_XDM/SUBSET01/METADATA.XML", metadata_xml([]))
        for info, data in entries:
            z.writestr(info, data)
    return out.getvalue()


def info(name: str, *, mode: int = 0) -> zipfile.ZipInfo:
    item = zipfile.ZipInfo(name, (2024, 1, 15, 10, 30, 0))
    item.compress_type = zipfile.ZIP_DEFLATED
    if mode:
        item.create_system = 3
        item.external_attr = mode << 16
    return item


SYMLINK = stat.S_IFLNK | 0o777
