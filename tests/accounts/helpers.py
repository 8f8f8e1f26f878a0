"""Builders for sign-in tests: people with a Patient (holders need one), accounts with known secrets, browsers
(httpx clients on the real app, over https so that `__Host-` cookies are kept), and the forms' tokens."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from espace_sante.people import accounts, totp
from espace_sante.runtime import Runtime
from tests.factories import FHIR_JSON, new_nir, patient

#: A password the policy accepts: long, uncommon, unrelated words.
PASSWORD = "girafe violette sous la pluie 47"
HTTPS = "https://127.0.0.1:8000"


@dataclass
class Person:
    account_id: uuid.UUID
    kind: str
    actor_id: str
    login: str
    password: str
    totp_secret: str
    recovery_codes: tuple[str, ...] = ()


async def new_holder_ins(fhir: httpx.AsyncClient) -> str:
    nir = new_nir()
    created = await fhir.post("/Patient", json=patient(nir), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    return nir


async def new_person(
    rt: Runtime,
    fhir: httpx.AsyncClient,
    *,
    with_totp: bool = True,
    email: str | None = None,
    password: str | None = PASSWORD,
) -> Person:
    """A holder with a Patient and an account (password, and TOTP with recovery codes unless told)."""
    ins = await new_holder_ins(fhir)
    login = f"titulaire-{secrets.token_hex(4)}@exemple.fr"
    created = await accounts.create(
        rt, kind="holder", actor_id=ins, login=login, password=password, email=email, new_totp=with_totp
    )
    return Person(
        created.account_id, "holder", ins, login, password or "", created.totp_secret, created.recovery_codes
    )


_LAST_STEP: dict[str, int] = {}


def next_code(secret: str) -> str:
    """A valid TOTP code not used yet in this test session (each step's code works once).

    The server accepts its own step and one either side, so a step `s` stays valid until (s + 2) x 30 s. A code
    is taken only if it stays valid for at least 5 more seconds (a browser test takes a moment to submit it);
    when the three acceptable steps are used up, this waits for the next step."""
    while True:
        now = time.time()
        current = int(now // totp.STEP_SECONDS)
        for step in (current - 1, current, current + 1):
            if step > _LAST_STEP.get(secret, 0) and (step + 2) * totp.STEP_SECONDS - now >= 5:
                _LAST_STEP[secret] = step
                return totp.code_at(secret, step)
        time.sleep((current + 1) * totp.STEP_SECONDS - now + 0.05)


def browser(app: Any) -> httpx.AsyncClient:
    """A fresh browser (its own cookie jar) on the real app."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=HTTPS, follow_redirects=False)


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no anti-forgery token in the page"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, person: Person, *, code: str | None = None) -> httpx.Response:
    """The two sign-in forms, as a browser fills them; returns the answer to the code form."""
    page = await client.get("/connexion")
    first = await client.post(
        "/connexion", data={"csrf": csrf_of(page.text), "login": person.login, "password": person.password}
    )
    assert first.status_code == 303, first.text
    assert first.headers["location"] == "/connexion/code"
    form = await client.get("/connexion/code")
    assert form.status_code == 200
    return await client.post(
        "/connexion/code", data={"csrf": csrf_of(form.text), "code": code or next_code(person.totp_secret)}
    )


async def trace_actions(rt: Runtime, actor_id: str) -> list[tuple[str, str, str, str]]:
    """(action, outcome, detail, basis) of the directory chain's records about this person, oldest first."""
    async with rt.db.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT action, outcome, detail, basis FROM audit_event WHERE space_id = $1 AND actor_id = $2 "
            "ORDER BY seq",
            uuid.UUID(int=0),
            actor_id,
        )
    return [(r["action"], r["outcome"], r["detail"], r["basis"]) for r in rows]
