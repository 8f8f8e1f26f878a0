"""Builders for test data: valid French identifiers and small resources."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from pathlib import Path
from typing import Any

from espace_sante.fhir.identifiers import make_nir

BASE = "http://127.0.0.1:8000"
INS = "urn:oid:1.2.250.1.213.1.4.8"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def new_nir() -> str:
    """A fresh, valid INS-NIR (random commune and rank, correct key)."""
    sex = secrets.choice("12")
    year = f"{secrets.randbelow(100):02d}"
    month = f"{secrets.randbelow(12) + 1:02d}"
    dept = secrets.choice(["75", "69", "13", "2A", "2B", "44", "33"])
    return make_nir(f"{sex}{year}{month}{dept}{secrets.randbelow(1000):03d}{secrets.randbelow(999) + 1:03d}")


def patient(nir: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": INS, "value": nir or new_nir()}],
        "name": [{"family": "Martin", "given": ["Jeanne"]}],
        "gender": "female",
        "birthDate": "1955-08-14",
    }
    body.update(extra)
    return body


def new_rpps() -> str:
    """A fresh RPPS (11 digits, Luhn key)."""
    digits = [int(c) for c in "1" + "".join(secrets.choice("0123456789") for _ in range(9))]
    for check in range(10):
        total = 0
        for i, d in enumerate(reversed([*digits, check])):
            d = d * 2 if i % 2 else d
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return "".join(map(str, digits)) + str(check)
    raise AssertionError("unreachable")


G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"


async def new_professional(fhir: Any, profession: str = "10") -> tuple[str, str]:
    """A Practitioner with a fresh RPPS and a PractitionerRole of this TRE_G15 profession, created through the
    API by a feed (`fhir`: a system client on /fhir). Returns (RPPS, Practitioner id)."""
    rpps = new_rpps()
    created = await fhir.post(
        "/Practitioner",
        json={
            "resourceType": "Practitioner",
            "identifier": [{"system": "https://rpps.esante.gouv.fr", "value": rpps}],
            "name": [{"family": "Lefèvre", "given": ["Claire"], "prefix": ["Dr"]}],
        },
        headers=FHIR_JSON,
    )
    assert created.status_code == 201, created.text
    pid = str(created.json()["id"])
    role = await fhir.post(
        "/PractitionerRole",
        json={
            "resourceType": "PractitionerRole",
            "practitioner": {"reference": f"Practitioner/{pid}"},
            "code": [{"coding": [{"system": G15, "code": profession}]}],
        },
        headers=FHIR_JSON,
    )
    assert role.status_code == 201, role.text
    return rpps, pid


PDSM_EXAMPLES = Path(__file__).parent / "data" / "pdsm"
A03 = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
A07 = "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"
A11 = "https://mos.esante.gouv.fr/NOS/TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode"
A05 = "https://mos.esante.gouv.fr/NOS/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
A00 = "https://mos.esante.gouv.fr/NOS/TRE_A00-ProducteurDocNonPS/FHIR/TRE-A00-ProducteurDocNonPS"


def pdsm_document(
    subject: str,
    *,
    category: str = "10",
    text: str = "Compte rendu : examen normal.",
    labels: tuple[str, ...] = (),
    rpps: str | None = None,
    holder: str | None = None,
) -> dict[str, Any]:
    """An ITI-105 Simplified Publish DocumentReference as French software sends it (tests/data/pdsm), with
    this subject (`Patient/<id>` or the conditional INS reference), TRE_A03 class, plain-text content, TRE_A07
    visibility codes, a fresh uniqueId, and the contained author's RPPS when given."""
    body: dict[str, Any] = json.loads((PDSM_EXAMPLES / "iti105-fr.json").read_text())
    content = text.encode()
    body["subject"] = {"reference": subject}
    body["masterIdentifier"]["value"] = f"urn:uuid:{uuid.uuid4()}"
    body["category"] = [{"coding": [{"system": A03, "code": category}]}]
    body["securityLabel"] += [{"coding": [{"system": A07, "code": code}]} for code in labels]
    attachment = body["content"][0]["attachment"]
    attachment.update(
        contentType="text/plain",
        data=base64.b64encode(content).decode(),
        size=len(content),
        hash=base64.b64encode(hashlib.sha1(content, usedforsecurity=False).digest()).decode(),
    )
    body["content"][0]["format"] = {"system": A11, "code": "urn:ihe:iti:xds-sd:text:2008"}
    if holder is not None:  # the holder's own document (INS `holder`): PDSm's patient-as-author form
        patient_author = {
            "resourceType": "Patient",
            "id": "titulaire",
            "identifier": [{"system": INS, "value": holder}],
        }
        host = {"resourceType": "Organization", "id": "hebergeur", "name": "Mon espace santé"}
        body["contained"] = [patient_author, host]
        body["author"] = [{"reference": "#titulaire"}]
        body.pop("authenticator", None)
        body["custodian"] = {"reference": "#hebergeur"}
        body["category"] = [{"coding": [{"system": A03, "code": "90"}]}]
        body["type"] = {"coding": [{"system": A05, "code": "DOCPAT03"}]}
        body["context"] = {
            "period": {"start": "2026-06-23T09:40:00+02:00"},
            "facilityType": {"coding": [{"system": A00, "code": "EXP_PATIENT"}]},
            "practiceSetting": {"coding": [{"system": A00, "code": "EXP_PATIENT"}]},
            "sourcePatientInfo": {"reference": "#titulaire"},
        }
    if rpps is not None:
        author = next(c for c in body["contained"] if c["resourceType"] == "Practitioner")
        author["identifier"] = [
            {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "8" + rpps},
            {"system": "https://rpps.esante.gouv.fr", "value": rpps},
        ]
    return body
