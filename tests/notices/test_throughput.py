"""The fast paths of `notices send` keep its records (docs/notices.md, "Throughput"): the codes drawn in one pass
are well formed and uniform, the trace written for a batch is the chain audit_append writes (same canonical
bytes, verified), several lanes never notify a space twice, and the outbox path delivers each e-mail once."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from espace_sante.audit import chains as audit
from espace_sante.runtime import Runtime
from espace_sante.spaces import activation
from espace_sante.spaces.notices import issue
from espace_sante.storage import audit as audit_store
from espace_sante.storage.audit import SUCCESS, Record, canonical
from espace_sante.storage.db import Conn
from tests.notices.test_notices import mail, outbox_for, space_of
from tests.registry.test_import import person, run, write


def test_codes_drawn_in_one_pass_are_well_formed_distinct_and_uniform() -> None:
    codes = issue.new_codes(3000)
    assert len(set(codes)) == 3000
    for code in codes:
        assert len(code) == 17 and code.count("-") == 3
        assert activation.well_formed(activation.normalise(code))
    counts = Counter("".join(codes).replace("-", ""))
    assert set(counts) == set(activation.ALPHABET)
    expected = 3000 * activation.LENGTH / len(activation.ALPHABET)  # 1400 each
    assert all(abs(n - expected) < 200 for n in counts.values()), counts


def test_the_canonical_bytes_are_the_trace_s_own() -> None:
    space = uuid.uuid4()
    for record in (
        Record(action="space:notify", outcome=SUCCESS, actor_kind="system", actor_id="lifecycle", detail="a>b|"),
        Record(
            action="activation:issue", outcome="4", actor_kind="operator", actor_id="agent", actor_display="Zoé",
            basis="reissue", entity_type="Patient", entity_id="x", entity_version=3, detail="until=2031-01-01",
            request_id="r1", recorded_at=datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        ),
    ):  # fmt: skip
        assert audit_store.canonical_fast(space, record) == canonical(space, record)


async def test_a_batch_s_trace_is_the_chain_audit_append_writes(runtime: Runtime) -> None:
    space, fresh = uuid.uuid4(), uuid.uuid4()

    def rec(detail: str) -> Record:
        return Record(
            action="space:notify", outcome=SUCCESS, actor_kind="system", actor_id="t", detail=detail
        )

    async def work(conn: Conn) -> None:
        await audit_store.append(conn, space, rec("one by one"))
        await audit_store.append_batch(conn, [(space, rec("a")), (fresh, rec("b")), (space, rec("c"))])
        await audit_store.append(conn, space, rec("one by one again"))

    await runtime.db.interaction("t", work)

    async def q(conn: Conn) -> list[tuple[uuid.UUID, int, str]]:
        rows = await conn.fetch(
            "SELECT space_id, seq, detail FROM audit_event WHERE space_id = ANY($1::uuid[]) ORDER BY space_id, seq",
            [space, fresh],
        )
        return [(r["space_id"], r["seq"], r["detail"]) for r in rows]

    rows = await runtime.db.read("t", q)
    assert [(s, n, d) for s, n, d in rows if s == space] == [
        (space, 1, "one by one"), (space, 2, "a"), (space, 3, "c"), (space, 4, "one by one again")
    ]  # fmt: skip
    assert [(s, n, d) for s, n, d in rows if s == fresh] == [(fresh, 1, "b")]
    for s in (space, fresh):
        assert not (await audit.verify(runtime, s)).broken


async def test_lanes_notify_each_space_once_and_the_outbox_gets_each_mail_once(
    runtime: Runtime, tmp_path: Path
) -> None:
    rows = [person(email=mail()) for _ in range(23)] + [person(email="") for _ in range(4)]
    await run(runtime, write(tmp_path / "r.csv", rows))
    counts = await issue.send(runtime, batch=3, lanes=4)
    assert counts.notified >= 27 and counts.failed == 0
    for row in rows:
        space = await space_of(runtime, row["nir"])
        if row["email"]:
            assert len(await outbox_for(runtime, row["email"])) == 1

        async def q(conn: Conn, space: uuid.UUID = space) -> tuple[int, int, int]:
            r = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM notice WHERE space_id = $1) AS notices, "
                "(SELECT count(*) FROM audit_event WHERE space_id = $1 AND action = 'space:notify') AS notify, "
                "(SELECT count(*) FROM audit_event WHERE space_id = $1 AND action = 'activation:issue') AS issue",
                space,
            )
            assert r is not None
            return r["notices"], r["notify"], r["issue"]

        assert await runtime.db.read("t", q) == (1, 1, 1)
        assert not (await audit.verify(runtime, space)).broken
    assert (await issue.send(runtime, lanes=4)).notified == 0
