"""The demo's access world (tests/access/conftest.py), for the trace's stories about a child's record."""

from tests.access.conftest import as_actor, world

__all__ = ["as_actor", "world"]
