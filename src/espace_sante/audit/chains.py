"""Sealing and verifying the trace (SECURITY V7 7.3.3), for the `espace-sante audit` commands and the jobs.

Sealing is periodic (an operator's timer runs `espace-sante audit seal`): a seal costs one signature per space
whose head moved, and what a rewrite can hide is bounded by the interval between seals, never by the chain's
length, since the hash chain already pins everything before the last seal.

Verification reads each space outside a transaction: a REPEATABLE READ snapshot over billions of records would
hold back vacuum for hours. Consistency comes from the reading order instead (seals, then head, then the walk;
see audit.verify.check_space): the trace only ever grows, so what was read first is a prefix of what is read
after."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

from espace_sante.audit.seal import KeySet, Sealer
from espace_sante.audit.verify import Report, SpaceReport, check_space
from espace_sante.runtime import Runtime
from espace_sante.storage import audit as audit_store
from espace_sante.storage.db import Conn


async def seal_heads(rt: Runtime) -> int:
    """Seal every chain head that moved since its last seal, in one transaction; returns how many were sealed.
    Two sealers running at once do not conflict: a head already sealed at that position is skipped."""
    sealer = Sealer.from_settings(rt.settings)

    async def work(conn: Conn) -> int:
        sealed = 0
        for space_id, seq, head in await audit_store.unsealed_heads(conn):
            if await audit_store.add_seal(conn, sealer.seal(space_id, seq, head)):
                sealed += 1
        return sealed

    return await rt.db.interaction("audit_seal", work)


async def verify(
    rt: Runtime,
    space_id: uuid.UUID | None = None,
    *,
    on_space: Callable[[SpaceReport], None] | None = None,
) -> Report:
    """Check one space's trace, or every space's; the report names each broken space's first broken link.
    `on_space` sees every space's result as it is checked (the report keeps only the broken ones)."""
    keys = KeySet.from_settings(rt.settings)
    report = Report()
    async for target in _targets(rt, space_id):
        result = await rt.db.read("audit_verify", _check, target, keys)
        report.add(result)
        if on_space is not None:
            on_space(result)
    return report


_PAGE = 10_000


async def _targets(rt: Runtime, space_id: uuid.UUID | None) -> AsyncIterator[uuid.UUID]:
    """The space asked for, or every space with a trace, a page at a time (memory stays bounded)."""
    if space_id is not None:
        yield space_id
        return
    after = None
    while True:
        page = await rt.db.read("audit_spaces", audit_store.spaces, after=after, limit=_PAGE)
        for target in page:
            yield target
        if len(page) < _PAGE:
            return
        after = page[-1]


async def _check(conn: Conn, space_id: uuid.UUID, keys: KeySet) -> SpaceReport:
    seals = await audit_store.seals(conn, space_id)
    head = await audit_store.head(conn, space_id)
    records = audit_store.chain(conn, space_id)
    try:
        return await check_space(
            space_id, records, head, seals, keys, head_now=lambda: audit_store.head(conn, space_id)
        )
    finally:
        # The walk may stop early (a break, records newer than the head): close the generator now, while the
        # connection is still ours, rather than whenever the garbage collector gets to it.
        aclose = getattr(records, "aclose", None)
        if aclose is not None:
            await aclose()
