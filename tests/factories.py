"""Builders for test data: valid French identifiers and small resources."""

from __future__ import annotations

import secrets
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
