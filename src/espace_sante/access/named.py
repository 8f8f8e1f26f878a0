"""What each of the service's own actors may do (access/actors.py: SYSTEM and the narrow named actors).

Deny by default (STYLE habit 4): a `system` actor whose name is not in `ALLOWANCES` reaches nothing, and a
named actor reaches only the FHIR interactions and the lifecycle events listed for it. `SYSTEM`
("espace-sante") is the one broad bypass left; where it is still used, and why, is listed in
docs/access-policy.md ("The service's own actors"). Pure data and pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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

#: Every resource type (the demo loader writes a whole demonstration world).
ANY_TYPE = "*"


@dataclass(frozen=True)
class Allowance:
    """`interactions`: (action, resource type) pairs of the policy's actions; `events`: lifecycle events
    (access/lifecycle.py) the actor may carry out as the service. `everything`: the broad bypass (SYSTEM)."""

    interactions: frozenset[tuple[str, str]] = frozenset()
    events: frozenset[str] = frozenset()
    #: Whether it records the insurer's feeds of rights (médecin traitant, care teams, representatives).
    rights: bool = False
    everything: bool = False

    def allows(self, action: str, resource_type: str) -> bool:
        return (
            self.everything
            or (action, resource_type) in self.interactions
            or (action, ANY_TYPE) in self.interactions
        )


def _pairs(text: str) -> frozenset[tuple[str, str]]:
    """ "read:Patient create:Patient" -> {("read", "Patient"), ("create", "Patient")}."""
    return frozenset((a, t) for a, _, t in (word.partition(":") for word in text.split()))


ALLOWANCES: Mapping[str, Allowance] = {
    SYSTEM.id: Allowance(everything=True),
    # The activation and opposition pages: the holder's identity to check a code and birth date against (and
    # to name her), the activation or the online opposition of a minor's space by a representative known only
    # by the code (spaces/activation._person). The written Patient on activation is the registry's.
    ACTIVATION.id: Allowance(_pairs("read:Patient"), frozenset({"activate", "oppose"})),
    # Notices: who the holder and her representatives are (name, address, e-mail), and `notify`.
    NOTICES.id: Allowance(_pairs("read:Patient"), frozenset({"notify"})),
    # The lifecycle run: a deceased holder's Patient read for the death date; an opposition keeps the
    # identity (read, then written again under a fresh key); open, close (suspension ended, death), destroy.
    LIFECYCLE.id: Allowance(_pairs("read:Patient create:Patient"), frozenset({"open", "close", "destroy"})),
    # The beneficiaries registry: people's identities, written when a space opens or the registry corrects.
    REGISTRY.id: Allowance(_pairs("read:Patient create:Patient update:Patient")),
    # The documents' runs: a hidden result released (a `patch` of its securityLabel, read first).
    DOCUMENTS.id: Allowance(_pairs("read:DocumentReference patch:DocumentReference")),
    # Who a professional is, from the directory, when they sign in or the trace names them.
    DIRECTORY.id: Allowance(_pairs("read:Practitioner read:PractitionerRole read:Organization")),
    # The demonstration loader writes and reads a demonstration world of every type, never real data.
    DEMO.id: Allowance(
        _pairs(f"create:{ANY_TYPE} update:{ANY_TYPE} read:{ANY_TYPE} search:{ANY_TYPE}"),
        rights=True,
    ),
}


def allowance(actor: Actor) -> Allowance:
    """The allowance of a `system` actor by its name (nothing for any other actor, or an unknown name)."""
    if actor.kind != "system":
        return Allowance()
    return ALLOWANCES.get(actor.id, Allowance())
