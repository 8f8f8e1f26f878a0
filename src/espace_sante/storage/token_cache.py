"""Resolved bearer tokens, cached in process memory so that a request does not pay a database round trip to
authenticate. Revocation stays immediate: revoking a token or disabling a client publishes a notification
(storage/notify.py) that every process applies on commit; while the listener is down, nothing is served from
the cache."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from espace_sante.access.actors import Actor

MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class Entry:
    actor: Actor
    expires_at: datetime


class TokenCache:
    def __init__(self) -> None:
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()
        #: Set by the runtime: True only while the invalidation listener is connected.
        self.enabled = False

    def get(self, token_hash: bytes) -> Actor | None:
        if not self.enabled:
            return None
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if entry.expires_at <= datetime.now(UTC):
            self._entries.pop(token_hash, None)
            return None
        return entry.actor

    def put(self, token_hash: bytes, actor: Actor, expires_at: datetime) -> None:
        if not self.enabled:
            return
        self._entries[token_hash] = Entry(actor, expires_at)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)

    def invalidate(self, message: str) -> None:
        """Apply a notification: `token:<sha256 hex>` or `client:<client_id>`."""
        kind, _, value = message.partition(":")
        if kind == "token":
            try:
                self._entries.pop(bytes.fromhex(value), None)
            except ValueError:
                self.clear()
        elif kind == "client":
            for key in [
                k
                for k, e in self._entries.items()
                # a machine client, an app (its id is the client's), a professional through their software
                if (e.actor.kind in ("client", "app") and e.actor.id == value) or e.actor.via == value
            ]:
                del self._entries[key]
        else:
            self.clear()  # an unknown message: be safe

    def clear(self) -> None:
        self._entries.clear()
