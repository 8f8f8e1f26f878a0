"""SMART on FHIR scopes (App Launch 2.2 section "Scopes for requesting clinical data"), both syntaxes:
v1 `system/Patient.read|write|*` and v2 `system/Patient.cruds` (any non-empty subset, in that order).

A scope grants interactions on a resource type (or `*`). v2 scopes with a query (`?category=...`) narrow
access further; we do not support that narrowing yet, so such a scope grants nothing (never more than asked)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

Interaction = str  # one of "c", "r", "u", "d", "s"

_V2 = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.(c?r?u?d?s?)$")
_V1 = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.(read|write|\*)$")
_V1_LETTERS = {"read": "rs", "write": "cud", "*": "cruds"}


@dataclass(frozen=True)
class Grant:
    context: str  # "patient", "user" or "system"
    resource_type: str  # a type or "*"
    interactions: frozenset[str]


@dataclass(frozen=True)
class Scopes:
    grants: tuple[Grant, ...]
    raw: tuple[str, ...]  # the scope strings that were understood, for the token response

    @classmethod
    def none(cls) -> Scopes:
        return cls((), ())

    @classmethod
    def parse(cls, text: str | Iterable[str]) -> Scopes:
        items = text.split() if isinstance(text, str) else list(text)
        grants: list[Grant] = []
        kept: list[str] = []
        for item in items:
            grant = parse_one(item)
            if grant is not None:
                grants.append(grant)
                kept.append(item)
        return cls(tuple(grants), tuple(dict.fromkeys(kept)))

    def allows(self, context: str, resource_type: str, interaction: Interaction) -> bool:
        return any(
            g.context == context and g.resource_type in ("*", resource_type) and interaction in g.interactions
            for g in self.grants
        )

    def within(self, other: Scopes) -> Scopes:
        """Only the scopes of self that `other` covers entirely (a client gets no more than it registered)."""
        kept = [
            raw
            for raw, g in zip(self.raw, self.grants, strict=True)
            if all(other.allows(g.context, g.resource_type, i) for i in g.interactions)
        ]
        return Scopes.parse(kept)

    def __str__(self) -> str:
        return " ".join(self.raw)


def parse_one(scope: str) -> Grant | None:
    """One scope string, or None if it is not a clinical-data scope we grant (openid, launch, queries...)."""
    m = _V1.match(scope)
    if m:
        return Grant(m.group(1), m.group(2), frozenset(_V1_LETTERS[m.group(3)]))
    m = _V2.match(scope)
    if m and m.group(3):
        return Grant(m.group(1), m.group(2), frozenset(m.group(3)))
    return None
