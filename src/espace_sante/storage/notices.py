"""SQL of the notices of new spaces (spaces/notices.py, migrations 0011_notices.sql and 0012_jobs.sql) and
the outbox listing: the set-based steps of `notices send` (a batch of spaces per statement), and the states of
one e-mail's delivery (claimed, handed to the relay, delivered or uncertain)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from espace_sante.access.policy import Decision
from espace_sante.storage import locks
from espace_sante.storage.db import Conn


@dataclass(frozen=True)
class EmailNotice:
    """An e-mail waiting for delivery: its words sealed under the space's data key `key_version`
    (spaces/notices.py renders the text from them), or, recorded before migration 0019, its text in `body`."""

    space_id: uuid.UUID
    notice_id: uuid.UUID
    recipient: str
    subject: str
    body: str
    sealed: bytes | None = None
    key_version: int | None = None


@dataclass(frozen=True)
class LetterNotice:
    space_id: uuid.UUID
    notice_id: uuid.UUID
    #: The clear data of a letter queued before migration 0012 (None when sealed).
    letter: dict[str, Any] | None
    #: The letter's data sealed under the space's data key `key_version` (spaces/notices.py).
    sealed: bytes | None = None
    key_version: int | None = None


@dataclass(frozen=True)
class NewNotice:
    """A notice row as `notices send` writes it: an e-mail (recipient, subject) or a letter, what it says
    sealed under the space's data key `key_version`."""

    space_id: uuid.UUID
    notice_id: uuid.UUID
    channel: str
    recipient: str = ""
    subject: str = ""
    key_version: int | None = None
    sealed: bytes | None = None


@dataclass(frozen=True)
class Claim:
    """One e-mail claimed for an attempt: what it says, and whether an earlier attempt had already handed it
    to the relay (then it may have been accepted: it is not sent again)."""

    email: EmailNotice
    handed: bool
    attempts: int


@dataclass(frozen=True)
class OutboxMessage:
    message_id: uuid.UUID
    recipient: str
    subject: str
    created_at: datetime
    sent_at: datetime | None
    error: str
    body: str | None


_EMAIL = "space_id, notice_id, recipient, subject, body, sealed, key_version"


def _email(r: Any) -> EmailNotice:
    sealed = r["sealed"]
    return EmailNotice(
        r["space_id"],
        r["notice_id"],
        r["recipient"],
        r["subject"],
        r["body"],
        None if sealed is None else bytes(sealed),
        r["key_version"],
    )


async def due_emails(conn: Conn, decision: Decision, limit: int) -> list[EmailNotice]:
    """E-mails not yet delivered (nor left uncertain), locked for this transaction (another sender skips
    them). The outbox path: written and marked in this one transaction. Only in spaces `decision` (to read
    Patient: a notice names its recipient) covers."""
    decision.require_read("Patient")
    rows = await locks.claim(
        conn,
        table="notice",
        columns=_EMAIL,
        where="channel = 'email' AND delivered_at IS NULL AND uncertain_at IS NULL AND withdrawn_at IS NULL",
        key=("space_id", "notice_id"),
        order="created_at",
        limit=limit,
    )
    return [_email(r) for r in rows if decision.covers(r["space_id"])]


async def email_to_keep(
    conn: Conn, decision: Decision, space_id: uuid.UUID, notice_id: uuid.UUID
) -> EmailNotice | None:
    """One e-mail not yet delivered, locked for this transaction; None when delivered, uncertain, or being
    delivered by someone else (who holds the row). Under a decision to read Patient covering the space."""
    decision.require_read("Patient", [space_id])
    r = await conn.fetchrow(
        f"SELECT {_EMAIL} FROM notice WHERE space_id = $1 "
        "AND notice_id = $2 AND channel = 'email' AND delivered_at IS NULL AND uncertain_at IS NULL "
        "AND withdrawn_at IS NULL FOR UPDATE SKIP LOCKED",
        space_id,
        notice_id,
    )
    return None if r is None else _email(r)


async def waiting_emails(conn: Conn, decision: Decision, space_id: uuid.UUID) -> list[EmailNotice]:
    """A space's e-mails still to deliver (operators, tests), oldest first, under a decision to read Patient
    covering the space."""
    decision.require_read("Patient", [space_id])
    rows = await conn.fetch(
        f"SELECT {_EMAIL} FROM notice WHERE space_id = $1 AND channel = 'email' AND delivered_at IS NULL "
        "AND uncertain_at IS NULL AND withdrawn_at IS NULL ORDER BY created_at, notice_id",
        space_id,
    )
    return [_email(r) for r in rows]


async def due_email_keys(
    conn: Conn, limit: int, after: tuple[datetime, uuid.UUID] | None, min_age_seconds: float = 0
) -> list[tuple[uuid.UUID, uuid.UUID, datetime]]:
    """(space, notice, created_at) of e-mails waiting for delivery, recorded at least `min_age_seconds` ago,
    in order after `after` (keyset)."""
    rows = await conn.fetch(
        "SELECT space_id, notice_id, created_at FROM notice WHERE channel = 'email' AND delivered_at IS NULL "
        "AND uncertain_at IS NULL AND withdrawn_at IS NULL AND ($2::timestamptz IS NULL OR (created_at, notice_id) > ($2, $3)) "
        "AND created_at <= now() - make_interval(secs => $4) ORDER BY created_at, notice_id LIMIT $1",
        limit,
        None if after is None else after[0],
        None if after is None else after[1],
        min_age_seconds,
    )
    return [(r["space_id"], r["notice_id"], r["created_at"]) for r in rows]


async def claim_email(
    conn: Conn, decision: Decision, space_id: uuid.UUID, notice_id: uuid.UUID
) -> Claim | None:
    """Count an attempt at an e-mail still to deliver; None when it is delivered or uncertain already. Under
    a decision to read Patient covering the space (the e-mail names its recipient)."""
    decision.require_read("Patient", [space_id])
    r = await conn.fetchrow(
        "UPDATE notice SET attempts = attempts + 1 WHERE space_id = $1 AND notice_id = $2 AND channel = 'email' "
        "AND delivered_at IS NULL AND uncertain_at IS NULL AND withdrawn_at IS NULL "
        f"RETURNING {_EMAIL}, handed_at IS NOT NULL AS handed, attempts",
        space_id,
        notice_id,
    )
    if r is None:
        return None
    return Claim(_email(r), r["handed"], r["attempts"])


async def mark_handed(conn: Conn, space_id: uuid.UUID, notice_id: uuid.UUID) -> None:
    """Committed just before the end of DATA goes to the relay: from here on the message may be accepted."""
    await conn.execute(
        "UPDATE notice SET handed_at = now() WHERE space_id = $1 AND notice_id = $2", space_id, notice_id
    )


async def unhand(conn: Conn, space_id: uuid.UUID, notice_id: uuid.UUID, error: str) -> None:
    """The relay answered the end of DATA with a refusal: not accepted, so it may be sent again."""
    await conn.execute(
        "UPDATE notice SET handed_at = NULL, error = $3 WHERE space_id = $1 AND notice_id = $2",
        space_id,
        notice_id,
        error,
    )


async def mark_uncertain(conn: Conn, space_id: uuid.UUID, notice_id: uuid.UUID, error: str) -> None:
    """Handed to the relay without its answer recorded: it may have been accepted, so it is never sent again
    automatically; an operator sees it (`uncertain_at`)."""
    await conn.execute(
        "UPDATE notice SET uncertain_at = now(), error = $3 WHERE space_id = $1 AND notice_id = $2 "
        "AND delivered_at IS NULL",
        space_id,
        notice_id,
        error,
    )


async def counts(conn: Conn) -> dict[str, int]:
    """E-mails by delivery state (operators, tests)."""
    r = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL) AS delivered, "
        "count(*) FILTER (WHERE uncertain_at IS NOT NULL) AS uncertain, "
        "count(*) FILTER (WHERE delivered_at IS NULL AND uncertain_at IS NULL AND withdrawn_at IS NULL) AS waiting "
        "FROM notice WHERE channel = 'email'"
    )
    assert r is not None
    return {"delivered": r["delivered"], "uncertain": r["uncertain"], "waiting": r["waiting"]}


# --- the set-based steps of `notices send` -----------------------------------------------------------------


async def lock_registered(conn: Conn, after: uuid.UUID | None, limit: int) -> list[uuid.UUID]:
    """The next `limit` spaces waiting for their notice after `after`, locked until the end of the
    transaction; spaces another run holds are skipped (it is notifying them)."""
    rows = await locks.claim(
        conn,
        table="space",
        columns="space_id",
        where="state = 'registered' AND ($1::uuid IS NULL OR space_id > $1)",
        args=(after,),
        key=("space_id",),
        order="space_id",
        limit=limit,
    )
    return [r["space_id"] for r in rows]


async def notify_many(conn: Conn, spaces: Sequence[uuid.UUID], opens_on: date) -> list[uuid.UUID]:
    """`registered` -> `notified` for the (locked) spaces, opening on `opens_on`: the row the lifecycle's
    `notify` writes (storage/lifecycle.move), for a batch. Returns those moved."""
    rows = await conn.fetch(
        "UPDATE space SET state = 'notified', state_at = now(), opens_on = $2, prior_state = NULL, "
        "closed_reason = NULL, destroy_on = NULL WHERE space_id = ANY($1::uuid[]) AND state = 'registered' "
        "RETURNING space_id",
        list(spaces),
        opens_on,
    )
    return [r["space_id"] for r in rows]


async def replace_codes(
    conn: Conn, codes: Sequence[tuple[uuid.UUID, bytes]], pepper_id: str, expires_at: datetime
) -> dict[uuid.UUID, bool]:
    """Each space's new activation code digest (storage/activation.replace, for a batch): space -> whether a
    previous code was replaced."""
    rows = await conn.fetch(
        """INSERT INTO activation_code AS a (space_id, digest, pepper_id, expires_at)
           SELECT c.s, c.d, $3, $4 FROM unnest($1::uuid[], $2::bytea[]) AS c(s, d)
           ON CONFLICT (space_id) DO UPDATE SET digest = excluded.digest, pepper_id = excluded.pepper_id,
             issued_at = excluded.issued_at, expires_at = excluded.expires_at, used_at = NULL, failures = 0, locked_at = NULL
           RETURNING space_id, (xmax <> 0) AS replaced""",
        [c[0] for c in codes],
        [c[1] for c in codes],
        pepper_id,
        expires_at,
    )
    return {r["space_id"]: bool(r["replaced"]) for r in rows}


async def patients_of(conn: Conn, spaces: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Each space's Patient (the oldest live one, as `patient_of`)."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (space_id) space_id, resource_id FROM resource WHERE space_id = ANY($1::uuid[]) "
        "AND resource_type = 'Patient' AND NOT deleted ORDER BY space_id, last_updated",
        list(spaces),
    )
    return {r["space_id"]: str(r["resource_id"]) for r in rows}


async def data_keys(conn: Conn, spaces: Sequence[uuid.UUID]) -> list[tuple[uuid.UUID, int, str, bytes]]:
    """The wrapped data keys of these spaces, newest last per space: (space, version, KEK id, wrapped)."""
    rows = await conn.fetch(
        "SELECT space_id, key_version, kek_id, wrapped_key FROM space_key WHERE space_id = ANY($1::uuid[]) "
        "ORDER BY space_id, key_version",
        list(spaces),
    )
    return [(r["space_id"], r["key_version"], r["kek_id"], bytes(r["wrapped_key"])) for r in rows]


async def representatives(
    conn: Conn, decision: Decision, spaces: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[str]]:
    """The INS of each space's representatives whose rights run (people.representatives_of, for a batch),
    under a decision to read Patient covering the spaces."""
    decision.require_read("Patient", spaces)
    rows = await conn.fetch(
        "SELECT space_id, representative_ins FROM space_representative WHERE space_id = ANY($1::uuid[]) "
        "AND until > (now() AT TIME ZONE 'Europe/Paris')::date ORDER BY space_id, representative_ins",
        list(spaces),
    )
    found: dict[uuid.UUID, list[str]] = {}
    for r in rows:
        found.setdefault(r["space_id"], []).append(r["representative_ins"])
    return found


async def add_many(conn: Conn, notices: Sequence[NewNotice]) -> None:
    """The batch's notices, in one statement."""
    if not notices:
        return
    await conn.copy_records_to_table(
        "notice",
        records=[
            (
                n.space_id,
                n.notice_id,
                n.channel,
                n.recipient,
                n.subject,
                n.key_version,
                n.sealed,
            )
            for n in notices
        ],
        columns=("space_id", "notice_id", "channel", "recipient", "subject", "key_version", "sealed"),
    )


async def mark_failed(conn: Conn, space_id: uuid.UUID, notice_id: uuid.UUID, error: str) -> None:
    """A delivery refused by the relay: kept, with why, for the next run."""
    await conn.execute(
        "UPDATE notice SET error = $3 WHERE space_id = $1 AND notice_id = $2", space_id, notice_id, error
    )


async def mark_delivered(conn: Conn, space_id: uuid.UUID, notice_id: uuid.UUID, error: str = "") -> None:
    """Delivered: what it said (which holds the code) is erased, only the subject and address stay."""
    await conn.execute(
        "UPDATE notice SET delivered_at = now(), body = '', sealed = NULL, error = $3 "
        "WHERE space_id = $1 AND notice_id = $2",
        space_id,
        notice_id,
        error,
    )


async def due_letters(conn: Conn, decision: Decision, limit: int) -> list[LetterNotice]:
    """Letters not yet built, locked for this transaction, in the spaces a decision to read Patient covers
    (a letter holds its recipient's name and address)."""
    decision.require_read("Patient")
    rows = await locks.claim(
        conn,
        table="notice",
        columns="space_id, notice_id, letter, sealed, key_version",
        where="channel = 'letter' AND built_at IS NULL AND withdrawn_at IS NULL",
        key=("space_id", "notice_id"),
        order="created_at, notice_id",
        limit=limit,
    )
    return [
        LetterNotice(
            r["space_id"],
            r["notice_id"],
            None if r["letter"] is None else orjson.loads(r["letter"]),
            None if r["sealed"] is None else bytes(r["sealed"]),
            r["key_version"],
        )
        for r in rows
        if decision.covers(r["space_id"])
    ]


async def letters(conn: Conn, decision: Decision, space_id: uuid.UUID) -> list[LetterNotice]:
    """A space's letters, built or not (operators, tests), under a decision to read Patient covering it."""
    decision.require_read("Patient", [space_id])
    rows = await conn.fetch(
        "SELECT space_id, notice_id, letter, sealed, key_version FROM notice WHERE space_id = $1 "
        "AND channel = 'letter' ORDER BY created_at, notice_id",
        space_id,
    )
    return [
        LetterNotice(
            r["space_id"],
            r["notice_id"],
            None if r["letter"] is None else orjson.loads(r["letter"]),
            None if r["sealed"] is None else bytes(r["sealed"]),
            r["key_version"],
        )
        for r in rows
    ]


async def mark_built(
    conn: Conn, built: Sequence[tuple[uuid.UUID, uuid.UUID, str, int, bytes | None]]
) -> None:
    """Built into (file, page): the code is erased from the stored letter (it exists only on paper now); a
    sealed letter is replaced by its data sealed again without the code."""
    await conn.executemany(
        "UPDATE notice SET built_at = now(), batch_file = $3, page = $4, letter = letter - 'code', "
        "sealed = COALESCE($5, sealed) WHERE space_id = $1 AND notice_id = $2",
        built,
    )


async def outbox(conn: Conn, *, with_body: bool, limit: int) -> list[OutboxMessage]:
    rows = await conn.fetch(
        "SELECT message_id, recipient, subject, created_at, sent_at, error, "
        "CASE WHEN $1 THEN body END AS body FROM outbox ORDER BY created_at, message_id LIMIT $2",
        with_body,
        limit,
    )
    return [
        OutboxMessage(
            r["message_id"],
            r["recipient"],
            r["subject"],
            r["created_at"],
            r["sent_at"],
            r["error"],
            r["body"],
        )
        for r in rows
    ]


# --- withdrawn notices, and operators' resolutions of uncertain e-mails (migration 0017) ---------------------


async def withdraw_pending(conn: Conn, space_id: uuid.UUID) -> list[uuid.UUID]:
    """The space's notices still waiting (e-mails neither delivered, nor handed to the relay, nor uncertain;
    letters not built) no longer go out: their code was replaced. What an e-mail said is erased. Returns
    them."""
    rows = await conn.fetch(
        "UPDATE notice SET withdrawn_at = now(), body = '', "
        "sealed = CASE WHEN channel = 'email' THEN NULL ELSE sealed END WHERE space_id = $1 AND withdrawn_at IS NULL AND ("
        "(channel = 'email' AND delivered_at IS NULL AND uncertain_at IS NULL AND handed_at IS NULL) OR "
        "(channel = 'letter' AND built_at IS NULL)) RETURNING notice_id",
        space_id,
    )
    return [r["notice_id"] for r in rows]


@dataclass(frozen=True)
class Uncertain:
    space_id: uuid.UUID
    notice_id: uuid.UUID
    recipient: str
    subject: str
    since: datetime
    attempts: int
    error: str


async def uncertain(conn: Conn, decision: Decision, limit: int) -> list[Uncertain]:
    """E-mails handed to the relay whose answer was not recorded, not yet resolved by an operator (in the
    spaces a decision to read Patient covers: each names its recipient)."""
    decision.require_read("Patient")
    rows = await conn.fetch(
        "SELECT space_id, notice_id, recipient, subject, uncertain_at, attempts, error FROM notice "
        "WHERE channel = 'email' AND uncertain_at IS NOT NULL AND delivered_at IS NULL AND withdrawn_at IS NULL "
        "ORDER BY uncertain_at, notice_id LIMIT $1",
        limit,
    )
    return [
        Uncertain(
            r["space_id"],
            r["notice_id"],
            r["recipient"],
            r["subject"],
            r["uncertain_at"],
            r["attempts"],
            r["error"],
        )
        for r in rows
        if decision.covers(r["space_id"])
    ]


@dataclass(frozen=True)
class Held:
    """An uncertain e-mail locked for an operator's resolution, with what a letter instead needs."""

    email: EmailNotice


async def lock_uncertain(conn: Conn, decision: Decision, notice_id: uuid.UUID) -> Held | None:
    """The uncertain, unresolved e-mail `notice_id`, locked for this transaction; None if there is none (unknown,
    delivered, withdrawn, or not uncertain) or it is in a space a decision to read Patient does not cover."""
    decision.require_read("Patient")
    found = await locks.claim(
        conn,
        table="notice",
        columns=_EMAIL,
        where="notice_id = $1 AND channel = 'email' AND uncertain_at IS NOT NULL AND delivered_at IS NULL "
        "AND withdrawn_at IS NULL",
        args=(notice_id,),
        key=("space_id", "notice_id"),
        skip_locked=False,
    )
    r = found[0] if found else None
    return None if r is None or not decision.covers(r["space_id"]) else Held(_email(r))


async def resolve(
    conn: Conn, space_id: uuid.UUID, notice_id: uuid.UUID, resolution: str, operator: str
) -> None:
    """An operator's decision on an uncertain e-mail, after checking the relay's logs:
    - `delivered`: the relay accepted it; marked delivered, what it said (the code) erased;
    - `resend`: the relay did not accept it; back to waiting (not handed, not uncertain) for one more delivery;
    - `letter`: withdrawn (what it said erased), a letter stands in for it (written by the caller)."""
    sets = {
        "delivered": "delivered_at = now(), body = '', sealed = NULL",
        "resend": "uncertain_at = NULL, handed_at = NULL",
        "letter": "withdrawn_at = now(), body = '', sealed = NULL",
    }[resolution]
    await conn.execute(
        f"UPDATE notice SET {sets}, resolved_at = now(), resolution = $3, resolved_by = $4 "
        "WHERE space_id = $1 AND notice_id = $2",
        space_id,
        notice_id,
        resolution,
        operator,
    )


async def code_is_live(conn: Conn, space_id: uuid.UUID, digests: Sequence[bytes]) -> bool:
    """Whether one of these digests is the space's live activation code (unused, unlocked, unexpired)."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM activation_code WHERE space_id = $1 AND digest = ANY($2::bytea[]) "
            "AND used_at IS NULL AND locked_at IS NULL AND expires_at > now())",
            space_id,
            list(digests),
        )
    )


async def code_expiry(conn: Conn, space_id: uuid.UUID) -> datetime | None:
    value: datetime | None = await conn.fetchval(
        "SELECT expires_at FROM activation_code WHERE space_id = $1", space_id
    )
    return value


async def mark_replaces(conn: Conn, space_id: uuid.UUID, notice_id: uuid.UUID, replaced: uuid.UUID) -> None:
    """The letter `notice_id` stands in for the e-mail `replaced` (notices resolve --letter)."""
    await conn.execute(
        "UPDATE notice SET replaces = $3 WHERE space_id = $1 AND notice_id = $2",
        space_id,
        notice_id,
        replaced,
    )


async def job_waiting(conn: Conn, queueing_lock: str) -> bool:
    """Whether a job with this queueing lock is waiting (procrastinate allows one: a second would conflict)."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE queueing_lock = $1 AND status = 'todo')",
            queueing_lock,
        )
    )


# --- the fast paths of `notices send` (docs/notices.md, "Throughput") ----------------------------------------


async def mark_delivered_many(conn: Conn, emails: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """These (space, notice) e-mails delivered (`mark_delivered` for a batch, in one statement)."""
    await conn.execute(
        "UPDATE notice n SET delivered_at = now(), body = '', sealed = NULL, error = '' "
        "FROM unnest($1::uuid[], $2::uuid[]) AS d(s, n) WHERE n.space_id = d.s AND n.notice_id = d.n",
        [e[0] for e in emails],
        [e[1] for e in emails],
    )


async def mark_unreadable(conn: Conn, space_id: uuid.UUID, notice_id: uuid.UUID) -> None:
    """An e-mail whose sealed words cannot be opened any more (the space's data key is gone): it can never go
    out, so it is withdrawn with the reason, for an operator to see (a new code means a new notice)."""
    await conn.execute(
        "UPDATE notice SET withdrawn_at = now(), sealed = NULL, error = 'unreadable: data key gone' "
        "WHERE space_id = $1 AND notice_id = $2",
        space_id,
        notice_id,
    )


# --- retention of codes in clear (migration 0024, docs/notices.md "Retention") ------------------------------


@dataclass(frozen=True)
class LetterBatch:
    batch_id: str
    out_dir: str
    built_at: datetime
    handed_at: datetime | None
    purged_at: datetime | None


_BATCH = "batch_id, out_dir, built_at, handed_at, purged_at"


def _batch(r: Any) -> LetterBatch:
    return LetterBatch(r["batch_id"], r["out_dir"], r["built_at"], r["handed_at"], r["purged_at"])


async def add_letter_batch(conn: Conn, batch_id: str, out_dir: str) -> None:
    """The run `batch_id` writes its files in `out_dir` (once per run: its later PDFs add nothing)."""
    await conn.execute(
        "INSERT INTO letter_batch (batch_id, out_dir) VALUES ($1, $2) ON CONFLICT (batch_id) DO NOTHING",
        batch_id,
        out_dir,
    )


async def hand_letter_batch(conn: Conn, batch_id: str, operator: str) -> LetterBatch | None:
    """The operator confirms the batch went to the mailing house (the first confirmation counts); None when
    no such batch was built."""
    r = await conn.fetchrow(
        "UPDATE letter_batch SET handed_at = COALESCE(handed_at, now()), "
        "handed_by = COALESCE(handed_by, $2) WHERE batch_id = $1 "
        f"RETURNING {_BATCH}",
        batch_id,
        operator,
    )
    return None if r is None else _batch(r)


async def letter_batches_to_purge(conn: Conn, days: int) -> list[LetterBatch]:
    """Batches whose files are still there and are due to go: handed over, or built `days` days ago."""
    rows = await conn.fetch(
        f"SELECT {_BATCH} FROM letter_batch WHERE purged_at IS NULL "
        "AND (handed_at IS NOT NULL OR built_at <= now() - make_interval(days => $1)) ORDER BY built_at",
        days,
    )
    return [_batch(r) for r in rows]


async def mark_letter_batches_purged(conn: Conn, batch_ids: Sequence[str]) -> None:
    await conn.execute(
        "UPDATE letter_batch SET purged_at = now() WHERE batch_id = ANY($1::text[]) AND purged_at IS NULL",
        list(batch_ids),
    )


async def drop_outbox_bodies(conn: Conn, days: int, limit: int) -> int:
    """The text of up to `limit` outbox messages delivered `days` days ago or more, dropped (the row stays:
    recipient, subject, dates, error). Delivered: kept as the message itself when no relay is configured
    (no error), or sent. One a relay refused (its error kept, never sent) keeps its text. Returns how many."""
    dropped = await conn.fetchval(
        "WITH due AS (SELECT message_id FROM outbox WHERE body <> '' AND (sent_at IS NOT NULL OR error = '') "
        "AND COALESCE(sent_at, created_at) <= now() - make_interval(days => $1) LIMIT $2 "
        "FOR UPDATE SKIP LOCKED), "
        "done AS (UPDATE outbox o SET body = '' FROM due WHERE o.message_id = due.message_id RETURNING 1) "
        "SELECT count(*) FROM done",
        days,
        limit,
    )
    return int(dropped or 0)
