"""The timer that seals the trace's chain heads (SECURITY V7 7.3.3): every `audit_seal_interval_seconds`, each
serving process signs the heads that moved since their last seal. Several processes may run it: a head
already sealed at its position is skipped (services/audit.seal_heads), and a random delay spreads them out.
The background-job worker of the provisioning issue will take this over; `espace-sante audit seal` does the
same on demand."""

from __future__ import annotations

import asyncio
import secrets

from ..logs import get_logger
from ..services import audit
from ..services.runtime import Runtime

log = get_logger(__name__)


async def run(rt: Runtime, interval: float, stop: asyncio.Event) -> None:
    """Seal every `interval` seconds (plus up to 10 % random delay) until `stop` is set."""
    while not stop.is_set():
        delay = interval * (1 + secrets.randbelow(100) / 1000)
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
            return
        except TimeoutError:
            pass
        try:
            sealed = await audit.seal_heads(rt)
        except Exception as exc:  # a failed round is retried at the next tick; the trace itself is intact
            log.warning("audit.seal_failed", error=type(exc).__name__)
            continue
        if sealed:
            log.info("audit.sealed", heads=sealed)
