"""Notices of a new space (PRODUCT section 2, docs/notices.md): each `registered` space gets an activation code
and a notice, by e-mail when the registry gave an address, else by letter; a minor's notice goes to the
representative(s), naming the child.

Exactly once, crash or not: for each person ONE transaction issues the code (activation.issue_in), moves the
space to `notified` (the lifecycle's own transition, in that transaction) and records the notice (the e-mail's
text, or the letter's data) in the `notice` table. Delivery happens after commit, from that table:

- an e-mail in the embedded default (no SMTP relay) is written to the `outbox` under the notice's id in the
  same transaction that marks it delivered: never twice, never lost;
- through an SMTP relay it is sent, then marked delivered (a crash between the two is the one window where a
  relay may see it twice; it is never skipped);
- a letter waits for `letters build`, which prints it into a batch PDF and, in the transaction that marks it
  built, erases its code from the database (the code then exists only on paper).

No medical content is ever in a notice: only the dates, the code and how to oppose or activate."""

from __future__ import annotations

import asyncio
import csv
import os
import smtplib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import orjson

from ..access.actors import SYSTEM
from ..access.policy import decide
from ..audit.wording import MONTHS_FR
from ..context import Context
from ..errors import Conflict, NotFound
from ..logs import get_logger
from ..storage import accounts as accounts_store
from ..storage import notices as store
from ..storage import people, resources
from ..storage.db import Conn
from . import activation, lifecycle
from .mail import Message, OutboxMailer, mailer
from .runtime import Runtime

log = get_logger(__name__)

BATCH = 500
LETTERS_PER_FILE = 500
PHONE = "34 22"
_MONTHS_EN = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def day_fr(day: date) -> str:
    return f"{'1er' if day.day == 1 else day.day} {MONTHS_FR[day.month - 1]} {day.year}"


def day_en(day: date) -> str:
    return f"{day.day} {_MONTHS_EN[day.month - 1]} {day.year}"


# --- who the notice goes to ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """What a notice needs of a person, from their Patient (the registry's administrative data)."""

    name: str
    birth_date: str = ""
    email: str = ""
    address_line: str = ""
    postal_code: str = ""
    city: str = ""


def person_of(body: dict[str, Any]) -> Person:
    names = body.get("name") or [{}]
    given = " ".join(names[0].get("given") or [])
    name = f"{given} {names[0].get('family', '')}".strip()
    email = next((t.get("value", "") for t in body.get("telecom") or [] if t.get("system") == "email"), "")
    address = (body.get("address") or [{}])[0]
    return Person(
        name=name,
        birth_date=str(body.get("birthDate") or ""),
        email=str(email or ""),
        address_line=" ".join(address.get("line") or []),
        postal_code=str(address.get("postalCode") or ""),
        city=str(address.get("city") or ""),
    )


async def _person(
    conn: Conn, rt: Runtime, space_id: uuid.UUID, patient_id: str | None = None
) -> Person | None:
    pid = patient_id or await store.patient_of(conn, space_id)
    if pid is None:
        return None
    stored = await resources.read(conn, rt.keys, decide(SYSTEM, "read", "Patient"), space_id, "Patient", pid)
    if stored is None or stored.body is None:
        return None
    return person_of(orjson.loads(stored.body))


# --- the words -------------------------------------------------------------------------------------------------

SUBJECT = "Mon espace santé : votre espace a été créé / your health space was created"
SUBJECT_CHILD = (
    "Mon espace santé : l'espace de votre enfant a été créé / your child's health space was created"
)


def paragraphs_fr(base_url: str, opens_on: date, code: str, child: str | None) -> list[str]:
    page = base_url.rstrip("/") + "/activation"
    whose = f"de votre enfant {child}" if child else "votre"
    born = "la date de naissance de votre enfant" if child else "votre date de naissance"
    return [
        (
            f"Un espace santé (Mon espace santé) a été créé pour votre enfant {child}."
            if child
            else "Votre espace santé (Mon espace santé) a été créé."
        ),
        f"Il sera ouvert le {day_fr(opens_on)}, sauf si vous vous y opposez d'ici là.",
        f"Code d'activation confidentiel : {code} (valable jusqu'au {day_fr(opens_on)}).",
        f"Pour vous opposer à la création de l'espace {whose} : en ligne sur {page} avec ce code et {born} ; "
        f"par téléphone au {PHONE} ; ou à l'accueil de votre caisse d'assurance maladie.",
        f"Pour l'activer sans attendre : sur {page}, saisissez ce code et {born}, puis choisissez votre moyen "
        "de connexion.",
        "Ne communiquez jamais ce code : nos services ne vous le demanderont jamais.",
    ]


def paragraphs_en(base_url: str, opens_on: date, code: str, child: str | None) -> list[str]:
    page = base_url.rstrip("/") + "/activation"
    born = "your child's birth date" if child else "your birth date"
    return [
        (
            f"A health space (Mon espace santé) was created for your child {child}."
            if child
            else "Your health space (Mon espace santé) was created."
        ),
        f"It will open on {day_en(opens_on)}, unless you object before then.",
        f"Confidential activation code: {code} (valid until {day_en(opens_on)}).",
        f"To object: online at {page} with this code and {born}; by phone on {PHONE}; or at a counter of "
        "your health insurance office.",
        f"To activate it now: at {page}, type this code and {born}, then choose how you will sign in.",
        "Never share this code: we will never ask for it.",
    ]


def email_text(base_url: str, to_name: str, opens_on: date, code: str, child: str | None) -> str:
    fr = "\n\n".join(paragraphs_fr(base_url, opens_on, code, child))
    en = "\n\n".join(paragraphs_en(base_url, opens_on, code, child))
    return f"Bonjour {to_name},\n\n{fr}\n\nMon espace santé\n\n---\n\nHello {to_name},\n\n{en}\n"


# --- sending ---------------------------------------------------------------------------------------------------


@dataclass
class SendCounts:
    notified: int = 0
    emails: int = 0
    letters: int = 0
    delivered: int = 0
    failed: int = 0
    skipped: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "notified": self.notified,
            "emails": self.emails,
            "letters": self.letters,
            "delivered": self.delivered,
            "failed": self.failed,
        }


def valid_until(opens_on: date) -> datetime:
    """The code works until the space opens (the end of the opposition window)."""
    return datetime.combine(opens_on, time.min, tzinfo=UTC)


async def _queue(
    conn: Conn, rt: Runtime, space_id: uuid.UUID, to: Person, opens_on: date, code: str, child: str | None
) -> str:
    notice_id = uuid.uuid4()
    if to.email:
        subject = SUBJECT_CHILD if child else SUBJECT
        text = email_text(rt.settings.base_url, to.name, opens_on, code, child)
        await store.add_email(conn, space_id, notice_id, to.email, subject, text)
        return "email"
    letter = {
        "name": to.name,
        "address_line": to.address_line,
        "postal_code": to.postal_code,
        "city": to.city,
        "child": child or "",
        "opens_on": opens_on.isoformat(),
        "code": code,
    }
    await store.add_letter(conn, space_id, notice_id, letter)
    return "letter"


async def notify_in(conn: Conn, ctx: Context, space_id: uuid.UUID, on: date) -> list[str]:
    """One person, in the caller's transaction: to `notified` (Conflict if no longer `registered`), a code,
    the notice(s) recorded. Returns the channels of the notices queued."""
    rt = ctx.runtime
    await lifecycle.notify_in(conn, ctx, space_id, on)
    opens_on = on + timedelta(days=rt.settings.opposition_window_days)
    code = await activation.issue_in(conn, ctx, space_id, valid_until=valid_until(opens_on))
    holder = await _person(conn, rt, space_id)
    if holder is None:
        raise NotFound("Patient introuvable / no Patient in the space")
    representatives: list[Person] = []
    for ins in await people.representatives_of(conn, space_id):
        ref = await people.patient_by_ins(conn, ins)
        rep = None if ref is None else await _person(conn, rt, ref.space_id, ref.patient_id)
        if rep is not None and (rep.email or rep.address_line):
            representatives.append(rep)
    if await people.representatives_of(conn, space_id) and not representatives:
        # A minor whose representatives the registry does not reach: a letter to the child's address,
        # addressed to the child's legal representatives.
        to = Person(
            name=f"Aux représentants légaux de {holder.name}",
            address_line=holder.address_line,
            postal_code=holder.postal_code,
            city=holder.city,
        )
        return [await _queue(conn, rt, space_id, to, opens_on, code, holder.name)]
    if representatives:
        return [await _queue(conn, rt, space_id, r, opens_on, code, holder.name) for r in representatives]
    return [await _queue(conn, rt, space_id, holder, opens_on, code, None)]


async def send(rt: Runtime, as_of: date | None = None, *, batch: int = BATCH) -> SendCounts:
    """Notify every `registered` space (one transaction per person), then deliver the e-mails waiting."""
    on = as_of or date.today()
    ctx = Context.system(rt)
    counts = SendCounts()
    after: uuid.UUID | None = None
    while True:
        spaces = await rt.db.read("notices_registered", store.registered_spaces, after, batch)
        for space_id in spaces:
            try:
                channels = await rt.db.interaction("notices_notify", notify_in, ctx, space_id, on)
            except (Conflict, NotFound) as exc:  # notified meanwhile by another run, or no Patient
                counts.skipped.append(f"{space_id}: {exc}")
                continue
            counts.notified += 1
            counts.emails += channels.count("email")
            counts.letters += channels.count("letter")
        if len(spaces) < batch:
            break
        after = spaces[-1]
    delivered, failed = await deliver(rt, batch=batch)
    counts.delivered, counts.failed = delivered, failed
    return counts


async def deliver(rt: Runtime, *, batch: int = BATCH) -> tuple[int, int]:
    """Deliver the recorded e-mails not yet delivered (also those a crash left): (delivered, failed)."""
    sender = mailer(rt)
    delivered = failed = 0
    while True:

        async def step(conn: Conn) -> tuple[int, int]:
            done = bad = 0
            for n in await store.due_emails(conn, batch):
                if isinstance(sender, OutboxMailer):
                    # The outbox is in this database: written under the notice's id with the mark, at once.
                    await accounts_store.add_outbox(
                        conn, n.notice_id, recipient=n.recipient, subject=n.subject, body=n.body
                    )
                else:
                    try:
                        await sender.send(Message(n.recipient, n.subject, n.body))
                    except (OSError, smtplib.SMTPException) as exc:
                        log.warning("notice.mail_failed", error=type(exc).__name__)
                        await store.mark_failed(conn, n.space_id, n.notice_id, type(exc).__name__)
                        bad += 1
                        continue
                await store.mark_delivered(conn, n.space_id, n.notice_id)
                done += 1
            return done, bad

        done, bad = await rt.db.interaction("notices_deliver", step)
        delivered += done
        failed += bad
        if bad or done < batch:  # a failing relay: stop, the next run tries again
            return delivered, failed


# --- letters ---------------------------------------------------------------------------------------------------

MANIFEST = ("file", "page", "name", "address", "postal_code", "city")


@dataclass
class Built:
    files: list[str] = field(default_factory=list)
    letters: int = 0
    manifest: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"files": self.files, "letters": self.letters, "manifest": self.manifest}


def _write_batch(
    out: Path, manifest: Path, pdf_name: str, letters: list[dict[str, Any]], base_url: str
) -> int:
    """The PDF (renamed into place once whole) and its manifest rows; returns the manifest's size before."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / pdf_name
    partial = target.with_suffix(".pdf.part")
    render(partial, letters, base_url)
    size = manifest.stat().st_size if manifest.exists() else 0
    with manifest.open("a", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        if size == 0:
            writer.writerow(MANIFEST)
        for page, a in enumerate(letters, start=1):
            writer.writerow([pdf_name, page, a["name"], a["address_line"], a["postal_code"], a["city"]])
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(partial, target)
    return size


def _undo_batch(out: Path, manifest: Path, pdf_name: str, size: int) -> None:
    (out / pdf_name).unlink(missing_ok=True)
    (out / pdf_name).with_suffix(".pdf.part").unlink(missing_ok=True)
    if manifest.exists():
        with manifest.open("r+b") as fh:
            fh.truncate(size)
        if size == 0:
            manifest.unlink()


async def build_letters(rt: Runtime, out: Path, *, per_file: int = LETTERS_PER_FILE) -> Built:
    """Print the queued letters into batch PDFs in `out` (one A4 page each) with one CSV manifest for the
    run. Each PDF, and its manifest rows, is written inside the transaction that marks its letters built and
    erases their codes: a failure before commit removes them, so a letter is built once."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    manifest = out / f"manifest-{stamp}.csv"
    result = Built()
    number = 0
    while True:
        number += 1
        name = f"lettres-{stamp}-{number:03d}.pdf"

        async def step(conn: Conn, pdf_name: str) -> int:
            letters = await store.due_letters(conn, per_file)
            if not letters:
                return 0
            data = [n.letter for n in letters]
            size = await asyncio.to_thread(_write_batch, out, manifest, pdf_name, data, rt.settings.base_url)
            try:
                await store.mark_built(
                    conn, [(n.space_id, n.notice_id, pdf_name, page) for page, n in enumerate(letters, 1)]
                )
            except BaseException:
                await asyncio.to_thread(_undo_batch, out, manifest, pdf_name, size)
                raise
            return len(letters)

        done = await rt.db.interaction("letters_build", step, name)
        if done:
            result.files.append(name)
            result.letters += done
            result.manifest = manifest.name
        if done < per_file:
            return result


_FONT_FILES = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
)


def _fonts() -> tuple[str, str]:
    """DejaVu when installed (every Latin name: Ngô Văn), else reportlab's Helvetica (Latin-1)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    regular, bold = _FONT_FILES
    if not (regular.exists() and bold.exists()):
        return "Helvetica", "Helvetica-Bold"
    if "NoticeSans" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("NoticeSans", str(regular)))
        pdfmetrics.registerFont(TTFont("NoticeSans-Bold", str(bold)))
    return "NoticeSans", "NoticeSans-Bold"


def render(path: Path, letters: list[dict[str, Any]], base_url: str) -> None:
    """One A4 page per letter, in French. The address block sits where a French DL window envelope shows it
    (left 110 mm, top 50 mm, 85 x 40 mm); the sender top left; then the same words as the e-mail."""
    from xml.sax.saxutils import escape

    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.pdfgen.canvas import Canvas
    from reportlab.platypus import Frame, Paragraph

    regular, bold = _fonts()
    width, height = A4
    body = ParagraphStyle("body", fontName=regular, fontSize=10.5, leading=14, spaceAfter=7)
    strong = ParagraphStyle("strong", parent=body, fontName=bold)
    pdf = Canvas(str(path), pagesize=A4, pageCompression=1)
    pdf.setTitle("Mon espace santé - avis de création")
    pdf.setAuthor("Mon espace santé")
    for letter in letters:
        pdf.setFont(bold, 11)
        pdf.drawString(20 * mm, height - 20 * mm, "Mon espace santé")
        pdf.setFont(regular, 9)
        pdf.drawString(20 * mm, height - 25 * mm, "Assurance maladie - service Mon espace santé")
        pdf.drawString(20 * mm, height - 29 * mm, f"Téléphone : {PHONE}")
        y = height - 55 * mm
        pdf.setFont(regular, 11)
        for line in (
            letter["name"],
            letter["address_line"],
            f"{letter['postal_code']} {letter['city']}".strip(),
        ):
            if line:
                pdf.drawString(110 * mm, y, line[:48])
                y -= 5 * mm
        opens_on = date.fromisoformat(letter["opens_on"])
        child = letter.get("child") or None
        code = letter.get("code", "")
        story: list[Any] = [
            Paragraph(escape(SUBJECT_CHILD.split(" / ")[0] if child else SUBJECT.split(" / ")[0]), strong),
            Paragraph(escape(f"Bonjour {letter['name']},"), body),
        ]
        for text in paragraphs_fr(base_url, opens_on, code, child):
            style = strong if text.startswith("Code d'activation") else body
            story.append(Paragraph(escape(text), style))
        story.append(Paragraph("Mon espace santé", body))
        Frame(20 * mm, 20 * mm, width - 40 * mm, height - 120 * mm, showBoundary=0).addFromList(story, pdf)
        pdf.showPage()
    pdf.save()
