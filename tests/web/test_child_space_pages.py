"""A parent manages her child's space on the portal (PRODUCT §2, minors; web/holder/whose.py): she picks it on
« État de mon espace santé », every page then says whose space it is and acts on it as her child's legal
representative (what is hidden from representatives stays hidden), she adds a document for him, and comes
back to her own. The choice names no space, cannot be forged, and ends the day her rights end. Through httpx
on the ASGI app."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest

from espace_sante import clock
from espace_sante.access.actors import Actor
from espace_sante.context import Context
from espace_sante.demo import access as demo_access
from espace_sante.errors import FhirError, Forbidden
from espace_sante.fhir.identifiers import make_nir
from espace_sante.record import documents
from espace_sante.runtime import Runtime
from espace_sante.spaces import lifecycle
from espace_sante.storage import access as access_store
from espace_sante.storage.db import Conn
from tests.access.conftest import World, world  # noqa: F401 (the demo world, loaded once)
from tests.accounts.helpers import browser, csrf_of, new_person, next_code, sign_in
from tests.content.samples import report_pdf
from tests.factories import BASE, FHIR_JSON, new_nir, patient
from tests.registry.test_import import person, run, write
from tests.web.browser import needs_chromium, page_audit, phone, serve, sign_in_with_keyboard, tab_to
from tests.web.test_documents_pages import _demo_person

SPACE = "/mon-espace/mon-espace-sante"
DOCUMENTS = "/mon-espace/documents"
CHOOSE = "/mon-espace/pour"
MOTHER = make_nir(demo_access.MOTHER_NIR13)
CHILD = make_nir(demo_access.CHILD_NIR13)


def _text(response: httpx.Response) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", response.text)).split())


def _choice(html: str, name: str) -> str:
    """The reference the chooser's button for `name`'s space posts."""
    found = re.search(
        r'name="pour" value="([^"]*)">\s*<button[^>]*>Gérer l(?:&#39;|\x27)espace santé de '
        + re.escape(name),
        html,
    )
    assert found, f"no choice for {name}"
    return found.group(1)


async def _choose(client: httpx.AsyncClient, ref: str, *, csrf: str | None = None) -> httpx.Response:
    page = await client.get(SPACE)
    token = csrf_of(page.text) if csrf is None else csrf
    return await client.post(CHOOSE, data={"csrf": token, "pour": ref})


async def _space(rt: Runtime, ins: str) -> uuid.UUID:
    found = await lifecycle.space_of_ins(rt, ins)
    assert found is not None
    return found


async def test_marie_ange_manages_leos_space_and_never_sees_what_is_hidden_from_her(
    runtime: Runtime,
    app: Any,
    world: World,  # noqa: F811
) -> None:
    marie = await _demo_person(runtime, "holder", MOTHER)
    docs = world.documents
    async with browser(app) as client:
        assert (await sign_in(client, marie)).status_code == 303
        own = await client.get(SPACE)
        assert "Les espaces santé que vous gérez" in _text(own)
        assert "Vous gérez l'espace santé de" not in _text(own)
        ref = _choice(own.text, "Léo Petit")
        # The choice names no space and no person: an opaque reference, bound to her session.
        leo_space = await _space(runtime, CHILD)
        assert str(leo_space) not in own.text and CHILD not in own.text and leo_space.hex not in ref

        chosen = await _choose(client, ref)
        assert chosen.status_code == 303 and chosen.headers["location"] == f"{SPACE}?message=enfant"
        cookie = chosen.headers.get("set-cookie", "")
        assert cookie.startswith("__Host-es_pour=") and "HttpOnly" in cookie and "Secure" in cookie
        assert str(leo_space) not in cookie
        page = await client.get(chosen.headers["location"])
        words = _text(page)
        assert "État de l'espace santé de Léo Petit" in words
        assert "Vous gérez l'espace santé de Léo Petit , en tant que représentant légal." in words
        assert "L'espace santé de Léo Petit est ouvert depuis le" in words
        assert "Fermer l'espace santé de Léo Petit" in words

        listing = await client.get(DOCUMENTS)
        assert listing.status_code == 200, listing.text
        words = _text(listing)
        assert "Documents de Léo Petit" in words and "Certificat de vaccination" in words
        # Hidden from his representatives by his doctor: not listed, not readable by its address.
        assert docs["child:confidentiel"] not in listing.text and "Consultation confidentielle" not in words
        assert (await client.get(f"{DOCUMENTS}/{docs['child:confidentiel']}/contenu")).status_code == 404
        # Her own documents are not his.
        assert "Ordonnance : amoxicilline 1 g" not in words
        content = await client.get(f"{DOCUMENTS}/{docs['child:carnet']}/contenu")
        assert content.status_code == 200

        back = await client.post(CHOOSE, data={"csrf": csrf_of(listing.text), "pour": ""})
        assert back.headers["location"] == f"{SPACE}?message=moi"
        mine = await client.get(DOCUMENTS)
        assert "Mes documents" in _text(mine) and "Ordonnance : amoxicilline 1 g" in _text(mine)
        assert "Certificat de vaccination" not in _text(mine)


async def _family(runtime: Runtime, fhir: httpx.AsyncClient) -> tuple[Any, str, str]:
    """A parent with an account, and her son (born in 2014) whose legal representative she is."""
    parent = await new_person(runtime, fhir)
    son = new_nir()
    made = await fhir.post(
        "/Patient",
        json=patient(son, name=[{"family": "Moreau", "given": ["Hugo"]}], birthDate="2014-03-02"),
        headers=FHIR_JSON,
    )
    assert made.status_code == 201, made.text
    recorded = await fhir.post(
        f"{BASE}/access/representatives", json={"ins": son, "representative_ins": parent.actor_id}
    )
    assert recorded.status_code == 204, recorded.text
    return parent, son, made.json()["id"]


async def test_she_adds_a_document_for_her_son_in_his_name_traced_as_hers_until_her_rights_end(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    parent, son, son_patient = await _family(runtime, fhir)
    son_space = await _space(runtime, son)
    async with browser(app) as client:
        assert (await sign_in(client, parent)).status_code == 303
        await _choose(client, _choice((await client.get(SPACE)).text, "Hugo Moreau"))
        form = await client.get(f"{DOCUMENTS}/ajouter")
        assert "Ajouter un document pour Hugo Moreau" in _text(form)
        sent = await client.post(
            f"{DOCUMENTS}/ajouter",
            data={"csrf": csrf_of(form.text), "titre": "Carnet de santé, page vaccins", "type": "DOCPAT03"},
            files={"fichier": ("carnet.pdf", report_pdf(), "application/pdf")},
        )
        assert sent.status_code == 303, sent.text
        rid = sent.headers["location"].rsplit("#doc-", 1)[1]
        listing = _text(await client.get(DOCUMENTS))
        assert "Carnet de santé, page vaccins" in listing and "Ses représentants légaux" in listing

        # His document, in his space, his own deposit (PDSm: the patient is the author); the trace names her.
        stored = await fhir.get(f"/DocumentReference/{rid}")
        body = stored.json()
        assert body["subject"]["reference"] == f"Patient/{son_patient}"
        [author] = [c for c in body["contained"] if c["resourceType"] == "Patient"]
        assert author["identifier"][0]["value"] == son

        async def trace(conn: Conn) -> list[tuple[str, str, str]]:
            rows = await conn.fetch(
                "SELECT action, actor_kind, actor_id FROM audit_event WHERE space_id = $1 AND entity_id = $2",
                son_space,
                rid,
            )
            return [(r["action"], r["actor_kind"], r["actor_id"]) for r in rows]

        assert ("resource:create", "representative", parent.actor_id) in await runtime.db.read("t", trace)

        # Her rights end (Hugo turns 18): the very next page is her own space, and he is no longer offered.
        await runtime.db.interaction(
            "t",
            access_store.add_representative,
            son_space,
            parent.actor_id,
            clock.today() - timedelta(days=1),
        )
        page = await client.get(SPACE)
        assert "État de mon espace santé" in _text(page) and "Hugo Moreau" not in _text(page)
        assert "Les espaces santé que vous gérez" not in _text(page)
        assert "Carnet de santé, page vaccins" not in _text(await client.get(DOCUMENTS))


async def test_a_childs_space_not_open_yet_says_so_and_takes_no_document(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Zoé's space was made from the registry and has not opened: nothing is in it, nobody deposits yet."""
    parent = await new_person(runtime, fhir)
    zoe = person(
        first_names="Zoé", last_name="Petit", birth_date="2016-02-02", representative_1_nir=parent.actor_id
    )
    await run(runtime, write(tmp_path / "r.csv", [zoe]))
    async with browser(app) as client:
        assert (await sign_in(client, parent)).status_code == 303
        await _choose(client, _choice((await client.get(SPACE)).text, "Zoé Petit"))
        listing = await client.get(DOCUMENTS)
        words = _text(listing)
        assert "Pas encore de documents" in words
        assert "L'espace santé de Zoé Petit n'est pas encore ouvert" in words
        assert "Ajouter un document" not in words
        form = await client.get(f"{DOCUMENTS}/ajouter")
        assert form.status_code == 303 and form.headers["location"] == DOCUMENTS
        forced = await client.post(
            f"{DOCUMENTS}/ajouter",
            data={"csrf": csrf_of(listing.text), "titre": "Carnet", "type": "DOCPAT03"},
            files={"fichier": ("carnet.pdf", report_pdf(), "application/pdf")},
        )
        assert forced.status_code == 303 and forced.headers["location"] == DOCUMENTS
    space = await _space(runtime, zoe["nir"])
    assert await lifecycle.state(runtime, space) == "registered"


async def test_a_forged_or_unknown_choice_changes_nothing(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    parent, _, _ = await _family(runtime, fhir)
    async with browser(app) as client:
        assert (await sign_in(client, parent)).status_code == 303
        ref = _choice((await client.get(SPACE)).text, "Hugo Moreau")
        # Without the session's anti-forgery token.
        forged = await _choose(client, ref, csrf="x" * 40)
        assert forged.headers["location"] == f"{SPACE}?message=refuse"
        assert "État de mon espace santé" in _text(await client.get(SPACE))
        # A reference to no space she represents (made up, or another session's).
        unknown = await _choose(client, "0" * 32)
        assert unknown.headers["location"] == f"{SPACE}?message=introuvable"
        assert "État de mon espace santé" in _text(await client.get(SPACE))
        # A cookie set by hand to a made-up reference is her own space too.
        client.cookies.set("__Host-es_pour", "f" * 32)
        assert "État de mon espace santé" in _text(await client.get(SPACE))
        # Signing out drops the choice with the session it was bound to.
        out = await client.post("/deconnexion", data={"csrf": csrf_of((await client.get(SPACE)).text)})
        dropped = [c for c in out.headers.get_list("set-cookie") if c.startswith("__Host-es_pour=")]
        assert dropped and "Max-Age=0" in dropped[0]


async def test_only_a_representative_deposits_in_someone_elses_name(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    parent, son, _ = await _family(runtime, fhir)
    as_herself = Context(runtime, Actor("holder", parent.actor_id))
    with pytest.raises(Forbidden):
        await documents.upload(as_herself, content=report_pdf(), title="T", type_code="DOCPAT03", for_ins=son)
    stranger = await new_person(runtime, fhir)
    as_stranger = Context(runtime, Actor("representative", stranger.actor_id))
    with pytest.raises(FhirError) as refused:
        await documents.upload(
            as_stranger, content=report_pdf(), title="T", type_code="DOCPAT03", for_ins=son
        )
    assert refused.value.status in (403, 404)


# --- in Chromium, on a phone, with the keyboard only -----------------------------------------------------

#: Every control at least 44 CSS pixels high, every field labelled, headings in order, nothing wider than the
#: screen, French: the line that says whose space it is and its button included.
_AUDIT = page_audit("main a, main button, #pour button, nav a, label")


@pytest.fixture
async def site(runtime: Runtime) -> Any:
    async with serve(runtime) as served:
        yield served


@needs_chromium
async def test_on_a_phone_with_the_keyboard_a_parent_opens_her_sons_documents_and_comes_back(
    site: tuple[Runtime, str], fhir: httpx.AsyncClient
) -> None:
    rt, base = site
    parent, _, _ = await _family(rt, fhir)
    problems: list[str] = []
    async with phone(problems) as page:
        await sign_in_with_keyboard(
            page, base, parent.login, parent.password, next_code(parent.totp_secret), SPACE
        )
        assert await page.evaluate(_AUDIT) == []

        await tab_to(page, "Gérer l'espace santé de Hugo Moreau")
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{base}{SPACE}?message=enfant")
        assert await page.title() == "État de l'espace santé de Hugo Moreau · Mon espace santé"
        assert await page.evaluate(_AUDIT) == []
        await tab_to(page, "Ses documents")
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{base}{DOCUMENTS}")
        assert await page.title() == "Documents de Hugo Moreau · Mon espace santé"
        assert await page.evaluate(_AUDIT) == []

        await tab_to(page, "Revenir à mon espace santé")
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{base}{SPACE}?message=moi")
        assert await page.title() == "État de mon espace santé · Mon espace santé"
        assert await page.evaluate(_AUDIT) == []
    assert [p for p in problems if "/favicon.ico" not in p] == []
