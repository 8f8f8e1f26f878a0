"""OpenAPI fragments for the FHIR routes, so that the description tells clients (and schemathesis) the truth:
JSON bodies, and the OperationOutcome statuses every route may answer."""

from __future__ import annotations

from typing import Any

_OUTCOME = {"application/fhir+json": {"schema": {"type": "object", "required": ["resourceType", "issue"],
                                                  "properties": {"resourceType": {"const": "OperationOutcome"},
                                                                 "issue": {"type": "array"}}}}}

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": _OUTCOME}
    for status, text in {
        400: "Bad request (OperationOutcome)",
        401: "No or invalid bearer token",
        403: "Scope does not allow this interaction",
        404: "Not found, or not visible to the caller",
        405: "Method not allowed",
        409: "Conflict",
        410: "Deleted",
        412: "Precondition failed (If-Match, conditional create)",
        413: "Payload too large",
        415: "Unsupported media type (JSON only)",
        422: "Resource breaks a rule (validation, bindings, French identifiers)",
        503: "Database unavailable",
    }.items()
}

_RESOURCE_SCHEMA = {"type": "object", "required": ["resourceType"],
                    "properties": {"resourceType": {"type": "string"}}, "additionalProperties": True}

BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"application/fhir+json": {"schema": _RESOURCE_SCHEMA},
                                                  "application/json": {"schema": _RESOURCE_SCHEMA}}}
}

SEARCH_FORM: dict[str, Any] = {
    "requestBody": {"required": False, "content": {"application/x-www-form-urlencoded": {
        "schema": {"type": "object", "additionalProperties": {"type": "string"}}}}}
}
