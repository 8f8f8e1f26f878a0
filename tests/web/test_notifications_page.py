"""« Mes notifications » on a phone: what she was told of and her e-mail choices, axe-clean at 320 px in French
and in English, and changed with the keyboard alone."""

from __future__ import annotations

import uuid

import httpx

from espace_sante.runtime import Runtime
from espace_sante.storage import notifications as notifications_store
from espace_sante.storage.db import Conn
from tests.accounts.helpers import new_person, next_code
from tests.web.axe import violations
from tests.web.browser import needs_chromium, phone, serve, sign_in_with_keyboard
from tests.web.test_history_page import a_doctor_on_her_care_team, her_patient

PAGE = "/mon-espace/notifications"


@needs_chromium
async def test_she_reads_and_changes_her_notifications_with_the_keyboard_on_a_phone(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    patient_id = await her_patient(fhir, jeanne)
    doctor = await a_doctor_on_her_care_team(runtime, fhir, patient_id)
    assert (await doctor.get(f"/Patient/{patient_id}")).status_code == 200
    problems: list[str] = []
    async with serve(runtime) as (_rt, base), phone(problems) as page:
        await page.set_extra_http_headers({"Accept-Language": "fr-FR"})
        assert jeanne.totp_secret
        await sign_in_with_keyboard(
            page, base, jeanne.login, jeanne.password, next_code(jeanne.totp_secret), PAGE
        )
        await page.goto(f"{base}{PAGE}")
        assert await page.get_by_text("a consulté votre dossier pour la première fois").count() >= 1
        assert await violations(page) == []
        assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")

        # With the keyboard alone: tick « Nouveau document », then save.
        box = page.get_by_label("Nouveau document")
        await box.focus()
        await page.keyboard.press("Space")
        await page.get_by_role("button", name="Enregistrer mes choix").focus()
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"**{PAGE}?message=choix")
        assert await page.get_by_text("vos choix de notifications sont enregistrés").count() == 1
        assert await page.get_by_label("Nouveau document").is_checked()
        assert await violations(page) == []

        await page.goto(f"{base}/langue?vers=en&retour={PAGE}")
        assert await page.get_by_role("heading", name="Being told by e-mail").count() == 1
        assert await page.get_by_label("New document").is_checked()
        assert await violations(page) == []
        assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    assert problems == []

    async def saved(conn: Conn) -> dict[str, dict[str, bool]]:
        return await notifications_store.choices(conn, uuid.UUID(patient_id[:32]), [jeanne.actor_id])

    assert (await runtime.db.read("t_choices", saved))[jeanne.actor_id]["document"] is True
