"""« État de mon espace santé », the holder's page about her space itself (PRODUCT §2 and §10,
docs/lifecycle.md "The holder's page"): she closes it after a confirmation step, still signs in, finds her
documents page saying it is closed, and reopens it with everything back; she asks for its destruction after
ticking a box, sees the day, and reopening cancels it; she contests a suspension; a form without its
anti-forgery token changes nothing; a space closed after a death is not reopened and the page says why, in
French then English. Through httpx on the ASGI app, and in Chromium on a 320 px wide phone with the keyboard
only."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from html import unescape
from typing import Any

import httpx
import pytest

from espace_sante import clock
from espace_sante.access.actors import Actor
from espace_sante.context import Context
from espace_sante.runtime import Runtime
from espace_sante.spaces import lifecycle
from espace_sante.storage import lifecycle as lifecycle_store
from espace_sante.web.i18n import date_text as day  # French, outside a page: as the pages write it
from tests.accounts.helpers import Person, browser, csrf_of, new_person, next_code, sign_in
from tests.content.samples import report_pdf
from tests.web.browser import needs_chromium, page_audit, phone, serve, sign_in_with_keyboard, tab_to

HOME = "/mon-espace/mon-espace-sante"
DOCUMENTS = "/mon-espace/documents"
INSURER = Actor("operator", "agent-fraude", display="Service fraude")


async def _space(rt: Runtime, person: Person) -> uuid.UUID:
    found = await lifecycle.space_of_ins(rt, person.actor_id)
    assert found is not None
    return found


async def _row(rt: Runtime, space: uuid.UUID) -> lifecycle_store.SpaceRow:
    row = await rt.db.read("t_space_row", lifecycle_store.row_of, space)
    assert row is not None
    return row


def _text(response: httpx.Response) -> str:
    """The page's words, tags removed, spaces collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", response.text)).split())


def _alert(html: str) -> str:
    found = re.search(r'<(p|div)[^>]*role="alert"[^>]*>(.*?)</\1>', html, re.S)
    assert found, "no alert on the page"
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", found.group(2))).split())


@contextlib.asynccontextmanager
async def _signed_in(app: Any, person: Person) -> AsyncIterator[httpx.AsyncClient]:
    """A fresh browser, signed in as `person`."""
    async with browser(app) as client:
        assert (await sign_in(client, person)).status_code == 303
        yield client


async def _upload(client: httpx.AsyncClient, title: str) -> None:
    page = await client.get(DOCUMENTS)
    sent = await client.post(
        f"{DOCUMENTS}/ajouter",
        data={"csrf": csrf_of(page.text), "titre": title, "type": "DOCPAT03"},
        files={"fichier": ("bilan.pdf", report_pdf(), "application/pdf")},
    )
    assert sent.status_code == 303, sent.text


# --- through httpx -----------------------------------------------------------------------------------------


async def test_a_holder_closes_after_confirming_still_signs_in_and_reopens_with_everything_back(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    space = await _space(runtime, jeanne)
    async with _signed_in(app, jeanne) as client:
        await _upload(client, "Bilan de mars")
        page = await client.get(HOME)
        assert page.status_code == 200, page.text
        assert page.headers["cache-control"] == "no-store"
        assert "form-action 'self'" in page.headers["content-security-policy"]
        text = _text(page)
        assert f"Votre espace santé est ouvert depuis le {day(clock.today())}." in text
        assert "Fermer mon espace santé" in text and "Demander la destruction" in text
        assert "Rouvrir" not in text and "Contester" not in text
        assert f'href="{HOME}" aria-current="page"' in page.text  # the holder's navigation
        # The documents page and the security page link here.
        assert f'href="{HOME}"' in (await client.get(DOCUMENTS)).text
        assert f'href="{HOME}"' in (await client.get("/compte/securite")).text

        # The confirmation step says what closing means before anything changes.
        confirm = await client.get(f"{HOME}/fermer")
        assert confirm.status_code == 200
        words = _text(confirm)
        assert "Personne ne peut plus consulter votre espace santé, vous non plus" in words
        assert "Les professionnels de santé ne peuvent plus y ajouter de documents." in words
        kept = day(lifecycle.kept_until(datetime.now(UTC), runtime.settings.archive_years))
        assert f"il est conservé 10 ans, jusqu'au {kept}" in words
        assert "vous pouvez le rouvrir à tout moment" in words
        assert await lifecycle.state(runtime, space) == "active"

        done = await client.post(f"{HOME}/fermer", data={"csrf": csrf_of(confirm.text)})
        assert done.status_code == 303
        assert done.headers["location"] == f"{HOME}?message=ferme"
        assert await lifecycle.state(runtime, space) == "closed"
        after = await client.get(done.headers["location"])
        words = _text(after)
        assert "Votre espace santé est fermé. Vous pouvez le rouvrir depuis cette page." in words
        assert f"Votre espace santé est fermé depuis le {day(clock.today())}." in words
        assert f"Il est conservé jusqu'au {kept}" in words
        assert "Rouvrir mon espace santé" in words and "Fermer mon espace santé" not in words
        assert "Demander la destruction" in words  # still possible from a closed space

    # Sessions do not depend on the state: she signs in again, and her documents page says it is closed.
    async with _signed_in(app, jeanne) as client:
        documents = await client.get(DOCUMENTS)
        assert documents.status_code == 200
        words = _text(documents)
        assert "Votre espace santé est fermé : vos documents sont conservés" in words
        assert "Vous n'avez pas encore de document" not in words and "Ajouter un document" not in words
        assert f'href="{HOME}"' in documents.text

        page = await client.get(HOME)
        back = await client.post(f"{HOME}/rouvrir", data={"csrf": csrf_of(page.text)})
        assert back.status_code == 303 and back.headers["location"] == f"{HOME}?message=rouvert"
        assert await lifecycle.state(runtime, space) == "active"
        assert "Votre espace santé est rouvert : vous retrouvez tout son contenu." in _text(
            await client.get(back.headers["location"])
        )
        assert "Bilan de mars" in _text(await client.get(DOCUMENTS))  # everything is back


async def test_she_asks_for_destruction_sees_the_day_and_reopening_cancels_it(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    space = await _space(runtime, jeanne)
    due = lifecycle.destruction_day(clock.today(), runtime.settings.destruction_delay_days)
    async with _signed_in(app, jeanne) as client:
        confirm = await client.get(f"{HOME}/detruire")
        assert confirm.status_code == 200
        words = _text(confirm)
        assert f"Il sera détruit définitivement le {day(due)}" in words
        assert "rouvrir votre espace santé annule la destruction" in words
        token = csrf_of(confirm.text)

        # The box not ticked: nothing is asked, and the page says why.
        unticked = await client.post(f"{HOME}/detruire", data={"csrf": token})
        assert unticked.status_code == 400
        assert _alert(unticked.text).startswith("Cochez la case pour confirmer")
        assert 'aria-invalid="true"' in unticked.text
        assert await lifecycle.state(runtime, space) == "active"

        done = await client.post(f"{HOME}/detruire", data={"csrf": token, "confirmation": "compris"})
        assert done.status_code == 303 and done.headers["location"] == f"{HOME}?message=destruction"
        row = await _row(runtime, space)
        assert (row.state, row.destroy_on, row.closed_reason) == ("closed", due, "erase")
        words = _text(await client.get(done.headers["location"]))
        assert "Votre demande de destruction est enregistrée" in words
        assert f"il sera détruit définitivement le {day(due)}" in words
        assert f"Rouvrir annule la destruction prévue le {day(due)}." in words  # what reopening does
        assert "Demander la destruction" not in words  # asked already: reopening is the way back

        back = await client.post(f"{HOME}/rouvrir", data={"csrf": token})
        assert back.status_code == 303 and back.headers["location"] == f"{HOME}?message=annule"
        row = await _row(runtime, space)
        assert (row.state, row.destroy_on, row.closed_reason) == ("active", None, None)
        assert "la destruction est annulée" in _text(await client.get(back.headers["location"]))
    await lifecycle.run(runtime, due)  # the day it would have been destroyed: nothing happens
    assert await lifecycle.state(runtime, space) == "active"


async def test_a_suspended_holder_signs_in_and_contests_the_suspension(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    space = await _space(runtime, jeanne)
    await lifecycle.suspend(Context(runtime, INSURER), space, "fraud")
    async with _signed_in(app, jeanne) as client:
        documents = _text(await client.get(DOCUMENTS))
        assert "Votre espace santé est suspendu : vos documents sont conservés" in documents
        page = await client.get(HOME)
        words = _text(page)
        assert f"Votre espace santé est suspendu depuis le {day(clock.today())}." in words
        assert "Contester la suspension" in words and "Rouvrir" not in words
        done = await client.post(f"{HOME}/contester", data={"csrf": csrf_of(page.text)})
        assert done.status_code == 303 and done.headers["location"] == f"{HOME}?message=conteste"
        assert await lifecycle.state(runtime, space) == "active"
        assert "la suspension est levée" in _text(await client.get(done.headers["location"]))
        # Contesting again: the service refuses, the page says it in words, never a 500.
        again = await client.post(f"{HOME}/contester", data={"csrf": csrf_of(page.text)})
        assert again.status_code == 409
        assert _alert(again.text) == "Ce changement n'est pas possible : votre espace santé est ouvert."
        client.cookies.set("langue", "en")
        again = await client.post(f"{HOME}/contester", data={"csrf": csrf_of(page.text)})
        assert _alert(again.text) == "This change is not possible: your health space is open."


async def test_a_form_without_its_token_or_session_changes_nothing(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    space = await _space(runtime, jeanne)
    async with _signed_in(app, jeanne) as client:
        for path, data in (
            ("fermer", {}),
            ("fermer", {"csrf": "pas-le-bon"}),
            ("detruire", {"confirmation": "compris"}),
        ):
            refused = await client.post(f"{HOME}/{path}", data=data)
            assert refused.status_code == 403, path
            alert = _alert(refused.text)
            assert alert.startswith("Ce formulaire a expiré ou ne vient pas de ce site")
            assert "This form expired" not in alert  # the page's language only
        other_site = await client.post(
            f"{HOME}/fermer",
            data={"csrf": csrf_of((await client.get(HOME)).text)},
            headers={"Sec-Fetch-Site": "cross-site"},
        )
        assert other_site.status_code == 403
    async with browser(app) as nobody:
        assert (await nobody.post(f"{HOME}/fermer", data={"csrf": "x"})).status_code == 401
        away = await nobody.get(HOME)
        assert away.status_code == 303 and away.headers["location"] == f"/connexion?next={HOME}"
    assert await lifecycle.state(runtime, space) == "active"


async def test_a_space_closed_after_a_death_is_not_reopened_and_the_page_says_why(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    space = await _space(runtime, jeanne)
    async with _signed_in(app, jeanne) as client:
        token = csrf_of((await client.get(HOME)).text)
        await lifecycle.close(Context.system(runtime), space, reason="death")
        page = await client.get(HOME)
        words = _text(page)
        assert "Il a été fermé à la suite d'un décès : il ne peut pas être rouvert." in words
        assert "Rouvrir mon espace santé" not in words
        refused = await client.post(f"{HOME}/rouvrir", data={"csrf": token})  # the form of a page seen before
        assert refused.status_code == 409
        assert _alert(refused.text) == "Un espace fermé après un décès ne se rouvre pas."
        client.cookies.set("langue", "en")
        refused = await client.post(f"{HOME}/rouvrir", data={"csrf": token})
        assert _alert(refused.text) == "A space closed on death stays closed."
    assert await lifecycle.state(runtime, space) == "closed"


async def test_the_page_is_the_holders_own(runtime: Runtime, app: Any, fhir: httpx.AsyncClient) -> None:
    jeanne = await new_person(runtime, fhir)
    async with _signed_in(app, jeanne) as client:
        # Nothing in the page's address or form names a space: another holder's cannot be asked for.
        page = await client.get(HOME)
        assert str(await _space(runtime, jeanne)) not in page.text and jeanne.actor_id not in page.text


# --- in Chromium, on a phone, with the keyboard only -----------------------------------------------------


@pytest.fixture
async def site(runtime: Runtime) -> AsyncIterator[tuple[Runtime, str]]:
    async with serve(runtime) as served:
        yield served


#: In the page: every control at least 44 CSS pixels high (a checkbox's target is its label), every field
#: labelled, headings in order, nothing wider than the screen, French.
_AUDIT = page_audit(
    "main a, main button, main input:not([type=hidden]), nav a, label",
    target="el.tagName === 'INPUT' && el.type === 'checkbox' ? el.labels[0] : el",
)


@needs_chromium
async def test_on_a_phone_with_the_keyboard_a_holder_closes_her_space_then_reopens_it(
    site: tuple[Runtime, str], fhir: httpx.AsyncClient
) -> None:
    rt, base = site
    jeanne = await new_person(rt, fhir)
    space = await _space(rt, jeanne)
    problems: list[str] = []
    async with phone(problems) as page:
        await sign_in_with_keyboard(
            page, base, jeanne.login, jeanne.password, next_code(jeanne.totp_secret), HOME
        )
        assert await page.title() == "État de mon espace santé · Mon espace santé"
        assert await page.evaluate(_AUDIT) == []

        await tab_to(page, "Fermer mon espace santé")
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{base}{HOME}/fermer")
        assert await page.evaluate(_AUDIT) == []
        assert await page.get_by_text("vous non plus").count() == 1
        await tab_to(page, "Oui, fermer mon espace santé")
        await page.keyboard.press("Enter")

        await page.wait_for_url(f"{base}{HOME}?message=ferme")
        assert "Votre espace santé est fermé." in (await page.get_by_role("status").text_content() or "")
        assert await lifecycle.state(rt, space) == "closed"
        assert await page.evaluate(_AUDIT) == []
        await tab_to(page, "Rouvrir mon espace santé")
        await page.keyboard.press("Enter")

        await page.wait_for_url(f"{base}{HOME}?message=rouvert")
        assert "vous retrouvez tout son contenu" in (await page.get_by_role("status").text_content() or "")
        assert await page.evaluate(_AUDIT) == []
    assert await lifecycle.state(rt, space) == "active"
    assert [p for p in problems if "/favicon.ico" not in p] == []
