"""The trusted proxy (issue 16 #7, ASVS 14.5.4). Behind a reverse proxy every person arrives from the proxy's
address: without a trusted-proxy setting the per-address limits (sign-in, activation) counted everyone as one
person. `ESPACE_SANTE_TRUSTED_PROXIES` names the proxies whose X-Forwarded-For is believed; from anyone else
the header is ignored."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest

from espace_sante.app import create_app
from espace_sante.runtime import Runtime
from espace_sante.settings import Settings
from espace_sante.spaces import activation
from espace_sante.storage.keys import DIRECTORY_SPACE
from tests.accounts.helpers import csrf_of, new_person, sign_in, trace_actions
from tests.activation.test_activate_and_oppose import code_for, imported
from tests.activation.test_redeem import new_ip
from tests.registry.test_import import person
from tests.security.test_signin_limits import at, type_password

PROXY = "127.0.0.250"
BORN = date(1950, 3, 27)


def behind_proxy(runtime: Runtime, **changes: Any) -> Any:
    """The real app behind one trusted proxy, with a small per-address allowance (3 failures)."""
    settings = runtime.settings.model_copy(
        update={"trusted_proxies": Settings(trusted_proxies=f"{PROXY}").trusted_proxies, **changes}
    )
    return create_app(runtime=dataclasses.replace(runtime, settings=settings))


def someone_else() -> str:
    return f"{secrets.choice(['spray', 'voisin', 'cible'])}-{secrets.token_hex(4)}@exemple.fr"


async def test_two_people_behind_one_trusted_proxy_have_separate_allowances(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """Through the same proxy, one person tries a password on many logins until their address must wait;
    Jeanne, through that proxy too, signs in at once, and the trace has her own address."""
    app = behind_proxy(runtime, signin_ip_max_failures=3)
    jeanne = await new_person(runtime, fhir)
    async with at(app, PROXY, **{"X-Forwarded-For": "203.0.113.10"}) as sprayer:
        answers = [
            (await type_password(sprayer, someone_else(), "Printemps2026!!")).status_code for _ in range(5)
        ]
    assert answers[:3] == [400, 400, 400] and answers[3:] == [429, 429]
    async with at(app, PROXY, **{"X-Forwarded-For": "198.51.100.20, 203.0.113.11"}) as holder:
        done = await sign_in(holder, jeanne)
    assert done.status_code == 303 and done.headers["location"] == "/compte/securite"
    details = [d for a, _, d, _ in await trace_actions(runtime, jeanne.actor_id) if a == "signin:success"]
    assert "203.0.113.11" in details[-1]


async def test_a_forged_forwarded_for_from_an_untrusted_address_is_ignored(runtime: Runtime) -> None:
    """A client that is not the proxy sends a new X-Forwarded-For with every guess: it is still counted by its
    own address, and must wait like anyone."""
    app = behind_proxy(runtime, signin_ip_max_failures=3)
    answers = []
    for n in range(5):
        async with at(app, "127.0.0.249", **{"X-Forwarded-For": f"192.0.2.{n + 1}"}) as forger:
            answers.append((await type_password(forger, someone_else(), "Printemps2026!!")).status_code)
    assert answers == [400, 400, 400, 429, 429]


async def _post_code(client: httpx.AsyncClient, code: str, born: date) -> httpx.Response:
    page = await client.get("/activation/activer")
    assert page.status_code == 200, page.text
    form = {"csrf": csrf_of(page.text), "code": code, "jour": str(born.day), "mois": str(born.month)}
    return await client.post("/activation/activer", data={**form, "annee": str(born.year)})


async def _refusals_traced_for(runtime: Runtime, ip: str) -> int:
    """Activation refusals that name no space, traced in the directory's chain with this client address."""
    return int(
        await runtime.db.fetchval(
            "n",
            "SELECT count(*) FROM audit_event WHERE space_id = $1 AND action = 'activation:failure' "
            "AND detail = $2",
            DIRECTORY_SPACE,
            f"ip={ip}",
        )
    )


async def test_the_activation_page_counts_each_person_behind_a_trusted_proxy(
    runtime: Runtime, tmp_path: Path
) -> None:
    """The activation page's per-address limit, like sign-in's: one person guessing codes through the proxy
    must wait after 3 tries, Anne, through the same proxy, still activates her space, and a client that is not
    the proxy cannot buy new tries with a new X-Forwarded-For. Addresses are fresh (new_ip) because the
    counters live in the session's database."""
    app = behind_proxy(runtime, activation_ip_max_attempts=3)
    guesser, forger = new_ip(), new_ip()
    by_proxy = await _refusals_traced_for(runtime, PROXY)
    async with at(app, PROXY, **{"X-Forwarded-For": guesser}) as client:
        answers = [(await _post_code(client, activation.new_code(), BORN)).status_code for _ in range(5)]
    assert answers == [400, 400, 400, 429, 429]
    assert await _refusals_traced_for(runtime, guesser) == 5  # the person's address, not the proxy's
    assert await _refusals_traced_for(runtime, PROXY) == by_proxy

    anne = person(first_names="Anne", last_name="Proxy", birth_date=BORN.isoformat())
    [space] = await imported(runtime, tmp_path, anne)
    code = await code_for(runtime, space)
    async with at(app, PROXY, **{"X-Forwarded-For": f"{new_ip()}, {new_ip()}"}) as client:
        done = await _post_code(client, code, BORN)
    assert done.status_code == 303 and done.headers["location"] == "/activation/compte", done.text

    answers = []
    for _ in range(5):
        async with at(app, forger, **{"X-Forwarded-For": new_ip()}) as client:
            answers.append((await _post_code(client, activation.new_code(), BORN)).status_code)
    assert answers == [400, 400, 400, 429, 429]


def test_the_setting_takes_addresses_and_networks_and_refuses_anything_else() -> None:
    settings = Settings(trusted_proxies=" 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32")
    assert settings.trusted_proxy_list == ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]
    assert Settings().trusted_proxy_list == []
    for wrong in ("proxy.exemple.fr", "*", "10.0.0.0/33"):
        with pytest.raises(pydantic.ValidationError, match="ESPACE_SANTE_TRUSTED_PROXIES"):
            Settings(trusted_proxies=wrong)
