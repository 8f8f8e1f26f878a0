"""The narrative's limited XHTML (FHIR R4 narrative.html#xhtml, invariants txt-1 and txt-2; ASVS 5.3.3).

A narrative (`Resource.text.div`, and the text of contained resources) is stored and served as sent, and
whoever shows it renders it as HTML: so it is checked on write against what R4 allows, and refused with a 422
naming the element otherwise. What R4 allows (the Narrative StructureDefinition's txt-1 and txt-2, whose
XPath lists the names; http://hl7.org/fhir/R4/narrative.html#xhtml):

- the root is a `div` in the XHTML namespace, and every element is in that namespace (no SVG, no MathML);
- only the elements and attributes of `ELEMENTS` and `ATTRIBUTES` (the basic formatting of HTML 4.0 chapters
  7-11 and 15, `<a>`, images, style attributes): no script, form, iframe, object, link, base, style element,
  no event attribute (`onclick`...), no `xlink:` attribute. `xml:lang` is accepted besides txt-1's `lang`:
  narrative.html's language section asks for both, and the HL7 reference validator accepts it;
- no DOCTYPE, entity or processing instruction (narrative.html: no active content); comments are allowed;
- some non-whitespace text, or an image with a `src` (txt-2).

"No active content" also rules out what the lists let through by name: links and images (`href`, `src`,
`cite`, `longdesc`) go to http(s), mailto or tel addresses, relative ones, or, for an image, a raster
`data:image/...`; never `javascript:`, `vbscript:`, `data:text/html`... And a `style` attribute stays an
internal declaration: no `url(...)`, `image-set(...)`, `@import`, `expression(...)`, bindings, escapes or
comments (which would let the rest through in disguise).

The parser never reads a DTD, never resolves an entity and never touches the network (lxml, XXE safe)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from lxml import etree

from espace_sante.errors import Issue

__all__ = ["ATTRIBUTES", "ELEMENTS", "XHTML", "narrative_issues", "narrative_problems"]

XHTML = "http://www.w3.org/1999/xhtml"
_XML = "http://www.w3.org/XML/1998/namespace"

#: txt-1's element names (R4 Narrative StructureDefinition, Narrative.div).
ELEMENTS = frozenset({
    "a", "abbr", "acronym", "b", "big", "blockquote", "br", "caption", "cite", "code", "col", "colgroup", "dd",
    "dfn", "div", "dl", "dt", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre",
    "q", "samp", "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr",
    "tt", "ul", "var",
})  # fmt: skip
#: txt-1's attribute names (the same XPath).
ATTRIBUTES = frozenset({
    "abbr", "accesskey", "align", "alt", "axis", "bgcolor", "border", "cellhalign", "cellpadding", "cellspacing",
    "cellvalign", "char", "charoff", "charset", "cite", "class", "colspan", "compact", "coords", "dir", "frame",
    "headers", "height", "href", "hreflang", "hspace", "id", "lang", "longdesc", "name", "nowrap", "rel", "rev",
    "rowspan", "rules", "scope", "shape", "span", "src", "start", "style", "summary", "tabindex", "title", "type",
    "valign", "value", "vspace", "width",
})  # fmt: skip
_URL_ATTRIBUTES = frozenset({"href", "src", "cite", "longdesc"})
_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
# Browsers drop ASCII whitespace and control characters anywhere in a URL's scheme ("java\tscript:").
_IGNORED_IN_URL = re.compile(r"[\x00-\x20\x7f]+")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_RASTER_IMAGE = re.compile(r"^data:image/(?:png|gif|jpeg|webp)[;,]", re.IGNORECASE)
_ACTIVE_STYLE = re.compile(
    r"url\(|image-set\(|image\(|@import|expression\(|javascript:|vbscript:|-moz-binding|behavior|\\|/\*|<",
    re.IGNORECASE,
)
_SPACES = re.compile(r"\s+")
#: Problems listed per narrative: enough to fix it, not a report of every tag of a pasted page.
MAX_PROBLEMS = 5


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
        remove_pis=False,
    )


def _name(qualified: str) -> tuple[str | None, str]:
    """(namespace, local name) of an lxml `{ns}name`."""
    if qualified.startswith("{"):
        ns, _, local = qualified[1:].partition("}")
        return ns, local
    return None, qualified


def _shown(text: str, limit: int = 40) -> str:
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text if text.isprintable() else repr(text)


def _url_problem(element: str, attribute: str, value: str) -> tuple[str, str] | None:
    compact = _IGNORED_IN_URL.sub("", value)
    scheme = _SCHEME.match(compact)
    if scheme is None or scheme.group(1).lower() in _SCHEMES:
        return None
    if element == "img" and attribute == "src" and _RASTER_IMAGE.match(compact):
        return None
    shown = _shown(scheme.group(1))
    return (
        f"adresse « {shown}: » interdite dans {element}/@{attribute} (contenu actif)",
        f"'{shown}:' address not allowed in {element}/@{attribute} (active content)",
    )


def _element_problems(element: Any) -> Iterator[tuple[str, str]]:
    ns, local = _name(element.tag)
    if ns != XHTML:
        shown = _shown(local)
        yield (
            f"élément <{shown}> hors de l'espace de noms XHTML",
            f"element <{shown}> outside the XHTML namespace",
        )
        return
    if local not in ELEMENTS:
        shown = _shown(local)
        yield (f"élément <{shown}> interdit", f"element <{shown}> not allowed")
    for qualified, value in element.attrib.items():
        ans, attribute = _name(qualified)
        allowed = (ans is None and attribute in ATTRIBUTES) or (ans == _XML and attribute == "lang")
        if not allowed:
            shown = _shown(attribute if ans is None else f"{{{ans}}}{attribute}")
            yield (
                f"attribut {shown} interdit sur <{local}>",
                f"attribute {shown} not allowed on <{local}>",
            )
        elif attribute in _URL_ATTRIBUTES and ans is None:
            problem = _url_problem(local, attribute, value)
            if problem is not None:
                yield problem
        elif attribute == "style" and _ACTIVE_STYLE.search(_SPACES.sub("", value)):
            yield (
                f"style de <{local}> avec une référence externe ou du contenu actif",
                f"style of <{local}> with an external reference or active content",
            )


def narrative_problems(div: str) -> list[tuple[str, str]]:
    """What breaks txt-1 and txt-2 in a narrative's XHTML, as (French, English) sentences; [] when it is fine."""
    try:
        root = etree.fromstring(div.encode("utf-8"), _parser())
    except etree.XMLSyntaxError as error:
        detail = _shown(str(error.msg or error), 80)
        return [(f"XHTML mal formé ({detail})", f"malformed XHTML ({detail})")]
    problems: list[tuple[str, str]] = []
    tree = root.getroottree()
    doctype: str = getattr(tree.docinfo, "doctype", "")  # missing from lxml-stubs
    if doctype or tree.docinfo.internalDTD is not None:
        problems.append(("DOCTYPE interdit", "DOCTYPE not allowed"))
    misplaced = _name(root.tag) != (XHTML, "div")
    if misplaced:
        problems.append(
            (
                f'la racine doit être <div xmlns="{XHTML}">',
                f'the root must be <div xmlns="{XHTML}">',
            )
        )
    for node in root.iter():
        if len(problems) >= MAX_PROBLEMS:
            break
        if isinstance(node, etree._Comment):
            continue
        if isinstance(node, etree._ProcessingInstruction):
            problems.append(("instruction de traitement interdite", "processing instruction not allowed"))
        elif isinstance(node, etree._Entity):
            problems.append(("entité XML interdite", "XML entity not allowed"))
        elif isinstance(node.tag, str) and not (misplaced and node is root):
            problems.extend(_element_problems(node))
    has_text = bool(root.xpath("boolean(descendant::text()[normalize-space(.) != ''])"))
    has_image = bool(root.xpath("boolean(descendant::h:img[@src])", namespaces={"h": XHTML}))
    if not (has_text or has_image):
        problems.append(("le récit ne contient aucun texte (txt-2)", "the narrative has no text (txt-2)"))
    return problems[:MAX_PROBLEMS]


def _narratives(node: Any, where: str) -> Iterator[tuple[str, str]]:
    """(location, XHTML) of every narrative in a resource: its own `text` and its contained resources'."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "text" and isinstance(value, Mapping) and "div" in value:
                if isinstance(value["div"], str):
                    yield f"{where}.text.div", value["div"]
            elif isinstance(value, Mapping | list):
                yield from _narratives(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _narratives(item, f"{where}[{i}]")


def narrative_issues(body: Mapping[str, Any], resource_type: str) -> list[Issue]:
    """One issue per problem of each narrative of the resource, named by its location (`Patient.text.div`,
    `DocumentReference.contained[0].text.div`)."""
    issues: list[Issue] = []
    for where, div in _narratives(body, resource_type):
        for fr, en in narrative_problems(div):
            issues.append(
                Issue(
                    f"{where} : {fr} (FHIR R4 narrative.html, txt-1/txt-2) / {where}: {en}",
                    "invalid",
                    expression=where,
                )
            )
    return issues
