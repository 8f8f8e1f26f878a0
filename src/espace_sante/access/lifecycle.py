"""Who may see or change the lifecycle state of a space (PRODUCT.md section 2, docs/lifecycle.md): the rule,
beside the policy, pure and without I/O. spaces/lifecycle.py reads the facts (the space's state, whether the
actor is its holder or a representative with rights) and asks here, as every other capability asks
access/policy.py.

    registered --notify--> notified --open (run, window ended)--> open --activate--> active
    registered|notified --oppose--> opposed --request--> registered
    registered|notified|open --activate--> active
    open|active --suspend--> suspended --resume--> (the state before) | --close (run)--> closed
    registered..active|suspended --close (holder, death)--> closed --reopen--> active
    open|active|closed --erase (holder asks destruction)--> closed, destroyed by the run after the delay
    closed --destroy (run: archive period ended, or the asked destruction is due)--> destroyed"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from espace_sante.access import named
from espace_sante.access.actors import Actor
from espace_sante.access.reasons import Code, Reason

#: Who may act: the space's holder (or a legal representative with rights), an operator of the insurer, the
#: service itself (the periodic run, the registry, the notices: each named actor only for the events its
#: allowance lists, access/named.py). Machine clients never change a state, nor do the apps a holder
#: connected: they read the state for her, but closing, destroying or opposing the whole space is her own
#: decision (review of 2026-12-03).
Who = Literal["person", "operator", "system"]
#: Actors acting as or for a person: they see only their own space (or a represented minor's).
PEOPLE = frozenset({"holder", "representative", "app"})
#: How a person relates to a space (storage tells; the rule decides): its holder, or a legal representative
#: whose rights have not ended.
Relation = Literal["holder", "representative", ""]


@dataclass(frozen=True)
class Transition:
    sources: frozenset[str]
    target: str  # "prior": back to the state before the suspension
    who: frozenset[str] = field(default_factory=frozenset)


def _t(sources: str, target: str, who: str) -> Transition:
    return Transition(frozenset(sources.split()), target, frozenset(who.split()))


#: THE transition table. Nothing else writes `space.state` (storage/lifecycle.py takes the sources from here).
TRANSITIONS: Mapping[str, Transition] = {
    "notify": _t("registered", "notified", "system operator"),
    "oppose": _t("registered notified", "opposed", "person operator system"),
    "request": _t("opposed", "registered", "person operator system"),
    "open": _t("notified", "open", "system"),
    "activate": _t("registered notified open", "active", "person system"),
    "suspend": _t("open active", "suspended", "operator system"),
    "resume": _t("suspended", "prior", "person operator system"),
    "close": _t("registered notified open active suspended", "closed", "person operator system"),
    "reopen": _t("closed", "active", "person operator system"),
    "erase": _t("open active closed", "closed", "person operator system"),
    "destroy": _t("closed", "destroyed", "system"),
}


def who(actor: Actor) -> str:
    """The role the transition table knows the actor by."""
    if actor.kind in ("holder", "representative"):
        return "person"
    return actor.kind


def relation_needed(actor: Actor) -> bool:
    """Whether the answer depends on how the actor relates to the space (people do; the insurer does not)."""
    return actor.kind in PEOPLE


def sees(actor: Actor, relation: Relation) -> bool:
    """Whether the actor may know the space exists: a person their own space (an app its holder's), or a
    minor's they represent with rights; the insurer's operators and the service any. Anyone else is answered
    "not found", before any other answer, so that no refusal tells whether someone else's INS has a space."""
    if actor.kind in ("holder", "app"):
        return relation == "holder"
    if actor.kind == "representative":
        return relation == "representative"
    return actor.kind in ("operator", "system")


def may(actor: Actor, event: str) -> tuple[bool, Reason]:
    """Whether the actor's role may carry out `event` (whatever the state: `TRANSITIONS` sources say that), and
    why: a reason of access/reasons.py, worded there like the policy's."""
    rule = TRANSITIONS.get(event)
    if rule is None:
        return False, Reason.of(Code.UNKNOWN_ACTION, action=event)
    role = who(actor)
    if role not in rule.who:
        return False, Reason.of(Code.NO_STATE_CHANGE, kind=actor.kind, event=event)
    if actor.kind == "system":
        allowed = named.allowance(actor)
        if not (allowed.everything or event in allowed.events):
            return False, Reason.of(Code.NO_ALLOWANCE, actor=actor.id, event=event)
    return True, Reason.of(Code.STATE_CHANGE, role=role, event=event)
