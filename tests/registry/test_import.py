"""`registry import` in the session's database (spaces/registry/importer.py): a file makes spaces whose identity waits
sealed until they open, then they are found by INS through the API and their trace verifies; a second import
changes nothing; a changed row reseals a waiting identity or makes one new Patient version, traced; a minor's
representatives can read the child's record; bad rows go to the rejects file."""

from __future__ import annotations

import asyncio
import csv
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from espace_sante import clock
from espace_sante.access.actors import REGISTRY
from espace_sante.access.policy import decide
from espace_sante.audit import chains as audit
from espace_sante.context import Context
from espace_sante.errors import NotFound
from espace_sante.oauth import devtokens
from espace_sante.runtime import Runtime
from espace_sante.spaces import identity, lifecycle
from espace_sante.spaces.registry.importer import Counts, import_file
from espace_sante.spaces.registry.rejects import RejectsFile
from espace_sante.spaces.registry.rows import COLUMNS
from espace_sante.storage.db import Conn
from tests.factories import BASE, FHIR_JSON, INS, new_nir, patient


def person(**values: str) -> dict[str, str]:
    return (
        {c: "" for c in COLUMNS}
        | {
            "nir": new_nir(),
            "last_name": "Lefèvre",
            "first_names": "Anne Marie",
            "birth_date": "1971-03-02",
            "sex": "F",
            "address_line": "12 rue Pasteur",
            "postal_code": "69003",
            "city": "Lyon",
            "email": "anne.lefevre@exemple.fr",
        }
        | values
    )


def write(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


async def run(runtime: Runtime, path: Path, rejects: Path | None = None, **kw: Any) -> dict[str, int]:
    with RejectsFile(rejects) as out:
        counts: Counts = await import_file(runtime, path, rejects=out, **kw)
    return counts.as_json()


async def as_holder(runtime: Runtime, http: httpx.AsyncClient, nir: str) -> httpx.AsyncClient:
    """The person herself: a space made by the registry is `registered` until its notice's window ends, and
    only its holder (and representatives) reach it before then; feeds and professionals do not."""
    issued = await devtokens.issue(runtime, f"holder:{nir}", "patient/*.*")
    return httpx.AsyncClient(
        transport=http._transport,
        base_url=f"{BASE}/fhir",
        headers={"Authorization": f"Bearer {issued.access_token}", "Accept": "application/fhir+json"},
    )


async def by_ins(runtime: Runtime, http: httpx.AsyncClient, nir: str) -> list[dict[str, Any]]:
    reader = await as_holder(runtime, http, nir)
    found = await reader.get("/Patient", params={"identifier": f"{INS}|{nir}"})
    assert found.status_code == 200, found.text
    return [e["resource"] for e in found.json().get("entry", [])]


async def space_of(runtime: Runtime, nir: str) -> uuid.UUID:
    space = await lifecycle.space_of_ins(runtime, nir)
    assert space is not None
    return space


async def waiting(runtime: Runtime, nir: str) -> dict[str, Any] | None:
    """The identity sealed for the person's space while it has no Patient (None once it has one)."""
    space = await space_of(runtime, nir)

    async def q(conn: Conn) -> dict[str, Any] | None:
        if not await conn.fetchval("SELECT pending IS NOT NULL FROM registry_person WHERE nir = $1", nir):
            return None
        found = await identity.body(conn, runtime, space, decision=decide(REGISTRY, "read", "Patient"))
        return None if found is None else found[1]

    return await runtime.db.read("test_waiting", q)


async def activate(runtime: Runtime, nir: str) -> None:
    """The person activates their space early (the lifecycle's transition, as the activation service makes it)."""
    await lifecycle.activate(Context.system(runtime), await space_of(runtime, nir))


async def test_a_file_makes_spaces_whose_identity_waits_until_they_open(
    runtime: Runtime, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    people = [person(), person(email="", last_name="Ngô", first_names="Văn"), person(death_date="2024-01-05")]
    registry = write(tmp_path / "registre.csv", people)
    assert await run(runtime, registry, batch_size=2) == {
        "read": 3, "created": 3, "updated": 0, "unchanged": 0, "rejected": 0
    }  # fmt: skip
    for row in people:
        # A space, registered, whose identity waits sealed: no Patient, nothing to find by INS yet.
        assert await lifecycle.state(runtime, await space_of(runtime, row["nir"])) == "registered"
        assert await by_ins(runtime, http, row["nir"]) == []
        sealed = await waiting(runtime, row["nir"])
        assert sealed is not None and sealed["name"][0]["family"] == row["last_name"]
        assert sealed["birthDate"] == row["birth_date"] and "id" not in sealed
        assert not (await audit.verify(runtime, await space_of(runtime, row["nir"]))).broken
    assert (await waiting(runtime, people[2]["nir"]) or {})["deceasedDateTime"] == "2024-01-05"

    # Activation writes the Patient from it: version 1, found by INS, traced as the registry's.
    for row in people[:2]:
        await activate(runtime, row["nir"])
        assert await waiting(runtime, row["nir"]) is None
        [found] = await by_ins(runtime, http, row["nir"])
        assert found["name"][0]["family"] == row["last_name"] and found["birthDate"] == row["birth_date"]
        assert found["meta"]["versionId"] == "1"
        space = uuid.UUID(found["id"][:32])
        assert space == await space_of(runtime, row["nir"])
        assert not (await audit.verify(runtime, space)).broken
    first, second = [(await by_ins(runtime, http, r["nir"]))[0] for r in people[:2]]
    assert first["telecom"] == [{"system": "email", "value": "anne.lefevre@exemple.fr"}]
    assert first["address"][0]["postalCode"] == "69003" and first["gender"] == "female"
    assert first["name"][0]["given"] == ["Anne", "Marie"]
    assert "telecom" not in second

    async def chain(conn: Conn) -> list[tuple[str, str]]:
        rows = await conn.fetch(
            "SELECT action, actor_kind FROM audit_event WHERE space_id = $1 AND action <> 'resource:search' "
            "ORDER BY seq",
            await space_of(runtime, people[0]["nir"]),
        )
        return [(r["action"], r["actor_kind"]) for r in rows]

    assert await runtime.db.read("test_chain", chain) == [
        ("space:register", "system"), ("space:activate", "system"), ("resource:create", "system"),
    ]  # fmt: skip
    trace = await (await as_holder(runtime, http, people[0]["nir"])).get(
        "/AuditEvent", params={"patient": first["id"]}
    )
    assert trace.json()["total"] >= 3


async def test_the_same_file_twice_changes_nothing(
    runtime: Runtime, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    people = [person() for _ in range(5)]
    registry = write(tmp_path / "registre.csv", people)
    assert (await run(runtime, registry))["created"] == 5

    async def sealed(conn: Conn) -> list[bytes]:
        rows = await conn.fetch(
            "SELECT pending FROM registry_person WHERE nir = ANY($1::text[]) ORDER BY nir",
            [p["nir"] for p in people],
        )
        return [bytes(r["pending"]) for r in rows]

    before = await runtime.db.read("test_sealed", sealed)
    again = await run(runtime, registry)
    assert again == {"read": 5, "created": 0, "updated": 0, "unchanged": 5, "rejected": 0}
    assert await runtime.db.read("test_sealed", sealed) == before  # not even sealed again
    for row in people:
        await activate(runtime, row["nir"])
        [found] = await by_ins(runtime, http, row["nir"])
        assert found["meta"]["versionId"] == "1"


async def test_a_changed_row_makes_one_new_version_and_an_absent_person_stays(
    runtime: Runtime, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    moving, staying, leaving, early = person(), person(), person(), person()
    await run(runtime, write(tmp_path / "janvier.csv", [moving, staying, leaving, early]))
    await activate(runtime, moving["nir"])  # an active space: the change is a new Patient version
    moved = moving | {"address_line": "3 quai Saint-Michel", "postal_code": "29200", "city": "Brest"}
    # A space not yet open: its waiting identity is sealed again, and the Patient it becomes is the new one.
    corrected = early | {"email": "", "death_date": "2026-01-02"}
    later = write(tmp_path / "fevrier.csv", [moved, staying, corrected])
    assert await run(runtime, later) == {"read": 3, "created": 0, "updated": 2, "unchanged": 1, "rejected": 0}
    now = await waiting(runtime, early["nir"])
    assert now is not None and "telecom" not in now and now["deceasedDateTime"] == "2026-01-02"
    early_space = await space_of(runtime, early["nir"])
    assert not (await audit.verify(runtime, early_space)).broken
    [found] = await by_ins(runtime, http, moving["nir"])
    assert found["meta"]["versionId"] == "2" and found["address"][0]["city"] == "Brest"
    moving_holder = await as_holder(runtime, http, moving["nir"])
    history = await moving_holder.get(f"/Patient/{found['id']}/_history")
    assert [e["resource"]["meta"]["versionId"] for e in history.json()["entry"]] == ["2", "1"]
    space = uuid.UUID(found["id"][:32])
    assert not (await audit.verify(runtime, space)).broken
    trace = await moving_holder.get("/AuditEvent", params={"patient": found["id"]})
    assert trace.json()["total"] >= 2
    assert await waiting(runtime, leaving["nir"]) is not None  # not in February's file: not deleted
    assert await run(runtime, later) == {"read": 3, "created": 0, "updated": 0, "unchanged": 3, "rejected": 0}


async def test_a_patient_made_through_the_api_is_adopted_not_doubled(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient, tmp_path: Path
) -> None:
    nir = new_nir()
    made = await fhir.post(
        "/Patient",
        json=patient(nir, telecom=[{"system": "phone", "value": "+33600000000"}]),
        headers=FHIR_JSON,
    )
    assert made.status_code == 201, made.text
    row = person(nir=nir)
    assert (await run(runtime, write(tmp_path / "r.csv", [row])))["updated"] == 1
    [found] = await by_ins(runtime, http, nir)
    assert found["id"] == made.json()["id"] and found["meta"]["versionId"] == "2"
    assert {"system": "phone", "value": "+33600000000"} in found["telecom"]  # what the registry does not own
    assert found["name"][0]["family"] == "Lefèvre"


async def test_a_minors_representatives_read_the_childs_record(
    runtime: Runtime, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    mother, father = person(), person(first_names="Paul", sex="M")
    born = clock.today() - timedelta(days=5 * 365)
    child = person(
        birth_date=born.isoformat(),
        first_names="Léo",
        representative_1_nir=mother["nir"],
        representative_2_nir=father["nir"],
    )
    stranger = person()
    # The father is not in this file: his link is recorded by INS and waits for him.
    assert (await run(runtime, write(tmp_path / "r.csv", [child, mother, stranger])))["created"] == 3
    await activate(runtime, child["nir"])  # the child's code, used by a parent
    [record] = await by_ins(runtime, http, child["nir"])

    async def reads(who: str) -> int:
        issued = await devtokens.issue(runtime, f"representative:{who}", "patient/*.*")
        read = await http.get(
            f"/fhir/Patient/{record['id']}",
            headers={"Authorization": f"Bearer {issued.access_token}", "Accept": "application/fhir+json"},
        )
        return read.status_code

    assert await reads(mother["nir"]) == 200
    with pytest.raises(NotFound):  # no space yet, so no sign-in as anyone
        await reads(father["nir"])
    assert (await run(runtime, write(tmp_path / "r2.csv", [father])))["created"] == 1
    assert await reads(father["nir"]) == 200
    assert await reads(stranger["nir"]) == 404

    async def until(conn: Conn) -> list[date]:
        rows = await conn.fetch(
            "SELECT until FROM space_representative WHERE space_id = $1", uuid.UUID(record["id"][:32])
        )
        return [r["until"] for r in rows]

    ends = await runtime.db.read("test_until", until)
    assert ends == [born.replace(year=born.year + 18)] * 2
    space = uuid.UUID(record["id"][:32])
    assert not (await audit.verify(runtime, space)).broken  # registration, two rights, activation, Patient
    assert (await run(runtime, write(tmp_path / "r.csv", [child, mother, stranger])))["unchanged"] == 3


async def test_bad_rows_go_to_the_rejects_file_and_good_ones_through(
    runtime: Runtime, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    good = person()
    bad_key = person()
    bad_key["nir"] = bad_key["nir"][:13] + ("01" if bad_key["nir"][13:] != "01" else "02")
    rows = [person(sex="X"), good, bad_key, person(postal_code=""), person(email="pas une adresse")]
    rejects = tmp_path / "rejets.csv"
    counts = await run(runtime, write(tmp_path / "r.csv", rows), rejects)
    assert counts == {"read": 5, "created": 1, "updated": 0, "unchanged": 0, "rejected": 4}
    with rejects.open(encoding="utf-8") as fh:
        refused = [(r["line"], r["field"]) for r in csv.DictReader(fh)]
    assert refused == [("2", "sex"), ("4", "nir"), ("5", "postal_code"), ("6", "email")]
    assert await waiting(runtime, good["nir"]) is not None


async def test_the_same_person_twice_in_one_file_applies_in_order(
    runtime: Runtime, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    first = person()
    second = first | {"email": "nouvelle@exemple.fr"}
    counts = await run(runtime, write(tmp_path / "r.csv", [first, second]))
    assert counts == {"read": 2, "created": 1, "updated": 1, "unchanged": 0, "rejected": 0}
    assert (await waiting(runtime, first["nir"]) or {})["telecom"][0]["value"] == "nouvelle@exemple.fr"


async def test_two_importers_at_once_on_halves_of_a_file_make_one_space_per_person(
    runtime: Runtime, tmp_path: Path
) -> None:
    """The scale-out of benchmarks/README.md: the registry cut into shards imported at once. Disjoint halves
    (with a child whose parent is in the other half) and, worse, two overlapping shards: still one space per
    NIR, every person counted once as created, and the links recorded."""
    parents = [person() for _ in range(30)]
    children = [
        person(birth_date=(clock.today() - timedelta(days=3000)).isoformat(), representative_1_nir=p["nir"])
        for p in parents[:10]
    ]
    everyone = parents + children
    first, second = everyone[::2], everyone[1::2]  # a child and its parent often land in different halves
    shards = [write(tmp_path / "a.csv", first), write(tmp_path / "b.csv", second)]
    a, b = await asyncio.gather(*(run(runtime, s, batch_size=4) for s in shards))
    assert a["created"] + b["created"] == len(everyone) and a["rejected"] == b["rejected"] == 0
    overlap = [person() for _ in range(20)]
    shards = [write(tmp_path / "c.csv", overlap), write(tmp_path / "d.csv", overlap[5:] + overlap[:5])]
    c, d = await asyncio.gather(*(run(runtime, s, batch_size=3) for s in shards))
    assert c["created"] + d["created"] == len(overlap)
    assert c["unchanged"] + d["unchanged"] == len(overlap)

    async def check(conn: Conn) -> tuple[int, int, int]:
        nirs = [p["nir"] for p in everyone + overlap]
        # Two statements, not a join: on Citus the registry's links are distributed by INS, the spaces by space.
        made = await conn.fetch(
            "SELECT DISTINCT space_id FROM registry_person WHERE nir = ANY($1::text[]) AND pending IS NOT NULL",
            nirs,
        )
        spaces = await conn.fetchval(
            "SELECT count(*) FROM space WHERE space_id = ANY($1::uuid[])", [r["space_id"] for r in made]
        )
        people = await conn.fetchval("SELECT count(*) FROM registry_person WHERE nir = ANY($1::text[])", nirs)
        links = await conn.fetchval(
            "SELECT count(*) FROM space_representative WHERE representative_ins = ANY($1::text[])",
            [p["nir"] for p in parents],
        )
        return spaces, people, links

    assert await runtime.db.interaction("test_check", check) == (len(everyone) + 20, len(everyone) + 20, 10)
