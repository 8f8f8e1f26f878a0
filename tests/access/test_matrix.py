"""The habilitation matrix is data: it must agree with the national code lists, and say no by default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from espace_sante.access.matrix import TRE_G15_PROFESSIONS, MatrixError, Override, default, parse

VALUESETS = Path(__file__).resolve().parents[2] / "src" / "espace_sante" / "fhir" / "data" / "valuesets"
MATRIX = default()


def _codes(name: str) -> set[str]:
    return {c["code"] for c in json.loads((VALUESETS / name).read_text("utf-8"))["concepts"]}


def test_every_profession_of_the_national_list_has_an_explicit_row() -> None:
    assert set(TRE_G15_PROFESSIONS) == _codes("profession-TRE_G15-ProfessionSante.json")
    assert set(MATRIX.by_profession) == set(TRE_G15_PROFESSIONS)


def test_categories_are_document_classes_of_the_french_value_set() -> None:
    assert set(MATRIX.categories) <= _codes("classCode-JDV_J06-XdsClassCode-CISIS.json")


def test_a_doctor_reads_every_category_and_every_profile_section() -> None:
    assert all(MATRIX.allows("10", "read", category=c) for c in MATRIX.categories)
    assert all(MATRIX.allows("10", "read", section=s) for s in MATRIX.sections)


def test_a_pharmacist_reads_prescriptions_and_dispensations_but_not_consultation_reports() -> None:
    assert MATRIX.allows("21", "read", category="42")
    assert MATRIX.allows("21", "write", category="43")
    assert not MATRIX.allows("21", "read", category="10")
    assert not MATRIX.allows("21", "read", section="Observation")


def test_support_staff_and_unknown_professions_get_nothing() -> None:
    for profession in ("35", "36", "39", "99", ""):
        assert not any(MATRIX.allows(profession, "read", category=c) for c in MATRIX.categories)


def test_the_holder_can_narrow_or_widen_it_for_their_space() -> None:
    """A holder does not want pharmacists to see her prescriptions, but lets them read her reports."""
    mine = Override(add=frozenset({"10"}), remove=frozenset({"42"}))
    assert not MATRIX.allows("21", "read", category="42", override=mine)
    assert MATRIX.allows("21", "read", category="10", override=mine)


def test_default_profile_sharing_follows_the_product_rules() -> None:
    shared = {s for s in MATRIX.sections if MATRIX.shared_by_default(s)}
    assert shared == {"Immunization", "Condition", "Procedure", "Consent", "RelatedPerson"}


def test_a_typo_in_the_data_is_refused_at_load() -> None:
    data = json.loads(
        (Path(__file__).resolve().parents[2] / "src/espace_sante/access/habilitation.json").read_text()
    )
    data["groups"]["pharmacy"]["read"].append("4")
    with pytest.raises(MatrixError, match=r"groups.pharmacy.read: unknown codes \['4'\]"):
        parse(data, TRE_G15_PROFESSIONS)
    data["groups"]["pharmacy"]["read"].remove("4")
    data["groups"]["nursing"]["professions"].append("21")
    with pytest.raises(MatrixError, match="profession 21 is in two groups"):
        parse(data, TRE_G15_PROFESSIONS)


@given(
    profession=st.sampled_from(TRE_G15_PROFESSIONS),
    category=st.sampled_from(sorted(MATRIX.categories)),
    operation=st.sampled_from(["read", "write"]),
)
def test_an_override_always_wins_over_the_default(profession: str, category: str, operation: str) -> None:
    assert MATRIX.allows(
        profession,
        operation,
        category=category,  # type: ignore[arg-type]
        override=Override(add=frozenset({category})),
    )
    assert not MATRIX.allows(
        profession,
        operation,
        category=category,  # type: ignore[arg-type]
        override=Override(remove=frozenset({category})),
    )
