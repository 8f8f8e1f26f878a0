"""The ids the bulk paths draw themselves (fhir/compartment.py): time-ordered space ids (UUID version 7) and
random ones (version 4), both asyncpg's UUID, which must behave as `uuid.UUID` everywhere."""

from __future__ import annotations

import time
import uuid

from espace_sante.fhir import compartment


def test_random_ids_are_version_4_unique_and_plain_uuids() -> None:
    ids = [compartment.random_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for made in ids[:100]:
        plain = uuid.UUID(str(made))
        assert (made.version, made.variant) == (4, uuid.RFC_4122)
        assert made == plain and hash(made) == hash(plain) and {plain: 1}[made] == 1


def test_space_ids_are_version_7_in_creation_order() -> None:
    before = time.time_ns() // 1_000_000
    spaces = [space for space, _ in compartment.new_spaces(1000)]
    after = time.time_ns() // 1_000_000
    assert len(set(spaces)) == 1000
    for space in spaces:
        assert (space.version, space.variant) == (7, uuid.RFC_4122)
        assert before <= int.from_bytes(space.bytes[:6], "big") <= after
    first = compartment.new_spaces(1)[0][0]
    time.sleep(0.002)
    assert compartment.new_spaces(1)[0][0] > first  # a later batch sorts after: appends to the indexes
