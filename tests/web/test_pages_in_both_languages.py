"""Every portal page in French and in English, none mixing the two (web/i18n.py; tests/web/test_languages.py
checks the catalogue): the sign-in and account pages, the connected apps and the consent page, the holder's
documents and her space's pages, the activation and opposition pages, the message page and the refusals on
forms. Each page is fetched in each language and must hold none of a few telltale words of the other (in its
text, its title and what it says to a screen reader), its `lang` the language asked for. The pages the
Chromium stories already visit pass axe-core at 320 px wide in both languages."""

from __future__ import annotations

import re
import uuid
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx

from espace_sante.context import Context
from espace_sante.oauth import clients as oauth_clients
from espace_sante.runtime import Runtime
from espace_sante.spaces import lifecycle
from tests.accounts.helpers import PASSWORD, browser, csrf_of, new_person, next_code, sign_in
from tests.activation.test_activate_and_oppose import code_for, imported
from tests.activation.test_redeem import new_ip
from tests.content.samples import report_pdf
from tests.oauth.conftest import authorize_params, pkce
from tests.registry.test_import import person
from tests.web.axe import violations
from tests.web.browser import needs_chromium, phone, serve

LANGUAGES = ("fr", "en")
#: Words only an untranslated French string would put on an English page (names, "Mon espace santé" and the
#: French institutions an English sentence names, « caisse d'assurance maladie », hold none of them).
FRENCH = frozenset(
    [
        "vous",
        "votre",
        "vos",
        "les",
        "des",
        "est",
        "une",
        "pour",
        "avec",
        "dans",
        "sont",
        "pas",
        "sur",
        "et",
        "ou",
        "le",
        "la",
        "du",
        "au",
        "ce",
        "qui",
        "continuer",
    ]
)
#: Words only an untranslated English string would put on a French page.
ENGLISH = frozenset(
    ["the", "your", "you", "and", "with", "is", "to", "of", "not", "for", "are", "sign", "skip", "continue"]
)
_AUDIBLE = ("aria-label", "placeholder", "title", "alt")


class _Words(HTMLParser):
    """The words a person reads or hears on a page: its text (the title's too), and what labels, hints and
    the passkey buttons' status lines say (data-say-*)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (name in _AUDIBLE or name.startswith("data-say-")):
                self.parts.append(value)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def words_of(html: str) -> set[str]:
    """The page's words, in lower case."""
    reader = _Words()
    reader.feed(html)
    return set(re.findall(r"\w+", " ".join(reader.parts).lower()))


def check(page: httpx.Response, lang: str) -> None:
    """The page is in `lang`, and in `lang` only."""
    assert f'<html lang="{lang}">' in page.text, (page.url, page.status_code)
    assert page.headers["content-language"] == lang
    other = ENGLISH if lang == "fr" else FRENCH
    found = words_of(page.text) & other
    assert not found, f"{page.url} ({page.status_code}) in {lang} says {sorted(found)}"


def speaking(client: httpx.AsyncClient, lang: str) -> httpx.AsyncClient:
    client.cookies.set("langue", lang)  # as the switch leaves it
    return client


async def test_the_sign_in_account_and_apps_pages_in_either_language(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    """Sign-in (a wrong password, then the code step, a wrong code), account security and its notices and
    refusals, the authenticator set-up, recovery codes, the step-up page, the connected apps, the consent page
    and the authorization endpoint's refusal, the message page, signing out."""
    client_app = await oauth_clients.register_client(
        runtime, "Carnet Santé+", "patient/*.rs", kind="app", redirect_uris=("https://app.example.org/cb",)
    )
    for lang in LANGUAGES:
        jeanne = await new_person(runtime, fhir)
        async with speaking(browser(app), lang) as client:
            page = await client.get("/connexion")
            check(page, lang)
            wrong = await client.post(
                "/connexion",
                data={"csrf": csrf_of(page.text), "login": jeanne.login, "password": "pas le bon"},
            )
            assert wrong.status_code == 400
            check(wrong, lang)
            assert ("Wrong login or password." in wrong.text) == (lang == "en")
            first = await client.post(
                "/connexion", data={"csrf": csrf_of(page.text), "login": jeanne.login, "password": PASSWORD}
            )
            assert first.status_code == 303
            code_page = await client.get("/connexion/code")
            check(code_page, lang)
            wrong_code = await client.post(
                "/connexion/code", data={"csrf": csrf_of(code_page.text), "code": "1"}
            )
            check(wrong_code, lang)
            signed = await client.post(
                "/connexion/code",
                data={"csrf": csrf_of(code_page.text), "code": next_code(jeanne.totp_secret)},
            )
            assert signed.status_code == 303, signed.text

            security = await client.get("/compte/securite?message=cle-retiree")
            check(security, lang)
            token = csrf_of(security.text)
            differ = await client.post(
                "/compte/mot-de-passe",
                data={"csrf": token, "current": PASSWORD, "new": "a" * 12, "confirm": "b"},
            )
            assert differ.status_code == 400
            check(differ, lang)
            unknown = await client.post(f"/compte/sessions/{uuid.uuid4()}/fermer", data={"csrf": token})
            assert unknown.status_code == 404
            check(unknown, lang)
            check(await client.post("/compte/totp", data={"csrf": token}), lang)
            check(await client.post("/compte/codes-secours", data={"csrf": token}), lang)
            forged = await client.post("/compte/codes-secours", data={"csrf": "pas-le-bon"})
            assert forged.status_code == 403
            check(forged, lang)
            step_up = await client.get("/compte/confirmer-identite", params={"suite": "/compte/securite"})
            check(step_up, lang)
            refused = await client.post(
                "/compte/confirmer-identite",
                data={
                    "csrf": token,
                    "suite": "/compte/securite",
                    "password": "faux",  # pragma: allowlist secret
                    "code": "000000",
                },
            )
            check(refused, lang)

            check(await client.get("/compte/applications"), lang)
            _verifier, challenge = pkce()
            consent = await client.get(
                "/oauth/authorize",
                params=authorize_params(
                    client_app.client_id, challenge, redirect_uri="https://app.example.org/cb"
                ),
            )
            assert consent.status_code == 200, consent.text
            check(consent, lang)
            form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', consent.text))
            approved = await client.post("/oauth/authorize", data={**form, "decision": "autoriser"})
            assert approved.status_code == 303
            listed = await client.get("/compte/applications?message=deconnectee")
            assert "Carnet Santé+" in listed.text
            check(listed, lang)
            elsewhere = await client.get(
                "/oauth/authorize",
                params=authorize_params("inconnu", challenge, redirect_uri="https://x.example/cb"),
            )
            assert elsewhere.status_code == 400
            check(elsewhere, lang)

            out = await client.post("/deconnexion", data={"csrf": token})
            check(await client.get(out.headers["location"]), lang)
            check(await client.post("/compte/sessions/fermer-toutes", data={"csrf": token}), lang)  # 401


async def test_the_holders_documents_and_space_pages_in_either_language(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    """Her documents (empty, then with her upload), the upload form and its refusal, a document not found and a
    forged form (the message page), her space's page and its refusal, the closing and destruction steps, and
    the documents page of a closed space."""
    for lang in LANGUAGES:
        jeanne = await new_person(runtime, fhir)
        async with speaking(browser(app), lang) as client:
            assert (await sign_in(client, jeanne)).status_code == 303
            empty = await client.get("/mon-espace/documents")
            assert empty.status_code == 200, empty.text
            check(empty, lang)
            form = await client.get("/mon-espace/documents/ajouter")
            check(form, lang)
            token = csrf_of(form.text)
            no_file = await client.post(
                "/mon-espace/documents/ajouter",
                data={"csrf": token, "titre": "Bilan", "type": "DOCPAT05"},
                files={"fichier": ("", b"", "application/octet-stream")},
            )
            assert no_file.status_code == 400
            check(no_file, lang)
            added = await client.post(
                "/mon-espace/documents/ajouter",
                data={"csrf": token, "titre": "Bilan sanguin", "type": "DOCPAT05"},
                files={"fichier": ("bilan.pdf", report_pdf(), "application/pdf")},
            )
            assert added.status_code == 303, added.text
            listed = await client.get(added.headers["location"])
            assert "Bilan sanguin" in listed.text
            check(listed, lang)
            missing = await client.get(f"/mon-espace/documents/{'0' * 48}/contenu")
            assert missing.status_code == 404
            check(missing, lang)
            forged = await client.post("/mon-espace/documents/x/masquer", data={"csrf": "pas-le-bon"})
            assert forged.status_code == 403
            check(forged, lang)

            space = await client.get("/mon-espace/mon-espace-sante")
            check(space, lang)
            contested = await client.post("/mon-espace/mon-espace-sante/contester", data={"csrf": token})
            assert contested.status_code == 409
            check(contested, lang)
            check(await client.get("/mon-espace/mon-espace-sante/fermer"), lang)
            check(await client.get("/mon-espace/mon-espace-sante/detruire"), lang)
            unticked = await client.post("/mon-espace/mon-espace-sante/detruire", data={"csrf": token})
            assert unticked.status_code == 400
            check(unticked, lang)

            hers = await lifecycle.space_of_ins(runtime, jeanne.actor_id)
            assert hers is not None
            await lifecycle.close(Context.system(runtime), hers)
            closed = await client.get("/mon-espace/documents")
            assert 'id="inaccessible"' in closed.text
            check(closed, lang)
            check(await client.get("/mon-espace/mon-espace-sante?message=ferme"), lang)


async def test_the_activation_and_opposition_pages_in_either_language(
    runtime: Runtime, app: Any, tmp_path: Path
) -> None:
    """The choice, the code forms and their error summary, the account step with its errors, the recovery
    codes, the opposition's confirmation and record, and the proof asked for from another browser."""
    for lang in LANGUAGES:
        anne = person(first_names="Anne", birth_date="1950-03-27")
        paul = person(first_names="Paul", birth_date="1951-07-01")
        spaces = await imported(runtime, tmp_path, anne, paul)
        transport = httpx.ASGITransport(app=app, client=(new_ip(), 51000))
        async with speaking(
            httpx.AsyncClient(transport=transport, base_url="https://127.0.0.1:8000"), lang
        ) as client:
            check(await client.get("/activation"), lang)
            form = await client.get("/activation/activer?message=expire")
            check(form, lang)
            token = csrf_of(form.text)
            empty = await client.post("/activation/activer", data={"csrf": token, "code": "", "jour": "31"})
            assert empty.status_code == 400
            check(empty, lang)
            check(await client.get("/activation/opposition"), lang)

            code = await code_for(runtime, spaces[0])
            born = date(1950, 3, 27)
            typed = {
                "csrf": token,
                "code": code,
                "jour": str(born.day),
                "mois": str(born.month),
                "annee": "1950",
            }
            wrong = await client.post("/activation/activer", data={**typed, "jour": "28"})
            assert wrong.status_code == 400
            check(wrong, lang)
            done = await client.post("/activation/activer", data=typed)
            assert done.status_code == 303, done.text
            account = await client.get("/activation/compte")
            check(account, lang)
            secret = re.search(r'class="secret"><code>([A-Z2-7 ]+)</code>', account.text)
            assert secret is not None
            mistakes = await client.post(
                "/activation/compte",
                data={
                    "csrf": csrf_of(account.text),
                    "login": "",
                    "password": PASSWORD,
                    "confirm": "x",
                    "code": "0",
                },
            )
            assert mistakes.status_code == 400
            check(mistakes, lang)
            created = await client.post(
                "/activation/compte",
                data={
                    "csrf": csrf_of(account.text),
                    "login": f"anne-{uuid.uuid4().hex[:6]}@exemple.fr",
                    "password": PASSWORD,
                    "confirm": PASSWORD,
                    "code": next_code(secret.group(1).replace(" ", "")),
                },
            )
            assert created.status_code == 200, created.text
            check(created, lang)

            code = await code_for(runtime, spaces[1])
            checked = await client.post(
                "/activation/opposition",
                data={"csrf": token, "code": code, "jour": "1", "mois": "7", "annee": "1951"},
            )
            assert checked.status_code == 303, checked.text
            confirm = await client.get("/activation/opposition/confirmer")
            check(confirm, lang)
            opposed = await client.post(
                "/activation/opposition/confirmer", data={"csrf": csrf_of(confirm.text)}
            )
            assert opposed.status_code == 303
            recorded = await client.get("/activation/opposition/enregistree")
            check(recorded, lang)
        async with speaking(
            httpx.AsyncClient(transport=transport, base_url="https://127.0.0.1:8000"), lang
        ) as other:
            gone = await other.get("/activation/opposition/attestation")
            assert gone.status_code == 404
            check(gone, lang)


def test_the_telltale_words_tell() -> None:
    """The check finds a word of the other language in the text and in what a screen reader says, not in
    addresses, names or the service's own name."""
    assert words_of('<p>Votre espace</p><a href="/mon-espace/vos">x</a>') & FRENCH == {"votre"}
    assert words_of('<button aria-label="Close the session">x</button>') & ENGLISH == {"the"}
    assert not words_of('<p>Jeanne Lefèvre, <a href="/x?the=and">Mon espace santé</a></p>') & (
        FRENCH | ENGLISH
    )


@needs_chromium
async def test_the_pages_with_chromium_stories_pass_axe_at_320_px_in_either_language(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """At 320 px, in French then in English: the activation choice and the opposition form, the sign-in steps,
    account security and the step-up page, her documents (with one) and the upload form, her space's page and
    its closing and destruction steps: axe-core clean, no horizontal scrolling."""
    jeanne = await new_person(runtime, fhir)
    problems: list[str] = []
    async with serve(runtime) as (_rt, base), phone(problems) as page:

        async def visit(path: str, lang: str) -> None:
            await page.goto(f"{base}{path}")
            assert await page.evaluate("() => document.documentElement.lang") == lang, path
            assert await violations(page) == [], (path, lang)
            assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), (
                path
            )

        for lang in LANGUAGES:
            await page.goto(f"{base}/langue?vers={lang}&retour=/")  # the switch, as a person uses it
            for path in ("/activation", "/activation/opposition", "/connexion"):
                await visit(path, lang)
            if lang == "fr":
                await page.locator("#login").fill(jeanne.login)
                await page.locator("#password").fill(jeanne.password)
                await page.locator("#password").press("Enter")
                await page.wait_for_url(f"{base}/connexion/code")
                assert await violations(page) == []
                await page.locator("#code").fill(next_code(jeanne.totp_secret))
                await page.locator("#code").press("Enter")
                await page.wait_for_url(f"{base}/compte/securite")
                await page.goto(f"{base}/mon-espace/documents/ajouter")
                await page.locator("#titre").fill("Bilan sanguin")
                await page.locator("#type-DOCPAT05").check()
                await page.locator("#fichier").set_input_files(
                    {"name": "bilan.pdf", "mimeType": "application/pdf", "buffer": report_pdf()}
                )
                await page.locator("#titre").press("Enter")
                await page.wait_for_url(re.compile(r".*/mon-espace/documents\?message=ajoute.*"))
            for path in (
                "/compte/securite",
                "/compte/confirmer-identite?suite=%2Fcompte%2Fsecurite",
                "/mon-espace/documents",
                "/mon-espace/documents/ajouter",
                "/mon-espace/mon-espace-sante",
                "/mon-espace/mon-espace-sante/fermer",
                "/mon-espace/mon-espace-sante/detruire",
            ):
                await visit(path, lang)
    assert problems == []
