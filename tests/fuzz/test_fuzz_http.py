"""Property tests through HTTP (hypothesis): whatever a client sends (any JSON, mutated resources, odd
bundles, any query string) the server never answers 5xx, and every 4xx is an OperationOutcome. An oracle
property checks date and string search against a Python reading of FHIR R4 search.html."""

from __future__ import annotations

import base64
import copy
import json
import os
import unicodedata
import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import FHIR_JSON, INS, new_nir, patient

# Modest by default (the whole file runs in seconds); FUZZ_SCALE=20 for a long bug hunt.
_SCALE = float(os.environ.get("FUZZ_SCALE", "1"))


def _examples(n: int) -> settings:
    return settings(
        max_examples=max(1, int(n * _SCALE)), deadline=None, suppress_health_check=list(HealthCheck)
    )


FUZZ = _examples(60)
FEW = _examples(30)

# --- strategies -------------------------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "Patient",
            "Observation",
            "Bundle",
            "",
            "1955-08-14",
            "Patient/1",
            "urn:uuid:x",
            INS,
            "final",
            "female",
            "#a",
            "a\x00b",
        ]
    )
)
_keys = st.text(max_size=12) | st.sampled_from(
    [
        "resourceType",
        "id",
        "meta",
        "identifier",
        "name",
        "family",
        "given",
        "gender",
        "birthDate",
        "system",
        "value",
        "reference",
        "subject",
        "status",
        "code",
        "coding",
        "entry",
        "request",
        "resource",
        "method",
        "url",
        "type",
        "extension",
        "contained",
        "text",
        "valueQuantity",
        "effectiveDateTime",
        "_birthDate",
    ]
)
json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=5),
    max_leaves=25,
)


def _paths(node: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*here, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*here, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    """A valid resource with a few random edits: replace a node, delete a key, add a key."""
    body = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(body) if p]
        op = draw(st.sampled_from(["replace", "delete", "add"]))
        if op == "add" or not paths:
            parents = [p for p in _paths(body) if isinstance(_get(body, p), dict)]
            parent = _get(body, draw(st.sampled_from(parents)))
            parent[draw(_keys)] = draw(json_values)
            continue
        path = draw(st.sampled_from(paths))
        holder = _get(body, path[:-1])
        if op == "replace":
            holder[path[-1]] = draw(json_values)
        elif isinstance(holder, dict):
            del holder[path[-1]]
        else:
            holder.pop(path[-1])
    return body


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        node = node[step]
    return node


def _valid_patient() -> dict[str, Any]:
    return patient(
        nir=new_nir(),
        address=[{"city": "Lyon", "postalCode": "69003"}],
        telecom=[{"system": "phone", "value": "0600000000"}],
    )


def _observation(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": "2025-03-10T08:30:00+01:00",
        "valueQuantity": {"value": 64.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    }


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:2000]}"
    if response.status_code >= 400:
        body = response.json()
        assert body["resourceType"] == "OperationOutcome", body
        assert body["issue"], body
        assert all(issue.get("diagnostics") for issue in body["issue"]), body


def _dumps(value: Any) -> bytes:
    # json (not orjson): big integers and lone surrogates go out as they are, for the server to judge.
    return json.dumps(value).encode()


# --- bodies ---------------------------------------------------------------------------------------------------


@FUZZ
@given(body=json_values)
async def test_any_json_to_create_patient_is_never_a_server_error(fhir: httpx.AsyncClient, body: Any) -> None:
    """Any JSON value at all, posted as a Patient: a 4xx OperationOutcome (or, by luck, a created
    Patient), never a 5xx."""
    _check(await fhir.post("/Patient", content=_dumps(body), headers=FHIR_JSON))


@FUZZ
@given(data=st.data())
async def test_mutated_patients_are_never_a_server_error(
    fhir: httpx.AsyncClient, data: st.DataObject
) -> None:
    """A valid Patient with random edits: accepted (201) or refused with an OperationOutcome."""
    body = data.draw(mutated(_valid_patient()))
    response = await fhir.post("/Patient", content=_dumps(body), headers=FHIR_JSON)
    _check(response)
    if response.status_code == 201:
        assert response.json()["resourceType"] == "Patient"


@FEW
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
async def test_raw_bytes_are_never_a_server_error(fhir: httpx.AsyncClient, raw: bytes) -> None:
    """Not JSON at all (or almost): a 400, never a 5xx."""
    _check(await fhir.post("/Patient", content=raw, headers=FHIR_JSON))
    _check(await fhir.post("", content=raw, headers=FHIR_JSON))


_methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "", None, 3])
_urls = st.sampled_from(
    [
        "Patient",
        "Patient/",
        "Observation",
        "Patient?identifier=x|y",
        "Patient/abc",
        "Patient/abc/_history/1",
        "Patient/abc/_history/x",
        "Unknown",
        "/Patient",
        "http://other/fhir/Patient",
        "http://127.0.0.1:8000/fhir/Patient",
        "Observation?patient=1&_count=x",
        "",
        "Patient/../x",
        "Patient?",
        "?",
        "Binary",
        "metadata",
    ]
) | st.text(max_size=30)


@st.composite
def bundles(draw: st.DrawFn) -> Any:
    """Bundles with plausible and implausible entries: real resources (some mutated), odd methods and
    URLs, placeholders that do and do not resolve."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    entries: list[Any] = []
    placeholder = f"urn:uuid:{uuid.uuid4()}"
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.integers(0, 5))
        if kind == 0:
            entries.append(draw(json_values))
            continue
        resource: Any
        if kind == 1:
            resource = _valid_patient()
        elif kind == 2:
            resource = _observation(draw(st.sampled_from(["0" * 48, placeholder, "x"])))
            resource["subject"]["reference"] = draw(
                st.sampled_from(
                    [placeholder, f"Patient?identifier={INS}|{new_nir()}", "Patient/" + "0" * 48, "Patient/x"]
                )
            )
        elif kind == 3:
            resource = draw(mutated(_valid_patient()))
        else:
            resource = draw(json_values)
        entry: dict[str, Any] = {
            "resource": resource,
            "request": {"method": draw(_methods), "url": draw(_urls)},
        }
        if draw(st.booleans()):
            entry["fullUrl"] = draw(st.sampled_from([placeholder, "urn:uuid:bad", "Patient/1"]))
        if draw(st.booleans()):
            entry["request"]["ifNoneExist"] = draw(
                st.sampled_from(
                    ["identifier=x|y", "", "a=b&&", "Patient?identifier=x", "colour=blue", "_count=x", "%zz"]
                )
            )
        if draw(st.booleans()):
            entry["request"]["ifMatch"] = draw(st.sampled_from(['W/"1"', "1", 'W/"x"', ""]))
        entries.append(entry)
    bundle: dict[str, Any] = {
        "resourceType": draw(st.sampled_from(["Bundle", "Bundle", "Patient", 1])),
        "type": draw(st.sampled_from(["transaction", "batch", "collection", None])),
    }
    if draw(st.integers(0, 5)):
        bundle["entry"] = entries
    else:
        bundle["entry"] = draw(json_values)
    return bundle


@FUZZ
@given(bundle=bundles())
async def test_bundles_are_never_a_server_error(fhir: httpx.AsyncClient, bundle: Any) -> None:
    """Batch and transaction bundles of any shape: the bundle or each of its entries gets a status; a
    failed entry carries an OperationOutcome; never a 5xx."""
    response = await fhir.post("", content=_dumps(bundle), headers=FHIR_JSON)
    _check(response)
    if response.status_code == 200:
        result = response.json()
        assert result["resourceType"] == "Bundle"
        for entry in result["entry"]:
            status = int(entry["response"]["status"].split()[0])
            assert status < 500, entry
            if status >= 400:
                assert entry["response"]["outcome"]["resourceType"] == "OperationOutcome"


@FUZZ
@given(data=st.data())
async def test_updates_are_never_a_server_error(fhir: httpx.AsyncClient, data: st.DataObject) -> None:
    """PUT of mutated patients on an existing id, a foreign id and a malformed id, with and without
    If-Match."""
    target = _PUT_TARGETS.get("id")
    if target is None:
        response = await fhir.post("/Patient", json=_valid_patient(), headers=FHIR_JSON)
        assert response.status_code == 201
        target = _PUT_TARGETS["id"] = response.json()["id"]
    base = {**_valid_patient(), "id": target}
    body = data.draw(mutated(base) | json_values)
    rid = data.draw(st.sampled_from([target, target, "0" * 48, "abc", "x" * 64]))
    headers = dict(FHIR_JSON)
    if data.draw(st.booleans()):
        headers["If-Match"] = data.draw(st.sampled_from(['W/"1"', 'W/"999"', '"2"', "garbage", 'W/"-1"']))
    _check(await fhir.put(f"/Patient/{rid}", content=_dumps(body), headers=headers))


_PUT_TARGETS: dict[str, str] = {}

# --- query strings --------------------------------------------------------------------------------------

_NAMES = [
    "_id",
    "_lastUpdated",
    "_count",
    "_offset",
    "_sort",
    "_summary",
    "_total",
    "_include",
    "_revinclude",
    "_format",
    "_pretty",
    "_elements",
    "_has",
    "identifier",
    "name",
    "family",
    "given",
    "birthdate",
    "gender",
    "address-city",
    "general-practitioner",
    "patient",
    "subject",
    "code",
    "category",
    "status",
    "date",
    "value-quantity",
    "performer",
    "combo-code",
    "link",
    "active",
    "telecom",
    "colour",
    "",
]
_MODS = [
    "",
    ":exact",
    ":contains",
    ":missing",
    ":not",
    ":Patient",
    ":Practitioner",
    ":above",
    ":text",
    ":iterate",
    ":",
    "::",
]
_CHAINS = ["", ".identifier", ".name", ".family", ".birthdate", "._id", ".general-practitioner.name", ".x"]
_PREFIXES = ["", "eq", "ne", "lt", "le", "gt", "ge", "sa", "eb", "ap", "zz"]
_VALUES = [
    "1955",
    "1955-08",
    "1955-08-14",
    "1955-08-14T10:00",
    "2025-03-10T08:30:00+01:00",
    "2025-13-40",
    "9999-12-31T23:59:59.999999999-14:00",
    "0001-01-01T00:00:00+14:00",
    "60|http://unitsofmeasure.org|kg",
    "60||kg",
    "60|",
    "1e400",
    "-0",
    ".5",
    "NaN",
    f"{INS}|1",
    "|x",
    "x|",
    "|",
    "a,b",
    "\\,",
    "\\",
    "Patient/x",
    "Patient/" + "0" * 48,
    "Observation:patient",
    "Observation:subject:Patient",
    "DocumentReference:subject",
    "*",
    "true",
    "false",
    "count",
    "accurate",
    "json",
    "xml",
    "birthdate",
    "-birthdate",
    "family,-_id",
    "_lastUpdated",
    "émile",
    "%",
    "_",
    "'; drop table resource; --",
    "",
    "a\x00b",
    "\x00",
    "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
]


@st.composite
def query_pairs(draw: st.DrawFn) -> list[tuple[str, str]]:
    pairs = []
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 4)) == 0:
            name = draw(st.text(max_size=15))
        else:
            name = (
                draw(st.sampled_from(_NAMES)) + draw(st.sampled_from(_MODS)) + draw(st.sampled_from(_CHAINS))
            )
        if draw(st.integers(0, 3)) == 0:
            value = draw(st.text(max_size=30))
        else:
            value = draw(st.sampled_from(_PREFIXES)) + draw(st.sampled_from(_VALUES))
            if draw(st.integers(0, 4)) == 0:
                value += "," + draw(st.sampled_from(_PREFIXES)) + draw(st.sampled_from(_VALUES))
        pairs.append((name, value))
    return pairs


def _query(pairs: list[tuple[str, str]]) -> str:
    # quote by hand: surrogates and NULs would not survive httpx's own encoding
    return "&".join(
        f"{quote(k.encode('utf-8', 'surrogatepass'), safe='')}="
        f"{quote(v.encode('utf-8', 'surrogatepass'), safe='')}"
        for k, v in pairs
    )


@FUZZ
@given(
    pairs=query_pairs(),
    rtype=st.sampled_from(["Patient", "Observation", "DocumentReference", "Practitioner"]),
    strict=st.booleans(),
)
async def test_any_query_string_is_never_a_server_error(
    fhir: httpx.AsyncClient, pairs: list[tuple[str, str]], rtype: str, strict: bool
) -> None:
    """Real parameter names, modifiers, chains, prefixes and values mixed with random text, strict or
    lenient: a searchset or a 4xx OperationOutcome, never a 5xx; POST _search answers the same status."""
    headers = {"Prefer": "handling=strict"} if strict else {}
    query = _query(pairs)
    response = await fhir.get(f"/{rtype}?{query}", headers=headers)
    _check(response)
    if response.status_code == 200:
        assert response.json()["type"] == "searchset"
    posted = await fhir.post(
        f"/{rtype}/_search",
        content=query.encode(),
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    _check(posted)
    assert posted.status_code == response.status_code


@FEW
@given(raw=st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
async def test_raw_query_strings_are_never_a_server_error(fhir: httpx.AsyncClient, raw: str) -> None:
    """Unparsed text after the "?" (stray %, &&, ==, unicode) on two types."""
    text = quote(raw, safe="=&%,|:.$-_")
    for rtype in ("Patient", "Observation"):
        _check(await fhir.get(f"/{rtype}?{text}"))


# --- the token endpoint ------------------------------------------------------------------------------------

_FORM_NAMES = st.sampled_from(["grant_type", "client_id", "client_secret", "scope", "client_assertion", "x"])
_FORM_VALUES = st.sampled_from(
    ["client_credentials", "password", "system/*.read", "system/*.cruds", "", "a\x00b", "%00"]
) | st.text(max_size=20)


@FEW
@given(
    form=st.lists(st.tuples(_FORM_NAMES, _FORM_VALUES), max_size=5),
    basic=st.none() | st.tuples(st.text(max_size=10), st.text(max_size=10)),
)
async def test_the_token_endpoint_is_never_a_server_error(
    http: httpx.AsyncClient, form: list[tuple[str, str]], basic: tuple[str, str] | None
) -> None:
    """Any form, with or without Basic credentials: an RFC 6749 error (4xx JSON with "error"), never a
    5xx. (A NUL in a client id used to reach PostgreSQL and fail there.)"""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if basic is not None:
        raw = f"{quote(basic[0], safe='')}:{quote(basic[1], safe='')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    response = await http.post("/oauth/token", content=_query(form).encode(), headers=headers)
    assert response.status_code < 500, response.text
    assert response.status_code in (400, 401), response.text  # no generated client exists
    assert "error" in response.json()


# --- the oracle ---------------------------------------------------------------------------------------------

Range = tuple[datetime, datetime]


def _range(text: str) -> Range:
    """The implicit range of a FHIR date YYYY, YYYY-MM or YYYY-MM-DD, independently of the server's code."""
    parts = [int(p) for p in text.split("-")]
    if len(parts) == 1:
        return datetime(parts[0], 1, 1), datetime(parts[0] + 1, 1, 1)
    if len(parts) == 2:
        y, m = parts
        return datetime(y, m, 1), (datetime(y + 1, 1, 1) if m == 12 else datetime(y, m + 1, 1))
    low = datetime(parts[0], parts[1], parts[2])
    return low, datetime.fromordinal(low.toordinal() + 1)


def date_matches(prefix: str, target: Range, query: Range) -> bool:
    """FHIR R4 search.html#prefix on ranges [low, high)."""
    (tl, th), (ql, qh) = target, query
    contained = ql <= tl and th <= qh
    return {
        "eq": contained,
        "ne": not contained,
        "gt": th > qh,  # the range above the search value overlaps the target
        "lt": tl < ql,
        "ge": th > qh or contained,
        "le": tl < ql or contained,
        "sa": tl >= qh,  # the target starts after the search range ends
        "eb": th <= ql,
    }[prefix]


def fold(text: str) -> str:
    """Case- and accent-insensitive form (search.html#string)."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@st.composite
def fhir_dates(draw: st.DrawFn) -> str:
    d: date = draw(st.dates(min_value=date(1940, 1, 1), max_value=date(2030, 12, 31)))
    precision = draw(st.sampled_from([1, 2, 3, 3, 3]))
    return d.isoformat()[: {1: 4, 2: 7, 3: 10}[precision]]


_LETTERS = "abcdeéèêëçoôœuüAÉÈÇ-'"
families = st.text(alphabet=_LETTERS, min_size=1, max_size=6).filter(lambda s: fold(s).strip("-'") != "")


def _variant(draw: Callable[[st.SearchStrategy[Any]], Any], text: str) -> str:
    """The same text as a person would type it: a prefix, case and accents changed at random."""
    cut = text[: draw(st.integers(1, len(text)))]
    out = []
    for c in cut:
        choice = draw(st.integers(0, 3))
        if choice == 0:
            c = c.upper()
        elif choice == 1:
            c = "".join(x for x in unicodedata.normalize("NFD", c) if not unicodedata.combining(x)) or c
        out.append(c)
    return "".join(out)


@_examples(40)
@given(data=st.data(), people=st.lists(st.tuples(fhir_dates(), families), min_size=1, max_size=6))
async def test_date_and_string_search_agree_with_the_oracle(
    fhir: httpx.AsyncClient, data: st.DataObject, people: list[tuple[str, str]]
) -> None:
    """Patients with random (partial) birth dates and names; birthdate=<prefix><date>, family=<text>,
    family:exact and family:contains find exactly what the oracle says."""
    system = f"urn:uuid:{uuid.uuid4()}"
    made: dict[str, tuple[str, str]] = {}
    for n, (birth, family) in enumerate(people):
        body = patient(
            identifier=[{"system": system, "value": str(n)}, {"system": INS, "value": new_nir()}],
            birthDate=birth,
            name=[{"family": family}],
        )
        response = await fhir.post("/Patient", json=body, headers=FHIR_JSON)
        assert response.status_code == 201, response.text
        made[response.json()["id"]] = (birth, family)

    async def ids(*pairs: tuple[str, str]) -> set[str]:
        response = await fhir.get("/Patient", params=[("identifier", f"{system}|"), *pairs, ("_count", "50")])
        assert response.status_code == 200, response.text
        return {e["resource"]["id"] for e in response.json().get("entry", [])}

    for _ in range(4):
        prefix = data.draw(st.sampled_from(["", "eq", "ne", "lt", "le", "gt", "ge", "sa", "eb"]))
        value = data.draw(fhir_dates() | st.sampled_from([b for b, _ in people]))
        query = _range(value)
        expected = {i for i, (birth, _) in made.items() if date_matches(prefix or "eq", _range(birth), query)}
        assert await ids(("birthdate", prefix + value)) == expected, (prefix, value, made)

    for _ in range(3):
        source = data.draw(st.sampled_from([f for _, f in people]) | families)
        typed = _variant(data.draw, source)
        if not fold(typed).strip():
            continue
        expected = {i for i, (_, f) in made.items() if fold(f).startswith(fold(typed))}
        assert await ids(("family", typed)) == expected, (typed, made)
        expected = {i for i, (_, f) in made.items() if fold(typed) in fold(f)}
        assert await ids(("family:contains", typed)) == expected, (typed, made)
        expected = {i for i, (_, f) in made.items() if f == typed}
        assert await ids(("family:exact", typed)) == expected, (typed, made)
