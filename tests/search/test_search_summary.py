"""`_summary` asks for less of each resource, and the server says it sent less."""

from __future__ import annotations

import httpx

from tests.factories import INS, new_nir, patient


async def _search(fhir: httpx.AsyncClient, nir: str, summary: str) -> dict[str, object]:
    response = await fhir.get("/Patient", params={"identifier": f"{INS}|{nir}", "_summary": summary})
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert len(entries) == 1
    resource: dict[str, object] = entries[0]["resource"]
    return resource


async def test_summary_true_keeps_summary_elements_and_marks_the_resource_subsetted(
    fhir: httpx.AsyncClient,
) -> None:
    """A directory view asks `_summary=true`: names, gender, birth date and identifiers come back, the photo
    and the narrative do not, and meta.tag says SUBSETTED so no one mistakes it for the whole record."""
    nir = new_nir()
    body = patient(
        nir,
        photo=[{"contentType": "image/png", "data": "iVBORw0KGgo="}],
        text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Jeanne</div>'},
    )
    assert (await fhir.post("/Patient", json=body)).status_code == 201
    found = await _search(fhir, nir, "true")
    assert {"identifier", "name", "gender", "birthDate", "id", "meta"} <= set(found)
    assert "photo" not in found and "text" not in found
    assert {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"} in (
        found["meta"]["tag"]
    )  # type: ignore[index]
    data = await _search(fhir, nir, "data")
    assert "photo" in data and "text" not in data
    text = await _search(fhir, nir, "text")
    assert "text" in text and "name" not in text
    full = await _search(fhir, nir, "false")
    assert "photo" in full and "text" in full and "tag" not in full.get("meta", {})  # type: ignore[operator]


async def test_a_control_character_in_a_string_is_refused_by_name(fhir: httpx.AsyncClient) -> None:
    response = await fhir.post("/Patient", json=patient(name=[{"family": "Mar\u0000tin"}]))
    assert response.status_code == 422
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["Patient.name[0].family"]
    assert "control character" in issue["diagnostics"]
