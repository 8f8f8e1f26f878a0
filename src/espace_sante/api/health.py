"""Liveness and readiness probes for the load balancer and the orchestrator."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from espace_sante.api.deps import runtime
from espace_sante.storage.db import DatabaseUnavailable

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> Response:
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    summary="The database is reachable and migrations are current",
    responses={
        503: {
            "description": "not ready",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["status"],
                        "properties": {"status": {"const": "unavailable"}},
                    }
                }
            },
        }
    },
)
async def readyz(request: Request) -> Response:
    rt = runtime(request)
    try:
        await rt.db.ping()
        pending = await rt.migrations_pending()
    except (DatabaseUnavailable, OSError, Exception) as exc:  # any failure means "not ready", never a 500
        return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, 503)
    if pending:
        return JSONResponse({"status": "unavailable", "pending_migrations": pending}, 503)
    return JSONResponse({"status": "ready"})
