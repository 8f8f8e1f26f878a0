"""The FHIR R4 REST API at /fhir (http.html). Routes parse, call one function of the dispatcher
(record/interactions.py, which knows each type's rules) or of record/bundles.py, and render."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import Response

from espace_sante.api.deps import fhir_context
from espace_sante.api.fhir import capability, render
from espace_sante.api.fhir.openapi import BODY, ERRORS, PATCH_BODY, READ, SEARCH_FORM
from espace_sante.context import Context
from espace_sante.errors import BadRequest, UnsupportedMediaType
from espace_sante.fhir.searchparams import parse_date_range
from espace_sante.fhir.validation import RESOURCE_TYPES
from espace_sante.http import downloads
from espace_sante.record import bundles, documents, interactions

_FORMATS = ("json", "application/fhir+json", "application/json")


async def json_format(request: Request) -> None:
    """`_format` (http.html#mime-type) on any interaction: only JSON is served, anything else is 415.
    (async: a plain `def` dependency would cost a thread hop on every request.)"""
    _check_formats(request.query_params.getlist("_format"))


def _check_formats(values: list[str]) -> None:
    for value in values:
        if value.split(";", 1)[0].strip().lower() not in _FORMATS:
            raise UnsupportedMediaType(
                f"_format « {value[:40]} » non pris en charge : ce serveur ne parle que JSON "
                "/ unsupported _format: this server speaks JSON only (application/fhir+json)"
            )


router = APIRouter(prefix="/fhir", tags=["FHIR R4"], responses=ERRORS, dependencies=[Depends(json_format)])

Ctx = Annotated[Context, Depends(fhir_context)]
Type = Annotated[
    str, Path(description="FHIR resource type", json_schema_extra={"enum": list(RESOURCE_TYPES)})
]
Id = Annotated[str, Path(description="Logical id", pattern=r"^[A-Za-z0-9\-.]{1,64}$")]

_JSON_TYPES = ("application/fhir+json", "application/json", "application/json-patch+json")


def _base(ctx: Context) -> str:
    return ctx.runtime.settings.fhir_base


async def json_body(request: Request) -> Any:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in _JSON_TYPES[:2]:
        raise UnsupportedMediaType(
            f"Content-Type « {ctype or '(absent)'} » non pris en charge : ce serveur ne parle que JSON / this server "
            "speaks JSON only (application/fhir+json)"
        )
    raw = await request.body()
    if not raw.strip():
        raise BadRequest("corps de requête vide / empty request body")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            f"JSON invalide / invalid JSON: {exc.msg} (ligne/line {exc.lineno}, colonne/column {exc.colno})",
            code="structure",
        ) from None


def _minimal(request: Request) -> bool:
    return "return=minimal" in request.headers.get("prefer", "")


def _paging(request: Request) -> tuple[datetime | None, int, int]:
    params = request.query_params
    since = None
    if "_since" in params:
        parsed = parse_date_range(params["_since"])
        if parsed is None:
            raise BadRequest("_since : date invalide / invalid instant", expression="_since")
        since = parsed[0]
    count, offset = params.get("_count", "20"), params.get("_offset", "0")
    # ASCII digits only: str.isdigit() also takes "²" and other scripts' digits, which int() refuses.
    if (
        not (f"{count}{offset}".isascii() and count.isdigit() and offset.isdigit())
        or len(count) > 6
        or len(offset) > 12
    ):
        raise BadRequest("_count et _offset sont des entiers positifs / must be non-negative integers")
    return since, min(int(count), 200), int(offset)


@router.get("/metadata", summary="CapabilityStatement", dependencies=[])
async def metadata(request: Request) -> Response:
    settings = request.app.state.runtime.settings
    return render.json_response(
        capability.statement(settings), headers={"Cache-Control": "public, max-age=300"}
    )


@router.post("/", include_in_schema=False)
@router.post("", summary="Batch or transaction Bundle", openapi_extra=BODY)
async def bundle(request: Request, ctx: Ctx) -> Response:
    result = await bundles.process(ctx, await json_body(request))
    return render.json_response(render.bundle_response(result, _base(ctx)))


@router.get("/{rtype}", summary="Search (GET)")
async def search_get(rtype: Type, request: Request, ctx: Ctx) -> Response:
    result = await interactions.search(ctx, rtype, request.query_params.multi_items())
    return render.json_response(render.searchset(result, _base(ctx)))


@router.post("/{rtype}/_search", summary="Search (POST form)", openapi_extra=SEARCH_FORM)
async def search_post(rtype: Type, request: Request, ctx: Ctx) -> Response:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType(
            "POST _search attend application/x-www-form-urlencoded / expects "
            "application/x-www-form-urlencoded"
        )
    form = await request.form()
    pairs = [
        *request.query_params.multi_items(),
        *((k, v) for k, v in form.multi_items() if isinstance(v, str)),
    ]
    _check_formats([v for k, v in pairs if k == "_format"])  # a form's `_format` is judged like the URL's
    result = await interactions.search(ctx, rtype, pairs)
    return render.json_response(render.searchset(result, _base(ctx)))


@router.post(
    "/{rtype}", summary="Create (If-None-Exist for conditional create)", status_code=201, openapi_extra=BODY
)
async def create(rtype: Type, request: Request, ctx: Ctx) -> Response:
    body = await json_body(request)
    if isinstance(body, dict) and body.get("resourceType") != rtype:
        raise BadRequest(
            f"resourceType « {body.get('resourceType')} » ne correspond pas à l'URL / does not match "
            f"the URL ({rtype})",
            expression="resourceType",
        )
    # A DocumentReference with its document in attachment.data is an ITI-105 Simplified Publish (its rule).
    written = await interactions.create(ctx, body, if_none_exist=request.headers.get("if-none-exist"))
    response = render.resource_response(
        written.stored, _base(ctx), 201 if written.created else 200, location=True, minimal=_minimal(request)
    )
    if written.warnings:
        response.headers["Warning"] = (
            f'199 - "{len(written.warnings)} code(s) hors des jeux de valeurs français"'
        )
    return response


@router.get("/{rtype}/_history", summary="Type history")
async def type_history(rtype: Type, request: Request, ctx: Ctx) -> Response:
    since, count, offset = _paging(request)
    page = await interactions.history(ctx, rtype, None, since=since, count=count, offset=offset)
    return render.json_response(render.history(page, _base(ctx), str(request.url)))


def _wants_resource(request: Request) -> bool:
    """FHIR binary.html: a read of a Binary returns the resource when the client asks for a FHIR format, and the
    content itself otherwise (IHE MHD ITI-68 Retrieve Document is a GET of `attachment.url`)."""
    if request.query_params.get("_format"):
        return True
    accept = request.headers.get("accept", "").lower()
    return any(t in accept for t in ("application/fhir+json", "application/json"))


@router.get(
    "/{rtype}/{rid}",
    summary="Read (a Binary without a FHIR Accept: ITI-68 Retrieve Document)",
    openapi_extra=READ,
)
async def read(rtype: Type, rid: Id, request: Request, ctx: Ctx) -> Response:
    if interactions.serves_content(rtype) and not _wants_resource(request):
        return await _retrieve(rtype, rid, request, ctx)
    return render.resource_response(await interactions.read(ctx, rtype, rid), _base(ctx))


async def _retrieve(rtype: str, rid: str, request: Request, ctx: Context) -> Response:
    try:
        retrieved = await interactions.retrieve(
            ctx,
            rtype,
            rid,
            range_header=request.headers.get("range"),
            if_range=request.headers.get("if-range"),
        )
    except documents.RangeNotSatisfiable as exc:
        return render.error_response(exc, {"Content-Range": f"bytes */{exc.size}"})
    if request.headers.get("if-none-match") == retrieved.etag:
        return Response(status_code=304, headers={"ETag": retrieved.etag, **downloads.CONTENT_HEADERS})
    return await downloads.content_response(retrieved, ctx)


@router.put("/{rtype}/{rid}", summary="Update (If-Match for version-aware update)", openapi_extra=BODY)
async def update(rtype: Type, rid: Id, request: Request, ctx: Ctx) -> Response:
    body = await json_body(request)
    written = await interactions.update(ctx, rtype, rid, body, if_match=request.headers.get("if-match"))
    return render.resource_response(
        written.stored,
        _base(ctx),
        201 if written.created else 200,
        location=written.created,
        minimal=_minimal(request),
    )


async def _patch_body(request: Request) -> tuple[Any, bool]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json-patch+json":
        raw = await request.body()
        try:
            return orjson.loads(raw), True
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"JSON Patch invalide / invalid JSON: {exc.msg}", code="structure") from None
    return await json_body(request), False


async def _patch(rtype: str, rid: str | None, request: Request, ctx: Context) -> Response:
    # A type that does not offer PATCH is 405 before its body is read.
    interactions.check_offered(rtype, "patch")
    payload, is_json_patch = await _patch_body(request)
    condition = request.url.query if rid is None else None
    stored = await interactions.patch(
        ctx,
        rtype,
        rid,
        condition=condition,
        payload=payload,
        json_patch=is_json_patch,
        if_match=request.headers.get("if-match"),
    )
    return render.resource_response(stored, _base(ctx), minimal=_minimal(request))


@router.patch(
    "/{rtype}/{rid}",
    summary="Patch a DocumentReference's status, securityLabel or isArchived (JSON Patch or FHIRPath Patch)",
    openapi_extra=PATCH_BODY,
)
async def patch(rtype: Type, rid: Id, request: Request, ctx: Ctx) -> Response:
    return await _patch(rtype, rid, request, ctx)


@router.patch(
    "/{rtype}",
    summary="Conditional patch (PDSm: DocumentReference?identifier=…)",
    openapi_extra=PATCH_BODY,
)
async def conditional_patch(rtype: Type, request: Request, ctx: Ctx) -> Response:
    return await _patch(rtype, None, request, ctx)


@router.delete("/{rtype}/{rid}", summary="Delete", status_code=204)
async def delete(rtype: Type, rid: Id, ctx: Ctx) -> Response:
    await interactions.delete(ctx, rtype, rid)
    return Response(status_code=204, headers=render.NO_STORE)


@router.get("/{rtype}/{rid}/_history", summary="Instance history")
async def instance_history(rtype: Type, rid: Id, request: Request, ctx: Ctx) -> Response:
    since, count, offset = _paging(request)
    page = await interactions.history(ctx, rtype, rid, since=since, count=count, offset=offset)
    return render.json_response(render.history(page, _base(ctx), str(request.url)))


@router.get("/{rtype}/{rid}/_history/{vid}", summary="Version read (vread)")
async def vread(rtype: Type, rid: Id, vid: Annotated[str, Path(pattern=r"^\d{1,18}$")], ctx: Ctx) -> Response:
    return render.resource_response(await interactions.vread(ctx, rtype, rid, vid), _base(ctx))
