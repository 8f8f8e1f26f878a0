"""OpenAPI fragments for the FHIR routes, so that the description tells clients (and schemathesis) the truth:
JSON bodies, and the OperationOutcome statuses every route may answer."""

from __future__ import annotations

from typing import Any

_OUTCOME = {
    "application/fhir+json": {
        "schema": {
            "type": "object",
            "required": ["resourceType", "issue"],
            "properties": {"resourceType": {"const": "OperationOutcome"}, "issue": {"type": "array"}},
        }
    }
}

_RESOURCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["resourceType"],
    "properties": {"resourceType": {"type": "string"}},
    "additionalProperties": True,
}
_FHIR_RESOURCE: dict[str, Any] = {"application/fhir+json": {"schema": _RESOURCE_SCHEMA}}

# Every FHIR route answers FHIR JSON (a resource, a Bundle or a CapabilityStatement) with 200: reads, searches,
# history, updates and bundles; a conditional create that finds its match too (http.html#ccreate). The
# router applies these to each route, with the route's own status (201 create, 204 delete) added by FastAPI.
_SUCCESS: dict[int | str, dict[str, Any]] = {
    200: {"description": "A FHIR resource or Bundle", "content": _FHIR_RESOURCE},
}
ERRORS: dict[int | str, dict[str, Any]] = _SUCCESS | {
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

BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/fhir+json": {"schema": _RESOURCE_SCHEMA},
            "application/json": {"schema": _RESOURCE_SCHEMA},
        },
    },
    # create answers 201 with the stored resource; so does an update that brings a deleted resource back.
    "responses": {"201": {"description": "Created", "content": _FHIR_RESOURCE}},
}

SEARCH_FORM: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "additionalProperties": {"type": "string"}}
            }
        },
    }
}

#: A read: the resource, or for a Binary without a FHIR Accept the document itself (IHE MHD ITI-68), whole or
#: one byte range, with conditional answers.
_CONTENT_HEADERS = {
    "ETag": {"schema": {"type": "string"}},
    "X-Content-Type-Options": {"schema": {"type": "string", "const": "nosniff"}},
    "Content-Security-Policy": {"schema": {"type": "string"}},
}
READ: dict[str, Any] = {
    "responses": {
        "200": {
            "description": "The resource (FHIR JSON), or a Binary's content (ITI-68) as a download",
            "content": {**_FHIR_RESOURCE, "*/*": {"schema": {"type": "string", "format": "binary"}}},
        },
        "206": {
            "description": "One byte range of a Binary's content (RFC 9110 Range)",
            "headers": {**_CONTENT_HEADERS, "Content-Range": {"schema": {"type": "string"}}},
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        },
        "304": {"description": "Not modified (If-None-Match on a Binary's content)"},
        "416": {"description": "Range not satisfiable", "content": _OUTCOME},
    }
}

#: PDSm metadata update: JSON Patch or FHIRPath Patch (Parameters).
PATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json-patch+json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "application/fhir+json": {"schema": _RESOURCE_SCHEMA},
        },
    }
}
