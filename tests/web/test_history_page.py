"""« Historique des accès »: Jeanne reads, in plain words and in her language, who accessed her record, on what
basis and when, refusals included; she filters and pages through it; reading it is recorded once per page."""

from __future__ import annotations

import asyncio
import io
import re
import uuid
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pikepdf

from espace_sante.oauth import devtokens
from espace_sante.runtime import Runtime
from espace_sante.storage import access as access_store
from tests.accounts.helpers import Person, browser, new_person, sign_in
from tests.activation.pdftext import pdf_text
from tests.factories import BASE, INS, new_professional
from tests.notifications.helpers import run_queue
from tests.web.axe import violations
from tests.web.browser import needs_chromium, phone, serve, sign_in_with_keyboard

HISTORY = "/mon-espace/historique"


async def her_patient(fhir: httpx.AsyncClient, jeanne: Person) -> str:
    found = await fhir.get("/Patient", params={"identifier": f"{INS}|{jeanne.actor_id}"})
    return str(found.json()["entry"][0]["resource"]["id"])


async def a_doctor_on_her_care_team(
    runtime: Runtime, fhir: httpx.AsyncClient, patient_id: str
) -> httpx.AsyncClient:
    rpps, _ = await new_professional(fhir)
    space = uuid.UUID(patient_id[:32])
    await runtime.db.interaction(
        "t_team", lambda c: access_store.set_basis(c, space, rpps, "care_team", "test")
    )
    return await software_of(runtime, rpps)


async def software_of(runtime: Runtime, rpps: str) -> httpx.AsyncClient:
    return await client_of(runtime, f"practitioner:{rpps}", "user/*.*")


async def client_of(runtime: Runtime, actor: str, scopes: str) -> httpx.AsyncClient:
    """A FHIR client acting as `actor` ("kind:id") with a development token of these scopes."""
    issued = await devtokens.issue(runtime, actor, scopes)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=_app(runtime)),
        base_url=f"{BASE}/fhir",
        headers={"Authorization": f"Bearer {issued.access_token}", "Accept": "application/fhir+json"},
    )


_APPS: dict[int, Any] = {}


def _app(runtime: Runtime) -> Any:
    from espace_sante.app import create_app

    return _APPS.setdefault(id(runtime), create_app(runtime=runtime))


def lines(page: httpx.Response) -> list[str]:
    """The records listed, as text (the list of the page, not its navigation)."""
    listed = re.search(r'<ol class="liste historique".*?</ol>', page.text, re.S)
    items = re.findall(r"<li(?: class=\"refuse\")?>(.*?)</li>", listed.group(0), re.S) if listed else []
    return [unescape(re.sub(r"<[^>]+>", " ", item)).strip() for item in items]


def refused(page: httpx.Response) -> int:
    return page.text.count('<li class="refuse">')


async def own_readings(runtime: Runtime, space: uuid.UUID, ins: str) -> int:
    async with runtime.db.pool.acquire() as conn:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM audit_event WHERE space_id = $1 AND actor_id = $2 "
                "AND action = 'resource:search' AND entity_type = 'AuditEvent'",
                space,
                ins,
            )
        )


async def test_she_reads_who_accessed_her_record_in_plain_words_and_her_reading_is_recorded_once(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    patient_id = await her_patient(fhir, jeanne)
    space = uuid.UUID(patient_id[:32])
    doctor = await a_doctor_on_her_care_team(runtime, fhir, patient_id)
    assert (await doctor.get(f"/Patient/{patient_id}")).status_code == 200
    async with browser(app) as client:
        assert (await sign_in(client, jeanne)).status_code == 303
        before = await own_readings(runtime, space, jeanne.actor_id)
        page = await client.get(HISTORY)
        assert page.status_code == 200, page.text
        assert await own_readings(runtime, space, jeanne.actor_id) == before + 1  # once per page, not per row
        shown = lines(page)
        assert any("Lefèvre" in line and "équipe de soins" in line for line in shown), shown
        assert '<html lang="fr">' in page.text and 'aria-current="page"' in page.text
        client.cookies.set("langue", "en")
        english = await client.get(HISTORY)
    assert '<html lang="en">' in english.text and "Access history" in english.text
    assert any("Lefèvre" in line and "care team" in line for line in lines(english)), lines(english)


async def test_she_filters_the_refusals_and_the_period(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    patient_id = await her_patient(fhir, jeanne)
    doctor = await a_doctor_on_her_care_team(runtime, fhir, patient_id)
    await doctor.get(f"/Patient/{patient_id}")
    stranger_rpps, _ = await new_professional(fhir)
    stranger = await software_of(runtime, stranger_rpps)
    # No basis: refused, recorded in the directory's chain, and copied into hers by the job deferred with it.
    assert (await stranger.get(f"/Patient/{patient_id}")).status_code == 404
    await run_queue(runtime, "trace")
    async with browser(app) as client:
        await sign_in(client, jeanne)
        everything = await client.get(HISTORY)
        only_refused = await client.get(HISTORY, params={"quoi": "refus", "periode": "30j"})
        reads = await client.get(HISTORY, params={"quoi": "consultations"})
        nonsense = await client.get(
            HISTORY, params={"quoi": "x", "periode": "y", "depuis": "-3", "jusqua": "abc"}
        )
    assert refused(everything) == 1 and len(lines(everything)) >= 3
    [attempt] = lines(only_refused)
    assert "Dr Claire Lefèvre" in attempt and "aucune base d'accès" in attempt, attempt
    assert 'value="refus" selected' in only_refused.text and 'value="30j" selected' in only_refused.text
    # Reads and searches; her own readings of this page are searches.
    assert len(lines(reads)) >= 3 and not any("ajouté" in x or "modifié" in x for x in lines(reads)), lines(
        reads
    )
    assert len(lines(reads)) < len(lines(nonsense))  # her feed's creation of her Patient is not a reading
    assert nonsense.status_code == 200 and len(lines(nonsense)) == len(lines(everything)) + 3  # her readings


async def test_pages_keep_their_snapshot(runtime: Runtime, app: Any, fhir: httpx.AsyncClient) -> None:
    """Twenty-five reads by her doctor: two pages; what happens while she pages does not shift them."""
    jeanne = await new_person(runtime, fhir)
    patient_id = await her_patient(fhir, jeanne)
    doctor = await a_doctor_on_her_care_team(runtime, fhir, patient_id)
    for _ in range(25):
        await doctor.get(f"/Patient/{patient_id}")
    async with browser(app) as client:
        await sign_in(client, jeanne)
        first = await client.get(HISTORY, params={"quoi": "consultations"})
        assert len(lines(first)) == 20 and "Plus anciens" in first.text and "Plus récents" not in first.text
        older = unescape(
            re.search(r'href="([^"]+)" class="bouton secondaire">Plus anciens', first.text).group(1)
        )
        for _ in range(3):
            await doctor.get(f"/Patient/{patient_id}")  # newer records, after the snapshot
        second = await client.get(older)
    rest = lines(second)
    assert 5 <= len(rest) < 20 and "Plus récents" in second.text
    assert not set(rest) & set(lines(first)) or len(set(lines(first))) < 20  # same wording, other times


async def test_someone_elses_space_or_no_session_is_not_shown(runtime: Runtime, app: Any) -> None:
    async with browser(app) as client:
        away = await client.get(HISTORY)
    assert away.status_code in (302, 303) and away.headers["location"].startswith("/connexion")


@needs_chromium
async def test_the_history_on_a_phone_passes_axe_in_both_languages(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    patient_id = await her_patient(fhir, jeanne)
    doctor = await a_doctor_on_her_care_team(runtime, fhir, patient_id)
    await doctor.get(f"/Patient/{patient_id}")
    problems: list[str] = []
    async with serve(runtime) as (_rt, base), phone(problems) as page:
        await page.set_extra_http_headers({"Accept-Language": "fr-FR"})
        await sign_in_with_keyboard(page, base, jeanne.login, jeanne.password, _code(jeanne), HISTORY)
        assert await violations(page) == []
        assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        await page.select_option("#quoi", "consultations")
        await page.select_option("#professionnel", index=1)  # her doctor, the one professional of her trace
        await page.get_by_role("button", name="Afficher").click()
        await page.wait_for_url(re.compile(r".*quoi=consultations.*professionnel=\d+.*"))
        assert await violations(page) == []
        assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
        await page.get_by_role("link", name="English").click()
        await page.wait_for_load_state()
        assert await page.evaluate("() => document.documentElement.lang") == "en"
        assert await violations(page) == []
        async with page.expect_download() as downloading:
            await page.get_by_role("link", name="Download this history (document, PDF)").click()
        saved = await (await downloading.value).path()
        content = await asyncio.to_thread(Path(saved).read_bytes)  # gone once the browser closes
    assert problems == []
    text = pdf_text(content)
    assert "History of the accesses to my record" in text and "What happened: Reads and searches" in text
    assert "The health professional Dr Claire Lefèvre" in text


def _code(person: Person) -> str:
    from tests.accounts.helpers import next_code

    assert person.totp_secret
    return next_code(person.totp_secret)


async def test_she_downloads_her_history_as_a_spreadsheet_in_her_language(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    """The download holds every record the filters select (here more than one page of the download's), the
    snapshot of its first page, and is recorded as readings of her history, once per page read."""
    import csv
    import io

    jeanne = await new_person(runtime, fhir)
    patient_id = await her_patient(fhir, jeanne)
    space = uuid.UUID(patient_id[:32])
    doctor = await a_doctor_on_her_care_team(runtime, fhir, patient_id)
    for _ in range(3):
        await doctor.get(f"/Patient/{patient_id}")
    async with browser(app) as client:
        await sign_in(client, jeanne)
        page = await client.get(HISTORY)
        link = unescape(re.search(r'<a href="([^"]+)" download>', page.text).group(1))
        before = await own_readings(runtime, space, jeanne.actor_id)
        french = await client.get(link)
        assert await own_readings(runtime, space, jeanne.actor_id) == before + 1
        client.cookies.set("langue", "en")
        english = await client.get(link, params={"quoi": "consultations"})
    assert french.status_code == 200 and french.headers["content-type"].startswith("text/csv")
    assert "attachment" in french.headers["content-disposition"] and french.content.startswith(
        "\ufeff".encode()
    )
    rows = list(csv.reader(io.StringIO(french.content.decode("utf-8-sig"))))
    assert rows[0] == ["Date", "Résultat", "Description"]
    assert sum("équipe de soins" in r[2] for r in rows[1:]) == 3 and all(r[1] == "Autorisé" for r in rows[1:])
    assert all(r[0][:4].isdigit() and "T" in r[0] for r in rows[1:])
    english_rows = list(csv.reader(io.StringIO(english.content.decode("utf-8-sig"))))
    assert (
        english_rows[0] == ["Date", "Outcome", "Description"]
        and "access-history.csv" in english.headers["content-disposition"]
    )
    assert sum("care team" in r[2] for r in english_rows[1:]) == 3


async def test_a_download_of_several_pages_holds_every_record_once(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient, monkeypatch: Any
) -> None:
    from espace_sante.web.holder import history

    monkeypatch.setattr(history, "DOWNLOAD_PAGE", 2)
    jeanne = await new_person(runtime, fhir)
    patient_id = await her_patient(fhir, jeanne)
    doctor = await a_doctor_on_her_care_team(runtime, fhir, patient_id)
    for _ in range(5):
        await doctor.get(f"/Patient/{patient_id}")
    async with browser(app) as client:
        await sign_in(client, jeanne)
        shown = await client.get(HISTORY, params={"quoi": "consultations"})
        download = await client.get(f"{HISTORY}/telecharger", params={"quoi": "consultations"})
    rows = download.content.decode("utf-8-sig").strip().splitlines()[1:]
    # What the page showed (its own reading was recorded after its snapshot, as the download's are after its own).
    assert len(rows) == len(lines(shown)) + 1
    assert sum("équipe de soins" in row for row in rows) == 5  # each of the doctor's reads once, over 4 pages


# --- by professional, and the PDF ----------------------------------------------------------------------------


async def a_named_doctor_on_her_care_team(
    runtime: Runtime, fhir: httpx.AsyncClient, patient_id: str, given: str, family: str
) -> tuple[str, str, httpx.AsyncClient]:
    """A doctor of the directory by this name, on her care team: (RPPS, Practitioner id, his software)."""
    from tests.factories import FHIR_JSON, G15, new_rpps

    rpps = new_rpps()
    created = await fhir.post(
        "/Practitioner",
        json={
            "resourceType": "Practitioner",
            "identifier": [{"system": "https://rpps.esante.gouv.fr", "value": rpps}],
            "name": [{"family": family, "given": [given], "prefix": ["Dr"]}],
        },
        headers=FHIR_JSON,
    )
    assert created.status_code == 201, created.text
    practitioner = str(created.json()["id"])
    role = await fhir.post(
        "/PractitionerRole",
        json={
            "resourceType": "PractitionerRole",
            "practitioner": {"reference": f"Practitioner/{practitioner}"},
            "code": [{"coding": [{"system": G15, "code": "10"}]}],
        },
        headers=FHIR_JSON,
    )
    assert role.status_code == 201, role.text
    space = uuid.UUID(patient_id[:32])
    await runtime.db.interaction(
        "t_team", lambda c: access_store.set_basis(c, space, rpps, "care_team", "test")
    )
    return rpps, practitioner, await software_of(runtime, rpps)


class Doctors:
    """Jeanne's record, read twice by Dr Xavier Durand and three times by Dr Yves Morel."""

    def __init__(self, jeanne: Person, patient_id: str, x: tuple[str, str], y: tuple[str, str]) -> None:
        self.jeanne, self.patient_id = jeanne, patient_id
        (self.x_rpps, self.x_id), (self.y_rpps, self.y_id) = x, y


async def two_doctors(runtime: Runtime, fhir: httpx.AsyncClient, x_reads: int = 2) -> Doctors:
    jeanne = await new_person(runtime, fhir)
    patient_id = await her_patient(fhir, jeanne)
    x_rpps, x_id, x = await a_named_doctor_on_her_care_team(runtime, fhir, patient_id, "Xavier", "Durand")
    y_rpps, y_id, y = await a_named_doctor_on_her_care_team(runtime, fhir, patient_id, "Yves", "Morel")
    for _ in range(3):
        assert (await y.get(f"/Patient/{patient_id}")).status_code == 200
    for _ in range(x_reads):
        assert (await x.get(f"/Patient/{patient_id}")).status_code == 200
    return Doctors(jeanne, patient_id, (x_rpps, x_id), (y_rpps, y_id))


def options(page: httpx.Response) -> dict[str, str]:
    """The professional filter's choices: value (RPPS) -> label."""
    select = re.search(r'<select id="professionnel" name="professionnel">(.*?)</select>', page.text, re.S)
    assert select, "no professional filter on the page"
    return {
        v: unescape(label).strip()
        for v, label in re.findall(r'<option value="(\d*)"[^>]*>(.*?)</option>', select.group(1))
    }


async def test_she_filters_by_professional_on_the_page_the_csv_and_the_pdf(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    """The filter lists the professionals of her trace (by name and RPPS); chosen, the page, the spreadsheet and
    the PDF hold only his accesses, in her language; each download is one reading of her history."""
    import csv

    d = await two_doctors(runtime, fhir)
    space = uuid.UUID(d.patient_id[:32])
    async with browser(app) as client:
        await sign_in(client, d.jeanne)
        everything = await client.get(HISTORY)
        choices = options(everything)
        assert choices[""] == "Tous les professionnels"
        assert "Dr Xavier Durand" in choices[d.x_rpps] and d.x_rpps in choices[d.x_rpps]
        assert "Dr Yves Morel" in choices[d.y_rpps] and len(choices) == 3
        durand = await client.get(HISTORY, params={"professionnel": d.x_rpps})
        assert f'<option value="{d.x_rpps}" selected>' in durand.text
        shown = lines(durand)
        assert len(shown) == 2 and all("Dr Xavier Durand" in line for line in shown), shown
        csv_link = unescape(re.search(r'<a href="([^"]+)" download>[^<]*CSV', durand.text).group(1))
        pdf_link = unescape(re.search(r'<a href="([^"]+)" download>[^<]*PDF', durand.text).group(1))
        assert f"professionnel={d.x_rpps}" in csv_link and f"professionnel={d.x_rpps}" in pdf_link
        sheet = await client.get(csv_link)
        before = await own_readings(runtime, space, d.jeanne.actor_id)
        french = await client.get(pdf_link)
        assert await own_readings(runtime, space, d.jeanne.actor_id) == before + 1
        client.cookies.set("langue", "en")
        english = await client.get(pdf_link)
        nonsense = await client.get(HISTORY, params={"professionnel": "Durand' OR 1=1"})
    rows = list(csv.reader(io.StringIO(sheet.content.decode("utf-8-sig"))))[1:]
    assert len(rows) == 2 and all("Dr Xavier Durand" in r[2] for r in rows), rows
    assert french.status_code == 200 and french.headers["content-type"] == "application/pdf"
    assert 'filename="historique-des-acces.pdf"' in french.headers["content-disposition"]
    text = pdf_text(french.content)
    assert "Historique des accès à mon dossier" in text and "Professionnel : Dr Xavier Durand" in text
    assert text.count("Le professionnel de santé Dr Xavier Durand") == 2 and "Morel" not in text.replace(
        "\n", " "
    )
    assert "article L1111-19" in text
    assert 'filename="access-history.pdf"' in english.headers["content-disposition"]
    english_text = pdf_text(english.content)
    assert (
        "History of the accesses to my record" in english_text
        and "Professional: Dr Xavier Durand" in english_text
    )
    assert english_text.count("The health professional Dr Xavier Durand") == 2 and "Morel" not in english_text
    for content, lang, title in (
        (french.content, "fr", "Historique des accès à mon dossier"),
        (english.content, "en", "History of the accesses to my record"),
    ):
        with pikepdf.open(io.BytesIO(content)) as pdf:
            assert str(pdf.Root.Lang) == lang and str(pdf.docinfo.Title) == title
            assert bool(pdf.Root.ViewerPreferences.DisplayDocTitle)
    # A value that cannot be an RPPS is no filter (the whole history), never an error.
    assert nonsense.status_code == 200 and len(lines(nonsense)) > 5


async def test_the_professional_is_kept_across_pages(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    d = await two_doctors(runtime, fhir, x_reads=23)
    async with browser(app) as client:
        await sign_in(client, d.jeanne)
        first = await client.get(HISTORY, params={"professionnel": d.x_rpps})
        older = unescape(
            re.search(r'href="([^"]+)" class="bouton secondaire">Plus anciens', first.text).group(1)
        )
        assert f"professionnel={d.x_rpps}" in older
        second = await client.get(older)
        newer = unescape(
            re.search(r'href="([^"]+)" class="bouton secondaire">Plus récents', second.text).group(1)
        )
    assert len(lines(first)) == 20 and len(lines(second)) == 3
    assert all("Dr Xavier Durand" in line for line in lines(first) + lines(second))
    assert f'<option value="{d.x_rpps}" selected>' in second.text and f"professionnel={d.x_rpps}" in newer


async def test_the_api_answers_her_the_same_rows_as_the_page_and_refuses_other_modifiers(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    """`AuditEvent?agent:identifier=<RPPS system>|<RPPS>` (R4 search.html#reference, `:identifier`) through the
    API with her own token: the records the page lists for that professional, in the same order; his directory
    entry (`agent=Practitioner/<id>`) and the bare RPPS name him too. Any other modifier stays a 400."""
    d = await two_doctors(runtime, fhir)
    issued = await devtokens.issue(runtime, f"holder:{d.jeanne.actor_id}", "patient/*.rs")
    her_api = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=_app(runtime)),
        base_url=f"{BASE}/fhir",
        headers={"Authorization": f"Bearer {issued.access_token}", "Accept": "application/fhir+json"},
    )
    async with browser(app) as client:
        await sign_in(client, d.jeanne)
        page = lines(await client.get(HISTORY, params={"professionnel": d.x_rpps}))

    async def sentences(**params: str) -> list[str]:
        response = await her_api.get("/AuditEvent", params={"patient": f"Patient/{d.patient_id}", **params})
        assert response.status_code == 200, response.text
        out = []
        for entry in response.json().get("entry", []):
            div = entry["resource"]["text"]["div"]
            french = re.search(r'<p lang="fr" xml:lang="fr">(.*?)</p>', div).group(1)
            out.append(unescape(french))
        return out

    by_identifier = await sentences(**{"agent:identifier": f"https://rpps.esante.gouv.fr|{d.x_rpps}"})
    assert by_identifier == page and len(page) == 2
    assert await sentences(**{"agent:identifier": d.x_rpps}) == page  # any system
    assert await sentences(**{"agent:identifier": f"urn:oid:1.2.250.1.71.4.2.1|{d.x_rpps}"}) == page
    assert await sentences(agent=f"Practitioner/{d.x_id}") == page
    assert len(await sentences(agent=f"Practitioner/{d.x_id},Practitioner/{d.y_id}")) == 5
    assert await sentences(**{"agent:identifier": f"|{d.x_rpps}"}) == []  # every actor has a system
    assert await sentences(**{"agent:identifier": f"urn:espace-sante:oauth-client|{d.x_rpps}"}) == []
    assert await sentences(agent=f"Organization/{d.x_id}") == []
    # And-ed clauses: no record is by both.
    assert await sentences(agent=f"Practitioner/{d.y_id}", **{"agent:identifier": d.x_rpps}) == []
    for name, value in (
        ("agent:exact", d.x_rpps),
        ("agent:text", "Durand"),
        ("agent:identifier:exact", d.x_rpps),
        ("agent:missing", "false"),
        ("agent.identifier", d.x_rpps),
        ("agent:Practitioner.identifier", d.x_rpps),
        ("entity:identifier", d.x_rpps),
        ("source:identifier", d.x_rpps),
    ):
        refused = await her_api.get("/AuditEvent", params={"patient": f"Patient/{d.patient_id}", name: value})
        assert refused.status_code == 400, (name, refused.text)
        outcome = refused.json()
        assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["severity"] == "error"
    # Elsewhere the index holds literal references only: `:identifier` stays refused, never dropped.
    observations = await her_api.get(
        "/Observation", params={"subject:identifier": f"{INS}|{d.jeanne.actor_id}"}
    )
    assert observations.status_code == 400, observations.text


async def test_a_download_that_reaches_the_cap_says_where_it_stops(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient, monkeypatch: Any
) -> None:
    """Pages of 2, a cap of 4: the spreadsheet and the PDF hold the 4 newest of his 5 reads, each once, then
    the same sentence saying the file stops there."""
    import csv

    from espace_sante.web.holder import history

    monkeypatch.setattr(history, "DOWNLOAD_PAGE", 2)
    monkeypatch.setattr(history, "DOWNLOAD_MAX", 4)
    d = await two_doctors(runtime, fhir, x_reads=5)
    async with browser(app) as client:
        await sign_in(client, d.jeanne)
        shown = lines(await client.get(HISTORY, params={"professionnel": d.x_rpps}))
        sheet = await client.get(f"{HISTORY}/telecharger", params={"professionnel": d.x_rpps})
        document = await client.get(f"{HISTORY}/telecharger-pdf", params={"professionnel": d.x_rpps})
    rows = list(csv.reader(io.StringIO(sheet.content.decode("utf-8-sig"))))[1:]
    cut = "Le fichier s'arrête ici (4 accès) : choisissez une période plus courte pour la suite."
    assert [r[2] for r in rows] == [*shown[:4], cut]
    text = pdf_text(document.content).replace("\n", " ")
    assert text.count("Le professionnel de santé Dr Xavier Durand") == 4 and cut in text
    assert all(line in text for line in shown[:4])  # (five reads in a minute: the same sentence)
