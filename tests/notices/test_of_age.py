"""A minor comes of age (spaces/notices/issue.of_age_in, called by the lifecycle's run in its transaction): the
young adult's own code replaces the one the representatives received, their own notice goes to their e-mail
or by letter to their address, the representatives' notices still waiting are withdrawn, the state stays."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from pathlib import Path

import pikepdf
import pytest

from espace_sante import clock
from espace_sante.context import Context
from espace_sante.runtime import Runtime
from espace_sante.spaces import activation, lifecycle
from espace_sante.spaces.notices import delivery, issue, letters, words
from espace_sante.storage.db import Conn
from tests.notices.test_notices import CODE, letters_of, mail, outbox_for, space_of
from tests.registry.test_import import person, run, write


def nearly_eighteen() -> date:
    """A birth date whose 18th birthday is in 30 days: the import gives the representatives rights."""
    soon = clock.today() + timedelta(days=30)
    try:
        return soon.replace(year=soon.year - 18)
    except ValueError:  # 29 February
        return date(soon.year - 18, 3, 1)


async def rights_end_today(runtime: Runtime, space: uuid.UUID) -> None:
    """Time passes: the representatives' rights end today (what migration 0016's `until` says at 18)."""

    async def q(conn: Conn) -> None:
        await conn.execute("UPDATE space_representative SET until = current_date WHERE space_id = $1", space)

    await runtime.db.interaction("t", q)


async def of_age(runtime: Runtime, space: uuid.UUID) -> list[str]:
    ctx = Context.system(runtime)

    async def work(conn: Conn) -> list[str]:
        return await issue.of_age_in(conn, ctx, space, clock.today())

    return await runtime.db.interaction("t", work)


async def notice_rows(runtime: Runtime, space: uuid.UUID) -> list[dict[str, object]]:
    async def q(conn: Conn) -> list[dict[str, object]]:
        rows = await conn.fetch(
            "SELECT channel, recipient, subject, withdrawn_at IS NOT NULL AS withdrawn, built_at IS NOT NULL "
            "AS built, delivered_at IS NOT NULL AS delivered FROM notice WHERE space_id = $1 "
            "ORDER BY created_at, notice_id",
            space,
        )
        return [dict(r) for r in rows]

    return await runtime.db.read("t", q)


async def test_the_young_adult_gets_their_own_code_by_mail_and_the_old_one_dies(
    runtime: Runtime, tmp_path: Path
) -> None:
    born = nearly_eighteen()
    parent = person(email=mail(), first_names="Paul", last_name="Moreau", birth_date="1980-05-05")
    child = person(
        email=mail(),
        first_names="Inès",
        last_name="Moreau",
        birth_date=born.isoformat(),
        representative_1_nir=parent["nir"],
    )
    await run(runtime, write(tmp_path / "r.csv", [parent, child]))
    await issue.send(runtime)
    space = await space_of(runtime, child["nir"])
    [(_, about_child)] = [m for m in await outbox_for(runtime, parent["email"]) if "Inès Moreau" in m[1]]
    assert not await outbox_for(runtime, child["email"])  # a minor gets nothing directly
    old = CODE.search(about_child)
    assert old is not None

    await rights_end_today(runtime, space)
    assert await of_age(runtime, space) == ["email"]
    assert await lifecycle.state(runtime, space) == "notified"  # the state does not change
    await delivery.deliver(runtime)

    [(subject, body)] = await outbox_for(runtime, child["email"])
    assert subject == words.SUBJECT_OF_AGE
    assert body.startswith("Bonjour Inès Moreau,")
    assert "Vous avez 18 ans" in body and "You are 18" in body
    assert "Vos représentants légaux n'y ont plus accès" in body
    assert "no longer have access" in body
    assert f"{runtime.settings.base_url.rstrip('/')}/activation" in body
    assert "votre propre connexion" in body and "could not see stay as they were" in body
    assert "vous opposer" in body and "jusqu'au" in body  # still notified: the window is open
    assert words.day_fr(clock.today() + timedelta(days=issue.OF_AGE_CODE_DAYS)) in body
    assert "Paul" not in body  # about the young adult only
    new = CODE.search(body)
    assert new is not None and new.group(1) != old.group(1)

    ctx = Context.system(runtime)
    with pytest.raises(activation.ActivationRefused):  # the representatives' copy no longer works
        await activation.redeem(ctx, old.group(1), born)
    assert await activation.redeem(ctx, new.group(1), born) == space
    assert len(await outbox_for(runtime, parent["email"])) == 2  # nothing new to the former representative


async def test_an_active_space_gives_the_young_adult_their_own_sign_in(
    runtime: Runtime, tmp_path: Path
) -> None:
    born = nearly_eighteen()
    parent = person(email=mail(), first_names="Marc", last_name="Roux", birth_date="1979-01-09")
    child = person(
        email=mail(), first_names="Zoé", last_name="Roux", birth_date=born.isoformat(),
        representative_1_nir=parent["nir"],
    )  # fmt: skip
    await run(runtime, write(tmp_path / "r.csv", [parent, child]))
    await issue.send(runtime)
    space = await space_of(runtime, child["nir"])
    [(_, about_child)] = [m for m in await outbox_for(runtime, parent["email"]) if "Zoé Roux" in m[1]]
    old = CODE.search(about_child)
    assert old is not None
    ctx = Context.system(runtime)
    await activation.activate_with_code(ctx, old.group(1), born)  # the parent activated it for the child
    assert await lifecycle.state(runtime, space) == "active"

    await rights_end_today(runtime, space)
    assert await of_age(runtime, space) == ["email"]
    await delivery.deliver(runtime)
    [(_, body)] = await outbox_for(runtime, child["email"])
    assert "plus possible de s'opposer" in body and "fermer à tout moment" in body
    assert "close it at any time" in body and "object to its creation until" not in body
    new = CODE.search(body)
    assert new is not None
    done = await activation.activate_with_code(ctx, new.group(1), born)
    assert done.was_active and not done.holder.minor and done.holder.space_id == space
    assert await lifecycle.state(runtime, space) == "active"


async def test_no_e_mail_a_letter_and_the_representatives_waiting_letter_is_withdrawn(
    runtime: Runtime, tmp_path: Path
) -> None:
    born = nearly_eighteen()
    parent = person(email="", first_names="Hugo", last_name="Petit", birth_date="1981-02-03")
    child = person(
        email="", first_names="Léo", last_name="Petit", birth_date=born.isoformat(),
        address_line="3 place Bellecour", postal_code="69002", representative_1_nir=parent["nir"],
    )  # fmt: skip
    await run(runtime, write(tmp_path / "r.csv", [parent, child]))
    await issue.send(runtime)
    space = await space_of(runtime, child["nir"])
    [to_parent] = await letters_of(runtime, space)
    assert to_parent["child"] == "Léo Petit" and not to_parent["built"]

    await rights_end_today(runtime, space)
    assert await of_age(runtime, space) == ["letter"]
    before, mine = await letters_of(runtime, space)
    assert before["child"] == "Léo Petit"
    assert mine["kind"] == "of_age" and mine["name"] == "Léo Petit" and mine["code"]
    assert mine["address_line"] == "3 place Bellecour" and mine["postal_code"] == "69002"
    rows = await notice_rows(runtime, space)
    assert [r["withdrawn"] for r in rows] == [True, False]  # the parent's letter carried the dead code

    out = tmp_path / "lettres"
    built = await letters.build_letters(runtime, out)
    assert built.letters >= 1
    rows = await notice_rows(runtime, space)
    assert [r["built"] for r in rows] == [False, True]  # the withdrawn letter is never printed
    [_, printed] = await letters_of(runtime, space)
    assert "code" not in printed
    pages = 0
    for name in built.files:
        with pikepdf.open(out / name) as pdf:
            pages += len(pdf.pages)
    assert pages == built.letters
    assert await activation.redeem(Context.system(runtime), mine["code"], born) == space  # type: ignore[arg-type]


def test_the_words_when_the_space_is_open() -> None:
    o = words.OfAge("ABCD-EFGH-JKMN-PQ", date(2031, 4, 1), opposable=False)
    text = words.of_age_text("https://mes.example.fr/", "Léa Martin", o)
    assert "https://mes.example.fr/activation" in text and "1er avril 2031" in text and "1 April 2031" in text
    assert "s'opposer à sa création, mais vous pouvez le fermer à tout moment" in text
    assert "no longer possible to object" in text
    for word in ("diagnos", "médical", "medical", "ordonnance"):
        assert word not in text.lower()
    pending = words.OfAge("ABCD-EFGH-JKMN-PQ", date(2031, 4, 1), opposable=True)
    assert "tant qu'il n'est pas ouvert" in words.of_age_text("https://x", "A", pending)


async def test_nothing_to_give_for_a_closed_space(runtime: Runtime, tmp_path: Path) -> None:
    born = nearly_eighteen()
    parent = person(email=mail(), birth_date="1980-05-05")
    child = person(email=mail(), birth_date=born.isoformat(), representative_1_nir=parent["nir"])
    await run(runtime, write(tmp_path / "r.csv", [parent, child]))
    await issue.send(runtime)
    space = await space_of(runtime, child["nir"])
    await lifecycle.close(Context.system(runtime), space)
    await rights_end_today(runtime, space)
    assert await of_age(runtime, space) == []
    assert [r for r in await notice_rows(runtime, space) if r["subject"] == words.SUBJECT_OF_AGE] == []
