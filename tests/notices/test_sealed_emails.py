"""An e-mail notice waiting for delivery keeps no activation code in clear (migration 0019): what it says is
sealed under the space's data key and its text rendered at delivery, the same text as before; delivered, it
keeps nothing. An e-mail recorded before the migration (its text in clear) is still delivered, and one whose
key is gone is withdrawn with the reason instead of stopping the others."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

from espace_sante import clock
from espace_sante.context import Context
from espace_sante.runtime import Runtime
from espace_sante.spaces import activation
from espace_sante.spaces.notices import delivery, issue, words
from espace_sante.storage.db import Conn
from tests.notices.test_notices import CODE, mail, outbox_for, space_of
from tests.registry.test_import import person, run, write


async def notice_rows(runtime: Runtime, space: uuid.UUID) -> list[str]:
    """Every notice row of the space, each as PostgreSQL prints the whole row."""

    async def q(conn: Conn) -> list[str]:
        rows = await conn.fetch("SELECT n::text AS row FROM notice n WHERE space_id = $1", space)
        return [r["row"] for r in rows]

    return await runtime.db.read("t", q)


async def test_a_waiting_email_shows_no_code_and_is_sent_with_the_words_it_always_had(
    runtime: Runtime, tmp_path: Path
) -> None:
    adult = person(email=mail(), first_names="Jeanne", last_name="Roux")
    await run(runtime, write(tmp_path / "r.csv", [adult]))
    await issue.send(runtime, deliver_now=False)
    space = await space_of(runtime, adult["nir"])

    # Waiting: the operator's view renders the text; the table holds neither the code nor the name.
    [(to, subject, text)] = await delivery.emails_of(runtime, space)
    assert to == adult["email"] and subject == words.SUBJECT and text is not None
    code = CODE.search(text)
    assert code is not None
    [row] = await notice_rows(runtime, space)
    assert code.group(1) not in row and "Jeanne" not in row and "Roux" not in row
    opens_on = clock.today().toordinal() + runtime.settings.opposition_window_days
    assert text == words.email_text(
        runtime.settings.base_url, "Jeanne Roux", date.fromordinal(opens_on), code.group(1), None
    )

    # Delivered: the outbox has that very text, the notice row nothing that opens it, and the code works.
    done = await delivery.deliver(runtime)
    assert done.delivered >= 1
    assert await outbox_for(runtime, adult["email"]) == [(subject, text)]
    assert await delivery.emails_of(runtime, space) == []

    async def sealed(conn: Conn) -> list[object]:
        return [r["sealed"] for r in await conn.fetch("SELECT sealed FROM notice WHERE space_id = $1", space)]

    assert await runtime.db.read("t", sealed) == [None]
    redeemed = await activation.redeem(
        Context.system(runtime), code.group(1), date.fromisoformat(adult["birth_date"])
    )
    assert redeemed == space


async def test_an_email_recorded_in_clear_before_the_change_is_still_delivered(
    runtime: Runtime, tmp_path: Path
) -> None:
    adult = person(email=mail())
    await run(runtime, write(tmp_path / "r.csv", [adult]))
    space = await space_of(runtime, adult["nir"])
    old = uuid.uuid4()

    async def record_as_before(conn: Conn) -> None:
        await conn.execute(
            "INSERT INTO notice (space_id, notice_id, channel, recipient, subject, body) "
            "VALUES ($1, $2, 'email', $3, 'Avis', 'Bonjour, votre code : ABCD-EFGH-JKMN-PQ')",
            space,
            old,
            adult["email"],
        )

    await runtime.db.interaction("t", record_as_before)
    assert await delivery.deliver_one(runtime, space, old) == "delivered"
    assert await outbox_for(runtime, adult["email"]) == [("Avis", "Bonjour, votre code : ABCD-EFGH-JKMN-PQ")]
    assert not any("ABCD" in row for row in await notice_rows(runtime, space))


async def test_an_email_whose_key_is_gone_is_withdrawn_and_the_others_still_go(
    runtime: Runtime, tmp_path: Path
) -> None:
    lost, kept = person(email=mail()), person(email=mail())
    await run(runtime, write(tmp_path / "r.csv", [lost, kept]))
    await issue.send(runtime, deliver_now=False)
    space = await space_of(runtime, lost["nir"])

    async def lose_the_key(conn: Conn) -> None:
        await conn.execute("DELETE FROM space_key WHERE space_id = $1", space)

    await runtime.db.interaction("t", lose_the_key)
    runtime.keys.clear()
    [(_, _, text)] = await delivery.emails_of(runtime, space)
    assert text is None

    await delivery.deliver(runtime)
    assert await outbox_for(runtime, lost["email"]) == []
    assert len(await outbox_for(runtime, kept["email"])) == 1

    async def state(conn: Conn) -> tuple[bool, bool, str]:
        r = await conn.fetchrow(
            "SELECT withdrawn_at IS NOT NULL AS withdrawn, delivered_at IS NOT NULL AS delivered, error "
            "FROM notice WHERE space_id = $1",
            space,
        )
        assert r is not None
        return r["withdrawn"], r["delivered"], r["error"]

    assert await runtime.db.read("t", state) == (True, False, "unreadable: data key gone")
