"""The benchmark's FHIR data: deterministic Patients with unique, valid INS-NIR, and the Observations and
Conditions that reference them. Pure functions, no I/O, shared by the loader and the load generator."""

from __future__ import annotations

import random
import uuid
from typing import Any

from espace_sante.fhir.identifiers import INS_NIR, make_nir

INS_TYPE = {
    "coding": [{"system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203", "code": "INS-NIR"}]
}
VITALS = [
    ("29463-7", "Poids corporel", "kg"),
    ("8302-2", "Taille", "cm"),
    ("8867-4", "Fréquence cardiaque", "/min"),
    ("8480-6", "Pression artérielle systolique", "mm[Hg]"),
]
CONDITIONS = [
    ("38341003", "Hypertension artérielle"),
    ("44054006", "Diabète de type 2"),
    ("195967001", "Asthme"),
]

#: Loaded Patients live in département 75; the ones the benchmark creates in 2A (create) and 2B (transaction),
#: so an INS created during a run never collides with a loaded one and identifier searches match exactly one.
LOADED_DEPT = "75"


def nir(index: int, dept: str = LOADED_DEPT) -> str:
    """The index-th INS-NIR of a département: unique for index < 1.2e9 (rank, commune, month, year)."""
    rank = index % 999 + 1
    commune = (index // 999) % 1000
    month = (index // 999_000) % 12 + 1
    year = (index // 11_988_000) % 100
    sex = "1" if index % 2 else "2"
    return make_nir(f"{sex}{year:02d}{month:02d}{dept}{commune:03d}{rank:03d}")


def random_nir(rng: random.Random, dept: str) -> str:
    return nir(rng.randrange(1_000_000_000), dept)


def patient(ins: str, index: int) -> dict[str, Any]:
    family = ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand")[index % 8]
    given = ("Jeanne", "Louis", "Camille", "Léo", "Manon", "Hugo", "Chloé", "Jules")[index % 8]
    return {
        "resourceType": "Patient",
        "identifier": [{"use": "official", "system": INS_NIR, "value": ins, "type": INS_TYPE}],
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": "male" if ins[0] == "1" else "female",
        "birthDate": f"19{ins[1:3]}-{ins[3:5]}-{index % 28 + 1:02d}",
        "address": [{"city": "Paris", "postalCode": "75011", "country": "FR"}],
    }


def observation(subject: str, index: int) -> dict[str, Any]:
    code, display, unit = VITALS[index % len(VITALS)]
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "subject": {"reference": subject},
        "effectiveDateTime": f"2026-{index % 12 + 1:02d}-{index % 28 + 1:02d}",
        "valueQuantity": {
            "value": 40 + index % 80,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def condition(subject: str, index: int) -> dict[str, Any]:
    code, display = CONDITIONS[index % len(CONDITIONS)]
    return {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]},
        "subject": {"reference": subject},
        "recordedDate": f"2025-{index % 12 + 1:02d}-{index % 28 + 1:02d}",
    }


def other(subject: str, index: int) -> dict[str, Any]:
    """The index-th non-Patient resource: two Observations for each Condition."""
    return condition(subject, index) if index % 3 == 2 else observation(subject, index)


def _post(full_url: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


def transaction(patients: list[tuple[int, str]], others_per_patient: list[int], start: int) -> dict[str, Any]:
    """A transaction Bundle: each (index, nir) Patient with its others, linked by urn:uuid fullUrls.
    `start` numbers the others (varies codes and dates)."""
    entries = []
    k = start
    for (index, ins), count in zip(patients, others_per_patient, strict=True):
        ref = f"urn:uuid:{uuid.uuid4()}"
        entries.append(_post(ref, patient(ins, index)))
        for _ in range(count):
            entries.append(_post(f"urn:uuid:{uuid.uuid4()}", other(ref, k)))
            k += 1
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
