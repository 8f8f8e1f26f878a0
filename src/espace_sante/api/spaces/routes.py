"""The state of a space, as an API: its holder (or an app they connected, or a representative with rights)
reads it, closes, reopens, asks for destruction or contests a suspension; the insurer's operators record an
opposition made by phone or at a counter, suspend, lift a suspension. Routes parse and call
spaces/lifecycle.py, where the one transition table decides; errors are OperationOutcome like the FHIR API.
An INS travels in bodies only, never in a URL (SECURITY V8 8.3.1)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from espace_sante.api.deps import fhir_context
from espace_sante.api.fhir.openapi import ERRORS
from espace_sante.context import Context
from espace_sante.spaces import lifecycle

router = APIRouter(
    prefix="/space", tags=["Space lifecycle"], responses={k: v for k, v in ERRORS.items() if k != 200}
)
Ctx = Annotated[Context, Depends(fhir_context)]
_NO_STORE = {"Cache-Control": "no-store"}
_Ins = Field(default=None, min_length=15, max_length=15, pattern=r"^[0-9AB]{15}$")


class Which(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ins: str | None = _Ins


class Change(Which):
    event: Literal["oppose", "request", "suspend", "resume", "close", "reopen", "erase"]
    channel: Literal["online", "phone", "counter"] | None = None
    #: Only for a suspension: why the insurer suspends (a code: the trace the holder reads holds no free text).
    reason: Literal["fraud", "malfunction"] | None = None


class StateWords(BaseModel):
    fr: str
    en: str


class SpaceStatus(BaseModel):
    state: str
    since: str
    opens_on: str | None
    destroy_on: str | None
    closed_reason: str | None
    words: StateWords


class Changed(BaseModel):
    before: str = Field(alias="from")
    after: str = Field(alias="to")
    status: SpaceStatus

    model_config = ConfigDict(populate_by_name=True)


def _json(body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, headers=_NO_STORE)


@router.post(
    "/status",
    response_model=SpaceStatus,
    summary="The state of a space (its holder's own when no INS is given)",
)
async def status(body: Which, ctx: Ctx) -> JSONResponse:
    space_id = await lifecycle.space_of(ctx, body.ins)
    found = await lifecycle.status(ctx, space_id)
    return _json(found.as_json())


@router.post(
    "/transitions",
    response_model=Changed,
    summary="Close, reopen, ask for destruction, contest a suspension; operators: opposition, suspension",
)
async def change(body: Change, ctx: Ctx) -> JSONResponse:
    """A change the state does not allow is a 409 naming the state; one the caller may not ask for, a 403; a
    space the caller may not see, a 404 (as if it did not exist)."""
    space_id = await lifecycle.space_of(ctx, body.ins)
    before, after = await lifecycle.requested(
        ctx, space_id, body.event, channel=body.channel, reason=body.reason or ""
    )
    found = await lifecycle.status(ctx, space_id)
    return _json({"from": before, "to": after, "status": found.as_json()})
