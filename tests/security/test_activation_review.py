"""Security review of online activation and opposition and of the lifecycle API (2026-12-03): most tests are
an attack that worked before its fix (web/activation/pages.py, spaces/activation.py, spaces/lifecycle.py,
record/auditevents.py, access/policy.py), kept so that it stays closed; two (a NUL in a reason, a feed's
write into a closed space) were already refused and guard it."""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from espace_sante import clock
from espace_sante.access.actors import Actor
from espace_sante.access.scopes import Scopes
from espace_sante.context import Context
from espace_sante.errors import Forbidden, NotFound
from espace_sante.people import accounts
from espace_sante.runtime import Runtime
from espace_sante.spaces import activation, lifecycle
from espace_sante.spaces.activation import THROTTLED, WRONG, ActivationRefused
from espace_sante.storage.db import Conn
from tests.accounts.helpers import HTTPS, csrf_of
from tests.activation.test_activate_and_oppose import code_for, imported
from tests.activation.test_redeem import BORN, new_ip, new_space
from tests.factories import BASE, FHIR_JSON, new_nir
from tests.lifecycle.test_lifecycle import active, observation, registered
from tests.lifecycle.test_space_api import bearer
from tests.registry.test_import import person


def visitor(runtime: Runtime) -> Context:
    return Context.system(runtime)


async def refused(runtime: Runtime, code: str, born: date, ip: str) -> ActivationRefused:
    with pytest.raises(ActivationRefused) as caught:
        await activation.redeem(visitor(runtime), code, born, ip=ip)
    return caught.value


def app_ctx(runtime: Runtime, nir: str) -> Context:
    """A SMART app the holder connected (patient scopes, acting for her)."""
    return Context(runtime, Actor("app", "app-agenda", Scopes.parse("patient/*.*"), "Agenda", subject=nir))


# --- apps and the lifecycle ---------------------------------------------------------------------------------


async def test_an_app_cannot_close_erase_or_oppose_its_holders_space(
    runtime: Runtime, fhir: httpx.AsyncClient, tmp_path: Path
) -> None:
    """An app the holder connected acts on her data within its scopes; closing, destroying or opposing the
    whole space is the holder's own decision (re-authenticated, SECURITY V3 3.7.1), never an app's."""
    space, nir, _ = await active(fhir)
    app = app_ctx(runtime, nir)
    for event in ("close", "erase", "suspend"):
        with pytest.raises(Forbidden):
            await lifecycle.requested(app, space, event)
    assert await lifecycle.state(runtime, space) == "active"
    # It may still read its holder's state (what it shows her), and nobody else's.
    assert (await lifecycle.status(app, space)).state == "active"
    other, _, _ = await active(fhir)
    with pytest.raises(NotFound):
        await lifecycle.status(app, other)

    notified, notified_nir = await registered(runtime, tmp_path)
    with pytest.raises(Forbidden):
        await lifecycle.requested(app_ctx(runtime, notified_nir), notified, "oppose")
    assert await lifecycle.state(runtime, notified) == "registered"


# --- INS enumeration through /space/transitions --------------------------------------------------------------


async def test_transitions_do_not_tell_whether_an_ins_has_a_space(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient
) -> None:
    """Someone else's INS and an INS without a space get the same answer, whatever the event: a 403 for an
    event one's role may not ask would tell that the person has a space (SECURITY threat model)."""
    _, nir, _ = await active(fhir)
    _, mine, _ = await active(fhir)
    me = await bearer(runtime, http, f"holder:{mine}", "patient/*.*")
    feed = httpx.AsyncClient(transport=http._transport, base_url=BASE, auth=fhir.auth)
    unknown = new_nir()
    for client in (me, feed):
        for event in ("suspend", "close", "erase", "oppose"):
            answers = [
                (await client.post("/space/transitions", json={"ins": ins, "event": event})).status_code
                for ins in (nir, unknown)
            ]
            assert answers == [404, 404], (event, answers)
    # Her own space: the role refusal is still a 403 (she sees it exists: it is hers).
    assert (await me.post("/space/transitions", json={"event": "suspend"})).status_code == 403


async def test_a_person_records_an_opposition_only_as_online(runtime: Runtime, tmp_path: Path) -> None:
    """The channel of an opposition is on its proof; only an operator records one by phone or at a counter."""
    parent = person(first_names="Paul", last_name="Martin", birth_date="1980-05-05")
    child = person(
        first_names="Léa", last_name="Martin", birth_date="2015-06-01", representative_1_nir=parent["nir"]
    )
    _, space = await imported(runtime, tmp_path, parent, child)
    rep = Context(runtime, Actor("representative", parent["nir"], Scopes.parse("patient/*.*"), "Paul Martin"))
    with pytest.raises(Exception) as caught:
        await lifecycle.requested(rep, space, "oppose", channel="counter")
    assert getattr(caught.value, "status", None) == 400
    assert await lifecycle.state(runtime, space) == "notified"


async def test_a_free_text_reason_with_a_nul_is_a_400_not_a_500(
    runtime: Runtime, http: httpx.AsyncClient, fhir: httpx.AsyncClient
) -> None:
    space, nir, _ = await active(fhir)
    holder = await bearer(runtime, http, f"holder:{nir}", "patient/*.*")
    answered = await holder.post("/space/transitions", json={"event": "erase", "reason": "a\u0000b"})
    assert answered.status_code == 400, answered.text
    assert await lifecycle.state(runtime, space) == "active"


# --- brute force: the limits ------------------------------------------------------------------------------------


async def test_a_locked_address_does_not_spend_the_services_ceiling(runtime: Runtime, tmp_path: Path) -> None:
    """An address past its limit is refused before it counts against the ceiling of the whole service:
    otherwise one client, even locked out, would keep every person in France from activating."""
    space = await new_space(runtime, tmp_path)
    code = await activation.issue(visitor(runtime), space)
    ip = new_ip()
    for _ in range(runtime.settings.activation_ip_max_attempts + 1):
        await refused(runtime, activation.new_code(), BORN, ip)
    count = await runtime.db.fetchval(
        "n", "SELECT failures FROM signin_throttle WHERE key = $1", activation.GLOBAL_KEY
    )
    other = dataclasses.replace(
        runtime, settings=runtime.settings.model_copy(update={"activation_global_per_minute": count + 3})
    )
    for _ in range(10):  # the locked address keeps trying
        assert (await refused(other, activation.new_code(), BORN, ip)).message == THROTTLED
    assert await activation.redeem(visitor(other), code, BORN, ip=new_ip()) == space


async def test_the_addresses_of_one_ipv6_network_share_one_limit(runtime: Runtime, tmp_path: Path) -> None:
    """Any host gets a /64 of IPv6 addresses: counting each address alone would make the limit per address
    meaningless. The trace still names the address used."""
    prefix = f"2001:db8:{secrets.randbelow(0xFFFF):x}:{secrets.randbelow(0xFFFF):x}"
    limit = runtime.settings.activation_ip_max_attempts
    for i in range(limit):
        assert (await refused(runtime, activation.new_code(), BORN, f"{prefix}::{i + 1:x}")).message == WRONG
    assert (await refused(runtime, activation.new_code(), BORN, f"{prefix}:1:2:3:4")).message == THROTTLED
    assert activation.ip_key("::ffff:10.1.2.3") == activation.ip_key("10.1.2.3")


# --- a representative's code after the child's 18th birthday ---------------------------------------------------


async def _of_age_since_yesterday(runtime: Runtime, space: uuid.UUID) -> None:
    """The code was sent to the parents ten days ago; the child turned 18 yesterday (the majority notice, with
    the young adult's own code, has not been sent yet)."""

    async def work(conn: Conn) -> None:
        await conn.execute(
            "UPDATE space_representative SET until = current_date - 1 WHERE space_id = $1", space
        )
        await conn.execute(
            "UPDATE activation_code SET issued_at = now() - interval '10 days' WHERE space_id = $1", space
        )

    await runtime.db.interaction("t_of_age", work)


async def test_the_parents_code_dies_with_their_rights_at_18(runtime: Runtime, tmp_path: Path) -> None:
    """Both parents' notices carry the child's code. Once the child is 18, a code sent to them must not make
    a holder account on the young adult's INS (it would give a parent the adult's space, documents hidden
    from representatives included), nor oppose for them: the young adult gets their own code."""
    parent = person(first_names="Paul", last_name="Martin", birth_date="1980-05-05")
    born = clock.today().replace(year=clock.today().year - 17)
    child = person(
        first_names="Léa", last_name="Martin", birth_date=born.isoformat(), representative_1_nir=parent["nir"]
    )
    _, space = await imported(runtime, tmp_path, parent, child)
    code = await code_for(runtime, space)
    await _of_age_since_yesterday(runtime, space)
    for use in (activation.activate_with_code, activation.oppose_with_code, activation.check):
        with pytest.raises(ActivationRefused) as caught:
            await use(visitor(runtime), code, born, ip=new_ip())
        assert caught.value.message == WRONG
    assert await lifecycle.state(runtime, space) == "notified"
    assert await accounts.find_by_actor(runtime, "holder", child["nir"]) is None
    # The young adult's own code (issued at 18) works and leads to their account.
    fresh = await code_for(runtime, space)
    done = await activation.activate_with_code(visitor(runtime), fresh, born, ip=new_ip())
    assert not done.holder.minor and done.holder.ins == child["nir"]


# --- the pages: hostile input ------------------------------------------------------------------------------------


async def test_odd_digits_in_the_birth_date_are_a_form_error_not_a_500(app: Any) -> None:
    transport = httpx.ASGITransport(app=app, client=(new_ip(), 51000))
    async with httpx.AsyncClient(transport=transport, base_url=HTTPS) as client:
        page = await client.get("/activation/activer")
        for month in ("²", "①", "٣٣", "𝟘𝟛"):
            answered = await client.post(
                "/activation/activer",
                data={
                    "csrf": csrf_of(page.text),
                    "code": activation.new_code(),
                    "jour": "2",
                    "mois": month,
                    "annee": "1971",
                },
            )
            assert answered.status_code in (200, 400), (month, answered.status_code)


# --- machine clients and closed spaces ---------------------------------------------------------------------------


async def test_a_feed_reads_no_trace_and_no_history_of_a_closed_space(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    """A machine client reaches open and active spaces only: the trace (AuditEvent read and search) and the
    type-level history of a closed space answer as if it did not exist."""
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    space, _, pid = await active(fhir)
    obs = await observation(fhir, pid)

    async def seen() -> tuple[int, int, bool]:
        found = await fhir.get("/AuditEvent", params={"patient": f"Patient/{pid}"})
        entries = found.json().get("entry", []) if found.status_code == 200 else []
        event = entries[0]["resource"]["id"] if entries else ""
        read = (await fhir.get(f"/AuditEvent/{event}")).status_code if event else 404
        history = await fhir.get("/Observation/_history", params={"_since": since, "_count": "100"})
        ids = {e["resource"]["id"] for e in history.json().get("entry", []) if "resource" in e}
        return len(entries), read, obs in ids

    entries, read, in_history = await seen()
    assert entries > 0 and read == 200 and in_history
    await lifecycle.close(Context.system(runtime), space, reason="holder")
    assert await seen() == (0, 404, False)
    await lifecycle.reopen(Context.system(runtime), space)
    assert (await seen())[0] > 0


async def test_a_feed_cannot_write_into_a_closed_space(runtime: Runtime, fhir: httpx.AsyncClient) -> None:
    space, _, pid = await active(fhir)
    obs = await observation(fhir, pid)
    current = (await fhir.get(f"/Observation/{obs}")).json()
    await lifecycle.close(Context.system(runtime), space, reason="holder")
    changed = {**current, "status": "amended"}
    put = await fhir.put(f"/Observation/{obs}", json=changed, headers=FHIR_JSON)
    deleted = await fhir.delete(f"/Observation/{obs}")
    assert put.status_code in (404, 405, 422) and deleted.status_code in (404, 405, 200, 204)
    await lifecycle.reopen(Context.system(runtime), space)
    again = await fhir.get(f"/Observation/{obs}")
    assert again.status_code == 200 and again.json()["meta"]["versionId"] == current["meta"]["versionId"]


async def test_a_feed_still_reads_the_directory(fhir: httpx.AsyncClient) -> None:
    """The directory (Practitioner, Organization…) has no lifecycle state: the machine clients' restriction to
    open and active spaces must not hide it (it did: the directory space has no `space` row)."""
    from tests.factories import new_professional

    rpps, _ = await new_professional(fhir)
    found = await fhir.get("/Practitioner", params={"identifier": f"https://rpps.esante.gouv.fr|{rpps}"})
    assert found.status_code == 200 and len(found.json().get("entry", [])) == 1, found.text
    pid = found.json()["entry"][0]["resource"]["id"]
    assert (await fhir.get(f"/Practitioner/{pid}")).status_code == 200
