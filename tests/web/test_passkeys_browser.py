"""Passkeys in a real browser (SECURITY V2 2.3.2, V3 3.4): Chromium with its virtual authenticator (Chrome
DevTools Protocol `WebAuthn` domain) against a real uvicorn server started here.

Jeanne signs in with her password and authenticator app, adds a passkey named after her phone, signs out, then
signs in with the passkey alone (the device verified her: two factors, level "eidas2"). The browser never sees
the session cookie from script, the page's CSP reports nothing, and the trace and the notice are there.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from espace_sante.runtime import Runtime
from tests.accounts.helpers import new_person, next_code, trace_actions
from tests.web.browser import ARGS, chromium, needs_chromium, serve

pytestmark = needs_chromium


@pytest.fixture
async def site(runtime: Runtime) -> AsyncIterator[tuple[Runtime, str]]:
    async with serve(runtime) as served:
        yield served


async def test_a_holder_adds_a_passkey_and_signs_in_with_it(
    site: tuple[Runtime, str], fhir: httpx.AsyncClient
) -> None:
    from playwright.async_api import async_playwright, expect

    rt, base = site
    jeanne = await new_person(rt, fhir)
    problems: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium(), args=ARGS)
        try:
            context = await browser.new_context(locale="fr-FR")  # the portal follows the browser's language
            page = await context.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            cdp = await context.new_cdp_session(page)
            await cdp.send("WebAuthn.enable", {"enableUI": False})
            added: dict[str, Any] = await cdp.send(
                "WebAuthn.addVirtualAuthenticator",
                {
                    "options": {
                        "protocol": "ctap2",
                        "transport": "internal",
                        "hasResidentKey": True,
                        "hasUserVerification": True,
                        "isUserVerified": True,
                        "automaticPresenceSimulation": True,
                    }
                },
            )
            authenticator = added["authenticatorId"]

            # Password and code, as today.
            await page.goto(f"{base}/connexion")
            await page.locator("#login").fill(jeanne.login)
            await page.get_by_label("Mot de passe", exact=True).fill(jeanne.password)
            await page.get_by_role("button", name="Continuer").click()
            await page.wait_for_url(f"{base}/connexion/code")
            await page.get_by_label("Code à 6 chiffres").fill(next_code(jeanne.totp_secret))
            await page.get_by_role("button", name="Se connecter", exact=True).click()
            await page.wait_for_url(f"{base}/compte/securite")

            cookies = {c["name"]: c for c in await context.cookies()}
            session_cookie = cookies["__Host-es_session"]
            assert session_cookie["secure"] and session_cookie["httpOnly"]
            assert session_cookie["sameSite"] == "Lax" and session_cookie["path"] == "/"
            assert "__Host-es_session" not in await page.evaluate("document.cookie")

            # A passkey on this device.
            await page.get_by_label("Nom de la clé").fill("Téléphone de Jeanne")
            await page.get_by_role("button", name="Ajouter une clé d'accès").click()
            await page.wait_for_url(f"{base}/compte/securite?message=cle")
            assert "Téléphone de Jeanne" in await page.content()
            stored = await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
            assert len(stored["credentials"]) == 1 and stored["credentials"][0]["isResidentCredential"]

            # Sign out, then in with the passkey alone.
            await page.get_by_role("button", name="Se déconnecter", exact=True).click()
            await page.wait_for_url(f"{base}/connexion?message=fin")
            await page.get_by_role("button", name="Se connecter avec une clé d'accès").click()
            await page.wait_for_url(f"{base}/compte/securite")
            text = await page.content()
            assert "par clé d'accès" in text and "substantiel" in text

            # Without user verification on the device, no sign-in.
            await page.get_by_role("button", name="Se déconnecter", exact=True).click()
            await page.wait_for_url(f"{base}/connexion?message=fin")
            await cdp.send(
                "WebAuthn.setUserVerified", {"authenticatorId": authenticator, "isUserVerified": False}
            )
            await page.get_by_role("button", name="Se connecter avec une clé d'accès").click()
            # A locator assertion polls from Playwright's own world: a predicate evaluated in the page would be
            # `eval`, which the page's CSP rightly refuses (and reports) when the answer is not there at once.
            await expect(page.locator("#passkey-status")).to_have_text(
                re.compile("annulée|n'a pas pu être vérifiée")
            )
            said = await page.locator("#passkey-status").text_content()
            assert said and ("annulée" in said or "n'a pas pu être vérifiée" in said), said
            assert page.url.startswith(f"{base}/connexion")
        finally:
            await browser.close()
    csp = [p for p in problems if "Content Security Policy" in p or "Refused to" in p]
    assert csp == []
    records = await trace_actions(rt, jeanne.actor_id)
    assert ("credential:add", "0", "passkey", "") in records
    assert any(a == "signin:success" and d.startswith("passkey") for a, _, d, _ in records)
    async with rt.db.pool.acquire() as conn:
        bodies = await conn.fetch("SELECT body FROM outbox WHERE recipient = $1", jeanne.login)
    assert any("nouvelle clé d'accès" in b["body"] for b in bodies)
