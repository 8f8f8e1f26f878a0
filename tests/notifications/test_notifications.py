"""Notifications: Jeanne is told when a professional first opens her record, when one adds a document, when an
emergency access is opened; each line is written with its event and its delivery job, e-mailed once, never with
anything medical, and only for the kinds she chose; her home marks what came since her last visit; what is hidden
from a child's representatives is never told to them."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from espace_sante.demo import access as demo_access
from espace_sante.notifications import delivery
from espace_sante.people import accounts
from espace_sante.runtime import Runtime
from espace_sante.storage import access as access_store
from espace_sante.storage import notifications as notifications_store
from espace_sante.storage.db import Conn
from tests.access.conftest import CHILD, MOTHER, Client, World
from tests.accounts.helpers import PASSWORD, browser, csrf_of, new_person, sign_in
from tests.factories import FHIR_JSON, new_professional, pdsm_document
from tests.notifications.helpers import deliver_all, job_of, lines, mails_to
from tests.web.test_dashboard import text
from tests.web.test_history_page import a_doctor_on_her_care_team, her_patient, software_of
from tests.worker.smtp import SmtpServer
from tests.worker.test_queue import with_smtp

PAGE = "/mon-espace/notifications"


def _space(patient_id: str) -> uuid.UUID:
    return uuid.UUID(patient_id[:32])


async def test_a_doctors_first_access_is_told_once_and_the_email_says_nothing_medical(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    patient_id = await her_patient(fhir, jeanne)
    doctor = await a_doctor_on_her_care_team(runtime, fhir, patient_id)
    for _ in range(3):
        assert (await doctor.get(f"/Patient/{patient_id}")).status_code == 200
    assert (await doctor.get("/DocumentReference", params={"patient": patient_id})).status_code == 200

    firsts = [n for n in await lines(runtime, _space(patient_id)) if n["actor_kind"] == "practitioner"]
    assert [n["kind"] for n in firsts] == ["first_access"]  # once, however often he reads
    assert await job_of(runtime, firsts[0]["notification_id"]) == "todo"  # deferred with the access

    await deliver_all(runtime)
    mine = firsts[0]["notification_id"]
    [told] = [m for m in await mails_to(runtime, jeanne.login) if m["message_id"] == mine]
    assert "première fois" in told["subject"]
    assert "/mon-espace/historique" in told["body"] and "Hello" in told["body"]
    assert (
        "Lefèvre" not in told["body"] and jeanne.actor_id not in told["body"]
    )  # who, and whose: on the page
    await deliver_all(runtime)
    assert len([m for m in await mails_to(runtime, jeanne.login) if m["message_id"] == mine]) == 1
    assert [
        n["mail_state"] for n in await lines(runtime, _space(patient_id)) if n["notification_id"] == mine
    ] == ["sent"]


async def test_a_new_document_is_on_her_home_and_mailed_only_once_she_chose_it(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    patient_id = await her_patient(fhir, jeanne)
    rpps, _ = await new_professional(fhir)
    await runtime.db.interaction(
        "t_team", lambda c: access_store.set_basis(c, _space(patient_id), rpps, "care_team", "test")
    )
    doctor = await software_of(runtime, rpps)
    report = {"rpps": rpps}
    deposited = await doctor.post(
        "/DocumentReference", json=pdsm_document(f"Patient/{patient_id}", **report), headers=FHIR_JSON
    )
    assert deposited.status_code == 201, deposited.text
    await deliver_all(runtime)
    [document] = [n for n in await lines(runtime, _space(patient_id)) if n["kind"] == "document"]
    assert document["mail_state"] == "none"  # not chosen by default: on her home only
    assert not [m for m in await mails_to(runtime, jeanne.login) if "nouveau document" in m["subject"]]

    async with browser(app) as client:
        await sign_in(client, jeanne)
        home = text(await client.get("/"))
        assert "Dr Claire Lefèvre, médecin a ajouté un document au dossier." in home
        assert "Nouveau" in home  # her first visit: everything is new
        page = await client.get(PAGE)
        assert page.status_code == 200
        shown = text(page)
        assert "Dr Claire Lefèvre, médecin a consulté votre dossier pour la première fois." in shown
        assert f"Les e-mails sont envoyés à {jeanne.login}" in shown
        # She keeps the defaults and adds the new documents.
        chosen = {"csrf": csrf_of(page.text), "courriel-first_access": "oui", "courriel-emergency": "oui"}
        chosen |= {"courriel-waiting": "oui", "courriel-document": "oui"}
        saved = await client.post(PAGE, data=chosen)
        assert saved.status_code == 303 and saved.headers["location"] == f"{PAGE}?message=choix"
        confirmed = text(await client.get(saved.headers["location"]))
        assert "vos choix de notifications sont enregistrés" in confirmed
        history = text(await client.get("/mon-espace/historique"))
        assert "modifié les notifications que vous recevez par e-mail" in history

    again = await doctor.post(
        "/DocumentReference", json=pdsm_document(f"Patient/{patient_id}", **report), headers=FHIR_JSON
    )
    assert again.status_code == 201, again.text
    await deliver_all(runtime)
    [mailed] = [m for m in await mails_to(runtime, jeanne.login) if "nouveau document" in m["subject"]]
    assert "/mon-espace/documents" in mailed["body"] and "Compte rendu" not in mailed["body"]


async def test_her_second_visit_marks_what_came_since_the_first(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    patient_id = await her_patient(fhir, jeanne)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        first = text(await client.get("/"))
    assert "depuis votre dernière visite" not in first  # no previous visit to speak of
    doctor = await a_doctor_on_her_care_team(runtime, fhir, patient_id)
    assert (await doctor.get(f"/Patient/{patient_id}")).status_code == 200
    async with browser(app) as client:
        await sign_in(client, jeanne)
        second = text(await client.get("/"))
        client.cookies.set("langue", "en")
        english = text(await client.get("/"))
    assert "1 nouvelle depuis votre dernière visite" in second
    assert "Dr Claire Lefèvre, médecin a consulté votre dossier pour la première fois." in second
    assert "1 new since your last visit" in english
    assert "Dr Claire Lefèvre, médecin opened your record for the first time." in english


async def test_a_weaker_session_or_a_forged_form_changes_no_choice(
    runtime: Runtime, app: Any, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    patient_id = await her_patient(fhir, jeanne)
    async with browser(app) as client:
        await sign_in(client, jeanne)
        page = await client.get(PAGE)
        forged = await client.post(PAGE, data={"courriel-document": "oui"})
        assert forged.status_code == 403

        async def weaker(conn: Conn) -> None:
            await conn.execute(
                "UPDATE web_session SET acr = 'eidas1' WHERE account_id = $1", jeanne.account_id
            )

        await runtime.db.interaction("t_weaker", weaker)
        refused = await client.post(PAGE, data={"csrf": csrf_of(page.text), "courriel-document": "oui"})
        assert refused.status_code == 403 and "connexion renforcée" in refused.text

    async def saved(conn: Conn) -> dict[str, bool]:
        return await notifications_store.choices(conn, _space(patient_id))

    assert await runtime.db.read("t_choices", saved) == {}


async def test_what_is_hidden_from_a_childs_representatives_is_never_told_to_them(
    runtime: Runtime, as_actor: Client, world: World
) -> None:
    space = _space(world.child_patient)

    async def mother_wants_every_mail(conn: Conn) -> None:
        await notifications_store.save_choices(conn, space, {"document": True, "first_access": True})

    await runtime.db.interaction("t_choices", mother_wants_every_mail)
    mt = await as_actor(f"practitioner:{demo_access.MEDECIN_TRAITANT.rpps}", "user/*.cruds")  # Léo's doctor
    rpps = demo_access.MEDECIN_TRAITANT.rpps
    secret = pdsm_document(
        f"Patient/{world.child_patient}", rpps=rpps, labels=("INVISIBLE_REPRESENTANTS_LEGAUX",)
    )
    plain = pdsm_document(f"Patient/{world.child_patient}", rpps=rpps)
    for body in (secret, plain):
        created = await mt.post("/fhir/DocumentReference", json=body, headers=FHIR_JSON)
        assert created.status_code == 201, created.text
        body["id"] = created.json()["id"]
    try:
        told = {n["audience"] for n in await lines(runtime, space) if n["kind"] == "document"}
        assert told == {"holder", "all"}
        mother_mail = demo_access.DEMO_ACCOUNTS[0][2]
        before = len(await mails_to(runtime, mother_mail))
        await deliver_all(runtime)
        new = (await mails_to(runtime, mother_mail))[before:]
        assert len([m for m in new if "nouveau document" in m["subject"]]) == 1  # the plain one only
        assert MOTHER not in str(new) and CHILD not in str(new)
    finally:
        for body in (secret, plain):
            await mt.delete(f"/fhir/DocumentReference/{body['id']}")


async def test_an_emergency_access_reaches_her_and_her_medecin_traitant_in_one_message_once(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    patient_id = await her_patient(fhir, jeanne)
    space = _space(patient_id)
    rpps, _ = await new_professional(fhir)  # her médecin traitant, who signs in with an account of his own
    mt_address = f"medecin-{rpps}@exemple.fr"
    await accounts.create(runtime, kind="practitioner", actor_id=rpps, login=mt_address, password=PASSWORD)
    await runtime.db.interaction(
        "t_mt", lambda c: access_store.set_basis(c, space, rpps, "medecin_traitant", "test")
    )

    async def emergency(conn: Conn) -> uuid.UUID:
        return await notifications_store.tell(
            conn,
            notifications_store.NewNotification(space, "emergency", actor_kind="practitioner", actor_id="1"),
        )

    line = await runtime.db.interaction("t_emergency", emergency)
    with SmtpServer() as server:
        rt = with_smtp(runtime, server)
        assert await delivery.deliver_one(rt, space, line) == "sent"
        assert await delivery.deliver_one(rt, space, line) == "already"
        got = server.recorder.messages
    assert {m.recipient for m in got} == {jeanne.login, mt_address}
    assert (
        len({m.message_id for m in got}) == 1
        and got[0].message_id == f"<note.{line.hex}@espace-sante.localhost>"
    )
    assert all(m.to_header == "undisclosed-recipients:;" for m in got)  # neither sees the other's address
    assert "R1111-48" in got[0].text


async def test_a_line_handed_to_the_relay_by_a_dead_attempt_is_never_sent_again(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir)
    space = _space(await her_patient(fhir, jeanne))

    async def handed(conn: Conn) -> uuid.UUID:
        nid = await notifications_store.tell(conn, notifications_store.NewNotification(space, "first_access"))
        await conn.execute("UPDATE notification SET mail_state = 'handed' WHERE notification_id = $1", nid)
        return nid

    line = await runtime.db.interaction("t_handed", handed)
    with SmtpServer() as server:
        rt = with_smtp(runtime, server)
        assert await delivery.deliver_one(rt, space, line) == "uncertain"
        assert await delivery.deliver_one(rt, space, line) == "already"
        assert server.recorder.messages == []
    [state] = [n["mail_state"] for n in await lines(runtime, space) if n["notification_id"] == line]
    assert state == "uncertain"
