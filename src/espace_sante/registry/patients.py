"""The Patient a registry row makes, and its search index rows built straight from the row.

`searchparams.extract` walks any resource by its search parameters' paths (about 40 µs for a registry
Patient, a fifth of an import's Python time per person); the registry's Patient always has the same shape
(importer.py `identity`), so its values are listed here directly, as the tuples COPY wants.
`tests/registry/test_patients.py` checks they are exactly what `extract` gives for the same Patient."""

from __future__ import annotations

from datetime import datetime

from ..fhir.searchparams import normalize_text, parse_date_range
from ..storage.people import INS_SYSTEM
from ..storage.provision import IndexTuples
from .rows import Beneficiary

_GENDER = {"F": "female", "M": "male", "U": "unknown"}
_CACHE_MAX = 200_000
# Names, cities and street lines repeat a lot across a country's registry: normalising each distinct text once
# saves most of the Unicode work. Bounded (cleared when full) so memory stays constant.
_normalized: dict[str, str] = {}


def _norm(text: str) -> str:
    value = _normalized.get(text)
    if value is None:
        if len(_normalized) >= _CACHE_MAX:
            _normalized.clear()
        value = _normalized[text] = normalize_text(text)
    return value


def _dedupe(values: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    return list(dict.fromkeys(values))


def index_tuples(b: Beneficiary) -> IndexTuples:
    """The Patient's search values (searchparams.extract of importer.new_patient(b)) as COPY tuples."""
    tokens: list[tuple[str, str | None, str]] = [
        ("identifier", INS_SYSTEM, b.nir),
        ("gender", None, _GENDER[b.sex]),
    ]
    if b.email:
        tokens.append(("telecom", None, b.email))
    strings: list[tuple[str, str, str]] = []
    family = b.last_name
    given = b.first_names.split()
    names = [family, *given]
    named = [(n, _norm(n)) for n in names]
    strings += [("name", norm, n) for n, norm in named if norm]
    if named[0][1]:
        strings.append(("family", named[0][1], family))
    strings += [("given", norm, n) for n, norm in named[1:] if norm]
    if b.address_line:
        city, postal = (b.city, _norm(b.city)), (b.postal_code, _norm(b.postal_code))
        line = (b.address_line, _norm(b.address_line))
        if city[1]:
            strings.append(("address-city", city[1], city[0]))
        if postal[1]:
            strings.append(("address-postalcode", postal[1], postal[0]))
        # Address parts in searchparams' order: line, city, (district, state), postalCode, country.
        strings += [("address", norm, text) for text, norm in (line, city, postal, ("FR", "fr")) if norm]
    birth = parse_date_range(b.birth_date.isoformat())
    assert birth is not None  # a checked date
    dates: list[tuple[str, datetime, datetime]] = [("birthdate", birth[0], birth[1])]
    return tokens, _dedupe(strings), dates
