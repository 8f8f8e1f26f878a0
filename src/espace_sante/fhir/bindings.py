"""Required code bindings that fhir.resources does not check.

fhir.resources (R4B models) checks structure, cardinality and primitive formats, but not the codes of
elements bound to a ``required`` value set: it accepts ``Patient.gender: "femme"`` and
``Observation.status: "nope"`` (STACK.md, fhir.resources row). FHIR R4 says a required binding means the
code "SHALL be from the specified value set" (http://hl7.org/fhir/R4/terminologies.html#required).

Everything here is data: ``_VALUE_SETS`` (codes of each required value set, from the FHIR R4 4.0.1
valueset-*.html pages), ``_DATATYPES`` (required bindings inside the general-purpose datatypes) and
``_RESOURCES`` (element path -> value set or datatype, per resource type). They are compiled once into
``REQUIRED_BINDINGS``, which one generic walker applies. Deliberately left out:

* ``Attachment.contentType`` and ``Binary.contentType``: bound to the required "mimetypes" value set, which
  is grammar-based (BCP 13) rather than a list of codes.
* extensible / preferred / example bindings: other codes are allowed there.
* invariants (e.g. ``con-3``, ``ait-1``): not bindings.

``Identifier.use`` is checked wherever an Identifier appears (``identifier``, ``masterIdentifier``,
``valueIdentifier``, including inside References, extensions and contained resources): in FHIR R4 every
element with one of these names has the Identifier type, so matching on the name is exact.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from espace_sante.errors import Issue

__all__ = ["REQUIRED_BINDINGS", "Binding", "ValueSet", "check_bindings", "iter_identifiers"]


@dataclass(frozen=True)
class ValueSet:
    """A required value set. ``system`` is set for CodeableConcept bindings: codings of that system are
    checked, and one of them must be present."""

    name: str
    codes: tuple[str, ...]
    system: str | None = None


@dataclass(frozen=True)
class Binding:
    """One bound element: ``path`` is relative to the resource, e.g. ``("contact", "gender")``."""

    path: tuple[str, ...]
    value_set: ValueSet


def _vs(name: str, codes: str, system: str | None = None) -> ValueSet:
    return ValueSet(name, tuple(codes.split()), system)


_THO = "http://terminology.hl7.org/CodeSystem/"

# FHIR R4 (4.0.1) value sets, http://hl7.org/fhir/R4/valueset-<name>.html
_VALUE_SETS: dict[str, ValueSet] = {
    vs.name: vs
    for vs in (
        _vs("administrative-gender", "male female other unknown"),
        _vs("identifier-use", "usual official temp secondary old"),
        _vs("name-use", "usual official temp nickname anonymous old maiden"),
        _vs("contact-point-system", "phone fax email pager url sms other"),
        _vs("contact-point-use", "home work temp old mobile"),
        _vs("address-use", "home work temp old billing"),
        _vs("address-type", "postal physical both"),
        _vs("narrative-status", "generated extensions additional empty"),
        _vs("quantity-comparator", "< <= >= >"),
        _vs("units-of-time", "s min h d wk mo a"),
        _vs("days-of-week", "mon tue wed thu fri sat sun"),
        _vs(
            "event-timing",
            "MORN MORN.early MORN.late NOON AFT AFT.early AFT.late EVE EVE.early EVE.late NIGHT PHS "
            "HS WAKE C CM CD CV AC ACM ACD ACV PC PCM PCD PCV",
        ),
        _vs("link-type", "replaced-by replaces refer seealso"),
        _vs("document-reference-status", "current superseded entered-in-error"),
        _vs("composition-status", "preliminary final amended entered-in-error"),
        _vs("document-relationship-type", "replaces transforms signs appends"),
        _vs("list-status", "current retired entered-in-error"),
        _vs("list-mode", "working snapshot changes"),
        _vs("allergy-intolerance-type", "allergy intolerance"),
        _vs("allergy-intolerance-category", "food medication environment biologic"),
        _vs("allergy-intolerance-criticality", "low high unable-to-assess"),
        _vs("reaction-event-severity", "mild moderate severe"),
        _vs(
            "allergyintolerance-clinical",
            "active inactive resolved",
            _THO + "allergyintolerance-clinical",
        ),
        _vs(
            "allergyintolerance-verification",
            "unconfirmed confirmed refuted entered-in-error",
            _THO + "allergyintolerance-verification",
        ),
        _vs(
            "condition-clinical",
            "active recurrence relapse inactive remission resolved",
            _THO + "condition-clinical",
        ),
        _vs(
            "condition-ver-status",
            "unconfirmed provisional differential confirmed refuted entered-in-error",
            _THO + "condition-ver-status",
        ),
        _vs(
            "medication-statement-status",
            "active completed entered-in-error intended stopped on-hold unknown not-taken",
        ),
        _vs(
            "event-status",
            "preparation in-progress not-done on-hold stopped completed entered-in-error unknown",
        ),
        _vs("immunization-status", "completed entered-in-error not-done"),
        _vs(
            "observation-status",
            "registered preliminary final amended corrected cancelled entered-in-error unknown",
        ),
        _vs("consent-state-codes", "draft proposed active rejected inactive entered-in-error"),
        _vs("consent-provision-type", "deny permit"),
        _vs("consent-data-meaning", "instance related dependents authoredby"),
        _vs("request-priority", "routine urgent asap stat"),
        _vs(
            "appointmentstatus",
            "proposed pending booked arrived fulfilled cancelled noshow entered-in-error checked-in waitlist",
        ),
        _vs("participantrequired", "required optional information-only"),
        _vs("participationstatus", "accepted declined tentative needs-action"),
        _vs("audit-event-action", "C R U D E"),
        _vs("audit-event-outcome", "0 4 8 12"),
        _vs("network-type", "1 2 3 4 5"),
    )
}

# Required bindings inside datatypes (http://hl7.org/fhir/R4/datatypes.html), relative to the datatype.
_DATATYPES: dict[str, dict[str, str]] = {
    "Identifier": {"use": "identifier-use"},
    "HumanName": {"use": "name-use"},
    "ContactPoint": {"system": "contact-point-system", "use": "contact-point-use"},
    "Address": {"use": "address-use", "type": "address-type"},
    "Narrative": {"status": "narrative-status"},
    "Quantity": {"comparator": "quantity-comparator"},
    "Timing": {
        "repeat.durationUnit": "units-of-time",
        "repeat.periodUnit": "units-of-time",
        "repeat.dayOfWeek": "days-of-week",
        "repeat.when": "event-timing",
    },
}


def _nested(prefix: str, element: str, bindings: dict[str, str], depth: int) -> dict[str, str]:
    """Bindings of a recursive backbone element (``Consent.provision.provision...``) down to ``depth``."""
    out: dict[str, str] = {}
    path = prefix
    for _ in range(depth):
        path = f"{path}.{element}" if path else element
        out.update({f"{path}.{sub}": vs for sub, vs in bindings.items()})
    return out


# Per resource type: element path (dots, arrays implied) -> value set name or datatype name.
# Identifiers are handled by name (see module docstring), so they are not listed here.
_RESOURCES: dict[str, dict[str, str]] = {
    "Patient": {
        "gender": "administrative-gender",
        "name": "HumanName",
        "telecom": "ContactPoint",
        "address": "Address",
        "contact.gender": "administrative-gender",
        "contact.name": "HumanName",
        "contact.telecom": "ContactPoint",
        "contact.address": "Address",
        "link.type": "link-type",
    },
    "RelatedPerson": {
        "gender": "administrative-gender",
        "name": "HumanName",
        "telecom": "ContactPoint",
        "address": "Address",
    },
    "Practitioner": {
        "gender": "administrative-gender",
        "name": "HumanName",
        "telecom": "ContactPoint",
        "address": "Address",
    },
    "PractitionerRole": {
        "telecom": "ContactPoint",
        "availableTime.daysOfWeek": "days-of-week",
    },
    "Organization": {
        "telecom": "ContactPoint",
        "address": "Address",
        "contact.name": "HumanName",
        "contact.telecom": "ContactPoint",
        "contact.address": "Address",
    },
    "DocumentReference": {
        "status": "document-reference-status",
        "docStatus": "composition-status",
        "relatesTo.code": "document-relationship-type",
    },
    "Binary": {},
    "List": {"status": "list-status", "mode": "list-mode"},
    "AllergyIntolerance": {
        "clinicalStatus": "allergyintolerance-clinical",
        "verificationStatus": "allergyintolerance-verification",
        "type": "allergy-intolerance-type",
        "category": "allergy-intolerance-category",
        "criticality": "allergy-intolerance-criticality",
        "onsetAge": "Quantity",
        "reaction.severity": "reaction-event-severity",
    },
    "MedicationStatement": {
        "status": "medication-statement-status",
        "dosage.timing": "Timing",
    },
    "Condition": {
        "clinicalStatus": "condition-clinical",
        "verificationStatus": "condition-ver-status",
        "onsetAge": "Quantity",
        "abatementAge": "Quantity",
    },
    "Procedure": {"status": "event-status", "performedAge": "Quantity"},
    "Immunization": {"status": "immunization-status"},
    "Observation": {
        "status": "observation-status",
        "effectiveTiming": "Timing",
        "valueQuantity": "Quantity",
        "component.valueQuantity": "Quantity",
    },
    "Consent": {
        "status": "consent-state-codes",
        # Consent.provision.provision is recursive; four levels cover any real consent.
        **_nested(
            "", "provision", {"type": "consent-provision-type", "data.meaning": "consent-data-meaning"}, 4
        ),
    },
    "Communication": {"status": "event-status", "priority": "request-priority"},
    "Appointment": {
        "status": "appointmentstatus",
        "participant.required": "participantrequired",
        "participant.status": "participationstatus",
    },
    "AuditEvent": {
        "action": "audit-event-action",
        "outcome": "audit-event-outcome",
        "agent.network.type": "network-type",
    },
}

# Elements whose type is Identifier wherever they appear in FHIR R4.
_IDENTIFIER_KEYS = frozenset({"identifier", "masterIdentifier", "valueIdentifier"})


def _compile() -> dict[str, tuple[Binding, ...]]:
    compiled: dict[str, tuple[Binding, ...]] = {}
    for resource_type, elements in _RESOURCES.items():
        # Every resource but Binary is a DomainResource, with a Narrative in ``text``.
        items = dict(elements) if resource_type == "Binary" else {"text": "Narrative", **elements}
        bindings: list[Binding] = []
        for path, target in items.items():
            if target in _DATATYPES:
                for sub, vs_name in _DATATYPES[target].items():
                    bindings.append(Binding(tuple(f"{path}.{sub}".split(".")), _VALUE_SETS[vs_name]))
            else:
                bindings.append(Binding(tuple(path.split(".")), _VALUE_SETS[target]))
        compiled[resource_type] = tuple(bindings)
    return compiled


REQUIRED_BINDINGS: Mapping[str, tuple[Binding, ...]] = _compile()
_IDENTIFIER_BINDING = _VALUE_SETS["identifier-use"]


def _show(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _resolve(node: Any, path: tuple[str, ...], expr: str) -> Iterator[tuple[str, Any]]:
    """Yield (expression, value) for every value at ``path`` under ``node``; arrays may appear at any
    step and are indexed in the expression (``Patient.name[1].use``)."""
    frontier: list[tuple[str, Any]] = [(expr, node)]
    for key in path:
        nxt: list[tuple[str, Any]] = []
        for here, value in frontier:
            if not isinstance(value, dict) or key not in value:
                continue
            child = value[key]
            if isinstance(child, list):
                nxt.extend((f"{here}.{key}[{i}]", item) for i, item in enumerate(child))
            else:
                nxt.append((f"{here}.{key}", child))
        frontier = nxt
    return iter(frontier)


def _allowed(vs: ValueSet) -> str:
    return ", ".join(vs.codes)


def _code_issue(expr: str, value: str, vs: ValueSet) -> Issue:
    shown = _show(value)
    return Issue(
        f"valeur « {shown} » non autorisée pour {expr} (attendu : {_allowed(vs)}) / "
        f"value '{shown}' not allowed for {expr} (expected: {_allowed(vs)})",
        code="code-invalid",
        expression=expr,
    )


def _check_value(expr: str, value: Any, vs: ValueSet, issues: list[Issue]) -> None:
    if vs.system is None:
        # A ``code``: non-strings are structure errors, reported by the model validation.
        if isinstance(value, str) and value not in vs.codes:
            issues.append(_code_issue(expr, value, vs))
        return
    # A CodeableConcept bound to a required value set: one coding SHALL come from it
    # (http://hl7.org/fhir/R4/terminologies.html#required), and those codings must carry allowed codes.
    if not isinstance(value, dict):
        return
    codings = value.get("coding")
    found = False
    if isinstance(codings, list):
        for i, coding in enumerate(codings):
            if not isinstance(coding, dict) or coding.get("system") != vs.system:
                continue
            found = True
            code = coding.get("code")
            if isinstance(code, str) and code not in vs.codes:
                issues.append(_code_issue(f"{expr}.coding[{i}].code", code, vs))
    if not found:
        issues.append(
            Issue(
                f"{expr} doit contenir un codage du système {vs.system} (codes : {_allowed(vs)}) / "
                f"{expr} must contain a coding from {vs.system} (codes: {_allowed(vs)})",
                code="code-invalid",
                expression=expr,
            )
        )


def iter_identifiers(
    resource: Mapping[str, Any], root: str | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (expression, Identifier) for every Identifier anywhere in ``resource``: its own identifiers,
    those inside References, extensions and contained resources. Iterative, so deep input is safe."""
    start = root or str(resource.get("resourceType", "Resource"))
    stack: list[tuple[str, Any]] = [(start, resource)]
    while stack:
        expr, node = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                if not isinstance(key, str):
                    continue
                if isinstance(child, list):
                    items = [(f"{expr}.{key}[{i}]", item) for i, item in enumerate(child)]
                else:
                    items = [(f"{expr}.{key}", child)]
                if key in _IDENTIFIER_KEYS:
                    for item_expr, item in items:
                        if isinstance(item, dict):
                            yield item_expr, item
                stack.extend(reversed(items))
        elif isinstance(node, list):
            stack.extend((f"{expr}[{i}]", item) for i, item in reversed(list(enumerate(node))))


def check_bindings(resource: Mapping[str, Any]) -> list[Issue]:
    """Check the required bindings of ``resource`` (a FHIR R4 JSON object) and of its contained resources.

    Codes that are not strings are left to the structural validation. Unknown resource types have no
    table entry, but their Identifiers are still checked.
    """
    issues: list[Issue] = []
    if not isinstance(resource, Mapping):
        return issues
    resource_type = resource.get("resourceType")
    root = resource_type if isinstance(resource_type, str) else "Resource"
    targets: list[tuple[str, Mapping[str, Any]]] = [(root, resource)]
    contained = resource.get("contained")
    if isinstance(contained, list):
        targets.extend((f"{root}.contained[{i}]", c) for i, c in enumerate(contained) if isinstance(c, dict))
    for expr, target in targets:
        rtype = target.get("resourceType")
        for binding in REQUIRED_BINDINGS.get(rtype, ()) if isinstance(rtype, str) else ():
            # Repeating codes (AllergyIntolerance.category) come out one by one, indexed.
            for value_expr, value in _resolve(target, binding.path, expr):
                _check_value(value_expr, value, binding.value_set, issues)
    for expr, identifier in iter_identifiers(resource, root):
        _check_value(f"{expr}.use", identifier.get("use"), _IDENTIFIER_BINDING, issues)
    return issues
