"""Checking one space's trace: walk its chain from the genesis, recompute every hash, compare the chain head and
every seal, and name the first broken link.

Every hash is recomputed from the stored fields and the *recomputed* previous hash, never from the stored
`hash` column: the stored hashes are only compared, so the walk trusts nothing but the genesis and the seals.
The chain arrives as an async iterator and is consumed once, so memory stays constant however long it is; only
the space's seals (one per sealing run in which its head moved) are held in a list.

Walking stops at the first broken link: after it, every later hash differs too and would only bury the
finding."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from espace_sante.audit.seal import KeySet
from espace_sante.storage.audit import GENESIS, Seal, StoredRecord, chain_hash

Problem = Literal[
    "altered", "link", "missing", "extra", "head", "seal-mismatch", "seal-signature", "seal-unknown-key"
]


@dataclass(frozen=True)
class Break:
    """The first broken link of a space's chain, in words an operator can act on."""

    space_id: uuid.UUID
    seq: int
    problem: Problem
    message: str
    message_fr: str

    def as_dict(self) -> dict[str, object]:
        return {
            "space": str(self.space_id),
            "seq": self.seq,
            "problem": self.problem,
            "message": self.message,
            "message_fr": self.message_fr,
        }


@dataclass(frozen=True)
class SpaceReport:
    space_id: uuid.UUID
    #: Records whose hash was recomputed (up to the first broken link).
    records: int
    #: Seals checked (position and signature).
    seals: int
    broken: Break | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None

    def as_dict(self) -> dict[str, object]:
        return {
            "space": str(self.space_id),
            "records": self.records,
            "seals": self.seals,
            "ok": self.ok,
            "broken": None if self.broken is None else self.broken.as_dict(),
        }


@dataclass
class Report:
    """Totals over the spaces checked, and the broken ones. The intact spaces are counted, not kept: a national
    instance has tens of millions of spaces (`on_space` in the service sees each one as it is checked)."""

    spaces: int = 0
    records: int = 0
    seals: int = 0
    broken: list[SpaceReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.broken

    def add(self, space: SpaceReport) -> None:
        self.spaces += 1
        self.records += space.records
        self.seals += space.seals
        if space.broken is not None:
            self.broken.append(space)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "spaces": self.spaces,
            "records": self.records,
            "seals": self.seals,
            "broken": [s.as_dict() for s in self.broken],
        }


async def check_space(
    space_id: uuid.UUID,
    records: AsyncIterator[StoredRecord],
    head: tuple[int, bytes] | None,
    seals: Sequence[Seal],
    keys: KeySet,
    head_now: Callable[[], Awaitable[tuple[int, bytes] | None]] | None = None,
) -> SpaceReport:
    """Check one space's chain. `seals` must be read before `head`, and `head` before the walk starts (see
    audit.chains): then every legitimate seal lies at or before the head, and records appended after the head
    was read (by writers still running) are simply not part of this check.

    `head_now` reads the head again. A record beyond the head read first is a writer's only if the head has
    since moved past it (a record and its head move in one transaction); otherwise it was put there by hand,
    and the holder's view would show it. Without `head_now`, such a record is taken for a writer's.

    Checks come in the order of positions, so that the break named is the first one: a seal is judged before
    any record after its position, and at the end the earliest of what remains is named."""
    last_seq = head[0] if head is not None else None
    expected, prev, count, checked_seals = 1, GENESIS, 0, 0
    pending = sorted(seals, key=lambda s: s.seq)
    nseal = 0
    beyond: int | None = None  # the first record after the head read first

    def broken(seq: int, problem: Problem, en: str, fr: str) -> SpaceReport:
        return SpaceReport(space_id, count, checked_seals, Break(space_id, seq, problem, en, fr))

    async for stored in records:
        if last_seq is not None and stored.seq > last_seq:
            beyond = stored.seq
            break
        # A seal at a position no record reached (before the start of the chain, or at a missing record
        # after a record put before the start) is judged before that record.
        if nseal < len(pending) and pending[nseal].seq < min(stored.seq, expected):
            return broken(pending[nseal].seq, *_unmatched(pending[nseal], keys))
        if stored.seq != expected:
            if stored.seq < 1:
                return broken(
                    stored.seq,
                    "extra",
                    f"record {stored.seq} was added: the chain starts at record 1",
                    f"l'enregistrement {stored.seq} a été ajouté : la chaîne commence à l'enregistrement 1",
                )
            if stored.seq < expected:  # only a broken primary key or query could do this
                return broken(
                    stored.seq,
                    "link",
                    f"record {stored.seq} appears out of order",
                    f"l'enregistrement {stored.seq} est hors d'ordre",
                )
            if stored.seq == expected + 1:
                en, fr = f"record {expected} is missing", f"l'enregistrement {expected} manque"
            else:  # a run of missing records is one finding
                last = stored.seq - 1
                en = f"records {expected} to {last} are missing"
                fr = f"les enregistrements {expected} à {last} manquent"
            return broken(expected, "missing", en, fr)
        if stored.prev_hash != prev:
            return broken(
                stored.seq,
                "link",
                f"record {stored.seq} was altered: its link to the previous record does not match",
                f"l'enregistrement {stored.seq} a été modifié : son lien au précédent ne correspond pas",
            )
        digest = chain_hash(prev, space_id, stored.seq, stored.record)
        if digest != stored.hash:
            return broken(
                stored.seq,
                "altered",
                f"record {stored.seq} was altered: its content does not match its hash",
                f"l'enregistrement {stored.seq} a été modifié : son contenu ne correspond pas à son empreinte",
            )
        count += 1
        while nseal < len(pending) and pending[nseal].seq <= stored.seq:
            found = _check_seal(pending[nseal], stored.seq, digest, keys)
            if found is not None:
                return broken(pending[nseal].seq, *found)
            checked_seals += 1
            nseal += 1
        prev, expected = digest, stored.seq + 1

    end = expected - 1  # the last record verified
    if head is None:
        if count:
            return broken(end, "head", "head mismatch: the space has records but no chain head", _NO_HEAD_FR)
    else:
        head_seq, head_hash = head
        if head_seq > end:
            return broken(
                end + 1,
                "head",
                f"head mismatch: the chain's head is at record {head_seq} but the records end at {end} "
                f"(record {end + 1} is missing)",
                f"la tête de chaîne est à l'enregistrement {head_seq} mais les enregistrements s'arrêtent à "
                f"{end} (l'enregistrement {end + 1} manque)",
            )
        if head_hash != prev:
            return broken(
                end,
                "head",
                f"head mismatch: the chain's head does not match record {end}",
                f"la tête de chaîne ne correspond pas à l'enregistrement {end}",
            )
    if beyond is not None and head_now is not None:
        now = await head_now()
        if now is not None and now[0] >= beyond:
            beyond = None  # a writer's: the head has moved past it since
    else:
        beyond = None
    if nseal < len(pending) and (beyond is None or pending[nseal].seq <= beyond):
        return broken(pending[nseal].seq, *_unmatched(pending[nseal], keys))
    if beyond is not None:
        return broken(
            beyond,
            "extra",
            f"record {beyond} was added after the chain's head (record {end})",
            f"l'enregistrement {beyond} a été ajouté après la tête de chaîne (l'enregistrement {end})",
        )
    return SpaceReport(space_id, count, checked_seals)


_NO_HEAD_FR = "la tête de chaîne manque alors que l'espace a des enregistrements"


def _check_seal(seal: Seal, seq: int | None, digest: bytes, keys: KeySet) -> tuple[Problem, str, str] | None:
    """A seal's key and signature first (an unsigned claim says nothing about the chain), then its position:
    `seq` is the verified record at or after the seal's position, None when no verified record is there."""
    at = seal.seq
    if not keys.knows(seal):
        return (
            "seal-unknown-key",
            f"seal at {at} is signed by an unknown key ({_shown(seal.key_id)})",
            f"le sceau en {at} est signé par une clé inconnue ({_shown(seal.key_id)})",
        )
    if not keys.valid(seal):
        return "seal-signature", f"bad signature on seal at {at}", f"signature invalide sur le sceau en {at}"
    if seq is None:
        return (
            "seal-mismatch",
            f"seal at {at} does not match the chain: the chain has no record {at}",
            f"le sceau en {at} ne correspond pas à la chaîne : il n'y a pas d'enregistrement {at}",
        )
    if at != seq or seal.head != digest:
        return (
            "seal-mismatch",
            f"seal at {at} does not match the chain",
            f"le sceau en {at} ne correspond pas à la chaîne",
        )
    return None


def _unmatched(seal: Seal, keys: KeySet) -> tuple[Problem, str, str]:
    """What is wrong with a seal at a position no verified record has."""
    found = _check_seal(seal, None, b"", keys)
    assert found is not None  # with no record to match, a seal never checks
    return found


def _shown(text: str) -> str:
    """A stored string quoted into a message only as printable text: whoever could edit the table could
    otherwise write control sequences to the operator's terminal."""
    return text if text.isprintable() and len(text) <= 64 else ascii(text[:64])
