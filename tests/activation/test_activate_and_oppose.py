"""What a code does to a space (spaces/activation.py's page functions, spaces/opposition.py): Anne, whose
notice came today, activates her space before it opens, and her code is then spent; a check spends nothing
but counts a wrong birth date; a space already active with an account is not touched and the code stays
good; Paul opposes online: his space keeps only his identity, the code is gone, and his proof of opposition
names him, the date and the channel with a reference the insurer checks; too late once the space is open; a
phone opposition recorded by an operator gets its proof from the command line; a child's space is activated
with the child's code and birth date, without making anyone's account."""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path

import pytest

from espace_sante.access.actors import Actor
from espace_sante.context import Context
from espace_sante.errors import NotFound
from espace_sante.people import accounts
from espace_sante.runtime import Runtime
from espace_sante.spaces import activation, lifecycle, opposition
from espace_sante.spaces.activation import ActivationRefused
from espace_sante.storage.db import Conn
from tests.activation.pdftext import pdf_text
from tests.activation.test_redeem import new_ip
from tests.registry.test_import import person, run, write

OPERATOR = Actor("operator", "agent.dupont", display="Agent Dupont")


async def imported(runtime: Runtime, tmp_path: Path, *rows: dict[str, str]) -> list[uuid.UUID]:
    """Spaces made by the registry import, notified (as the notices do), in the rows' order."""
    await run(runtime, write(tmp_path / f"r-{uuid.uuid4().hex[:8]}.csv", list(rows)))
    spaces = []
    for row in rows:
        space = await lifecycle.space_of_ins(runtime, row["nir"])
        assert space is not None
        await lifecycle.notify(Context.system(runtime), space)
        spaces.append(space)
    return spaces


async def code_for(runtime: Runtime, space: uuid.UUID) -> str:
    return await activation.issue(Context.system(runtime), space)


def visitor(runtime: Runtime) -> Context:
    return Context.system(runtime)


async def kept(runtime: Runtime, space: uuid.UUID) -> dict[str, object]:
    """What rows of the space remain: its resources' types, whether a code row is left, and whether the
    identity the registry gave still waits for the space to open (sealed in registry_person)."""

    async def q(conn: Conn) -> dict[str, object]:
        types = await conn.fetch("SELECT resource_type FROM resource WHERE space_id = $1", space)
        codes = await conn.fetch("SELECT space_id FROM activation_code WHERE space_id = $1", space)
        waits = await conn.fetchval(
            "SELECT pending IS NOT NULL FROM registry_person WHERE space_id = $1", space
        )
        return {
            "resources": sorted(r["resource_type"] for r in types),
            "codes": [str(r[0]) for r in codes],
            "identity": bool(waits),
        }

    return await runtime.db.read("t", q)


async def space_events(runtime: Runtime, space: uuid.UUID) -> list[tuple[str, str, str]]:
    async def q(conn: Conn) -> list[tuple[str, str, str]]:
        rows = await conn.fetch(
            "SELECT action, actor_kind, detail FROM audit_event WHERE space_id = $1 ORDER BY seq", space
        )
        return [(r["action"], r["actor_kind"], r["detail"]) for r in rows]

    return await runtime.db.read("t", q)


async def test_anne_activates_before_the_window_ends_and_her_code_is_spent(
    runtime: Runtime, tmp_path: Path
) -> None:
    anne = person(first_names="Anne", last_name="Lefèvre", birth_date="1950-03-27")
    [space] = await imported(runtime, tmp_path, anne)
    code = await code_for(runtime, space)
    ip = new_ip()
    done = await activation.activate_with_code(visitor(runtime), code.lower(), date(1950, 3, 27), ip=ip)
    assert done.holder.space_id == space and done.holder.ins == anne["nir"]
    assert done.holder.name == "Anne Lefèvre" and not done.holder.minor and not done.holder.has_account
    assert not done.was_active and done.holder.state == "active"
    assert await lifecycle.state(runtime, space) == "active"
    events = await space_events(runtime, space)
    assert ("activation:redeem", "anonymous", f"ip={ip}") in events
    assert ("space:activate", "holder", "notified>active|") in events
    with pytest.raises(ActivationRefused) as again:
        await activation.activate_with_code(visitor(runtime), code, date(1950, 3, 27), ip=new_ip())
    assert again.value.message == activation.WRONG


async def test_a_check_spends_nothing_but_a_wrong_birth_date_counts(runtime: Runtime, tmp_path: Path) -> None:
    [space] = await imported(runtime, tmp_path, person(birth_date="1948-11-02"))
    code = await code_for(runtime, space)
    for _ in range(2):
        holder = await activation.check(visitor(runtime), code, date(1948, 11, 2), ip=new_ip())
        assert holder.space_id == space and holder.state == "notified"
    assert await lifecycle.state(runtime, space) == "notified"
    assert not any(a == "activation:redeem" for a, _, _ in await space_events(runtime, space))
    for _ in range(activation_max(runtime) - 1):
        with pytest.raises(ActivationRefused):
            await activation.check(visitor(runtime), code, date(1948, 11, 3), ip=new_ip())
    with pytest.raises(ActivationRefused) as locked:
        await activation.check(visitor(runtime), code, date(1948, 11, 3), ip=new_ip())
    assert locked.value.locked


def activation_max(runtime: Runtime) -> int:
    return runtime.settings.activation_max_failures


async def test_an_active_space_with_an_account_is_not_touched_and_the_code_stays_good(
    runtime: Runtime, tmp_path: Path
) -> None:
    row = person(birth_date="1960-01-15")
    [space] = await imported(runtime, tmp_path, row)
    await lifecycle.activate(Context.system(runtime), space)
    await accounts.create(
        runtime,
        kind="holder",
        actor_id=row["nir"],
        login=f"p-{uuid.uuid4().hex[:8]}@exemple.fr",
        password="girafe violette sous la pluie 47",
        new_totp=True,
    )
    code = await code_for(runtime, space)
    with pytest.raises(ActivationRefused) as refused:
        await activation.activate_with_code(visitor(runtime), code, date(1960, 1, 15), ip=new_ip())
    assert refused.value.message == activation.ALREADY_ACTIVE
    assert (await activation.check(visitor(runtime), code, date(1960, 1, 15), ip=new_ip())).has_account

    # Active without an account (an activation whose account was never made): the code lets them make one.
    other = person(birth_date="1961-02-16")
    [second] = await imported(runtime, tmp_path, other)
    await lifecycle.activate(Context.system(runtime), second)
    done = await activation.activate_with_code(
        visitor(runtime), await code_for(runtime, second), date(1961, 2, 16), ip=new_ip()
    )
    assert done.was_active and not done.holder.has_account


async def test_paul_opposes_online_keeps_only_his_identity_and_gets_a_proof(
    runtime: Runtime, tmp_path: Path
) -> None:
    paul = person(first_names="Paul", last_name="Ngô", birth_date="1951-07-01")
    [space] = await imported(runtime, tmp_path, paul)
    code = await code_for(runtime, space)
    holder = await activation.oppose_with_code(visitor(runtime), code, date(1951, 7, 1), ip=new_ip())
    assert holder.state == "opposed" and holder.name == "Paul Ngô"
    assert await lifecycle.state(runtime, space) == "opposed"
    # Nothing but his identity, as the registry gave it, never made a Patient (the space never opened).
    assert await kept(runtime, space) == {"resources": [], "codes": [], "identity": True}
    assert ("space:oppose", "holder", "notified>opposed|online") in await space_events(runtime, space)

    found, content = await opposition.proof_pdf(Context(runtime, OPERATOR), space)
    assert found.channel == "online" and found.reference.startswith("OPP-") and len(found.reference) == 23
    text = pdf_text(content)
    assert "Attestation d'opposition" in text and "Nom : Paul Ngô" in text
    assert "Date de naissance : 1er juillet 1951" in text and "en ligne" in text
    assert f"Référence : {found.reference}" in text and "Aucune donnée médicale n'est conservée" in text
    assert "appelez le 34 22" in text and "Assurance maladie" in text
    assert (await opposition.proof_pdf(Context(runtime, OPERATOR), space))[0].reference == found.reference
    # Printing it shows who he is: each print is in his trace, by whom, with the reference only.
    prints = [e for e in await space_events(runtime, space) if e[0] == "opposition:proof"]
    assert prints == [("opposition:proof", "operator", found.reference)] * 2

    checked = await opposition.verify(runtime, paul["nir"], found.reference.lower().replace("-", " "))
    assert checked is not None and checked.space_id == space
    assert await opposition.verify(runtime, paul["nir"], "OPP-2222-2222-2222-2222") is None
    with pytest.raises(NotFound):  # nobody with this INS
        await opposition.verify(runtime, person()["nir"], found.reference)

    # He may ask for a space later: back to registered, the proof still checks.
    await lifecycle.request(Context(runtime, OPERATOR), space)
    again = await opposition.verify(runtime, paul["nir"], found.reference)
    assert again is not None and again.state == "registered"


async def test_too_late_once_open_and_the_code_is_not_spent(runtime: Runtime, tmp_path: Path) -> None:
    [space] = await imported(runtime, tmp_path, person(birth_date="1970-05-05"))
    await lifecycle.activate(Context.system(runtime), space)
    code = await code_for(runtime, space)
    with pytest.raises(ActivationRefused) as refused:
        await activation.oppose_with_code(visitor(runtime), code, date(1970, 5, 5), ip=new_ip())
    assert refused.value.message == activation.TOO_LATE
    assert await lifecycle.state(runtime, space) == "active"
    assert await activation.check(visitor(runtime), code, date(1970, 5, 5), ip=new_ip())


async def test_a_childs_space_is_activated_with_the_childs_code_without_an_account(
    runtime: Runtime, tmp_path: Path
) -> None:
    parent = person(first_names="Paul", last_name="Martin", birth_date="1980-05-05")
    child = person(
        first_names="Léa", last_name="Martin", birth_date="2015-06-01", representative_1_nir=parent["nir"]
    )
    _, space = await imported(runtime, tmp_path, parent, child)
    code = await code_for(runtime, space)
    with pytest.raises(ActivationRefused):  # the parent's birth date is not the child's
        await activation.activate_with_code(visitor(runtime), code, date(1980, 5, 5), ip=new_ip())
    done = await activation.activate_with_code(visitor(runtime), code, date(2015, 6, 1), ip=new_ip())
    assert done.holder.minor and done.holder.name == "Léa Martin"
    assert await lifecycle.state(runtime, space) == "active"
    assert ("space:activate", "system", "notified>active|") in await space_events(runtime, space)
    assert await accounts.find_by_actor(runtime, "holder", child["nir"]) is None


def test_an_operator_records_a_phone_opposition_and_prints_its_proof(tmp_path: Path) -> None:
    from tests.cli.test_commands import run as cli

    data = tmp_path / "data"
    row = person(first_names="Jeanne", last_name="Roux", birth_date="1949-12-24")
    cli(data, "registry", "import", str(write(tmp_path / "r.csv", [row])))
    cli(data, "lifecycle", "set", row["nir"], "oppose", "--channel", "phone", "--operator", "agent.dupont")
    out = tmp_path / "attestation.pdf"
    printed = json.loads(cli(data, "opposition", "proof", row["nir"], "--out", str(out), "--json").stdout)
    assert printed["channel"] == "phone" and printed["file"] == str(out)
    text = pdf_text(out.read_bytes())
    assert "Nom : Jeanne Roux" in text and "par téléphone" in text and printed["reference"] in text
    assert json.loads(cli(data, "opposition", "check", row["nir"], printed["reference"], "--json").stdout)[
        "valid"
    ]
    wrong = cli(data, "opposition", "check", row["nir"], "OPP-2222-2222-2222-2222", check=False)
    assert wrong.returncode == 1 and "référence inconnue" in wrong.stderr
    other = person()
    cli(data, "registry", "import", str(write(tmp_path / "r2.csv", [other])))
    none = cli(data, "opposition", "proof", other["nir"], "--out", str(tmp_path / "x.pdf"), check=False)
    assert none.returncode == 1 and not (tmp_path / "x.pdf").exists()
