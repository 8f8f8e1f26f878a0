"""The demo's world of access (issue "People, the holder's rules and the trace"): Marie-Ange Santoni and her
son Léo, her médecin traitant, a pharmacist she consented to, the care team of the Hôpital Édouard Herriot,
an emergency doctor with no basis, and a professional she blocked. Each sees exactly what the rules allow:
README's "Demo actors" table lists them with their tokens' commands.

Loaded after demo/world.py's world, idempotently: resources by conditional create, rights only when
absent (so a second load adds nothing to the trace)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from espace_sante.access.actors import DEMO
from espace_sante.access.scopes import Scopes
from espace_sante.context import Context
from espace_sante.demo.entries import conditional_entry
from espace_sante.fhir.identifiers import make_nir
from espace_sante.people import accounts
from espace_sante.people import actors as people
from espace_sante.record import bundles
from espace_sante.rights import changes as rights
from espace_sante.runtime import Runtime
from espace_sante.storage import access as access_store
from espace_sante.storage import people as people_store
from espace_sante.storage.db import Conn

RPPS = "https://rpps.esante.gouv.fr"
FINESS = "https://finess.esante.gouv.fr"
DEMO_IDS = "https://espace-sante.example/demo"
G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
R38 = "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
A03 = "urn:oid:1.2.250.1.213.1.1.4.1"
A07 = "urn:oid:1.2.250.1.213.1.1.4.13"

HOSPITAL_FINESS = "690781810"
MOTHER_NIR13 = "284052A321025"  # Marie-Ange Santoni (demo/world.py PATIENTS)
CHILD_NIR13 = "1120575056123"  # Léo Petit, born 2012-05-21


@dataclass(frozen=True)
class DemoProfessional:
    rpps: str
    family: str
    given: str
    prefix: str
    profession: str
    specialty: str
    organisation: str | None
    role: str
    #: Where they practise (the directory's address: a holder finds them by town).
    city: str = "Lyon"


PROFESSIONALS = (
    DemoProfessional("10003456780", "Lefèvre", "Claire", "Dr", "10", "SM26", None, "médecin traitant"),
    DemoProfessional(
        "10001234560",
        "Moreau",
        "Antoine",
        "Dr",
        "10",
        "SM26",
        HOSPITAL_FINESS,
        "équipe de soins de l'hôpital",
    ),
    DemoProfessional(
        "10007654320", "Garnier", "Pierre", "", "21", "", None, "pharmacien (consentement)", "Villeurbanne"
    ),
    DemoProfessional(
        "10008887770", "Bernard", "Sophie", "Dr", "10", "SM59", None, "médecin urgentiste (sans base)"
    ),
    DemoProfessional("10009991110", "Roux", "Marc", "Dr", "10", "SM26", None, "professionnel bloqué"),
)
MEDECIN_TRAITANT, HOSPITAL_DOCTOR, PHARMACIST, EMERGENCY_DOCTOR, BLOCKED = PROFESSIONALS


def directory() -> dict[str, Any]:
    """Practitioners with their roles (profession, specialty, organisation): the policy reads the profession
    from PractitionerRole.code (TRE_G15)."""
    entries: list[dict[str, Any]] = [
        conditional_entry(
            "urn:uuid:0b6f1c1e-0000-4000-9000-000000000001",
            {
                "resourceType": "Organization",
                "identifier": [{"system": FINESS, "value": HOSPITAL_FINESS}],
                "name": "Hôpital Édouard Herriot",
                "active": True,
            },
            FINESS,
            HOSPITAL_FINESS,
        )
    ]
    for i, p in enumerate(PROFESSIONALS):
        practitioner = f"urn:uuid:0b6f1c1e-0000-4000-9000-0000000001{i:02d}"
        name: dict[str, Any] = {"family": p.family, "given": [p.given]}
        if p.prefix:
            name["prefix"] = [p.prefix]
        entries.append(
            conditional_entry(
                practitioner,
                {
                    "resourceType": "Practitioner",
                    "identifier": [{"system": RPPS, "value": p.rpps}],
                    "name": [name],
                    "address": [{"use": "work", "city": p.city, "country": "FR"}],
                    "active": True,
                },
                RPPS,
                p.rpps,
            )
        )
        role: dict[str, Any] = {
            "resourceType": "PractitionerRole",
            "identifier": [{"system": DEMO_IDS, "value": f"role-{p.rpps}"}],
            "active": True,
            "practitioner": {"reference": practitioner},
            "code": [{"coding": [{"system": G15, "code": p.profession}]}],
        }
        if p.specialty:
            role["specialty"] = [{"coding": [{"system": R38, "code": p.specialty}]}]
        if p.organisation:
            role["organization"] = {"reference": "urn:uuid:0b6f1c1e-0000-4000-9000-000000000001"}
        entries.append(
            conditional_entry(
                f"urn:uuid:0b6f1c1e-0000-4000-9000-0000000002{i:02d}", role, DEMO_IDS, f"role-{p.rpps}"
            )
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _document(
    n: int,
    nir: str,
    key: str,
    *,
    title: str,
    category: tuple[str, str],
    author: str,
    labels: tuple[str, ...],
    text: str,
) -> list[dict[str, Any]]:
    """A DocumentReference with its Binary content, its class (TRE_A03) and visibility codes (TRE_A07)."""
    binary = f"urn:uuid:0b6f1c1e-0000-4000-9100-{n:012d}"
    ident = f"{nir}-{key}"
    doc: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:1.2.250.1.999.77.{n}"},
        "identifier": [{"system": DEMO_IDS, "value": ident}],
        "status": "current",
        "category": [{"coding": [{"system": A03, "code": category[0], "display": category[1]}]}],
        "subject": {"reference": f"Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|{nir}"},
        "date": "2026-11-10T09:00:00+01:00",
        "author": [{"reference": f"Practitioner?identifier={RPPS}|{author}"}],
        "description": title,
        "content": [
            {"attachment": {"contentType": "text/plain", "language": "fr-FR", "url": binary, "title": title}}
        ],
    }
    if labels:
        doc["securityLabel"] = [{"coding": [{"system": A07, "code": code}]} for code in labels]
    content = {
        "fullUrl": binary,
        "resource": {
            "resourceType": "Binary",
            "contentType": "text/plain",
            "securityContext": {"reference": f"Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|{nir}"},
            "data": base64.b64encode(text.encode()).decode(),
        },
        "request": {"method": "POST", "url": "Binary"},
    }
    return [content, conditional_entry(f"urn:uuid:0b6f1c1e-0000-4000-9200-{n:012d}", doc, DEMO_IDS, ident)]


def documents() -> list[tuple[str, dict[str, Any]]]:
    """(identifier of the document, a transaction with it and its content), one per document."""
    mother, child = make_nir(MOTHER_NIR13), make_nir(CHILD_NIR13)
    specs = [
        (mother, "ordonnance", "Ordonnance : amoxicilline 1 g", ("42", "Prescription"), MEDECIN_TRAITANT.rpps, (), "Amoxicilline 1 g, 3 fois par jour, 7 jours."),
        (mother, "cr-hospit", "Compte rendu d'hospitalisation", ("10", "Compte rendu"), HOSPITAL_DOCTOR.rpps, (), "Hospitalisation de jour, suites simples."),
        (mother, "cr-masque", "Compte rendu de consultation (masqué aux professionnels)", ("10", "Compte rendu"), HOSPITAL_DOCTOR.rpps, ("MASQUE_PS",), "Consultation spécialisée."),
        (mother, "resultat-annonce", "Résultat en attente de consultation d'annonce", ("10", "Compte rendu"), HOSPITAL_DOCTOR.rpps, ("INVISIBLE_PATIENT",), "Résultat à annoncer en consultation."),
        (child, "carnet", "Certificat de vaccination", ("52", "Certificat, déclaration"), MEDECIN_TRAITANT.rpps, (), "Vaccinations à jour."),
        (child, "confidentiel", "Consultation confidentielle (cachée aux représentants légaux)", ("10", "Compte rendu"), MEDECIN_TRAITANT.rpps, ("INVISIBLE_REPRESENTANTS_LEGAUX",), "Consultation confidentielle."),
    ]  # fmt: skip
    out = []
    for n, (nir, key, title, category, author, labels, text) in enumerate(specs):
        entries = _document(
            n, nir, key, title=title, category=category, author=author, labels=labels, text=text
        )
        out.append((f"{nir}-{key}", {"resourceType": "Bundle", "type": "transaction", "entry": entries}))
    return out


async def load(rt: Runtime) -> dict[str, int]:
    ctx = Context(rt, DEMO)
    created = found = 0
    for result in [await bundles.process(ctx, directory())]:
        created += sum(1 for e in result.entries if e.created)
        found += sum(1 for e in result.entries if not e.created)
    for ident, bundle in documents():
        existing = await bundles.process(
            ctx,
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [
                    {"request": {"method": "GET", "url": f"DocumentReference?identifier={DEMO_IDS}|{ident}"}}
                ],
            },
        )
        search = existing.entries[0].search
        if search is not None and search.matches:
            found += 2
            continue
        result = await bundles.process(ctx, bundle)
        created += sum(1 for e in result.entries if e.created)
    await _rights(rt)
    await _accounts(rt)
    return {"created": created, "unchanged": found}


#: Demo sign-in (development data only; README "Demo actors"): one password for everyone, and a TOTP secret
#: per person so that `python3 -c 'import pyotp; print(pyotp.TOTP("<secret>").now())'` gives the code.
DEMO_PASSWORD = "girafe violette sous la pluie 47"  # noqa: S105 (demo data, published in the README)
DEMO_ACCOUNTS = (
    # (kind, actor id, login, TOTP secret)
    ("holder", MOTHER_NIR13, "marie-ange.santoni@demo.localhost", "ONUWFJWOTSLIVW7BC3O5MKKI4N2HQKTW"),
    (
        "practitioner",
        MEDECIN_TRAITANT.rpps,
        "claire.lefevre@demo.localhost",
        "XR4JBU565AG5BGBQ4FXRZW2P4FU6572R",
    ),
    (
        "practitioner",
        HOSPITAL_DOCTOR.rpps,
        "antoine.moreau@demo.localhost",
        "NNQIRGXBY6G6I4K2IZUIG7JZDCDPPQMP",
    ),
    ("practitioner", PHARMACIST.rpps, "pierre.garnier@demo.localhost", "5IUCW6ESJ7Y3RKWUJ5LFMOP4KDFWFK2T"),
    (
        "practitioner",
        EMERGENCY_DOCTOR.rpps,
        "sophie.bernard@demo.localhost",
        "T4S24RUENMKUTBXPMZSVT5FBSVUIW7E4",
    ),
    ("practitioner", BLOCKED.rpps, "marc.roux@demo.localhost", "VRYRBOWSYBFKRM2QMKGWASW5GVQYCW6T"),
    ("operator", "agent.dupont", "agent.dupont@demo.localhost", "2OKNI7C4RMEGY7WNIZORCP7YVNOB5VVL"),
)


async def _accounts(rt: Runtime) -> None:
    """Local accounts (password + TOTP) for the demo people, with the addresses their notices go to."""
    await rt.db.interaction("demo_operator", people_store.ensure_operator, "agent.dupont", "Agent Dupont")
    for kind, ident, login, secret in DEMO_ACCOUNTS:
        actor_id = make_nir(ident) if kind == "holder" else ident
        if await accounts.find_by_actor(rt, kind, actor_id) is None:
            await accounts.ensure_local_account(
                rt,
                kind=kind,
                actor_id=actor_id,
                login=login,
                password=DEMO_PASSWORD,
                totp_secret=secret,
                email=login,
            )


async def _rights(rt: Runtime) -> None:
    """The insurer's feeds declare the médecin traitant, the hospital's care team and the representative;
    the holder herself consents for the pharmacist and blocks Dr Roux (both traced as her own decisions)."""
    mother, child = make_nir(MOTHER_NIR13), make_nir(CHILD_NIR13)
    system = Context(rt, DEMO)
    holder = Context(
        rt,
        await people.actor_for(rt, "holder", mother, scopes=Scopes.parse("patient/*.*"), acr="eidas2"),
        "demo",
    )
    state = await rt.db.read("demo_rights_state", _state, mother, child)
    if state is None:
        return
    present, present_child, blocked, represented = state
    if (MEDECIN_TRAITANT.rpps, "medecin_traitant") not in present:
        await rights.grant(system, basis="medecin_traitant", who=MEDECIN_TRAITANT.rpps, ins=mother)
    if (MEDECIN_TRAITANT.rpps, "medecin_traitant") not in present_child:
        await rights.grant(system, basis="medecin_traitant", who=MEDECIN_TRAITANT.rpps, ins=child)
    if (f"finess:{HOSPITAL_FINESS}", "care_team") not in present:
        await rights.grant(system, basis="care_team", who=f"finess:{HOSPITAL_FINESS}", ins=mother)
    if (PHARMACIST.rpps, "consent") not in present:
        await rights.grant(holder, basis="consent", who=PHARMACIST.rpps, ins=mother)
    if BLOCKED.rpps not in blocked:
        # Dr Roux once declared himself in her care team; she blocked him: the block wins over any basis.
        if (BLOCKED.rpps, "care_team") not in present:
            await rights.grant(system, basis="care_team", who=BLOCKED.rpps, ins=mother)
        await rights.set_blocked(holder, rpps=BLOCKED.rpps, blocked=True, ins=mother)
    if not represented:
        await rights.add_representative(system, representative_ins=mother, ins=child)


async def _state(
    conn: Conn, mother: str, child: str
) -> tuple[set[tuple[str, str]], set[tuple[str, str]], set[str], bool] | None:
    mine = await people_store.patient_by_ins(conn, mother)
    son = await people_store.patient_by_ins(conn, child)
    if mine is None or son is None:
        return None

    async def active(space: Any) -> set[tuple[str, str]]:
        return {
            (r["who"], r["basis"])
            for r in await access_store.bases_of(conn, space)
            if r["revoked_at"] is None
        }

    return (
        await active(mine.space_id),
        await active(son.space_id),
        set(await access_store.blocked_of(conn, mine.space_id)),
        await access_store.is_representative(conn, son.space_id, mother),
    )
