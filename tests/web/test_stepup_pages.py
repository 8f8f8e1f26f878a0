"""Re-authentication for what cannot be undone (issue 16 #7, SECURITY V3 3.7.1; people/stepup.py): a holder
whose sign-in is older than five minutes who closes her space, or asks for its destruction, is first asked to
confirm who she is (password and second factor again), then comes back to the form as she filled it in; a wrong
confirmation changes nothing and says why beside the fields; an account without a password is sent to sign in
again. Through the real forms, with their anti-forgery tokens."""

from __future__ import annotations

import re
import uuid
from html import unescape
from typing import Any
from urllib.parse import quote

import httpx

from espace_sante.people import sessions
from espace_sante.runtime import Runtime
from espace_sante.spaces import lifecycle
from tests.accounts.helpers import Person, browser, csrf_of, new_person, next_code, sign_in, trace_actions

HOME = "/mon-espace/mon-espace-sante"
CLOSE = f"{HOME}/fermer"
ERASE = f"{HOME}/detruire"
STEP_UP = "/compte/confirmer-identite"


async def _space(rt: Runtime, person: Person) -> uuid.UUID:
    found = await lifecycle.space_of_ins(rt, person.actor_id)
    assert found is not None
    return found


async def _signed_in_long_ago(rt: Runtime, client: httpx.AsyncClient, person: Person) -> None:
    """Signed in, then six minutes pass (the proof of identity is older than the five minutes asked)."""
    assert (await sign_in(client, person)).status_code == 303
    async with rt.db.pool.acquire() as conn:
        await conn.execute(
            "UPDATE web_session SET auth_time = now() - interval '6 minutes' WHERE account_id = $1",
            person.account_id,
        )


def _alert(html: str) -> str:
    found = re.search(r'<p[^>]*role="alert"[^>]*>(.*?)</p>', html, re.S)
    assert found, "no alert on the page"
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


async def test_closing_after_a_while_asks_her_to_confirm_who_she_is_then_closes(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    space = await _space(runtime, jeanne)
    async with browser(app) as client:
        await _signed_in_long_ago(runtime, client, jeanne)
        form = await client.get(CLOSE)
        sent = await client.post(CLOSE, data={"csrf": csrf_of(form.text)})
        assert sent.status_code == 303
        assert sent.headers["location"] == f"{STEP_UP}?suite={quote(CLOSE, safe='')}"
        assert await lifecycle.state(runtime, space) == "active"

        page = await client.get(sent.headers["location"])
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        assert "Confirmer votre identité" in page.text and 'name="password"' in page.text
        assert f'name="suite" value="{CLOSE}"' in page.text

        wrong = await client.post(
            STEP_UP,
            data={
                "csrf": csrf_of(page.text),
                "suite": CLOSE,
                "password": "pas le bon",
                "code": next_code(jeanne.totp_secret),
            },
        )
        assert wrong.status_code == 400
        assert _alert(wrong.text) == "Mot de passe ou code incorrect."  # the page's language only
        assert 'aria-invalid="true"' in wrong.text

        confirmed = await client.post(
            STEP_UP,
            data={
                "csrf": csrf_of(page.text),
                "suite": CLOSE,
                "password": jeanne.password,
                "code": next_code(jeanne.totp_secret),
            },
        )
        assert confirmed.status_code == 303 and confirmed.headers["location"] == CLOSE
        assert await lifecycle.state(runtime, space) == "active"  # nothing done behind her back

        form = await client.get(CLOSE)
        done = await client.post(CLOSE, data={"csrf": csrf_of(form.text)})
        assert done.status_code == 303 and done.headers["location"] == f"{HOME}?message=ferme"
        assert await lifecycle.state(runtime, space) == "closed"
    actions = [(a, o, d) for a, o, d, _ in await trace_actions(runtime, jeanne.actor_id)]
    assert ("signin:failure", "4", "password ip=127.0.0.1 step-up") in actions
    assert ("signin:success", "0", "password+totp ip=127.0.0.1 step-up") in actions


async def test_the_destruction_box_she_ticked_is_still_ticked_when_she_comes_back(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    space = await _space(runtime, jeanne)
    async with browser(app) as client:
        await _signed_in_long_ago(runtime, client, jeanne)
        form = await client.get(ERASE)
        assert "checked" not in form.text
        sent = await client.post(ERASE, data={"csrf": csrf_of(form.text), "confirmation": "compris"})
        back = f"{ERASE}?confirmation=compris"
        assert sent.status_code == 303
        assert sent.headers["location"] == f"{STEP_UP}?suite={quote(back, safe='')}"
        page = await client.get(sent.headers["location"])
        # A recovery code is a second factor too.
        confirmed = await client.post(
            STEP_UP,
            data={
                "csrf": csrf_of(page.text),
                "suite": back,
                "password": jeanne.password,
                "code": jeanne.recovery_codes[0],
            },
        )
        assert confirmed.status_code == 303 and confirmed.headers["location"] == back
        again = await client.get(back)
        assert re.search(r'name="confirmation" value="compris" required\s+checked', again.text)
        done = await client.post(ERASE, data={"csrf": csrf_of(again.text), "confirmation": "compris"})
        assert done.status_code == 303 and done.headers["location"] == f"{HOME}?message=destruction"
        assert await lifecycle.state(runtime, space) == "closed"


async def test_a_fresh_sign_in_is_proof_enough(runtime: Runtime, app: Any, fhir: httpx.AsyncClient) -> None:
    jeanne = await new_person(runtime, fhir)
    space = await _space(runtime, jeanne)
    async with browser(app) as client:
        assert (await sign_in(client, jeanne)).status_code == 303
        form = await client.get(CLOSE)
        done = await client.post(CLOSE, data={"csrf": csrf_of(form.text)})
        assert done.status_code == 303 and done.headers["location"] == f"{HOME}?message=ferme"
        assert await lifecycle.state(runtime, space) == "closed"


async def test_a_forged_confirmation_proves_nothing(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    space = await _space(runtime, jeanne)
    async with browser(app) as client:
        await _signed_in_long_ago(runtime, client, jeanne)
        forged = await client.post(
            STEP_UP,
            data={
                "csrf": "faux",
                "suite": CLOSE,
                "password": jeanne.password,
                "code": next_code(jeanne.totp_secret),
            },
        )
        assert forged.status_code == 403
        form = await client.get(CLOSE)
        sent = await client.post(CLOSE, data={"csrf": csrf_of(form.text)})
        assert sent.status_code == 303 and sent.headers["location"].startswith(STEP_UP)
        assert await lifecycle.state(runtime, space) == "active"


async def test_an_account_without_a_password_signs_in_again_and_comes_back(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    # A passkey account (the passkey sign-in itself is tested in test_passkeys_browser.py).
    lea = await new_person(runtime, fhir, with_totp=False, password=None)
    secret, _ = await sessions.start(
        runtime, lea.account_id, acr="eidas2", method="passkey", user_agent="test", ip="127.0.0.1"
    )
    async with runtime.db.pool.acquire() as conn:
        await conn.execute(
            "UPDATE web_session SET auth_time = now() - interval '6 minutes' WHERE account_id = $1",
            lea.account_id,
        )
    async with browser(app) as client:
        client.cookies.set(sessions.COOKIE, secret)
        form = await client.get(CLOSE)
        sent = await client.post(CLOSE, data={"csrf": csrf_of(form.text)})
        page = await client.get(sent.headers["location"])
        assert page.status_code == 200
        assert 'name="password"' not in page.text
        assert f'href="/connexion?next={CLOSE}"' in page.text
        assert "Se reconnecter (clé d'accès, FranceConnect+)" in page.text
        refused = await client.post(
            STEP_UP, data={"csrf": csrf_of(page.text), "suite": CLOSE, "password": "x", "code": "123456"}
        )
        assert refused.status_code == 400
        assert _alert(refused.text).startswith("Ce compte ne se connecte pas par mot de passe et code")
