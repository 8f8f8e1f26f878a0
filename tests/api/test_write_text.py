"""What a write's text may carry, through the API (issue 16 #5 and #7): a bidirectional control in a title, a
name or a file name, or a narrative outside R4's limited XHTML, is refused with a 422 OperationOutcome that
names the element, whatever the path: a create, an update, a batch entry, an ITI-65 submission."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from espace_sante.errors import BadRequest
from espace_sante.oauth import clients as oauth_clients
from espace_sante.people import accounts
from espace_sante.runtime import Runtime
from tests.factories import FHIR_JSON, new_nir, patient, pdsm_document

X = 'xmlns="http://www.w3.org/1999/xhtml"'
RLO = "\u202e"
SUBMISSION = Path(__file__).parents[1] / "data" / "pdsm" / "iti65-fr.json"


def _refusal(response: httpx.Response) -> tuple[str, list[str]]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return " ".join(i["diagnostics"] for i in body["issue"]), [
        e for i in body["issue"] for e in i.get("expression", [])
    ]


async def _patient_id(fhir: httpx.AsyncClient) -> str:
    created = await fhir.post("/Patient", json=patient(), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_a_document_titled_to_look_like_a_pdf_is_refused_naming_its_title(
    fhir: httpx.AsyncClient,
) -> None:
    """`rapport <RLO>exe.fdp` shows as `rapport pdf.exe` (ITI-105, a create)."""
    document = pdsm_document(f"Patient/{await _patient_id(fhir)}")
    document["content"][0]["attachment"]["title"] = f"rapport {RLO}exe.fdp"
    said, where = _refusal(await fhir.post("/DocumentReference", json=document, headers=FHIR_JSON))
    assert where == ["DocumentReference.content[0].attachment.title"]
    assert "U+202E" in said and said.index("caractère invisible") < said.index("invisible character")


async def test_a_person_renamed_with_a_bidi_control_on_update_is_refused(fhir: httpx.AsyncClient) -> None:
    pid = await _patient_id(fhir)
    current = (await fhir.get(f"/Patient/{pid}")).json()
    current["name"] = [{"family": f"Martin{RLO}", "given": ["Jeanne"]}]
    _, where = _refusal(await fhir.put(f"/Patient/{pid}", json=current, headers=FHIR_JSON))
    assert where == ["Patient.name[0].family"]


async def test_an_iti65_file_name_with_a_bidi_control_refuses_the_submission(fhir: httpx.AsyncClient) -> None:
    submission: dict[str, Any] = json.loads(SUBMISSION.read_text(encoding="utf-8"))
    index, entry = next(
        (i, e)
        for i, e in enumerate(submission["entry"])
        if e["resource"]["resourceType"] == "DocumentReference"
    )
    entry["resource"]["content"][0]["attachment"]["title"] = f"ordonnance{RLO}fdp.exe"
    said, where = _refusal(await fhir.post("", json=submission, headers=FHIR_JSON))
    assert f"Bundle.entry[{index}].resource.content[0].attachment.title" in where, (where, said)


async def test_a_narrative_with_a_script_is_refused_naming_text_div(fhir: httpx.AsyncClient) -> None:
    body = patient(text={"status": "generated", "div": f"<div {X}><script>alert(1)</script>Jeanne</div>"})
    said, where = _refusal(await fhir.post("/Patient", json=body, headers=FHIR_JSON))
    assert where == ["Patient.text.div"] and "<script>" in said


async def test_a_plain_narrative_is_stored_and_served_as_sent(fhir: httpx.AsyncClient) -> None:
    div = f'<div {X}><p lang="fr" xml:lang="fr">Jeanne <b>Martin</b></p></div>'
    created = await fhir.post(
        "/Patient", json=patient(text={"status": "generated", "div": div}), headers=FHIR_JSON
    )
    assert created.status_code == 201, created.text
    assert (await fhir.get(f"/Patient/{created.json()['id']}")).json()["text"]["div"] == div


async def test_a_batch_entry_with_an_active_link_in_a_contained_narrative_is_refused_alone(
    fhir: httpx.AsyncClient,
) -> None:
    document = pdsm_document(f"Patient/{await _patient_id(fhir)}")
    document["contained"][0]["text"] = {
        "status": "generated",
        "div": f'<div {X}><a href="javascript:x()">Dr</a></div>',
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": document, "request": {"method": "POST", "url": "DocumentReference"}},
            {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
        ],
    }
    answer = await fhir.post("", json=bundle, headers=FHIR_JSON)
    assert answer.status_code == 200, answer.text
    first, second = answer.json()["entry"]
    assert first["response"]["status"].startswith("422") and second["response"]["status"].startswith("201")
    expressions = [e for i in first["response"]["outcome"]["issue"] for e in i.get("expression", [])]
    assert expressions == ["Bundle.entry[0].resource.contained[0].text.div"]


async def test_a_client_name_with_a_bidi_control_is_refused(runtime: Runtime) -> None:
    """An app's name is shown to the holder who connects it, and in her trace."""
    with pytest.raises(BadRequest, match="U\\+202E"):
        await oauth_clients.register_client(runtime, f"Mon appli{RLO}", "system/Patient.r")


def test_a_login_with_a_bidi_control_is_refused() -> None:
    with pytest.raises(accounts.AccountError, match="U\\+202E"):
        accounts.check_login(f"jeanne{RLO}nitram")


#: Invisible format characters (Unicode category Cf): a bidirectional control, and characters that are harmless
#: in a name but make two logins or addresses look the same (`jeanne@exa<U+200B>mple.fr`).
FORMAT_CHARACTERS = ["\u202e", "\u2066", "\u200b", "\u200d", "\u200c", "\u00ad", "\u2060", "\ufeff"]


@pytest.mark.parametrize("hidden", FORMAT_CHARACTERS)
def test_a_login_or_an_email_address_with_a_format_character_is_refused(hidden: str) -> None:
    code = f"U+{ord(hidden):04X}"
    for address in (f"jeanne{hidden}@exemple.fr", f"jeanne@exem{hidden}ple.fr", f"{hidden}jeanne@exemple.fr"):
        with pytest.raises(accounts.AccountError, match=code.replace("+", "\\+")) as refused:
            accounts.check_email(address)
        assert "adresse électronique" in refused.value.message.lower(), refused.value.message
        assert "e-mail address" in refused.value.message, refused.value.message
        with pytest.raises(accounts.AccountError, match=code.replace("+", "\\+")):
            accounts.check_login(address)
    assert accounts.check_email("jeanne.martin@exemple.fr") == "jeanne.martin@exemple.fr"
    assert accounts.check_login("jeanne.martin@exemple.fr") == "jeanne.martin@exemple.fr"


async def test_an_account_with_a_reversed_email_address_is_not_created(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """The probe's address: `moc.elpmexe@{RLO}…` shows as another address to whoever reads the account."""
    nir = new_nir()
    assert (await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)).status_code == 201
    with pytest.raises(accounts.AccountError, match="U\\+202E"):
        await accounts.create(
            runtime,
            kind="holder",
            actor_id=nir,
            login=f"jeanne-{nir}",
            password="Correct-horse-battery-9",  # pragma: allowlist secret
            email=f"jeanne@{RLO}rf.elpmexe",
        )
    assert await accounts.find_by_actor(runtime, "holder", nir) is None
