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


#: The one broad bypass of the policy's person rules: what no narrower actor below covers acts as this actor
#: (the platform operator's repairs from the command line, run without an operator's login). Every remaining use is
#: listed with its reason in docs/access-policy.md ("The service's own actors"); a guard test keeps it out of
#: web/ and api/. Grep for SYSTEM to find every place that uses it.
SYSTEM = Actor("system", "espace-sante", Scopes.parse("system/*.*"), "espace-sante")

# Narrow actors of the service itself (issue 15): each is a `system` actor with its own name, so the trace
# says which part of the service acted, and reaches only what access/named.py allows it (deny by default).
# They carry no scopes: their allowance is the table there, not `system/*.*`.

#: An anonymous visitor of the activation and opposition pages, before (or while) their code is checked.
ACTIVATION = Actor("system", "activation", display="espace-sante")
#: The notices run: who gets a notice (the holder's identity, their representatives'), and `notify`.
NOTICES = Actor("system", "notices", display="espace-sante")
#: The lifecycle run: opening, closing, destroying spaces, and the identity an opposition keeps.
LIFECYCLE = Actor("system", "lifecycle", display="espace-sante")
#: The insurer's beneficiaries registry feed: it writes people's identities (Patient), nothing else.
REGISTRY = Actor("system", "registry", display="espace-sante")
#: The demonstration data loader (`make run`, `espace-sante demo`): never run against real data.
DEMO = Actor("system", "demo", display="espace-sante")
#: The documents' own runs: a result hidden until its consultation released after its delay (R1111-53), the
#: content store checked and its orphans collected (`documents release|verify|orphans`, the documents job).
DOCUMENTS = Actor("system", "documents", display="espace-sante")
#: Sign-in and the trace's words: a professional's name, profession and organisation from the directory of
#: professionals (public health-system data, not medical data).
DIRECTORY = Actor("system", "directory", display="espace-sante")
