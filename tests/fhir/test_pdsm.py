"""PDSm metadata checks: the French good examples, the ANS draft examples, one test per rule."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from espace_sante.errors import InvalidResource, Issue
from espace_sante.fhir import pdsm
from espace_sante.fhir import valuesets as vs
from espace_sante.fhir.validation import validate_resource

REPO = Path(__file__).parents[2]
DATA = REPO / "tests" / "data" / "pdsm"
EXAMPLES = REPO / "tests" / "data" / "ans-examples"

NOS = "https://mos.esante.gouv.fr/NOS/"
HL7_CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
A08_NOS = NOS + "TRE_A08-HL7Confidentiality/FHIR/TRE-A08-HL7Confidentiality"
A00_NOS = NOS + "TRE_A00-ProducteurDocNonPS/FHIR/TRE-A00-ProducteurDocNonPS"
SNOMED = "http://snomed.info/sct"
VALID_INS = "294037512000591"  # the INS of the French fixtures (a valid NIR key)
DR_WHERE = "Bundle.entry[1].resource"
SS_WHERE = "Bundle.entry[0].resource"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return data


@pytest.fixture
def bundle() -> dict[str, Any]:
    return _load("iti65-fr.json")


@pytest.fixture
def dr(bundle: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = bundle["entry"][1]["resource"]
    return resource


@pytest.fixture
def ss(bundle: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = bundle["entry"][0]["resource"]
    return resource


@pytest.fixture
def simple() -> dict[str, Any]:
    return _load("iti105-fr.json")


def _issues(check: Callable[[], object]) -> list[Issue]:
    with pytest.raises(InvalidResource) as caught:
        check()
    return caught.value.issues


def _dr_issues(dr: dict[str, Any], **kw: Any) -> list[Issue]:
    return _issues(lambda: pdsm.check_document_reference(dr, where=DR_WHERE, **kw))


def _ss_issues(ss: dict[str, Any], **kw: Any) -> list[Issue]:
    return _issues(lambda: pdsm.check_submission_set(ss, where=SS_WHERE, **kw))


def _errors(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity == "error"]


def _at(issues: list[Issue], expression: str) -> list[Issue]:
    return [i for i in issues if i.expression == expression]


def _one_error_at(issues: list[Issue], expression: str, *fragments: str) -> Issue:
    found = _at(_errors(issues), expression)
    assert len(found) == 1, [(i.expression, i.diagnostics) for i in issues]
    for fragment in fragments:
        assert fragment in found[0].diagnostics, found[0].diagnostics
    return found[0]


def _delete(resource: dict[str, Any], path: str) -> None:
    """Delete ``a.b[0].c`` from ``resource``."""
    steps = re.findall(r"([A-Za-z]+)(?:\[(\d+)\])?", path)
    node: Any = resource
    for key, index in steps[:-1]:
        node = node[key]
        if index:
            node = node[int(index)]
    key, index = steps[-1]
    if index:
        del node[key][int(index)]
    else:
        del node[key]


# -- the French good examples (tests/data/pdsm) ----------------------------------------------------


def test_iti65_french_example_passes_strict_mode_without_warnings(bundle: dict[str, Any]) -> None:
    entries = bundle["entry"]
    assert bundle["type"] == "transaction"
    assert [e["resource"]["resourceType"] for e in entries] == ["List", "DocumentReference", "Binary"]
    assert pdsm.check_submission_set(entries[0]["resource"], where=SS_WHERE).warnings == []
    assert pdsm.check_document_reference(entries[1]["resource"], where=DR_WHERE).warnings == []


def test_iti65_french_example_is_coherent(bundle: dict[str, Any]) -> None:
    ss_entry, dr_entry, binary_entry = bundle["entry"]
    attachment = dr_entry["resource"]["content"][0]["attachment"]
    document = base64.b64decode(binary_entry["resource"]["data"], validate=True)
    assert document.startswith(b"%PDF-")
    assert attachment["url"] == binary_entry["fullUrl"]
    assert attachment["contentType"] == binary_entry["resource"]["contentType"] == "application/pdf"
    assert attachment["size"] == len(document)
    assert base64.b64decode(attachment["hash"]) == hashlib.sha1(document, usedforsecurity=False).digest()
    assert [e["item"]["reference"] for e in ss_entry["resource"]["entry"]] == [dr_entry["fullUrl"]]
    assert dr_entry["resource"]["subject"] == ss_entry["resource"]["subject"]
    assert pdsm.submission_unique_id(ss_entry["resource"]) == ss_entry["resource"]["identifier"][0]["value"]
    # The project's structural validation (fhir.resources, required bindings, French identifiers) too.
    for entry in bundle["entry"]:
        validate_resource(entry["resource"])


def test_iti105_french_example_passes_strict_mode(simple: dict[str, Any]) -> None:
    assert pdsm.check_document_reference(simple, simplified=True).warnings == []
    attachment = simple["content"][0]["attachment"]
    document = base64.b64decode(attachment["data"], validate=True)
    assert document.startswith(b"%PDF-")
    assert "url" not in attachment
    assert attachment["size"] == len(document)
    validate_resource(simple)


def test_french_examples_use_codes_of_the_french_value_sets(dr: dict[str, Any], ss: dict[str, Any]) -> None:
    def coding(concept: dict[str, Any]) -> tuple[str, str]:
        return concept["coding"][0]["system"], concept["coding"][0]["code"]

    fmt = dr["content"][0]["format"]
    assert vs.type_code().display(*coding(dr["type"])) == "CR hospitalier (séjour)"
    assert vs.class_code().display(*coding(dr["category"][0])) == "Compte rendu"
    assert vs.format_code().contains(fmt["system"], fmt["code"])
    assert (
        vs.facility_type().display(*coding(dr["context"]["facilityType"])) == "Etablissement public de santé"
    )
    assert (
        vs.practice_setting().display(*coding(dr["context"]["practiceSetting"])) == "Etablissement de santé"
    )
    designation = ss["extension"][0]["valueCodeableConcept"]
    assert vs.content_type().contains(*coding(designation))
    assert pdsm.security_flags(dr) == ("N", frozenset())


# -- the ANS PDSM4DMP draft examples (tests/data/ans-examples) ---------------------------------


def _example_resources() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(file name, where, resource) for every DocumentReference and SubmissionSet of the examples."""
    for path in sorted(EXAMPLES.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("resourceType") == "Bundle":
            items = [
                (f"Bundle.entry[{i}].resource", e.get("resource", {})) for i, e in enumerate(data["entry"])
            ]
        else:
            items = [(str(data.get("resourceType")), data)]
        for where, resource in items:
            if resource.get("resourceType") in ("DocumentReference", "List"):
                yield path.name, where, resource


EXAMPLE_RESOURCES = list(_example_resources())
EXAMPLE_IDS = [f"{name}:{where}" for name, where, _ in EXAMPLE_RESOURCES]


def _check(name: str, where: str, resource: dict[str, Any], *, lenient: bool) -> pdsm.Report:
    if resource["resourceType"] == "List":
        return pdsm.check_submission_set(resource, where=where, lenient=lenient)
    return pdsm.check_document_reference(
        resource,
        where=where,
        lenient=lenient,
        simplified="iti105" in name,
        # A search result and a superseded document are not deposits.
        deposit="searchset" not in name and resource.get("status") == "current",
    )


def _repair(resource: dict[str, Any]) -> dict[str, Any]:
    """Fix the drafts' defects that are not about codes (fr-interop.md §6), so that what is left is the
    lenient-mode question: a fictitious INS whose NIR key is wrong, no custodian (PDSm 1..1), a
    SubmissionSet without uniqueId/entryUUID (MHD identifier 2..*) and a designationType taken from
    TRE_A03 (a class code, not a JDV_J03 content type)."""
    fixed: dict[str, Any] = json.loads(json.dumps(resource).replace("123456789012345", VALID_INS))
    if fixed["resourceType"] == "DocumentReference":
        fixed["custodian"] = {"identifier": {"system": "https://finess.esante.gouv.fr", "value": "690781810"}}
    else:
        fixed["identifier"] = [
            {"use": "usual", "system": pdsm.RFC3986, "value": "urn:oid:1.2.3.4.5.6.7.8.1"},
            {
                "use": "official",
                "system": pdsm.RFC3986,
                "value": "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001",
            },
        ]
        for ext in fixed["extension"]:
            if ext["url"] == pdsm.DESIGNATION_TYPE_URL:
                ext["valueCodeableConcept"]["coding"][0]["system"] = "urn:oid:1.2.250.1.213.2.2"
                ext["valueCodeableConcept"]["coding"][0]["code"] = "03"
    return fixed


def _international_codings(resource: dict[str, Any], where: str) -> dict[str, tuple[str, str]]:
    """Expected warnings, computed independently of pdsm: expression -> (code, value set label)."""
    if resource["resourceType"] != "DocumentReference":
        return {}
    found: dict[str, tuple[str, str]] = {}
    fmt = resource.get("content", [{}])[0].get("format")
    candidates = [(f"{where}.content[0].format", fmt, vs.format_code())]
    for key, value_set in (("facilityType", vs.facility_type()), ("practiceSetting", vs.practice_setting())):
        for i, coding in enumerate(resource.get("context", {}).get(key, {}).get("coding", [])):
            candidates.append((f"{where}.context.{key}.coding[{i}]", coding, value_set))
    for i, coding in enumerate(resource.get("type", {}).get("coding", [])):
        candidates.append((f"{where}.type.coding[{i}]", coding, vs.type_code()))
    for expression, coding, value_set in candidates:
        if coding and not value_set.contains(coding["system"], coding["code"]):
            assert vs.system_oid(coding["system"]) in pdsm.INTERNATIONAL_OIDS
            found[expression] = (coding["code"], value_set.label)
    return found


def test_the_examples_are_found() -> None:
    names = {name for name, _, _ in EXAMPLE_RESOURCES}
    assert len(names) == 5
    assert sum(r["resourceType"] == "List" for _, _, r in EXAMPLE_RESOURCES) == 2


@pytest.mark.parametrize(("name", "where", "resource"), EXAMPLE_RESOURCES, ids=EXAMPLE_IDS)
def test_ans_examples_fail_even_in_lenient_mode_only_for_their_known_defects(
    name: str, where: str, resource: dict[str, Any]
) -> None:
    issues = _issues(lambda: _check(name, where, resource, lenient=True))
    expected = {f"{where}.subject.reference"}  # INS 123456789012345: NIR key 11 expected, not 45
    if resource["resourceType"] == "List":
        expected |= {f"{where}.identifier", f"{where}.extension[0].valueCodeableConcept.coding[0]"}
    elif "iti105" not in name:
        expected.add(f"{where}.custodian")
    assert {i.expression for i in _errors(issues)} == expected
    assert "INS-NIR" in _at(issues, f"{where}.subject.reference")[0].diagnostics


@pytest.mark.parametrize(("name", "where", "resource"), EXAMPLE_RESOURCES, ids=EXAMPLE_IDS)
def test_ans_examples_pass_lenient_mode_with_warnings_naming_the_non_french_codes(
    name: str, where: str, resource: dict[str, Any]
) -> None:
    report = _check(name, where, _repair(resource), lenient=True)
    expected = _international_codings(resource, where)
    assert {w.expression for w in report.warnings} == set(expected)
    for warning in report.warnings:
        code, label = expected[str(warning.expression)]
        assert warning.severity == "warning"
        assert code in warning.diagnostics
        assert label in warning.diagnostics
        assert "mode tolérant" in warning.diagnostics
        assert "lenient mode" in warning.diagnostics


@pytest.mark.parametrize(("name", "where", "resource"), EXAMPLE_RESOURCES, ids=EXAMPLE_IDS)
def test_ans_examples_fail_strict_mode_naming_element_and_value_set(
    name: str, where: str, resource: dict[str, Any]
) -> None:
    repaired = _repair(resource)
    expected = _international_codings(resource, where)
    if not expected:
        # The ITI-105 draft and the SubmissionSets carry no international code (11488-4 is in J07).
        _check(name, where, repaired, lenient=False)
        return
    issues = _issues(lambda: _check(name, where, repaired, lenient=False))
    assert {i.expression for i in issues} == set(expected)
    for issue in issues:
        code, label = expected[str(issue.expression)]
        assert issue.severity == "error"
        assert issue.code == "code-invalid"
        assert str(issue.expression) in issue.diagnostics
        assert code in issue.diagnostics
        assert f"hors du jeu de valeurs {label}" in issue.diagnostics
        assert f"not in value set {label}" in issue.diagnostics


# -- DocumentReference: required elements -------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "masterIdentifier",
        "status",
        "type",
        "category",
        "subject",
        "date",
        "custodian",
        "author",
        "securityLabel",
        "content",
        "content[0].attachment.contentType",
        "content[0].attachment.language",
        "content[0].attachment.creation",
        "content[0].attachment.url",
        "content[0].attachment.hash",
        "content[0].attachment.size",
        "content[0].attachment.title",
        "content[0].format",
        "context",
        "context.facilityType",
        "context.practiceSetting",
        "context.period.start",
        "context.sourcePatientInfo",
    ],
)
def test_each_required_element_missing_is_named(dr: dict[str, Any], path: str) -> None:
    _delete(dr, path)
    issues = _dr_issues(dr)
    issue = _one_error_at(
        issues, f"{DR_WHERE}.{path}", "élément obligatoire absent", "required element missing"
    )
    assert issue.code == "required"


def test_missing_contained_is_named_and_dangling_references_too(dr: dict[str, Any]) -> None:
    del dr["contained"]
    issues = _dr_issues(dr)
    _one_error_at(issues, f"{DR_WHERE}.contained", "PDSm contained 1..*")
    dangling = {i.expression for i in _errors(issues) if i.code == "not-found"}
    assert dangling == {
        f"{DR_WHERE}.author[0].reference",
        f"{DR_WHERE}.authenticator.reference",
        f"{DR_WHERE}.custodian.reference",
        f"{DR_WHERE}.context.sourcePatientInfo.reference",
    }


def test_a_contained_reference_must_exist(dr: dict[str, Any]) -> None:
    dr["contained"][2]["organization"] = {"reference": "#nowhere"}
    issue = _one_error_at(_dr_issues(dr), f"{DR_WHERE}.contained[2].organization.reference", "#nowhere")
    assert issue.code == "not-found"


# -- DocumentReference: value sets ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "coding", "label"),
    [
        ("type", {"system": "http://loinc.org", "code": "18842-5"}, "JDV_J07-XdsTypeCode-CISIS (1.2.250.1.213.1.1.5.471)"),
        ("category[0]", {"system": "http://loinc.org", "code": "11488-4"}, "JDV_J06-XdsClassCode-CISIS (1.2.250.1.213.1.1.5.462)"),
        ("context.facilityType", {"system": SNOMED, "code": "22232009"}, "JDV_J02-XdsHealthcareFacilityTypeCode-CISIS (1.2.250.1.213.1.1.5.466)"),
        ("context.practiceSetting", {"system": SNOMED, "code": "394802001"}, "JDV_J04-XdsPracticeSettingCode-CISIS (1.2.250.1.213.1.1.5.467)"),
    ],
)  # fmt: skip
def test_each_value_set_is_named_with_its_oid(
    dr: dict[str, Any], path: str, coding: dict[str, str], label: str
) -> None:
    node: Any = dr
    for key, index in re.findall(r"([A-Za-z]+)(?:\[(\d+)\])?", path):
        node = node[key][int(index)] if index else node[key]
    node["coding"] = [coding]
    expression = f"{DR_WHERE}.{path}.coding[0]"
    issue = _one_error_at(_dr_issues(dr), expression, coding["code"], coding["system"], label)
    assert issue.code == "code-invalid"
    assert issue.diagnostics.startswith(
        f"{expression} : code {coding['code']} ({coding['system']}) hors du jeu"
    )
    # The same coding is a warning in lenient mode: LOINC and SNOMED CT are international systems.
    report = pdsm.check_document_reference(dr, where=DR_WHERE, lenient=True)
    assert [(w.expression, w.severity) for w in report.warnings] == [(expression, "warning")]
    assert label in report.warnings[0].diagnostics


def test_format_outside_j10_is_named(dr: dict[str, Any]) -> None:
    dr["content"][0]["format"] = {
        "system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode",
        "code": "urn:ihe:iti:xds:2017:mimeTypeSufficient",
    }
    expression = f"{DR_WHERE}.content[0].format"
    _one_error_at(_dr_issues(dr), expression, "JDV_J10-XdsFormatCode-CISIS (1.2.250.1.213.1.1.5.465)")
    report = pdsm.check_document_reference(dr, where=DR_WHERE, lenient=True)
    assert [w.expression for w in report.warnings] == [expression]
    assert "IHE formatCode" in report.warnings[0].diagnostics


@pytest.mark.parametrize(
    "coding",
    [
        {"system": "https://hopital.example/codes", "code": "CRH"},  # a local system
        {"code": "34112-3"},  # no system at all
        # A French code from another value set: TRE_A03 is French, so not an "international" excuse.
        {"system": NOS + "TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument", "code": "10"},
    ],
)
def test_unknown_or_french_systems_stay_errors_in_lenient_mode(
    dr: dict[str, Any], coding: dict[str, str]
) -> None:
    dr["type"] = {"coding": [coding]}
    issue = _one_error_at(
        _dr_issues(dr, lenient=True), f"{DR_WHERE}.type.coding[0]", "JDV_J07-XdsTypeCode-CISIS"
    )
    assert (
        "systèmes attendus : LOINC, TRE_A05-TypeDocComplementaire, TRE_A12-NomenclatureASTM"
        in issue.diagnostics
    )


def test_a_french_coding_beside_an_international_one_satisfies_strict_mode(dr: dict[str, Any]) -> None:
    dr["context"]["facilityType"]["coding"].insert(0, {"system": SNOMED, "code": "22232009"})
    assert pdsm.check_document_reference(dr, where=DR_WHERE).warnings == []


def test_two_different_codes_of_the_value_set_are_ambiguous(dr: dict[str, Any]) -> None:
    dr["type"]["coding"].append({"system": "http://loinc.org", "code": "11490-0"})
    _one_error_at(_dr_issues(dr), f"{DR_WHERE}.type", "plusieurs codes", "34112-3", "11490-0")


def test_a_concept_without_coding_is_refused(dr: dict[str, Any]) -> None:
    dr["type"] = {"text": "Compte rendu d'hospitalisation"}
    assert _one_error_at(_dr_issues(dr, lenient=True), f"{DR_WHERE}.type", "aucun codage").code == "required"


@pytest.mark.parametrize(
    ("path", "system"),
    [
        ("type", "urn:oid:2.16.840.1.113883.6.1"),
        ("type", NOS + "TRE_A04-Loinc/FHIR/TRE-A04-Loinc"),
        ("category[0]", "urn:oid:1.2.250.1.213.1.1.4.1"),
        ("context.facilityType", "urn:oid:1.2.250.1.71.4.2.4"),
        ("context.practiceSetting", "urn:oid:1.2.250.1.213.1.1.4.9"),
    ],
)
def test_codes_are_matched_by_oid_in_the_document_reference(
    dr: dict[str, Any], path: str, system: str
) -> None:
    node: Any = dr
    for key, index in re.findall(r"([A-Za-z]+)(?:\[(\d+)\])?", path):
        node = node[key][int(index)] if index else node[key]
    node["coding"][0]["system"] = system
    assert pdsm.check_document_reference(dr, where=DR_WHERE).warnings == []


# -- DocumentReference: securityLabel ------------------------------------------------------------


@pytest.mark.parametrize("system", [HL7_CONF, A08_NOS, "urn:oid:2.16.840.1.113883.5.25"])
def test_confidentiality_is_matched_by_oid_in_all_three_spellings(dr: dict[str, Any], system: str) -> None:
    dr["securityLabel"] = [{"coding": [{"system": system, "code": "R"}]}]
    pdsm.check_document_reference(dr, where=DR_WHERE)
    assert pdsm.security_flags(dr) == ("R", frozenset())


def test_all_three_visibility_codes_with_a_level_pass(dr: dict[str, Any]) -> None:
    dr["securityLabel"] = pdsm.with_flags(dr, "V", frozenset(pdsm.VISIBILITY_CODES))
    pdsm.check_document_reference(dr, where=DR_WHERE)


def test_confidentiality_level_is_required(dr: dict[str, Any]) -> None:
    dr["securityLabel"] = pdsm.with_flags({}, None, {"MASQUE_PS"})
    _one_error_at(_dr_issues(dr), f"{DR_WHERE}.securityLabel", "N, R ou V", "2.16.840.1.113883.5.25")


def test_only_one_confidentiality_level(dr: dict[str, Any]) -> None:
    dr["securityLabel"].append({"coding": [{"system": A08_NOS, "code": "R"}]})
    _one_error_at(_dr_issues(dr), f"{DR_WHERE}.securityLabel[1]", "un seul niveau de confidentialité")


@pytest.mark.parametrize(
    ("coding", "fragment"),
    [
        ({"system": HL7_CONF, "code": "U"}, "N, R ou V attendu"),
        ({"system": vs.VISIBILITY_SYSTEM, "code": "MASQUE_PSOCIAL"}, "MASQUE_PS, INVISIBLE_PATIENT"),
        ({"system": "urn:oid:1.2.250.1.213.1.1.4.13", "code": "MASQUE_PT"}, "(TRE_A07)"),
        # The misspelt system of the PDSm FSH example is an unknown system.
        ({"system": NOS + "TRE_A07-StatusVisibiliteDocument/FHIR/TRE-A07-StatusVisibiliteDocument", "code": "MASQUE_PS"}, "systèmes attendus"),
        ({"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST"}, "JDV_J08-XdsConfidentialityCode-CISIS (1.2.250.1.213.1.1.5.463)"),
    ],
)  # fmt: skip
def test_security_labels_outside_j08_are_refused_even_in_lenient_mode(
    dr: dict[str, Any], coding: dict[str, str], fragment: str
) -> None:
    dr["securityLabel"].append({"coding": [coding]})
    issue = _one_error_at(_dr_issues(dr, lenient=True), f"{DR_WHERE}.securityLabel[1].coding[0]", fragment)
    assert issue.code == "code-invalid"


# -- DocumentReference: subject, identifiers, status ------------------------------------------


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/123",
        "https://espace-sante.example/fhir/Patient/a-1.b",
        f"Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|{VALID_INS}",
        f"Patient?identifier=urn:oid:1.2.250.1.213.1.4.8%7C{VALID_INS}",
        f"Patient?identifier=urn:oid:1.2.250.1.213.1.4.10|{VALID_INS}",  # INS test OID
        f"Patient?identifier=urn:oid:1.2.250.1.213.1.4.11|{VALID_INS}",  # INS demo OID
        "Patient?identifier=urn:oid:1.2.250.1.213.1.4.9|1234567890123",  # NIA: format not published
    ],
)
def test_accepted_subject_references(dr: dict[str, Any], reference: str) -> None:
    dr["subject"] = {"reference": reference}
    pdsm.check_document_reference(dr, where=DR_WHERE)


def test_subject_as_a_logical_ins_identifier(dr: dict[str, Any]) -> None:
    dr["subject"] = {"identifier": {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": VALID_INS}}
    pdsm.check_document_reference(dr, where=DR_WHERE)
    dr["subject"]["identifier"]["value"] = "294037512000592"
    _one_error_at(_dr_issues(dr), f"{DR_WHERE}.subject.identifier.value", "INS-NIR invalide", "clé")


@pytest.mark.parametrize(
    ("reference", "fragment"),
    [
        ("Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|294037512000592", "clé de contrôle NIR incorrecte"),
        ("Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|29403751200059", "longueur incorrecte"),
        (f"Patient?identifier=https://example.org/ipp|{VALID_INS}", "INS attendu"),
        (f"Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|{VALID_INS}&birthdate=1994-03-17", "référence conditionnelle"),
        ("#patient", "non reconnue"),
        ("urn:uuid:6f1e0b52-3c1d-4e8a-9a57-1c2f3b4d5e61", "non reconnue"),
        ("Practitioner/1", "non reconnue"),
        ("Patient/123\n", "non reconnue"),
    ],
)  # fmt: skip
def test_refused_subject_references(dr: dict[str, Any], reference: str, fragment: str) -> None:
    dr["subject"] = {"reference": reference}
    _one_error_at(_dr_issues(dr), f"{DR_WHERE}.subject.reference", fragment)


@pytest.mark.parametrize(
    ("identifier", "path"),
    [
        ({"system": "urn:oid:1.2.3", "value": "urn:oid:1.2.3.4"}, "masterIdentifier.system"),
        ({"system": pdsm.RFC3986, "value": "1.2.3.4"}, "masterIdentifier.value"),
        ({"system": pdsm.RFC3986, "value": "urn:oid:1.2.03"}, "masterIdentifier.value"),
        ({"system": pdsm.RFC3986, "value": "urn:uuid:not-a-uuid"}, "masterIdentifier.value"),
        ({"system": pdsm.RFC3986, "value": "urn:oid:1.2.3.4\n"}, "masterIdentifier.value"),
    ],
)
def test_master_identifier_is_an_rfc3986_oid_or_uuid(
    dr: dict[str, Any], identifier: dict[str, str], path: str
) -> None:
    dr["masterIdentifier"] = identifier
    _one_error_at(_dr_issues(dr), f"{DR_WHERE}.{path}")


def test_master_identifier_may_be_a_uuid(dr: dict[str, Any]) -> None:
    dr["masterIdentifier"]["value"] = "urn:uuid:2f8d3a61-5b7c-4d9e-a1f2-3b4c5d6e7f80"
    pdsm.check_document_reference(dr, where=DR_WHERE)


def test_status_is_current_on_deposit_superseded_allowed_otherwise(dr: dict[str, Any]) -> None:
    dr["status"] = "superseded"
    _one_error_at(_dr_issues(dr), f"{DR_WHERE}.status", "current attendu")
    pdsm.check_document_reference(dr, where=DR_WHERE, deposit=False)
    dr["status"] = "entered-in-error"  # not in MHD's DocumentReferenceStats
    _one_error_at(_dr_issues(dr, deposit=False), f"{DR_WHERE}.status")


# -- DocumentReference: content ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("hash", base64.b64encode(b"x" * 32).decode()),  # SHA-256 length, not SHA-1
        ("hash", "not base64!"),
        ("size", -1),
        ("size", "2183"),
        ("size", True),
        ("language", "français"),
    ],
)
def test_attachment_values(dr: dict[str, Any], key: str, value: object) -> None:
    dr["content"][0]["attachment"][key] = value
    _one_error_at(_dr_issues(dr), f"{DR_WHERE}.content[0].attachment.{key}")


def test_a_comprehensive_attachment_has_no_inline_data(dr: dict[str, Any]) -> None:
    dr["content"][0]["attachment"]["data"] = "JVBERi0="
    _one_error_at(_dr_issues(dr), f"{DR_WHERE}.content[0].attachment.data", "data 0..0")


def test_one_content_only(dr: dict[str, Any]) -> None:
    dr["content"].append(copy.deepcopy(dr["content"][0]))
    _one_error_at(_dr_issues(dr), f"{DR_WHERE}.content", "content 1..1")


def test_title_is_the_attachment_title_not_the_description(dr: dict[str, Any]) -> None:
    title = dr["content"][0]["attachment"].pop("title")
    dr["description"] = title
    _one_error_at(_dr_issues(dr), f"{DR_WHERE}.content[0].attachment.title", "titreDocument")


# -- DocumentReference: simplified publish (ITI-105) -------------------------------------------


def test_simplified_publish_needs_data_and_forbids_url(simple: dict[str, Any]) -> None:
    attachment = simple["content"][0]["attachment"]
    attachment["url"] = "urn:uuid:c4a8e2f0-1b3d-4c5e-8f70-9a1b2c3d4e80"
    del attachment["data"]
    issues = _issues(lambda: pdsm.check_document_reference(simple, simplified=True))
    _one_error_at(issues, "DocumentReference.content[0].attachment.url", "url 0..0")
    _one_error_at(issues, "DocumentReference.content[0].attachment.data", "data 1..1")


def test_simplified_publish_hash_and_size_may_be_absent_but_must_match(simple: dict[str, Any]) -> None:
    attachment = simple["content"][0]["attachment"]
    size, digest = attachment.pop("size"), attachment.pop("hash")
    pdsm.check_document_reference(simple, simplified=True)
    other = hashlib.sha1(b"other", usedforsecurity=False).digest()
    attachment["size"], attachment["hash"] = size + 1, base64.b64encode(other).decode()
    issues = _issues(lambda: pdsm.check_document_reference(simple, simplified=True))
    _one_error_at(issues, "DocumentReference.content[0].attachment.size", "taille de data")
    _one_error_at(issues, "DocumentReference.content[0].attachment.hash", "SHA-1 de data")
    attachment["hash"] = digest
    attachment["data"] = "%%%"
    _one_error_at(
        _issues(lambda: pdsm.check_document_reference(simple, simplified=True)),
        "DocumentReference.content[0].attachment.data",
        "base64",
    )


@pytest.mark.parametrize(
    "path",
    ["type", "category", "securityLabel", "custodian", "context", "content[0].format", "date",
     "content[0].attachment.creation", "content[0].attachment.language"],
)  # fmt: skip
def test_simplified_publish_optional_elements(simple: dict[str, Any], path: str) -> None:
    _delete(simple, path)
    pdsm.check_document_reference(simple, simplified=True)


@pytest.mark.parametrize("path", ["masterIdentifier", "subject", "author", "content[0].attachment.title"])
def test_simplified_publish_required_elements(simple: dict[str, Any], path: str) -> None:
    _delete(simple, path)
    issues = _issues(lambda: pdsm.check_document_reference(simple, simplified=True))
    _one_error_at(issues, f"DocumentReference.{path}", "élément obligatoire absent")


def test_simplified_publish_still_checks_codes_when_present(simple: dict[str, Any]) -> None:
    simple["type"]["coding"][0]["code"] = "18842-5"
    issues = _issues(lambda: pdsm.check_document_reference(simple, simplified=True))
    _one_error_at(issues, "DocumentReference.type.coding[0]", "JDV_J07-XdsTypeCode-CISIS")


# -- DocumentReference: authors ----------------------------------------------------------------


def test_author_must_be_contained(dr: dict[str, Any]) -> None:
    dr["author"] = [{"reference": "Practitioner/123"}]
    _one_error_at(_dr_issues(dr), f"{DR_WHERE}.author[0].reference", "contained")


def test_author_practitioner_role_without_idnat_ps_is_refused(dr: dict[str, Any]) -> None:
    practitioner = dr["contained"][1]
    practitioner["identifier"] = [i for i in practitioner["identifier"] if i["system"] != pdsm.IDNPS_SYSTEM]
    issue = _one_error_at(_dr_issues(dr), f"{DR_WHERE}.contained[2]", "IdNat_PS", pdsm.IDNPS_SYSTEM)
    assert issue.code == "required"


@pytest.mark.parametrize(("value", "fragment"), [("81000361328", "11 chiffres"), ("910003613289", "préfixe")])
def test_author_idnat_ps_is_checked(dr: dict[str, Any], value: str, fragment: str) -> None:
    dr["contained"][1]["identifier"][0]["value"] = value
    _one_error_at(
        _dr_issues(dr), f"{DR_WHERE}.contained[1].identifier[0].value", "IdNat_PS invalide", fragment
    )


def test_author_practitioner_role_may_carry_the_idnat_ps_itself(dr: dict[str, Any]) -> None:
    # The PDSM4DMP annex example: a PractitionerRole with the IdNat_PS and no Practitioner.
    role = dr["contained"][2]
    del role["practitioner"]
    role["identifier"] = [{"system": pdsm.IDNPS_SYSTEM, "value": "899700218896"}]
    pdsm.check_document_reference(dr, where=DR_WHERE)


def test_author_practitioner_directly(dr: dict[str, Any]) -> None:
    dr["author"] = [{"reference": "#auteur"}]
    pdsm.check_document_reference(dr, where=DR_WHERE)


def test_author_role_must_point_at_a_practitioner(dr: dict[str, Any]) -> None:
    dr["contained"][2]["practitioner"] = {"reference": "#etablissement"}
    issues = _dr_issues(dr)
    _one_error_at(issues, f"{DR_WHERE}.contained[2].practitioner", "Practitioner")


@pytest.mark.parametrize("rtype", ["Device", "Patient"])
def test_device_and_patient_authors_are_allowed(dr: dict[str, Any], rtype: str) -> None:
    dr["contained"].append({"resourceType": rtype, "id": "other-author"})
    dr["author"].append({"reference": "#other-author"})
    pdsm.check_document_reference(dr, where=DR_WHERE)


def test_organization_author_is_refused(dr: dict[str, Any]) -> None:
    dr["author"] = [{"reference": "#etablissement"}]
    _one_error_at(_dr_issues(dr), f"{DR_WHERE}.author[0]", "Organization", "Practitioner, PractitionerRole")


def _holder_upload(dr: dict[str, Any]) -> dict[str, Any]:
    dr["author"] = [{"reference": "#patient"}]
    dr["context"]["facilityType"] = {"coding": [{"system": A00_NOS, "code": "EXP_PATIENT"}]}
    dr["context"]["practiceSetting"] = {"coding": [{"system": A00_NOS, "code": "EXP_PATIENT"}]}
    dr["type"] = {"coding": [{"system": NOS + "TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire", "code": "DOCPAT03"}]}  # fmt: skip
    dr["category"] = [{"coding": [{"system": NOS + "TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument", "code": "90"}]}]  # fmt: skip
    return dr


def test_holder_upload_passes_with_the_patient_as_author(dr: dict[str, Any]) -> None:
    assert vs.type_code().contains(
        NOS + "TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire", "DOCPAT03"
    )
    pdsm.check_document_reference(_holder_upload(dr), where=DR_WHERE, by_patient=True)


def test_holder_upload_refuses_a_professional_author(dr: dict[str, Any]) -> None:
    _holder_upload(dr)["author"] = [{"reference": "#auteur-role"}]
    issues = _dr_issues(dr, by_patient=True)
    _one_error_at(issues, f"{DR_WHERE}.author[0]", "dépôt par le titulaire")
    _one_error_at(issues, f"{DR_WHERE}.author", "le patient doit être auteur")


def test_exp_patient_codes_are_refused_for_a_professional_author(dr: dict[str, Any]) -> None:
    _holder_upload(dr)["author"] = [{"reference": "#auteur-role"}]
    issues = _dr_issues(dr)
    _one_error_at(issues, f"{DR_WHERE}.context.facilityType", "EXP_PATIENT", "constr-bind-ProducteurDoc")
    _one_error_at(issues, f"{DR_WHERE}.context.practiceSetting", "EXP_PATIENT")


def test_custodian_must_be_an_organization(dr: dict[str, Any]) -> None:
    dr["custodian"] = {"reference": "#auteur"}
    _one_error_at(_dr_issues(dr), f"{DR_WHERE}.custodian", "Organization")
    dr["custodian"] = {"reference": "Organization/hcl"}
    pdsm.check_document_reference(dr, where=DR_WHERE)


def test_source_patient_info_must_be_a_contained_patient(dr: dict[str, Any]) -> None:
    dr["context"]["sourcePatientInfo"] = {"reference": "#etablissement"}
    _one_error_at(_dr_issues(dr), f"{DR_WHERE}.context.sourcePatientInfo", "Patient")
    dr["context"]["sourcePatientInfo"] = {"reference": "Patient/1"}
    _one_error_at(_dr_issues(dr), f"{DR_WHERE}.context.sourcePatientInfo.reference", "contained")


# -- all at once --------------------------------------------------------------------------------


def test_all_problems_are_reported_at_once(dr: dict[str, Any]) -> None:
    del dr["custodian"]
    del dr["content"][0]["attachment"]["hash"]
    dr["status"] = "superseded"
    dr["type"]["coding"][0] = {"system": "https://hopital.example/codes", "code": "CRH"}
    dr["context"]["facilityType"]["coding"][0] = {"system": SNOMED, "code": "22232009"}
    dr["securityLabel"] = [{"coding": [{"system": vs.VISIBILITY_SYSTEM, "code": "MASQUE_PT"}]}]
    dr["subject"]["reference"] = dr["subject"]["reference"][:-1] + "2"
    with pytest.raises(InvalidResource) as caught:
        pdsm.check_document_reference(dr, where=DR_WHERE, lenient=True)
    error = caught.value
    assert error.status == 422
    assert "7 problème(s)" in error.message
    expressions = [i.expression for i in error.issues]
    assert expressions == [
        f"{DR_WHERE}.status",
        f"{DR_WHERE}.type.coding[0]",
        f"{DR_WHERE}.subject.reference",
        f"{DR_WHERE}.custodian",
        f"{DR_WHERE}.securityLabel[0].coding[0]",
        f"{DR_WHERE}.securityLabel",
        f"{DR_WHERE}.content[0].attachment.hash",
        f"{DR_WHERE}.context.facilityType.coding[0]",  # the lenient warning comes last
    ]
    assert [i.severity for i in error.issues].count("warning") == 1
    for issue in error.issues:
        french, english = issue.diagnostics.split(" / ", 1)
        assert french.startswith(f"{issue.expression} : ")
        assert english.startswith(f"{issue.expression}: ")


def test_not_a_document_reference() -> None:
    issues = _issues(lambda: pdsm.check_document_reference({"resourceType": "List"}))
    _one_error_at(issues, "DocumentReference.resourceType", "DocumentReference attendu")


# -- SubmissionSet -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["code", "mode", "status", "identifier", "subject", "date", "source", "extension"]
)
def test_submission_set_required_elements(ss: dict[str, Any], path: str) -> None:
    _delete(ss, path)
    issues = _ss_issues(ss)
    found = _at(_errors(issues), f"{SS_WHERE}.{path}")
    assert found, [(i.expression, i.diagnostics) for i in issues]
    assert all(i.code == "required" for i in found)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("mode", "snapshot"),
        ("status", "retired"),
        ("code", {"coding": [{"system": pdsm.MHD_LIST_TYPES, "code": "folder"}]}),
    ],
)
def test_submission_set_fixed_values(ss: dict[str, Any], key: str, value: object) -> None:
    ss[key] = value
    _one_error_at(_ss_issues(ss), f"{SS_WHERE}.{key}")


def test_submission_set_identifier_uses_of_mhd_4_and_of_older_producers_are_both_accepted(
    ss: dict[str, Any],
) -> None:
    unique_id, entry_uuid = ss["identifier"]
    assert (unique_id["use"], entry_uuid["use"]) == ("usual", "official")  # MHD 4.2 IHE.MHD.List slices
    unique_id["use"], entry_uuid["use"] = "official", "usual"
    pdsm.check_submission_set(ss, where=SS_WHERE)
    del unique_id["use"], entry_uuid["use"]
    pdsm.check_submission_set(ss, where=SS_WHERE)
    unique_id["use"] = "temp"
    _one_error_at(_ss_issues(ss), f"{SS_WHERE}.identifier[0].use")


def test_submission_set_needs_both_identifiers(ss: dict[str, Any]) -> None:
    del ss["identifier"][1]
    _one_error_at(_ss_issues(ss), f"{SS_WHERE}.identifier", "entryUUID")
    ss["identifier"] = [{"system": pdsm.RFC3986, "value": "urn:uuid:" + "0" * 32}]
    issues = _ss_issues(ss)
    _one_error_at(issues, f"{SS_WHERE}.identifier[0].value", "UUID mal formé")
    assert "uniqueId" in " ".join(i.diagnostics for i in _at(issues, f"{SS_WHERE}.identifier"))


def test_submission_unique_id(ss: dict[str, Any]) -> None:
    assert pdsm.submission_unique_id(ss) == ss["identifier"][0]["value"]
    assert str(pdsm.submission_unique_id(ss)).startswith("urn:oid:2.25.")
    assert pdsm.submission_unique_id({"resourceType": "List"}) is None


def test_submission_set_source_id_is_an_oid(ss: dict[str, Any]) -> None:
    ss["extension"][1]["valueIdentifier"]["value"] = "urn:uuid:6f1e0b52-3c1d-4e8a-9a57-1c2f3b4d5e60"
    _one_error_at(_ss_issues(ss), f"{SS_WHERE}.extension[1].valueIdentifier.value", "urn:oid:<OID>")


def test_submission_set_designation_type_is_j03_lenient_for_snomed(ss: dict[str, Any]) -> None:
    ss["extension"][0]["valueCodeableConcept"] = {"coding": [{"system": SNOMED, "code": "225728007"}]}
    expression = f"{SS_WHERE}.extension[0].valueCodeableConcept.coding[0]"
    _one_error_at(_ss_issues(ss), expression, "JDV_J03-XdsContentTypeCode-CISIS (1.2.250.1.213.1.1.5.464)")
    report = pdsm.check_submission_set(ss, where=SS_WHERE, lenient=True)
    assert [w.expression for w in report.warnings] == [expression]


def test_submission_set_source_may_be_only_the_author_organization(ss: dict[str, Any]) -> None:
    ss["source"] = {
        "extension": [{"url": pdsm.AUTHOR_ORG_URL, "valueReference": {"reference": "#etablissement"}}]
    }
    pdsm.check_submission_set(ss, where=SS_WHERE)
    ss["source"] = {"reference": "#etablissement"}  # an Organization goes in ihe-authorOrg
    _one_error_at(_ss_issues(ss), f"{SS_WHERE}.source", "Organization")


def test_submission_set_source_professional_needs_idnat_ps(ss: dict[str, Any]) -> None:
    ss["source"] = {"reference": "#auteur"}
    pdsm.check_submission_set(ss, where=SS_WHERE)
    ss["contained"][0]["identifier"] = []
    _one_error_at(_ss_issues(ss), f"{SS_WHERE}.contained[0]", "IdNat_PS")


def test_submission_set_subject_ins_is_checked(ss: dict[str, Any]) -> None:
    ss["subject"]["reference"] = ss["subject"]["reference"][:-1] + "2"
    _one_error_at(_ss_issues(ss), f"{SS_WHERE}.subject.reference", "INS-NIR invalide")


# -- security_flags / with_flags -----------------------------------------------------------------


def test_security_flags_read_every_spelling_and_grouping() -> None:
    dr = {
        "securityLabel": [
            {"coding": [{"system": A08_NOS, "code": "R"}, {"system": "urn:oid:1.2.250.1.213.1.1.4.13", "code": "MASQUE_PS"}]},
            {"coding": [{"system": vs.VISIBILITY_SYSTEM, "code": "INVISIBLE_PATIENT"}]},
        ]
    }  # fmt: skip
    assert pdsm.security_flags(dr) == ("R", frozenset({"MASQUE_PS", "INVISIBLE_PATIENT"}))
    assert pdsm.security_flags({}) == (None, frozenset())


def test_unmasking_keeps_the_other_flags() -> None:
    """The PDSM4DMP PATCH replaces securityLabel/0 by N and would drop the rest (fr-interop.md §4)."""
    dr = {"securityLabel": pdsm.with_flags({}, "R", {"MASQUE_PS", "INVISIBLE_PATIENT"})}
    labels = pdsm.with_flags(dr, None, {"INVISIBLE_PATIENT"})
    assert pdsm.security_flags({"securityLabel": labels}) == ("R", frozenset({"INVISIBLE_PATIENT"}))


def test_with_flags_writes_one_concept_per_flag_and_keeps_foreign_labels() -> None:
    foreign = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST"}]}
    text_only = {"text": "diffusion restreinte"}
    dr = {
        "securityLabel": [
            {"coding": [{"system": A08_NOS, "code": "N", "display": "Normal"}]},
            foreign,
            text_only,
            {"coding": [{"system": vs.VISIBILITY_SYSTEM, "code": "INVISIBLE_PATIENT"}]},
        ]
    }
    before = copy.deepcopy(dr)
    labels = pdsm.with_flags(dr, None, {"INVISIBLE_REPRESENTANTS_LEGAUX", "MASQUE_PS"})
    assert dr == before  # not modified
    assert labels[0] == before["securityLabel"][0]  # kept as written: NOS alias and display
    assert labels[1:3] == [foreign, text_only]
    assert labels[3:] == [
        {"coding": [{"system": vs.VISIBILITY_SYSTEM, "code": code, "display": vs.visibility().display(vs.VISIBILITY_SYSTEM, code)}]}
        for code in ("MASQUE_PS", "INVISIBLE_REPRESENTANTS_LEGAUX")
    ]  # fmt: skip
    labels[0]["coding"][0]["code"] = "V"
    assert dr == before  # no aliasing either


def test_with_flags_resolves_contradictory_levels_when_given_one() -> None:
    dr = {
        "securityLabel": [{"coding": [{"system": A08_NOS, "code": "N"}, {"system": HL7_CONF, "code": "V"}]}]
    }
    labels = pdsm.with_flags(dr, "V", {"MASQUE_PS"})
    assert labels[0] == {"coding": [{"system": HL7_CONF, "code": "V"}]}
    assert pdsm.security_flags({"securityLabel": labels}) == ("V", frozenset({"MASQUE_PS"}))


def test_with_flags_changes_the_level() -> None:
    dr = {"securityLabel": [{"coding": [{"system": A08_NOS, "code": "N"}]}]}
    assert pdsm.with_flags(dr, "V", set()) == [
        {"coding": [{"system": HL7_CONF, "code": "V", "display": "Très restreint"}]}
    ]


@pytest.mark.parametrize(("level", "flags"), [("U", set()), ("N", {"MASQUE_PT"}), (None, {"N"})])
def test_with_flags_refuses_codes_outside_j08(level: str | None, flags: set[str]) -> None:
    with pytest.raises(ValueError, match="J08"):
        pdsm.with_flags({}, level, flags)


_LEVELS = st.sampled_from(pdsm.CONFIDENTIALITY_CODES)
_FLAGS = st.frozensets(st.sampled_from(pdsm.VISIBILITY_CODES))
_CONF_SYSTEMS = st.sampled_from([HL7_CONF, A08_NOS, "urn:oid:2.16.840.1.113883.5.25"])
_VIS_SYSTEMS = st.sampled_from([vs.VISIBILITY_SYSTEM, "urn:oid:1.2.250.1.213.1.1.4.13"])


@st.composite
def _labelled(draw: st.DrawFn) -> dict[str, Any]:
    """A DocumentReference whose labels use any spelling, grouped in one or several CodeableConcepts."""
    codings = [{"system": draw(_CONF_SYSTEMS), "code": draw(_LEVELS)}]
    codings += [{"system": draw(_VIS_SYSTEMS), "code": code} for code in sorted(draw(_FLAGS))]
    codings = draw(st.permutations(codings))
    if draw(st.booleans()):
        return {"securityLabel": [{"coding": codings}]}
    return {"securityLabel": [{"coding": [c]} for c in codings]}


@given(start=_labelled(), level=st.one_of(st.none(), _LEVELS), flags=_FLAGS)
def test_flags_round_trip_through_with_flags(
    start: dict[str, Any], level: str | None, flags: frozenset[str]
) -> None:
    old_level, _ = pdsm.security_flags(start)
    labels = pdsm.with_flags(start, level, flags)
    assert pdsm.security_flags({"securityLabel": labels}) == (level or old_level, flags)
    # Each visibility code in its own CodeableConcept with the NOS system of TRE_A07.
    visibility = [
        label for label in labels if vs.system_oid(label["coding"][0]["system"]) == vs.VISIBILITY_OID
    ]
    assert all(len(label["coding"]) == 1 for label in visibility)
    assert all(label["coding"][0]["system"] == vs.VISIBILITY_SYSTEM for label in visibility)
    assert len(visibility) == len(flags)
    # And the result is a valid PDSm securityLabel.
    dr = _load("iti65-fr.json")["entry"][1]["resource"]
    dr["securityLabel"] = labels
    pdsm.check_document_reference(dr)


@given(
    level=_LEVELS,
    flags=_FLAGS,
    changes=st.lists(st.tuples(st.one_of(st.none(), _LEVELS), _FLAGS), max_size=4),
)
def test_successive_updates_never_lose_a_flag(
    level: str, flags: frozenset[str], changes: list[tuple[str | None, frozenset[str]]]
) -> None:
    dr: dict[str, Any] = {"securityLabel": pdsm.with_flags({}, level, flags)}
    for new_level, new_flags in changes:
        dr = {"securityLabel": pdsm.with_flags(dr, new_level, new_flags)}
        level = new_level or level
        assert pdsm.security_flags(dr) == (level, new_flags)
