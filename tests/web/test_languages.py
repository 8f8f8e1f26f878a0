"""The site's root and its languages: a person arriving at / learns what the service is and finds the three ways
in, in French or in English (the browser's language, or the one she chose, remembered); every string marked for
translation has its English (web/i18n.py); the page passes axe-core at phone width in both languages."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from babel.messages import pofile
from babel.messages.extract import extract_from_dir
from hypothesis import given
from hypothesis import strategies as st

from espace_sante.runtime import Runtime
from espace_sante.web import i18n
from tests.accounts.helpers import browser, new_person, sign_in
from tests.web.axe import violations
from tests.web.browser import needs_chromium, phone, serve, tab_to

REPOSITORY = Path(__file__).resolve().parents[2]


async def test_the_home_says_what_the_service_is_in_french_first(app: Any) -> None:
    async with browser(app) as client:
        page = await client.get("/")
    assert page.status_code == 200
    assert '<html lang="fr">' in page.text and page.headers["content-language"] == "fr"
    for way_in in ('href="/connexion"', 'href="/activation"', 'href="/activation/opposition"'):
        assert way_in in page.text
    assert "qui les a consultés" in page.text
    assert 'hreflang="en"' in page.text  # the switch to the other language


async def test_a_browser_in_english_gets_the_page_in_english(app: Any) -> None:
    async with browser(app) as client:
        page = await client.get("/", headers={"Accept-Language": "de-DE, en-GB;q=0.8, fr;q=0.5"})
    assert '<html lang="en">' in page.text and page.headers["content-language"] == "en"
    assert "Sign in" in page.text and "who has read them" in page.text
    assert "Se connecter" not in page.text
    assert 'hreflang="fr"' in page.text


async def test_the_language_chosen_is_remembered_over_the_browsers(app: Any) -> None:
    async with browser(app) as client:
        switched = await client.get("/langue", params={"vers": "en", "retour": "/?from=switch"})
        assert switched.status_code == 303 and switched.headers["location"] == "/?from=switch"
        assert (
            "langue=en" in switched.headers["set-cookie"]
            and "Max-Age=31536000" in switched.headers["set-cookie"]
        )
        page = await client.get("/", headers={"Accept-Language": "fr-FR"})
        assert '<html lang="en">' in page.text
        back = await client.get("/langue", params={"vers": "fr", "retour": "/"})
        assert back.status_code == 303
        assert '<html lang="fr">' in (await client.get("/", headers={"Accept-Language": "en"})).text


async def test_the_switch_goes_back_to_this_site_only_and_refuses_an_unknown_language(app: Any) -> None:
    async with browser(app) as client:
        for elsewhere in ("//evil.example/", "https://evil.example/", "/\\evil.example", ""):
            away = await client.get("/langue", params={"vers": "en", "retour": elsewhere})
            assert away.status_code == 303 and away.headers["location"] == "/", elsewhere
        unknown = await client.get("/langue", params={"vers": "klingon", "retour": "/"})
    assert unknown.status_code == 400
    # In the language this browser chose just before (English, by the switch).
    assert "choose French or English" in unknown.text and "choisissez" not in unknown.text
    assert "set-cookie" not in unknown.headers or "langue=" not in unknown.headers["set-cookie"]
    async with browser(app) as client:
        unknown = await client.get("/langue", params={"vers": "klingon", "retour": "/"})
    assert "choisissez le français" in unknown.text


async def test_every_page_follows_the_persons_language_the_sign_in_page_too(app: Any) -> None:
    """Every page is translated now (tests/web/test_pages_in_both_languages.py tours them): the sign-in page
    follows the browser's language, with the switch back to French."""
    async with browser(app) as client:
        page = await client.get("/connexion", headers={"Accept-Language": "en"})
    assert '<html lang="en">' in page.text and "Sign in with a passkey" in page.text
    assert "Se connecter" not in page.text and 'hreflang="fr"' in page.text


def test_every_string_marked_for_translation_has_its_english() -> None:
    """The strings in the code and templates (extracted as `make messages` does) against the English catalogue:
    a string shown without its English fails here, as does one the catalogue still lacks or marks fuzzy."""
    method_map = [
        ("src/espace_sante/web/**.py", "python"),
        ("src/espace_sante/web/templates/**.html", "jinja2"),
    ]
    options = {"src/espace_sante/web/templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}
    marked = {
        message if isinstance(message, str) else message[0]
        for _file, _line, message, _comments, _context in extract_from_dir(
            str(REPOSITORY), method_map, options_map=options
        )
    }
    with (i18n.CATALOGUES / "en" / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalogue = pofile.read_po(po, locale="en")
    english = {
        (m.id if isinstance(m.id, str) else m.id[0]): m
        for m in catalogue
        if m.id and not m.fuzzy and m.string
    }
    assert marked, "no string marked for translation found"
    assert sorted(marked - set(english)) == [], "run `make messages` and translate these"
    for message in marked:
        assert "%(" not in message or set(_names(message)) == set(_names(str(english[message].string)))


def _names(text: str) -> list[str]:
    return re.findall(r"%\((\w+)\)s", text)


@given(st.text(max_size=200))
def test_any_accept_language_header_gives_languages_or_nothing(header: str) -> None:
    tags = i18n.accepted(header)
    assert all(tag == tag.lower() and tag and tag != "*" for tag in tags)


def test_the_browsers_preference_order_is_kept() -> None:
    assert i18n.accepted("fr;q=0.4, en-US, de;q=0.9, es;q=0") == ["en", "de", "fr"]
    assert i18n.accepted("en;q=abc, fr") == ["fr"]


@needs_chromium
async def test_the_home_on_a_phone_in_both_languages_passes_axe_and_the_keyboard(runtime: Runtime) -> None:
    """320 px wide, no horizontal scrolling, axe-core clean (WCAG 2.1 A/AA), the ways in reachable with Tab, and
    the switch to English followed without JavaScript."""
    problems: list[str] = []
    async with serve(runtime) as (_rt, base), phone(problems) as page:
        await page.set_extra_http_headers({"Accept-Language": "fr-FR,fr;q=0.9"})  # a phone set to French
        await page.goto(f"{base}/")
        assert await page.evaluate("() => document.documentElement.lang") == "fr"
        assert await violations(page) == []
        assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        await tab_to(page, "Se connecter")
        await page.get_by_role("link", name="English").click()
        await page.wait_for_url(f"{base}/")
        assert await page.evaluate("() => document.documentElement.lang") == "en"
        assert await page.get_by_role("link", name="Sign in").is_visible()
        assert await violations(page) == []
        assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        await page.set_viewport_size({"width": 640, "height": 800})  # 200 % zoom of a 1280 px window
        await page.evaluate("() => { document.documentElement.style.fontSize = '200%'; }")
        assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    assert problems == []


async def test_the_portal_installs_on_a_phones_home_screen_and_caches_nothing_medical(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    """A web app manifest (name, start, icon, theme colour) that pages link to and their policy lets load;
    pages themselves are never stored (no-store), and there is no service worker to keep them."""
    async with browser(app) as client:
        home = await client.get("/")
        manifest = await client.get("/static/manifest.webmanifest")
        jeanne = await new_person(runtime, fhir)
        await sign_in(client, jeanne)
        mine = await client.get("/")
        icon = await client.get("/static/icone.svg")
    assert '<link rel="manifest" href="/static/manifest.webmanifest">' in home.text
    assert "manifest-src 'self'" in home.headers["content-security-policy"]
    assert manifest.status_code == 200 and manifest.headers["content-type"].startswith(
        "application/manifest+json"
    )
    data = manifest.json()
    assert data["start_url"] == "/" and data["display"] == "standalone" and data["theme_color"] == "#000091"
    assert data["icons"][0]["src"] == "/static/icone.svg" and icon.status_code == 200
    assert mine.status_code == 200 and mine.headers["cache-control"] == "no-store"
    assert "serviceWorker" not in mine.text
