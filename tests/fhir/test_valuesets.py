"""French value sets shipped with the package: loading, OID matching across system spellings, displays."""

from __future__ import annotations

import json
import re
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from espace_sante.fhir import valuesets as vs

REPO = Path(__file__).parents[2]
PACKAGE_DIR = REPO / "src" / "espace_sante" / "fhir" / "data" / "valuesets"

NOS = "https://mos.esante.gouv.fr/NOS/"
A03_NOS = NOS + "TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
A08_NOS = NOS + "TRE_A08-HL7Confidentiality/FHIR/TRE-A08-HL7Confidentiality"
A11_NOS = NOS + "TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode"
R02_NOS = NOS + "TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite"
HL7_CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
IHE_FORMAT = "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode"


@pytest.mark.parametrize(
    ("accessor", "name", "oid"),
    [
        (vs.type_code, "JDV_J07-XdsTypeCode-CISIS", "1.2.250.1.213.1.1.5.471"),
        (vs.class_code, "JDV_J06-XdsClassCode-CISIS", "1.2.250.1.213.1.1.5.462"),
        (vs.format_code, "JDV_J10-XdsFormatCode-CISIS", "1.2.250.1.213.1.1.5.465"),
        (vs.facility_type, "JDV_J02-XdsHealthcareFacilityTypeCode-CISIS", "1.2.250.1.213.1.1.5.466"),
        (vs.practice_setting, "JDV_J04-XdsPracticeSettingCode-CISIS", "1.2.250.1.213.1.1.5.467"),
        (vs.confidentiality, "JDV_J08-XdsConfidentialityCode-CISIS", "1.2.250.1.213.1.1.5.463"),
        (vs.visibility, "TRE_A07-StatutVisibiliteDocument", "1.2.250.1.213.1.1.4.13"),
        (vs.content_type, "JDV_J03-XdsContentTypeCode-CISIS", "1.2.250.1.213.1.1.5.464"),
        (vs.author_specialty, "JDV_J01-XdsAuthorSpecialty-CISIS", "1.2.250.1.213.1.1.5.461"),
    ],
)
def test_each_accessor_gives_its_value_set_with_every_concept(accessor: object, name: str, oid: str) -> None:
    value_set = accessor()  # type: ignore[operator]
    assert (value_set.name, value_set.oid) == (name, oid)
    assert value_set.label == f"{name} ({oid})"
    files = [p for p in PACKAGE_DIR.glob("*.json") if name in p.name]
    assert len(files) == 1
    data = json.loads(files[0].read_text(encoding="utf-8"))
    assert len(value_set.concepts) == data["count"] == len(data["concepts"])


def _pairs(value_set: vs.ValueSet) -> set[tuple[str, str]]:
    return {(c.system_oid, c.code) for c in value_set.concepts}


def test_the_dmps_own_lists_add_one_type_code_to_the_ci_sis_ones() -> None:
    """What `accepted_type_code` rests on: the DMP's class and confidentiality lists (J57, J58) are inside
    J06 and J08, and its type list (J66) adds one code to J07, LOINC 11526-1."""
    assert _pairs(vs.load("J57")) <= _pairs(vs.class_code())
    assert _pairs(vs.load("J58")) <= _pairs(vs.confidentiality())
    assert _pairs(vs.load("J66")) - _pairs(vs.type_code()) == {(vs.LOINC_OID, "11526-1")}
    accepted = vs.accepted_type_code()
    assert _pairs(accepted) == _pairs(vs.type_code()) | {(vs.LOINC_OID, "11526-1")}
    assert accepted.contains("http://loinc.org", "11526-1") and accepted.contains(
        "http://loinc.org", "60568-3"
    )
    assert accepted.display("urn:oid:2.16.840.1.113883.6.1", "11526-1")
    assert not vs.type_code().contains("http://loinc.org", "11526-1")
    assert accepted.label == (
        "JDV_J07-XdsTypeCode-CISIS (1.2.250.1.213.1.1.5.471) + JDV_J66-TypeCode-DMP (1.2.250.1.213.1.1.5.7)"
    )


def test_value_sets_are_read_once() -> None:
    assert vs.load("J07") is vs.type_code() is vs.load("J07")
    before = vs.load.cache_info().hits
    vs.type_code()
    assert vs.load.cache_info().hits == before + 1


def test_every_value_set_is_read_from_the_package_by_its_short_name() -> None:
    root = resources.files("espace_sante.fhir").joinpath("data", "valuesets")
    shipped = {p.name for p in PACKAGE_DIR.glob("*.json")}
    assert {entry.name for entry in root.iterdir() if entry.name.endswith(".json")} == shipped
    for short in ("J01", "J02", "J03", "J04", "J06", "J07", "J08", "J10", "A07", "J57", "J58", "J66"):
        assert vs.load(short).oid
    professions = {c.code: c.display for c in vs.load("G15").concepts}
    assert professions["10"] == "Médecin" and professions["21"] == "Pharmacien"
    assert len(vs.load("R38").concepts) == 84 and len(vs.load("R85").concepts) == 35


def test_the_wheel_includes_the_package_data() -> None:
    """Hatch puts every file under the listed package in the wheel unless excluded; nothing excludes
    JSON (a wheel built with hatchling was checked to hold data/valuesets/*.json)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    wheel = config["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["packages"] == ["src/espace_sante"]
    assert "exclude" not in wheel and "only-include" not in wheel
    ignored = (REPO / ".gitignore").read_text(encoding="utf-8").split()
    assert not any(pattern in ("*.json", "data/", "valuesets/") for pattern in ignored)


def test_every_shipped_reference_file_names_its_source() -> None:
    sources = (PACKAGE_DIR.parent / "SOURCES.md").read_text(encoding="utf-8")
    shipped = {str(p.relative_to(PACKAGE_DIR.parent)) for p in PACKAGE_DIR.parent.rglob("*.json")}
    listed = set(re.findall(r"^\| `([^`]+\.json)` \|", sources, re.MULTILINE))
    assert shipped == listed


@pytest.mark.parametrize(
    ("value_set", "system", "code"),
    [
        # N/R/V: NOS alias, HL7 canonical, OID (fr-interop.md §4).
        ("J08", A08_NOS, "N"),
        ("J08", HL7_CONF, "R"),
        ("J08", "urn:oid:2.16.840.1.113883.5.25", "V"),
        # LOINC: canonical URL, OID, the 2023 NOS alias.
        ("J07", "http://loinc.org", "34112-3"),
        ("J07", "urn:oid:2.16.840.1.113883.6.1", "34112-3"),
        ("J07", NOS + "TRE_A04-Loinc/FHIR/TRE-A04-Loinc", "34112-3"),
        # IHE format codes: NOS TRE_A11, IHE's FHIR code system, OID.
        ("J10", A11_NOS, "urn:ihe:iti:xds-sd:pdf:2008"),
        ("J10", IHE_FORMAT, "urn:ihe:iti:xds-sd:pdf:2008"),
        ("J10", "urn:oid:1.3.6.1.4.1.19376.1.2.3", "urn:ihe:iti:xds-sd:pdf:2008"),
        # French systems: NOS URL, OID, a trailing slash and http instead of https.
        ("J06", A03_NOS, "10"),
        ("J06", "urn:oid:1.2.250.1.213.1.1.4.1", "10"),
        ("J06", A03_NOS + "/", "10"),
        ("J02", R02_NOS.replace("https://", "http://"), "SA01"),
        ("J02", "urn:oid:1.2.250.1.71.4.2.4", "SA01"),
        ("A07", "urn:oid:1.2.250.1.213.1.1.4.13", "MASQUE_PS"),
        ("A07", vs.VISIBILITY_SYSTEM, "INVISIBLE_PATIENT"),
    ],
)
def test_systems_are_matched_by_oid_whatever_their_spelling(value_set: str, system: str, code: str) -> None:
    assert vs.load(value_set).contains(system, code)


@pytest.mark.parametrize(
    ("value_set", "system", "code"),
    [
        ("J07", "http://loinc.org", "18842-5"),  # a LOINC code outside J07
        ("J07", "http://snomed.info/sct", "34112-3"),  # the right code in the wrong system
        ("J06", A03_NOS, "11 "),
        ("J02", "http://snomed.info/sct", "22232009"),
        ("J08", HL7_CONF, "U"),  # in HL7 v3 Confidentiality, not in J08
        # The misspelling of the PDSm example DR_comprehensive.fsh (fr-interop.md §6) is not an alias.
        ("A07", NOS + "TRE_A07-StatusVisibiliteDocument/FHIR/TRE-A07-StatusVisibiliteDocument", "MASQUE_PS"),
        ("J06", "urn:oid:not-an-oid", "10"),
        ("J06", "", "10"),
        ("J06", None, "10"),
        ("J06", A03_NOS, None),
    ],
)
def test_codes_outside_the_value_set_or_in_another_system_are_not_contained(
    value_set: str, system: str | None, code: str | None
) -> None:
    assert not vs.load(value_set).contains(system, code)
    assert vs.load(value_set).display(system, code) is None


def test_display_is_the_ans_french_label() -> None:
    assert vs.type_code().display("http://loinc.org", "34112-3") == "CR hospitalier (séjour)"
    assert vs.class_code().display("urn:oid:1.2.250.1.213.1.1.4.1", "10") == "Compte rendu"
    assert vs.confidentiality().display(HL7_CONF, "V") == "Très restreint"
    assert vs.visibility().display(vs.VISIBILITY_SYSTEM, "MASQUE_PS") == "Masqué aux professionnels de santé"


def test_system_oid_and_label() -> None:
    assert vs.system_oid("urn:oid:1.2.250.1.213.1.1.4.1") == "1.2.250.1.213.1.1.4.1"
    assert vs.system_oid(HL7_CONF) == vs.CONFIDENTIALITY_OID
    assert vs.system_oid("http://snomed.info/sct") == vs.SNOMED_OID
    assert vs.system_oid("https://example.org/local") is None
    assert vs.system_oid("urn:oid:1.02") is None  # no leading zeros in an OID arc
    assert vs.system_label("1.2.250.1.213.1.1.4.1") == "TRE_A03-ClasseDocument"
    assert vs.system_label(vs.LOINC_OID) == "LOINC"
    assert vs.system_label("1.2.3") == "1.2.3"


def test_visibility_codes_allowed_by_j08_are_the_three_dmp_codes() -> None:
    in_j08 = set(vs.confidentiality().codes(vs.VISIBILITY_OID))
    assert in_j08 == {"MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX"}
    assert set(vs.visibility().codes()) == in_j08 | {"MASQUE_PSOCIAL", "MASQUE_PT"}
    assert set(vs.confidentiality().codes(vs.CONFIDENTIALITY_OID)) == {"N", "R", "V"}
