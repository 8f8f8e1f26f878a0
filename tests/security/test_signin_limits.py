"""Sign-in limits that a stranger cannot turn into a lockout (issue 16 #3; docs/access-policy.md "Sign-in
limits"). Before: five wrong passwords from anywhere locked a login for everyone for 15 minutes, and a replayed
code counted toward it. Each story signs in through the real pages from several loopback addresses (httpx's
ASGITransport `client=`), as people in different places would."""

from __future__ import annotations

import dataclasses
import itertools
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from espace_sante.app import create_app
from espace_sante.people import accounts, devices, ratelimit, signin, totp
from espace_sante.runtime import Runtime
from tests.accounts.helpers import HTTPS, Person, csrf_of, new_person, next_code, sign_in, trace_actions

_HOSTS: Iterator[int] = itertools.count(2 + secrets.randbelow(50))


def new_address() -> str:
    """A loopback address no other story of this file uses: a person somewhere else."""
    n = next(_HOSTS)
    return f"127.0.{n // 250}.{n % 250 + 2}"


def at(app: Any, address: str, **headers: str) -> httpx.AsyncClient:
    """A fresh browser (its own cookies) at `address`."""
    transport = httpx.ASGITransport(app=app, client=(address, 50123))
    return httpx.AsyncClient(transport=transport, base_url=HTTPS, follow_redirects=False, headers=headers)


async def type_password(client: httpx.AsyncClient, login: str, password: str) -> httpx.Response:
    page = await client.get("/connexion")
    return await client.post(
        "/connexion", data={"csrf": csrf_of(page.text), "login": login, "password": password}
    )


async def type_code(client: httpx.AsyncClient, code: str) -> httpx.Response:
    form = await client.get("/connexion/code")
    assert form.status_code == 200, form.text
    return await client.post("/connexion/code", data={"csrf": csrf_of(form.text), "code": code})


def with_settings(runtime: Runtime, **changes: Any) -> Any:
    """The real app with other limits (smaller numbers keep the stories short)."""
    return create_app(
        runtime=dataclasses.replace(runtime, settings=runtime.settings.model_copy(update=changes))
    )


async def wait_left(runtime: Runtime, key: str) -> timedelta:
    async with runtime.db.pool.acquire() as conn:
        left: timedelta | None = await conn.fetchval(
            "SELECT locked_until - now() FROM signin_throttle WHERE key = $1", key
        )
    return left or timedelta(0)


async def end_wait(runtime: Runtime, key: str) -> None:
    """Time passes: the key's wait is over."""
    async with runtime.db.pool.acquire() as conn:
        await conn.execute(
            "UPDATE signin_throttle SET locked_until = now() - interval '1 second' WHERE key = $1", key
        )


def wrong_code(person: Person) -> str:
    """A well-formed code that is not valid now."""
    return totp.code_at(person.totp_secret, totp.current_step() + 40)


async def test_strangers_failing_from_other_addresses_never_lock_the_holder_out(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    """Three strangers guess Jeanne's password, each until told to wait. Jeanne, from her own address, signs
    in at once with her password and her code."""
    jeanne = await new_person(runtime, fhir)
    answers = []
    for n in range(3):
        async with at(app, new_address()) as stranger:
            for k in range(7):
                answers.append(
                    (await type_password(stranger, jeanne.login, f"devinette {n}-{k} ratée")).status_code
                )
    assert answers.count(400) == 3 * runtime.settings.signin_max_failures and 429 in answers
    async with at(app, new_address()) as holder:
        done = await sign_in(holder, jeanne)
    assert done.status_code == 303 and done.headers["location"] == "/compte/securite"


async def test_one_address_waits_longer_after_each_further_failure_and_a_success_forgets(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """From one address: five free failures, then 30 s, 1 min, 2 min… up to 15 min, the right password
    included while waiting; the right password afterwards forgets that address's failures."""
    jeanne = await new_person(runtime, fhir)
    ip = new_address()
    key = ratelimit.per_source(ratelimit.password_key(accounts.login_key(jeanne.login)), ratelimit.Source(ip))

    async def answer(password: str) -> str:
        try:
            await signin.password_step(runtime, login=jeanne.login, password=password, ip=ip)
        except signin.SignInRefused as exc:
            return exc.message
        return "ouvert"

    for n in range(runtime.settings.signin_max_failures):
        assert await answer(f"essai raté {n}") == signin.WRONG
    assert timedelta(seconds=25) < await wait_left(runtime, key) <= timedelta(seconds=30)
    assert await answer(jeanne.password) == accounts.LOCKED
    for expected in (60, 120, 240):
        await end_wait(runtime, key)
        assert await answer("encore raté") == signin.WRONG
        left = await wait_left(runtime, key)
        assert timedelta(seconds=expected - 5) < left <= timedelta(seconds=expected)
    async with runtime.db.pool.acquire() as conn:  # many failures later
        await conn.execute("UPDATE signin_throttle SET failures = 40 WHERE key = $1", key)
    await end_wait(runtime, key)
    assert await answer("toujours raté") == signin.WRONG
    assert await wait_left(runtime, key) > timedelta(seconds=runtime.settings.signin_lockout_seconds - 5)
    await end_wait(runtime, key)
    assert await answer(jeanne.password) == "ouvert"
    async with runtime.db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM signin_throttle WHERE key = $1", key) == 0


async def test_a_trusted_device_keeps_its_allowance_behind_an_address_someone_abuses(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """Jeanne signed in from her family's computer before. Someone on the same network (same address) guesses
    her password and sprays others' until the address must wait: a new browser there must wait too, but
    Jeanne's computer signs in at once."""
    app = with_settings(runtime, signin_ip_max_failures=8)
    jeanne = await new_person(runtime, fhir)
    home = new_address()
    async with at(app, home) as computer:
        assert (await sign_in(computer, jeanne)).status_code == 303
        assert devices.COOKIE in computer.cookies
        async with at(app, home) as intruder:
            for n in range(6):
                await type_password(intruder, jeanne.login, f"devinette {n}")
            for n in range(4):
                await type_password(
                    intruder, f"voisin-{n}-{secrets.token_hex(3)}@exemple.fr", "Printemps2026!!"
                )
            assert (await type_password(intruder, jeanne.login, jeanne.password)).status_code == 429
        async with at(app, home) as new_browser:
            assert (await type_password(new_browser, jeanne.login, jeanne.password)).status_code == 429
        again = await sign_in(computer, jeanne)
        assert again.status_code == 303 and again.headers["location"] == "/compte/securite"


async def test_past_the_logins_ceiling_a_password_is_checked_blind_and_the_holder_still_signs_in(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """Many addresses guess Jeanne's password, one or two tries each, past the login's ceiling (4 here). From
    then on a password typed in a browser that is not Jeanne's own always leads to the code step, and nothing
    tells a right password from a wrong one without the right code. Jeanne's laptop still gets plain answers;
    from a new address, her password and code still sign her in. A cookie Mallory got by signing in to her
    own account counts for nothing on Jeanne's."""
    app = with_settings(runtime, signin_account_max_failures=4)
    jeanne = await new_person(runtime, fhir)
    mallory = await new_person(runtime, fhir)
    async with at(app, new_address()) as laptop, at(app, new_address()) as mallorys:
        assert (await sign_in(laptop, jeanne)).status_code == 303
        assert (await sign_in(mallorys, mallory)).status_code == 303
        for n in range(2):
            async with at(app, new_address()) as guesser:
                for k in range(2):
                    assert (await type_password(guesser, jeanne.login, f"essai {n}.{k}")).status_code == 400

        async with at(app, new_address()) as guesser:
            blind = await type_password(guesser, jeanne.login, "encore un essai au hasard")
            assert blind.status_code == 303 and blind.headers["location"] == "/connexion/code"
            assert jeanne.login in (await guesser.get("/connexion/code")).text
            refused = await type_code(guesser, wrong_code(jeanne))
            assert refused.status_code == 400 and signin.BLIND_WRONG.split(" / ")[0] in refused.text
        async with at(app, new_address()) as knows_the_password:
            blind = await type_password(knows_the_password, jeanne.login, jeanne.password)
            assert blind.status_code == 303 and blind.headers["location"] == "/connexion/code"
            refused = await type_code(knows_the_password, wrong_code(jeanne))
            assert refused.status_code == 400 and signin.BLIND_WRONG.split(" / ")[0] in refused.text
        mallorys_guess = await type_password(mallorys, jeanne.login, "essai de mallory")
        assert mallorys_guess.headers.get("location") == "/connexion/code"

        wrong = await type_password(laptop, jeanne.login, "faute de frappe")
        assert wrong.status_code == 400 and signin.WRONG.split(" / ")[0] in wrong.text
    async with at(app, new_address()) as phone:
        done = await sign_in(phone, jeanne)
        assert done.status_code == 303 and done.headers["location"] == "/compte/securite"
    bases = [(d, b) for a, _, d, b in await trace_actions(runtime, jeanne.actor_id) if a == "signin:failure"]
    assert any(d.endswith(" blind") and b == "wrong secret" for d, b in bases)


async def test_a_replayed_code_is_answered_as_such_and_never_counted(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    """Jeanne signs in on her laptop, then types the same code again and again on her tablet: each time she
    is told the code was already used, more times than the free failures, and the next code lets her in."""
    jeanne = await new_person(runtime, fhir)
    code = next_code(jeanne.totp_secret)
    async with at(app, new_address()) as laptop:
        assert (await sign_in(laptop, jeanne, code=code)).status_code == 303
    async with at(app, new_address()) as tablet:
        assert (await type_password(tablet, jeanne.login, jeanne.password)).status_code == 303
        for _ in range(runtime.settings.signin_max_failures + 3):
            replay = await type_code(tablet, code)
            assert replay.status_code == 400 and "Code déjà utilisé" in replay.text
        done = await type_code(tablet, next_code(jeanne.totp_secret))
        assert done.status_code == 303 and done.headers["location"] == "/compte/securite"
    actions = [(a, b) for a, _, _, b in await trace_actions(runtime, jeanne.actor_id)]
    assert ("signin:failure", "replayed code") in actions and not any(
        a == "signin:locked" for a, _ in actions
    )


async def test_past_the_codes_ceiling_only_a_trusted_device_may_type_a_code_and_the_holder_is_told(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    """Someone who has Jeanne's password guesses codes from many addresses, a few each. Past the account's
    codes ceiling even the right code from a new address is refused, and Jeanne gets one notice; her own
    laptop still signs in with her code."""
    address = f"jeanne-{secrets.token_hex(4)}@exemple.fr"
    jeanne = await new_person(runtime, fhir, email=address)
    async with at(app, new_address()) as laptop:
        assert (await sign_in(laptop, jeanne)).status_code == 303
        for _ in range(runtime.settings.signin_code_max_failures // 2 + 1):
            ip = new_address()
            for _ in range(2):
                flow = await signin.password_step(
                    runtime, login=jeanne.login, password=jeanne.password, ip=ip
                )
                with pytest.raises(signin.SignInRefused):
                    await signin.second_factor_step(
                        runtime, flow_secret=flow, code=wrong_code(jeanne), ip=ip, user_agent="devin"
                    )
        async with at(app, new_address()) as elsewhere:
            refused = await sign_in(elsewhere, jeanne)
            assert (
                refused.status_code == 429
                and accounts.LOCKED.split(" / ")[0].replace("'", "&#39;") in refused.text
            )
        again = await sign_in(laptop, jeanne)
        assert again.status_code == 303 and again.headers["location"] == "/compte/securite"
    async with runtime.db.pool.acquire() as conn:
        bodies = await conn.fetch("SELECT body FROM outbox WHERE recipient = $1", address)
    assert [b["body"] for b in bodies if "codes faux" in b["body"]] and len(bodies) == 1
