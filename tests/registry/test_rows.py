"""Reading the insurer's registry: every good row comes out checked, every bad one with its line, field and
reason, a wrong header refuses the file, and no input makes the reader fail."""

from __future__ import annotations

import io
from datetime import date

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from espace_sante.fhir.identifiers import make_nir
from espace_sante.spaces.registry.rows import (
    COLUMNS,
    Beneficiary,
    RegistryFormatError,
    Rejected,
    read_registry,
)

TODAY = date(2026, 11, 24)
PARENT = make_nir("2550814168025")
CHILD = make_nir("1120575056123")
HEADER = ",".join(COLUMNS)


def _csv(*rows: str, header: str = HEADER) -> io.BufferedReader:
    return io.BufferedReader(io.BytesIO(("\ufeff" + header + "\n" + "\n".join(rows) + "\n").encode("utf-8")))


def _row(**values: str) -> str:
    base = {
        "nir": PARENT,
        "last_name": "Martin",
        "first_names": "Jeanne Marie",
        "birth_date": "1955-08-14",
        "sex": "F",
        "address_line": "3 rue de la République",
        "postal_code": "69001",
        "city": "Lyon",
        "email": "",
        "representative_1_nir": "",
        "representative_2_nir": "",
        "death_date": "",
    }
    base.update(values)
    return ",".join(f'"{base[c]}"' if "," in base[c] else base[c] for c in COLUMNS)


def test_good_rows_come_out_checked_with_their_line_numbers() -> None:
    rows = list(
        read_registry(
            _csv(
                _row(),
                _row(
                    nir=CHILD,
                    first_names="Léo",
                    birth_date="2012-05-21",
                    sex="M",
                    representative_1_nir=PARENT,
                ),
                _row(email="jeanne.martin@exemple.fr", address_line="", postal_code="", city=""),
            ),
            today=TODAY,
        )
    )
    assert [type(r) for r in rows] == [Beneficiary] * 3
    first, child, by_mail = rows
    assert isinstance(first, Beneficiary) and first.line == 2 and first.nir == PARENT
    assert isinstance(child, Beneficiary) and child.representatives == (PARENT,) and child.is_minor(TODAY)
    assert (
        isinstance(by_mail, Beneficiary)
        and by_mail.email == "jeanne.martin@exemple.fr"
        and by_mail.city == ""
    )


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        ({"nir": PARENT[:-2] + "00"}, "nir", "clé de contrôle"),
        ({"nir": ""}, "nir", "obligatoire"),
        ({"last_name": ""}, "last_name", "obligatoire"),
        ({"birth_date": "14/08/1955"}, "birth_date", "AAAA-MM-JJ"),
        ({"birth_date": "2027-01-01"}, "birth_date", "futur"),
        ({"sex": "X"}, "sex", "F, M ou U"),
        ({"postal_code": "6900"}, "postal_code", "5 chiffres"),
        ({"city": ""}, "city", "adresse incomplète"),
        ({"email": "jeanne at exemple.fr"}, "email", "invalide"),
        ({"representative_1_nir": PARENT}, "representative_1_nir", "elle-même"),
        ({"representative_1_nir": CHILD}, "representative_1_nir", "majeur"),
        ({"death_date": "1950-01-01"}, "death_date", "avant la naissance"),
        ({"first_names": "Jeanne\x07"}, "first_names", "contrôle"),
        ({"last_name": "Martin\u202e"}, "last_name", "invisible U+202E"),
    ],
)
def test_each_bad_row_names_its_line_field_and_reason(values: dict[str, str], field: str, words: str) -> None:
    rows = list(read_registry(_csv(_row(), _row(**values), _row()), today=TODAY))
    assert [type(r) for r in rows] == [Beneficiary, Rejected, Beneficiary]
    rejected = rows[1]
    assert isinstance(rejected, Rejected) and rejected.line == 3 and rejected.field == field
    assert words in rejected.reason, rejected.reason


def test_broken_lines_cost_one_row_each() -> None:
    stream = io.BufferedReader(
        io.BytesIO(
            (HEADER + "\n").encode()
            + _row().encode()
            + b"\n"
            + b'"unterminated,quote\n'
            + b"too,few,fields\n"
            + _row(last_name="Mart\xc3in").encode("utf-8", "surrogateescape").replace(b"\xc3\x83", b"\xc3")
            + b"\n"
            + b"x" * 9000
            + b"\n"
            + _row().encode()
            + b"\n"
        )
    )
    rows = list(read_registry(stream, today=TODAY))
    kinds = [(type(r).__name__, r.line) for r in rows]
    assert kinds[0] == ("Beneficiary", 2) and kinds[-1] == ("Beneficiary", 7)
    assert all(kind == "Rejected" for kind, _ in kinds[1:-1]) and len(kinds) == 6


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (HEADER.replace("sex", "gender"), "colonnes manquantes"),
        (HEADER + ",extra", "colonnes inconnues"),
        (HEADER + ",nir", "en double"),
    ],
)
def test_a_wrong_header_refuses_the_whole_file(header: str, words: str) -> None:
    with pytest.raises(RegistryFormatError, match=words):
        list(read_registry(_csv(_row(), header=header), today=TODAY))


def test_an_empty_file_is_refused() -> None:
    with pytest.raises(RegistryFormatError, match="vide"):
        list(read_registry(io.BufferedReader(io.BytesIO(b"")), today=TODAY))


def test_ndjson_with_the_same_keys() -> None:
    good = {c: "" for c in COLUMNS} | {
        "nir": PARENT,
        "last_name": "Martin",
        "first_names": "Jeanne",
        "birth_date": "1955-08-14",
        "sex": "F",
    }
    lines = [
        orjson.dumps(good),
        b"not json",
        orjson.dumps(good | {"nir": 42}),
        orjson.dumps(good | {"shoe_size": "42"}),
        orjson.dumps([good]),
        orjson.dumps(good | {"email": None}),
    ]
    stream = io.BufferedReader(io.BytesIO(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n"))
    rows = list(read_registry(stream, today=TODAY))
    assert [type(r).__name__ for r in rows] == [
        "Beneficiary",
        "Rejected",
        "Rejected",
        "Rejected",
        "Rejected",
        "Beneficiary",
    ]
    assert [r.field for r in rows if isinstance(r, Rejected)] == ["", "nir", "shoe_size", ""]


def test_memory_stays_flat_on_a_long_file() -> None:
    """Streaming: a generator over a file of 50,000 rows holds one row at a time."""
    body = HEADER + "\n" + "\n".join(_row() for _ in range(50_000)) + "\n"
    rows = read_registry(io.BufferedReader(io.BytesIO(body.encode())), today=TODAY)
    count = sum(1 for r in rows if isinstance(r, Beneficiary))
    assert count == 50_000


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_no_bytes_make_the_reader_fail(data: bytes) -> None:
    try:
        for row in read_registry(io.BufferedReader(io.BytesIO(data)), today=TODAY):
            assert isinstance(row, (Beneficiary, Rejected))
    except RegistryFormatError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=30), min_size=len(COLUMNS), max_size=len(COLUMNS)))
def test_any_field_values_give_a_row_or_a_reason(values: list[str]) -> None:
    line = ",".join('"' + v.replace('"', '""') + '"' for v in values).replace("\n", " ").replace("\r", " ")
    rows = list(read_registry(_csv(line), today=TODAY))
    assert len(rows) <= 1
    for row in rows:
        assert isinstance(row, Beneficiary) or (isinstance(row, Rejected) and row.reason)


# Field values without quote, comma or line break: quoting them changes nothing for the csv module.
_UNQUOTED = st.characters(blacklist_categories=("Cs",), blacklist_characters='",\r\n')


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.text(alphabet=_UNQUOTED, max_size=12), min_size=len(COLUMNS), max_size=len(COLUMNS)),
    st.sampled_from(["\n", "\r\n", ""]),
)
def test_a_line_without_quotes_reads_as_the_csv_module_reads_it(fields: list[str], end: str) -> None:
    """The reader splits a line that has no quote on its commas instead of running the csv module on it
    (spaces/registry/rows.py, a fifth of the time): the rows that come out, accepted or rejected, are the same."""
    header = ",".join(COLUMNS) + "\n"
    line = ",".join(fields) + end
    fast = list(
        read_registry(io.BytesIO((header + line).encode("utf-8", "surrogatepass")), today=date(2026, 1, 1))
    )
    quoted = ",".join('"' + f + '"' for f in fields) + end  # the same values, through the csv module
    slow = list(
        read_registry(io.BytesIO((header + quoted).encode("utf-8", "surrogatepass")), today=date(2026, 1, 1))
    )
    assert fast == slow
