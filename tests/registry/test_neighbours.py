"""The other shards' latest rows (spaces/registry/rows.py `Neighbours`): with `registry import --jobs --notify`, a
minor whose parent's row belongs to another process is notified in its own batch, to the parent read from
that row, instead of waiting for the run's last step; and the rows kept are checked exactly as their own
shard checks them."""

from __future__ import annotations

import io
import json
from pathlib import Path

from espace_sante import clock
from espace_sante.spaces.notices import delivery, letters
from espace_sante.spaces.registry.importer import import_file
from espace_sante.spaces.registry.rejects import RejectsFile
from espace_sante.spaces.registry.rows import COLUMNS, Beneficiary, Neighbours, read_registry, shard_of
from espace_sante.storage.db import Conn
from tests.factories import new_nir
from tests.registry.test_import import person, write
from tests.registry.test_import_notify import Fresh, fresh  # noqa: F401 (the fixture)

ON = clock.today()


def in_shard(k: int) -> str:
    """A new NIR whose row falls in shard k of 2."""
    while True:
        nir = new_nir()
        if shard_of(nir, 2) == k:
            return nir


def family() -> list[dict[str, str]]:
    """A mother (shard 1), her son (shard 0), a stranger whose row is invalid (shard 1)."""
    mother = person(nir=in_shard(1), first_names="Claire", last_name="Roux", email="claire.roux@exemple.fr")
    son = person(
        nir=in_shard(0), first_names="Hugo", last_name="Roux", birth_date="2015-06-01", sex="M", email="",
        representative_1_nir=mother["nir"],
    )  # fmt: skip
    stranger = person(nir=in_shard(1), birth_date="1980-02-30")
    return [mother, son, stranger]


def test_the_other_shards_rows_are_kept_unchecked_and_checked_when_asked_for(tmp_path: Path) -> None:
    mother, son, stranger = family()
    registry = write(tmp_path / "r.csv", [mother, son, stranger])
    seen = Neighbours()
    mine = list(
        read_registry(registry.open("rb"), today=ON, keep=lambda t: shard_of(t, 2) == 0, neighbours=seen)
    )
    assert [r.line for r in mine] == [3]  # only the son is read as this shard's
    assert list(seen.rows) == [mother["nir"], stranger["nir"]]
    # Asked for, the mother's row is exactly what her own shard reads.
    [theirs] = [
        r
        for r in read_registry(registry.open("rb"), today=ON, keep=lambda t: shard_of(t, 2) == 1)
        if isinstance(r, Beneficiary)
    ]
    assert seen.find(mother["nir"]) == theirs
    assert seen.find(stranger["nir"]) is None  # an impossible birth date: rejected by its shard, not used
    assert seen.find(son["nir"]) is None  # not another shard's row


def test_ndjson_rows_are_kept_too_and_only_the_latest(tmp_path: Path) -> None:
    mother, son, stranger = family()
    lines = [json.dumps({k: v for k, v in row.items() if k in COLUMNS}) for row in (mother, stranger, son)]
    seen = Neighbours(size=1)
    stream = io.BufferedReader(io.BytesIO("\n".join(lines).encode()))
    list(read_registry(stream, today=ON, keep=lambda t: shard_of(t, 2) == 0, neighbours=seen))
    assert list(seen.rows) == [stranger["nir"]]  # the mother's row, older, was let go (constant memory)
    assert seen.find(mother["nir"]) is None

    seen = Neighbours()
    stream = io.BufferedReader(io.BytesIO("\n".join(lines).encode()))
    list(read_registry(stream, today=ON, keep=lambda t: shard_of(t, 2) == 0, neighbours=seen))
    found = seen.find(mother["nir"])
    assert found is not None and (found.first_names, found.line) == ("Claire", 1)


async def test_a_minor_whose_parent_is_in_another_shard_is_notified_in_its_own_batch(
    fresh: Fresh,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Only the son's shard runs: his mother's space does not exist yet, yet his notice goes to her, from
    her row, in the batch that creates his space (one registration record saying it was notified)."""
    mother, son, stranger = family()
    registry = write(tmp_path / "r.csv", [mother, son, stranger])
    rt = await fresh()
    with RejectsFile(None) as out:
        counts = await import_file(rt, registry, rejects=out, notify=ON, shard=(0, 2))
    assert (counts.created, counts.notices and counts.notices.notified) == (1, 1)

    async def q(conn: Conn) -> list[tuple[str, str, str]]:
        rows = await conn.fetch(
            "SELECT p.nir, s.state, a.action || ' ' || coalesce(a.detail, '') AS first FROM registry_person p "
            "JOIN space s USING (space_id) JOIN audit_event a ON a.space_id = s.space_id AND a.seq = 1"
        )
        return [(r["nir"], r["state"], r["first"]) for r in rows]

    [(nir, state, first)] = await rt.db.read("t", q)
    assert (nir, state) == (son["nir"], "notified")
    assert first.startswith("space:register notified|until=")
    space = await rt.db.read(
        "t", lambda conn: conn.fetchval("SELECT space_id FROM registry_person WHERE nir = $1", son["nir"])
    )
    [(to, _, text)] = await delivery.emails_of(rt, space)
    assert to == "claire.roux@exemple.fr" and text is not None and "Hugo Roux" in text
    assert await letters.letters_of(rt, space) == []
