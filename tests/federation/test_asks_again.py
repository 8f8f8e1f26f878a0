"""Paul opposed the creation of his space by phone, then changed his mind (PRODUCT §2: "they may later ask
for a space"). Having no account, he signs in with FranceConnect+; his page says an opposition was recorded
and offers to ask for the space; asking sends him a new notice with a code at once, traced as his own
request, and the space opens after a new window."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from html import unescape
from pathlib import Path

import httpx

from espace_sante import clock
from espace_sante.access.actors import Actor
from espace_sante.context import Context
from espace_sante.runtime import Runtime
from espace_sante.spaces import lifecycle
from espace_sante.spaces.notices import delivery
from espace_sante.spaces.notices.words import day_fr
from espace_sante.storage.db import Conn
from tests.accounts.helpers import csrf_of
from tests.federation.conftest import federated_sign_in, set_user
from tests.registry.test_import import person, run, write

SPACE = "/mon-espace/mon-espace-sante"
AGENT = Actor("operator", "agent-accueil", display="Accueil CPAM")


def _text(response: httpx.Response) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", response.text)).split())


async def test_an_opposed_person_signs_in_with_franceconnect_and_asks_for_his_space(
    web: httpx.AsyncClient, provider_url: str, federated_runtime: Runtime, tmp_path: Path
) -> None:
    rt = federated_runtime
    paul = person(email=f"paul-{secrets.token_hex(4)}@exemple.fr", first_names="Paul", last_name="Lemaire")
    await run(rt, write(tmp_path / "r.csv", [paul]))
    space = await lifecycle.space_of_ins(rt, paul["nir"])
    assert space is not None
    await lifecycle.oppose(Context(rt, AGENT), space, "phone")
    assert await lifecycle.state(rt, space) == "opposed"

    sub = "fc-" + secrets.token_hex(8)
    await set_user(provider_url, sub, {"acr": "eidas2", "ins": paul["nir"]})
    signed = await federated_sign_in(web, provider_url, "fcplus", sub, next_path=SPACE)
    assert signed.status_code == 303, signed.text
    page = await web.get(SPACE)
    words = _text(page)
    assert "Une opposition a été enregistrée : votre espace santé n'a pas été créé." in words
    assert "il ouvrira 6 semaines plus tard" in words
    assert "Fermer mon espace santé" not in words  # nothing else to do with an opposed space

    asked = await web.post(f"{SPACE}/demander", data={"csrf": csrf_of(page.text)})
    assert asked.status_code == 303 and asked.headers["location"] == f"{SPACE}?message=demande"
    after = _text(await web.get(asked.headers["location"]))
    assert "Votre demande est enregistrée : un avis avec un code d'activation est envoyé" in after
    assert "Votre espace santé est en attente d'ouverture depuis le" in after
    assert await lifecycle.state(rt, space) == "notified"
    [(to, _, text)] = await delivery.emails_of(rt, space)
    assert to == paul["email"] and text is not None and "Code d'activation confidentiel" in text
    opens_on = clock.today() + timedelta(days=rt.settings.opposition_window_days)
    assert day_fr(opens_on) in text

    async def trace(conn: Conn) -> list[tuple[str, str, str]]:
        rows = await conn.fetch(
            "SELECT action, actor_kind, detail FROM audit_event WHERE space_id = $1 ORDER BY seq", space
        )
        return [(r["action"], r["actor_kind"], r["detail"]) for r in rows]

    steps = await rt.db.read("t", trace)
    assert ("space:request", "holder", "opposed>registered|") in steps
    assert steps[-2:][0][0] == "space:notify" and steps[-1][0] == "activation:issue"

    # Asked twice (a second tab, a double click): the service refuses, the page says it plainly.
    again = await web.post(f"{SPACE}/demander", data={"csrf": csrf_of(page.text)})
    assert again.status_code == 409
    assert "Ce changement n'est pas possible" in _text(again)
