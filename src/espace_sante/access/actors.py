"""Who is acting. Built once per request (or job) and passed to every service call.

This issue has machine clients and the named system actor; the access issue adds holders, representatives,
professionals, operators and apps as more kinds of the same `Actor`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .scopes import Scopes

ActorKind = Literal["system", "client", "holder", "representative", "practitioner", "operator", "app"]


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    id: str
    scopes: Scopes = field(default_factory=Scopes.none)
    display: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


#: The one bypass of the policy's person rules: jobs, migrations and the demo loader act as this actor.
#: Grep for SYSTEM to find every place that uses it.
SYSTEM = Actor("system", "espace-sante", Scopes.parse("system/*.*"), "espace-sante")
