"""Every bypass of the person rules has a name (issue 15): the service acts through narrow named actors, each
reaching only its allowance (access/named.py); the broad `SYSTEM` is left where docs/access-policy.md says
why, and never on a page or an API route."""

from __future__ import annotations

import ast
import uuid
from pathlib import Path

import pytest

from espace_sante.access import lifecycle as rule
from espace_sante.access import named
from espace_sante.access.actors import (
    ACTIVATION,
    DEMO,
    DIRECTORY,
    DOCUMENTS,
    LIFECYCLE,
    NOTICES,
    REGISTRY,
    SYSTEM,
    Actor,
)
from espace_sante.access.policy import SpaceFacts, decide, may_change
from espace_sante.access.reasons import Code, Reason
from espace_sante.access.scopes import Scopes
from espace_sante.context import Context
from espace_sante.runtime import Runtime
from espace_sante.spaces import lifecycle
from espace_sante.storage.db import Conn
from tests.factories import new_nir
from tests.registry.test_import import person, run, write

SRC = Path(__file__).resolve().parents[2] / "src" / "espace_sante"
POLICY_DOC = Path(__file__).resolve().parents[2] / "docs" / "access-policy.md"
NAMED = (ACTIVATION, NOTICES, LIFECYCLE, REGISTRY, DEMO, DOCUMENTS, DIRECTORY)


def _uses_system(path: Path) -> bool:
    """Whether a module names `SYSTEM` (the actor) or calls `Context.system`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "SYSTEM":
            return True
        if isinstance(node, ast.alias) and node.name == "SYSTEM":
            return True
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "system"
            and isinstance(node.value, ast.Name)
            and node.value.id == "Context"
        ):
            return True
    return False


def _system_users() -> set[str]:
    return {
        str(p.relative_to(SRC.parent))
        for p in SRC.rglob("*.py")
        if _uses_system(p) and p.parent.name != "access" and p.name != "context.py"
    }


def test_no_page_or_api_route_acts_as_the_system() -> None:
    """A visitor of a page or a caller of the API is a person, a machine client, or a named actor that
    reaches only what that page needs (the activation pages' `activation`): never the broad SYSTEM."""
    surfaces = {u for u in _system_users() if u.split("/")[1] in ("web", "api")}
    assert surfaces == set()


def test_every_remaining_use_of_system_is_listed_with_its_reason() -> None:
    section = (
        POLICY_DOC.read_text(encoding="utf-8").split("## Les acteurs du service", 1)[1].split("\n## ", 1)[0]
    )
    unlisted = sorted(u for u in _system_users() if f"`{u}`" not in section)
    assert unlisted == [], "add each to docs/access-policy.md, 'Les acteurs du service', with its reason"


def test_each_named_actor_reaches_only_its_allowance() -> None:
    assert all(a.kind == "system" and a.id in named.ALLOWANCES for a in NAMED)
    assert decide(ACTIVATION, "read", "Patient").allowed
    assert decide(ACTIVATION, "read", "Patient").slices is None  # a service read: every space, by name
    assert not decide(ACTIVATION, "read", "DocumentReference").allowed
    assert not decide(ACTIVATION, "create", "Patient").allowed
    assert not decide(NOTICES, "read", "Observation").allowed
    assert not decide(NOTICES, "update", "Patient").allowed
    assert decide(REGISTRY, "update", "Patient").allowed
    assert not decide(REGISTRY, "read", "DocumentReference").allowed
    assert not decide(LIFECYCLE, "read", "Binary").allowed
    assert decide(DOCUMENTS, "patch", "DocumentReference").allowed
    assert not decide(DOCUMENTS, "read", "Binary").allowed
    assert decide(DIRECTORY, "read", "Practitioner").allowed
    assert not decide(DIRECTORY, "read", "Patient").allowed
    assert decide(DEMO, "create", "Observation").allowed
    assert not decide(DEMO, "delete", "Observation").allowed
    assert decide(SYSTEM, "delete", "Observation").allowed  # the one broad bypass


def test_a_system_actor_without_a_name_in_the_table_reaches_nothing() -> None:
    stranger = Actor("system", "someone-new", display="espace-sante")
    assert not decide(stranger, "read", "Patient").allowed
    assert decide(stranger, "read", "Patient").reason == Reason.of(
        Code.NO_ALLOWANCE, actor="someone-new", type="Patient", interaction="r"
    )
    assert rule.may(stranger, "close") == (
        False,
        Reason.of(Code.NO_ALLOWANCE, actor="someone-new", event="close"),
    )
    facts = SpaceFacts(space_id=uuid.uuid4(), state="active")
    assert may_change(stranger, "care_team", facts)[0] is False
    assert may_change(NOTICES, "care_team", facts)[0] is False
    assert may_change(DEMO, "care_team", facts)[0] is True


@pytest.mark.parametrize(
    ("actor", "event", "allowed"),
    [
        (NOTICES, "notify", True),
        (NOTICES, "destroy", False),
        (LIFECYCLE, "open", True),
        (LIFECYCLE, "destroy", True),
        (LIFECYCLE, "notify", False),
        (ACTIVATION, "activate", True),
        (ACTIVATION, "oppose", True),
        (ACTIVATION, "close", False),
        (REGISTRY, "open", False),
        (SYSTEM, "destroy", True),
        (Actor("operator", "agent-12"), "suspend", True),
        (Actor("operator", "agent-12"), "destroy", False),
        (Actor("holder", "1"), "close", True),
        (Actor("holder", "1"), "notify", False),
        (Actor("app", "app-1", subject="1"), "close", False),
        (Actor("client", "feed"), "close", False),
    ],
)
def test_who_may_change_a_space_is_decided_beside_the_policy(actor: Actor, event: str, allowed: bool) -> None:
    assert rule.may(actor, event)[0] is allowed


def test_a_person_sees_only_her_space_or_a_minor_she_represents() -> None:
    holder, parent = Actor("holder", "1"), Actor("representative", "2")
    assert (
        rule.sees(holder, "holder") and not rule.sees(holder, "representative") and not rule.sees(holder, "")
    )
    assert rule.sees(parent, "representative") and not rule.sees(parent, "holder")
    assert rule.sees(Actor("app", "a", subject="1"), "holder")
    assert rule.sees(Actor("operator", "agent-12"), "") and rule.sees(LIFECYCLE, "")
    assert not rule.sees(Actor("client", "feed"), "") and not rule.sees(Actor("practitioner", "1"), "")


async def test_the_child_chooser_reads_the_childs_identity_as_her_traced_in_the_childs_chain(
    runtime: Runtime, tmp_path: Path
) -> None:
    """Her son's space was made from the registry and waits to open: the chooser names him from the identity
    waiting there, read as his representative under the policy (not as the service), and his trace says so."""
    parent = new_nir()
    leo = person(first_names="Léo", last_name="Martin", birth_date="2015-05-05", representative_1_nir=parent)
    await run(runtime, write(tmp_path / "r.csv", [leo]))
    her = Context(runtime, Actor("holder", parent, Scopes.parse("patient/*.*"), "Marie Martin"))

    found = await lifecycle.represented(her)

    assert [(c.name, c.ins, c.state) for c in found] == [("Léo Martin", leo["nir"], "registered")]

    async def reads(conn: Conn) -> list[tuple[str, str, str, str]]:
        rows = await conn.fetch(
            "SELECT action, actor_kind, actor_id, entity_type FROM audit_event WHERE space_id = $1 "
            "AND action = 'resource:read' ORDER BY seq",
            found[0].space_id,
        )
        return [(r["action"], r["actor_kind"], r["actor_id"], r["entity_type"]) for r in rows]

    assert await runtime.db.read("t_reads", reads) == [("resource:read", "representative", parent, "Patient")]
    stranger = Context(runtime, Actor("holder", new_nir(), Scopes.parse("patient/*.*")))
    assert await lifecycle.represented(stranger) == []
