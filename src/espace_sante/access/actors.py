"""Who is acting. Built once per request (or job) and passed to every service call.

`id` is the actor's national identifier: the INS for a holder or a legal representative, the RPPS for a health
professional, the login for an operator, the client id for a machine client or a referenced app. What a
person reached at sign-in (`acr`) and through which software they act (`via`) travel with them so the policy
can require a level and the trace can name the software."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from espace_sante.access.scopes import Scopes

ActorKind = Literal["system", "client", "holder", "representative", "practitioner", "operator", "app"]
PERSON_KINDS: frozenset[str] = frozenset({"holder", "representative", "practitioner", "operator"})

#: Assurance levels reached at sign-in, weakest first (eIDAS low / substantial / high, as FranceConnect+
#: returns them in `acr`). Local password + TOTP and passkeys reach "eidas2".
LEVELS = ("eidas1", "eidas2", "eidas3")


def level_at_least(acr: str, required: str) -> bool:
    """Whether the level `acr` reached meets `required` (an unknown or empty level meets nothing)."""
    if acr not in LEVELS:
        return False
    return LEVELS.index(acr) >= LEVELS.index(required)


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    id: str
    scopes: Scopes = field(default_factory=Scopes.none)
    display: str = ""
    #: An app's holder: the INS of the person who connected it (the app reads only that space).
    subject: str = ""
    #: The OAuth client a person acts through ("" for our own portals' sessions).
    via: str = ""
    #: The assurance level reached at sign-in (see LEVELS); "" for machines.
    acr: str = ""
    #: A professional's TRE_G15 profession, specialty code, directory Practitioner id and organisation FINESS.
    profession: str = ""
    specialty: str = ""
    practitioner_id: str = ""
    organisation: str = ""
    #: When the person last proved a factor (a portal session's sign-in or step-up; a development token's
    #: issue); None when nothing says (SMART tokens, machines). people/stepup.py reads it.
    auth_time: datetime | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


#: The one bypass of the policy's person rules: jobs, migrations and the demo loader act as this actor.
#: Grep for SYSTEM to find every place that uses it.
SYSTEM = Actor("system", "espace-sante", Scopes.parse("system/*.*"), "espace-sante")
