"""`_summary` (FHIR R4 search.html#summary): the server returns a subset of each resource and marks it with
the SUBSETTED tag. Which elements are "summary" comes from the R4B models' metadata, so it follows the spec's
isSummary flags without a hand-written table. Applied to stored JSON (parsed and dumped with orjson), never
through the models."""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

import orjson

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_ALWAYS = frozenset({"resourceType", "id", "meta"})


@cache
def _elements(resource_type: str) -> tuple[frozenset[str], frozenset[str]]:
    """(summary elements, mandatory elements) of a type, as JSON names."""
    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    model = getattr(module, resource_type)
    summary, required = set(), set()
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        key = field.alias or name
        if extra.get("summary_element_property"):
            summary.add(key)
        if extra.get("element_required"):
            required.add(key)
    return frozenset(summary), frozenset(required)


def apply(body: bytes, resource_type: str, mode: str | None) -> bytes:
    """The stored body reduced as `_summary=mode` asks (`true`, `text`, `data`); unchanged for None/false."""
    if mode in (None, "false", "count"):
        return body
    resource: dict[str, Any] = orjson.loads(body)
    summary, required = _elements(resource_type)
    if mode == "true":
        keep = _ALWAYS | summary | required
    elif mode == "text":
        keep = _ALWAYS | required | {"text"}
    else:  # data: everything but the narrative
        keep = frozenset(resource) - {"text"}
    reduced = {k: v for k, v in resource.items() if k in keep or (k.startswith("_") and k[1:] in keep)}
    meta = dict(reduced.get("meta") or {})
    meta["tag"] = [*(meta.get("tag") or []), SUBSETTED]
    reduced["meta"] = meta
    return orjson.dumps(reduced)
