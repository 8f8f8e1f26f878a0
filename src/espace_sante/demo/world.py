"""Demo data: a small, realistic French world (patients with valid INS, professionals with RPPS, a hospital
with its FINESS, measurements, a vaccination, a report). Loading is idempotent: every resource carries an
identifier and goes in through a conditional create, so a second load finds everything and changes nothing."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from espace_sante.access.actors import DEMO
from espace_sante.context import Context
from espace_sante.demo import access as demo_access
from espace_sante.demo.entries import conditional_entry
from espace_sante.fhir.identifiers import make_nir
from espace_sante.oauth import clients as oauth_clients
from espace_sante.record import bundles
from espace_sante.runtime import Runtime
from espace_sante.settings import Settings, UnsafeSettings

INS = "urn:oid:1.2.250.1.213.1.4.8"
RPPS = "https://rpps.esante.gouv.fr"
FINESS = "https://finess.esante.gouv.fr"
DEMO_IDS = "https://espace-sante.example/demo"

PATIENTS = [
    # nir13, family, given, gender, birthDate, city
    ("2550814168025", "Martin", "Jeanne", "female", "1955-08-14", "Lyon"),
    ("1531245007231", "Dubois", "Émile", "male", "1953-12-10", "Nantes"),
    ("284052A321025", "Santoni", "Marie-Ange", "female", "1984-05-02", "Ajaccio"),
    ("1120575056123", "Petit", "Léo", "male", "2012-05-21", "Paris"),
]

PRACTITIONERS = [
    # rpps (11 digits, Luhn-valid), family, given
    ("10003456780", "Lefèvre", "Claire"),
    ("10001234560", "Moreau", "Antoine"),
]


class DemoRefused(UnsafeSettings):
    """Demo data asked for outside development."""


def refuse_outside_development(settings: Settings) -> None:
    """The demo world opens local accounts with one published password and fixed TOTP secrets (README "Demo
    actors"), an operator among them: in an instance that is not a development one they would be a way in for
    anyone who read the README (ASVS 2.5.4: no default accounts). Checked before anything is written, the
    data folder's demo marker included."""
    if settings.environment != "development":
        raise DemoRefused(
            "données de démonstration refusées hors développement (ESPACE_SANTE_ENVIRONMENT="
            f"{settings.environment}) : elles ouvrent des comptes au mot de passe publié et aux secrets TOTP "
            "connus, dont un opérateur / demo data refused outside development: it opens accounts with a "
            "published password and known TOTP secrets, an operator among them"
        )


def world() -> list[dict[str, Any]]:
    """One transaction Bundle per patient, each with the shared directory entries."""
    bundles_: list[dict[str, Any]] = []
    directory = [
        conditional_entry(
            "urn:uuid:0b6f1c1e-0000-4000-8000-000000000001",
            {
                "resourceType": "Organization",
                "identifier": [{"system": FINESS, "value": "690781810"}],
                "name": "Hôpital Édouard Herriot",
                "active": True,
                "address": [{"city": "Lyon", "postalCode": "69003", "country": "FR"}],
            },
            FINESS,
            "690781810",
        ),
    ]
    for i, (rpps, family, given) in enumerate(PRACTITIONERS):
        directory.append(
            conditional_entry(
                f"urn:uuid:0b6f1c1e-0000-4000-8000-00000000010{i}",
                {
                    "resourceType": "Practitioner",
                    "identifier": [{"system": RPPS, "value": rpps}],
                    "name": [{"family": family, "given": [given], "prefix": ["Dr"]}],
                    "active": True,
                },
                RPPS,
                rpps,
            )
        )
    org_ref = {"reference": "urn:uuid:0b6f1c1e-0000-4000-8000-000000000001"}
    doctor_ref = {"reference": "urn:uuid:0b6f1c1e-0000-4000-8000-000000000100"}
    for n, (nir13, family, given, gender, birth, city) in enumerate(PATIENTS):
        nir = make_nir(nir13)
        pid = f"urn:uuid:0b6f1c1e-0000-4000-8000-0000000010{n:02d}"
        patient_ref = {"reference": pid}
        entries = list(directory)
        entries.append(
            conditional_entry(
                pid,
                {
                    "resourceType": "Patient",
                    "identifier": [
                        {
                            "use": "official",
                            "system": INS,
                            "value": nir,
                            "type": {
                                "coding": [
                                    {
                                        "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203",
                                        "code": "INS-NIR",
                                    }
                                ]
                            },
                        }
                    ],
                    "name": [{"use": "official", "family": family, "given": [given]}],
                    "gender": gender,
                    "birthDate": birth,
                    "address": [{"city": city, "country": "FR"}],
                    "generalPractitioner": [doctor_ref],
                },
                INS,
                nir,
            )
        )
        for k, (code, display, value, unit, ucum, when) in enumerate(
            [
                ("29463-7", "Poids corporel", 64.5, "kg", "kg", "2026-10-02"),
                ("8302-2", "Taille", 165, "cm", "cm", "2026-10-02"),
                ("8867-4", "Fréquence cardiaque", 72, "/min", "/min", "2026-11-03"),
            ]
        ):
            ident = f"{nir}-obs-{k}"
            entries.append(
                conditional_entry(
                    f"urn:uuid:0b6f1c1e-0000-4000-8001-{n:04d}0000{k:04d}",
                    {
                        "resourceType": "Observation",
                        "identifier": [{"system": DEMO_IDS, "value": ident}],
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
                        "code": {
                            "coding": [{"system": "http://loinc.org", "code": code, "display": display}]
                        },
                        "subject": patient_ref,
                        "effectiveDateTime": when,
                        "valueQuantity": {
                            "value": value,
                            "unit": unit,
                            "system": "http://unitsofmeasure.org",
                            "code": ucum,
                        },
                    },
                    DEMO_IDS,
                    ident,
                )
            )
        ident = f"{nir}-allergy"
        entries.append(
            conditional_entry(
                f"urn:uuid:0b6f1c1e-0000-4000-8002-{n:012d}",
                {
                    "resourceType": "AllergyIntolerance",
                    "identifier": [{"system": DEMO_IDS, "value": ident}],
                    "clinicalStatus": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                "code": "active",
                            }
                        ]
                    },
                    "category": ["medication"],
                    "criticality": "high",
                    "code": {"text": "Pénicilline"},
                    "patient": patient_ref,
                },
                DEMO_IDS,
                ident,
            )
        )
        ident = f"{nir}-vaccin"
        entries.append(
            conditional_entry(
                f"urn:uuid:0b6f1c1e-0000-4000-8003-{n:012d}",
                {
                    "resourceType": "Immunization",
                    "identifier": [{"system": DEMO_IDS, "value": ident}],
                    "status": "completed",
                    "vaccineCode": {"text": "Grippe saisonnière 2026-2027"},
                    "patient": patient_ref,
                    "occurrenceDateTime": "2026-10-15",
                },
                DEMO_IDS,
                ident,
            )
        )
        text = f"Compte rendu de consultation de {given} {family} : examen normal.\n"
        binary = f"urn:uuid:0b6f1c1e-0000-4000-8004-{n:012d}"
        ident = f"{nir}-binary"
        entries.append(
            conditional_entry(
                binary,
                {
                    "resourceType": "Binary",
                    "contentType": "text/plain",
                    "securityContext": patient_ref,
                    "data": base64.b64encode(text.encode()).decode(),
                },
                DEMO_IDS,
                ident,
            )
            | {"request": {"method": "POST", "url": "Binary"}}
        )
        ident = f"{nir}-cr"
        entries.append(
            conditional_entry(
                f"urn:uuid:0b6f1c1e-0000-4000-8005-{n:012d}",
                {
                    "resourceType": "DocumentReference",
                    "masterIdentifier": {
                        "system": "urn:ietf:rfc:3986",
                        "value": f"urn:oid:1.2.250.1.999.{n}.1",
                    },
                    "identifier": [{"system": DEMO_IDS, "value": ident}],
                    "status": "current",
                    "type": {
                        "coding": [
                            {
                                "system": "http://loinc.org",
                                "code": "11488-4",
                                "display": "Compte rendu de consultation",
                            }
                        ]
                    },
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "urn:oid:1.2.250.1.213.1.1.4.1",
                                    "code": "10",
                                    "display": "Compte rendu",
                                }
                            ]
                        }
                    ],
                    "subject": patient_ref,
                    "date": "2026-11-03T10:00:00+01:00",
                    "author": [doctor_ref],
                    "custodian": org_ref,
                    "description": "Consultation de suivi",
                    "content": [
                        {
                            "attachment": {
                                "contentType": "text/plain",
                                "language": "fr-FR",
                                "url": binary,
                                "title": "Compte rendu",
                                "creation": "2026-11-03T10:00:00+01:00",
                            }
                        }
                    ],
                },
                DEMO_IDS,
                ident,
            )
        )
        bundles_.append({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return bundles_


async def load(rt: Runtime) -> dict[str, int]:
    """Load the demo world (idempotent) and make sure a demo client exists. Returns counts. DemoRefused
    outside development."""
    refuse_outside_development(rt.settings)
    ctx = Context(rt, DEMO)
    created = found = 0
    for bundle in world():
        # A Binary has no identifier to search by; skip it when its DocumentReference already exists.
        doc = bundle["entry"][-1]["request"]["ifNoneExist"]
        existing = await bundles.process(
            ctx,
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [{"request": {"method": "GET", "url": f"DocumentReference?{doc}"}}],
            },
        )
        search = existing.entries[0].search
        if search is not None and search.matches:
            bundle["entry"] = [
                e
                for e in bundle["entry"]
                if e["resource"]["resourceType"] not in ("Binary", "DocumentReference")
            ]
        result = await bundles.process(ctx, bundle)
        created += sum(1 for e in result.entries if e.created)
        found += sum(1 for e in result.entries if not e.created)
    more = await demo_access.load(rt)
    await ensure_demo_client(rt)
    return {"created": created + more["created"], "unchanged": found + more["unchanged"]}


def demo_client_file(rt: Runtime) -> Any:
    return rt.settings.data_dir / "demo-client.json"


async def ensure_demo_client(rt: Runtime) -> dict[str, str]:
    """A machine client for the README's examples, its credentials kept in the data folder (mode 0600)."""
    path = demo_client_file(rt)
    if path.exists():
        saved: dict[str, str] = json.loads(path.read_text())
        return saved
    client = await oauth_clients.create_client(rt, "Démo (logiciel de professionnel)", "system/*.*")
    data = {"client_id": client.client_id, "client_secret": client.client_secret}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    return data
