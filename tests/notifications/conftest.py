"""The demo's access world and people's tokens (tests/access/conftest.py), for the notifications' stories."""

from tests.access.conftest import as_actor, world

__all__ = ["as_actor", "world"]
