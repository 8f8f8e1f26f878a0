"""The parser's promise (issue 16 #2), over generated names: in lenient mode a parameter is dropped only when
dropping it cannot widen the answer. No modifier and no chain is ever dropped; no filter is dropped from a search
that names a patient, or whose caller must name one (a professional's ITI-67): only the standard parameters that
shape the answer and choose no rows (`_elements`, `_contained`) are ignored there, and listed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from espace_sante.fhir.searchparams import params_for
from espace_sante.fhir.searchquery import SearchError, SearchRequest, dropped_filters, parse_search
from tests.factories import INS

PATIENT_ID = "0" * 47 + "1"
WORD = st.from_regex(r"\A[A-Za-z_-]{1,12}\Z")
HEADS = st.one_of(
    st.sampled_from(sorted(params_for("DocumentReference"))),
    st.sampled_from(["Patient", "patient", "subject", "author", "_id", "_tag", "_has", "_elements", "nope"]),
    WORD,
)
MODIFIERS = st.one_of(
    st.sampled_from(
        ["exact", "contains", "missing", "not", "text", "above", "below", "in", "not-in", "of-type", "identifier",
         "iterate", "Patient", "Practitioner", "Location", "sounds-like", ""]
    ),
    WORD,
)  # fmt: skip
INNER = st.one_of(
    st.sampled_from([*sorted(params_for("Patient")), "identifer", "_id", "link.identifier"]), WORD
)
VALUES = st.sampled_from([f"{INS}|255081416802538", f"Patient/{PATIENT_ID}", PATIENT_ID, "x", "true", "2024"])


@st.composite
def names(draw: st.DrawFn) -> str:
    name = draw(HEADS)
    if draw(st.booleans()):
        name += ":" + draw(MODIFIERS)
    if draw(st.booleans()):
        name += "." + draw(INNER)
        if draw(st.booleans()):
            name += ":" + draw(MODIFIERS)
    return name


def _parse(pairs: list[tuple[str, str]], *, refuse_unknown: bool = False) -> SearchRequest | None:
    try:
        return parse_search("DocumentReference", pairs, strict=False, refuse_unknown=refuse_unknown)
    except SearchError:  # refused with a 400 that names the parameter: never wider than meant
        return None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(names(), VALUES), min_size=1, max_size=4), st.integers(0, 4))
def test_a_search_that_names_a_patient_drops_nothing(pairs: list[tuple[str, str]], at: int) -> None:
    pairs.insert(min(at, len(pairs)), ("patient", PATIENT_ID))
    req = _parse(pairs)
    assert req is None or dropped_filters(req) == [], pairs


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(names(), VALUES), min_size=1, max_size=4))
def test_a_modifier_or_a_chain_is_never_dropped(pairs: list[tuple[str, str]]) -> None:
    req = _parse(pairs)
    assert req is None or all(":" not in n and "." not in n for n in req.ignored), pairs


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(names(), VALUES), min_size=1, max_size=4))
def test_a_search_whose_caller_must_name_the_patient_drops_nothing(pairs: list[tuple[str, str]]) -> None:
    req = _parse(pairs, refuse_unknown=True)
    assert req is None or dropped_filters(req) == [], pairs


def test_what_only_shapes_the_answer_is_ignored_beside_a_patient_filter() -> None:
    """The one exception of the two properties above, written out: `_elements` is listed as ignored, and the
    patient filter is kept."""
    for refuse_unknown in (False, True):
        req = _parse([("patient", PATIENT_ID), ("_elements", "id")], refuse_unknown=refuse_unknown)
        assert req is not None and req.ignored == ["_elements"] and dropped_filters(req) == []
        assert [c.name for c in req.clauses] == ["patient"]
