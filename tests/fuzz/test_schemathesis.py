"""The app against its own OpenAPI description (schemathesis 4, in process): for every documented operation,
requests generated from the description, sent with a valid bearer token, must never answer 5xx and must answer
only the statuses, content types, headers and bodies the description documents.

The schema is loaded with `schemathesis.openapi.from_asgi` from the running app. Requests go through the
session's httpx client rather than `case.call()`: schemathesis' ASGI transport runs the app in a thread with
its own event loop, and the app's database pool belongs to the test session's loop. The response is then
judged by `case.validate_response` with the standard checks."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import TokenFactory

# The operations of the description (test_every_operation_is_covered keeps this list honest).
OPERATIONS = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/oauth/token"),
    ("POST", "/oauth/introspect"),
    ("POST", "/oauth/revoke"),
    ("GET", "/.well-known/smart-configuration"),
    ("GET", "/fhir/metadata"),
    ("POST", "/fhir"),
    ("GET", "/fhir/{rtype}"),
    ("POST", "/fhir/{rtype}"),
    ("POST", "/fhir/{rtype}/_search"),
    ("GET", "/fhir/{rtype}/_history"),
    ("GET", "/fhir/{rtype}/{rid}"),
    ("PUT", "/fhir/{rtype}/{rid}"),
    ("PATCH", "/fhir/{rtype}/{rid}"),
    ("PATCH", "/fhir/{rtype}"),
    ("DELETE", "/fhir/{rtype}/{rid}"),
    ("GET", "/fhir/{rtype}/{rid}/_history"),
    ("GET", "/fhir/{rtype}/{rid}/_history/{vid}"),
    ("GET", "/access"),
    ("POST", "/access/grants"),
    ("POST", "/access/grants/revoke"),
    ("POST", "/access/blocks"),
    ("POST", "/access/blocks/remove"),
    ("PUT", "/access/settings"),
    ("POST", "/access/emergency"),
    ("POST", "/access/representatives"),
    ("GET", "/access/preview"),
    ("POST", "/space/status"),
    ("POST", "/space/transitions"),
]

CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

EXAMPLES = max(1, int(12 * float(os.environ.get("FUZZ_SCALE", "1"))))


@pytest.fixture(scope="session")
def api_schema(app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _request_kwargs(case: Any, token: str) -> dict[str, Any]:
    """The case as httpx arguments (schemathesis serialises it for `requests`)."""
    kwargs = case.as_transport_kwargs(
        base_url="http://127.0.0.1:8000", headers={"Authorization": f"Bearer {token}"}
    )
    out: dict[str, Any] = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "headers": kwargs.get("headers") or {},
        "params": kwargs.get("params"),
    }
    if kwargs.get("cookies"):
        out["cookies"] = kwargs["cookies"]
    if "json" in kwargs:
        out["json"] = kwargs["json"]
    data = kwargs.get("data")
    if isinstance(data, (bytes, str)):
        out["content"] = data
    elif data is not None:
        out["data"] = data
    if kwargs.get("files"):
        out["files"] = kwargs["files"]
    return out


def test_every_operation_is_covered(api_schema: Any) -> None:
    """The list above is the description's list: a new route gets fuzzed too."""
    documented = set()
    for result in api_schema.get_all_operations():
        operation = result.ok()
        documented.add((operation.method.upper(), operation.path))
    assert documented == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_operation_conforms_to_the_description(
    api_schema: Any,
    http: httpx.AsyncClient,
    token_for: TokenFactory,
    method: str,
    path: str,
    data: st.DataObject,
) -> None:
    """Generated requests with a valid token: no 5xx, and statuses, content types, headers and bodies as
    documented."""
    token = await token_for("system/*.*")
    operation = api_schema[path][method]
    case = data.draw(operation.as_strategy())
    kwargs = _request_kwargs(case, token)
    response = await http.request(**kwargs)
    case.validate_response(response, checks=CHECKS, headers=kwargs["headers"])
