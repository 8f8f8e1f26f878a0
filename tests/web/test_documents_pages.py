"""« Mes documents », the holder's documents pages (PRODUCT §3, §4 and §10): Marie-Ange Santoni, the demo's
holder, sees her documents but never the result waiting for its announcement consultation, downloads one,
masks one to professionals and shows it again; a holder uploads a PDF, sees it as hers and deletes it after
confirming; a wrong file or one too large is refused in French with the form as she filled it; pages need a
holder's session and forms their anti-forgery token. Through httpx on the ASGI app, and in Chromium on a
320 px wide phone screen.

axe-core is not run: axe-playwright-python is not in requirements.lock. The browser stories check what can be
checked without it instead (labels, 44 px targets, heading order, reflow at 320 px, lang, no console error
and no CSP report)."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import AsyncIterator
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from asyncpg.connection import Connection

from espace_sante.access.policy import MASKED_FROM_PROFESSIONALS
from espace_sante.access.scopes import Scopes
from espace_sante.context import Context
from espace_sante.demo import access as demo_access
from espace_sante.demo import world as demo
from espace_sante.fhir import pdsm
from espace_sante.fhir.identifiers import make_nir
from espace_sante.people import accounts
from espace_sante.people.actors import actor_for
from espace_sante.people.sessions import SESSION_SCOPES
from espace_sante.record import interactions as fhir_service
from espace_sante.runtime import Runtime
from espace_sante.web.holder.documents import binary_of
from tests.access.conftest import World, world  # noqa: F401 (the demo world, loaded once)
from tests.accounts.helpers import Person, browser, csrf_of, new_person, next_code, sign_in
from tests.content.samples import png, report_pdf
from tests.web.browser import needs_chromium, page_audit, phone, serve

HOME = "/mon-espace/documents"
MOTHER = make_nir(demo_access.MOTHER_NIR13)
NOBODY = "0" * 48
#: The documents page's statements to PostgreSQL (BEGIN and COMMIT included), at most: the session, whose space
#: it is, then the list in one transaction. 29 before issue 15 (three transactions, two of them searches).
MAX_TRIPS = 20


async def _demo_person(runtime: Runtime, kind: str, actor_id: str) -> Person:
    """A demo person with the demo password and their TOTP secret (demo/access.py)."""
    await demo.load(runtime)
    login, secret = next(
        (a[2], a[3])
        for a in demo_access.DEMO_ACCOUNTS
        if a[0] == kind and (make_nir(a[1]) if kind == "holder" else a[1]) == actor_id
    )
    account = await accounts.find_by_actor(runtime, kind, actor_id)
    assert account is not None
    return Person(account.account_id, kind, actor_id, login, demo_access.DEMO_PASSWORD, secret)


async def _labels(runtime: Runtime, rid: str) -> tuple[str | None, frozenset[str]]:
    """The document's confidentiality level and visibility codes, as stored."""
    stored = await fhir_service.read(Context.system(runtime), "DocumentReference", rid)
    return pdsm.security_flags(orjson.loads(stored.body or b"{}"))


async def _trace(runtime: Runtime, rid: str) -> list[tuple[str, str, str]]:
    """(action, actor kind, detail) of the trace records about a document, oldest first."""
    async with runtime.db.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT action, actor_kind, detail FROM audit_event WHERE space_id = $1 AND entity_id = $2 "
            "ORDER BY seq",
            uuid.UUID(rid[:32]),
            rid,
        )
    return [(r["action"], r["actor_kind"], r["detail"]) for r in rows]


async def _binary(runtime: Runtime, rid: str) -> str:
    """The Binary id of a document's content."""
    stored = await fhir_service.read(Context.system(runtime), "DocumentReference", rid)
    binary = binary_of(orjson.loads(stored.body or b"{}"))
    assert binary is not None
    return binary


def _item(html: str, rid: str) -> str:
    """One document's list item, unescaped."""
    found = re.search(rf'<li id="doc-{rid}".*?</li>', html, re.S)
    assert found, f"document {rid} not listed"
    return unescape(found.group(0))


def _value(html: str, name: str) -> str:
    found = re.search(rf'name="{name}"[^>]*value="([^"]*)"', html)
    assert found, name
    return unescape(found.group(1))


def _alert(html: str) -> str:
    found = re.search(r'role="alert"[^>]*>([^<]*)<', html)
    assert found, "no alert on the page"
    return unescape(found.group(1)).strip()


async def _upload(
    client: httpx.AsyncClient,
    token: str,
    content: bytes,
    *,
    filename: str = "document.pdf",
    ctype: str = "application/pdf",
    title: str = "Un document",
    kind: str = "DOCPAT03",
) -> httpx.Response:
    return await client.post(
        f"{HOME}/ajouter",
        data={"csrf": token, "titre": title, "type": kind},
        files={"fichier": (filename, content, ctype)},
    )


# --- through httpx -----------------------------------------------------------------------------------------


async def test_marie_ange_sees_downloads_masks_and_unmasks_her_documents_but_never_the_hidden_one(
    runtime: Runtime,
    app: Any,
    world: World,  # noqa: F811
) -> None:
    marie = await _demo_person(runtime, "holder", MOTHER)
    docs = world.documents
    ordonnance, masked, hidden = docs["ordonnance"], docs["cr-masque"], docs["resultat-annonce"]
    async with browser(app) as client:
        assert (await sign_in(client, marie)).status_code == 303
        page = await client.get(HOME)
        assert page.status_code == 200, page.text
        assert page.headers["cache-control"] == "no-store"
        assert "form-action 'self'" in page.headers["content-security-policy"]
        text = unescape(page.text)
        assert "Ordonnance : amoxicilline 1 g" in text and "Compte rendu d'hospitalisation" in text
        assert "Résultat en attente de consultation d'annonce" not in text and hidden not in page.text
        assert "Certificat de vaccination" not in text and docs["child:carnet"] not in page.text  # her son's
        assert "sauf votre médecin traitant et l'auteur du document" in text
        first = _item(page.text, ordonnance)
        assert "Prescription" in first and "10 novembre 2026" in first and "Dr Claire Lefèvre" in first
        assert "Masqué aux professionnels" not in first and "Masquer aux professionnels" in first
        assert "Supprimer" not in first  # not her upload: no deletion offered
        second = _item(page.text, masked)
        assert "Masqué aux professionnels de santé" in second and "Dr Antoine Moreau" in second
        assert "vous, votre médecin traitant et l'auteur du document" in second
        assert "Ne plus masquer" in second

        # Download: the same bytes, as an attachment the browser will not sniff nor run.
        got = await client.get(f"{HOME}/{ordonnance}/contenu")
        assert got.status_code == 200
        assert got.content == b"Amoxicilline 1 g, 3 fois par jour, 7 jours."
        assert got.headers["x-content-type-options"] == "nosniff"
        assert got.headers["content-disposition"].startswith("attachment")
        assert got.headers["content-security-policy"].startswith("sandbox")
        assert ("document:download", "holder", "") in await _trace(
            runtime, await _binary(runtime, ordonnance)
        )
        # The hidden result, an unknown document and a malformed id: a French page, never the content.
        for rid in (hidden, NOBODY, "pas-un-id!"):
            refused = await client.get(f"{HOME}/{rid}/contenu")
            assert refused.status_code == 404, rid
            assert _alert(refused.text) == "Ce document est introuvable : il a peut-être été supprimé."
            assert "annoncer" not in refused.text

        # Mask, then show again: the confidentiality level and the other labels stay as they were.
        before = await _labels(runtime, ordonnance)
        token = csrf_of(page.text)
        try:
            done = await client.post(f"{HOME}/{ordonnance}/masquer", data={"csrf": token})
            assert done.status_code == 303
            assert done.headers["location"] == f"{HOME}?message=masque#doc-{ordonnance}"
            after = await client.get(done.headers["location"])
            assert "Le document est masqué aux professionnels de santé." in unescape(after.text)
            assert "Masqué aux professionnels de santé" in _item(after.text, ordonnance)
            assert await _labels(runtime, ordonnance) == (before[0], before[1] | {MASKED_FROM_PROFESSIONALS})
        finally:
            shown = await client.post(f"{HOME}/{ordonnance}/afficher", data={"csrf": token})
        assert shown.status_code == 303
        again = await client.get(shown.headers["location"])
        assert "de nouveau visible par vos professionnels" in unescape(again.text)
        assert "Masqué aux professionnels" not in _item(again.text, ordonnance)
        assert await _labels(runtime, ordonnance) == before
        trace = await _trace(runtime, ordonnance)
        assert ("document:mask", "holder", MASKED_FROM_PROFESSIONALS) in trace
        assert ("document:unmask", "holder", MASKED_FROM_PROFESSIONALS) in trace

        # The report the hospital masked for her: shown again, then masked again (its only label).
        try:
            assert (await client.post(f"{HOME}/{masked}/afficher", data={"csrf": token})).status_code == 303
            assert (await _labels(runtime, masked))[1] == frozenset()
        finally:
            assert (await client.post(f"{HOME}/{masked}/masquer", data={"csrf": token})).status_code == 303
        assert (await _labels(runtime, masked))[1] == {MASKED_FROM_PROFESSIONALS}

        # A professional's document is not hers to delete: the page says why, in French.
        refused = await client.post(f"{HOME}/{ordonnance}/supprimer", data={"csrf": token})
        assert refused.status_code in (403, 404)
        assert _alert(refused.text).startswith(
            "Ce document n'a pas été supprimé : vous pouvez supprimer seulement"
        )
        assert (await client.get(f"{HOME}/{ordonnance}/contenu")).status_code == 200


class _Queries:
    """Counts the statements sent to PostgreSQL (BEGIN and COMMIT included): a round trip each."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        execute, run = Connection.execute, Connection._execute

        async def counted_execute(conn: Connection, query: str, *args: Any, **kw: Any) -> Any:
            if not args:  # with arguments it goes through _execute, counted there
                self.count += 1
            return await execute(conn, query, *args, **kw)

        async def counted_run(conn: Connection, *args: Any, **kw: Any) -> Any:
            self.count += 1
            return await run(conn, *args, **kw)

        monkeypatch.setattr(Connection, "execute", counted_execute)
        monkeypatch.setattr(Connection, "_execute", counted_run)


async def _records(runtime: Runtime, space_id: uuid.UUID, after: int) -> list[tuple[str, str]]:
    """(action, entity type) of the records written in a space's chain after `after`."""
    async with runtime.db.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT action, entity_type FROM audit_event WHERE space_id = $1 AND seq > $2 ORDER BY seq",
            space_id,
            after,
        )
    return [(r["action"], r["entity_type"]) for r in rows]


async def _last_seq(runtime: Runtime, space_id: uuid.UUID) -> int:
    async with runtime.db.pool.acquire() as conn:
        value = await conn.fetchval("SELECT max(seq) FROM audit_event WHERE space_id = $1", space_id)
    return int(value or 0)


async def test_the_list_is_one_service_call_one_trace_record_and_fewer_round_trips(
    runtime: Runtime,
    app: Any,
    world: World,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 15: the page wrote two records in her own history on every view (a Patient search, then a
    DocumentReference search), in more transactions and round trips. Now one record of the list shown, and the
    same documents as the generic search she could make through an app."""
    marie = await _demo_person(runtime, "holder", MOTHER)
    space_id = uuid.UUID(world.documents["ordonnance"][:32])
    child_space = uuid.UUID(world.child_patient[:32])
    actor = await actor_for(
        runtime, "holder", MOTHER, scopes=Scopes.parse(SESSION_SCOPES["holder"]), acr="", via=""
    )
    ctx = Context(runtime, actor)
    patient = await fhir_service.search(
        ctx, "Patient", [("identifier", f"urn:oid:{pdsm.INS_NIR_OID}|{MOTHER}")]
    )
    expected = await fhir_service.search(
        ctx,
        "DocumentReference",
        [
            ("patient", patient.matches[0].resource_id),
            ("status", "current"),
            ("_sort", "-date"),
            ("_count", "50"),
        ],
    )
    async with browser(app) as client:
        assert (await sign_in(client, marie)).status_code == 303
        assert (await client.get(HOME)).status_code == 200  # sessions and caches warm
        before = await _last_seq(runtime, space_id)
        child_before = await _last_seq(runtime, child_space)
        queries = _Queries(monkeypatch)
        page = await client.get(HOME)
        trips = queries.count
        monkeypatch.undo()
    assert page.status_code == 200
    assert await _records(runtime, space_id, before) == [("resource:search", "DocumentReference")]
    # Her son's name is not on this page: his identity is neither read nor traced as read.
    assert await _records(runtime, child_space, child_before) == []
    shown = re.findall(r'<li id="doc-([0-9a-f]+)"', page.text)
    assert shown == [m.resource_id for m in expected.matches]
    assert trips <= MAX_TRIPS, trips


async def test_a_holder_uploads_a_pdf_sees_it_as_hers_and_deletes_it_after_confirming(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    jeanne = await new_person(runtime, fhir)
    pdf = report_pdf()
    async with browser(app) as client:
        await sign_in(client, jeanne)
        empty = await client.get(HOME)
        assert "Vous n'avez pas encore de document." in unescape(empty.text)
        form = await client.get(f"{HOME}/ajouter")
        assert form.status_code == 200 and 'enctype="multipart/form-data"' in form.text
        done = await _upload(
            client,
            csrf_of(form.text),
            pdf,
            filename="compte-rendu.pdf",
            title="  Compte rendu   du cardiologue ",
            kind="DOCPAT03",
        )
        assert done.status_code == 303, done.text
        assert done.headers["location"].startswith(f"{HOME}?message=ajoute#doc-")
        rid = done.headers["location"].rsplit("#doc-", 1)[1]
        page = await client.get(done.headers["location"])
        assert "Votre document est ajouté." in unescape(page.text)
        mine = _item(page.text, rid)
        assert "<h3" in mine and "Compte rendu du cardiologue</h3>" in mine
        assert "Auteur</dt><dd>Vous</dd>" in mine
        assert "Autres documents déposés par le patient" in mine and "Type</dt><dd>Compte rendu</dd>" in mine
        assert "<details" in mine and "<summary>Supprimer" in mine and "Oui, supprimer ce document" in mine

        got = await client.get(f"{HOME}/{rid}/contenu")
        assert got.status_code == 200 and got.content == pdf
        assert got.headers["content-type"] == "application/pdf"
        assert 'filename="document.pdf"' in got.headers["content-disposition"]

        # Her own upload can be masked too; its confidentiality level (N) stays.
        token = csrf_of(page.text)
        assert (await client.post(f"{HOME}/{rid}/masquer", data={"csrf": token})).status_code == 303
        assert await _labels(runtime, rid) == ("N", {MASKED_FROM_PROFESSIONALS})
        assert (await client.post(f"{HOME}/{rid}/afficher", data={"csrf": token})).status_code == 303
        assert await _labels(runtime, rid) == ("N", frozenset())

        gone = await client.post(f"{HOME}/{rid}/supprimer", data={"csrf": token})
        assert gone.status_code == 303 and gone.headers["location"] == f"{HOME}?message=supprime"
        after = await client.get(gone.headers["location"])
        assert "Le document est supprimé." in unescape(after.text) and rid not in after.text
        assert (await client.get(f"{HOME}/{rid}/contenu")).status_code in (404, 410)
    assert any(a == "resource:delete" and k == "holder" for a, k, _ in await _trace(runtime, rid))


async def test_a_wrong_or_too_large_file_is_refused_in_french_and_the_form_keeps_what_she_typed(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    jeanne = await new_person(runtime, fhir)
    limit = runtime.settings.upload_max_bytes
    title = "Radio « genou » & co"
    cases = [
        # (what, bytes, file name, declared type, status, the French words shown)
        ("a broken PNG", png()[:-12], "radio.png", "image/png", 422, "PNG tronqué"),
        ("a program", b"MZ\x90\x00\x03\x00\x00\x00" + bytes(range(256)) * 8, "scan.pdf", "application/pdf", 422,
         "Type de contenu non accepté"),
        ("one byte too many", b"x" * (limit + 1), "notes.txt", "text/plain", 413, "trop volumineux : 5 Mo au plus"),
        ("far too large", b"x" * (5 * limit), "film.txt", "text/plain", 413, "trop volumineux : 5 Mo au plus"),
        ("no file", b"", "", "application/octet-stream", 400, "Choisissez un fichier."),
    ]  # fmt: skip
    async with browser(app) as client:
        await sign_in(client, jeanne)
        token = csrf_of((await client.get(f"{HOME}/ajouter")).text)
        for what, content, filename, ctype, status, said in cases:
            answer = await _upload(
                client, token, content, filename=filename, ctype=ctype, title=title, kind="DOCPAT04"
            )
            assert answer.status_code == status, (what, answer.text)
            shown = _alert(answer.text)
            assert said in shown, (what, shown)
            assert " / " not in shown and "not accepted" not in shown, what  # the French half only
            assert _value(answer.text, "titre") == title, what
            assert re.search(r'value="DOCPAT04"[^>]*\schecked', answer.text), what
            if filename:
                assert re.search(r'id="fichier"[^>]*aria-invalid="true"', answer.text, re.S), what
        no_title = await _upload(client, token, report_pdf(), title="  ")
        assert no_title.status_code == 422 and _alert(no_title.text) == "Donnez un titre au document."
        no_type = await _upload(client, token, report_pdf(), title="Radio", kind="EXE")
        assert no_type.status_code == 422 and _alert(no_type.text) == "Choisissez le type de document."
        assert _value(no_type.text, "titre") == "Radio"
        assert "Vous n'avez pas encore de document." in unescape((await client.get(HOME)).text)


async def test_pages_need_a_holder_session_and_every_post_its_token(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as client:
        for path in (HOME, f"{HOME}/ajouter", f"{HOME}/{NOBODY}/contenu"):
            away = await client.get(path)
            assert away.status_code == 303, path
            assert away.headers["location"] == f"/connexion?next={path}", path
        for path in (f"{HOME}/{NOBODY}/masquer", f"{HOME}/{NOBODY}/supprimer", f"{HOME}/ajouter"):
            refused = await client.post(path, data={"csrf": "x"})
            assert refused.status_code == 401 and "Connectez-vous" in refused.text, path

        await sign_in(client, jeanne)
        page = await client.get(f"{HOME}/ajouter")
        token = csrf_of(page.text)
        uploaded = await _upload(client, token, report_pdf(), title="Mon PDF", kind="DOCPAT09")
        rid = uploaded.headers["location"].rsplit("#doc-", 1)[1]
        for path in (f"{HOME}/{rid}/masquer", f"{HOME}/{rid}/afficher", f"{HOME}/{rid}/supprimer"):
            bare = await client.post(path, data={})
            assert bare.status_code == 403 and "formulaire a expiré" in bare.text, path
            wrong = await client.post(path, data={"csrf": token + "x"})
            assert wrong.status_code == 403, path
            cross = await client.post(
                path,
                data={"csrf": token},
                headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
            )
            assert cross.status_code == 403, path
        forged = await _upload(client, "", report_pdf(), title="Un second PDF", kind="DOCPAT09")
        assert forged.status_code == 403
        garbage = await client.post(
            f"{HOME}/ajouter", content=b"garbage", headers={"Content-Type": "multipart/form-data; boundary=x"}
        )
        assert (
            garbage.status_code == 400
            and _alert(garbage.text) == "Le formulaire n'a pas pu être lu : recommencez."
        )
        listed = await client.get(HOME)
        assert "Mon PDF" in listed.text and "Un second PDF" not in listed.text
        assert "Masqué aux professionnels" not in _item(listed.text, rid)


async def test_a_professional_session_does_not_open_the_holder_pages(
    runtime: Runtime,
    app: Any,
    world: World,  # noqa: F811
) -> None:
    doctor = await _demo_person(runtime, "practitioner", demo_access.HOSPITAL_DOCTOR.rpps)
    async with browser(app) as client:
        assert (await sign_in(client, doctor)).status_code == 303
        for path in (HOME, f"{HOME}/ajouter", f"{HOME}/{world.documents['ordonnance']}/contenu"):
            page = await client.get(path)
            assert page.status_code == 403 and "réservée à son titulaire" in unescape(page.text), path


async def test_the_pages_are_french_phone_first_and_load_no_inline_code(
    runtime: Runtime, fhir: httpx.AsyncClient, app: Any
) -> None:
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        token = csrf_of((await client.get(f"{HOME}/ajouter")).text)
        await _upload(client, token, report_pdf(), title="Ordonnance de mai")
        for path in (HOME, f"{HOME}/ajouter"):
            page = await client.get(path)
            assert '<html lang="fr">' in page.text and 'name="viewport"' in page.text, path
            assert "<script>" not in page.text and " style=" not in page.text and "<style" not in page.text
            assert '<link rel="stylesheet" href="/static/documents.css">' in page.text
            headings = [int(h) for h in re.findall(r"<h([1-6])", page.text)]
            assert headings[0] == 1 and all(b - a <= 1 for a, b in itertools.pairwise(headings))
            for field in re.findall(r'<input id="([^"]+)"', page.text):
                assert f'for="{field}"' in page.text, field
            assert "<button" in page.text and 'role="button"' not in page.text
        css = await client.get("/static/documents.css")
        assert css.status_code == 200 and "min-height: 2.75rem" in css.text


# --- in a real browser, on a phone ------------------------------------------------------------------------


@pytest.fixture
async def site(runtime: Runtime) -> AsyncIterator[tuple[Runtime, str]]:
    async with serve(runtime) as served:
        yield served


#: In the page's main part: every control at least 44 CSS pixels high (WCAG 2.5.5; a radio's target is its
#: label), every field labelled; headings in order; nothing wider than the screen; French.
_AUDIT = page_audit(
    "main a, main button, main summary, main input:not([type=hidden]), main label",
    # Not measured: what a closed <details> hides, radio buttons (their label is the target) and other labels.
    skip="(r.width === 0 && r.height === 0) || (el.tagName === 'INPUT' && el.type === 'radio') || "
    "(el.tagName === 'LABEL' && !(el.control && el.control.type === 'radio'))",
)


async def _sign_in_for(page: Any, base: str, person: Person) -> None:
    """Open the documents page: the sign-in forms come first, then the page itself."""
    await page.goto(f"{base}{HOME}")
    await page.wait_for_url(f"{base}/connexion?next={HOME}")
    await page.locator("#login").fill(person.login)
    await page.get_by_label("Mot de passe", exact=True).fill(person.password)
    await page.get_by_role("button", name="Continuer").click()
    await page.wait_for_url(f"{base}/connexion/code")
    await page.get_by_label("Code à 6 chiffres").fill(next_code(person.totp_secret))
    await page.get_by_role("button", name="Se connecter", exact=True).click()
    await page.wait_for_url(f"{base}{HOME}")


def _real(problems: list[str], *expected: str) -> list[str]:
    """Console errors but the icon Chromium asks for (base.html names none) and the `expected` answers."""
    return [p for p in problems if "/favicon.ico" not in p and not any(e in p for e in expected)]


@needs_chromium
async def test_on_a_phone_marie_ange_masks_a_report_then_shows_it_again_and_downloads_it(
    site: tuple[Runtime, str],
    world: World,  # noqa: F811
    tmp_path: Path,
) -> None:
    rt, base = site
    marie = await _demo_person(rt, "holder", MOTHER)
    ordonnance = world.documents["ordonnance"]
    problems: list[str] = []
    try:
        async with phone(problems) as page:
            await _sign_in_for(page, base, marie)
            assert await page.title() == "Mes documents · Mon espace santé"
            assert await page.get_by_text("Résultat en attente").count() == 0
            assert await page.evaluate(_AUDIT) == []

            item = page.locator(f"#doc-{ordonnance}")
            await item.get_by_role("button", name=re.compile("^Masquer aux professionnels")).click()
            await page.wait_for_url(f"{base}{HOME}?message=masque#doc-{ordonnance}")
            await item.get_by_text("Masqué aux professionnels de santé").wait_for()
            assert await page.get_by_role("status").text_content() == (
                "Le document est masqué aux professionnels de santé."
            )
            await item.get_by_role("button", name=re.compile("^Ne plus masquer")).click()
            await page.wait_for_url(f"{base}{HOME}?message=affiche#doc-{ordonnance}")
            assert await item.get_by_text("Masqué aux professionnels de santé").count() == 0

            async with page.expect_download() as waiting:
                await item.get_by_role("link", name=re.compile("^Télécharger")).click()
            download = await waiting.value
            saved = tmp_path / "ordonnance.txt"
            await download.save_as(saved)
            assert saved.read_bytes() == b"Amoxicilline 1 g, 3 fois par jour, 7 jours."
    finally:
        assert MASKED_FROM_PROFESSIONALS not in (await _labels(rt, ordonnance))[1], "left masked"
    assert _real(problems) == []


@needs_chromium
async def test_on_a_phone_a_holder_uploads_a_pdf_then_deletes_it_after_confirming(
    site: tuple[Runtime, str], fhir: httpx.AsyncClient, tmp_path: Path
) -> None:
    rt, base = site
    jeanne = await new_person(rt, fhir)
    pdf = tmp_path / "bilan.pdf"
    pdf.write_bytes(report_pdf())
    broken = tmp_path / "photo.png"
    broken.write_bytes(png()[:-12])
    problems: list[str] = []
    async with phone(problems) as page:
        await _sign_in_for(page, base, jeanne)
        await page.get_by_role("link", name="Ajouter un document").click()
        await page.wait_for_url(f"{base}{HOME}/ajouter")
        assert await page.evaluate(_AUDIT) == []

        # A broken photo first: refused, in French, with her title and type still there.
        await page.get_by_label("Titre du document").fill("Bilan sanguin de mars")
        await page.get_by_label("Résultats d'analyses").check()
        await page.get_by_label("Fichier").set_input_files(str(broken))
        await page.get_by_role("button", name="Ajouter ce document").click()
        await page.get_by_role("alert").wait_for()
        assert "PNG tronqué" in (await page.get_by_role("alert").text_content() or "")
        assert await page.get_by_label("Titre du document").input_value() == "Bilan sanguin de mars"
        assert await page.get_by_label("Résultats d'analyses").is_checked()
        assert await page.evaluate(_AUDIT) == []

        await page.get_by_label("Fichier").set_input_files(str(pdf))
        await page.get_by_role("button", name="Ajouter ce document").click()
        await page.wait_for_url(re.compile(r".*\?message=ajoute#doc-[0-9a-f]+$"))
        rid = page.url.rsplit("#doc-", 1)[1]
        mine = page.locator(f"#doc-{rid}")
        await mine.get_by_role("heading", name="Bilan sanguin de mars").wait_for()
        assert await mine.get_by_text("Vous", exact=True).count() == 1
        assert await page.evaluate(_AUDIT) == []

        confirm = mine.get_by_role("button", name="Oui, supprimer ce document")
        assert not await confirm.is_visible()  # the confirmation comes first
        await mine.get_by_text("Supprimer", exact=False).first.click()
        assert await confirm.is_visible()
        assert await page.evaluate(_AUDIT) == []
        await confirm.click()
        await page.wait_for_url(f"{base}{HOME}?message=supprime")
        assert await page.locator(f"#doc-{rid}").count() == 0
        assert await page.get_by_role("status").text_content() == "Le document est supprimé."
    refusal = f"status of 422 (Unprocessable Entity) {{'url': '{base}{HOME}/ajouter'"
    assert _real(problems, refusal) == []
