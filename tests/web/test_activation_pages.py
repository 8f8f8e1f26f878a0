"""The activation page every notice points to (web/activation/pages.py, docs/activation.md): Anne activates her space
before it opens with her code and birth date, makes her password and authenticator app, notes her recovery
codes and signs in; a wrong birth date is refused with the common message and what she typed stays; five
wrong birth dates lock the code; a used code is refused; Paul opposes, reads the consequences, confirms, and
downloads his proof, which another browser cannot fetch; a form without its token is refused and counts
nothing; a parent activates their child's space with the child's code and birth date, and no account is made
from it; nobody reaches the account step without redeeming a code. Through httpx on the ASGI app, and in
Chromium on a 360 px wide phone, with the keyboard only."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import date
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest

from espace_sante.runtime import Runtime
from espace_sante.spaces import activation, lifecycle
from tests.accounts.helpers import HTTPS, Person, csrf_of, next_code, sign_in
from tests.activation.pdftext import pdf_text
from tests.activation.test_activate_and_oppose import code_for, imported, kept
from tests.activation.test_redeem import new_ip
from tests.registry.test_import import person
from tests.web.browser import needs_chromium, page_audit, phone, serve, tab_to

PASSWORD = "girafe violette sous la pluie 47"


def browser(app: Any) -> httpx.AsyncClient:
    """A fresh browser with its own address: the activation limits count per address, and each story must
    start with none spent."""
    transport = httpx.ASGITransport(app=app, client=(new_ip(), 51000))
    return httpx.AsyncClient(transport=transport, base_url=HTTPS, follow_redirects=False)


def _summary(html: str) -> str:
    found = re.search(r'class="resume-erreurs".*?</div>', html, re.S)
    assert found, "no error summary"
    return unescape(re.sub(r"<[^>]+>", " ", found.group(0)))


def _value(html: str, name: str) -> str:
    found = re.search(rf'name="{name}"[^>]*value="([^"]*)"', html, re.S)
    assert found, name
    return unescape(found.group(1))


def _form(code: str, born: date, token: str) -> dict[str, str]:
    return {
        "csrf": token,
        "code": code,
        "jour": str(born.day),
        "mois": str(born.month),
        "annee": str(born.year),
    }


async def _post_code(client: httpx.AsyncClient, path: str, code: str, born: date) -> httpx.Response:
    page = await client.get(path)
    assert page.status_code == 200
    return await client.post(path, data=_form(code, born, csrf_of(page.text)))


async def test_anne_activates_early_makes_her_sign_in_means_and_signs_in(
    runtime: Runtime, app: Any, tmp_path: Path
) -> None:
    anne = person(first_names="Anne", last_name="Lefèvre", birth_date="1950-03-27")
    [space] = await imported(runtime, tmp_path, anne)
    code = await code_for(runtime, space)
    async with browser(app) as client:
        home = await client.get("/activation")
        assert home.status_code == 200 and home.headers["cache-control"] == "no-store"
        text = unescape(home.text)
        assert 'href="/activation/activer"' in text and 'href="/activation/opposition"' in text
        assert 'lang="en"' in text and "sa</strong> date de naissance" in text

        # Nobody reaches the account step without a redeemed code.
        early = await client.get("/activation/compte")
        assert early.status_code == 303 and early.headers["location"] == "/activation/activer?message=expire"

        done = await _post_code(client, "/activation/activer", f" {code.lower()} ", date(1950, 3, 27))
        assert done.status_code == 303 and done.headers["location"] == "/activation/compte"
        assert await lifecycle.state(runtime, space) == "active"
        assert code not in str(done.headers) and "__Host-es_act" in done.headers["set-cookie"]

        page = await client.get("/activation/compte")
        assert page.status_code == 200
        assert "L'espace santé de Anne Lefèvre est activé." in unescape(page.text)
        secret = re.search(r'class="secret"><code>([A-Z2-7 ]+)</code>', page.text)
        assert secret is not None
        totp_secret = secret.group(1).replace(" ", "")
        assert totp_secret in unescape(page.text).replace(" ", "")
        token = csrf_of(page.text)

        # Mistakes first: the passwords differ and the code is wrong; the login stays, never the passwords.
        login = f"anne-{uuid.uuid4().hex[:6]}@exemple.fr"
        wrong = await client.post(
            "/activation/compte",
            data={"csrf": token, "login": login, "password": PASSWORD, "confirm": "autre", "code": "000000"},
        )
        assert wrong.status_code == 400
        summary = _summary(wrong.text)
        assert "Les deux saisies du mot de passe diffèrent" in summary and "Code incorrect" in summary
        assert 'href="#confirm"' in wrong.text and 'href="#code"' in wrong.text
        assert _value(wrong.text, "login") == login and PASSWORD not in wrong.text
        weak = await client.post(
            "/activation/compte",
            data={
                "csrf": token,
                "login": login,
                "password": "motdepasse",
                "confirm": "motdepasse",
                "code": next_code(totp_secret),
            },
        )
        assert weak.status_code == 400 and 'href="#password"' in weak.text

        created = await client.post(
            "/activation/compte",
            data={
                "csrf": token,
                "login": login,
                "password": PASSWORD,
                "confirm": PASSWORD,
                "code": next_code(totp_secret),
            },
        )
        assert created.status_code == 200, _summary(created.text)
        body = unescape(created.text)
        assert "Votre compte est créé" in body and "Vos codes de secours" in body
        codes = re.findall(r"<li><code>([^<]+)</code></li>", created.text)
        assert len(codes) == 10
        assert 'href="/connexion"' in created.text
        # The step is done: going back to it starts again.
        assert (await client.get("/activation/compte")).status_code == 303

        signed = await sign_in(
            client, Person(uuid.uuid4(), "holder", anne["nir"], login, PASSWORD, totp_secret)
        )
        assert signed.status_code == 303, signed.text


async def test_a_wrong_birth_date_keeps_what_she_typed_and_five_lock_the_code(
    runtime: Runtime, app: Any, tmp_path: Path
) -> None:
    [space] = await imported(runtime, tmp_path, person(birth_date="1948-11-02"))
    code = await code_for(runtime, space)
    async with browser(app) as client:
        missing = await client.get("/activation/activer")
        refused = await client.post(
            "/activation/activer",
            data={"csrf": csrf_of(missing.text), "code": code, "jour": "31", "mois": "2"},
        )
        assert refused.status_code == 400
        assert "saisissez l'année" in _summary(refused.text) and 'href="#annee"' in refused.text
        assert _value(refused.text, "code") == code and _value(refused.text, "jour") == "31"

        # A month typed as a word is understood; the date is wrong: the common message, the code kept.
        page = await client.get("/activation/activer")
        wrong = await client.post(
            "/activation/activer",
            data={"csrf": csrf_of(page.text), "code": code, "jour": "3", "mois": "Novembre", "annee": "1948"},
        )
        assert wrong.status_code == 400
        assert activation.WRONG.split(" / ")[0] in _summary(wrong.text)
        assert _value(wrong.text, "code") == code and _value(wrong.text, "mois") == "Novembre"
        assert (
            'aria-invalid="true"' in wrong.text and 'aria-describedby="code-aide code-erreur"' in wrong.text
        )
        for _ in range(runtime.settings.activation_max_failures - 2):
            again = await _post_code(client, "/activation/activer", code, date(1948, 11, 3))
            assert again.status_code == 400
        locked = await _post_code(client, "/activation/activer", code, date(1948, 11, 3))
        assert locked.status_code == 403
        assert "bloqué" in _summary(locked.text) and _value(locked.text, "code") == ""
        right = await _post_code(client, "/activation/activer", code, date(1948, 11, 2))
        assert right.status_code == 403 and "bloqué" in _summary(right.text)
    assert await lifecycle.state(runtime, space) == "notified"


async def test_a_used_code_is_refused_and_a_form_without_its_token_counts_nothing(
    runtime: Runtime, app: Any, tmp_path: Path
) -> None:
    [space] = await imported(runtime, tmp_path, person(birth_date="1962-04-04"))
    code = await code_for(runtime, space)
    async with browser(app) as client:
        await client.get("/activation/activer")  # the pre-session cookie is set
        for token in ("1.abc", ""):
            forged = await client.post("/activation/activer", data=_form(code, date(1962, 4, 4), token))
            assert forged.status_code == 403 and "Ce formulaire a expiré" in _summary(forged.text)
        other_site = await client.post(
            "/activation/opposition/confirmer", data={"csrf": "x"}, headers={"sec-fetch-site": "cross-site"}
        )
        assert other_site.status_code == 303  # no confirmation state in this browser: back to the start
        assert await lifecycle.state(runtime, space) == "notified"
        first = await _post_code(client, "/activation/activer", code, date(1962, 4, 4))
        assert first.status_code == 303
    async with browser(app) as client:
        used = await _post_code(client, "/activation/activer", code, date(1962, 4, 4))
        assert used.status_code == 400 and activation.WRONG.split(" / ")[0] in _summary(used.text)


async def test_paul_opposes_after_confirming_and_downloads_his_proof_from_this_browser_only(
    runtime: Runtime, app: Any, tmp_path: Path
) -> None:
    paul = person(first_names="Paul", last_name="Ngô", birth_date="1951-07-01")
    [space] = await imported(runtime, tmp_path, paul)
    code = await code_for(runtime, space)
    async with browser(app) as client, browser(app) as stranger:
        checked = await _post_code(client, "/activation/opposition", code, date(1951, 7, 1))
        assert (
            checked.status_code == 303 and checked.headers["location"] == "/activation/opposition/confirmer"
        )
        assert await lifecycle.state(runtime, space) == "notified"  # nothing recorded nor spent yet
        assert code not in checked.headers["set-cookie"]

        confirm = await client.get("/activation/opposition/confirmer")
        text = unescape(confirm.text)
        assert confirm.status_code == 200 and "Paul Ngô" in text
        assert "supprimé définitivement" in text and "Je confirme mon opposition" in text
        assert "demander un espace" in text and code not in confirm.text

        # The confirmation state is this browser's: another one has none.
        assert (await stranger.get("/activation/opposition/confirmer")).status_code == 303
        stolen = {"__Host-es_act": client.cookies["__Host-es_act"]}
        stranger.cookies.update(stolen)
        page = await stranger.get("/activation/opposition")
        replay = await stranger.post("/activation/opposition/confirmer", data={"csrf": csrf_of(page.text)})
        assert replay.status_code == 303 and replay.headers["location"].endswith("?message=expire")
        assert await lifecycle.state(runtime, space) == "notified"

        forged = await client.post("/activation/opposition/confirmer", data={"csrf": "1.abc"})
        assert forged.status_code == 403 and await lifecycle.state(runtime, space) == "notified"

        done = await client.post("/activation/opposition/confirmer", data={"csrf": csrf_of(confirm.text)})
        assert done.status_code == 303 and done.headers["location"] == "/activation/opposition/enregistree"
        assert await lifecycle.state(runtime, space) == "opposed"
        assert await kept(runtime, space) == {"resources": [], "codes": [], "identity": True}

        recorded = await client.get("/activation/opposition/enregistree")
        body = unescape(recorded.text)
        assert recorded.status_code == 200 and "Votre opposition est enregistrée" in body
        reference = re.search(r"OPP(?:-[2-9A-Z]{4}){4}", body)
        assert reference is not None
        proof = await client.get("/activation/opposition/attestation")
        assert proof.status_code == 200 and proof.headers["content-type"] == "application/pdf"
        assert proof.headers["content-disposition"].startswith("attachment")
        assert "Ngô" not in proof.headers["content-disposition"]
        assert proof.headers["cache-control"] == "no-store"
        text = pdf_text(proof.content)
        assert "Nom : Paul Ngô" in text and "1er juillet 1951" in text and "en ligne" in text
        assert reference.group(0) in text and "Aucune donnée médicale n'est conservée" in text

        stranger.cookies.clear()
        other = await stranger.get("/activation/opposition/attestation")
        assert other.status_code == 404 and "%PDF" not in other.text

        # The code is spent: opposing again, or activating, is refused.
        again = await _post_code(client, "/activation/activer", code, date(1951, 7, 1))
        assert again.status_code == 400


async def test_a_parent_activates_the_childs_space_without_an_account_being_made(
    runtime: Runtime, app: Any, tmp_path: Path
) -> None:
    parent = person(first_names="Paul", last_name="Martin", birth_date="1980-05-05")
    child = person(
        first_names="Léa", last_name="Martin", birth_date="2015-06-01", representative_1_nir=parent["nir"]
    )
    _, space = await imported(runtime, tmp_path, parent, child)
    code = await code_for(runtime, space)
    async with browser(app) as client:
        done = await _post_code(client, "/activation/activer", code, date(2015, 6, 1))
        assert done.status_code == 200
        text = unescape(done.text)
        assert "L'espace santé de Léa Martin est activé." in text and "votre propre compte" in text
        assert "__Host-es_act" not in client.cookies  # no account step for a child's code
        assert (await client.get("/activation/compte")).status_code == 303
    assert await lifecycle.state(runtime, space) == "active"


async def test_too_late_to_oppose_once_active(runtime: Runtime, app: Any, tmp_path: Path) -> None:
    [space] = await imported(runtime, tmp_path, person(birth_date="1970-05-05"))
    code = await code_for(runtime, space)
    async with browser(app) as client:
        assert (await _post_code(client, "/activation/activer", code, date(1970, 5, 5))).status_code == 303
        code = await code_for(runtime, space)
        late = await _post_code(client, "/activation/opposition", code, date(1970, 5, 5))
        assert late.status_code == 409 and "déjà ouvert" in _summary(late.text)


# --- in Chromium, on a phone, with the keyboard only -----------------------------------------------------


@pytest.fixture
async def site(runtime: Runtime) -> AsyncIterator[tuple[Runtime, str]]:
    async with serve(runtime) as served:
        yield served


#: Every control at least 44 CSS pixels high, every field labelled, headings in order, nothing wider than
#: the screen, French (as tests/web/test_documents_pages.py checks its pages).
_AUDIT = page_audit("main a.bouton, main button, main input:not([type=hidden])")


@needs_chromium
async def test_on_a_phone_paul_opposes_with_the_keyboard_and_downloads_his_proof(
    site: tuple[Runtime, str], tmp_path: Path
) -> None:
    rt, base = site
    paul = person(first_names="Paul", last_name="Ngô", birth_date="1951-07-01")
    [space] = await imported(rt, tmp_path, paul)
    code = await code_for(rt, space)
    problems: list[str] = []
    async with phone(problems, 360, 740) as page:
        await page.goto(f"{base}/activation")
        assert await page.title() == "Activer mon espace santé ou m'opposer à sa création · Mon espace santé"
        assert await page.evaluate(_AUDIT) == []
        await tab_to(page, "M'opposer à la création")
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{base}/activation/opposition")
        assert await page.evaluate(_AUDIT) == []

        # A wrong year first: the summary comes first, linked to the field, and what he typed stays.
        await tab_to(page, "code")
        await page.keyboard.type(code.replace("-", " "))
        for value in ("1", "juillet", "1952"):
            await page.keyboard.press("Tab")
            await page.keyboard.type(value)
        await page.keyboard.press("Enter")
        await page.get_by_role("alert").wait_for()
        assert "Code d'activation ou date de naissance incorrects" in (
            await page.get_by_role("alert").text_content() or ""
        )
        assert await page.get_by_label("Mois").input_value() == "juillet"
        assert await page.evaluate(_AUDIT) == []
        assert await page.evaluate("() => document.activeElement.className") == "resume-erreurs"
        await tab_to(page, "annee")
        await page.keyboard.press("Control+A")
        await page.keyboard.type("1951")
        await page.keyboard.press("Enter")

        await page.wait_for_url(f"{base}/activation/opposition/confirmer")
        assert await page.get_by_text("Paul Ngô").count() == 1
        assert await page.evaluate(_AUDIT) == []
        assert await lifecycle.state(rt, space) == "notified"
        await tab_to(page, "Je confirme mon opposition")
        await page.keyboard.press("Enter")

        await page.wait_for_url(f"{base}/activation/opposition/enregistree")
        assert "Votre opposition est enregistrée" in (await page.get_by_role("status").text_content() or "")
        assert await page.evaluate(_AUDIT) == []
        await tab_to(page, "Télécharger mon attestation (PDF)")
        async with page.expect_download() as waiting:
            await page.keyboard.press("Enter")
        download = await waiting.value
        saved = tmp_path / "attestation.pdf"
        await download.save_as(saved)
        assert "Nom : Paul Ngô" in pdf_text(saved.read_bytes())
    assert await lifecycle.state(rt, space) == "opposed"
    refusal = "status of 400 (Bad Request)"
    assert [p for p in problems if "/favicon.ico" not in p and refusal not in p] == []
