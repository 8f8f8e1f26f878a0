"""The demo's access world (tests/access/conftest.py), for the journeys through it."""

from tests.access.conftest import as_actor, world

__all__ = ["as_actor", "world"]
