"""SQL of the notices of new spaces (services/notices.py, migration 0011_notices.sql) and the outbox listing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from .db import Conn


@dataclass(frozen=True)
class EmailNotice:
    space_id: uuid.UUID
    notice_id: uuid.UUID
    recipient: str
    subject: str
    body: str


@dataclass(frozen=True)
class LetterNotice:
    space_id: uuid.UUID
    notice_id: uuid.UUID
    letter: dict[str, Any]


@dataclass(frozen=True)
class OutboxMessage:
    message_id: uuid.UUID
    recipient: str
    subject: str
    created_at: datetime
    sent_at: datetime | None
    error: str
    body: str | None


async def registered_spaces(conn: Conn, after: uuid.UUID | None, limit: int) -> list[uuid.UUID]:
    """The next `limit` spaces waiting for their notice, in space order (keyset pagination)."""
    rows = await conn.fetch(
        "SELECT space_id FROM space WHERE state = 'registered' AND ($1::uuid IS NULL OR space_id > $1) "
        "ORDER BY space_id LIMIT $2",
        after,
        limit,
    )
    return [r["space_id"] for r in rows]


async def patient_of(conn: Conn, space_id: uuid.UUID) -> str | None:
    value = await conn.fetchval(
        "SELECT resource_id FROM resource WHERE space_id = $1 AND resource_type = 'Patient' AND NOT deleted "
        "ORDER BY last_updated LIMIT 1",
        space_id,
    )
    return None if value is None else str(value)


async def add_email(
    conn: Conn, space_id: uuid.UUID, notice_id: uuid.UUID, recipient: str, subject: str, body: str
) -> None:
    await conn.execute(
        "INSERT INTO notice (space_id, notice_id, channel, recipient, subject, body) "
        "VALUES ($1, $2, 'email', $3, $4, $5)",
        space_id,
        notice_id,
        recipient,
        subject,
        body,
    )


async def add_letter(conn: Conn, space_id: uuid.UUID, notice_id: uuid.UUID, letter: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO notice (space_id, notice_id, channel, letter) VALUES ($1, $2, 'letter', $3::jsonb)",
        space_id,
        notice_id,
        orjson.dumps(letter).decode(),
    )


async def due_emails(conn: Conn, limit: int) -> list[EmailNotice]:
    """E-mails not yet delivered, locked for this transaction (another sender skips them)."""
    rows = await conn.fetch(
        "SELECT space_id, notice_id, recipient, subject, body FROM notice "
        "WHERE channel = 'email' AND delivered_at IS NULL ORDER BY created_at "
        "LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return [EmailNotice(r["space_id"], r["notice_id"], r["recipient"], r["subject"], r["body"]) for r in rows]


async def mark_failed(conn: Conn, space_id: uuid.UUID, notice_id: uuid.UUID, error: str) -> None:
    """A delivery refused by the relay: kept, with why, for the next run."""
    await conn.execute(
        "UPDATE notice SET error = $3 WHERE space_id = $1 AND notice_id = $2", space_id, notice_id, error
    )


async def mark_delivered(conn: Conn, space_id: uuid.UUID, notice_id: uuid.UUID, error: str = "") -> None:
    """Delivered: the text (which holds the code) is erased, only the subject and address stay."""
    await conn.execute(
        "UPDATE notice SET delivered_at = now(), body = '', error = $3 "
        "WHERE space_id = $1 AND notice_id = $2",
        space_id,
        notice_id,
        error,
    )


async def due_letters(conn: Conn, limit: int) -> list[LetterNotice]:
    rows = await conn.fetch(
        "SELECT space_id, notice_id, letter FROM notice WHERE channel = 'letter' AND built_at IS NULL "
        "ORDER BY created_at, notice_id LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return [LetterNotice(r["space_id"], r["notice_id"], orjson.loads(r["letter"])) for r in rows]


async def mark_built(conn: Conn, built: list[tuple[uuid.UUID, uuid.UUID, str, int]]) -> None:
    """Built into (file, page): the code is erased from the stored letter (it exists only on paper now)."""
    await conn.executemany(
        "UPDATE notice SET built_at = now(), batch_file = $3, page = $4, letter = letter - 'code' "
        "WHERE space_id = $1 AND notice_id = $2",
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
