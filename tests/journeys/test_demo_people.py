"""Demo people as a newcomer meets them: Marie-Ange signs in on the web with the README's password and code,
and her session reaches her record through the same policy; an emergency access tells her and her médecin
traitant by mail, with nothing medical in it."""

from __future__ import annotations

from typing import Any

import httpx

from espace_sante.demo import access as demo_access
from espace_sante.demo import world as demo
from espace_sante.oauth import devtokens
from espace_sante.runtime import Runtime
from tests.accounts.helpers import browser, csrf_of, next_code
from tests.factories import BASE, FHIR_JSON, new_nir, patient
from tests.notifications.helpers import deliver_all

MARIE_ANGE = demo_access.DEMO_ACCOUNTS[0]


async def test_the_demo_holder_signs_in_with_the_readmes_password_and_code(
    runtime: Runtime, app: Any
) -> None:
    await demo.load(runtime)
    _, _, login, secret = MARIE_ANGE
    client = browser(app)
    page = await client.get("/connexion")
    first = await client.post(
        "/connexion", data={"csrf": csrf_of(page.text), "login": login, "password": demo_access.DEMO_PASSWORD}
    )
    assert first.status_code == 303, first.text
    form = await client.get("/connexion/code")
    done = await client.post("/connexion/code", data={"csrf": csrf_of(form.text), "code": next_code(secret)})
    assert done.status_code == 303, done.text
    security = await client.get("/compte/securite")
    assert security.status_code == 200 and login in security.text


async def _outbox(runtime: Runtime, recipient: str) -> list[dict[str, Any]]:
    async def run(conn: Any) -> list[dict[str, Any]]:
        rows = await conn.fetch(
            "SELECT subject, body FROM outbox WHERE $1 = ANY(string_to_array(recipient, ', ')) ORDER BY created_at",
            recipient,
        )
        return [dict(r) for r in rows]

    return await runtime.db.read("t_outbox", run)


async def test_an_emergency_access_is_told_to_the_holder_and_the_medecin_traitant(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient
) -> None:
    await demo.load(runtime)
    from espace_sante.people import accounts

    nir = new_nir()
    assert (await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)).status_code == 201
    holder_mail = f"titulaire-{nir}@exemple.fr"
    await accounts.ensure_local_account(
        runtime,
        kind="holder",
        actor_id=nir,
        login=holder_mail,
        password=demo_access.DEMO_PASSWORD,
        email=holder_mail,
    )
    mt = demo_access.MEDECIN_TRAITANT.rpps
    declared = await fhir.post(
        f"{BASE}/access/grants", json={"ins": nir, "basis": "medecin_traitant", "who": mt}
    )
    assert declared.status_code == 204
    mt_mail = demo_access.DEMO_ACCOUNTS[1][2]
    await deliver_all(runtime)  # what other stories left to send: from here on, only this access's e-mail
    before = len(await _outbox(runtime, mt_mail))
    hers_before = len(await _outbox(runtime, holder_mail))

    token = (
        await devtokens.issue(
            runtime, f"practitioner:{demo_access.EMERGENCY_DOCTOR.rpps}", "user/*.rs user/Consent.c"
        )
    ).access_token
    opened = await http.post(
        "/access/emergency",
        json={"ins": nir, "reason": "unable_to_consent"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert opened.status_code == 200, opened.text

    await deliver_all(runtime)  # the notification's job, deferred with the access
    told = [m for m in (await _outbox(runtime, holder_mail))[hers_before:] if "urgence" in m["subject"]]
    assert (
        len(told) == 1
        and "accès en urgence" in told[0]["body"]
        and "/mon-espace/historique" in told[0]["body"]
    )
    # No INS, no name of the patient, not even who opened it (her history says): an e-mail is read by others.
    assert nir not in told[0]["body"] and "Martin" not in told[0]["body"] and "Bernard" not in told[0]["body"]
    assert (
        len(await _outbox(runtime, mt_mail)) == before + 1
    )  # the same message: she and he see not each other


def test_the_readme_lists_the_demo_accounts_as_the_demo_makes_them() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text("utf-8")
    assert demo_access.DEMO_PASSWORD in readme
    for _, _, login, secret in demo_access.DEMO_ACCOUNTS:
        assert f"`{login}`" in readme and f"`{secret}`" in readme, login
