"""The log check (tests/logcheck.py) finds what it must and only that: it fails the whole run when it finds."""

from __future__ import annotations

import pytest

from tests.factories import new_nir
from tests.logcheck import LogCheck


@pytest.fixture
def check() -> LogCheck:
    return LogCheck()


def test_an_ins_with_its_key_is_found_anywhere_in_a_line(check: LogCheck) -> None:
    check.scan("here", f'{{"event":"import.row","value":"{new_nir()}","level":"info"}}')
    assert [f.what for f in check.findings] == ["INS/NIR"]


def test_an_ins_without_its_key_is_found_when_the_run_made_it(check: LogCheck) -> None:
    made = check.remember(new_nir)()
    check.scan("here", f"nir={made[:13]} other=1765130754123")  # the second: a time in milliseconds
    assert [f.what for f in check.findings] == ["INS/NIR"]


def test_names_and_medical_words_are_found_however_they_are_written(check: LogCheck) -> None:
    check.scan("here", '{"event":"P\\u00e9nicilline"} patient Dubois; EXAMEN NORMAL')
    assert [f.what for f in check.findings] == ["« Penicilline »", "« Dubois »", "« EXAMEN NORMAL »"]


def test_ordinary_log_lines_are_not_findings(check: LogCheck) -> None:
    check.scan(
        "here",
        '{"request_id":"a97adef39d6da7a6","route":"/fhir/{rtype}","status":201,"ms":81.24,"event":"http"}\n'
        "un petit martin-pêcheur; space 01a251c1-5e9a-780d-a1b7-afb2865619a2 seq 123456789012345\n"
        f'{{"event":"HTTP Request: GET http://127.0.0.1:8000/fhir/Patient?identifier={new_nir()} \\"200\\""}}',
    )
    assert check.findings == []
