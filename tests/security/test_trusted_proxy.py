"""The trusted proxy (issue 16 #7, ASVS 14.5.4). Behind a reverse proxy every person arrives from the proxy's
address: without a trusted-proxy setting the per-address limits (sign-in, activation) counted everyone as one
person. `ESPACE_SANTE_TRUSTED_PROXIES` names the proxies whose X-Forwarded-For is believed; from anyone else
the header is ignored."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

import httpx
import pydantic
import pytest

from espace_sante.app import create_app
from espace_sante.runtime import Runtime
from espace_sante.settings import Settings
from tests.accounts.helpers import new_person, sign_in, trace_actions
from tests.security.test_signin_limits import at, type_password

PROXY = "127.0.0.250"


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


def test_the_setting_takes_addresses_and_networks_and_refuses_anything_else() -> None:
    settings = Settings(trusted_proxies=" 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32")
    assert settings.trusted_proxy_list == ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]
    assert Settings().trusted_proxy_list == []
    for wrong in ("proxy.exemple.fr", "*", "10.0.0.0/33"):
        with pytest.raises(pydantic.ValidationError, match="ESPACE_SANTE_TRUSTED_PROXIES"):
            Settings(trusted_proxies=wrong)
