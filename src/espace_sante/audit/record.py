"""One audit record, and the canonical bytes its hash covers.

The vocabulary is one list of `subject:verb` actions (STYLE habit 6). A record names who acted (actor and
the decision's basis), on what (type, id, version) and with what outcome, using FHIR AuditEvent outcome codes
(0 success, 4 minor failure, 8 serious failure). It never holds medical content: no resource body, no search
values (a search records the parameter names it used)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

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
