"""« Qui peut voir mon dossier »: Jeanne sees who has access to her record and on what basis, who she blocked, her
emergency rules, and what her doctor can see now (the same decision as his own requests, recorded in her trace);
in French or English, axe-clean at phone width."""

from __future__ import annotations

import re
import uuid
from html import unescape
from typing import Any

import httpx

from espace_sante.runtime import Runtime
from espace_sante.storage import access as access_store
from tests.accounts.helpers import browser, csrf_of, new_person, next_code, sign_in
from tests.factories import new_professional
from tests.web.axe import violations
from tests.web.browser import needs_chromium, phone, serve, sign_in_with_keyboard
from tests.web.test_history_page import her_patient

SHARING = "/mon-espace/acces"


def text(page: httpx.Response) -> str:
    main = re.search(r"<main.*?</main>", page.text, re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", main.group(0) if main else "")))


async def her_world(runtime: Runtime, fhir: httpx.AsyncClient) -> tuple[Any, str, str, str]:
    """Jeanne, her doctor on her care team, her pharmacist by her consent, and a professional she blocked."""
    jeanne = await new_person(runtime, fhir)
    space = uuid.UUID((await her_patient(fhir, jeanne))[:32])
    doctor, _ = await new_professional(fhir)
    pharmacist, _ = await new_professional(fhir, "21")
    blocked, _ = await new_professional(fhir)

    async def rights(conn: Any) -> None:
        await access_store.set_basis(conn, space, doctor, "care_team", "test")
        await access_store.set_basis(conn, space, pharmacist, "consent", "test")
        await access_store.block(conn, space, blocked)

    await runtime.db.interaction("t_rights", rights)
    return jeanne, doctor, pharmacist, blocked


async def test_she_sees_who_has_access_on_what_basis_and_her_emergency_rules(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne, doctor, pharmacist, _blocked = await her_world(runtime, fhir)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        page = await client.get(SHARING)
        client.cookies.set("langue", "en")
        english = await client.get(SHARING)
    assert page.status_code == 200, page.text
    shown = text(page)
    assert "équipe de soins qui vous prend en charge (article L1110-4)" in shown
    assert "votre accord (article L1111-15)" in shown
    assert f"{SHARING}/apercu?rpps={doctor}" in page.text and f"rpps={pharmacist}" in page.text
    assert "Les professionnels bloqués" in shown and "pas même en urgence" in shown
    assert "Accès en urgence par un professionnel de santé (article L1111-17)" in shown
    assert 'id="regle-urgence" name="urgence" value="oui" checked' in page.text  # accepted by default
    assert 'id="regle-samu" name="samu" value="oui" checked' in page.text
    assert 'id="regle-masques" name="masques" value="oui" aria' in page.text  # masked stay hidden by default
    assert 'aria-current="page"' in page.text
    assert "member of the care team treating you" in text(english) and "In an emergency" in text(english)


async def test_what_her_doctor_can_see_now_is_his_own_answer_and_is_recorded(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne, doctor, _pharmacist, blocked = await her_world(runtime, fhir)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        seen = await client.get(f"{SHARING}/apercu", params={"rpps": doctor})
        nothing = await client.get(f"{SHARING}/apercu", params={"rpps": blocked})
        wrong = await client.get(f"{SHARING}/apercu", params={"rpps": "123"})
    assert seen.status_code == 200 and "Identité" in text(seen), text(seen)
    assert "membre de l'équipe de soins" in text(seen)
    assert "Vous avez bloqué ce professionnel" in text(nothing)
    assert wrong.status_code == 400 and "RPPS" in wrong.text
    space = uuid.UUID((await her_patient(fhir, jeanne))[:32])
    async with runtime.db.pool.acquire() as conn:
        previews = await conn.fetchval(
            "SELECT count(*) FROM audit_event WHERE space_id = $1 AND action = 'rights:preview'", space
        )
    assert previews == 2


@needs_chromium
async def test_the_pages_on_a_phone_pass_axe_in_both_languages(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    jeanne, _doctor, _pharmacist, _blocked = await her_world(runtime, fhir)
    problems: list[str] = []
    async with serve(runtime) as (_rt, base), phone(problems) as page:
        await page.set_extra_http_headers({"Accept-Language": "fr-FR"})
        assert jeanne.totp_secret
        await sign_in_with_keyboard(
            page, base, jeanne.login, jeanne.password, next_code(jeanne.totp_secret), SHARING
        )
        assert await violations(page) == []
        assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        await page.get_by_role("link", name="Ce que ce professionnel peut voir maintenant").first.click()
        await page.wait_for_url(re.compile(r".*apercu.*"))
        assert await violations(page) == []
        await page.get_by_role("link", name="English").click()
        await page.wait_for_load_state()
        assert await page.evaluate("() => document.documentElement.lang") == "en"
        assert await violations(page) == []
    assert problems == []


def form_of(page: httpx.Response, action: str, **hidden: str) -> dict[str, str]:
    """The fields of the form posting to `action` whose hidden fields include `hidden`."""
    for match in re.finditer(r'<form method="post" action="([^"]+)">(.*?)</form>', page.text, re.S):
        if match.group(1) != action:
            continue
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', match.group(2)))
        if all(fields.get(k) == v for k, v in hidden.items()):
            return {k: unescape(v) for k, v in fields.items()}
    raise AssertionError(f"no form to {action} with {hidden}")


async def test_she_withdraws_her_pharmacists_consent_blocks_her_doctor_and_refuses_the_samu(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    """Each change through its form, confirmed in plain words, and what it changes seen on the page; the
    pharmacist's read is refused at once."""
    jeanne, doctor, pharmacist, blocked = await her_world(runtime, fhir)
    patient_id = await her_patient(fhir, jeanne)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        page = await client.get(SHARING)
        done = await client.post(
            f"{SHARING}/retirer", data=form_of(page, f"{SHARING}/retirer", base="consent", qui=pharmacist)
        )
        assert done.status_code == 303 and done.headers["location"] == f"{SHARING}?message=retire"
        page = await client.get(done.headers["location"])
        assert "ce professionnel n'a plus accès" in text(page) and f"rpps={pharmacist}" not in page.text
        done = await client.post(f"{SHARING}/bloquer", data=form_of(page, f"{SHARING}/bloquer", rpps=doctor))
        page = await client.get(done.headers["location"])
        assert "ce professionnel est bloqué" in text(page)
        done = await client.post(
            f"{SHARING}/debloquer", data=form_of(page, f"{SHARING}/debloquer", rpps=blocked)
        )
        page = await client.get(done.headers["location"])
        rules = form_of(page, f"{SHARING}/urgence") | {
            "urgence": "oui",
            "masques": "oui",
        }  # SAMU left unticked
        done = await client.post(f"{SHARING}/urgence", data=rules)
        page = await client.get(done.headers["location"])
        forged = await client.post(f"{SHARING}/bloquer", data={"csrf": "x", "rpps": doctor})
    shown = text(page)
    assert "vos règles pour les urgences sont enregistrées" in shown
    assert 'id="regle-urgence" name="urgence" value="oui" checked' in page.text
    assert 'id="regle-samu" name="samu" value="oui" aria' in page.text  # unticked
    assert 'id="regle-masques" name="masques" value="oui" checked' in page.text
    assert forged.status_code == 403
    pharmacy = await _software(runtime, pharmacist)
    assert (await pharmacy.get(f"/Patient/{patient_id}")).status_code == 404
    space = uuid.UUID(patient_id[:32])
    async with runtime.db.pool.acquire() as conn:
        actions = [
            r["action"]
            for r in await conn.fetch(
                "SELECT action FROM audit_event WHERE space_id = $1 AND action LIKE 'rights:%' ORDER BY seq",
                space,
            )
        ]
    assert actions[-4:] == ["rights:revoke", "rights:block", "rights:unblock", "rights:settings"]


async def _software(runtime: Runtime, rpps: str) -> httpx.AsyncClient:
    from tests.web.test_history_page import software_of

    return await software_of(runtime, rpps)


async def test_a_session_below_the_level_a_change_needs_is_told_to_sign_in_stronger(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    """A session at a weaker level (a sign-in by a provider at eIDAS low, say) reads the page but changes
    nothing: she is told to sign in again at the level the change needs (confirming her identity on the
    step-up page would prove it only at the session's own level)."""
    jeanne, doctor, _pharmacist, _blocked = await her_world(runtime, fhir)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        page = await client.get(SHARING)
        await runtime.db.interaction(
            "t_weaker",
            lambda c: c.execute(
                "UPDATE web_session SET acr = 'eidas1' WHERE account_id = $1", jeanne.account_id
            ),
        )
        asked = await client.post(f"{SHARING}/bloquer", data=form_of(page, f"{SHARING}/bloquer", rpps=doctor))
        still = await client.get(SHARING)
    assert asked.status_code == 403 and "connexion renforcée" in asked.text
    assert still.text.count(f'action="{SHARING}/debloquer"') == 1  # the one she had blocked before, not him


async def test_she_finds_a_professional_in_the_directory_and_gives_her_consent(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    """By RPPS or by name; the consent is then listed with the preview, and the professional reads."""
    jeanne = await new_person(runtime, fhir)
    patient_id = await her_patient(fhir, jeanne)
    nurse, _ = await new_professional(fhir, "60")
    async with browser(app) as client:
        await sign_in(client, jeanne)
        by_rpps = await client.get(SHARING, params={"cherche": nurse})
        by_name = await client.get(SHARING, params={"cherche": "lefèvre"})
        nobody = await client.get(SHARING, params={"cherche": "<script>Zyxw</script>"})
        done = await client.post(f"{SHARING}/accord", data=form_of(by_rpps, f"{SHARING}/accord", rpps=nurse))
        page = await client.get(done.headers["location"])
        unknown = await client.post(
            f"{SHARING}/accord", data=form_of(by_rpps, f"{SHARING}/accord") | {"rpps": "10000000000"}
        )
    assert f"RPPS {nurse}" in text(by_rpps) and "Infirmier" in text(by_rpps)
    assert len(re.findall(r"· RPPS \d{11}", text(by_name))) >= 1
    assert "ne correspond à « <script>Zyxw</script> »" in text(nobody) and "<script>Zyxw" not in nobody.text
    assert done.headers["location"] == f"{SHARING}?message=accord"
    assert "votre accord (article L1111-15)" in text(page) and f"rpps={nurse}" in page.text
    assert unknown.status_code in (400, 404)
    nurse_software = await _software(runtime, nurse)
    assert (await nurse_software.get(f"/Patient/{patient_id}")).status_code == 200


async def test_another_site_cannot_make_her_browser_record_a_preview(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne, doctor, _pharmacist, _blocked = await her_world(runtime, fhir)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        sent = await client.get(
            f"{SHARING}/apercu", params={"rpps": doctor}, headers={"Sec-Fetch-Site": "cross-site"}
        )
    assert sent.status_code == 303 and sent.headers["location"] == SHARING
    space = uuid.UUID((await her_patient(fhir, jeanne))[:32])
    async with runtime.db.pool.acquire() as conn:
        assert not await conn.fetchval(
            "SELECT count(*) FROM audit_event WHERE space_id = $1 AND action = 'rights:preview'", space
        )


async def test_whatever_she_types_in_the_directory_search_is_a_name(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        for typed in (",", "a,b", "a|b", "\\", "$x", "\x00", "%", "x" * 300):
            page = await client.get(SHARING, params={"cherche": typed})
            assert page.status_code == 200, (typed, page.text)
            assert "\x00" not in page.text
            assert "Aucun professionnel de l'annuaire ne correspond" in text(page) or typed == "\x00"


async def test_she_finds_a_pharmacist_by_profession_and_town(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    town = (
        f"Annecy-{uuid.uuid4().hex[:6]}"  # a town of her own: the shared directory holds other tests' people
    )
    pharmacist, pid = await new_professional(fhir, "21")
    doctor, did = await new_professional(fhir, "10")
    for rid in (pid, did):
        body = (await fhir.get(f"/Practitioner/{rid}")).json()
        body["address"] = [{"use": "work", "city": town, "country": "FR"}]
        assert (await fhir.put(f"/Practitioner/{rid}", json=body)).status_code == 200
    async with browser(app) as client:
        await sign_in(client, jeanne)
        pharmacists = text(await client.get(SHARING, params={"profession": "21", "ville": town}))
        everyone = text(await client.get(SHARING, params={"ville": town}))
        none = text(await client.get(SHARING, params={"profession": "60", "ville": town}))
        odd = await client.get(SHARING, params={"profession": "pas-une-profession", "ville": town})
    assert f"RPPS {pharmacist}" in pharmacists and f"RPPS {doctor}" not in pharmacists
    assert "Pharmacien" in pharmacists and town in pharmacists
    assert f"RPPS {pharmacist}" in everyone and f"RPPS {doctor}" in everyone
    assert "Aucun professionnel de l'annuaire ne correspond à votre recherche." in none
    assert odd.status_code == 200 and f"RPPS {doctor}" in text(odd)  # an unknown profession is no filter


async def test_she_chooses_the_profile_sections_she_shares_and_what_pharmacists_read(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        page = await client.get(SHARING)
        shown = text(page)
        assert "Pharmaciens" in shown and "Lisent : Synthèses, Prescriptions, Dispensations" in shown
        token = csrf_of(page.text)
        saved = await client.post(
            f"{SHARING}/profil", data={"csrf": token, "rubrique": ["allergies", "antecedents"]}
        )
        assert saved.status_code == 303 and saved.headers["location"] == f"{SHARING}?message=profil"
        # Pharmacists no longer read prescriptions (42), and read the reports (10) besides.
        kept = ["11", "43", "44", "45", "60", "10"]
        matrix = await client.post(
            f"{SHARING}/matrice", data={"csrf": token, "groupe": "pharmacy", "categorie": kept}
        )
        assert matrix.status_code == 303
        wrong = await client.post(
            f"{SHARING}/matrice", data={"csrf": token, "groupe": "no_record_access", "categorie": ["10"]}
        )
        assert wrong.status_code == 400 and "Groupe de professions inconnu" in unescape(wrong.text)
        after = text(await client.get(SHARING))
        client.cookies.set("langue", "en")
        english = text(await client.get(SHARING))
    assert "Vous avez modifié la règle pour cette profession." in after
    assert "Lisent : Comptes rendus, Synthèses, Dispensations" in after
    assert "They read: Reports, Summaries, Dispensations" in english
    seen = await rights_of(runtime, jeanne)
    assert seen["shared_sections"] == ["AllergyIntolerance", "Condition", "Procedure"]
    assert seen["matrix_overrides"]["21"] == {"add": ["10"], "remove": ["42"]}


async def rights_of(runtime: Runtime, person: Any) -> dict[str, Any]:
    """Her sharing rules as the service answers them (`GET /access`)."""
    from espace_sante.access.scopes import Scopes
    from espace_sante.context import Context
    from espace_sante.people.actors import actor_for
    from espace_sante.rights import changes

    actor = await actor_for(
        runtime, "holder", person.actor_id, scopes=Scopes.parse("patient/*.*"), acr="eidas2"
    )
    settings: dict[str, Any] = (await changes.overview(Context(runtime, actor)))["settings"]
    return settings


async def test_saving_a_group_keeps_what_she_set_for_one_of_its_professions_and_takes_every_box(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    """She had kept imaging from dentists (through an app); saving the medical group from the page, all ten
    boxes but one, changes what she changed there and nothing else."""
    jeanne = await new_person(runtime, fhir)
    space = uuid.UUID((await her_patient(fhir, jeanne))[:32])

    async def no_imaging_for_dentists(conn: Any) -> None:
        await access_store.save_settings(
            conn,
            space,
            emergency_refused=False,
            samu_refused=False,
            masked_in_emergency=False,
            shared_sections=None,
            matrix_overrides={"40": {"add": [], "remove": ["31"]}},
        )

    await runtime.db.interaction("t_dentists", no_imaging_for_dentists)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        page = await client.get(SHARING)
        everything_but_reimbursements = ["10", "11", "31", "42", "43", "44", "45", "52", "90"]
        saved = await client.post(
            f"{SHARING}/matrice",
            data={
                "csrf": csrf_of(page.text),
                "groupe": "medical",
                "categorie": everything_but_reimbursements,
            },
        )
        assert saved.status_code == 303, saved.text
    overrides = (await rights_of(runtime, jeanne))["matrix_overrides"]
    assert overrides["10"] == {"add": [], "remove": ["60"]} and overrides["50"] == {
        "add": [],
        "remove": ["60"],
    }
    assert overrides["40"] == {"add": [], "remove": ["31", "60"]}  # imaging stays kept from dentists


async def test_two_changes_of_her_rules_at_once_each_keep_the_other(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """Two pages saved at the same moment (two representatives, say): each change is made on the rules as the
    other left them, so neither is lost."""
    import asyncio
    import dataclasses

    from espace_sante.access.scopes import Scopes
    from espace_sante.context import Context
    from espace_sante.people.actors import actor_for
    from espace_sante.rights import changes

    jeanne = await new_person(runtime, fhir)
    actor = await actor_for(
        runtime, "holder", jeanne.actor_id, scopes=Scopes.parse("patient/*.*"), acr="eidas2"
    )
    ctx = Context(runtime, actor)
    await asyncio.gather(
        changes.save_settings(ctx, lambda now: dataclasses.replace(now, samu_refused=True)),
        changes.save_settings(
            ctx, lambda now: dataclasses.replace(now, shared_sections=("AllergyIntolerance",))
        ),
        changes.save_settings(
            ctx, lambda now: dataclasses.replace(now, matrix_overrides={"21": {"add": [], "remove": ["42"]}})
        ),
    )
    rules = await rights_of(runtime, jeanne)
    assert rules["samu_refused"] is True and rules["shared_sections"] == ["AllergyIntolerance"]
    assert rules["matrix_overrides"] == {"21": {"add": [], "remove": ["42"]}}
