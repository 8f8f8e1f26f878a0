"""The timer that seals the trace's chain heads (SECURITY V7 7.3.3): every `audit_seal_interval_seconds`, each
serving process signs the heads that moved since their last seal. Several processes may run it: a head
already sealed at its position is skipped (audit/chains.seal_heads), and the timer's random delay spreads
them out. `espace-sante audit seal` does the same on demand."""

from __future__ import annotations

import asyncio

from espace_sante.audit import chains as audit
from espace_sante.jobs.timer import every
from espace_sante.logs import get_logger
from espace_sante.runtime import Runtime

log = get_logger(__name__)


async def run(rt: Runtime, interval: float, stop: asyncio.Event) -> None:
    """Seal every `interval` seconds until `stop` is set."""

    async def seal() -> None:
        sealed = await audit.seal_heads(rt)
        if sealed:
            log.info("audit.sealed", heads=sealed)

    await every(interval, stop, "audit.seal", seal)
