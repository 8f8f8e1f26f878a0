"""Activation codes' format (spaces/activation.py): alphabet without look-alikes, at least 60 bits, and a
normalisation that lets any issued code through whatever the case, spacing, dashes or look-alikes typed."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from espace_sante.spaces import activation

codes = st.builds(
    activation.grouped,
    st.text(alphabet=activation.ALPHABET, min_size=activation.LENGTH, max_size=activation.LENGTH),
)


def test_the_alphabet_has_no_look_alikes_and_the_code_at_least_60_bits() -> None:
    assert not set("0O1ILU") & set(activation.ALPHABET)
    assert len(set(activation.ALPHABET)) == len(activation.ALPHABET) == 30
    assert activation.ENTROPY_BITS == activation.LENGTH * math.log2(30) > 68.6 > 60


def test_issued_codes_are_grouped_random_and_well_formed() -> None:
    seen = {activation.new_code() for _ in range(2000)}
    assert len(seen) == 2000
    for code in seen:
        assert [len(g) for g in code.split("-")] == list(activation.GROUPS)
        assert activation.well_formed(activation.normalise(code))
    # Every symbol is drawn (a uniform draw of 28,000 symbols misses none of 30).
    assert set("".join(seen).replace("-", "")) == set(activation.ALPHABET)


@given(
    code=codes,
    data=st.data(),
)
def test_any_code_survives_case_spacing_dashes_and_look_alikes(code: str, data: st.DataObject) -> None:
    raw = code.replace("-", "")
    typed = []
    for char in raw:
        if char == "V":
            char = data.draw(st.sampled_from("VvUu"))
        elif char.isalpha() and data.draw(st.booleans()):
            char = char.lower()
        if data.draw(st.booleans()):
            char = "０１２３４５６７８９"[int(char)] if char.isdigit() and data.draw(st.booleans()) else char
        typed.append(char + data.draw(st.sampled_from(["", "", " ", "-", " - ", ".", "\u2010", "\t"])))
    text = data.draw(st.sampled_from(["", " ", "\n"])) + "".join(typed)
    assert activation.normalise(text) == raw
    assert activation.normalise(code) == raw


@given(st.text(max_size=40))
def test_normalising_never_fails_and_only_well_formed_text_is_looked_up(text: str) -> None:
    typed = activation.normalise(text)
    if activation.well_formed(typed):
        assert set(typed) <= set(activation.ALPHABET) and len(typed) == activation.LENGTH


def test_characters_never_printed_make_a_code_wrong() -> None:
    code = activation.new_code()
    for char in "0O1IL":
        assert not activation.well_formed(activation.normalise(char + code[1:]))
