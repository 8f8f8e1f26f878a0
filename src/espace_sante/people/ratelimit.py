"""Limits on guessing secrets that a stranger cannot turn into a lockout (SECURITY V2 2.2.1, NIST SP 800-63B
5.2.2; the numbers and their argument are in docs/access-policy.md, "Sign-in limits").

Every check of a guessable secret (password, TOTP code, recovery code, passkey assertion) first passes a gate
that counts the attempt in PostgreSQL, before the secret is checked, under several keys at once:

- per secret *and source* (`pw:<login digest>|ip:<address>`, `2fa:<account>|…`, `pk:<account>|…`): the source
  is the browser's trusted device for this account when it has one (`dev:<id>`, people/devices.py), else the
  client address (an IPv6 one by its /64, `address`). A few free failures, then a wait that doubles with every further failure (back-off), capped.
  A success from that source forgets them. Someone else's failures never make a source wait.
- per address, all logins together (`ip:<address>`, against trying one password on many logins): a larger
  allowance, then the same back-off. A trusted device is not counted here: it keeps its own allowance even
  behind an address someone else is abusing.
- per secret, all sources together (`pw:<login digest>`, `2fa:<account>`): a ceiling per hour that no
  distributed guesser gets past. It never makes anyone wait; what happens beyond it is the caller's rule
  (a password from an untrusted source is checked "blind", people/signin.py; codes are refused).

Counters live in the database so that every app process shares them.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from espace_sante.runtime import Runtime
from espace_sante.settings import Settings
from espace_sante.storage import ratelimit as store
from espace_sante.storage.db import Conn
from espace_sante.storage.ratelimit import Counter


@dataclass(frozen=True)
class Source:
    """Where an attempt comes from: the client address, and the browser's device when it is trusted for the
    account tried (checked by people/devices.py; "" otherwise)."""

    ip: str
    device: str = ""

    @property
    def trusted(self) -> bool:
        return bool(self.device)

    @property
    def key(self) -> str:
        return f"dev:{self.device}" if self.device else ip_key(self.ip)


def password_key(login_key: str) -> str:
    """The login's ceiling, whether the login exists or not (so a limit says nothing about existence)."""
    return "pw:" + hashlib.sha256(login_key.encode()).hexdigest()[:32]


def second_factor_key(account_id: object) -> str:
    return f"2fa:{account_id}"


def passkey_key(account_id: object) -> str:
    return f"pk:{account_id}"


def address(ip: str) -> str:
    """What a limit counts for a client address: an IPv4 address as itself, an IPv6 one by its /64, the
    network any one host is given (RFC 6177: one client would otherwise have 2^64 addresses, each with its
    own allowance); an IPv4-mapped address as IPv4. Sign-in and activation (spaces/activation.py) share it."""
    try:
        parsed = ipaddress.ip_address(ip.strip().split("%", 1)[0])
    except ValueError:
        return ip[:64] or "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def ip_key(ip: str) -> str:
    return f"ip:{address(ip)}"


def per_source(secret_key: str, source: Source) -> str:
    return f"{secret_key}|{source.key}"


def keys_for(secret_key: str, source: Source, *, ceiling: bool = True) -> list[str]:
    """The keys one attempt on a secret counts under: the secret and source, the secret's ceiling, and the
    address unless the device is trusted."""
    keys = [per_source(secret_key, source)]
    if ceiling:
        keys.append(secret_key)
    if not source.trusted:
        keys.append(ip_key(source.ip))
    return keys


@dataclass(frozen=True)
class Rule:
    """How one key counts. `ceiling`: a fixed window and a limit, never a wait. Otherwise `free` failures
    within the window, then a wait of `first_wait` seconds doubling with each failure up to `max_wait`; the
    count starts again after a window without attempts."""

    free: int
    window: int
    ceiling: bool = False
    first_wait: int = 0
    max_wait: int = 0


def rule(settings: Settings, key: str) -> Rule:
    if "|" in key:
        return Rule(
            settings.signin_max_failures,
            settings.signin_failure_window_seconds,
            first_wait=settings.signin_backoff_seconds,
            max_wait=settings.signin_lockout_seconds,
        )
    if key.startswith("ip:"):
        return Rule(
            settings.signin_ip_max_failures,
            settings.signin_failure_window_seconds,
            first_wait=settings.signin_backoff_seconds,
            max_wait=settings.signin_lockout_seconds,
        )
    limit = (
        settings.signin_code_max_failures if key.startswith("2fa:") else settings.signin_account_max_failures
    )
    return Rule(limit, settings.signin_account_window_seconds, ceiling=True)


def waiting(counter: Counter, now: datetime) -> datetime | None:
    """The end of the key's wait if it is waiting now."""
    return counter.locked_until if counter.locked_until is not None and counter.locked_until > now else None


def count(counter: Counter, now: datetime, r: Rule) -> Counter:
    """The counter after one more attempt (not waiting). The attempt that reaches the free allowance starts
    the wait for the next one, so that concurrent guesses cannot all be checked."""
    if r.ceiling:
        if counter.window_start <= now - timedelta(seconds=r.window):
            return Counter(1, now, None)
        return Counter(counter.failures + 1, counter.window_start, None)
    last = max(counter.window_start, counter.locked_until or counter.window_start)
    if last <= now - timedelta(seconds=r.window):
        counter = Counter(0, now, None)
    failures = counter.failures + 1
    until = counter.locked_until
    if failures >= r.free:
        wait = min(r.max_wait, r.first_wait * 2 ** min(failures - r.free, 30))
        until = now + timedelta(seconds=wait)
    return Counter(failures, counter.window_start, until)


@dataclass
class Gate:
    """The counted attempt: whether it may go on, and what the counts say."""

    keys: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    #: The end of the wait that refused this attempt (nothing was counted then), or None.
    locked_until: datetime | None = None
    #: Keys whose wait this attempt started (to trace it once).
    newly_locked: list[str] = field(default_factory=list)
    #: Ceiling keys this attempt went past.
    over: list[str] = field(default_factory=list)
    #: Each key's free allowance (to give an attempt back).
    free: dict[str, int] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return self.locked_until is None

    @property
    def over_ceiling(self) -> bool:
        return bool(self.over)


async def enter(rt: Runtime, keys: Sequence[str]) -> Gate:
    """Count one attempt under every key, in its own committed transaction (so concurrent attempts in any
    process see it at once). Refused, and counted nowhere, when a key is waiting."""
    settings = rt.settings

    async def work(conn: Conn) -> Gate:
        gate = Gate(list(dict.fromkeys(keys)))
        now, counters = await store.load(conn, gate.keys)
        waits = [
            until
            for key in gate.keys
            if not rule(settings, key).ceiling and (until := waiting(counters[key], now)) is not None
        ]
        if waits:
            gate.locked_until = max(waits)
            return gate
        for key in gate.keys:
            r = rule(settings, key)
            gate.free[key] = r.free
            after = count(counters[key], now, r)
            await store.save(conn, key, after)
            gate.counts[key] = after.failures
            if r.ceiling and after.failures > r.free:
                gate.over.append(key)
            elif not r.ceiling and after.failures == r.free:
                gate.newly_locked.append(key)
        return gate

    return await rt.db.interaction("signin_gate", work)


async def failed(conn: Conn, settings: Settings, gate: Gate) -> list[str]:
    """The secret was wrong. The attempt was counted before the check (and any wait it earns started then):
    nothing more to do; returns the keys whose wait this attempt started, to trace."""
    return list(gate.newly_locked)


async def not_a_guess(conn: Conn, gate: Gate) -> None:
    """The attempt turned out not to be a guess (a right TOTP code of a step already used): its count is
    given back everywhere, and any wait it started is lifted."""
    for key in gate.keys:
        await store.give_back_one(conn, key, gate.free.get(key, 0))


async def succeeded(conn: Conn, gate: Gate) -> None:
    """The secret was right: the failures from this source are forgotten (NIST SP 800-63B 5.2.2); the
    address and the ceiling only give back this one attempt (someone else's failures stay counted)."""
    for key in gate.keys:
        if "|" in key:
            await store.clear(conn, key)
        else:
            await store.give_back_one(conn, key, gate.free.get(key, 0))


async def forget(conn: Conn, key: str) -> None:
    """Forget one per-source key (its secret was proven right another way)."""
    await store.clear(conn, key)
