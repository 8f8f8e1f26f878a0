"""What a written string and a narrative may carry (issue 16 #5 and #7): no bidirectional control anywhere in a
resource (fhir/text.py), and a narrative in R4's limited XHTML (fhir/narrative.py, txt-1 and txt-2)."""

from __future__ import annotations

import copy
import unicodedata
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from espace_sante.errors import InvalidResource
from espace_sante.fhir.narrative import narrative_problems
from espace_sante.fhir.text import BIDI_CONTROLS, bidi_control
from espace_sante.fhir.validation import validate_resource
from tests.fhir.test_validation import EXAMPLES

X = 'xmlns="http://www.w3.org/1999/xhtml"'


def _issues(body: dict[str, Any]) -> dict[str, str]:
    """expression -> diagnostics of the refusal of `body`, joined (empty when it is accepted)."""
    found: dict[str, str] = {}
    try:
        validate_resource(body)
    except InvalidResource as refused:
        for issue in refused.issues:
            where = issue.expression or ""
            found[where] = f"{found[where]} | {issue.diagnostics}" if where in found else issue.diagnostics
    return found


# --- bidirectional controls ---------------------------------------------------------------------------------


def test_the_refused_characters_are_exactly_the_bidi_controls_and_zwj_stays_allowed() -> None:
    """Every character of the list is a format character (Cf) that reorders text; the joiners, the soft
    hyphen and the other Cf characters that names and emoji need are kept."""
    assert len(BIDI_CONTROLS) == 12
    assert all(unicodedata.category(c) == "Cf" for c in BIDI_CONTROLS)
    for kept in ("\u200d", "\u200c", "\u00ad", "\u2060", "\ufeff", "👩\u200d⚕️"):
        assert bidi_control(f"Zoé{kept}") is None, repr(kept)
    assert bidi_control("rapport \u202eexe.fdp") == "U+202E"


def test_a_reversed_document_title_is_refused_naming_the_field() -> None:
    """`rapport \u202eexe.fdp` shows as `rapport pdf.exe`: refused, and the message names the title."""
    document = copy.deepcopy(EXAMPLES["DocumentReference"])
    document["content"][0]["attachment"]["title"] = "rapport \u202eexe.fdp"
    issues = _issues(document)
    where = "DocumentReference.content[0].attachment.title"
    assert list(issues) == [where]
    assert (
        "U+202E" in issues[where]
        and "caractère invisible" in issues[where]
        and "bidirectional" in issues[where]
    )


def test_names_with_joiners_and_accents_are_still_accepted() -> None:
    patient = copy.deepcopy(EXAMPLES["Patient"])
    patient["name"][0]["given"] = ["Zoé", "Ana\u00adïs", "👨\u200d👩\u200d👧"]
    assert validate_resource(patient) is patient


def _strings(node: Any, where: str) -> Iterator[tuple[str, list[Any] | dict[str, Any], str | int]]:
    """(location, holder, key) of every string of a resource."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        here = f"{where}.{key}" if isinstance(node, dict) else f"{where}[{key}]"
        if isinstance(value, str):
            yield here, node, key
        elif isinstance(value, dict | list):
            yield from _strings(value, here)


def _placements() -> list[tuple[str, str]]:
    """(resource type, location) of every string of every example resource, but Binary.data: a document's
    content is base64, decoded by the documents service, where any other character is refused."""
    found = []
    for rtype, body in EXAMPLES.items():
        for where, _, _ in _strings(body, rtype):
            if where not in ("Binary.data", f"{rtype}.resourceType"):
                found.append((rtype, where))
    return found


PLACEMENTS = _placements()


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(PLACEMENTS),
    st.sampled_from(sorted(BIDI_CONTROLS)),
    st.integers(min_value=0, max_value=1000),
)
def test_a_bidi_control_anywhere_in_any_resource_is_refused_where_it_is(
    placement: tuple[str, str], control: str, at: int
) -> None:
    """Whatever the resource, the string and the position in it, a bidirectional control is refused with an
    issue at that string's location."""
    rtype, target = placement
    body = copy.deepcopy(EXAMPLES[rtype])
    for where, holder, key in _strings(body, rtype):
        if where == target:
            text = holder[key]  # type: ignore[index]
            holder[key] = text[: at % (len(text) + 1)] + control + text[at % (len(text) + 1) :]  # type: ignore[index]
    issues = _issues(body)
    assert target in issues, (target, issues)
    assert f"U+{ord(control):04X}" in issues[target]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(EXAMPLES)), st.sampled_from(sorted(BIDI_CONTROLS)))
def test_a_bidi_control_in_an_extension_or_a_contained_resource_is_refused(rtype: str, control: str) -> None:
    body = copy.deepcopy(EXAMPLES[rtype])
    body["extension"] = [{"url": "http://example.org/note", "valueString": f"note{control}"}]
    assert "U+" in _issues(body).get(f"{rtype}.extension[0].valueString", "")


# --- narrative -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "div",
    [
        f"<div {X}>Marie Dupont</div>",
        f'<div {X}><p lang="fr" xml:lang="fr">Compte rendu</p><!-- généré --></div>',
        f'<div {X}><table border="1"><tbody><tr><td colspan="2" style="color: red">38,5 °C</td></tr></tbody>'
        "</table></div>",
        f'<div {X}><a href="https://esante.gouv.fr/">lien</a> <a href="#section">ici</a> <a name="x">x</a></div>',
        f'<div {X}><img src="#photo" alt="photo"/></div>',
        f'<div {X}><img src="data:image/png;base64,iVBORw0KGgo=" alt=""/></div>',
        f'<div {X}><a href="mailto:accueil@example.org">écrire</a></div>',
    ],
)
def test_plain_narratives_are_accepted(div: str) -> None:
    assert narrative_problems(div) == []


@pytest.mark.parametrize(
    ("div", "said"),
    [
        ("<script>alert(1)</script>", "la racine doit être <div"),
        (f"<div {X}><script>alert(1)</script>x</div>", "élément <script> interdit"),
        (f"<div {X}><iframe src='https://x'/>x</div>", "élément <iframe> interdit"),
        (f"<div {X}><form><input/></form>x</div>", "élément <form> interdit"),
        (f'<div {X}><p onclick="alert(1)">x</p></div>', "attribut onclick interdit sur <p>"),
        (f'<div {X}><img src="x" onerror="alert(1)"/></div>', "attribut onerror interdit sur <img>"),
        (f'<div {X}><a href="javascript:alert(1)">x</a></div>', "« javascript: » interdite dans a/@href"),
        (f'<div {X}><a href=" jav&#x09;ascript:alert(1)">x</a></div>', "« javascript: » interdite"),
        (f'<div {X}><a href="data:text/html,&lt;script&gt;">x</a></div>', "« data: » interdite"),
        (
            f'<div {X}><img src="data:image/svg+xml;base64,PHN2Zz4="/></div>',
            "« data: » interdite dans img/@src",
        ),
        (f'<div {X}><span style="background: url(https://x/t.png)">x</span></div>', "style de <span>"),
        (f'<div {X}><span style="width: expression(alert(1))">x</span></div>', "style de <span>"),
        (
            f"<div {X}><svg xmlns='http://www.w3.org/2000/svg'><script>x</script></svg>x</div>",
            "hors de l'espace",
        ),
        (f"<div {X} xmlns:l='http://www.w3.org/1999/xlink'><a l:href='x'>x</a></div>", "xlink}href interdit"),
        (f"<div {X}>x<?php echo 1 ?></div>", "instruction de traitement interdite"),
        (f"<!DOCTYPE div [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><div {X}>&e;</div>", "DOCTYPE interdit"),
        (f"<div {X}>   <br/>\n</div>", "aucun texte (txt-2)"),
        (f"<div {X}><!-- seulement un commentaire --></div>", "aucun texte (txt-2)"),
        ("<div>sans espace de noms</div>", "la racine doit être <div"),
        (f"<div {X}><p>non fermé</div>", "XHTML mal formé"),
        ("Marie Dupont", "XHTML mal formé"),
    ],
)
def test_narratives_that_break_txt1_or_txt2_are_refused(div: str, said: str) -> None:
    problems = narrative_problems(div)
    assert any(said in fr for fr, _ in problems), problems


def test_an_external_entity_is_never_read() -> None:
    """XXE: the parser neither loads the DTD nor resolves the entity; the narrative is refused."""
    div = f"<!DOCTYPE div [<!ENTITY e SYSTEM 'file:///etc/hostname'>]><div {X}>&e;</div>"
    problems = narrative_problems(div)
    assert problems and not any("localhost" in fr or "\n" in fr for fr, _ in problems)


def test_the_narrative_is_refused_with_a_422_naming_text_div_in_the_resource_and_its_contained_ones() -> None:
    patient = copy.deepcopy(EXAMPLES["Patient"])
    patient["text"] = {"status": "generated", "div": f"<div {X}><script>alert(1)</script>Marie</div>"}
    issues = _issues(patient)
    assert list(issues) == ["Patient.text.div"]
    assert "<script>" in issues["Patient.text.div"] and "txt-1" in issues["Patient.text.div"]

    document = copy.deepcopy(EXAMPLES["DocumentReference"])
    document["contained"] = [
        {
            "resourceType": "Practitioner",
            "id": "auteur",
            "text": {"status": "generated", "div": f'<div {X}><a href="javascript:x()">Dr</a></div>'},
        }
    ]
    assert list(_issues(document)) == ["DocumentReference.contained[0].text.div"]


def test_the_examples_narrative_is_still_accepted() -> None:
    patient = copy.deepcopy(EXAMPLES["Patient"])
    assert "div" in patient["text"]
    assert validate_resource(patient) is patient
