"""Notices of credential and factor changes (SECURITY V2 2.2.3/2.5.5), delivered to a real SMTP server
(aiosmtpd) or kept in the outbox when none is configured."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from espace_sante import mail
from espace_sante.people import accounts
from espace_sante.runtime import Runtime
from tests.accounts.helpers import new_person


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def _with_smtp(runtime: Runtime, port: int) -> Runtime:
    settings = runtime.settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port})
    return dataclasses.replace(runtime, settings=settings)


async def test_new_recovery_codes_are_mailed_through_smtp_without_any_secret_or_medical_word(
    runtime: Runtime, fhir: httpx.AsyncClient, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    jeanne = await new_person(runtime, fhir, email="jeanne@exemple.fr")
    rt = _with_smtp(runtime, port)
    account = await accounts.get(rt, jeanne.account_id)
    assert account is not None
    codes = await accounts.regenerate_recovery_codes(rt, account)
    assert len(inbox.messages) == 1
    message = inbox.messages[0]
    assert message["To"] == "jeanne@exemple.fr"
    assert "sécurité de votre compte" in str(message["Subject"]) or "account security" in str(
        message["Subject"]
    )
    body = message.get_payload(decode=True).decode()
    assert "nouveaux codes de secours" in body and "/compte/securite" in body
    for secret in (*codes, jeanne.actor_id, jeanne.password, jeanne.totp_secret):
        assert secret not in body
    for word in ("diagnostic", "ordonnance", "résultat", "traitement"):
        assert word not in body


async def test_a_failing_smtp_server_keeps_the_notice_in_the_outbox(
    runtime: Runtime, fhir: httpx.AsyncClient
) -> None:
    jeanne = await new_person(runtime, fhir, email="jeanne.panne@exemple.fr")
    rt = _with_smtp(runtime, _free_port())  # nothing listens there
    account = await accounts.get(rt, jeanne.account_id)
    assert account is not None
    await accounts.regenerate_recovery_codes(rt, account)
    async with runtime.db.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT sent_at, error FROM outbox WHERE recipient = $1", "jeanne.panne@exemple.fr"
        )
    assert row is not None and row["sent_at"] is None and row["error"]


async def test_without_smtp_the_notice_goes_to_the_outbox(runtime: Runtime, fhir: httpx.AsyncClient) -> None:
    assert runtime.settings.smtp_host is None
    jeanne = await new_person(runtime, fhir)  # her login is an e-mail address: notices go there
    account = await accounts.get(runtime, jeanne.account_id)
    assert account is not None
    await accounts.regenerate_recovery_codes(runtime, account)
    async with runtime.db.pool.acquire() as conn:
        bodies = await conn.fetch("SELECT body FROM outbox WHERE recipient = $1", jeanne.login)
    assert len(bodies) == 1 and "codes de secours" in bodies[0]["body"]


def test_a_header_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        mail.Message("jeanne@exemple.fr\r\nBcc: tous@exemple.fr", "sujet", "texte")
    message = mail.credential_notice(
        runtime_settings(), "jeanne@exemple.fr", "passkey", datetime(2026, 3, 3, 9, 12, tzinfo=UTC)
    )
    assert "Le 3 mars 2026 à 10 h 12, une nouvelle clé d'accès a été ajoutée" in message.text
    assert "On 3 March 2026 at 10:12, a new passkey was added" in message.text


def runtime_settings() -> Any:
    from espace_sante.settings import Settings

    return Settings(base_url="https://espace-sante.example")
