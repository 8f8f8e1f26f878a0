"""registry/patients.py builds a registry Patient's index rows from its row, without the generic extractor:
they must be exactly `searchparams.extract` of the Patient the import stores (importer.new_patient)."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest

from espace_sante.fhir import searchparams
from espace_sante.registry import importer, patients
from espace_sante.registry.rows import Beneficiary, check_row

TODAY = date(2026, 6, 1)
BASE = {
    "nir": "294037512000591", "last_name": "Bernard", "first_names": "Hélène Marie", "birth_date": "1994-03-12",
    "sex": "F", "address_line": "12 rue Pasteur", "postal_code": "69003", "city": "Lyon",
    "email": "helene@exemple.fr", "representative_1_nir": "", "representative_2_nir": "", "death_date": "",
}  # fmt: skip
CASES = [
    {},
    {"email": "", "address_line": "", "postal_code": "", "city": ""},
    {"last_name": "Ngô", "first_names": "Văn  Thị", "sex": "U"},
    {"first_names": "Jean Jean", "last_name": "Jean"},  # the same text in several parts and params
    {"last_name": "Lefèvre-Dupont ŒUF", "city": "L'Haÿ-les-Roses", "address_line": "3 bis Allée des Æ"},
    {"first_names": "Ｊｅａｎ ﬁlou", "last_name": "İyi"},  # compatibility forms and dotted capital I
    {"death_date": "2024-01-05", "sex": "M"},
    {"city": "Fr", "postal_code": "97400"},  # a city equal to the country once normalised
]


@pytest.mark.parametrize("change", CASES)
def test_the_registry_index_rows_are_the_extractors(change: dict[str, str]) -> None:
    row = check_row(BASE | change, 2, today=TODAY)
    assert isinstance(row, Beneficiary), row
    expected = searchparams.extract(importer.new_patient(row))
    tokens, strings, dates = patients.index_tuples(row)
    assert Counter(tokens) == Counter((v.param, v.system, v.code) for v in expected.tokens)
    assert Counter(strings) == Counter((v.param, v.normalized, v.exact) for v in expected.strings)
    assert Counter(dates) == Counter((v.param, v.low, v.high) for v in expected.dates)
    assert not expected.references and not expected.quantities and not expected.numbers
