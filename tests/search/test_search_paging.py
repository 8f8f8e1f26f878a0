"""Paging, sorting and totals through HTTP (search.html#count, #sort, #summary, #total): a client follows the
links the server gives it and must see every match exactly once, in a stable order."""

from __future__ import annotations

from typing import Any

import httpx

from tests.factories import FHIR_JSON, patient
from tests.search.helpers import link, match_ids, new_patient, search, unique_family


async def _family_of(fhir: httpx.AsyncClient, family: str, births: list[str]) -> list[dict[str, Any]]:
    return [await new_patient(fhir, name=[{"family": family}], birthDate=birth) for birth in births]


async def _without_birthdate(fhir: httpx.AsyncClient, family: str) -> dict[str, Any]:
    body = patient(name=[{"family": family}])
    del body["birthDate"]
    response = await fhir.post("/Patient", json=body, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _walk(fhir: httpx.AsyncClient, first: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page, from `first`, by following `next` until there is none."""
    pages = [first]
    while (url := link(pages[-1], "next")) is not None:
        assert len(pages) < 50, "next links never end"
        response = await fhir.get(url)
        assert response.status_code == 200, response.text
        pages.append(response.json())
    return pages


async def test_following_next_visits_every_match_once_and_previous_goes_back(fhir: httpx.AsyncClient) -> None:
    """Seven patients, pages of three: next, next, then no next; every id exactly once; previous from the
    last page is the middle page again; self gives the same page back."""
    family = unique_family()
    made = await _family_of(fhir, family, ["1980-01-01"] * 7)
    expected = {p["id"] for p in made}
    first = await search(fhir, "Patient", {"family": family, "_count": "3"})
    pages = await _walk(fhir, first)
    assert [len(match_ids(p)) for p in pages] == [3, 3, 1]
    seen = [i for p in pages for i in match_ids(p)]
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == expected
    assert link(pages[0], "previous") is None
    assert pages[-1]["total"] == 7  # the last page knows how many there were

    back = await fhir.get(link(pages[-1], "previous") or "")
    assert back.status_code == 200
    assert match_ids(back.json()) == match_ids(pages[1])
    back_again = await fhir.get(link(back.json(), "previous") or "")
    assert match_ids(back_again.json()) == match_ids(pages[0])

    for page in pages:
        again = await fhir.get(link(page, "self") or "")
        assert match_ids(again.json()) == match_ids(page)


async def test_paging_ends_exactly_on_a_full_page(fhir: httpx.AsyncClient) -> None:
    """Six matches in pages of three: two pages, the second has no next link."""
    family = unique_family()
    made = await _family_of(fhir, family, ["1980-01-01"] * 6)
    pages = await _walk(fhir, await search(fhir, "Patient", {"family": family, "_count": "3"}))
    assert [len(match_ids(p)) for p in pages] == [3, 3]
    assert {i for p in pages for i in match_ids(p)} == {p["id"] for p in made}


async def test_links_keep_the_search_and_sort(fhir: httpx.AsyncClient) -> None:
    """The next link of a sorted search keeps its criteria and order: walking it gives the whole sorted
    list."""
    family = unique_family()
    births = ["1990-05-01", "1950-01-01", "1970-03-03", "1950-01-01", "2001-12-31", "1962-07-14"]
    made = await _family_of(fhir, family, births)
    expected = [p["id"] for p in sorted(made, key=lambda p: (p["birthDate"], p["id"]), reverse=False)]
    pages = await _walk(
        fhir, await search(fhir, "Patient", {"family": family, "_sort": "birthdate", "_count": "2"})
    )
    assert [i for p in pages for i in match_ids(p)] == expected
    for page in pages:
        self_link = link(page, "self") or ""
        assert "_sort=birthdate" in self_link
        assert f"family={family}" in self_link


async def test_sort_orders_are_stable(fhir: httpx.AsyncClient) -> None:
    """_sort on birthdate, -birthdate, family, _lastUpdated, -_id and two keys; ties are broken the same
    way every time; a patient without birth date comes last both ways."""
    stem = unique_family()
    specs = [("c", "1960-01-01"), ("a", "1950-06-01"), ("b", "1960-01-01"), ("a", "1970-01-01"), ("d", None)]
    made = []
    for suffix, born in specs:
        if born is None:
            made.append(await _without_birthdate(fhir, stem + suffix))
        else:
            made.append(await new_patient(fhir, name=[{"family": stem + suffix}], birthDate=born))
    ids = [p["id"] for p in made]
    birth = {p["id"]: p.get("birthDate") for p in made}
    fam = {p["id"]: p["name"][0]["family"] for p in made}

    async def order(sort: str) -> list[str]:
        got = match_ids(await search(fhir, "Patient", {"family": stem, "_sort": sort, "_count": "50"}))
        again = match_ids(await search(fhir, "Patient", {"family": stem, "_sort": sort, "_count": "50"}))
        assert got == again
        return got

    dated = [i for i in ids if birth[i] is not None]
    undated = [i for i in ids if birth[i] is None]
    assert await order("birthdate") == sorted(dated, key=lambda i: (birth[i], i)) + undated
    assert (
        await order("-birthdate")
        == sorted(sorted(dated), key=lambda i: birth[i] or "", reverse=True) + undated
    )
    assert await order("family") == sorted(ids, key=lambda i: (fam[i].lower(), i))
    assert await order("-family") == sorted(sorted(ids), key=lambda i: fam[i].lower(), reverse=True)
    assert await order("_lastUpdated") == ids  # created one after the other
    assert await order("-_lastUpdated") == ids[::-1]
    assert await order("-_id") == sorted(ids, reverse=True)
    assert await order("_id") == sorted(ids)
    assert await order("family,-birthdate") == sorted(
        sorted(sorted(ids), key=lambda i: birth[i] or "", reverse=True), key=lambda i: fam[i].lower()
    )


async def test_summary_count_and_total_accurate(fhir: httpx.AsyncClient) -> None:
    """_summary=count gives the total and no entries; _total=accurate gives the total on the first page
    already; _count=0 counts too."""
    family = unique_family()
    await _family_of(fhir, family, ["1980-01-01"] * 5)
    counted = await search(fhir, "Patient", {"family": family, "_summary": "count"})
    assert counted["total"] == 5
    assert "entry" not in counted or counted["entry"] == []
    first = await search(fhir, "Patient", {"family": family, "_count": "2", "_total": "accurate"})
    assert first["total"] == 5
    assert len(match_ids(first)) == 2
    zero = await search(fhir, "Patient", {"family": family, "_count": "0"})
    assert zero["total"] == 5
    assert not zero.get("entry")
    none = await search(fhir, "Patient", {"family": unique_family(), "_summary": "count"})
    assert none["total"] == 0


async def test_count_above_the_maximum_is_capped(fhir: httpx.AsyncClient) -> None:
    """A client asking for 10,000 per page gets the server's maximum, and the link says so."""
    family = unique_family()
    await _family_of(fhir, family, ["1980-01-01"])
    bundle = await search(fhir, "Patient", {"family": family, "_count": "10000"})
    assert len(match_ids(bundle)) == 1
    assert "_count=200" in (link(bundle, "self") or "")


async def test_offset_beyond_the_end_is_an_empty_page(fhir: httpx.AsyncClient) -> None:
    """A stale next link (the matches shrank) answers an empty page, not an error."""
    family = unique_family()
    await _family_of(fhir, family, ["1980-01-01"] * 2)
    bundle = await search(fhir, "Patient", {"family": family, "_count": "5", "_offset": "10"})
    assert match_ids(bundle) == []
    assert link(bundle, "next") is None
    assert link(bundle, "previous") is not None
