"""French identifiers: the NIR key and structure (CNAM test vectors), RPPS, IDNPS, FINESS, IDNST."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from espace_sante.fhir import identifiers as ids
from espace_sante.fhir.identifiers import (
    IdentifierError,
    check_identifier,
    make_nir,
    nir_key,
    validate_finess,
    validate_idnps,
    validate_idnst,
    validate_nir,
    validate_rpps,
)

REFERENCE = Path(__file__).parents[2] / "src" / "espace_sante" / "fhir" / "data" / "identifier-systems.json"


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REFERENCE.read_text(encoding="utf-8"))
    return data


def test_the_reference_file_ships_with_the_package() -> None:
    assert REFERENCE.is_file(), REFERENCE


def test_every_test_vector_of_the_reference_gives_its_key(reference: dict[str, Any]) -> None:
    vectors = reference["nir"]["testVectors"]
    assert len(vectors) == 5
    for vector in vectors:
        assert nir_key(vector["nir13"]) == vector["key"], vector
        assert (
            validate_nir(vector["nir13"] + f"{vector['key']:02d}") == vector["nir13"] + f"{vector['key']:02d}"
        )


def test_the_regex_is_the_published_one(reference: dict[str, Any]) -> None:
    assert reference["nir"]["regex"] == ids.NIR_REGEX


def test_the_systems_are_those_of_the_reference(reference: dict[str, Any]) -> None:
    by_id = {entry["id"]: entry["system"] for entry in reference["identifiers"]}
    assert by_id["INS-NIR"] == ids.INS_NIR
    assert by_id["INS-NIA"] == ids.INS_NIA
    assert by_id["INS-NIR-TEST"] == ids.INS_NIR_TEST
    assert by_id["INS-NIR-DEMO"] == ids.INS_NIR_DEMO
    assert by_id["IDNPS"] == ids.IDNPS
    assert by_id["RPPS"] == ids.RPPS
    assert by_id["IDNST"] == ids.IDNST
    assert by_id["FINESS"] == ids.FINESS


@pytest.mark.parametrize(
    ("written", "normalised"),
    [
        ("255081416802538", "255081416802538"),
        ("2 55 08 14 168 025 38", "255081416802538"),
        ("2 84 05 2a 321 025 52", "284052A32102552"),  # CNAM NirValidatorSpec: lower-case Corsica
        ("2 84 05 2B 321 025 79", "284052B32102579"),
        ("2 84 05 88 321 025 32", "284058832102532"),
        ("1 53 12 45 007 231 60", "153124500723160"),
        ("2 94 03 75 120 005 91", "294037512000591"),
        (
            "1 85 99 99 123 456 " + f"{nir_key('1859999123456'):02d}",
            "1859999123456" + f"{nir_key('1859999123456'):02d}",
        ),
    ],
)
def test_a_valid_nir_is_returned_normalised(written: str, normalised: str) -> None:
    assert validate_nir(written) == normalised


def test_a_wrong_key_is_refused_with_the_expected_and_received_keys() -> None:
    with pytest.raises(IdentifierError) as caught:
        validate_nir("255081416802537")
    message = str(caught.value)
    assert "clé de contrôle NIR incorrecte : attendu 38, reçu 37" in message
    assert "wrong NIR key: expected 38, got 37" in message
    assert message.index("clé") < message.index("wrong")  # French first


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("25508141680253", "14 caractères au lieu de 15"),
        ("2550814168025", "clé de contrôle absente"),
        ("", "0 caractères au lieu de 15"),
        ("2550814168025X7", "« X » non autorisé en position 14"),
        ("355081416802538", "premier chiffre (sexe) « 3 »"),
        ("255131416802538", "mois de naissance « 13 »"),
        ("255001416802538", "mois de naissance « 00 »"),
        ("2550A1416802538", "position 5"),
        ("2A5081416802538", "position 2"),
        ("284053A32102552", "« A » non autorisé en position 7"),
        ("28405A232102552", "positions 6-7"),
        ("2550814168025-8", "« - » non autorisé en position 14"),
        ("２５５０８１４１６８０２５３８", "position 1"),  # full-width digits are not ASCII digits
    ],
)
def test_a_malformed_nir_names_its_problem(value: str, fragment: str) -> None:
    with pytest.raises(IdentifierError) as caught:
        validate_nir(value)
    assert fragment in str(caught.value)


def test_a_non_string_nir_is_refused_plainly() -> None:
    with pytest.raises(IdentifierError, match="chaîne de caractères"):
        validate_nir(255081416802538)  # type: ignore[arg-type]


def test_the_month_may_be_unknown() -> None:
    # 20 to 99 when the birth month is unknown (identifier-systems.json nir.structure).
    assert validate_nir(make_nir("1804299123456")).startswith("18042")


def test_make_nir_appends_the_key_and_refuses_a_bad_body() -> None:
    assert make_nir("2550814168025") == "255081416802538"
    assert make_nir("284052a321025") == "284052A32102552"
    with pytest.raises(IdentifierError):
        make_nir("3550814168025")
    with pytest.raises(IdentifierError, match="au lieu de 13"):
        nir_key("255081416802538")


# --- properties --------------------------------------------------------------------------------------

_digit = st.sampled_from("0123456789")
_nir13 = st.builds(
    lambda sex, year, month, dept, commune, rank: f"{sex}{year}{month}{dept}{commune}{rank}",
    st.sampled_from("12"),
    st.text(_digit, min_size=2, max_size=2),
    st.one_of(st.integers(1, 12).map(lambda m: f"{m:02d}"), st.integers(20, 99).map(str)),
    st.one_of(st.text(_digit, min_size=2, max_size=2), st.sampled_from(["2A", "2B"])),
    st.text(_digit, min_size=3, max_size=3),
    st.text(_digit, min_size=3, max_size=3),
)


@given(_nir13)
def test_every_made_nir_validates(nir13: str) -> None:
    nir = make_nir(nir13)
    assert validate_nir(nir) == nir
    assert nir[:13] == nir13
    assert 1 <= int(nir[13:]) <= 97


@given(_nir13, st.data())
def test_changing_any_single_digit_breaks_the_nir(nir13: str, data: st.DataObject) -> None:
    nir = make_nir(nir13)
    positions = [i for i, c in enumerate(nir) if c.isdigit()]
    position = data.draw(st.sampled_from(positions), label="position")
    replacement = data.draw(st.sampled_from([d for d in "0123456789" if d != nir[position]]), label="digit")
    mutated = nir[:position] + replacement + nir[position + 1 :]
    # 97 is prime and does not divide 10^k, so a change of one digit always changes N mod 97.
    with pytest.raises(IdentifierError):
        validate_nir(mutated)


def _answer(check: Callable[[str], str], value: str) -> str:
    try:
        return check(value)
    except IdentifierError as error:
        return f"refused: {error}"


@given(st.one_of(_nir13.map(make_nir), st.text("0123456789", min_size=15, max_size=15)))
@example("100000000000000")
@example("180017500100197")
def test_the_fast_path_for_digits_answers_as_every_check_does(value: str) -> None:
    """validate_nir's shortcut for 15 ASCII digits accepts exactly what the full checks accept."""
    assert _answer(validate_nir, value) == _answer(ids.checked_nir, value)


@given(st.text(max_size=40))
@example("2A")
@example("\x00" * 15)
@example("ß" * 15)
def test_validate_nir_raises_only_identifier_errors(text: str) -> None:
    try:
        result = validate_nir(text)
    except IdentifierError as error:
        message = str(error)
    else:
        assert ids._NIR_RE.match(result)
        return
    assert " / " in message


@given(st.text(max_size=30), st.sampled_from([ids.RPPS, ids.IDNPS, ids.FINESS, ids.IDNST, ids.INS_NIR]))
def test_check_identifier_never_raises(text: str, system: str) -> None:
    result = check_identifier(system, text)
    assert result is None or isinstance(result, str)


# --- RPPS, IDNPS, FINESS, IDNST --------------------------------------------------------------------------


def test_rpps_is_eleven_digits() -> None:
    assert validate_rpps("10005173140") == "10005173140"
    assert validate_rpps("1000 517 3140") == "10005173140"
    # fr-core's example Practitioner: it fails a Luhn check, and is accepted because only the format is
    # checked (see identifiers.py).
    assert validate_rpps("10101201234") == "10101201234"
    for bad in ("1000517314", "100051731400", "1000517314A", ""):
        with pytest.raises(IdentifierError, match="11 chiffres attendus"):
            validate_rpps(bad)


def test_idnps_checks_the_rpps_after_prefix_8_and_the_adeli_after_prefix_0() -> None:
    assert validate_idnps("810101201234") == "810101201234"  # identifier-systems.json example
    assert validate_idnps("899700218896") == "899700218896"  # ANS test practitioner (PDSm examples)
    assert validate_idnps("0751234567") == "0751234567"
    assert validate_idnps("02A1234567") == "02A1234567"
    assert validate_idnps("3750712184/12345") == "3750712184/12345"
    with pytest.raises(IdentifierError, match="IDNPS 8 \\+ RPPS : numéro RPPS"):
        validate_idnps("81010120123")
    with pytest.raises(IdentifierError, match="ADELI"):
        validate_idnps("075123456")
    with pytest.raises(IdentifierError, match="préfixe IDNPS « 2 » inconnu"):
        validate_idnps("210101201234")
    with pytest.raises(IdentifierError, match="rien après le préfixe"):
        validate_idnps("8")
    with pytest.raises(IdentifierError, match="IDNPS vide"):
        validate_idnps("  ")


def test_finess_is_nine_characters_with_corsica() -> None:
    assert validate_finess("750712184") == "750712184"
    assert validate_finess("2a0000013") == "2A0000013"
    for bad in ("75071218", "7507121840", "2C0000013", "A20000013", "75071218X"):
        with pytest.raises(IdentifierError, match="FINESS"):
            validate_finess(bad)


def test_idnst_accepts_prefixed_and_technical_forms() -> None:
    assert validate_idnst("2264403106") == "2264403106"  # identifier-systems.json example: 2 + SIREN
    assert validate_idnst("1750712184") == "1750712184"
    assert validate_idnst("ABC-123") == "ABC-123"
    with pytest.raises(IdentifierError, match="IDNST vide"):
        validate_idnst("")
    with pytest.raises(IdentifierError, match="caractère de contrôle"):
        validate_idnst("12\x0034")


def test_check_identifier_dispatches_by_system() -> None:
    assert check_identifier(ids.INS_NIR, "255081416802538") is None
    assert check_identifier(ids.INS_NIR_TEST, "255081416802538") is None
    assert check_identifier(ids.INS_NIR_DEMO, "255081416802538") is None
    assert "attendu 38, reçu 37" in (check_identifier(ids.INS_NIR_DEMO, "255081416802537") or "")
    assert check_identifier(ids.RPPS, "123") is not None
    assert check_identifier(ids.IDNPS, "899700218896") is None
    assert check_identifier(ids.FINESS, "12345") is not None
    assert check_identifier(ids.IDNST, "") is not None
    # No rule: unknown systems, and INS-NIA whose format is not verified.
    assert check_identifier("urn:oid:1.2.3", "anything") is None
    assert check_identifier(ids.INS_NIA, "whatever") is None
