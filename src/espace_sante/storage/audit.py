"""The trace as stored: one record, the canonical bytes its hash covers, and its SQL. The record's format
lives here, beside the table and the `audit_append` function that hash it, so that the trace's capability
(`audit/`: writing, sealing, verifying, wording) sits above storage and storage imports nothing from it.

The vocabulary is one list of `subject:verb` actions (STYLE habit 6). A record names who acted (actor and
the decision's basis), on what (type, id, version) and with what outcome, using FHIR AuditEvent outcome codes
(0 success, 4 minor failure, 8 serious failure). It never holds medical content: no resource body, no search
values (a search records the parameter names it used).

The SQL: append a record to a space's hash chain, read it back, read seals.

`append` runs inside the caller's transaction: the record commits with the action or not at all. Allocating
the sequence number locks the space's chain row until that transaction ends, so concurrent writers to one
space are serialised and the chain stays linear; writers to different spaces never wait for each other."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from espace_sante.storage import locks
from espace_sante.storage.db import Conn

Action = Literal[
    "resource:create",
    "resource:read",
    "resource:vread",
    "resource:update",
    "resource:delete",
    "resource:search",
    "resource:history",
    "access:refused",
    # Documents (record/documents/): a document's content retrieved (ITI-68), masked from or shown again
    # to professionals by the holder, hidden from the holder until the announcement consultation, released
    # (by its author, the médecin traitant, or on its own after a month). Detail: the visibility code.
    "document:download",
    "document:mask",
    "document:unmask",
    "document:hide",
    "document:release",
    # Sign-in and accounts (directory chain): sign-ins, failures, lockouts, sessions ended, credentials changed.
    "signin:success",
    "signin:failure",
    "signin:locked",
    "session:end",
    "session:revoke",
    "credential:add",
    "credential:change",
    "credential:remove",
    "account:create",
    "account:disable",
    # Changes of rights (rights/changes.py): detail is "basis|who|who's name" or the setting changed.
    "rights:grant",
    "rights:revoke",
    "rights:block",
    "rights:unblock",
    "rights:settings",
    "rights:notifications",
    "rights:representative",
    "rights:preview",
    "access:emergency",
    # A development token minted by `espace-sante token issue` (directory chain).
    "token:issue",
    # OAuth 2 / SMART (oauth/tokens.py, oauth/authorize.py): a token issued to a client (detail "grant type|
    # scope"), a person's grant to an app or software given or withdrawn (detail "client id|name|scope", basis
    # the reason: disconnected, refresh_reuse). In the holder's space, else the directory's chain.
    "oauth:token",
    "oauth:grant",
    "oauth:withdraw",
    # Sign-in through a national identity provider (people/federation.py; detail "provider|acr"), and a
    # refused one (outcome 8, detail "provider|reason"). Directory chain.
    "federation:signin",
    "federation:refused",
    # Activation codes (spaces/activation.py): a code issued or re-issued (detail "until=YYYY-MM-DD", basis
    # "reissue" when it replaced one), redeemed, refused (basis: "wrong code", "wrong birth date", "expired",
    # "used", "locked", "throttled"; never the code nor the date typed), and locked after too many failures.
    # In the space's chain when the code named a space, else the directory's chain.
    "activation:issue",
    "activation:redeem",
    "activation:failure",
    "activation:locked",
    # The lifecycle of a space (spaces/lifecycle.py), in the space's own chain: detail is "from>to|reason"
    # (reason: the opposition's channel, or why the space was closed: holder, death, suspension, erase).
    # `space:register` opens the chain of a space the registry import made (its Patient is written when the
    # space opens: spaces/identity.py); detail "notified|until=YYYY-MM-DD" when the import notified it in
    # the same transaction (`registry import --notify`: the `space:notify` and `activation:issue` of
    # `notices send`, in one record).
    "space:register",
    "space:notify",
    "space:oppose",
    "space:request",
    "space:open",
    "space:activate",
    "space:suspend",
    "space:resume",
    "space:close",
    "space:reopen",
    "space:erase",
    "space:destroy",
    "space:of_age",
    # The proof of an opposition printed for the person (spaces/opposition.proof_pdf): it shows their identity.
    "opposition:proof",
    # An operator's decision on a notice e-mail left uncertain (spaces/notices.resolve), in the space's chain:
    # basis "delivered", "resend" or "letter"; detail "notice=<id>" (never the address nor the text).
    "notice:resolve",
]
ACTIONS: tuple[str, ...] = Action.__args__  # type: ignore[attr-defined]

SUCCESS = "0"
MINOR_FAILURE = "4"
SERIOUS_FAILURE = "8"

GENESIS = bytes(32)


@dataclass(frozen=True)
class Record:
    action: str
    outcome: str
    actor_kind: str
    actor_id: str
    actor_display: str = ""
    basis: str = ""
    entity_type: str | None = None
    entity_id: str | None = None
    entity_version: int | None = None
    detail: str = ""
    request_id: str = ""
    recorded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown audit action {self.action!r}")

    @classmethod
    def as_stored(cls, **values: Any) -> Record:
        """A record read back from the trace exactly as it is stored, every field given, nothing refused. The
        vocabulary is checked when a record is written; a stored row is evidence, and a value the code does not
        know (an insider's edit) is for `audit verify` to report as an altered record, never a reason to stop
        reading the chain (issue 15)."""
        record = object.__new__(cls)
        for f in fields(cls):
            object.__setattr__(record, f.name, values[f.name])
        return record


def canonical(space_id: uuid.UUID, record: Record) -> bytes:
    """The record's bytes that its hash covers: every field and the space, in a fixed order. The position
    (seq) is added by the database, which allocates it (storage/migrations/0002_audit.sql, audit_append)."""
    fields = asdict(record)
    fields["recorded_at"] = record.recorded_at.astimezone(UTC).isoformat(timespec="microseconds")
    fields["space_id"] = str(space_id)
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def chain_hash(prev_hash: bytes, space_id: uuid.UUID, seq: int, record: Record) -> bytes:
    """hash(n) = SHA-256(hash(n-1) || n as a big-endian int8 || canonical(record n)), as audit_append()."""
    return hashlib.sha256(
        prev_hash + seq.to_bytes(8, "big", signed=True) + canonical(space_id, record)
    ).digest()


#: The FHIR interaction (restful-interaction code) of each recorded action.
SUBTYPES: dict[str, str] = {
    "resource:create": "create",
    "resource:read": "read",
    "resource:vread": "vread",
    "resource:update": "update",
    "resource:delete": "delete",
    "resource:search": "search-type",
    "resource:history": "history-instance",  # history-type when no resource is named
}
#: A refusal records the policy action it refused (access/policy.py Action) in `detail`.
REFUSED_SUBTYPES: dict[str, str] = {
    "create": "create",
    "read": "read",
    "vread": "vread",
    "update": "update",
    "patch": "patch",
    "delete": "delete",
    "search": "search-type",
    "history": "history-instance",
}


#: The columns as read back. PostgreSQL keeps instants Python cannot hold (years past 9999, before 1, infinity),
#: which only an edit outside the application can store: they are read clamped to Python's range, so the record
#: reads and `audit verify` finds its hash no longer matches, instead of the whole read failing (issue 15).
RECORD_COLUMNS = (
    "least(greatest(recorded_at, '0001-01-01 00:00:00+00'), '9999-12-31 23:59:59.999999+00') AS recorded_at, "
    "action, outcome, actor_kind, actor_id, actor_display, basis, entity_type, entity_id, entity_version, "
    "detail, request_id"
)


async def append(conn: Conn, space_id: uuid.UUID, record: Record) -> int:
    """Append `record` to the space's chain (one statement, audit_append in 0002_audit.sql); returns its seq."""
    seq = await conn.fetchval(
        "SELECT audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        space_id,
        record.recorded_at,
        record.action,
        record.outcome,
        record.actor_kind,
        record.actor_id,
        record.actor_display,
        record.basis,
        record.entity_type,
        record.entity_id,
        record.entity_version,
        record.detail,
        record.request_id,
        canonical(space_id, record),
    )
    return int(seq)


async def has_record(conn: Conn, space_id: uuid.UUID, record: Record) -> bool:
    """Whether the space's chain holds this record already (same instant, action, actor and request)."""
    found = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM audit_event WHERE space_id = $1 AND recorded_at = $2 AND action = $3 "
        "AND actor_kind = $4 AND actor_id = $5 AND request_id = $6)",
        space_id,
        record.recorded_at,
        record.action,
        record.actor_kind,
        record.actor_id,
        record.request_id,
    )
    return bool(found)


@dataclass(frozen=True)
class StoredRecord:
    space_id: uuid.UUID
    seq: int
    record: Record
    prev_hash: bytes
    hash: bytes


def stored_record(row: Any) -> StoredRecord:
    record = Record.as_stored(
        action=row["action"],
        outcome=row["outcome"],
        actor_kind=row["actor_kind"],
        actor_id=row["actor_id"],
        actor_display=row["actor_display"],
        basis=row["basis"],
        entity_type=row["entity_type"],
        entity_id=row["entity_id"],
        entity_version=row["entity_version"],
        detail=row["detail"],
        request_id=row["request_id"],
        recorded_at=row["recorded_at"],
    )
    return StoredRecord(row["space_id"], row["seq"], record, bytes(row["prev_hash"]), bytes(row["hash"]))


async def chain(conn: Conn, space_id: uuid.UUID, *, batch: int = 5000) -> AsyncIterator[StoredRecord]:
    """Every record of a space in order (for verification), fetched in batches. From the smallest bigint, not
    from 1: a row an insider put before the start of the chain must be seen to be reported."""
    start = -(2**63)
    while True:
        rows = await conn.fetch(
            f"SELECT space_id, seq, {RECORD_COLUMNS}, prev_hash, hash FROM audit_event "
            "WHERE space_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
            space_id,
            start,
            batch,
        )
        for row in rows:
            yield stored_record(row)
        if len(rows) < batch or rows[-1]["seq"] == 2**63 - 1:
            return
        start = rows[-1]["seq"] + 1


async def head(conn: Conn, space_id: uuid.UUID) -> tuple[int, bytes] | None:
    row = await conn.fetchrow("SELECT seq, head FROM audit_chain WHERE space_id = $1", space_id)
    return None if row is None else (int(row["seq"]), bytes(row["head"]))


async def spaces(conn: Conn, *, after: uuid.UUID | None = None, limit: int = 10_000) -> list[uuid.UUID]:
    """One page of the spaces that have a trace, in id order (page with `after`): a national deployment has
    tens of millions, too many for one list. Spaces with seals but no chain row (a superuser deleted the
    chain) are listed too, so that verification still looks at them."""
    rows = await conn.fetch(
        "SELECT space_id FROM (SELECT space_id FROM audit_chain UNION SELECT DISTINCT space_id FROM audit_seal) s "
        "WHERE $1::uuid IS NULL OR space_id > $1 ORDER BY space_id LIMIT $2",
        after,
        limit,
    )
    return [r["space_id"] for r in rows]


@dataclass(frozen=True)
class Seal:
    space_id: uuid.UUID
    seq: int
    head: bytes
    key_id: str
    signature: bytes


async def add_seal(conn: Conn, seal: Seal) -> bool:
    status: str = await conn.execute(
        "INSERT INTO audit_seal (space_id, seq, head, key_id, signature) VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT DO NOTHING",
        seal.space_id,
        seal.seq,
        seal.head,
        seal.key_id,
        seal.signature,
    )
    return status.endswith(" 1")


async def seals(conn: Conn, space_id: uuid.UUID) -> list[Seal]:
    rows = await conn.fetch(
        "SELECT space_id, seq, head, key_id, signature FROM audit_seal WHERE space_id = $1 ORDER BY seq",
        space_id,
    )
    return [Seal(r["space_id"], r["seq"], bytes(r["head"]), r["key_id"], bytes(r["signature"])) for r in rows]


async def unsealed_heads(conn: Conn) -> list[tuple[uuid.UUID, int, bytes]]:
    """Chain heads that moved since their last seal."""
    rows = await conn.fetch(
        "SELECT c.space_id, c.seq, c.head FROM audit_chain c WHERE c.seq > coalesce("
        "(SELECT max(s.seq) FROM audit_seal s WHERE s.space_id = c.space_id), 0)"
    )
    return [(r["space_id"], int(r["seq"]), bytes(r["head"])) for r in rows]


def canonical_fast(space_id: uuid.UUID, r: Record) -> bytes:
    """canonical's bytes (tests/notices/test_throughput.py checks they are equal), without
    dataclasses.asdict's deep copies (a third of `notices send`'s time before)."""
    return orjson.dumps(
        {
            "action": r.action,
            "actor_display": r.actor_display,
            "actor_id": r.actor_id,
            "actor_kind": r.actor_kind,
            "basis": r.basis,
            "detail": r.detail,
            "entity_id": r.entity_id,
            "entity_type": r.entity_type,
            "entity_version": r.entity_version,
            "outcome": r.outcome,
            "recorded_at": r.recorded_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "request_id": r.request_id,
            "space_id": str(space_id),
        },
        option=orjson.OPT_SORT_KEYS,
    )


#: audit_event's columns, in the order of the rows `append_batch` and bulk creation (provision.py) COPY.
AUDIT_COLUMNS = (
    "space_id", "seq", "recorded_at", "action", "outcome", "actor_kind", "actor_id", "actor_display", "basis",
    "entity_type", "entity_id", "entity_version", "detail", "request_id", "prev_hash", "hash",
)  # fmt: skip


async def append_batch(conn: Conn, records: Sequence[tuple[uuid.UUID, Record]]) -> None:
    """Append records to their spaces' chains, in order, for a whole batch in four statements: the chains'
    heads locked (as audit_append's upsert locks them: concurrent writers wait, the chains stay linear), each
    record's hash computed here exactly as audit_append computes it, SHA-256(previous hash || seq as int8 ||
    canonical bytes), the records inserted and the heads moved. The rows are those audit_append writes, one by
    one (audit verify checks them the same way); a space without a chain yet starts at seq 1 after GENESIS."""
    if not records:
        return
    spaces = sorted({s for s, _ in records})

    async def lock(of: list[uuid.UUID]) -> list[Any]:
        return await locks.claim(
            conn,
            table="audit_chain",
            columns="space_id, seq, head",
            where="space_id = ANY($1::uuid[])",
            args=(of,),
            key=("space_id",),
            order="space_id",
            skip_locked=False,
        )

    heads = {r["space_id"]: (int(r["seq"]), bytes(r["head"])) for r in await lock(spaces)}
    missing = [s for s in spaces if s not in heads]
    if missing:
        await conn.execute(
            "INSERT INTO audit_chain (space_id, seq, head) SELECT s, 0, $2 FROM unnest($1::uuid[]) AS s "
            "ON CONFLICT (space_id) DO NOTHING",
            missing,
            GENESIS,
        )
        heads |= {r["space_id"]: (int(r["seq"]), bytes(r["head"])) for r in await lock(missing)}
    rows: list[tuple[Any, ...]] = []
    sha256 = hashlib.sha256
    for space_id, r in records:
        seq, prev = heads[space_id]
        seq += 1
        digest = sha256(prev + seq.to_bytes(8, "big", signed=True) + canonical_fast(space_id, r)).digest()
        heads[space_id] = (seq, digest)
        rows.append(
            (
                space_id, seq, r.recorded_at, r.action, r.outcome, r.actor_kind, r.actor_id, r.actor_display,
                r.basis, r.entity_type, r.entity_id, r.entity_version, r.detail, r.request_id, prev, digest,
            )
        )  # fmt: skip
    await conn.copy_records_to_table("audit_event", records=rows, columns=AUDIT_COLUMNS)
    await conn.execute(
        "UPDATE audit_chain c SET seq = u.seq, head = u.head "
        "FROM unnest($1::uuid[], $2::bigint[], $3::bytea[]) AS u(s, seq, head) WHERE c.space_id = u.s",
        list(heads),
        [h[0] for h in heads.values()],
        [h[1] for h in heads.values()],
    )
