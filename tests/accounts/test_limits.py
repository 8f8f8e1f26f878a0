"""Limits on every guessable secret, with counters in PostgreSQL shared by every app process (SECURITY V2 2.2.1;
docs/access-policy.md "Sign-in limits"). Counted per secret and source: these stories guess from one address;
tests/security/test_signin_limits.py tells what other addresses and trusted devices see."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from espace_sante.people import accounts, ratelimit, signin
from espace_sante.people.signin import SignInRefused
from espace_sante.runtime import Runtime
from tests.accounts.helpers import new_person, next_code, trace_actions


@pytest.fixture
async def second_process(runtime: Runtime) -> AsyncIterator[Runtime]:
    """Another app process: its own Runtime and connection pool on the same database."""
    other = await Runtime.open(runtime.settings.model_copy())
    yield other
    await other.close()


def _ip() -> str:
    return f"198.51.100.{secrets.randbelow(250) + 1}-{secrets.token_hex(2)}"


async def test_after_five_failures_from_one_address_it_waits_even_with_the_right_password_in_every_process(
    runtime: Runtime, second_process: Runtime, fhir: httpx.AsyncClient
) -> None:
    """A guesser at one address alternates between two app processes: the count is shared, and after the free
    failures that address must wait, the right password included, in both; the wait is traced once."""
    jeanne = await new_person(runtime, fhir)
    ip = _ip()
    limit = runtime.settings.signin_max_failures
    for attempt in range(limit):
        rt = runtime if attempt % 2 else second_process
        with pytest.raises(SignInRefused, match="incorrect"):
            await signin.password_step(rt, login=jeanne.login, password=f"mauvais {attempt} essai", ip=ip)
    for rt in (runtime, second_process):
        with pytest.raises(SignInRefused) as refused:
            await signin.password_step(rt, login=jeanne.login, password=jeanne.password, ip=ip)
        assert refused.value.message == accounts.LOCKED
    records = await trace_actions(runtime, jeanne.actor_id)
    assert [a for a, *_ in records].count("signin:locked") == 1
    assert [b for a, _, _, b in records if a == "signin:failure"][-1] == "locked"
    # The wait ends (moved back in time here), and the right password works again.
    async with runtime.db.pool.acquire() as conn:
        await conn.execute(
            "UPDATE signin_throttle SET locked_until = now() - interval '1 second' WHERE key = $1",
            ratelimit.per_source(
                ratelimit.password_key(accounts.login_key(jeanne.login)), ratelimit.Source(ip)
            ),
        )
    assert await signin.password_step(runtime, login=jeanne.login, password=jeanne.password, ip=ip)


async def test_concurrent_guesses_cannot_slip_past_the_limit(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """Twenty guesses at once from one address: the attempt is counted before the password is checked, so at
    most the limit are checked at all and the rest are refused as locked."""
    jeanne = await new_person(runtime, fhir)
    ip = _ip()

    async def guess(n: int) -> str:
        try:
            await signin.password_step(runtime, login=jeanne.login, password=f"essai numéro {n} raté", ip=ip)
        except SignInRefused as exc:
            return exc.message
        return "open"

    answers = await asyncio.gather(*(guess(n) for n in range(20)))
    assert answers.count(signin.WRONG) <= runtime.settings.signin_max_failures
    assert answers.count(accounts.LOCKED) >= 20 - runtime.settings.signin_max_failures
    with pytest.raises(SignInRefused, match="Trop d'essais"):
        await signin.password_step(runtime, login=jeanne.login, password=jeanne.password, ip=ip)


async def test_an_unknown_login_is_locked_the_same_way(runtime: Runtime) -> None:
    """No difference between a login that exists and one that does not: both wait after the limit."""
    login = f"inconnu-{secrets.token_hex(4)}@exemple.fr"
    ip = _ip()
    for n in range(runtime.settings.signin_max_failures):
        with pytest.raises(SignInRefused, match="incorrect"):
            await signin.password_step(runtime, login=login, password=f"essai {n} pour voir", ip=ip)
    with pytest.raises(SignInRefused, match="Trop d'essais"):
        await signin.password_step(runtime, login=login, password="encore un essai", ip=ip)


async def test_codes_are_limited_per_account_and_a_right_password_does_not_reset_them(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """Someone who knows Jeanne's password guesses codes: signing in again with the password between guesses
    does not give them more tries; after the limit even the right code is refused from that address."""
    jeanne = await new_person(runtime, fhir)
    ip = _ip()
    for n in range(runtime.settings.signin_max_failures):
        flow = await signin.password_step(runtime, login=jeanne.login, password=jeanne.password, ip=ip)
        with pytest.raises(SignInRefused):
            await signin.second_factor_step(
                runtime,
                flow_secret=flow,
                code=f"{n:06d}" if n % 2 else "ZZZZZ-ZZZZZ",
                ip=ip,
                user_agent="test",
            )
    flow = await signin.password_step(runtime, login=jeanne.login, password=jeanne.password, ip=ip)
    with pytest.raises(SignInRefused) as refused:
        await signin.second_factor_step(
            runtime, flow_secret=flow, code=next_code(jeanne.totp_secret), ip=ip, user_agent="test"
        )
    assert refused.value.message == accounts.LOCKED


async def test_one_address_is_limited_across_accounts(runtime: Runtime) -> None:
    """Password spraying: one address trying one password on many logins is stopped by the address's count
    (a lower limit than the default here, to keep the test short)."""
    limit = 8
    runtime = dataclasses.replace(
        runtime, settings=runtime.settings.model_copy(update={"signin_ip_max_failures": limit})
    )
    ip = _ip()
    messages = set()
    for n in range(limit + 1):
        try:
            await signin.password_step(
                runtime, login=f"cible-{n}-{uuid.uuid4().hex[:6]}@ex.fr", password="Printemps2026!!", ip=ip
            )
        except SignInRefused as exc:
            messages.add(exc.message)
    assert accounts.LOCKED in messages
