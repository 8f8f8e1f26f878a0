"""Issue 18's "done when", in Chromium at phone size: Marie-Ange Santoni, the demo holder, signs in with the
keyboard and sees her home; on « Qui peut voir mon dossier » she withdraws her pharmacist's consent, unblocks
and blocks Dr Roux again, refuses the SAMU, opens "what can Dr Lefèvre see?"; she reads her access history with
each demo professional's access and its basis (a stranger's refused attempt too), filters it by
professional and downloads it; she changes her notifications. Then, in English, she switches to Léo's space and
does the same as his representative, without seeing what is hidden from representatives. axe-core reports
nothing on any page. The demo world is shared by other tests: what she changed is put back afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from espace_sante.demo import access as demo
from espace_sante.fhir.identifiers import make_nir
from espace_sante.runtime import Runtime
from espace_sante.storage import access as access_store
from espace_sante.storage.db import Conn
from tests.access.conftest import World
from tests.accounts.helpers import next_code
from tests.factories import new_professional
from tests.notifications.helpers import run_queue
from tests.web.axe import violations
from tests.web.browser import needs_chromium, phone, serve, sign_in_with_keyboard
from tests.web.test_history_page import client_of

MARIE_ANGE = demo.DEMO_ACCOUNTS[0]


async def _fits(page: Any) -> None:
    """axe-core finds nothing and nothing scrolls sideways at 320 px."""
    assert await violations(page) == [], page.url
    assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), page.url


@pytest.fixture
async def put_back(runtime: Runtime, world: World) -> AsyncIterator[None]:
    """What the journey changes in the shared demo world, as it was."""
    spaces = [uuid.UUID(world.mother_patient[:32]), uuid.UUID(world.child_patient[:32])]

    async def settings(conn: Conn) -> list[Any]:
        return [await conn.fetchrow("SELECT * FROM space_settings WHERE space_id = $1", s) for s in spaces]

    before = await runtime.db.read("t_settings", settings)
    yield

    async def restore(conn: Conn) -> None:
        await access_store.set_basis(conn, spaces[0], demo.PHARMACIST.rpps, "consent", "holder")
        await access_store.block(conn, spaces[0], demo.BLOCKED.rpps)
        for space, row in zip(spaces, before, strict=True):
            await conn.execute("DELETE FROM space_settings WHERE space_id = $1", space)
            if row is not None:
                await access_store.save_settings(
                    conn,
                    space,
                    emergency_refused=row["emergency_refused"],
                    samu_refused=row["samu_refused"],
                    masked_in_emergency=row["masked_in_emergency"],
                    shared_sections=row["shared_sections"],
                    matrix_overrides=dict(row["matrix_overrides"] or {}),
                )
            await conn.execute("DELETE FROM notification_choice WHERE space_id = $1", space)

    await runtime.db.interaction("t_put_back", restore)


@needs_chromium
async def test_the_demo_holder_does_everything_issue_18_asks_on_a_phone(
    runtime: Runtime, world: World, fhir: httpx.AsyncClient, put_back: None
) -> None:
    mother = make_nir(demo.MOTHER_NIR13)
    await run_queue(runtime, "trace")  # what other stories left there first: her history's first page is ours
    # Her professionals reach her record through their own software; a doctor with no basis is refused.
    for pro in (demo.MEDECIN_TRAITANT, demo.HOSPITAL_DOCTOR, demo.PHARMACIST):
        software = await client_of(runtime, f"practitioner:{pro.rpps}", "user/*.rs")
        assert (await software.get(f"/Patient/{world.mother_patient}")).status_code == 200, pro
    stranger, _ = await new_professional(fhir)
    refused = await client_of(runtime, f"practitioner:{stranger}", "user/*.rs")
    assert (await refused.get(f"/Patient/{world.mother_patient}")).status_code == 404
    await run_queue(runtime, "trace")  # the refused attempt reaches her own chain

    problems: list[str] = []
    async with serve(runtime) as (_rt, base), phone(problems) as page:
        await page.set_extra_http_headers({"Accept-Language": "fr-FR"})
        _kind, _id, login, secret = MARIE_ANGE
        await sign_in_with_keyboard(
            page, base, login, demo.DEMO_PASSWORD, next_code(secret), "/mon-espace/notifications"
        )
        await page.goto(f"{base}/")
        assert await page.get_by_role("heading", name="Derniers accès au dossier").count() == 1
        await _fits(page)

        # Her access history: each professional, on what basis; the refused attempt; filtered; downloaded.
        await page.goto(f"{base}/mon-espace/historique")
        history = await page.locator("main").inner_text()
        for pro, basis in (
            (demo.MEDECIN_TRAITANT, "médecin traitant"),
            (demo.HOSPITAL_DOCTOR, "équipe de soins"),
            (demo.PHARMACIST, "votre consentement"),
        ):
            assert f"{pro.given} {pro.family}" in history and basis in history, (pro, history)
        assert "Accès refusé" in history and "s'est vu refuser" in history
        await _fits(page)
        await page.get_by_label("Professionnel").select_option(
            label=f"Dr Claire Lefèvre, médecin (RPPS {demo.MEDECIN_TRAITANT.rpps})"
        )
        await page.get_by_role("button", name="Afficher").click()
        await page.wait_for_url("**professionnel=*")
        filtered = await page.locator("main ol").inner_text()
        assert "Claire Lefèvre" in filtered and "Antoine Moreau" not in filtered
        async with page.expect_download() as csv:
            await page.get_by_role("link", name="Télécharger cet historique (tableur, CSV)").click()
        text = (await (await csv.value).path()).read_text("utf-8")
        assert "Claire Lefèvre" in text and "Antoine Moreau" not in text
        async with page.expect_download() as pdf:
            await page.get_by_role("link", name="Télécharger cet historique (document, PDF)").click()
        assert (await (await pdf.value).path()).read_bytes().startswith(b"%PDF-")

        # « Qui peut voir mon dossier »: the pharmacist's consent withdrawn.
        await page.goto(f"{base}/mon-espace/acces")
        await _fits(page)
        pharmacist = page.get_by_role("listitem").filter(has_text="Pierre Garnier")
        await pharmacist.get_by_text("Retirer cet accès").click()
        await page.get_by_role("button", name="Retirer l'accès de Pierre Garnier").click()
        await page.wait_for_url("**/mon-espace/acces?message=retire")
        assert await page.get_by_text("n'a plus accès à ce dossier à ce titre").count() == 1
        assert await page.get_by_role("button", name="Retirer l'accès de Pierre Garnier").count() == 0

        # Dr Roux: she unblocks him, sees him back in her care team, and blocks him again.
        await page.get_by_role("button", name="Débloquer Dr Marc Roux").click()
        await page.wait_for_url("**/mon-espace/acces?message=debloque")
        await (
            page.get_by_role("listitem")
            .filter(has_text="Dr Marc Roux")
            .get_by_text("Bloquer ce professionnel")
            .click()
        )
        await page.get_by_role("button", name="Bloquer Dr Marc Roux").click()
        await page.wait_for_url("**/mon-espace/acces?message=bloque")
        assert await page.get_by_role("button", name="Débloquer Dr Marc Roux").count() == 1

        # The SAMU refused.
        samu = page.get_by_label("Accès par la régulation du SAMU (article R1111-48)")
        assert await samu.is_checked()
        await samu.uncheck()
        await page.get_by_role("button", name="Enregistrer mes règles pour les urgences").click()
        await page.wait_for_url("**/mon-espace/acces?message=urgence")
        assert not await page.get_by_label("Accès par la régulation du SAMU (article R1111-48)").is_checked()
        await _fits(page)

        # What can Dr Lefèvre see?
        await (
            page.get_by_role("listitem")
            .filter(has_text="Dr Claire Lefèvre")
            .get_by_role("link", name="Ce que ce professionnel peut voir maintenant")
            .click()
        )
        await page.wait_for_url("**/mon-espace/acces/apercu?rpps=*")
        heading = await page.locator("h1").inner_text()
        assert heading.startswith("Ce que Dr Claire Lefèvre") and heading.endswith("peut voir"), heading
        await _fits(page)

        # Her notifications: she adds the new documents to her e-mails.
        await page.goto(f"{base}/mon-espace/notifications")
        await page.get_by_label("Nouveau document").check()
        await page.get_by_role("button", name="Enregistrer mes choix").click()
        await page.wait_for_url("**/mon-espace/notifications?message=choix")
        await _fits(page)

        # In English, Léo's space, as his representative.
        await page.goto(f"{base}/langue?vers=en&retour=/")
        await page.get_by_role("button", name="Manage Léo Petit's health space").click()
        await page.wait_for_url("**/mon-espace/mon-espace-sante?message=enfant")
        await _fits(page)
        await page.goto(f"{base}/mon-espace/documents")
        documents = await page.locator("main").inner_text()
        assert "Consultation confidentielle" not in documents  # hidden from his representatives (R1111-50)
        await _fits(page)
        await page.goto(f"{base}/mon-espace/acces")
        samu = page.get_by_label("Access by the emergency medical regulation, SAMU (article R1111-48)")
        await samu.uncheck()
        await page.get_by_role("button", name="Save my rules for emergencies").click()
        await page.wait_for_url("**/mon-espace/acces?message=urgence")
        await _fits(page)
        await (
            page.get_by_role("listitem")
            .filter(has_text="Dr Claire Lefèvre")
            .get_by_role("link", name="What this professional can see now")
            .click()
        )
        await page.wait_for_url("**/mon-espace/acces/apercu?rpps=*")
        preview = await page.locator("main").inner_text()
        assert "Consultation confidentielle" not in preview  # his doctor's answer within his mother's own
        await _fits(page)
        await page.goto(f"{base}/mon-espace/historique")
        assert "History of the accesses to their record" in await page.locator("h1").inner_text()
        await _fits(page)
        await page.goto(f"{base}/mon-espace/notifications")
        await page.get_by_label("New document").check()
        await page.get_by_role("button", name="Save my choices").click()
        await page.wait_for_url("**/mon-espace/notifications?message=choix")
        await _fits(page)
    assert problems == []

    async def choices(conn: Conn) -> list[tuple[str, str]]:
        rows = await conn.fetch(
            "SELECT space_id::text, person FROM notification_choice WHERE kind = 'document' AND by_email "
            "AND space_id = ANY($1::uuid[])",
            [uuid.UUID(world.mother_patient[:32]), uuid.UUID(world.child_patient[:32])],
        )
        return sorted((r["space_id"], r["person"]) for r in rows)

    saved = await runtime.db.read("t_choices", choices)
    assert [person for _space, person in saved] == [mother, mother]  # hers, for each space: not Léo's
