"""A real SMTP server for the tests (aiosmtpd in a thread of the test process) that records every message it
accepts: who it was for and its Message-ID. Counting what it received is the proof of "never twice"."""

from __future__ import annotations

import asyncio
import email
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller

from tests.cli.test_commands import _free_port


@dataclass
class Received:
    recipient: str
    message_id: str
    subject: str
    text: str
    #: The To header (several recipients are not shown to each other).
    to_header: str = ""


@dataclass
class Recorder:
    """aiosmtpd handler: accepts every message (or refuses those for `refuse`), answering `delay` seconds
    after it recorded it."""

    refuse: set[str] = field(default_factory=set)
    delay: float = 0.0
    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if any(to in self.refuse for to in envelope.rcpt_tos):
            return "554 5.7.1 refused by the test"
        parsed = email.message_from_bytes(envelope.content)
        body = parsed.get_payload(decode=True) if not parsed.is_multipart() else b""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else ""
        with self.lock:  # one message to several recipients: one line each, as each mailbox gets it
            for to in envelope.rcpt_tos:
                self.messages.append(
                    Received(to, str(parsed["Message-ID"]), str(parsed["Subject"]), text, str(parsed["To"]))
                )
        if self.delay:
            # Like a real relay: the message is queued (accepted) when the final "." arrives, and the answer
            # may come late; a client gone meanwhile does not take it back.
            await asyncio.sleep(self.delay)
        return "250 OK"

    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def by_recipient(self) -> Counter[str]:
        with self.lock:
            return Counter(m.recipient for m in self.messages)


class SmtpServer:
    def __init__(self, recorder: Recorder | None = None) -> None:
        self.recorder = recorder or Recorder()
        self.port = _free_port()
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
