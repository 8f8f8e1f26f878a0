"""A periodic job in each serving process: `work` every `interval` seconds (plus up to 10 % random delay, so
that processes started together spread out) until `stop` is set. A failed round is logged by its error's type
only (no data in logs) and retried at the next tick. The background-job worker of the provisioning issue will
take these over."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

from espace_sante.logs import get_logger

log = get_logger(__name__)


async def every(
    interval: float, stop: asyncio.Event, name: str, work: Callable[[], Awaitable[object]]
) -> None:
    while not stop.is_set():
        delay = interval * (1 + secrets.randbelow(100) / 1000)
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
            return
        except TimeoutError:
            pass
        try:
            await work()
        except Exception as exc:  # retried at the next tick; each round's steps are transactions
            log.warning(f"{name}.failed", error=type(exc).__name__)
