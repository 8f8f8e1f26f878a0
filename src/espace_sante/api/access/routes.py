"""Who may see a record, as an API: the holder's consents, blocks and sharing rules, professionals' care-team
declarations and emergency accesses, the insurer's médecin traitant and representatives, and the holder's
"what can this professional see?" preview. Routes parse and call rights/changes.py; errors are
OperationOutcome like the FHIR API. An INS travels in bodies only, never in a URL (SECURITY V8 8.3.1)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse, Response

from espace_sante.api.deps import fhir_context
from espace_sante.api.fhir.openapi import ERRORS
from espace_sante.context import Context
from espace_sante.rights import changes as rights

# The FHIR routes' error answers (OperationOutcome), without their FHIR 200: these routes answer plain JSON.
router = APIRouter(
    prefix="/access", tags=["Access rights"], responses={k: v for k, v in ERRORS.items() if k != 200}
)
_JSON_OBJECT: dict[int | str, dict[str, Any]] = {
    200: {"description": "JSON", "content": {"application/json": {"schema": {"type": "object"}}}}
}
Ctx = Annotated[Context, Depends(fhir_context)]
_Id = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9\-.]{1,64}$")
_Ins = Field(default=None, min_length=15, max_length=15)
_Who = Field(max_length=20)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patient: str | None = _Id
    ins: str | None = _Ins


class Grant(_Body):
    basis: Literal["consent", "care_team", "medecin_traitant"]
    who: str = _Who


class Block(_Body):
    rpps: str = Field(max_length=11)


class Emergency(_Body):
    kind: Literal["emergency", "samu"] = "emergency"
    reason: Literal["unable_to_consent", "immediate_risk", "samu_call"]


class Representative(_Body):
    representative_ins: str = Field(min_length=15, max_length=15)
    until: date | None = None


class Override(BaseModel):
    model_config = ConfigDict(extra="forbid")
    add: list[Annotated[str, Field(max_length=40)]] = Field(default_factory=list, max_length=50)
    remove: list[Annotated[str, Field(max_length=40)]] = Field(default_factory=list, max_length=50)


class SharingRules(_Body):
    emergency_refused: bool = False
    samu_refused: bool = False
    masked_in_emergency: bool = False
    shared_sections: list[Annotated[str, Field(max_length=40)]] | None = Field(default=None, max_length=20)
    matrix_overrides: dict[Annotated[str, Field(max_length=4)], Override] = Field(
        default_factory=dict, max_length=40
    )


class EmergencyOpened(BaseModel):
    ends_at: datetime


_NO_STORE = {"Cache-Control": "no-store"}


@router.get(
    "", summary="Who has access to a record, on what basis, and the sharing rules", responses=_JSON_OBJECT
)
async def overview(ctx: Ctx, patient: Annotated[str | None, Query(max_length=64)] = None) -> JSONResponse:
    return JSONResponse(await rights.overview(ctx, patient=patient), headers=_NO_STORE)


@router.post("/grants", status_code=204, summary="Give access: consent, care team, médecin traitant")
async def grant(body: Grant, ctx: Ctx) -> Response:
    await rights.grant(ctx, basis=body.basis, who=body.who, patient=body.patient, ins=body.ins)
    return Response(status_code=204)


@router.post("/grants/revoke", status_code=204, summary="Withdraw access (an objection, a withdrawn consent)")
async def revoke(body: Grant, ctx: Ctx) -> Response:
    await rights.revoke(ctx, basis=body.basis, who=body.who, patient=body.patient, ins=body.ins)
    return Response(status_code=204)


@router.post("/blocks", status_code=204, summary="Block a professional (no access on any basis)")
async def block(body: Block, ctx: Ctx) -> Response:
    await rights.set_blocked(ctx, rpps=body.rpps, blocked=True, patient=body.patient, ins=body.ins)
    return Response(status_code=204)


@router.post("/blocks/remove", status_code=204, summary="Unblock a professional")
async def unblock(body: Block, ctx: Ctx) -> Response:
    await rights.set_blocked(ctx, rpps=body.rpps, blocked=False, patient=body.patient, ins=body.ins)
    return Response(status_code=204)


@router.put("/settings", status_code=204, summary="The holder's sharing rules")
async def settings(body: SharingRules, ctx: Ctx) -> Response:
    await rights.save_settings(
        ctx,
        rights.Settings(
            emergency_refused=body.emergency_refused,
            samu_refused=body.samu_refused,
            masked_in_emergency=body.masked_in_emergency,
            shared_sections=None if body.shared_sections is None else tuple(body.shared_sections),
            matrix_overrides={
                p: {"add": o.add, "remove": o.remove} for p, o in body.matrix_overrides.items()
            },
        ),
        patient=body.patient,
        ins=body.ins,
    )
    return Response(status_code=204)


@router.post("/emergency", summary="Open a time-limited emergency access (professionals)")
async def emergency(body: Emergency, ctx: Ctx) -> EmergencyOpened:
    ends = await rights.emergency(ctx, kind=body.kind, reason=body.reason, patient=body.patient, ins=body.ins)
    return EmergencyOpened(ends_at=ends)


@router.post("/representatives", status_code=204, summary="Record a legal representative of a minor (feeds)")
async def representative(body: Representative, ctx: Ctx) -> Response:
    await rights.add_representative(
        ctx, representative_ins=body.representative_ins, until=body.until, patient=body.patient, ins=body.ins
    )
    return Response(status_code=204)


@router.get(
    "/preview",
    summary="What can this professional see? The policy's answer, item by item",
    responses=_JSON_OBJECT,
)
async def preview(
    ctx: Ctx,
    rpps: Annotated[str, Query(max_length=11)],
    patient: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONResponse:
    result: dict[str, Any] = await rights.preview(ctx, rpps=rpps, patient=patient)
    return JSONResponse(result, headers=_NO_STORE)
