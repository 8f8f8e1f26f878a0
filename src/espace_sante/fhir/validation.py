"""Validation of a FHIR R4 resource on write (create, update, transaction entry).

Three layers, all reported together so that a client fixes everything in one round trip:

1. structure: the fhir.resources R4B model (cardinality, unknown elements, primitive formats, choice[x]);
   R4B is the closest to R4 that fhir.resources still ships (STACK.md);
2. required code bindings, which the models do not check (``bindings.check_bindings``);
3. French identifiers: the NIR key of INS identifiers, RPPS/IDNPS, FINESS/IDNST formats, wherever an
   Identifier with one of those systems appears (contained resources and References included);
4. text: control characters and bidirectional controls in any string (fhir/text.py), and the narrative's
   limited XHTML (fhir/narrative.py).

The body is returned unchanged: the server stores the client's JSON as sent and never re-serialises it
through the models (STACK.md, "Measured figures").
"""

from __future__ import annotations

import contextlib
import decimal
import functools
import importlib
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from espace_sante.errors import InvalidResource, Issue
from espace_sante.fhir.bindings import check_bindings, iter_identifiers
from espace_sante.fhir.identifiers import SYSTEM_LABELS, explain_identifier
from espace_sante.fhir.narrative import narrative_issues
from espace_sante.fhir.text import bidi_control, bidi_message

__all__ = ["MAX_DEPTH", "MAX_ISSUES", "RESOURCE_TYPES", "validate_resource"]

RESOURCE_TYPES: tuple[str, ...] = (
    "Patient",
    "RelatedPerson",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "DocumentReference",
    "Binary",
    "List",
    "AllergyIntolerance",
    "MedicationStatement",
    "Condition",
    "Procedure",
    "Immunization",
    "Observation",
    "Consent",
    "Communication",
    "Appointment",
    "AuditEvent",
)
_SUPPORTED = frozenset(RESOURCE_TYPES)

# Real resources nest a few levels (extensions in contained resources: about 10). The models recurse in
# Python and raise RecursionError near 1,000 levels, so anything deeper than this is refused up front.
MAX_DEPTH = 64
# Beyond this, an OperationOutcome stops being useful to a client and starts costing memory.
MAX_ISSUES = 50

# Stands in for a contained resource of unknown type: a resource with no required element.
_PLACEHOLDER: dict[str, Any] = {"resourceType": "Parameters"}
# Elements the server sets itself: never refuse a resource because of their client-side values.
_SERVER_META = ("versionId", "lastUpdated")

_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_TYPE_NAMES = {
    "string_type": ("une chaîne de caractères", "a string"),
    "int_type": ("un entier", "an integer"),
    "int_parsing": ("un entier", "an integer"),
    "int_from_float": ("un entier", "an integer"),
    "bool_type": ("un booléen", "a boolean"),
    "bool_parsing": ("un booléen", "a boolean"),
    "float_type": ("un nombre", "a number"),
    "float_parsing": ("un nombre", "a number"),
    "decimal_type": ("un nombre", "a number"),
    "decimal_parsing": ("un nombre", "a number"),
    "list_type": ("un tableau", "an array"),
    "tuple_type": ("un tableau", "an array"),
    "dict_type": ("un objet", "an object"),
    "model_type": ("un objet", "an object"),
    "model_attributes_type": ("un objet", "an object"),
}


@functools.cache
def _validator(resource_type: str) -> Callable[[object], object]:
    """The R4B model's ``model_validate``, imported on first use: importing every model takes 1.4 s."""
    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    validate: Callable[[object], object] = getattr(module, resource_type).model_validate
    return validate


def _expression(root: str, loc: tuple[int | str, ...]) -> str:
    parts = [root]
    for step in loc:
        if step == "root":  # fhir_core's location for a whole-object error
            continue
        parts.append(f"[{step}]" if isinstance(step, int) else f".{step}")
    return "".join(parts)


def _issue_from_pydantic(root: str, error: Mapping[str, Any]) -> Issue:
    kind = str(error.get("type", ""))
    expr = _expression(root, tuple(error.get("loc", ())))
    if kind == "extra_forbidden":
        return Issue(f"élément inconnu / unknown element: {expr}", "structure", expression=expr)
    if kind == "missing":
        return Issue(
            f"élément obligatoire absent / required element missing: {expr}", "required", expression=expr
        )
    if kind in _TYPE_NAMES:
        fr, en = _TYPE_NAMES[kind]
        return Issue(
            f"type incorrect pour {expr} : {fr} attendu / wrong type for {expr}: {en} expected",
            "structure",
            expression=expr,
        )
    detail = str(error.get("msg", "")).removeprefix("Value error, ")
    return Issue(
        f"valeur invalide pour {expr} / invalid value for {expr} ({detail})", "invalid", expression=expr
    )


def _too_deep(body: Mapping[str, Any]) -> bool:
    stack: list[tuple[int, Any]] = [(1, body)]
    while stack:
        depth, node = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(node, dict):
            stack.extend((depth + 1, child) for child in node.values() if isinstance(child, dict | list))
        elif isinstance(node, list):
            stack.extend((depth + 1, child) for child in node if isinstance(child, dict | list))
    return False


def _known_type(name: str) -> bool:
    """Whether ``name`` is a resource type known to fhir.resources (R4B), datatypes excluded."""
    if not _TYPE_NAME.match(name):
        return False
    # Imported here: fhir.resources takes seconds to import, paid at the first validation, not by every command.
    from fhir.resources.R4B import get_fhir_model_class

    try:
        model = get_fhir_model_class(name)  # cached for known names only: errors are not cached
    except (ValueError, ImportError):
        return False
    return bool(model.has_resource_base())


def _probe(resource_type: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[Issue]]:
    """The copy of ``body`` given to the model, and the issues found while making it.

    Left out: ``id``, ``meta.versionId`` and ``meta.lastUpdated`` (set by the server), and contained
    resources of an unknown type, which make fhir.resources raise a bare KeyError and so hide every
    other problem (STACK.md). The copy is shallow: the model does not mutate its input.
    """
    probe = body
    issues: list[Issue] = []

    def copy() -> dict[str, Any]:
        nonlocal probe
        if probe is body:
            probe = dict(body)
        return probe

    if "id" in body:
        copy().pop("id")
    meta = body.get("meta")
    if isinstance(meta, dict) and any(k in meta for k in _SERVER_META):
        rest = {k: v for k, v in meta.items() if k not in _SERVER_META}
        if rest:
            copy()["meta"] = rest
        else:
            del copy()["meta"]
    contained = body.get("contained")
    if isinstance(contained, list):
        kept: list[Any] = []
        for i, entry in enumerate(contained):
            rtype = entry.get("resourceType") if isinstance(entry, dict) else None
            if (
                not isinstance(entry, dict)
                or rtype is None
                or (isinstance(rtype, str) and _known_type(rtype))
            ):
                kept.append(entry)  # the model reports non-objects and a missing resourceType itself
                continue
            kept.append(_PLACEHOLDER)  # keeps the indexes of the model's messages right
            expr = f"{resource_type}.contained[{i}].resourceType"
            shown = _short(str(rtype))
            issues.append(
                Issue(
                    f"type de ressource inconnu « {shown} » pour {expr} / unknown resource type '{shown}' "
                    f"for {expr}",
                    "structure",
                    expression=expr,
                )
            )
        if issues:
            copy()["contained"] = kept
    return probe, issues


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _structure_issues(resource_type: str, body: dict[str, Any]) -> list[Issue]:
    probe, issues = _probe(resource_type, body)
    validate = _validator(resource_type)  # outside the try: a missing model is a server fault, not a 422
    try:
        validate(probe)
    except ValidationError as error:
        return issues + [_issue_from_pydantic(resource_type, e) for e in error.errors(include_url=False)]
    except RecursionError:
        return [_too_deep_issue(resource_type)]
    except Exception as error:
        # fhir.resources raises bare KeyError for an unknown resourceType inside a resource (STACK.md), and
        # its validators may raise other errors on odd input; a client error must never become a 500.
        return [
            Issue(
                f"ressource mal formée / malformed resource ({type(error).__name__})",
                "structure",
                expression=resource_type,
            )
        ]
    return issues


# --- JSON primitive types --------------------------------------------------------------------------------
# The models coerce like pydantic's lax mode: "active": "yes" becomes True and "multipleBirthInteger": "3"
# becomes 3, even with strict=True (fhir_core's own types). FHIR JSON says booleans and numbers are JSON
# booleans and numbers (http://hl7.org/fhir/R4/json.html#primitive), so they are checked here, walking the
# JSON alongside the model classes' field annotations.
_Kind = tuple[str, Any]  # ("boolean" | "integer" | "decimal" | "complex" | "resource", model type or None)


def _base_type(annotation: Any) -> Any:
    """Strip Optional, List and Annotated: Optional[List[Annotated[int, ...]]] -> int."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType, list):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return None
            annotation = args[0]
        else:
            return annotation


@functools.cache
def _field_kinds(model: Any) -> dict[str, _Kind]:
    kinds: dict[str, _Kind] = {}
    for name, field in model.model_fields.items():
        base = _base_type(field.annotation)
        kind: _Kind | None = None
        if base is bool:
            kind = ("boolean", None)
        elif base is int:
            kind = ("integer", None)
        elif base in (decimal.Decimal, float):
            kind = ("decimal", None)
        elif getattr(base, "__name__", "") == "ResourceType":
            kind = ("resource", None)
        elif hasattr(base, "get_model_klass"):
            kind = ("complex", base)
        if kind is not None:
            kinds[field.alias or name] = kind
    return kinds


@functools.cache
def _model_of(fhir_type: Any) -> Any:
    return fhir_type.get_model_klass()


def _primitive_ok(kind: str, value: Any) -> bool:
    if isinstance(value, bool):
        return kind == "boolean"
    if kind == "integer":
        return isinstance(value, int)
    if kind == "decimal":
        return isinstance(value, int | float)
    return False


_PRIMITIVE_NAMES = {
    "boolean": ("un booléen (true ou false)", "a boolean (true or false)"),
    "integer": ("un nombre entier", "an integer number"),
    "decimal": ("un nombre", "a number"),
}


def _primitive_issues(resource_type: str, body: dict[str, Any], reported: set[str]) -> list[Issue]:
    # Imported here: fhir.resources takes seconds to import, paid at the first validation, not by every command.
    from fhir.resources.R4B import get_fhir_model_class

    issues: list[Issue] = []
    stack: list[tuple[Any, dict[str, Any], str]] = [
        (get_fhir_model_class(resource_type), body, resource_type)
    ]
    while stack:
        model, node, expr = stack.pop()
        kinds = _field_kinds(model)
        for key, value in node.items():
            kind = kinds.get(key)
            if kind is None or f"{expr}.{key}" in reported:
                continue
            items = (
                [(f"{expr}.{key}[{i}]", v) for i, v in enumerate(value)]
                if isinstance(value, list)
                else [(f"{expr}.{key}", value)]
            )
            for item_expr, item in items:
                if item is None or item_expr in reported:
                    continue
                if kind[0] == "complex":
                    if isinstance(item, dict):
                        stack.append((_model_of(kind[1]), item, item_expr))
                elif kind[0] == "resource":
                    rtype = item.get("resourceType") if isinstance(item, dict) else None
                    if isinstance(rtype, str) and _known_type(rtype):
                        assert isinstance(item, dict)
                        stack.append((get_fhir_model_class(rtype), item, item_expr))
                elif not _primitive_ok(kind[0], item):
                    fr, en = _PRIMITIVE_NAMES[kind[0]]
                    issues.append(
                        Issue(
                            f"type incorrect pour {item_expr} : {fr} attendu / wrong type for {item_expr}: "
                            f"{en} expected",
                            "structure",
                            expression=item_expr,
                        )
                    )
    return issues


def _too_deep_issue(resource_type: str) -> Issue:
    return Issue(
        f"ressource trop imbriquée (plus de {MAX_DEPTH} niveaux) / resource nested too deeply "
        f"(more than {MAX_DEPTH} levels)",
        "structure",
        expression=resource_type,
    )


def _identifier_issues(body: Mapping[str, Any], resource_type: str) -> list[Issue]:
    issues: list[Issue] = []
    for expr, identifier in iter_identifiers(body, resource_type):
        system, value = identifier.get("system"), identifier.get("value")
        if not isinstance(system, str) or not isinstance(value, str):
            continue
        error = explain_identifier(system, value)
        if error is None:
            continue
        label = SYSTEM_LABELS.get(system, system)
        where = f"{expr}.value"
        issues.append(
            Issue(
                f"{where} : {label} invalide, {error.fr} / {where}: invalid {label}, {error.en}",
                "invalid",
                expression=where,
            )
        )
    return issues


def _refuse(message: str, code: str, expression: str | None = None) -> InvalidResource:
    return InvalidResource(message, issues=[Issue(message, code, expression=expression)])


# FHIR string (datatypes.html#string): Unicode without control characters other than tab, CR and LF.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _control_character_issues(body: Mapping[str, Any], resource_type: str) -> list[Issue]:
    """Control characters, and bidirectional controls (fhir/text.py), in every string of the resource: titles,
    file names, names, subjects and message text are all strings somewhere in a resource, and one walk of all
    of them leaves none out."""
    found: list[Issue] = []

    def walk(node: Any, where: str) -> None:
        if len(found) >= 5:
            return
        if isinstance(node, str):
            if _CONTROL.search(node):
                found.append(
                    Issue(
                        f"{where} : caractère de contrôle interdit / control character not allowed in a FHIR string",
                        "invalid",
                        expression=where,
                    )
                )
            elif (code := bidi_control(node)) is not None:
                found.append(Issue(bidi_message(where, code), "invalid", expression=where))
        elif isinstance(node, Mapping):
            for key, value in node.items():
                if isinstance(key, str) and (_CONTROL.search(key) or bidi_control(key)):
                    found.append(
                        Issue(
                            f"{where} : nom d'élément invalide / invalid element name",
                            "structure",
                            expression=where,
                        )
                    )
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{where}[{i}]")

    walk(body, resource_type)
    return found


def validate_resource(body: object, *, expected_type: str | None = None) -> dict[str, Any]:
    """Validate a client's resource before it is stored; return ``body`` itself, unchanged.

    ``expected_type`` is the type named by the URL (``PUT /Patient/x``), if any. ``id``, ``meta.versionId``
    and ``meta.lastUpdated`` are ignored: the server sets them. Raises InvalidResource (422) listing every
    problem found; never raises anything else, whatever the input.
    """
    if not isinstance(body, dict):
        raise _refuse(
            "le contenu doit être un objet JSON (une ressource FHIR) / the body must be a JSON object "
            "(a FHIR resource)",
            "structure",
        )
    resource_type = body.get("resourceType")
    if resource_type is None:
        raise _refuse("resourceType absent / missing resourceType", "required", "resourceType")
    if not isinstance(resource_type, str):
        raise _refuse(
            "resourceType doit être une chaîne de caractères / resourceType must be a string",
            "structure",
            "resourceType",
        )
    if resource_type not in _SUPPORTED:
        shown = _short(resource_type)
        supported = ", ".join(RESOURCE_TYPES)
        raise _refuse(
            f"type de ressource « {shown} » non pris en charge (acceptés : {supported}) / "
            f"unsupported resource type '{shown}' (accepted: {supported})",
            "not-supported",
            "resourceType",
        )
    if expected_type is not None and resource_type != expected_type:
        raise _refuse(
            f"la ressource est de type {resource_type}, {expected_type} attendu / the resource is a "
            f"{resource_type}, {expected_type} expected",
            "invalid",
            "resourceType",
        )
    if _too_deep(body):
        issue = _too_deep_issue(resource_type)
        raise InvalidResource(issue.diagnostics, issues=[issue])

    checked: dict[str, Any] = body
    if resource_type == "Binary" and isinstance(body.get("data"), str):
        # A document's content (up to 20 MB of base64) is decoded and checked from its bytes by the documents
        # service; walking it here three more times (model, primitives, control characters) cost a fifth of a
        # submission's CPU (benchmarks/README.md, documents).
        checked = {**body, "data": "AA=="}
    issues = _structure_issues(resource_type, checked)
    # An extra check must not turn a client's request into a 500: the walk is defensive, and the property
    # tests call it directly so that a bug in it shows there.
    with contextlib.suppress(Exception):
        issues += _primitive_issues(resource_type, checked, {i.expression for i in issues if i.expression})
    issues += check_bindings(checked)
    issues += _identifier_issues(checked, resource_type)
    issues += _control_character_issues(checked, resource_type)
    issues += narrative_issues(checked, resource_type)
    if not issues:
        return body
    if len(issues) > MAX_ISSUES:
        dropped = len(issues) - MAX_ISSUES
        issues = [
            *issues[:MAX_ISSUES],
            Issue(
                f"{dropped} autres problèmes non détaillés / {dropped} more problems not listed",
                "too-costly",
                severity="information",
            ),
        ]
    if len(issues) == 1:
        summary = issues[0].diagnostics
    else:
        n = len(issues)
        summary = f"{resource_type} invalide : {n} problèmes / invalid {resource_type}: {n} problems"
    raise InvalidResource(summary, issues=issues)
