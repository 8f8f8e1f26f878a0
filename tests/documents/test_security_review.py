"""The security review of the documents path (2026-12), each finding as the story of its attack.

D1 a document's old content, hidden from the holder, is listed and downloaded once its author corrected it;
D2 a professional masks a document from other professionals by a PUT; D3 a visibility code spelled in another
system hides a document from the holder for ever (and masks from professionals) while the rules do not see it;
D4 a professional signs as another through a contained PractitionerRole; D5 a holder deposits a prescription
signed by her doctor; D6 a CDA carries a PDF with JavaScript outside its first nonXMLBody; D7 a PUT gives a
document another document's uniqueId; D8 the author rewrites a deposited document's content in place; D9 a
holder writes `meta` into a professional's document; D10 a refused submission leaves its content in the store;
D11 a resend by a feed without read scopes answers 503; D12-D14 client input answered 500 (Range digits,
FHIRPath Patch shapes, unknown visibility or confidentiality codes)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import httpx
import pikepdf

from espace_sante.demo import access as w
from espace_sante.record import documents
from espace_sante.runtime import Runtime
from tests.access.conftest import MOTHER, Client, World
from tests.content.samples import STRUCTURED_BODY, altered_pdf, cda, javascript_action, report_pdf
from tests.documents.mhd import iti65, new_person
from tests.factories import BASE, FHIR_JSON, INS, new_nir, patient, pdsm_document

MT, HOSPITAL, PHARMACIST = w.MEDECIN_TRAITANT.rpps, w.HOSPITAL_DOCTOR.rpps, w.PHARMACIST.rpps
A07 = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"
A03 = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
IDNPS = "urn:oid:1.2.250.1.71.4.2.1"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
DOWNLOAD = {"Accept": "*/*"}


async def _send(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """The response, or a 500 when the app raised: the ASGI transport re-raises what a server answers 500."""
    try:
        return await client.request(method, url, **kwargs)
    except Exception as exc:  # any fault of the app is what these tests look for
        return httpx.Response(500, text=f"{type(exc).__name__}: {exc}"[:300])


async def _deposit(
    as_actor: Client, patient_id: str, rpps: str, category: str, *labels: str
) -> dict[str, Any]:
    """An ITI-105 deposit by this professional (the server makes the Binary)."""
    author = await as_actor(f"practitioner:{rpps}", "user/*.cruds")
    body = pdsm_document(f"Patient/{patient_id}", category=category, rpps=rpps, labels=labels)
    response = await author.post("/fhir/DocumentReference", json=body, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    stored: dict[str, Any] = response.json()
    return stored


def _binary_of(doc: dict[str, Any]) -> str:
    return str(doc["content"][0]["attachment"]["url"]).rsplit("/", 1)[-1]


async def _sees(client: httpx.AsyncClient, doc: dict[str, Any]) -> bool:
    return (await client.get(f"/fhir/DocumentReference/{doc['id']}")).status_code == 200


def _text_binary(text: str, subject: str, full_url: str) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": {
            "resourceType": "Binary",
            "contentType": "text/plain",
            "securityContext": {"reference": subject},
            "data": base64.b64encode(text.encode()).decode(),
        },
        "request": {"method": "POST", "url": "Binary"},
    }


def _archive(archived: bool = True) -> dict[str, Any]:
    return {
        "op": "add",
        "path": "/extension",
        "value": [{"url": documents.ARCHIVED_URL, "valueBoolean": archived}],
    }


# --- D1 ------------------------------------------------------------------------------------------------


async def test_d1_the_old_content_of_a_document_hidden_from_the_holder_stays_hidden_after_a_correction(
    as_actor: Client, world: World
) -> None:
    """D1: once the author points a hidden document at corrected content, its old Binary is "content no document
    points at" and the holder lists and downloads it (visibility.rows_sql, person branch)."""
    doc = await _deposit(as_actor, world.mother_patient, HOSPITAL, "10", "INVISIBLE_PATIENT")
    old = _binary_of(doc)
    hospital = await as_actor(f"practitioner:{HOSPITAL}", "user/*.cruds")
    subject = f"Patient/{world.mother_patient}"
    new_url = "urn:uuid:6a0e0d4e-0000-4000-8000-0000000000b2"
    corrected = json.loads(json.dumps(doc))
    attachment = corrected["content"][0]["attachment"]
    attachment["url"] = new_url
    attachment.pop("size", None)
    attachment.pop("hash", None)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            _text_binary("Résultat corrigé, à annoncer en consultation.", subject, new_url),
            {"resource": corrected, "request": {"method": "PUT", "url": f"DocumentReference/{doc['id']}"}},
        ],
    }
    correction = await hospital.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert correction.status_code == 200, correction.text

    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    assert not await _sees(holder, doc)
    listed = await holder.get("/fhir/Binary", params={"_count": "200"})
    history = await holder.get("/fhir/Binary/_history", params={"_count": "200"})
    assert old not in listed.text and old not in history.text
    download = await holder.get(f"/fhir/Binary/{old}", headers=DOWNLOAD)
    assert download.status_code == 404
    assert b"Compte rendu" not in download.content


# --- D2 ------------------------------------------------------------------------------------------------


async def test_d2_a_professional_cannot_mask_his_document_by_a_put(as_actor: Client, world: World) -> None:
    """D2: an update never asked `_allowed_change` (now `metadata.check_update` does): the author PUTs MASQUE_PS, which the PDSm PATCH
    refuses to professionals (R1111-49), and the pharmacist stops seeing a synthesis he may read."""
    doc = await _deposit(as_actor, world.mother_patient, HOSPITAL, "11")
    pharmacist = await as_actor(f"practitioner:{PHARMACIST}", "user/*.rs")
    assert await _sees(pharmacist, doc)
    hospital = await as_actor(f"practitioner:{HOSPITAL}", "user/*.cruds")
    masked = dict(
        doc, securityLabel=[*doc["securityLabel"], {"coding": [{"system": A07, "code": "MASQUE_PS"}]}]
    )
    put = await hospital.put(f"/fhir/DocumentReference/{doc['id']}", json=masked, headers=FHIR_JSON)
    assert put.status_code in (400, 403, 405, 422), put.text
    assert await _sees(pharmacist, doc)


# --- D3 ------------------------------------------------------------------------------------------------


def _foreign(code: str) -> dict[str, Any]:
    """A TRE_A07 code under a system that is not TRE_A07's (any spelling the OID matcher does not know)."""
    return {
        "op": "add",
        "path": "/securityLabel/-",
        "value": {"coding": [{"system": "urn:x-autre", "code": code}]},
    }


async def test_d3_a_hidden_flag_spelled_in_another_system_does_not_hide_a_result_for_ever(
    as_actor: Client, world: World
) -> None:
    """D3: visibility SQL matches a label's code whatever its system (`visibility._labelled`), the rules read it
    by OID (`pdsm.security_flags`): hidden from the holder with no release date, and no PATCH can lift it."""
    doc = await _deposit(as_actor, world.mother_patient, HOSPITAL, "10")
    hospital = await as_actor(f"practitioner:{HOSPITAL}", "user/*.cruds")
    url = f"/fhir/DocumentReference/{doc['id']}"
    await hospital.patch(
        url, content=json.dumps([_foreign("INVISIBLE_PATIENT"), _archive()]), headers=JSON_PATCH
    )
    # The author then releases it the PDSm way: only the N/R/V code left.
    release = [
        {
            "op": "replace",
            "path": "/securityLabel",
            "value": [{"coding": [{"system": CONFIDENTIALITY, "code": "N"}]}],
        }
    ]
    await hospital.patch(url, content=json.dumps(release), headers=JSON_PATCH)
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    assert await _sees(holder, doc)


async def test_d3_a_professional_cannot_mask_by_spelling_masque_ps_in_another_system(
    as_actor: Client, world: World
) -> None:
    """D3: MASQUE_PS under another system passes `_allowed_change` (flags by OID) yet hides the document from
    professionals in SQL: masking is the holder's decision alone (R1111-49)."""
    doc = await _deposit(as_actor, world.mother_patient, HOSPITAL, "11")
    pharmacist = await as_actor(f"practitioner:{PHARMACIST}", "user/*.rs")
    assert await _sees(pharmacist, doc)
    hospital = await as_actor(f"practitioner:{HOSPITAL}", "user/*.cruds")
    await hospital.patch(
        f"/fhir/DocumentReference/{doc['id']}",
        content=json.dumps([_foreign("MASQUE_PS"), _archive()]),
        headers=JSON_PATCH,
    )
    assert await _sees(pharmacist, doc)


# --- D4, D5 --------------------------------------------------------------------------------------------


async def test_d4_a_professional_cannot_sign_as_another_through_a_contained_practitioner_role(
    as_actor: Client, world: World
) -> None:
    """D4: `rules._check_contained_authors` skips a contained PractitionerRole without a contained practitioner,
    while PDSm accepts the IdNat_PS on the role itself: the pharmacist deposits as the médecin traitant."""
    pharmacist = await as_actor(f"practitioner:{PHARMACIST}", "user/*.cruds")
    forged = pdsm_document(f"Patient/{world.mother_patient}", category="43", rpps=PHARMACIST)
    role = next(c for c in forged["contained"] if c["resourceType"] == "PractitionerRole")
    role.pop("practitioner")
    role["identifier"] = [{"system": IDNPS, "value": "8" + MT}]
    response = await pharmacist.post("/fhir/DocumentReference", json=forged, headers=FHIR_JSON)
    assert response.status_code in (403, 422), response.text


async def test_d5_a_holder_cannot_deposit_a_document_signed_by_her_doctor(
    as_actor: Client, world: World
) -> None:
    """D5: a holder's plain FHIR deposit is not PDSm-checked and `rules._check_contained_authors` runs for professionals
    only: she deposits a prescription whose contained author is her médecin traitant."""
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    subject = f"Patient/{world.mother_patient}"
    content_url = "urn:uuid:6a0e0d4e-0000-4000-8000-0000000000c1"
    forged = {
        "resourceType": "DocumentReference",
        "status": "current",
        "contained": [
            {
                "resourceType": "Practitioner",
                "id": "dr",
                "identifier": [
                    {"system": IDNPS, "value": "8" + MT},
                    {"system": "https://rpps.esante.gouv.fr", "value": MT},
                ],
                "name": [{"family": "Lefèvre", "given": ["Claire"], "prefix": ["Dr"]}],
            }
        ],
        "subject": {"reference": subject},
        "category": [{"coding": [{"system": A03, "code": "42"}]}],
        "author": [{"reference": "#dr"}],
        "content": [{"attachment": {"contentType": "text/plain", "url": content_url}}],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            _text_binary("Morphine 60 mg, 6 fois par jour.", subject, content_url),
            {"resource": forged, "request": {"method": "POST", "url": "DocumentReference"}},
        ],
    }
    response = await holder.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert response.status_code in (403, 422), response.text


# --- D6 ------------------------------------------------------------------------------------------------


def _dangerous_pdf() -> str:
    def open_action(pdf: pikepdf.Pdf) -> None:
        pdf.Root.OpenAction = javascript_action(pdf)

    return base64.encodebytes(altered_pdf(open_action)).decode()


def _cda_transaction(document: bytes) -> dict[str, Any]:
    nir = new_nir()
    subject = {"reference": f"Patient?identifier={INS}|{nir}"}
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:5d0c6c55-0000-4000-8000-0000000000a1",
                "resource": patient(nir),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "subject": subject,
                    "content": [
                        {
                            "attachment": {
                                "contentType": "text/xml",
                                "url": "urn:uuid:5d0c6c55-0000-4000-8000-0000000000a3",
                            }
                        }
                    ],
                },
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": "urn:uuid:5d0c6c55-0000-4000-8000-0000000000a3",
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "text/xml",
                    "securityContext": subject,
                    "data": base64.b64encode(document).decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }


async def test_d6_a_cda_cannot_smuggle_a_pdf_with_javascript(fhir: httpx.AsyncClient) -> None:
    """D6: `checks._check_cda` checks the first component's nonXMLBody only: a second component, or an
    observationMedia of a structured body, carries a PDF with an /OpenAction script into the record."""
    evil = _dangerous_pdf()
    second_component = cda(
        STRUCTURED_BODY
        + "</component><component>"
        + f'<nonXMLBody><text mediaType="application/pdf" representation="B64">{evil}</text></nonXMLBody>'
    )
    observation_media = cda(f"""
    <structuredBody>
      <component><section>
        <title>Pièce jointe</title>
        <text><renderMultiMedia referencedObject="pj"/></text>
        <entry><observationMedia ID="pj" classCode="OBS" moodCode="EVN">
          <value mediaType="application/pdf" representation="B64">{evil}</value>
        </observationMedia></entry>
      </section></component>
    </structuredBody>""")
    for document in (second_component, observation_media):
        response = await fhir.post("/", json=_cda_transaction(document), headers=FHIR_JSON)
        assert response.status_code == 422, response.text[:300]


# --- D7, D8, D9 ----------------------------------------------------------------------------------------


async def test_d7_a_put_cannot_give_a_document_another_documents_unique_id(
    as_actor: Client, world: World, fhir: httpx.AsyncClient
) -> None:
    """D7: `_check_unique_document` runs on create only: the hospital PUTs its document with the uniqueId of the
    médecin traitant's, and the PDSm conditional PATCH of hers by identifier then answers 412."""
    theirs = await _deposit(as_actor, world.mother_patient, MT, "10")
    mine = await _deposit(as_actor, world.mother_patient, HOSPITAL, "10")
    hospital = await as_actor(f"practitioner:{HOSPITAL}", "user/*.cruds")
    put = await hospital.put(
        f"/fhir/DocumentReference/{mine['id']}",
        json=dict(mine, masterIdentifier=theirs["masterIdentifier"]),
        headers=FHIR_JSON,
    )
    assert put.status_code in (400, 403, 405, 409, 422), put.text[:300]
    master = theirs["masterIdentifier"]
    archive = json.dumps([_archive()])
    patched = await fhir.patch(
        f"/DocumentReference?identifier={master['system']}|{master['value']}",
        content=archive,
        headers=JSON_PATCH,
    )
    assert patched.status_code == 200 and patched.json()["id"] == theirs["id"], patched.text[:300]


async def test_d8_a_deposited_documents_content_is_not_rewritten_behind_its_metadata(
    as_actor: Client, world: World, fhir: httpx.AsyncClient
) -> None:
    """D8: the author PUTs new bytes into the Binary of a deposited document; the DocumentReference keeps the
    old size and SHA-1 (PDSm content is immutable: a change is a replacement with a new uniqueId)."""
    doc = await _deposit(as_actor, world.mother_patient, HOSPITAL, "10")
    binary = _binary_of(doc)
    hospital = await as_actor(f"practitioner:{HOSPITAL}", "user/*.cruds")
    rewritten = {
        "resourceType": "Binary",
        "id": binary,
        "contentType": "text/plain",
        "securityContext": {"reference": f"Patient/{world.mother_patient}"},
        "data": base64.b64encode("Compte rendu : résultat pathologique.".encode()).decode(),
    }
    await hospital.put(f"/fhir/Binary/{binary}", json=rewritten, headers=FHIR_JSON)
    served = await fhir.get(f"/Binary/{binary}", headers=DOWNLOAD)
    now = (await fhir.get(f"/DocumentReference/{doc['id']}")).json()
    declared = now["content"][0]["attachment"]
    assert (
        declared["hash"]
        == base64.b64encode(hashlib.sha1(served.content, usedforsecurity=False).digest()).decode()
    )
    assert declared["size"] == len(served.content)


async def test_d9_a_holder_cannot_write_meta_into_a_professionals_document(
    as_actor: Client, world: World, fhir: httpx.AsyncClient
) -> None:
    """D9: `documents._changed_elements` ignores `meta`, so a holder's archive patch also writes meta.security,
    meta.tag and meta.profile into a professional's document (SECURITY V5 5.1.2: clients never set meta)."""
    doc = await _deposit(as_actor, world.mother_patient, HOSPITAL, "10")
    holder = await as_actor(f"holder:{MOTHER}", "patient/*.*")
    planted = [
        {"op": "add", "path": "/meta/security", "value": [{"system": CONFIDENTIALITY, "code": "V"}]},
        {"op": "add", "path": "/meta/tag", "value": [{"system": "urn:x-titulaire", "code": "faux"}]},
        {"op": "replace", "path": "/meta/profile", "value": ["http://example.org/faux"]},
        _archive(),
    ]
    await holder.patch(
        f"/fhir/DocumentReference/{doc['id']}", content=json.dumps(planted), headers=JSON_PATCH
    )
    meta = (await fhir.get(f"/DocumentReference/{doc['id']}")).json()["meta"]
    assert "security" not in meta and "tag" not in meta
    assert meta.get("profile") == doc["meta"].get("profile")


# --- D10, D11 ------------------------------------------------------------------------------------------


async def test_d10_a_refused_submission_leaves_nothing_in_the_store(
    fhir: httpx.AsyncClient, runtime: Runtime
) -> None:
    """D10: the declared size and hash are compared after the Binary is encrypted and put: every refused
    submission leaves up to 40 MB of ciphertext and an upload intent for the orphan grace period (an hour)."""
    from tests.documents.test_content_path import _transaction

    async def pending(conn: Any) -> int:
        return int(await conn.fetchval("SELECT count(*) FROM blob_upload"))

    before = {info.key async for info in runtime.blob_store.list("spaces/")}
    intents = await runtime.db.read("t_pending_uploads", pending)
    pdf = report_pdf(pages=2)
    refused = await fhir.post(
        "/", json=_transaction(new_nir(), pdf, "application/pdf", size=len(pdf) + 1), headers=FHIR_JSON
    )
    assert refused.status_code == 422
    assert {info.key async for info in runtime.blob_store.list("spaces/")} == before
    assert await runtime.db.read("t_pending_uploads", pending) <= intents


async def test_d11_a_resent_submission_from_a_feed_without_read_scopes_is_not_a_server_error(
    fhir: httpx.AsyncClient, token_for: Any, http: httpx.AsyncClient
) -> None:
    """D11: `bundles._replay` reads the first submission's documents with a decision the feed was never given:
    storage's guard raises PermissionError, answered 503 (retry!) instead of an answer without those bodies."""
    nir, _ = await new_person(fhir)
    token = await token_for("system/Patient.rs system/List.crs system/DocumentReference.c system/Binary.c")
    feed = httpx.AsyncClient(
        transport=http._transport,
        base_url=f"{BASE}/fhir",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"},
    )
    bundle = iti65(nir)
    first = await feed.post("/", json=bundle, headers=FHIR_JSON)
    assert first.status_code == 200, first.text[:300]
    again = await _send(feed, "POST", "/", json=bundle, headers=FHIR_JSON)
    assert again.status_code < 500, again.text[:300]
    returned = {e.get("resource", {}).get("resourceType") for e in again.json().get("entry", [])}
    assert not returned & {"DocumentReference", "Binary"}  # nothing it may not read


# --- D12, D13, D14: client input answered 500 ---------------------------------------------------------


async def test_d12_range_headers_with_odd_digits_are_not_server_errors(
    as_actor: Client, world: World, fhir: httpx.AsyncClient
) -> None:
    """D12: `documents.parse_range` trusts str.isdigit(): '²' (a Latin-1 header byte) and a 5,000-digit number
    pass it and int() raises, a 500 on ITI-68."""
    doc = await _deposit(as_actor, world.mother_patient, HOSPITAL, "10")
    url = f"/Binary/{_binary_of(doc)}"
    for value in (
        b"bytes=\xb2-",
        b"bytes=-\xb9",
        b"bytes=0-\xb3",
        b"bytes=" + b"9" * 5000 + b"-",
        b"bytes=-" + b"9" * 5000,
    ):
        response = await _send(fhir, "GET", url, headers={"Accept": "*/*", "Range": value})
        assert response.status_code in (200, 206, 416), (
            value[:20],
            response.status_code,
            response.text[:200],
        )


async def test_d13_fhirpath_patches_of_odd_shapes_are_client_errors(
    as_actor: Client, world: World, fhir: httpx.AsyncClient
) -> None:
    """D13: `documents.apply_fhirpath_patch` iterates `parameter` and `part` whatever their JSON type: a number
    there is a TypeError, a 500."""
    doc = await _deposit(as_actor, world.mother_patient, HOSPITAL, "10")
    for body in (
        {"resourceType": "Parameters", "parameter": 5},
        {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": 5}]},
        {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": True}]},
    ):
        response = await _send(fhir, "PATCH", f"/DocumentReference/{doc['id']}", json=body, headers=FHIR_JSON)
        assert 400 <= response.status_code < 500, (body, response.text[:200])


async def test_d14_unknown_visibility_or_confidentiality_codes_are_client_errors(
    as_actor: Client, world: World
) -> None:
    """D14: a professional's (or a feed's) patch with a TRE_A07 code outside JDV_J08, or an N/R/V code that is not
    one, reaches `pdsm.with_flags`, whose ValueError is a 500."""
    hospital = await as_actor(f"practitioner:{HOSPITAL}", "user/*.cruds")
    unknown_flag = [
        {"op": "add", "path": "/securityLabel/-", "value": {"coding": [{"system": A07, "code": "FOO"}]}}
    ]
    unknown_level = [
        {
            "op": "replace",
            "path": "/securityLabel/0",
            "value": {"coding": [{"system": CONFIDENTIALITY, "code": "Z"}]},
        }
    ]
    for patch in (unknown_flag, unknown_level):
        doc = await _deposit(as_actor, world.mother_patient, HOSPITAL, "10")
        response = await _send(
            hospital,
            "PATCH",
            f"/fhir/DocumentReference/{doc['id']}",
            content=json.dumps(patch),
            headers=JSON_PATCH,
        )
        assert 400 <= response.status_code < 500, (patch, response.text[:200])
