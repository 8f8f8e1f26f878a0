"""The one decision point (SECURITY V1 1.4.4, V4). Every read and write of FHIR data asks `decide` and passes
the returned `Decision` to storage; storage refuses to run without one. Only this module can make a Decision.

Deny by default (STYLE habit 4): an actor kind without a rule here gets nothing. Today the rules cover machine
clients with SMART `system/` scopes and the named SYSTEM actor; the access issue adds people, bases (care team,
consent, médecin traitant, emergency) and document flags as more rules of the same function."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

from .actors import Actor

Action = Literal["create", "read", "vread", "update", "patch", "delete", "search", "history"]

_INTERACTION: dict[str, str] = {
    "create": "c",
    "read": "r",
    "vread": "r",
    "history": "r",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "search": "s",
}

_MINT = object()


@dataclass(frozen=True)
class Decision:
    """The answer of the policy for (actor, action, resource type, space).

    `spaces` is the SQL scope: None means every space the rule allows (system feeds), otherwise only these.
    `reason` is a plain-words basis, for the trace and for refusals."""

    actor: Actor
    action: Action
    resource_type: str
    allowed: bool
    reason: str
    spaces: frozenset[uuid.UUID] | None = None
    _mint: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._mint is not _MINT:
            raise TypeError("only espace_sante.access.policy can make a Decision")

    def covers(self, space_id: uuid.UUID) -> bool:
        return self.allowed and (self.spaces is None or space_id in self.spaces)

    def require(self, action: Action, resource_type: str) -> None:
        """Storage's guard: this decision must allow exactly this action on this type."""
        if not self.allowed or self.resource_type != resource_type or self.action != action:
            raise PermissionError(
                f"decision for {self.action} {self.resource_type} used for {action} {resource_type}"
            )


def decide(actor: Actor, action: Action, resource_type: str, space_id: uuid.UUID | None = None) -> Decision:
    """Decide whether `actor` may do `action` on `resource_type` (in `space_id` when known)."""
    try:
        allowed, reason = _rule(actor, action, resource_type)
    except Exception:  # fail closed (ASVS 4.1.5): a fault in a rule refuses
        allowed, reason = False, "policy error"
    return Decision(actor, action, resource_type, allowed, reason, None, _MINT)


def _rule(actor: Actor, action: Action, resource_type: str) -> tuple[bool, str]:
    if action not in _INTERACTION:
        return False, "unknown action"
    if actor.kind == "system":
        return True, "system actor"
    if actor.kind == "client":
        letter = _INTERACTION[action]
        if actor.scopes.allows("system", resource_type, letter):
            return True, f"system scope grants {resource_type}.{letter}"
        return False, f"no system scope for {resource_type}.{letter}"
    return False, f"no rule for {actor.kind} actors yet"
