"""A minor comes of age (spaces/lifecycle._of_age, docs/lifecycle.md): on the 18th birthday the
representatives' rights end, and the next `lifecycle run` tells the young adult, once, with their own notice
and code; what was hidden from the representatives stays out of their reach."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from pathlib import Path

import httpx

from espace_sante import clock
from espace_sante.context import Context
from espace_sante.runtime import Runtime
from espace_sante.spaces import lifecycle
from espace_sante.storage import access as access_store
from tests.lifecycle.test_lifecycle import as_person, registered, trace

TODAY = clock.today()


def eighteen_years_before(day: date) -> date:
    try:
        return day.replace(year=day.year - 18)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 18, day=28)


async def test_on_the_18th_birthday_the_representative_loses_access_and_the_young_adult_is_told_once(
    runtime: Runtime, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    mother_space, mother = await registered(runtime, tmp_path, first_names="Claire", birth_date="1980-05-04")
    space, child = await registered(
        runtime,
        tmp_path,
        first_names="Léo",
        birth_date=eighteen_years_before(TODAY).isoformat(),
        email="leo.lefevre@exemple.fr",
    )
    await runtime.db.interaction("t_rep", access_store.add_representative, space, mother, TODAY)
    system = Context.system(runtime)
    await lifecycle.notify(system, space, on=TODAY - timedelta(days=60))
    await lifecycle.run(runtime, TODAY - timedelta(days=1))
    assert await lifecycle.state(runtime, space) == "open"
    assert "space:of_age" not in [r.action for r in await trace(runtime, space)]  # not 18 yet

    done = await lifecycle.run(runtime, TODAY)
    assert done.of_age >= 1
    came_of_age = [r for r in await trace(runtime, space) if r.action == "space:of_age"]
    assert len(came_of_age) == 1 and came_of_age[0].detail == "open>open|"
    assert await lifecycle.state(runtime, space) == "open"  # the state does not change

    await lifecycle.run(runtime, TODAY)  # once only
    assert len([r for r in await trace(runtime, space) if r.action == "space:of_age"]) == 1

    # Rights ended on the birthday: the mother reaches neither the child's record nor its state.
    former = await as_person(runtime, http, f"representative:{mother}", "patient/*.*")
    pid = (await former.get("/Patient", params={"identifier": child})).json()
    assert not pid.get("entry")
    assert mother_space != space and isinstance(space, uuid.UUID)
