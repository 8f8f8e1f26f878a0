"""The documents timer: in each serving process, every `documents_job_interval_seconds`, tell holders about
documents waiting for their announcement consultation, release those that waited a month (R1111-53), and
delete the objects of submissions that never committed. Several processes may run it: rows are taken with
SKIP LOCKED and every step is idempotent. `espace-sante documents release` and `documents collect` do the
same on demand (and move through time with --as-of)."""

from __future__ import annotations

import asyncio
import secrets

from ..context import Context
from ..logs import get_logger
from ..services import documents
from ..services.runtime import Runtime

log = get_logger(__name__)


async def run(rt: Runtime, interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        delay = interval * (1 + secrets.randbelow(100) / 1000)
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
            return
        except TimeoutError:
            pass
        ctx = Context.system(rt)
        try:
            released = await documents.run_hidden_documents(ctx)
            collected = await documents.collect_orphans(ctx)
        except (
            Exception
        ) as exc:  # retried at the next tick; nothing is half-done (each step is a transaction)
            log.warning("documents.job_failed", error=type(exc).__name__)
            continue
        if released.noticed or released.released or collected:
            log.info("documents.job", noticed=released.noticed, released=released.released, orphans=collected)
