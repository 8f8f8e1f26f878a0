"""A hospital's software deposits and manages documents through IHE MHD as the French PDSm profile describes:
ITI-65 submissions, all or nothing and not duplicated when re-sent; ITI-105; ITI-67 by INS; ITI-68; metadata
updates and replacement with their rules of who may do what."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from espace_sante.runtime import Runtime
from tests.documents.mhd import by_type, documents_of, iti65, iti105, new_person
from tests.factories import FHIR_JSON, INS, PDSM_EXAMPLES

ANS_EXAMPLES = PDSM_EXAMPLES.parent / "ans-examples"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


async def test_a_discharge_summary_is_deposited_and_found_again_by_ins(fhir: httpx.AsyncClient) -> None:
    nir, _ = await new_person(fhir)
    bundle = iti65(nir)
    response = await fhir.post("/", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["type"] == "transaction-response"
    # One entry per request entry, in order (ITI-65 response).
    assert [e["response"]["status"] for e in answer["entry"]] == ["201 Created"] * 3
    assert [e["resource"]["resourceType"] for e in answer["entry"]] == ["List", "DocumentReference", "Binary"]
    stored = by_type(response)
    assert (
        stored["List"]["entry"][0]["item"]["reference"]
        == f"DocumentReference/{stored['DocumentReference']['id']}"
    )
    assert (
        stored["DocumentReference"]["content"][0]["attachment"]["url"] == f"Binary/{stored['Binary']['id']}"
    )

    found = await documents_of(fhir, nir)
    assert [d["id"] for d in found] == [stored["DocumentReference"]["id"]]
    for params in ({"category": "10"}, {"type": "http://loinc.org|34112-3"}, {"setting": "ETABLISSEMENT"},
                   {"facility": "SA01"}, {"format": "urn:ihe:iti:xds-sd:pdf:2008"}, {"creation": "ge2020-01-01"},
                   {"security-label": "N"}):  # fmt: skip
        assert [d["id"] for d in await documents_of(fhir, nir, **params)] == [
            stored["DocumentReference"]["id"]
        ], params
    assert await documents_of(fhir, nir, category="11") == []

    pdf = base64.b64decode(
        next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Binary")["resource"]["data"]
    )
    retrieved = await fhir.get(f"/Binary/{stored['Binary']['id']}", headers={"Accept": "application/pdf"})
    assert retrieved.status_code == 200 and retrieved.content == pdf

    sets = await fhir.get("/List", params={"patient.identifier": f"{INS}|{nir}", "code": "submissionset"})
    assert [e["resource"]["id"] for e in sets.json()["entry"]] == [stored["List"]["id"]]


async def test_a_resent_submission_stores_nothing_twice(fhir: httpx.AsyncClient) -> None:
    nir, _ = await new_person(fhir)
    bundle = iti65(nir)
    first = await fhir.post("/", json=bundle, headers=FHIR_JSON)
    again = await fhir.post("/", json=bundle, headers=FHIR_JSON)
    assert again.status_code == 200, again.text
    assert [e["response"]["status"] for e in again.json()["entry"]] == ["200 OK"] * 3
    assert [e["resource"]["id"] for e in again.json()["entry"]] == [
        e["resource"]["id"] for e in first.json()["entry"]
    ]
    assert len(await documents_of(fhir, nir)) == 1

    # Another submission carrying the same document uniqueId is refused (a new version is a replacement).
    other = iti65(nir)
    master = by_type(first)["DocumentReference"]["masterIdentifier"]["value"]
    next(e for e in other["entry"] if e["resource"]["resourceType"] == "DocumentReference")["resource"][
        "masterIdentifier"
    ]["value"] = master
    refused = await fhir.post("/", json=other, headers=FHIR_JSON)
    assert refused.status_code == 422
    assert refused.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.masterIdentifier"]


async def test_metadata_errors_name_the_element_and_the_value_set(fhir: httpx.AsyncClient) -> None:
    nir, _ = await new_person(fhir)
    bundle = iti65(nir)
    doc = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference")["resource"]
    doc["type"]["coding"][0]["code"] = "00000-0"
    del doc["custodian"]
    response = await fhir.post("/", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 422
    issues = response.json()["issue"]
    expressions = {x for i in issues for x in i.get("expression", [])}
    assert "Bundle.entry[1].resource.custodian" in expressions
    assert any(
        "JDV_J07" in i["diagnostics"] and "1.2.250.1.213.1.1.5.471" in i["diagnostics"] for i in issues
    )
    assert await documents_of(fhir, nir) == []


async def test_the_ans_example_codes_pass_only_in_lenient_mode(
    fhir: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The ANS TD2 example uses LOINC displays in English and SNOMED CT facility codes: refused by default,
    accepted with warnings in lenient mode (docs/documents.md). Its fictitious INS and missing custodian and
    uniqueIds are repaired first: those are errors in any mode."""
    nir, _ = await new_person(fhir)
    ans = json.loads((ANS_EXAMPLES / "Bundle-example-td2-iti65-lot-soumission.json").read_text())
    french = iti65(nir)
    custodian = {"reference": "#etablissement"}
    organisation = next(
        c for e in french["entry"] if e["resource"]["resourceType"] == "DocumentReference"
        for c in e["resource"]["contained"] if c["resourceType"] == "Organization"
    )  # fmt: skip
    sset = next(e for e in french["entry"] if e["resource"]["resourceType"] == "List")["resource"]
    for entry in ans["entry"]:
        resource = entry["resource"]
        text = json.dumps(resource).replace("123456789012345", nir)
        resource.clear()
        resource.update(json.loads(text))
        if resource["resourceType"] == "DocumentReference":
            resource["custodian"] = custodian
            resource["contained"].append(organisation)
            resource["masterIdentifier"]["value"] = french["entry"][1]["resource"]["masterIdentifier"][
                "value"
            ]
        if resource["resourceType"] == "List":
            resource["identifier"] = sset["identifier"]
            resource["extension"] = [x for x in resource["extension"] if "designationType" not in x["url"]]
            resource["extension"] += [x for x in sset["extension"] if "designationType" in x["url"]]
        if resource["resourceType"] == "Binary":
            resource.update(
                next(e for e in french["entry"] if e["resource"]["resourceType"] == "Binary")["resource"]
            )
            resource["securityContext"] = {"reference": f"Patient?identifier={INS}|{nir}"}
    for entry in ans["entry"]:
        if entry["resource"]["resourceType"] == "DocumentReference":
            attachment = entry["resource"]["content"][0]["attachment"]
            fr = french["entry"][1]["resource"]["content"][0]["attachment"]
            attachment.update(contentType=fr["contentType"], size=fr["size"], hash=fr["hash"])

    strict = await fhir.post("/", json=ans, headers=FHIR_JSON)
    assert strict.status_code == 422, strict.text
    assert any("snomed" in i["diagnostics"].lower() for i in strict.json()["issue"])

    runtime.settings.documents_lenient_codes = True
    try:
        lenient = await fhir.post("/", json=ans, headers=FHIR_JSON)
    finally:
        runtime.settings.documents_lenient_codes = False
    assert lenient.status_code == 200, lenient.text
    outcome = next(e["response"]["outcome"] for e in lenient.json()["entry"] if "outcome" in e["response"])
    assert {i["severity"] for i in outcome["issue"]} == {"warning"}
    assert len(await documents_of(fhir, nir)) == 1


async def test_simplified_publish_makes_the_binary_and_computes_nothing_the_client_declared_wrong(
    fhir: httpx.AsyncClient,
) -> None:
    nir, _ = await new_person(fhir)
    body = iti105(nir)
    pdf = base64.b64decode(body["content"][0]["attachment"]["data"])
    response = await fhir.post("/DocumentReference", json=body, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    stored = response.json()
    attachment = stored["content"][0]["attachment"]
    assert "data" not in attachment and attachment["url"].startswith("Binary/")
    assert attachment["size"] == len(pdf)
    content = await fhir.get(f"/{attachment['url']}", headers={"Accept": "*/*"})
    assert content.content == pdf

    wrong = iti105(nir)
    wrong["content"][0]["attachment"]["size"] = 12
    refused = await fhir.post("/DocumentReference", json=wrong, headers=FHIR_JSON)
    assert refused.status_code == 422
    assert refused.json()["issue"][0]["expression"] == ["DocumentReference.content[0].attachment.size"]


async def _deposit(fhir: httpx.AsyncClient, nir: str) -> dict[str, Any]:
    response = await fhir.post("/", json=iti65(nir), headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    return by_type(response)["DocumentReference"]


async def test_metadata_updates_touch_only_status_security_labels_and_archiving(
    fhir: httpx.AsyncClient,
) -> None:
    nir, _ = await new_person(fhir)
    doc = await _deposit(fhir, nir)
    master = doc["masterIdentifier"]["value"]
    condition = f"/DocumentReference?identifier=urn:ietf:rfc:3986|{master}"

    hide = [{"op": "add", "path": "/securityLabel/-", "value": {"coding": [{
        "system": "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument",
        "code": "INVISIBLE_PATIENT"}]}}]  # fmt: skip
    patched = await fhir.patch(condition, content=json.dumps(hide), headers=JSON_PATCH)
    assert patched.status_code == 200, patched.text
    codes = {c["code"] for label in patched.json()["securityLabel"] for c in label["coding"]}
    assert codes == {"N", "INVISIBLE_PATIENT"}
    assert patched.json()["meta"]["versionId"] == "2"

    title = [{"op": "replace", "path": "/content/0/attachment/title", "value": "Autre titre"}]
    refused = await fhir.patch(condition, content=json.dumps(title), headers=JSON_PATCH)
    assert refused.status_code == 405

    archive = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"},
        {"name": "path", "valueString": "DocumentReference.extension('isArchived')"},
        {"name": "value", "valueBoolean": True}]}]}  # fmt: skip
    archived = await fhir.patch(f"/DocumentReference/{doc['id']}", json=archive, headers=FHIR_JSON)
    assert archived.status_code == 200, archived.text
    assert {"url": "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-is-archived",
            "valueBoolean": True} in archived.json()["extension"]  # fmt: skip

    none = await fhir.patch(
        "/DocumentReference?identifier=urn:ietf:rfc:3986|urn:oid:1.2.3.999",
        content=json.dumps(hide),
        headers=JSON_PATCH,
    )
    assert none.status_code == 404


async def test_a_replacement_supersedes_the_old_version_which_stays_in_history(
    fhir: httpx.AsyncClient,
) -> None:
    nir, _ = await new_person(fhir)
    old = await _deposit(fhir, nir)
    replacement = iti65(nir)
    doc = next(e for e in replacement["entry"] if e["resource"]["resourceType"] == "DocumentReference")[
        "resource"
    ]
    doc["relatesTo"] = [{"code": "replaces", "target": {"reference": f"DocumentReference/{old['id']}"}}]
    # As in the ANS TD2.1 example, the submission also PATCHes the old document to superseded.
    replacement["entry"].append({
        "resource": {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "DocumentReference.status"},
            {"name": "value", "valueCode": "superseded"}]}]},
        "request": {"method": "PATCH", "url": f"DocumentReference/{old['id']}"},
    })  # fmt: skip
    response = await fhir.post("/", json=replacement, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert entries[3]["resource"]["id"] == old["id"] and entries[3]["response"]["status"] == "200 OK"
    newest = entries[1]["resource"]["id"]

    current = await documents_of(fhir, nir)
    assert [d["id"] for d in current] == [newest]
    previous = (await fhir.get(f"/DocumentReference/{old['id']}")).json()
    assert previous["status"] == "superseded"
    history = (await fhir.get(f"/DocumentReference/{old['id']}/_history")).json()
    assert [e["resource"]["status"] for e in history["entry"]] == ["superseded", "current"]
    replaced_by = await fhir.get("/DocumentReference", params={"relatesto": f"DocumentReference/{old['id']}"})
    assert replaced_by.json()["entry"][0]["resource"]["id"] == newest

    # Without the PATCH entry the server supersedes the old one itself.
    again = iti65(nir)
    doc = next(e for e in again["entry"] if e["resource"]["resourceType"] == "DocumentReference")["resource"]
    doc["relatesTo"] = [{"code": "replaces", "target": {"reference": f"DocumentReference/{newest}"}}]
    assert (await fhir.post("/", json=again, headers=FHIR_JSON)).status_code == 200
    assert (await fhir.get(f"/DocumentReference/{newest}")).json()["status"] == "superseded"

    # A superseded document cannot be replaced again.
    late = iti65(nir)
    doc = next(e for e in late["entry"] if e["resource"]["resourceType"] == "DocumentReference")["resource"]
    doc["relatesTo"] = [{"code": "replaces", "target": {"reference": f"DocumentReference/{old['id']}"}}]
    assert (await fhir.post("/", json=late, headers=FHIR_JSON)).status_code == 422


async def test_the_ans_style_patch_of_the_first_label_keeps_confidentiality_and_other_flags(
    fhir: httpx.AsyncClient,
) -> None:
    """PDSM4DMP TD3.3a masks by replacing securityLabel/0: done literally, it would drop the N/R/V code (fr-interop
    §4). The server keeps the confidentiality and every flag the patch did not touch."""
    nir, _ = await new_person(fhir)
    doc = await _deposit(fhir, nir)
    a07 = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"
    hide = [
        {
            "op": "add",
            "path": "/securityLabel/-",
            "value": {"coding": [{"system": a07, "code": "INVISIBLE_REPRESENTANTS_LEGAUX"}]},
        }
    ]
    assert (
        await fhir.patch(f"/DocumentReference/{doc['id']}", content=json.dumps(hide), headers=JSON_PATCH)
    ).status_code == 200
    mask = [
        {
            "op": "replace",
            "path": "/securityLabel/0",
            "value": {"coding": [{"system": a07, "code": "MASQUE_PS"}]},
        }
    ]
    patched = await fhir.patch(
        f"/DocumentReference/{doc['id']}", content=json.dumps(mask), headers=JSON_PATCH
    )
    assert patched.status_code == 200, patched.text
    codes = sorted(c["code"] for label in patched.json()["securityLabel"] for c in label["coding"])
    assert codes == ["INVISIBLE_REPRESENTANTS_LEGAUX", "MASQUE_PS", "N"]
