"""Search through HTTP, as a client would (FHIR R4 search.html): each story builds its own patients and
observations with values nobody else uses, searches, and compares the ids found with the expected set."""

from __future__ import annotations

import httpx
import pytest

from espace_sante.runtime import Runtime
from tests.factories import FHIR_JSON, INS, new_nir
from tests.search.helpers import (
    LOINC,
    OBS_CATEGORY,
    UCUM,
    client_as,
    create,
    found,
    match_ids,
    new_patient,
    observation,
    search,
    unique_family,
    unique_system,
)

# --- _id and _lastUpdated -----------------------------------------------------------------------------


async def test_id_finds_exactly_the_resources_named(fhir: httpx.AsyncClient) -> None:
    """A client asks for two patients by id, one at a time and both at once (comma = OR)."""
    a, b, c = [await new_patient(fhir) for _ in range(3)]
    assert await found(fhir, "Patient", {"_id": a["id"]}) == {a["id"]}
    assert await found(fhir, "Patient", {"_id": f"{a['id']},{c['id']}"}) == {a["id"], c["id"]}
    assert b["id"] not in await found(fhir, "Patient", {"_id": f"{a['id']},{c['id']}"})
    assert await found(fhir, "Patient", {"_id": "0" * 48}) == set()


async def test_last_updated_with_prefixes(fhir: httpx.AsyncClient) -> None:
    """Three patients written one after the other: _lastUpdated with gt, ge, lt, le, eq and a range (two
    params AND-ed) picks them by the instant the server stamped."""
    family = unique_family()
    made = [await new_patient(fhir, name=[{"family": family}]) for _ in range(3)]
    stamps = [p["meta"]["lastUpdated"] for p in made]
    ids = [p["id"] for p in made]
    assert stamps == sorted(stamps)
    if len(set(stamps)) < 3:
        pytest.skip("two writes within one millisecond")  # pragma: no cover - not seen in practice
    by = {"family": family}
    assert await found(fhir, "Patient", {**by, "_lastUpdated": f"gt{stamps[0]}"}) == set(ids[1:])
    assert await found(fhir, "Patient", {**by, "_lastUpdated": f"ge{stamps[1]}"}) == set(ids[1:])
    assert await found(fhir, "Patient", {**by, "_lastUpdated": f"lt{stamps[1]}"}) == {ids[0]}
    assert await found(fhir, "Patient", {**by, "_lastUpdated": f"le{stamps[1]}"}) == set(ids[:2])
    assert await found(fhir, "Patient", {**by, "_lastUpdated": stamps[1]}) == {ids[1]}
    assert await found(fhir, "Patient", {**by, "_lastUpdated": f"eq{stamps[2]}"}) == {ids[2]}
    assert await found(fhir, "Patient", {**by, "_lastUpdated": f"ne{stamps[1]}"}) == {ids[0], ids[2]}
    window = [("family", family), ("_lastUpdated", f"gt{stamps[0]}"), ("_lastUpdated", f"lt{stamps[2]}")]
    assert await found(fhir, "Patient", window) == {ids[1]}
    day = stamps[0][:10]
    assert await found(fhir, "Patient", {**by, "_lastUpdated": day}) >= {ids[0]}
    assert await found(fhir, "Patient", {**by, "_lastUpdated": "lt2000"}) == set()


# --- identifier -------------------------------------------------------------------------------------------


def _ins() -> dict[str, str]:
    """A fresh INS: a Patient created through the API opens a space, and so carries one."""
    return {"system": INS, "value": new_nir()}


async def test_identifier_in_its_four_forms(fhir: httpx.AsyncClient) -> None:
    """system|value, |value (no system), value (any system) and system| (any value of that system)."""
    system = unique_system()
    value = unique_family("v")
    with_system = await new_patient(fhir, identifier=[{"system": system, "value": value}, _ins()])
    without_system = await new_patient(fhir, identifier=[{"value": value}, _ins()])
    other_value = await new_patient(fhir, identifier=[{"system": system, "value": value + "x"}, _ins()])
    assert await found(fhir, "Patient", {"identifier": f"{system}|{value}"}) == {with_system["id"]}
    assert await found(fhir, "Patient", {"identifier": f"|{value}"}) == {without_system["id"]}
    assert await found(fhir, "Patient", {"identifier": value}) == {with_system["id"], without_system["id"]}
    assert await found(fhir, "Patient", {"identifier": f"{system}|"}) == {
        with_system["id"],
        other_value["id"],
    }
    # a token is an exact match, never a prefix
    assert await found(fhir, "Patient", {"identifier": f"{system}|{value[:-1]}"}) == set()


async def test_ins_identifier(fhir: httpx.AsyncClient) -> None:
    """The INS, the one identifier French clients search by."""
    nir = new_nir()
    p = await new_patient(fhir, identifier=[{"system": INS, "value": nir}])
    assert await found(fhir, "Patient", {"identifier": f"{INS}|{nir}"}) == {p["id"]}


async def test_repeated_identifier_params_are_anded_and_commas_ored(fhir: httpx.AsyncClient) -> None:
    """identifier=a&identifier=b: patients with both; identifier=a,b: patients with either."""
    system = unique_system()
    both = await new_patient(
        fhir, identifier=[{"system": system, "value": "a"}, {"system": system, "value": "b"}, _ins()]
    )
    only_a = await new_patient(fhir, identifier=[{"system": system, "value": "a"}, _ins()])
    only_b = await new_patient(fhir, identifier=[{"system": system, "value": "b"}, _ins()])
    anded = [("identifier", f"{system}|a"), ("identifier", f"{system}|b")]
    assert await found(fhir, "Patient", anded) == {both["id"]}
    ored = {"identifier": f"{system}|a,{system}|b"}
    assert await found(fhir, "Patient", ored) == {both["id"], only_a["id"], only_b["id"]}


# --- patient / subject, chains ------------------------------------------------------------------------------


async def test_observations_by_patient_subject_and_chain(fhir: httpx.AsyncClient) -> None:
    """The usual ways of asking for one patient's observations: by id, by reference, by a chain on the
    patient's identifier (with and without the type modifier)."""
    nir = new_nir()
    system = unique_system()
    mine = await new_patient(
        fhir, identifier=[{"system": INS, "value": nir}, {"system": system, "value": "1"}]
    )
    other = await new_patient(fhir)
    obs = {(await create(fhir, observation(mine["id"])))["id"] for _ in range(2)}
    await create(fhir, observation(other["id"]))
    pid = mine["id"]
    assert await found(fhir, "Observation", {"patient": pid}) == obs
    assert await found(fhir, "Observation", {"patient": f"Patient/{pid}"}) == obs
    assert await found(fhir, "Observation", {"subject": f"Patient/{pid}"}) == obs
    assert await found(fhir, "Observation", {"subject:Patient": pid}) == obs
    assert await found(fhir, "Observation", {"patient.identifier": f"{INS}|{nir}"}) == obs
    assert await found(fhir, "Observation", {"subject:Patient.identifier": f"{INS}|{nir}"}) == obs
    assert await found(fhir, "Observation", {"subject.identifier": f"{system}|1"}) == obs
    assert await found(fhir, "Observation", {"patient": f"{pid},{other['id']}"}) >= obs


async def test_chain_on_a_deleted_patient_finds_nothing(fhir: httpx.AsyncClient) -> None:
    """A chain goes through live patients only: once the patient is gone, so are the chained matches
    (the observations themselves stay searchable by id)."""
    system = unique_system()
    p = await new_patient(fhir, identifier=[{"system": system, "value": "1"}, _ins()])
    o = await create(fhir, observation(p["id"]))
    assert await found(fhir, "Observation", {"patient.identifier": f"{system}|1"}) == {o["id"]}
    assert (await fhir.delete(f"/Patient/{p['id']}")).status_code == 204
    assert await found(fhir, "Observation", {"patient.identifier": f"{system}|1"}) == set()


# --- dates ---------------------------------------------------------------------------------------------------


async def test_birthdate_prefixes_and_partial_dates(fhir: httpx.AsyncClient) -> None:
    """Birth dates are days; searched values may be a year or a month (search.html#prefix, implicit
    ranges)."""
    family = unique_family()
    births = ["1949-12-31", "1950-01-01", "1955-08-14", "1955-12-31", "1960-06-15"]
    ids = {b: (await new_patient(fhir, name=[{"family": family}], birthDate=b))["id"] for b in births}

    async def born(value: str) -> set[str]:
        return await found(fhir, "Patient", [("family", family), ("birthdate", value)])

    def of(*dates: str) -> set[str]:
        return {ids[d] for d in dates}

    assert await born("1955") == of("1955-08-14", "1955-12-31")
    assert await born("eq1955-08") == of("1955-08-14")
    assert await born("1955-08-14") == of("1955-08-14")
    assert await born("ne1955") == of("1949-12-31", "1950-01-01", "1960-06-15")
    assert await born("ge1950-01") == of("1950-01-01", "1955-08-14", "1955-12-31", "1960-06-15")
    assert await born("gt1950-01") == of("1955-08-14", "1955-12-31", "1960-06-15")
    assert await born("lt1950") == of("1949-12-31")
    assert await born("le1950") == of("1949-12-31", "1950-01-01")
    assert await born("sa1955") == of("1960-06-15")
    assert await born("eb1955-08-14") == of("1949-12-31", "1950-01-01")
    assert await born("1955,1960") == of("1955-08-14", "1955-12-31", "1960-06-15")
    assert await found(
        fhir, "Patient", [("family", family), ("birthdate", "ge1950"), ("birthdate", "lt1956")]
    ) == of("1950-01-01", "1955-08-14", "1955-12-31")


async def test_observation_date_ranges(fhir: httpx.AsyncClient) -> None:
    """Observation.effective as a dateTime with a timezone and as a Period: a search range, a partial
    date, and a period that overlaps the searched day."""
    p = await new_patient(fhir)
    pid = p["id"]
    morning = await create(fhir, observation(pid, effectiveDateTime="2025-03-10T08:30:00+01:00"))
    evening = await create(fhir, observation(pid, effectiveDateTime="2025-03-10T23:30:00+01:00"))  # 22:30 UTC
    april = await create(fhir, observation(pid, effectiveDateTime="2025-04-02"))
    stay = await create(fhir, observation(pid, effectivePeriod={"start": "2025-03-09", "end": "2025-03-11"}))

    async def on(*values: str) -> set[str]:
        return await found(fhir, "Observation", [("patient", pid), *(("date", v) for v in values)])

    assert await on("2025-03-10") == {morning["id"], evening["id"]}
    assert await on("2025-03") == {morning["id"], evening["id"], stay["id"]}
    assert await on("2025") == {morning["id"], evening["id"], april["id"], stay["id"]}
    assert await on("ge2025-03-10", "lt2025-03-11") == {morning["id"], evening["id"], stay["id"]}
    assert await on("gt2025-03-10T12:00Z") == {evening["id"], april["id"], stay["id"]}
    assert await on("lt2025-03-10T12:00:00Z") == {morning["id"], stay["id"]}
    assert await on("sa2025-03") == {april["id"]}
    assert await on("eb2025-03-10") == set()
    assert await on("ap2025-03-10") >= {morning["id"], evening["id"]}


# --- tokens -------------------------------------------------------------------------------------------------


async def test_tokens_with_and_without_system(fhir: httpx.AsyncClient) -> None:
    """code and category with system|code, code alone, |code (no system), system|; status and gender
    as plain codes; :not."""
    p = await new_patient(fhir)
    pid = p["id"]
    weight = await create(
        fhir, observation(pid, category=[{"coding": [{"system": OBS_CATEGORY, "code": "vital-signs"}]}])
    )
    local = await create(fhir, observation(pid, status="preliminary", code={"coding": [{"code": "29463-7"}]}))
    heart = await create(
        fhir,
        observation(
            pid,
            code={"coding": [{"system": LOINC, "code": "8867-4"}]},
            category=[{"coding": [{"system": OBS_CATEGORY, "code": "exam"}]}],
        ),
    )

    async def obs(**params: str) -> set[str]:
        return await found(fhir, "Observation", {"patient": pid, **params})

    assert await obs(code=f"{LOINC}|29463-7") == {weight["id"]}
    assert await obs(code="29463-7") == {weight["id"], local["id"]}
    assert await obs(code="|29463-7") == {local["id"]}
    assert await obs(code=f"{LOINC}|") == {weight["id"], heart["id"]}
    assert await obs(code=f"{LOINC}|29463-7,{LOINC}|8867-4") == {weight["id"], heart["id"]}
    assert await obs(category=f"{OBS_CATEGORY}|vital-signs") == {weight["id"]}
    assert await obs(category="exam") == {heart["id"]}
    assert await obs(status="preliminary") == {local["id"]}
    assert await obs(status="final") == {weight["id"], heart["id"]}
    assert await obs(**{"status:not": "final"}) == {local["id"]}
    assert await obs(code="29463") == set()  # tokens are exact
    assert await obs(code="29463-7".upper() + "X") == set()

    family = unique_family()
    women = {(await new_patient(fhir, name=[{"family": family}], gender="female"))["id"] for _ in range(2)}
    man = await new_patient(fhir, name=[{"family": family}], gender="male")
    assert await found(fhir, "Patient", {"family": family, "gender": "female"}) == women
    assert await found(fhir, "Patient", {"family": family, "gender": "male"}) == {man["id"]}
    assert await found(fhir, "Patient", {"family": family, "gender": "female,male"}) == women | {man["id"]}


# --- strings --------------------------------------------------------------------------------------------------


async def test_strings_start_with_ignore_case_and_accents(fhir: httpx.AsyncClient) -> None:
    """family, given, name and address-city: starts-with by default, without case or accents; :exact is
    the exact text; :contains anywhere in it."""
    stem = unique_family("Qq")
    emile = await new_patient(
        fhir, name=[{"family": f"{stem}Dupont", "given": ["Émile"]}], address=[{"city": "Saint-Étienne"}]
    )
    emilie = await new_patient(
        fhir, name=[{"family": f"{stem}Duport", "given": ["Émilie", "Rose"]}], address=[{"city": "Lyon"}]
    )
    leon = await new_patient(
        fhir, name=[{"family": f"{stem}Lefèvre", "given": ["Léon"]}], address=[{"city": "Étampes"}]
    )
    e, i, lo = emile["id"], emilie["id"], leon["id"]

    async def pats(*pairs: tuple[str, str]) -> set[str]:
        return await found(fhir, "Patient", [("family", stem), *pairs])

    assert await pats() == {e, i, lo}
    assert await found(fhir, "Patient", {"family": stem.lower()}) == {e, i, lo}
    assert await found(fhir, "Patient", {"family": stem.upper()}) == {e, i, lo}
    assert await pats(("family", f"{stem}dup")) == {e, i}
    assert await pats(("family", f"{stem}lefevre")) == {lo}
    assert await pats(("given", "emile")) == {e}
    assert await pats(("given", "EMIL")) == {e, i}
    assert await pats(("given", "rose")) == {i}
    assert await pats(("name", "leo")) == {lo}
    assert await pats(("name", stem.lower() + "dupont")) == {e}
    assert await pats(("given:exact", "Émile")) == {e}
    assert await pats(("given:exact", "emile")) == set()
    assert await pats(("given:exact", "Émil")) == set()
    assert await pats(("family:contains", "pon")) == {e}
    assert await pats(("family:contains", "FEV")) == {lo}
    assert await pats(("given:contains", "mil")) == {e, i}
    assert await pats(("address-city", "saint-etienne")) == {e}
    assert await pats(("address-city", "et")) == {lo}
    assert await pats(("address-city:contains", "etienne")) == {e}
    assert await pats(("given", "emile,leon")) == {e, lo}
    assert await pats(("family", "pont")) == set()  # starts-with, not contains


async def test_string_contains_treats_wildcards_literally(fhir: httpx.AsyncClient) -> None:
    """% and _ in a :contains value are characters, not SQL wildcards."""
    stem = unique_family("Ww")
    plain = await new_patient(fhir, name=[{"family": f"{stem}abc"}])
    percent = await new_patient(fhir, name=[{"family": f"{stem}a%c"}])
    assert await found(fhir, "Patient", {"family": stem, "family:contains": "a%c"}) == {percent["id"]}
    assert await found(fhir, "Patient", {"family": stem, "family:contains": "a_c"}) == set()
    assert await found(fhir, "Patient", {"family": stem, "family:contains": "abc"}) == {plain["id"]}


# --- quantities -------------------------------------------------------------------------------------------


async def test_value_quantity_with_prefixes_and_units(fhir: httpx.AsyncClient) -> None:
    """value-quantity=gt60|http://unitsofmeasure.org|kg and friends."""
    p = await new_patient(fhir)
    pid = p["id"]

    def kg(value: float, code: str = "kg") -> dict[str, object]:
        return {"value": value, "unit": code, "system": UCUM, "code": code}

    light = await create(fhir, observation(pid, valueQuantity=kg(55.2)))
    heavy = await create(fhir, observation(pid, valueQuantity=kg(64.5)))
    grams = await create(fhir, observation(pid, valueQuantity=kg(70000, "g")))
    exact = await create(fhir, observation(pid, valueQuantity=kg(60)))

    async def q(*values: str) -> set[str]:
        return await found(fhir, "Observation", [("patient", pid), *(("value-quantity", v) for v in values)])

    assert await q(f"gt60|{UCUM}|kg") == {heavy["id"]}
    assert await q(f"ge60|{UCUM}|kg") == {heavy["id"], exact["id"]}
    assert await q(f"lt60|{UCUM}|kg") == {light["id"]}
    assert await q(f"le60|{UCUM}|kg") == {light["id"], exact["id"]}
    assert await q(f"60|{UCUM}|kg") == {exact["id"]}
    assert await q(f"ne60|{UCUM}|kg") == {light["id"], heavy["id"]}
    assert await q("64.5||kg") == {heavy["id"]}
    assert await q("gt60") == {heavy["id"], grams["id"]}
    assert await q(f"gt60|{UCUM}|g") == {grams["id"]}
    assert await q(f"gt50|{UCUM}|kg", f"lt60|{UCUM}|kg") == {light["id"]}
    assert await q("55") == {light["id"]}  # 55 means [54.5, 55.5): 55.2 is in it (search.html#number)


# --- lifecycle --------------------------------------------------------------------------------------------


async def test_deleted_resources_are_never_found(fhir: httpx.AsyncClient) -> None:
    """A deleted patient and a deleted observation disappear from every kind of search."""
    system = unique_system()
    family = unique_family()
    keep = await new_patient(
        fhir, name=[{"family": family}], identifier=[{"system": system, "value": "k"}, _ins()]
    )
    gone = await new_patient(
        fhir, name=[{"family": family}], identifier=[{"system": system, "value": "g"}, _ins()]
    )
    o_keep = await create(fhir, observation(keep["id"]))
    o_gone = await create(fhir, observation(keep["id"]))
    assert (await fhir.delete(f"/Patient/{gone['id']}")).status_code == 204
    assert (await fhir.delete(f"/Observation/{o_gone['id']}")).status_code == 204
    assert await found(fhir, "Patient", {"family": family}) == {keep["id"]}
    assert await found(fhir, "Patient", {"identifier": f"{system}|"}) == {keep["id"]}
    assert await found(fhir, "Patient", {"_id": f"{keep['id']},{gone['id']}"}) == {keep["id"]}
    assert await found(fhir, "Observation", {"patient": keep["id"]}) == {o_keep["id"]}
    assert await found(fhir, "Observation", {"_id": o_gone["id"]}) == set()
    counted = await search(fhir, "Patient", {"family": family, "_summary": "count"})
    assert counted["total"] == 1


async def test_an_updated_resource_is_found_by_its_new_values_only(fhir: httpx.AsyncClient) -> None:
    """After a PUT, the old name, birth date and identifier no longer find the patient; the new ones do."""
    old_family, new_family = unique_family(), unique_family()
    old_system, new_system = unique_system(), unique_system()
    ins = _ins()
    p = await new_patient(
        fhir,
        name=[{"family": old_family}],
        birthDate="1970-01-01",
        identifier=[{"system": old_system, "value": "1"}, ins],
    )
    changed = {
        **p,
        "name": [{"family": new_family}],
        "birthDate": "1971-02-02",
        "identifier": [{"system": new_system, "value": "1"}, ins],  # the INS is the registry's to change
    }
    response = await fhir.put(f"/Patient/{p['id']}", json=changed, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    assert await found(fhir, "Patient", {"family": old_family}) == set()
    assert await found(fhir, "Patient", {"identifier": f"{old_system}|1"}) == set()
    assert await found(fhir, "Patient", {"family": new_family}) == {p["id"]}
    assert await found(fhir, "Patient", {"identifier": f"{new_system}|1"}) == {p["id"]}
    assert await found(fhir, "Patient", {"family": new_family, "birthdate": "1970"}) == set()
    assert await found(fhir, "Patient", {"family": new_family, "birthdate": "1971-02"}) == {p["id"]}
    bundle = await search(fhir, "Patient", {"_id": p["id"]})
    assert bundle["entry"][0]["resource"]["meta"]["versionId"] == "2"


# --- unknown parameters, strict handling, POST _search -----------------------------------------------------


async def test_unknown_parameters_are_ignored_and_left_out_of_the_self_link(
    fhir: httpx.AsyncClient, http: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Lenient by default (search.html#errors): the unknown parameter does not narrow the result and the
    self link says what was actually searched. Only for a caller who reaches one record (the holder): for
    anyone else a dropped parameter could widen the answer (tests/search/test_search_unknown.py)."""
    family = unique_family()
    nir = new_nir()
    p = await new_patient(fhir, name=[{"family": family}], identifier=[{"system": INS, "value": nir}])
    fhir = await client_as(http, runtime, f"holder:{nir}", "patient/*.rs")
    bundle = await search(fhir, "Patient", {"family": family, "colour": "blue", "_elements": "name"})
    assert match_ids(bundle) == [p["id"]]
    self_link = next(item["url"] for item in bundle["link"] if item["relation"] == "self")
    assert "colour" not in self_link
    assert "_elements" not in self_link
    assert f"family={family}" in self_link
    again = await fhir.get(self_link)
    assert again.status_code == 200
    assert match_ids(again.json()) == [p["id"]]


@pytest.mark.parametrize(
    "query",
    [
        {"colour": "blue"},
        {"family:sounds-like": "x"},
        {"_has:Observation:patient:code": "1"},
        {"general-practitioner.name.family": "x"},
    ],
)
async def test_unknown_parameters_are_refused_with_strict_handling(
    fhir: httpx.AsyncClient, query: dict[str, str]
) -> None:
    """Prefer: handling=strict turns an unknown or unsupported parameter into a 400 OperationOutcome that
    names it."""
    response = await fhir.get("/Patient", params=query, headers={"Prefer": "handling=strict"})
    assert response.status_code == 400, response.text
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    name = next(iter(query))
    assert any(
        name in issue.get("diagnostics", "") or name in issue.get("expression", [""])[0]
        for issue in outcome["issue"]
    )


@pytest.mark.parametrize(
    "query",
    [
        {"birthdate": "1955-13"},
        {"birthdate": "xx1955"},
        {"_count": "-1"},
        {"_sort": "colour"},
        {"_id": "bad id!"},
        {"general-practitioner": "Patient/x"},
        {"identifier": "|"},
        {"_summary": "maybe"},
        {"_include": "Observation:patient"},
    ],
)
async def test_malformed_values_are_a_400_outcome(fhir: httpx.AsyncClient, query: dict[str, str]) -> None:
    """A malformed value is always an error, strict or not."""
    response = await fhir.get("/Patient", params=query)
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_post_search_gives_the_same_result_as_get(fhir: httpx.AsyncClient) -> None:
    """POST /fhir/Patient/_search with a form body answers what GET answers, including its paging links."""
    family = unique_family()
    system = unique_system()
    by_n = [
        (
            await new_patient(
                fhir,
                name=[{"family": family}],
                identifier=[{"system": system, "value": str(n)}, _ins()],
                birthDate=f"19{60 + n}-01-01",
            )
        )["id"]
        for n in range(3)
    ]
    params = [("family", family), ("birthdate", "ge1961"), ("_count", "1"), ("_sort", "birthdate")]
    got = await search(fhir, "Patient", params)
    assert match_ids(got) == [by_n[1]]
    posted = await fhir.post("/Patient/_search", data=dict(params))
    assert posted.status_code == 200, posted.text
    assert match_ids(posted.json()) == match_ids(got)
    assert posted.json()["link"] == got["link"]
    assert posted.json()["total"] == got["total"] if "total" in got else "total" not in posted.json()
    # parameters in the URL and in the body combine (AND)
    mixed = await fhir.post(f"/Patient/_search?family={family}", data={"identifier": f"{system}|0"})
    assert mixed.status_code == 200, mixed.text
    assert match_ids(mixed.json()) == [by_n[0]]
    wrong_type = await fhir.post("/Patient/_search", content=b"family=x", headers=FHIR_JSON)
    assert wrong_type.status_code == 415
    assert wrong_type.json()["resourceType"] == "OperationOutcome"


# --- regressions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "family=a%00b",
        "family:exact=%00",
        "identifier=x%00|y",
        "_id=a%00",
        "value-quantity=60|%00|kg",
        "patient.name=%00",
        "x%00=1",
    ],
)
async def test_a_nul_character_in_a_search_is_a_400_not_a_500(fhir: httpx.AsyncClient, query: str) -> None:
    """PostgreSQL text cannot hold U+0000: a search carrying one used to fail in the database (500); it is
    a malformed request (400 OperationOutcome)."""
    rtype = "Observation" if query.startswith(("value-", "patient.")) else "Patient"
    response = await fhir.get(f"/{rtype}?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "U+0000" in response.json()["issue"][0]["diagnostics"]


async def test_a_resource_holding_a_nul_character_is_stored_and_found_by_its_other_values(
    fhir: httpx.AsyncClient,
) -> None:
    """A NUL inside a name or an identifier used to fail the write of the search index (500). The resource
    is stored as sent; the name is indexed without the NUL, the unusable identifier is left out."""
    family = unique_family()
    system = unique_system()
    body = {
        "resourceType": "Patient",
        "name": [{"family": family + "\x00x", "given": ["A\x00"]}],
        "identifier": [{"system": system, "value": "v\x00"}, {"system": system, "value": "ok"}],
    }
    response = await fhir.post("/Patient", json=body, headers=FHIR_JSON)
    assert response.status_code in (201, 400, 422), response.text
    if response.status_code != 201:  # refusing it outright is as good
        assert response.json()["resourceType"] == "OperationOutcome"
        return
    created = response.json()
    assert created["name"][0]["family"] == family + "\x00x"
    assert await found(fhir, "Patient", {"family": family}) == {created["id"]}
    assert await found(fhir, "Patient", {"family:exact": family + "x"}) == {created["id"]}
    assert await found(fhir, "Patient", {"identifier": f"{system}|ok"}) == {created["id"]}


async def test_last_updated_gt_and_lt_are_not_server_errors(fhir: httpx.AsyncClient) -> None:
    """gt/lt/sa/eb compare one bound only; the other used to be sent as an untyped, unused parameter that
    PostgreSQL refused (500 on every one-sided date search)."""
    for prefix in ("gt", "lt", "sa", "eb"):
        response = await fhir.get(
            "/Patient",
            params={"_lastUpdated": f"{prefix}2020-01-01", "birthdate": f"{prefix}1900", "_count": "1"},
        )
        assert response.status_code == 200, response.text


async def test_total_past_the_last_page_is_the_number_of_matches(fhir: httpx.AsyncClient) -> None:
    """Two matches, asked from offset 10 (a stale next link): the page is empty and the total, if given, is
    2, not the offset (it used to be offset + len(page))."""
    family = unique_family()
    for _ in range(2):
        await new_patient(fhir, name=[{"family": family}])
    bundle = await search(fhir, "Patient", {"family": family, "_offset": "10"})
    assert match_ids(bundle) == []
    assert bundle.get("total", 2) == 2
