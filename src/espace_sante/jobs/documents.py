"""The documents timer: in each serving process, every `documents_job_interval_seconds`, tell holders about
documents waiting for their announcement consultation, release those that waited a month (R1111-53), and
delete the objects of submissions that never committed. Several processes may run it: rows are taken with
SKIP LOCKED and every step is idempotent. `espace-sante documents release` and `documents collect` do the
same on demand (and move through time with --as-of)."""

from __future__ import annotations

import asyncio

from espace_sante.access.actors import DOCUMENTS
from espace_sante.context import Context
from espace_sante.jobs.timer import every
from espace_sante.logs import get_logger
from espace_sante.record import documents
from espace_sante.runtime import Runtime

log = get_logger(__name__)


async def run(rt: Runtime, interval: float, stop: asyncio.Event) -> None:
    async def round_() -> None:
        ctx = Context(rt, DOCUMENTS)
        released = await documents.run_hidden_documents(ctx)
        collected = await documents.collect_orphans(ctx)
        if released.noticed or released.released or collected:
            log.info("documents.job", noticed=released.noticed, released=released.released, orphans=collected)

    await every(interval, stop, "documents.job", round_)
