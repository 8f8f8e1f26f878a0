"""The habilitation matrix (profession x document category / profile section), loaded from data.

`habilitation.json` beside this file is the default; docs/access-policy.md explains it. The policy asks
`Matrix.allows(profession, "read", category=...)` or `(..., section=...)`. A profession the matrix does not
list gets nothing (deny by default); the holder's own widening or narrowing for their space is applied on
top by the policy (`Override`)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

Operation = Literal["read", "write"]


class MatrixError(ValueError):
    """The matrix data is inconsistent (a typo in a code, a profession listed twice)."""


@dataclass(frozen=True)
class Grant:
    read: frozenset[str]
    write: frozenset[str]
    profile_read: frozenset[str]
    profile_write: frozenset[str]


@dataclass(frozen=True)
class Override:
    """The holder's changes for one profession in their space: categories or sections added or removed."""

    add: frozenset[str] = frozenset()
    remove: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Matrix:
    categories: Mapping[str, str]
    sections: Mapping[str, tuple[str, bool]]
    by_profession: Mapping[str, Grant]
    groups: Mapping[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)

    def allows(
        self,
        profession: str,
        operation: Operation,
        *,
        category: str | None = None,
        section: str | None = None,
        override: Override | None = None,
    ) -> bool:
        """Whether `profession` may `operation` a document of `category` or a profile `section`."""
        if (category is None) == (section is None):
            raise ValueError("ask about exactly one of category or section")
        item = category if category is not None else section
        assert item is not None
        if override is not None and item in override.remove:
            return False
        if override is not None and item in override.add:
            return True
        grant = self.by_profession.get(profession)
        if grant is None:
            return False
        if category is not None:
            return category in (grant.read if operation == "read" else grant.write)
        return section in (grant.profile_read if operation == "read" else grant.profile_write)

    def shared_by_default(self, section: str) -> bool:
        return self.sections.get(section, ("", False))[1]


def _codes(raw: Any, where: str, known: Iterable[str]) -> frozenset[str]:
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise MatrixError(f"{where}: expected a list of codes")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise MatrixError(f"{where}: unknown codes {unknown}")
    return frozenset(raw)


def parse(data: Mapping[str, Any], professions: Iterable[str]) -> Matrix:
    """Check and build a matrix. `professions` is the TRE_G15 code list it must be consistent with."""
    known_professions = set(professions)
    categories = dict(data["categories"])
    sections = {k: (v["label"], bool(v["shared_by_default"])) for k, v in data["profile_sections"].items()}
    by_profession: dict[str, Grant] = {}
    groups: dict[str, tuple[str, tuple[str, ...]]] = {}
    for name, group in data["groups"].items():
        members = _codes(group["professions"], f"groups.{name}.professions", known_professions)
        grant = Grant(
            _codes(group["read"], f"groups.{name}.read", categories),
            _codes(group["write"], f"groups.{name}.write", categories),
            _codes(group["profile_read"], f"groups.{name}.profile_read", sections),
            _codes(group["profile_write"], f"groups.{name}.profile_write", sections),
        )
        for code in members:
            if code in by_profession:
                raise MatrixError(f"profession {code} is in two groups")
            by_profession[code] = grant
        groups[name] = (str(group["label"]), tuple(sorted(members)))
    missing = sorted(known_professions - set(by_profession))
    if missing:
        raise MatrixError(f"professions without a row (say explicitly that they get nothing): {missing}")
    return Matrix(categories, sections, by_profession, groups)


@cache
def default() -> Matrix:
    data = json.loads(resources.files("espace_sante.access").joinpath("habilitation.json").read_text("utf-8"))
    return parse(data, TRE_G15_PROFESSIONS)


#: TRE_G15-ProfessionSante codes (fhir/data/valuesets/profession-TRE_G15-ProfessionSante.json).
TRE_G15_PROFESSIONS = (
    "10", "21", "26", "28", "31", "32", "35", "36", "37", "38", "39", "40", "50", "60", "69", "70", "80",
    "81", "82", "83", "84", "85", "86", "91", "92", "93", "94", "95", "96", "98",
)  # fmt: skip


def markdown_table(matrix: Matrix) -> str:
    """The matrix as the table docs/access-policy.md shows (a test keeps the page equal to the data)."""
    cats = list(matrix.categories)
    head = "| profession | " + " | ".join(f"{matrix.categories[c]} ({c})" for c in cats) + " |"
    rows = [head, "|" + "---|" * (len(cats) + 1)]
    for label, members in matrix.groups.values():
        grant = matrix.by_profession[members[0]] if members else None
        cells = []
        for c in cats:
            if grant is None:
                cells.append("")
            elif c in grant.write:
                cells.append("lire, déposer" if c in grant.read else "déposer")
            else:
                cells.append("lire" if c in grant.read else "—")
        rows.append(f"| {label} ({', '.join(members)}) | " + " | ".join(cells) + " |")
    return "\n".join(rows)


#: Labels of TRE_G15-ProfessionSante (same file), for plain words ("Dr X, pharmacien").
PROFESSION_LABELS: dict[str, str] = {
    "10": "Médecin",
    "21": "Pharmacien",
    "26": "Audioprothésiste",
    "28": "Opticien-Lunetier",
    "31": "Assistant dentaire",
    "32": "Physicien médical",
    "35": "Aide-soignant",
    "36": "Ambulancier",
    "37": "Auxiliaire de puériculture",
    "38": "Préparateur en pharmacie hospitalière",
    "39": "Préparateur en pharmacie",
    "40": "Chirurgien-Dentiste",
    "50": "Sage-Femme",
    "60": "Infirmier",
    "69": "Infirmier psychiatrique",
    "70": "Masseur-Kinésithérapeute",
    "80": "Pédicure-Podologue",
    "81": "Orthoprothésiste",
    "82": "Podo-Orthésiste",
    "83": "Orthopédiste-Orthésiste",
    "84": "Oculariste",
    "85": "Epithésiste",
    "86": "Technicien de labo médical",
    "91": "Orthophoniste",
    "92": "Orthoptiste",
    "93": "Psychologue",
    "94": "Ergothérapeute",
    "95": "Diététicien",
    "96": "Psychomotricien",
    "98": "Manipulateur ERM",
}
