"""FHIR JSON responses. Stored bodies are sent as the bytes we stored; Bundles embed them with
`orjson.Fragment`, so no resource is parsed or re-serialised on the way out."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from starlette.responses import Response

from espace_sante.errors import FhirError
from espace_sante.fhir import summary
from espace_sante.record.bundles import BundleResult, EntryResult
from espace_sante.record.resources import HistoryPage, SearchResult
from espace_sante.storage.resources import Stored

FHIR_JSON = "application/fhir+json; charset=utf-8"
NO_STORE = {"Cache-Control": "no-store"}


def etag(stored: Stored) -> str:
    return f'W/"{stored.version_id}"'


def http_date(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC), usegmt=True)


def instant(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status, {**NO_STORE, **(headers or {})}, media_type=FHIR_JSON)


def outcome(error: FhirError) -> dict[str, Any]:
    issues = []
    for issue in error.all_issues():
        item: dict[str, Any] = {
            "severity": issue.severity,
            "code": issue.code,
            "diagnostics": issue.diagnostics,
        }
        if issue.expression:
            item["expression"] = [issue.expression]
        issues.append(item)
    return {"resourceType": "OperationOutcome", "id": uuid.uuid4().hex, "issue": issues}


def error_response(error: FhirError, headers: dict[str, str] | None = None) -> Response:
    return json_response(outcome(error), error.status, headers)


def resource_response(
    stored: Stored, base: str, status: int = 200, *, location: bool = False, minimal: bool = False
) -> Response:
    assert stored.body is not None
    headers = {"ETag": etag(stored), "Last-Modified": http_date(stored.last_updated)}
    if location:
        headers["Location"] = (
            f"{base}/{stored.resource_type}/{stored.resource_id}/_history/{stored.version_id}"
        )
    if minimal:
        return Response(b"", status, {**NO_STORE, **headers})
    return Response(stored.body, status, {**NO_STORE, **headers}, media_type=FHIR_JSON)


def _full_url(base: str, stored: Stored) -> str:
    return f"{base}/{stored.resource_type}/{stored.resource_id}"


def _bundle(kind: str, entries: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": uuid.uuid4().hex,
        "meta": {"lastUpdated": instant(datetime.now(UTC))},
        "type": kind,
    }
    bundle.update({k: v for k, v in extra.items() if v is not None})
    bundle["entry"] = entries
    return bundle


def _page_link(base: str, rtype: str, echo: Sequence[tuple[str, str]], count: int, offset: int) -> str:
    params = [(k, v) for k, v in echo if k not in ("_count", "_offset")]
    params.append(("_count", str(count)))
    if offset:
        params.append(("_offset", str(offset)))
    return f"{base}/{rtype}?{urlencode(params)}"


def searchset(result: SearchResult, base: str) -> dict[str, Any]:
    req = result.request
    links = [
        {"relation": "self", "url": _page_link(base, req.resource_type, req.echo, req.count, req.offset)}
    ]
    if result.has_next:
        links.append(
            {
                "relation": "next",
                "url": _page_link(base, req.resource_type, req.echo, req.count, req.offset + req.count),
            }
        )
    if req.offset > 0 and req.count > 0:
        links.append(
            {
                "relation": "previous",
                "url": _page_link(
                    base, req.resource_type, req.echo, req.count, max(0, req.offset - req.count)
                ),
            }
        )
    entries = [
        {
            "fullUrl": _full_url(base, s),
            "resource": orjson.Fragment(summary.apply(s.body, s.resource_type, req.summary)),
            "search": {"mode": mode},
        }
        for mode, found in (("match", result.matches), ("include", result.included))
        for s in found
        if s.body is not None
    ]
    counting = req.summary == "count" or req.count == 0
    if counting:
        entries = []
    if req.ignored:
        entries.append(_ignored_outcome(req.ignored))
    bundle = _bundle("searchset", entries, total=result.total, link=links)
    if counting and not entries:
        bundle.pop("entry")
    return bundle


def _ignored_outcome(ignored: Sequence[str]) -> dict[str, Any]:
    """The parameters a lenient search left out (search.html#errors), said in the Bundle as well as by their
    absence from the `self` link: an entry with `search.mode = outcome` (Bundle.entry.search.mode)."""
    issues = [
        {
            "severity": "warning",
            "code": "not-supported",
            "diagnostics": f"Paramètre de recherche ignoré : '{name}' / search parameter ignored: '{name}'",
            "expression": [name],
        }
        for name in dict.fromkeys(ignored)
    ]
    resource = {"resourceType": "OperationOutcome", "id": uuid.uuid4().hex, "issue": issues}
    return {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": resource, "search": {"mode": "outcome"}}


def _with_page(url: str, count: int, offset: int) -> str:
    parts = urlsplit(url)
    params = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ("_count", "_offset")
    ]
    params.append(("_count", str(count)))
    if offset:
        params.append(("_offset", str(offset)))
    return urlunsplit(parts._replace(query=urlencode(params)))


def history(page: HistoryPage, base: str, self_url: str) -> dict[str, Any]:
    links = [{"relation": "self", "url": self_url}]
    if page.has_next:
        links.append({"relation": "next", "url": _with_page(self_url, page.count, page.offset + page.count)})
    if page.offset > 0 and page.count > 0:
        links.append(
            {
                "relation": "previous",
                "url": _with_page(self_url, page.count, max(0, page.offset - page.count)),
            }
        )
    entries = []
    for s in page.versions:
        entry: dict[str, Any] = {"fullUrl": _full_url(base, s)}
        if s.body is not None:
            entry["resource"] = orjson.Fragment(s.body)
        url = s.resource_type if s.method == "POST" else f"{s.resource_type}/{s.resource_id}"
        entry["request"] = {"method": s.method, "url": url}
        entry["response"] = {
            "status": "201 Created"
            if s.method == "POST"
            else ("204 No Content" if s.method == "DELETE" else "200 OK"),
            "etag": etag(s),
            "lastModified": instant(s.last_updated),
        }
        entries.append(entry)
    return _bundle("history", entries, link=links)


_REASONS = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}


def bundle_response(result: BundleResult, base: str) -> dict[str, Any]:
    return _bundle(result.bundle_type, [_entry(e, base) for e in result.entries])


def _entry(e: EntryResult, base: str) -> dict[str, Any]:
    if e.error is not None:
        return {"response": {"status": str(e.error.status), "outcome": outcome(e.error)}}
    response: dict[str, Any] = {"status": _REASONS.get(e.status, str(e.status))}
    entry: dict[str, Any] = {}
    if e.stored is not None and e.stored.body is not None:
        entry["fullUrl"] = _full_url(base, e.stored)
        entry["resource"] = orjson.Fragment(e.stored.body)
        response["location"] = (
            f"{e.stored.resource_type}/{e.stored.resource_id}/_history/{e.stored.version_id}"
        )
        response["etag"] = etag(e.stored)
        response["lastModified"] = instant(e.stored.last_updated)
    elif e.search is not None:
        entry["resource"] = searchset(e.search, base)
    elif e.location is not None:
        response["location"] = e.location
    if e.warnings:
        response["outcome"] = outcome(FhirError(e.warnings[0].diagnostics, issues=e.warnings))
    entry["response"] = response
    return entry
