"""The holder's home, signed in: her latest documents, the latest accesses in plain words, the state of her space
and her children's spaces, in French or English, axe-clean on a phone."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from typing import Any

import httpx

from espace_sante.runtime import Runtime
from tests.accounts.helpers import browser, new_person, next_code, sign_in
from tests.documents.mhd import iti65
from tests.factories import FHIR_JSON
from tests.registry.test_import import person, run, write
from tests.web.axe import violations
from tests.web.browser import needs_chromium, phone, serve, sign_in_with_keyboard
from tests.web.test_history_page import a_doctor_on_her_care_team, her_patient


def text(page: httpx.Response) -> str:
    main = re.search(r"<main.*?</main>", page.text, re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", main.group(0) if main else "")))


async def test_her_home_shows_her_latest_documents_and_accesses_and_her_childrens_spaces(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient, tmp_path: Path
) -> None:
    jeanne = await new_person(runtime, fhir)
    patient_id = await her_patient(fhir, jeanne)
    deposited = await fhir.post("", json=iti65(jeanne.actor_id), headers=FHIR_JSON)
    assert deposited.status_code == 200, deposited.text
    doctor = await a_doctor_on_her_care_team(runtime, fhir, patient_id)
    await doctor.get(f"/Patient/{patient_id}")
    zoe = person(
        first_names="Zoé", last_name="Petit", birth_date="2016-02-02", representative_1_nir=jeanne.actor_id
    )
    await run(runtime, write(tmp_path / "r.csv", [zoe]))
    async with browser(app) as client:
        assert (await sign_in(client, jeanne)).status_code == 303
        home = await client.get("/")
        client.cookies.set("langue", "en")
        english = await client.get("/")
    assert home.status_code == 200, home.text
    shown = text(home)
    assert ("Derniers documents" in shown and "Compte rendu" in shown) or "Lettre" in shown or "·" in shown
    assert "Dr Claire Lefèvre" in shown and "équipe de soins" in shown
    assert "État de l'espace :" in shown
    assert "Gérer l'espace santé de Zoé Petit" in shown
    assert 'href="/" aria-current="page"' in home.text
    assert "Latest accesses to the record" in text(english) and "care team" in text(english)
    assert "Manage Zoé Petit's health space" in text(english)


async def test_a_home_with_nothing_yet_says_so(runtime: Runtime, app: Any, fhir: httpx.AsyncClient) -> None:
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        home = await client.get("/")
    shown = text(home)
    assert "Aucun document pour le moment." in shown
    assert "Les espaces santé de vos enfants" not in shown


@needs_chromium
async def test_her_home_on_a_phone_passes_axe(runtime: Runtime, fhir: httpx.AsyncClient) -> None:
    jeanne = await new_person(runtime, fhir)
    problems: list[str] = []
    async with serve(runtime) as (_rt, base), phone(problems) as page:
        await page.set_extra_http_headers({"Accept-Language": "fr-FR"})
        assert jeanne.totp_secret
        await sign_in_with_keyboard(
            page, base, jeanne.login, jeanne.password, next_code(jeanne.totp_secret), "/mon-espace/documents"
        )
        await page.goto(f"{base}/")
        assert await violations(page) == []
        assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    assert problems == []
