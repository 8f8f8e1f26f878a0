"""The account security page: setting up the authenticator app, new recovery codes, a new password, each
behind a recent sign-in or the current password, each traced and mailed (SECURITY V2 2.5, 2.8; V3 3.7.1)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pyotp

from espace_sante.people import sessions, totp
from espace_sante.runtime import Runtime
from tests.accounts.helpers import browser, csrf_of, new_person, sign_in, trace_actions


async def _outbox(runtime: Runtime, recipient: str) -> list[str]:
    async with runtime.db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT body FROM outbox WHERE recipient = $1 ORDER BY created_at", recipient)
    return [r["body"] for r in rows]


async def test_a_holder_sets_up_a_new_authenticator_app(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    """Jeanne changes phone: she asks for a new app set-up, sees the otpauth link and the key once, types the
    first code, and from then on the new app's codes sign her in; a notice is mailed."""
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        page = await client.get("/compte/securite")
        setup = await client.post("/compte/totp", data={"csrf": csrf_of(page.text)})
        assert setup.status_code == 200
        uri = re.search(r'href="(otpauth://[^"]+)"', setup.text)
        assert uri is not None
        secret = pyotp.parse_uri(uri.group(1).replace("&amp;", "&")).secret
        assert "Mon%20espace%20sant" in uri.group(1)
        wrong = await client.post(
            "/compte/totp/confirmer", data={"csrf": csrf_of(setup.text), "code": "000000"}
        )
        assert wrong.status_code == 400 and "Code incorrect" in wrong.text
        ok = await client.post(
            "/compte/totp/confirmer", data={"csrf": csrf_of(setup.text), "code": pyotp.TOTP(secret).now()}
        )
        assert ok.status_code == 303 and ok.headers["location"] == "/compte/securite?message=totp"
    jeanne.totp_secret = secret
    async with browser(app) as client:
        assert (
            await sign_in(client, jeanne, code=totp.code_at(secret, totp.current_step() + 1))
        ).status_code == 303
    assert any("application d'authentification" in body for body in await _outbox(runtime, jeanne.login))
    assert ("credential:change", "0", "totp", "") in await trace_actions(runtime, jeanne.actor_id)


async def test_new_recovery_codes_are_shown_once_and_the_old_ones_stop_working(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        page = await client.get("/compte/securite")
        assert "Il vous reste 10 codes de secours" in page.text
        shown = await client.post("/compte/codes-secours", data={"csrf": csrf_of(page.text)})
        assert shown.status_code == 200 and shown.headers["cache-control"] == "no-store"
        codes = re.findall(r"<code>([0-9A-Z]{5}-[0-9A-Z]{5})</code>", shown.text)
        assert len(codes) == 10 and not set(codes) & set(jeanne.recovery_codes)
    async with browser(app) as client:
        assert (await sign_in(client, jeanne, code=jeanne.recovery_codes[0])).status_code == 400
    async with browser(app) as client:
        assert (await sign_in(client, jeanne, code=codes[0])).status_code == 303


async def test_a_stale_session_must_sign_in_again_before_changing_a_factor(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        session = await sessions.current(runtime, client.cookies.get("__Host-es_session") or "")
        assert session is not None
        async with runtime.db.pool.acquire() as conn:
            await conn.execute(
                "UPDATE web_session SET created_at = now() - make_interval(secs => $2) WHERE session_id = $1",
                session.session_id,
                runtime.settings.reauth_seconds + 1,
            )
        page = await client.get("/compte/securite")
        assert "reconnectez-vous" in page.text and "Créer de nouveaux codes" not in page.text
        for path in ("/compte/codes-secours", "/compte/totp"):
            refused = await client.post(path, data={"csrf": csrf_of(page.text)})
            assert refused.status_code == 403 and "reconnectez-vous" in refused.text
        options = await client.post("/compte/cle/options", headers={"X-CSRF-Token": csrf_of(page.text)})
        assert options.status_code == 403


async def test_changing_the_password_needs_the_current_one_and_closes_other_sessions(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as laptop, browser(app) as phone:
        await sign_in(phone, jeanne)
        await sign_in(laptop, jeanne)
        page = await laptop.get("/compte/securite")
        token = csrf_of(page.text)
        new = "un autre mot de passe bien plus long"
        wrong = await laptop.post(
            "/compte/mot-de-passe",
            data={"csrf": token, "current": "pas celui-là", "new": new, "confirm": new},
        )
        assert wrong.status_code == 400 and "Mot de passe actuel incorrect" in wrong.text
        differ = await laptop.post(
            "/compte/mot-de-passe",
            data={"csrf": token, "current": jeanne.password, "new": new, "confirm": new + "!"},
        )
        assert differ.status_code == 400 and "diffèrent" in differ.text
        weak = await laptop.post(
            "/compte/mot-de-passe",
            data={
                "csrf": token,
                "current": jeanne.password,
                "new": "azerty123456",
                "confirm": "azerty123456",
            },
        )
        assert weak.status_code == 400 and "trop courant" in weak.text
        done = await laptop.post(
            "/compte/mot-de-passe",
            data={"csrf": token, "current": jeanne.password, "new": new, "confirm": new},
        )
        assert done.status_code == 303
        assert (await laptop.get("/compte/securite")).status_code == 200
        assert (await phone.get("/compte/securite")).status_code == 303
    jeanne.password = new
    async with browser(app) as client:
        assert (await sign_in(client, jeanne)).status_code == 303
    assert any("mot de passe" in body for body in await _outbox(runtime, jeanne.login))


async def test_pages_are_french_accessible_and_load_no_inline_code(app: Any) -> None:
    async with browser(app) as client:
        page = await client.get("/connexion")
        assert '<html lang="fr">' in page.text and 'name="viewport"' in page.text
        assert "<script>" not in page.text and " style=" not in page.text and "<style" not in page.text
        assert 'for="login"' in page.text and 'autocomplete="current-password"' in page.text
        script = await client.get("/static/passkeys.js")
        assert script.status_code == 200 and "navigator.credentials" in script.text
        assert (await client.get("/static/espace-sante.css")).status_code == 200
