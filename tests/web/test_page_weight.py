"""Fast on a slow phone and readable when enlarged (issue 18): every page of the holder's portal weighs under
100 KB before images, loads no web font and nothing from another site, works with JavaScript off, and at
320 px wide with its text at 200 % (WCAG 1.4.4 and 1.4.10) nothing scrolls sideways."""

from __future__ import annotations

import httpx

from espace_sante.runtime import Runtime
from tests.accounts.helpers import new_person, next_code
from tests.web.browser import needs_chromium, phone, serve, sign_in_with_keyboard
from tests.web.test_history_page import a_doctor_on_her_care_team, her_patient

#: The holder's pages, with the public ones; « Mes documents » and its upload form too.
PAGES = (
    "/",
    "/mon-espace/documents",
    "/mon-espace/documents/ajouter",
    "/mon-espace/acces",
    "/mon-espace/historique",
    "/mon-espace/notifications",
    "/mon-espace/mon-espace-sante",
    "/compte/securite",
)
LIMIT = 100 * 1024


@needs_chromium
async def test_every_page_is_light_has_no_font_and_reflows_at_200_percent_text(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    patient_id = await her_patient(fhir, jeanne)
    doctor = await a_doctor_on_her_care_team(runtime, fhir, patient_id)
    for _ in range(30):  # a history page full of lines
        await doctor.get(f"/Patient/{patient_id}")
    problems: list[str] = []
    async with serve(runtime) as (_rt, base), phone(problems) as page:
        assert jeanne.totp_secret
        await sign_in_with_keyboard(
            page, base, jeanne.login, jeanne.password, next_code(jeanne.totp_secret), PAGES[1]
        )
        for path in PAGES:
            await page.goto(f"{base}{path}", wait_until="networkidle")
            # What the page and everything it loaded weigh, by the browser's own count (Resource Timing).
            loaded = await page.evaluate(
                "() => [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]"
                ".map(e => [e.initiatorType, e.name, e.decodedBodySize])"
            )
            weight = sum(size for kind, url, size in loaded if kind != "img" and not url.endswith(".svg"))
            assert weight < LIMIT, (path, weight)
            fonts = (".woff", ".woff2", ".ttf", ".otf")
            assert not [u for _kind, u, _ in loaded if u.endswith(fonts)], path  # no web font holds the text
            assert all(u.startswith(base) for _kind, u, _ in loaded), path  # nothing from another site
            await page.evaluate("() => { document.documentElement.style.fontSize = '200%'; }")
            assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), (
                path
            )
    assert problems == []


@needs_chromium
async def test_the_pages_work_without_javascript(runtime: Runtime, fhir: httpx.AsyncClient) -> None:
    """With JavaScript off, she signs in, reads her pages and changes a choice: forms and links only."""
    jeanne = await new_person(runtime, fhir)
    problems: list[str] = []
    async with serve(runtime) as (_rt, base), phone(problems, javascript=False) as page:
        assert jeanne.totp_secret
        await sign_in_with_keyboard(
            page, base, jeanne.login, jeanne.password, next_code(jeanne.totp_secret), PAGES[5]
        )
        for path in PAGES:
            answer = await page.goto(f"{base}{path}")
            assert answer is not None and answer.status == 200, path
        await page.goto(f"{base}/mon-espace/notifications")
        await page.get_by_label("Nouveau document").check()
        await page.get_by_role("button", name="Enregistrer mes choix").click()
        await page.wait_for_url("**/mon-espace/notifications?message=choix")
    assert problems == []
