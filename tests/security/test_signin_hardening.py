"""The sign-in limits after their security review (docs/access-policy.md "Sign-in limits"): an IPv6 /64 is one
source; the step-up obeys the codes' ceiling; the blind step's code answer moves the same counters whether the
password was right or not; a credential change or "sign out everywhere" ends every trusted device; a number
written in non-ASCII digits is a clean refusal, not a 500."""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from espace_sante.people import accounts, devices, ratelimit, sessions, signin, stepup
from espace_sante.runtime import Runtime
from espace_sante.spaces import activation
from espace_sante.storage.sessions import Session
from tests.accounts.helpers import PASSWORD, Person, csrf_of, new_person, next_code, sign_in, trace_actions
from tests.security.test_signin_limits import at, new_address, type_password, wrong_code


def a_network() -> str:
    """The first half of an IPv6 /64 no other story uses (2001:db8::/32 is for documentation)."""
    # Written as ipaddress prints it (no leading zeros), so that the expected key reads the same.
    return f"2001:db8:{secrets.randbelow(0xFFFF) + 1:x}:{secrets.randbelow(0xFFFF) + 1:x}"


async def counters(runtime: Runtime) -> dict[str, int]:
    async with runtime.db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT key, failures FROM signin_throttle")
    return {r["key"]: r["failures"] for r in rows}


def kind(key: str) -> str:
    """`2fa+ip` for `2fa:<account>|ip:<address>`: what a key counts, without whose or where."""
    return "+".join(part.split(":", 1)[0] for part in key.split("|"))


async def signed_in(runtime: Runtime, person: Person, ip: str) -> signin.SignedIn:
    flow = await signin.password_step(runtime, login=person.login, password=person.password, ip=ip)
    return await signin.second_factor_step(
        runtime, flow_secret=flow, code=next_code(person.totp_secret), ip=ip, user_agent="test"
    )


# --- 1. an IPv6 /64 is one source ------------------------------------------------------------------------------


async def test_the_addresses_of_one_ipv6_network_share_one_sign_in_allowance(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    """Before: each of the 2^64 addresses of one network had its own five free failures. Now a second address
    of the same /64 waits as soon as the first one does; another /64 does not, nor another IPv4 address."""
    jeanne = await new_person(runtime, fhir)
    net = a_network()
    async with at(app, f"{net}::1") as first:
        for n in range(runtime.settings.signin_max_failures):
            assert (await type_password(first, jeanne.login, f"essai {n}")).status_code == 400
    async with at(app, f"{net}:0:0:0:2") as second:
        assert (await type_password(second, jeanne.login, "encore")).status_code == 429
    async with at(app, f"{a_network()}::1") as elsewhere:
        assert (await type_password(elsewhere, jeanne.login, "ailleurs")).status_code == 400
    assert ratelimit.ip_key(f"{net}::1") == ratelimit.ip_key(f"{net}:ffff::9") == f"ip:{net}::/64"
    assert ratelimit.ip_key("192.0.2.1") != ratelimit.ip_key("192.0.2.2")
    assert ratelimit.ip_key("::ffff:192.0.2.1") == ratelimit.ip_key("192.0.2.1") == "ip:192.0.2.1"
    # Activation counts addresses by the same rule (one helper).
    assert activation.ip_key(f"{net}::1") == f"act-ip:{net}::/64"


# --- 2. the step-up obeys the codes' ceiling -------------------------------------------------------------------


async def test_past_the_codes_ceiling_the_step_up_takes_codes_only_from_a_trusted_device(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """Someone in Jeanne's session (who knows her password) guesses codes on the step-up page from many
    addresses. Before: the codes' ceiling was counted there but never checked, and no notice went out. Now,
    past it, even the right code from an untrusted browser is refused, Jeanne is told once, and her own
    laptop (trusted device) still confirms."""
    address = f"jeanne-{secrets.token_hex(4)}@exemple.fr"
    jeanne = await new_person(runtime, fhir, email=address)
    laptop = await signed_in(runtime, jeanne, new_address())
    session = laptop.session
    for _ in range(runtime.settings.signin_code_max_failures // 2 + 1):
        ip = new_address()
        for _ in range(2):
            with pytest.raises(stepup.StepUpRefused):
                await stepup.confirm(
                    runtime, session, password=jeanne.password, code=wrong_code(jeanne), ip=ip
                )
    with pytest.raises(stepup.StepUpRefused) as refused:
        await stepup.confirm(
            runtime, session, password=jeanne.password, code=next_code(jeanne.totp_secret), ip=new_address()
        )
    assert refused.value.message == accounts.LOCKED
    confirmed = await stepup.confirm(
        runtime,
        session,
        password=jeanne.password,
        code=next_code(jeanne.totp_secret),
        ip=new_address(),
        device_cookie=laptop.device_cookie,
    )
    assert confirmed.auth_time >= session.auth_time
    async with runtime.db.pool.acquire() as conn:
        bodies = await conn.fetch("SELECT body FROM outbox WHERE recipient = $1", address)
    assert len([b for b in bodies if "codes faux" in b["body"]]) == 1


async def test_the_step_up_counts_per_source(runtime: Runtime, fhir: httpx.AsyncClient) -> None:
    """A wrong confirmation is counted under this source's keys (password and codes), as at sign-in."""
    jeanne = await new_person(runtime, fhir)
    ip = new_address()
    session = (await signed_in(runtime, jeanne, ip)).session
    with pytest.raises(stepup.StepUpRefused):
        await stepup.confirm(runtime, session, password="pas le bon", code=wrong_code(jeanne), ip=ip)
    source = ratelimit.Source(ip)
    login = accounts.login_key(jeanne.login)
    counted = await counters(runtime)
    assert counted[ratelimit.per_source(ratelimit.password_key(login), source)] == 1
    assert counted[ratelimit.per_source(ratelimit.second_factor_key(jeanne.account_id), source)] == 1


# --- 3. the blind step's code answer --------------------------------------------------------------------------


async def test_the_blind_code_step_moves_the_same_counters_whether_the_password_was_right_or_not(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """Past the login's ceiling the code step answers the same; before, a wrong password's step ended at once
    while a right one went through the codes' gate (one more counter update, the address counted): the work
    told them apart. Now both move a per-source codes counter, a codes ceiling and the address, by one."""
    rt = dataclasses.replace(
        runtime,
        settings=runtime.settings.model_copy(
            update={"signin_account_max_failures": 2, "signin_code_max_failures": 1}
        ),
    )
    jeanne = await new_person(rt, fhir)
    for n in range(2):  # the login's ceiling reached: from now on a password is checked blind
        with pytest.raises(signin.SignInRefused):
            await signin.password_step(rt, login=jeanne.login, password=f"devinette {n}", ip=new_address())

    async def code_step_moves(password: str) -> dict[str, int]:
        ip = new_address()
        flow = await signin.password_step(rt, login=jeanne.login, password=password, ip=ip)
        before = await counters(rt)
        with pytest.raises(signin.SignInRefused) as refused:
            await signin.second_factor_step(
                rt, flow_secret=flow, code=wrong_code(jeanne), ip=ip, user_agent="x"
            )
        assert refused.value.message == signin.BLIND_WRONG
        after = await counters(rt)
        moved = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
        return {kind(k): v for k, v in sorted(moved.items())}

    wrong = await code_step_moves("pas le bon mot de passe")
    right = await code_step_moves(jeanne.password)
    assert wrong == right == {"2fa+ip": 1, "2fa": 1, "ip": 1}
    # Past the stand-in's ceiling (one code here) a wrong password's code is still checked (against nothing),
    # not cut short: the step takes as long as with the right password.
    for _ in range(2):
        assert await code_step_moves("toujours pas le bon") == right
    anonymous = "login:" + hashlib.sha256(accounts.login_key(jeanne.login).encode()).hexdigest()[:16]
    bases = [b for a, _, d, b in await trace_actions(rt, anonymous) if d.startswith(("totp", "recovery"))]
    assert bases and set(bases) == {"wrong secret"}


# --- 4. a credential change ends every trusted device ----------------------------------------------------------


async def counted_from_the_address(runtime: Runtime, person: Person, ip: str, cookie: str) -> bool:
    """Whether a wrong password typed in the browser holding `cookie` counts under the address (not trusted)."""
    with pytest.raises(signin.SignInRefused):
        await signin.password_step(runtime, login=person.login, password="faute", ip=ip, device_cookie=cookie)
    key = ratelimit.per_source(ratelimit.password_key(accounts.login_key(person.login)), ratelimit.Source(ip))
    return key in await counters(runtime)


async def test_signing_out_everywhere_or_changing_a_credential_ends_every_trusted_device(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    """Before, the cookie stayed good for 90 days whatever happened. Now each of the three events makes the
    laptop an unknown browser again (counted under its address) until it signs in again."""
    jeanne = await new_person(runtime, fhir)
    account = await accounts.get(runtime, jeanne.account_id)
    assert account is not None

    async def sign_out_everywhere(done: signin.SignedIn) -> None:
        await sessions.end_everywhere(runtime, done.session)

    async def change_password(done: signin.SignedIn) -> None:
        new = f"{PASSWORD}-{secrets.token_hex(3)}"
        await accounts.change_password(
            runtime, account, current=jeanne.password, new=new, keep_session=None, ip=new_address()
        )
        jeanne.password = new

    async def change_totp(done: signin.SignedIn) -> None:
        secret, _ = await accounts.begin_totp(runtime, account)
        await accounts.confirm_totp(runtime, account, next_code(secret), ip=new_address())
        jeanne.totp_secret = secret

    for event in (sign_out_everywhere, change_password, change_totp):
        ip = new_address()
        done = await signed_in(runtime, jeanne, ip)
        assert not await counted_from_the_address(runtime, jeanne, ip, done.device_cookie), event.__name__
        await event(done)
        assert await counted_from_the_address(runtime, jeanne, new_address(), done.device_cookie), (
            event.__name__
        )
    # Signing in again trusts the browser again.
    ip = new_address()
    again = await signed_in(runtime, jeanne, ip)
    assert not await counted_from_the_address(runtime, jeanne, ip, again.device_cookie)


# --- 6. non-ASCII digits ---------------------------------------------------------------------------------------


async def test_a_device_cookie_with_non_ascii_digits_is_ignored_not_a_500(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    """`"²".isdigit()` is true and `int("²")` fails: a forged cookie made the sign-in page answer 500."""
    jeanne = await new_person(runtime, fhir)
    hexa = jeanne.account_id.hex
    for forged in (f"d.{hexa}.²³.mac", f"d.{hexa}.²³.0.mac", f"d.{hexa}.9999999999.².mac"):
        async with at(app, new_address()) as client:
            page = await client.get("/connexion")
            # Raw bytes, as any client may send them (httpx's cookie jar would refuse; the server reads Latin-1).
            jar = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
            answer = await client.post(
                "/connexion",
                data={"csrf": csrf_of(page.text), "login": jeanne.login, "password": "faute"},
                headers=[(b"Cookie", f"{jar}; {devices.COOKIE}={forged}".encode("latin-1"))],
            )
            assert answer.status_code == 400, (forged, answer.text[:200])


def test_a_max_age_in_non_ascii_digits_asks_nothing() -> None:
    """An OpenID Connect `max_age` of "²" is not a number: it asks nothing (before: a 500)."""
    fields = {f.name: None for f in dataclasses.fields(Session)}
    session = Session(**{**fields, "auth_time": datetime.now(UTC)})
    assert stepup.within(session, "²") is True
    assert stepup.within(session, "٣٠٠") is True


async def test_the_sign_in_still_works_with_a_fresh_cookie(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    """The new cookie format round-trips through the real pages."""
    jeanne = await new_person(runtime, fhir)
    async with at(app, new_address()) as laptop:
        assert (await sign_in(laptop, jeanne)).status_code == 303
        value = laptop.cookies.get(devices.COOKIE)
        assert value is not None and len(value.split(".")) == 5
