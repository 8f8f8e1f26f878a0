"""Accounts as other parts of the system use them: the demo loader (`ensure_local_account`), federation
(`find_by_actor`), operators at the command line, and recovery codes redeemed concurrently."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys

import httpx
import pyotp
import pytest

from espace_sante.errors import BadRequest, Conflict
from espace_sante.people import accounts, sessions, signin, totp
from espace_sante.runtime import Runtime
from espace_sante.storage import accounts as store
from tests.accounts.helpers import PASSWORD, new_holder_ins, new_person, trace_actions


async def test_the_demo_loader_can_ensure_an_account_with_a_known_password_and_totp(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    ins = await new_holder_ins(fhir)
    secret = pyotp.random_base32()
    login = f"Demo.Titulaire-{secrets.token_hex(3)}@Exemple.fr"
    first = await accounts.ensure_local_account(
        runtime, kind="holder", actor_id=ins, login=login, password=PASSWORD, totp_secret=secret
    )
    again = await accounts.ensure_local_account(
        runtime, kind="holder", actor_id=ins, login=login.lower(), password=PASSWORD, totp_secret=secret
    )
    assert first == again
    found = await accounts.find_by_actor(runtime, "holder", ins)
    assert found is not None and found.account_id == first and found.login == login
    # The known TOTP secret works for a sign-in.
    flow = await signin.password_step(runtime, login=login, password=PASSWORD, ip="192.0.2.10")
    done = await signin.second_factor_step(
        runtime, flow_secret=flow, code=pyotp.TOTP(secret).now(), ip="192.0.2.10", user_agent="demo"
    )
    assert done.session.acr == "eidas2"
    assert (await trace_actions(runtime, ins))[0][0] == "account:create"


async def test_an_account_is_refused_for_a_taken_login_an_unknown_person_or_a_weak_password(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    other = await new_holder_ins(fhir)
    with pytest.raises(Conflict):
        await accounts.ensure_local_account(
            runtime, kind="holder", actor_id=other, login=jeanne.login.upper(), password=PASSWORD
        )
    with pytest.raises(Conflict):
        await accounts.ensure_local_account(
            runtime,
            kind="holder",
            actor_id=jeanne.actor_id,
            login="autre-login@exemple.fr",
            password=PASSWORD,
        )
    with pytest.raises(BadRequest, match="introuvable"):
        await accounts.ensure_local_account(
            runtime,
            kind="holder",
            actor_id="299999999999999",
            login="x-inconnu@exemple.fr",
            password=PASSWORD,
        )
    with pytest.raises(BadRequest, match="trop courant"):
        await accounts.ensure_local_account(
            runtime,
            kind="holder",
            actor_id=other,
            login=f"faible-{secrets.token_hex(3)}",
            password="motdepasse123",
        )
    with pytest.raises(BadRequest, match="Type de compte"):
        await accounts.ensure_local_account(
            runtime, kind="insurer", actor_id=other, login="assureur", password=PASSWORD
        )
    assert await accounts.find_by_actor(runtime, "holder", other) is None


async def test_twenty_concurrent_redeems_of_one_recovery_code_let_exactly_one_through(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    peppers = __import__("espace_sante.people.passwords", fromlist=["peppers"]).peppers(runtime.settings)
    digests = totp.recovery_digests(peppers, jeanne.account_id, jeanne.recovery_codes[0])

    async def redeem() -> bool:
        return await runtime.db.interaction(
            "test_redeem", store.use_recovery_code, jeanne.account_id, digests
        )

    results = await asyncio.gather(*(redeem() for _ in range(20)))
    assert results.count(True) == 1
    assert (await accounts.factors(runtime, jeanne.account_id)).recovery_codes_left == 9


async def test_totp_secrets_and_recovery_codes_are_not_stored_in_clear(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    async with runtime.db.pool.acquire() as conn:
        blob = await conn.fetchval(
            "SELECT secret_enc FROM account_totp WHERE account_id = $1", jeanne.account_id
        )
        hashes = await conn.fetch(
            "SELECT code_hash FROM account_recovery_code WHERE account_id = $1", jeanne.account_id
        )
    assert jeanne.totp_secret.encode() not in bytes(blob)
    stored = b"".join(bytes(r["code_hash"]) for r in hashes)
    for code in jeanne.recovery_codes:
        assert code.encode() not in stored and code.replace("-", "").encode() not in stored


async def test_a_federation_sign_in_can_open_a_session_for_a_found_account(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """What federation sign-in will do: find the account of the identity the provider returned, open a session
    at the level the provider vouched for; the record is written with the session."""
    jeanne = await new_person(runtime, fhir)
    account = await accounts.find_by_actor(runtime, "holder", jeanne.actor_id)
    assert account is not None
    secret, session = await sessions.start(
        runtime, account.account_id, acr="eidas2", method="franceconnect+", user_agent="ua", ip="192.0.2.1"
    )
    found = await sessions.current(runtime, secret)
    assert found is not None and found.session_id == session.session_id and found.method == "franceconnect+"
    with pytest.raises(ValueError, match="assurance level"):
        await sessions.start(runtime, account.account_id, acr="maximum", method="x", user_agent="", ip="")
    records = await trace_actions(runtime, jeanne.actor_id)
    assert records[-1][0] == "signin:success" and records[-1][2].startswith("franceconnect+")


def _cli(runtime: Runtime, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESPACE_SANTE_") and k != "DATABASE_URL"}
    env.update(
        {
            "DATABASE_URL": runtime.settings.database_url or "",
            "ESPACE_SANTE_DATA_DIR": str(runtime.settings.data_dir),
            "ESPACE_SANTE_KEK": runtime.settings.kek or "",
            "PYTHONWARNINGS": "ignore",
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "espace_sante", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


async def test_an_operator_creates_an_account_at_the_command_line_and_disables_it(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    ins = await new_holder_ins(fhir)
    login = f"cli-{secrets.token_hex(3)}@exemple.fr"
    done = await asyncio.to_thread(
        _cli, runtime, "account", "create", "--kind", "holder", "--actor-id", ins, "--login", login,
        "--password-stdin", "--totp", stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "secret TOTP" in done.stdout and done.stdout.count("-") >= 10
    secret = done.stdout.split("secret TOTP / TOTP secret: ", 1)[1].split()[0]
    flow = await signin.password_step(runtime, login=login, password=PASSWORD, ip="192.0.2.20")
    await signin.second_factor_step(
        runtime, flow_secret=flow, code=pyotp.TOTP(secret).now(), ip="192.0.2.20", user_agent="cli test"
    )
    listed = await asyncio.to_thread(_cli, runtime, "account", "sessions", "--login", login)
    assert listed.returncode == 0 and "password+totp" in listed.stdout and "eidas2" in listed.stdout
    weak = await asyncio.to_thread(
        _cli, runtime, "account", "create", "--kind", "operator", "--actor-id", "agent", "--login", "agent"
    )
    assert weak.returncode == 2 and "second facteur" in weak.stderr and "Traceback" not in weak.stderr
    off = await asyncio.to_thread(_cli, runtime, "account", "disable", "--login", login)
    assert off.returncode == 0, off.stderr
    listed = await asyncio.to_thread(_cli, runtime, "account", "sessions", "--login", login)
    assert "aucune session" in listed.stdout


async def test_disabling_an_account_stops_every_token_acting_for_the_person(
    runtime: Runtime, fhir: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    """Review of 2026-11-24 (S5): the sessions end, and so do the tokens of the person's apps and software."""
    from espace_sante.oauth import devtokens

    jeanne = await new_person(runtime, fhir)
    token = (await devtokens.issue(runtime, f"holder:{jeanne.actor_id}", "patient/*.rs")).access_token
    headers = {"Authorization": f"Bearer {token}"}
    assert (await http.get("/fhir/Patient", headers=headers)).status_code == 200
    await accounts.disable(runtime, jeanne.login)
    # Every process's token cache drops the token when the revocation's notification arrives (LISTEN/NOTIFY).
    for _ in range(100):
        status = (await http.get("/fhir/Patient", headers=headers)).status_code
        if status == 401:
            break
        await asyncio.sleep(0.02)
    assert status == 401
