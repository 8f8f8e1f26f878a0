"""Security notices by mail (SECURITY V2 2.2.3/2.5.5: tell the person when a credential or factor changes).

Two backends behind one small protocol (STYLE habit 8), chosen by settings: SMTP when `smtp_host` is set
(standard library `smtplib`, run in a thread), otherwise the `outbox` table (the embedded default; a later
command lists it). A message that SMTP refuses is kept in the outbox with the error, never lost.

The relay is reached over TLS when `smtp_starttls` or `smtp_implicit_tls` is set, and then its certificate
and its name are always verified (ASVS V9.2.1/9.2.2): against `smtp_ca_file` when a private CA signed it, else
the system's CAs. A relay that fails the check gets nothing: the message is kept for a later attempt, with the
reason logged and recorded (`describe`).

A notice says what changed and when, and what to do if it was not you: never any medical content, never a
secret, never the INS. Header values are checked for CR/LF (ASVS 5.2.3): `email.message` refuses them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import smtplib
import ssl
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr
from pathlib import Path
from typing import Literal, Protocol

from espace_sante.audit.wording import when
from espace_sante.logs import get_logger
from espace_sante.runtime import Runtime
from espace_sante.settings import Settings
from espace_sante.storage import accounts as store
from espace_sante.storage.db import Conn

log = get_logger(__name__)


@dataclass(frozen=True)
class Message:
    to: str
    subject: str
    text: str
    #: Further recipients of the same message, named in no header (each sees only their own address): the
    #: two representatives of a child told of one event get one message, delivered once.
    also: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for value in (self.to, self.subject, *self.also):
            if "\r" in value or "\n" in value:
                raise ValueError("a mail header cannot hold a line break")

    @property
    def recipients(self) -> tuple[str, ...]:
        return (self.to, *self.also)


class Mailer(Protocol):
    async def send(self, message: Message) -> None: ...


class OutboxMailer:
    """Keeps messages in the `outbox` table (no SMTP server configured)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def send(self, message: Message) -> None:
        await self.rt.db.interaction("mail_outbox", _keep, message, "")


async def _keep(conn: Conn, message: Message, error: str) -> None:
    await keep(conn, uuid.uuid4(), message, error)


async def keep(conn: Conn, message_id: uuid.UUID, message: Message, error: str = "") -> None:
    """Keep `message` in the outbox under `message_id`, in the caller's transaction."""
    await store.add_outbox(
        conn,
        message_id,
        recipient=", ".join(message.recipients),
        subject=message.subject,
        body=message.text,
        error=error,
    )


@functools.cache
def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The client context for the relay: certificate and host name checked, TLS 1.2 at least; trusting only
    `ca_file` when given (a private CA), else the system's CAs. Made once per CA file: loading the system's
    store costs milliseconds, and a national run delivers millions of messages."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    return context


def describe(exc: BaseException) -> str:
    """Why a relay did not get a message, for the notice's `error` and the logs: the exception's type, plus,
    for TLS, what the check found (no address, no text)."""
    name = type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{name}: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"{name}: {exc.reason or exc}"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"{name}: {exc}"
    if isinstance(exc, OSError) and exc.filename:  # the CA file (ESPACE_SANTE_SMTP_CA_FILE)
        return f"{name}: {exc.filename}"
    return name


class SmtpMailer:
    def __init__(self, settings: Settings) -> None:
        if not settings.smtp_host:
            raise ValueError("no SMTP host configured")
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.implicit_tls = settings.smtp_implicit_tls
        self.starttls = settings.smtp_starttls and not self.implicit_tls
        self.ca_file = settings.smtp_ca_file
        self.sender = settings.mail_from
        self.domain = self.sender.rsplit("@", 1)[-1].strip(" >") or "espace-sante.localhost"

    def connect(self) -> smtplib.SMTP:
        """A session with the relay, over verified TLS when configured (blocking: run it in a thread). A relay
        whose certificate or name fails the check is left before anything is sent (logged `mail.tls_refused`);
        a relay that does not offer STARTTLS when it is asked for is left too (no quiet fall back to clear
        text). Raises OSError (ssl.SSLError included) or SMTPException."""
        context = None
        if self.implicit_tls or self.starttls:
            try:  # a CA file missing or not PEM: said before any connection, as the check would fail anyway
                context = tls_context(self.ca_file)
            except OSError as exc:
                if not exc.filename and self.ca_file:  # OpenSSL does not say which file it could not read
                    exc.filename = str(self.ca_file)
                self._refused(exc)
                raise
        try:
            if self.implicit_tls:
                return smtplib.SMTP_SSL(self.host, self.port, timeout=10, context=context)
            smtp = smtplib.SMTP(self.host, self.port, timeout=10)
        except ssl.SSLError as exc:
            self._refused(exc)
            raise
        if self.starttls:
            try:
                smtp.starttls(context=context)
            except (OSError, smtplib.SMTPException) as exc:
                smtp.close()
                self._refused(exc)
                raise
        return smtp

    def _refused(self, exc: BaseException) -> None:
        log.warning("mail.tls_refused", host=self.host, port=self.port, reason=describe(exc))

    def build(self, message: Message, message_id: str | None = None) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.sender
        # Several recipients are not shown to each other (RFC 5322 3.6.3: the group syntax, no address).
        mail["To"] = message.to if not message.also else "undisclosed-recipients:;"
        mail["Subject"] = message.subject
        mail["Message-ID"] = message_id or make_msgid(domain=self.domain)
        mail["Date"] = datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")
        mail["Auto-Submitted"] = "auto-generated"
        mail.set_content(message.text)
        return mail

    def _send_sync(self, message: Message) -> None:
        mail = self.build(message)
        with self.connect() as smtp:
            smtp.send_message(mail, to_addrs=list(message.recipients))

    async def send(self, message: Message) -> None:
        await asyncio.to_thread(self._send_sync, message)


def stable_message_id(ident: uuid.UUID, domain: str, what: str = "notice") -> str:
    """The Message-ID of a notice (or of another message sent once, `what`), the same at every attempt: a
    mailbox that already holds it may drop a second copy (many do); our own guarantee does not rest on that
    (docs/notices.md). Short enough to stay on one header line (RFC 5322 2.1.1: 78 characters)."""
    return f"<{what}.{ident.hex}@{domain}>"


class HandOff:
    """One message to the SMTP relay in three steps, so that the caller can record, in between, the one
    moment that matters: the relay accepts a message only when the "." that ends DATA arrives (RFC 5321
    4.1.1.4); a session cut before it leaves nothing behind.

    `stage()` connects and sends everything but that "." (blocking: run it in a thread); `hand()` sends the
    "." (three bytes, immediate); `answer()` reads the relay's reply (blocking), raising SMTPDataError on a
    refusal (not accepted) and OSError/SMTPServerDisconnected when the answer is lost (maybe accepted)."""

    def __init__(self, smtp_mailer: SmtpMailer, message: Message, message_id: str) -> None:
        self.mailer = smtp_mailer
        self.mail = smtp_mailer.build(message, message_id)
        self.to = message.recipients
        self._smtp: smtplib.SMTP | None = None

    def stage(self) -> None:
        m = self.mailer
        smtp = m.connect()
        self._smtp = smtp
        try:
            smtp.ehlo_or_helo_if_needed()
            sender = parseaddr(m.sender)[1]
            code, reply = smtp.mail(sender)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, reply, sender)
            for to in self.to:
                code, reply = smtp.rcpt(to)
                if code not in (250, 251):
                    raise smtplib.SMTPRecipientsRefused({to: (code, reply)})
            code, reply = smtp.docmd("data")
            if code != 354:
                raise smtplib.SMTPDataError(code, reply)
            data = self.mail.as_bytes(policy=policy.SMTP)
            data = re.sub(rb"(?m)^\.", b"..", data)  # dot-stuffing (RFC 5321 4.5.2)
            if not data.endswith(b"\r\n"):
                data += b"\r\n"
            smtp.send(data)
        except BaseException:
            self.abort()
            raise

    def hand(self) -> None:
        assert self._smtp is not None
        self._smtp.send(b".\r\n")

    def answer(self) -> None:
        assert self._smtp is not None
        code, reply = self._smtp.getreply()
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)
        with contextlib.suppress(OSError, smtplib.SMTPException):  # accepted already: QUIT is a courtesy
            self._smtp.quit()
        self._smtp = None

    def abort(self) -> None:
        """Drop the session without the final ".": the relay discards the message."""
        if self._smtp is not None:
            with contextlib.suppress(OSError):
                self._smtp.close()
            self._smtp = None


class DeliveryDeferred(Exception):
    """The relay did not take the message now (down, or refused it): not accepted, tried again later (a job's
    retries with backoff, then a periodic sweep). Its text is the error's type (with what a failed TLS check
    found: `describe`), never an address."""


class DeliveryStates(Protocol):
    """Where one message's delivery state is committed (a notice's row, a notification's row), each step on
    the delivering connection, in its own transaction, before the next step talks to the relay."""

    async def failed(self, conn: Conn, why: str) -> None: ...
    async def handed(self, conn: Conn) -> None: ...
    async def unhanded(self, conn: Conn, why: str) -> None: ...
    async def uncertain(self, conn: Conn, why: str) -> None: ...
    async def delivered(self, conn: Conn) -> None: ...


async def hand_over(
    conn: Conn, sender: SmtpMailer, message: Message, message_id: str, states: DeliveryStates
) -> Literal["delivered", "uncertain"]:
    """Deliver `message` to the relay at most once: "handed" is committed just before the "." that ends DATA,
    "delivered" when the relay says 250. An attempt that dies before the "." left nothing at the relay and may
    be sent again; one that dies after may have been accepted and is never sent again automatically (the
    caller's next attempt finds it handed and marks it uncertain). Raises DeliveryDeferred when the relay did
    not take it (the caller's job tries again later). `conn` holds the message's delivery lock
    (storage/locks.held_session) and no transaction."""
    handoff = HandOff(sender, message, message_id)
    try:
        await asyncio.to_thread(handoff.stage)
    except (OSError, smtplib.SMTPException) as exc:  # nothing accepted: the relay saw no final "."
        # A relay that failed the TLS check lands here too (ssl.SSLError is an OSError): the message was never
        # sent, so it waits for the next attempt with the check's reason as its error.
        why = describe(exc)
        async with conn.transaction():
            await states.failed(conn, why)
        raise DeliveryDeferred(why) from exc
    try:
        async with conn.transaction():
            await states.handed(conn)
    except BaseException:
        handoff.abort()
        raise
    # From here the relay may accept the message. The "." goes at once (three bytes, no thread hop) to keep
    # short the window where a crash loses it (after the commit of "handed", before the "." leaves): such a
    # message is marked uncertain by the next attempt, never silently dropped.
    try:
        handoff.hand()
    except OSError as exc:  # the relay had gone: the "." did not reach it, nothing accepted
        handoff.abort()
        async with conn.transaction():
            await states.unhanded(conn, type(exc).__name__)
        raise DeliveryDeferred(type(exc).__name__) from exc
    try:
        await asyncio.to_thread(handoff.answer)
    except smtplib.SMTPResponseException as exc:  # a refusal, with its code: not accepted
        handoff.abort()
        async with conn.transaction():
            await states.unhanded(conn, f"{type(exc).__name__} {exc.smtp_code}")
        raise DeliveryDeferred(type(exc).__name__) from exc
    except (OSError, smtplib.SMTPException) as exc:  # the answer is lost: maybe accepted, never resent
        handoff.abort()
        async with conn.transaction():
            await states.uncertain(conn, f"uncertain: {type(exc).__name__}")
        return "uncertain"
    async with conn.transaction():
        await states.delivered(conn)
    return "delivered"


def mailer(rt: Runtime) -> Mailer:
    return SmtpMailer(rt.settings) if rt.settings.smtp_host else OutboxMailer(rt)


#: What changed, in the notice's words (French, then English).
CHANGES: dict[str, tuple[str, str]] = {
    "passkey": (
        "une nouvelle clé d'accès a été ajoutée à votre compte",
        "a new passkey was added to your account",
    ),
    "passkey-removed": (
        "une clé d'accès a été retirée de votre compte",
        "a passkey was removed from your account",
    ),
    "totp": (
        "une application d'authentification (codes à usage unique) a été configurée pour votre compte",
        "an authenticator app (one-time codes) was set up for your account",
    ),
    "password": ("le mot de passe de votre compte a été changé", "your account's password was changed"),
    "recovery-codes": (
        "de nouveaux codes de secours ont été créés pour votre compte (les anciens ne marchent plus)",
        "new recovery codes were created for your account (the old ones no longer work)",
    ),
    "totp-replayed": (
        "un code à usage unique déjà utilisé a été présenté pour vous connecter (s'il ne vient pas de vous, "
        "quelqu'un connaît votre mot de passe)",
        "a one-time code already used was presented to sign in to your account (if it was not you, someone "
        "knows your password)",
    ),
    "recovery-code-used": (
        "un code de secours a été utilisé pour vous connecter à votre compte",
        "a recovery code was used to sign in to your account",
    ),
    "codes-guessed": (
        "de nombreux codes faux ont été saisis après votre mot de passe (s'ils ne viennent pas de vous, "
        "quelqu'un connaît votre mot de passe : changez-le) ; pendant une heure au plus, les codes ne sont "
        "acceptés que depuis les appareils où vous vous êtes déjà connecté, et les clés d'accès marchent",
        "many wrong codes were typed after your password (if it was not you, someone knows your password: "
        "change it); for up to an hour codes are only accepted from devices you signed in on before, and "
        "passkeys work",
    ),
}


def credential_notice(settings: Settings, to: str, change: str, at: datetime) -> Message:
    fr, en = CHANGES[change]
    page = settings.base_url.rstrip("/") + "/compte/securite"
    text = (
        f"Bonjour,\n\n"
        f"Le {when(at, 'fr').removeprefix('le ')}, {fr}.\n\n"
        f"Si c'est bien vous, il n'y a rien à faire.\n"
        f"Si ce n'est pas vous, connectez-vous et ouvrez la page « Sécurité du compte » ({page}) : fermez les "
        f"sessions que vous ne reconnaissez pas, changez votre mot de passe et retirez les moyens de "
        f"connexion inconnus. Ne communiquez jamais vos codes : nos services ne vous les demanderont pas.\n\n"
        f"Mon espace santé\n\n"
        f"---\n\n"
        f"Hello,\n\n"
        f"On {when(at, 'en').removeprefix('on ')}, {en}.\n\n"
        f"If it was you, there is nothing to do. If it was not, sign in and open the account security page "
        f"({page}): close the sessions you do not recognise, change your password and remove unknown sign-in "
        f"means. Never share your codes: we will never ask for them.\n"
    )
    subject = "Mon espace santé : modification de la sécurité de votre compte / account security change"
    return Message(to, subject, text)


async def notify_credential_change(rt: Runtime, to: str | None, change: str) -> None:
    """Send the notice of `change` (a key of CHANGES) to `to`, after the change has committed. Without an
    address nothing is sent. A failing SMTP server keeps the message in the outbox; it never fails the
    change itself, which has already happened."""
    if not to:
        log.info("mail.skipped", reason="no address", change=change)
        return
    message = credential_notice(rt.settings, to, change, datetime.now(UTC))
    sender = mailer(rt)
    try:
        await sender.send(message)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("mail.failed", change=change, error=describe(exc))
        await rt.db.interaction("mail_outbox", _keep, message, describe(exc))
