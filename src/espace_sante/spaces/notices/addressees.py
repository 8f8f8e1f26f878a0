"""Who a notice goes to, read from the registry's data (the space's Patient, or the identity waiting for it:
spaces/identity.py): the holder and a minor's representatives, with the notices' own decision to read them
(access/named.py: the `notices` actor reads Patient)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from espace_sante.access.actors import NOTICES
from espace_sante.access.policy import Decision, decide
from espace_sante.runtime import Runtime
from espace_sante.spaces import identity
from espace_sante.spaces.notices import words
from espace_sante.spaces.notices.words import Person, person_of
from espace_sante.storage import people
from espace_sante.storage.db import Conn


def reading() -> Decision:
    """The notices' own decision to read identities (access/named.py: `notices` reads Patient)."""
    return decide(NOTICES, "read", "Patient")


async def holder(conn: Conn, rt: Runtime, space_id: uuid.UUID) -> Person | None:
    """The space's holder: from its Patient, or the registry's identity waiting for it (spaces/identity.py)."""
    found = await identity.body(conn, rt, space_id, decision=reading())
    return None if found is None else person_of(found[1])


async def representatives(
    conn: Conn, rt: Runtime, space_id: uuid.UUID
) -> tuple[list[str], dict[str, Person]]:
    """The INS of the space's representatives whose rights run, and those of them the registry knows."""
    rep_ins = await people.representatives_of(conn, reading(), space_id)
    found = await identity.by_ins(conn, rt, rep_ins, decision=reading())
    return rep_ins, {ins: person_of(body) for ins, body in found.items()}


async def people_by_ins(conn: Conn, rt: Runtime, nirs: list[str]) -> dict[str, Person]:
    """The registry data of the people these INS name (their Patients or waiting identities, in bulk)."""
    return {
        ins: person_of(body)
        for ins, body in (await identity.by_ins(conn, rt, nirs, decision=reading())).items()
    }


@dataclass(frozen=True)
class Addressee:
    """Who one space's notice goes to: its holder and, for a minor (a space with representatives whose rights
    run), the representatives found in the registry (reachable or not: `recipients` keeps those with an e-mail
    or an address). `notices send` reads them from their Patients or sealed identities (spaces/identity.py);
    the registry import (`registry import --notify`) has them from the rows it is writing."""

    space_id: uuid.UUID
    holder: Person
    representatives: tuple[Person, ...] = ()
    minor: bool = False

    def recipients(self) -> list[tuple[Person, str | None]]:
        reps = [r for r in self.representatives if r.email or r.address_line]
        return words.recipients(self.holder, reps, self.minor)
