"""Limits on guessing secrets (SECURITY V2 2.2.1; the numbers are in docs/access-policy.md, "Sign-in limits").

Every check of a guessable secret (password, TOTP code, recovery code, passkey assertion) first passes a gate
that counts the attempt in PostgreSQL under several keys at once: the account and factor (`pw:<login
digest>` for passwords, whether the login exists or not, so a lockout says nothing about existence;
`2fa:<account>` for codes; `pk:<account>` for passkeys) and the client address (`ip:<address>`). When a key
has reached its limit within the window it is locked for the lockout period: every attempt on it is refused
without checking the secret, the right one included. Counters live in the database so that every app process
shares them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from espace_sante.runtime import Runtime
from espace_sante.settings import Settings
from espace_sante.storage import ratelimit as store
from espace_sante.storage.db import Conn


def password_key(login_key: str) -> str:
    return "pw:" + hashlib.sha256(login_key.encode()).hexdigest()[:32]


def second_factor_key(account_id: object) -> str:
    return f"2fa:{account_id}"


def passkey_key(account_id: object) -> str:
    return f"pk:{account_id}"


def ip_key(ip: str) -> str:
    return f"ip:{ip or 'unknown'}"


def _limit(settings: Settings, key: str) -> int:
    return settings.signin_ip_max_failures if key.startswith("ip:") else settings.signin_max_failures


@dataclass
class Gate:
    """The counted attempt: whether it may go on, and the counts taken."""

    keys: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    locked_until: datetime | None = None
    #: Keys this attempt locked (to trace the lockout once).
    newly_locked: list[str] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return self.locked_until is None


async def enter(rt: Runtime, keys: Sequence[str]) -> Gate:
    """Count one attempt under every key, in its own committed transaction (so concurrent attempts in any
    process see it at once). Refused when a key is locked or already over its limit."""
    settings = rt.settings

    async def count(conn: Conn) -> Gate:
        gate = Gate(list(dict.fromkeys(keys)))
        for key in gate.keys:
            failures, until = await store.attempt(conn, key, settings.signin_failure_window_seconds)
            gate.counts[key] = failures
            if until is not None:
                gate.locked_until = max(gate.locked_until or until, until)
            elif failures > _limit(settings, key):
                if await store.lock(conn, key, settings.signin_lockout_seconds):
                    gate.newly_locked.append(key)
                gate.locked_until = await store.locked_until(conn, key)
        return gate

    return await rt.db.interaction("signin_gate", count)


async def failed(conn: Conn, settings: Settings, gate: Gate) -> list[str]:
    """The secret was wrong: lock every key that has now reached its limit (the next attempt, even with the
    right secret, is refused). Returns the keys locked now."""
    locked = []
    for key in gate.keys:
        if gate.counts.get(key, 0) >= _limit(settings, key) and await store.lock(
            conn, key, settings.signin_lockout_seconds
        ):
            locked.append(key)
    return locked


async def succeeded(conn: Conn, gate: Gate) -> None:
    """The secret was right: the account's counts start again; the address gives back this one attempt."""
    for key in gate.keys:
        if key.startswith("ip:"):
            await store.give_back(conn, key)
        else:
            await store.clear(conn, key)
