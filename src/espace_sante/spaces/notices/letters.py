"""Letters (docs/notices.md, "Letters" and "Retention"): a notice that has no e-mail address waits for
`letters build`, which prints it into a batch PDF (one A4 page each, reportlab) with a CSV manifest for the
mailing house and, in the transaction that marks it built, erases its code from the database (the code then
exists only on paper). Then the files themselves go: when the operator confirms a batch was handed over
(`hand_over`), or `letter_files_days` after it was built (`purge`, with the outbox texts of delivered e-mails)."""

from __future__ import annotations

import asyncio
import csv
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from espace_sante.access.actors import SYSTEM
from espace_sante.errors import NotFound
from espace_sante.logs import get_logger
from espace_sante.runtime import Runtime
from espace_sante.spaces.notices import addressees, words
from espace_sante.spaces.notices.words import PHONE
from espace_sante.storage import notices as store
from espace_sante.storage.db import Conn

log = get_logger(__name__)

LETTERS_PER_FILE = 500


async def letters_of(rt: Runtime, space_id: uuid.UUID) -> list[dict[str, Any]]:
    """A space's letters as stored, opened (operators, tests): their data, without the code once built."""

    async def q(conn: Conn) -> list[dict[str, Any]]:
        out = []
        for n in await store.letters(conn, addressees.reading(), space_id):
            out.append(await _open(conn, rt, n))
        return out

    return await rt.db.read("notice_letters", q)


async def _open(conn: Conn, rt: Runtime, n: store.LetterNotice) -> dict[str, Any]:
    if n.sealed is None or n.key_version is None:
        return dict(n.letter or {})
    aead = await rt.keys.version(conn, n.space_id, n.key_version)
    return words.open_notice(aead, n.key_version, n.space_id, n.notice_id, n.sealed)


MANIFEST = ("file", "page", "name", "address", "postal_code", "city")


@dataclass
class Built:
    files: list[str] = field(default_factory=list)
    letters: int = 0
    manifest: str | None = None
    #: The run's id, in its file names: what `letters handed` names once the files went to the mailing house.
    batch: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"files": self.files, "letters": self.letters, "manifest": self.manifest, "batch": self.batch}


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
    folder = str(await asyncio.to_thread(out.resolve))
    result = Built()
    number = 0
    while True:
        number += 1
        name = f"lettres-{stamp}-{number:03d}.pdf"

        async def step(conn: Conn, pdf_name: str) -> int:
            letters = await store.due_letters(conn, addressees.reading(), per_file)
            if not letters:
                return 0
            data = [await _open(conn, rt, n) for n in letters]
            built: list[tuple[uuid.UUID, uuid.UUID, str, int, bytes | None]] = []
            for page, (n, letter) in enumerate(zip(letters, data, strict=True), 1):
                resealed = None
                if n.sealed is not None and n.key_version is not None:
                    # Kept sealed, without the code (it exists only on paper now).
                    aead = await rt.keys.version(conn, n.space_id, n.key_version)
                    rest = {k: v for k, v in letter.items() if k != "code"}
                    resealed = words.seal_notice(aead, n.key_version, n.space_id, n.notice_id, rest)
                built.append((n.space_id, n.notice_id, pdf_name, page, resealed))
            # Where the run's files are, with the letters they hold: the retention purge finds them there.
            await store.add_letter_batch(conn, stamp, folder)
            size = await asyncio.to_thread(_write_batch, out, manifest, pdf_name, data, rt.settings.base_url)
            try:
                await store.mark_built(conn, built)
            except BaseException:
                await asyncio.to_thread(_undo_batch, out, manifest, pdf_name, size)
                raise
            return len(letters)

        done = await rt.db.interaction("letters_build", step, name)
        if done:
            result.files.append(name)
            result.letters += done
            result.manifest = manifest.name
            result.batch = stamp
        if done < per_file:
            return result


# --- retention: no code in clear kept longer than needed (ASVS 8.3.8, docs/notices.md "Retention") ----------

_BATCH_ID = re.compile(r"(?:manifest-|lettres-)?(\d{8}T\d{6}Z-[0-9a-f]{6})(?:-\d{3})?(?:\.csv|\.pdf)?")
#: Outbox texts dropped per statement (a national run's outbox: millions of rows, in short transactions).
_OUTBOX_BATCH = 10_000


def batch_id_of(text: str) -> str | None:
    """The batch a name stands for: its id, or one of its files' names or paths (the manifest, a PDF)."""
    found = _BATCH_ID.fullmatch(Path(text).name)
    return found.group(1) if found else None


def _delete_batch_files(out_dir: str, batch_id: str) -> int | None:
    """Delete the run's PDFs (whole or partial) and manifest; how many went, or None when its folder is not on
    this machine (the purge is then left to a run where it is)."""
    folder = Path(out_dir)
    if not folder.is_dir():
        return None
    deleted = 0
    patterns = (f"lettres-{batch_id}-*.pdf", f"lettres-{batch_id}-*.pdf.part", f"manifest-{batch_id}.csv")
    for pattern in patterns:
        for path in folder.glob(pattern):
            path.unlink(missing_ok=True)
            deleted += 1
    return deleted


@dataclass
class Purged:
    batches: int = 0
    files: int = 0
    #: Batches due whose folder this machine does not see (built elsewhere): left for a run there.
    unreachable: list[str] = field(default_factory=list)
    outbox_texts: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "files": self.files,
            "unreachable": self.unreachable,
            "outbox_texts": self.outbox_texts,
        }


async def _purge_batches(rt: Runtime, batches: list[store.LetterBatch], result: Purged) -> None:
    gone: list[str] = []
    for b in batches:
        deleted = await asyncio.to_thread(_delete_batch_files, b.out_dir, b.batch_id)
        if deleted is None:
            result.unreachable.append(b.batch_id)
            log.warning("letters.purge_unreachable", batch=b.batch_id, folder=b.out_dir)
            continue
        gone.append(b.batch_id)
        result.files += deleted
    if gone:
        await rt.db.interaction("letters_purged", store.mark_letter_batches_purged, gone)
        result.batches += len(gone)


async def hand_over(rt: Runtime, name: str, *, operator: str | None = None) -> Purged:
    """The operator confirms a batch of letters went to the mailing house: its files (the codes in clear) are
    deleted now. `name` is the batch's id or one of its files. NotFound when no batch by that name was built;
    confirming again deletes whatever is left."""
    batch_id = batch_id_of(name)
    if batch_id is None:
        raise NotFound(
            f"« {name} » ne désigne pas un lot de lettres (manifest-….csv) / does not name a letter batch"
        )
    who = operator or SYSTEM.id
    batch = await rt.db.interaction("letters_handed", store.hand_letter_batch, batch_id, who)
    if batch is None:
        raise NotFound(f"aucun lot de lettres « {batch_id} » / no letter batch {batch_id}")
    result = Purged()
    await _purge_batches(rt, [batch], result)
    log.info("letters.handed", batch=batch_id, operator=who, files=result.files)
    return result


async def purge(rt: Runtime) -> Purged:
    """What the retention rules say must go now (the worker's hourly `notices.purge`, `notices purge`): the
    files of letter batches handed over or built `letter_files_days` ago, and the texts of outbox messages
    delivered `outbox_body_days` ago (their rows stay). Idempotent."""
    result = Purged()
    due = await rt.db.read("letters_to_purge", store.letter_batches_to_purge, rt.settings.letter_files_days)
    await _purge_batches(rt, due, result)
    while True:
        dropped = await rt.db.interaction(
            "outbox_purge", store.drop_outbox_bodies, rt.settings.outbox_body_days, _OUTBOX_BATCH
        )
        result.outbox_texts += dropped
        if dropped < _OUTBOX_BATCH:
            break
    if result.batches or result.outbox_texts or result.unreachable:
        log.info("notices.purged", **{k: v for k, v in result.as_json().items() if k != "unreachable"})
    return result


_FONT_FILES = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
)


def fonts() -> tuple[str, str]:
    """DejaVu when installed (every Latin name: Ngô Văn), else reportlab's Helvetica (Latin-1)."""
    # Imported here: reportlab takes seconds to import, which the server and CLI pay only when a PDF is made.
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
    # Imported here: reportlab takes seconds to import, which the server and CLI pay only when a PDF is made.
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.pdfgen.canvas import Canvas
    from reportlab.platypus import Frame, Paragraph

    regular, bold = fonts()
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
        title, paragraphs = words.letter_words(letter, base_url)
        story: list[Any] = [
            Paragraph(escape(title), strong),
            Paragraph(escape(f"Bonjour {letter['name']},"), body),
        ]
        for text in paragraphs:
            style = strong if text.startswith("Code d'activation") else body
            story.append(Paragraph(escape(text), style))
        story.append(Paragraph("Mon espace santé", body))
        Frame(20 * mm, 20 * mm, width - 40 * mm, height - 120 * mm, showBoundary=0).addFromList(story, pdf)
        pdf.showPage()
    pdf.save()
