"""The proof of opposition (PRODUCT section 2, issue 6: "with a proof of opposition the person can keep (PDF)").

An opposition is recorded by the lifecycle (`oppose`: online with the activation code, or by an operator for a
call or a visit to a counter); its `space:oppose` record in the space's trace says when and how, and outlives
the space's data. The proof is built from that record and the registry's identity kept for the person (name,
birth date): the same opposition always gives the same PDF text, so an operator can print it again later.

The reference printed on it is `OPP-` + 16 symbols of HMAC-SHA256(key, space | time | channel), the key
derived from the pepper (outside the database) with the label `opposition-proof`: nobody can make a reference
for an opposition that was not recorded, and the insurer checks one with the person's INS
(`espace-sante opposition check INS REF`, `verify`). Every configured pepper is tried, so a proof printed
before a pepper rotation still checks.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from xml.sax.saxutils import escape

from espace_sante.audit.wording import when
from espace_sante.context import Context
from espace_sante.errors import NotFound
from espace_sante.people.passwords import peppers
from espace_sante.runtime import Runtime
from espace_sante.spaces import lifecycle
from espace_sante.spaces.activation import holder_in, normalise
from espace_sante.spaces.notices import letters, words
from espace_sante.storage import activation as activation_store
from espace_sante.storage import audit as audit_store
from espace_sante.storage.audit import SUCCESS, Record
from espace_sante.storage.db import Conn

INSURER = "Assurance maladie - service Mon espace santé"
PHONE = words.PHONE  # the service's number, as the notices print it
CHANNELS_FR = {
    "online": "en ligne, avec le code d'activation",
    "phone": "par téléphone, auprès d'un conseiller",
    "counter": "à l'accueil d'une caisse d'assurance maladie",
}
CHANNELS_EN = {"online": "online", "phone": "by phone", "counter": "at a counter"}
#: The reference's symbols: the activation codes' alphabet (no 0/O, 1/I/L, U), read aloud on the phone.
_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
_LENGTH = 16


@dataclass(frozen=True)
class Opposition:
    space_id: uuid.UUID
    name: str
    birth_date: date | None
    at: datetime
    channel: str
    reference: str
    #: The space's state now: `opposed`, or `registered` again if the person asked for a space since.
    state: str

    @property
    def minor_then(self) -> bool:
        """Whether the person was under 18 when the opposition was recorded (their representative opposed)."""
        if self.birth_date is None:
            return False
        day = self.at.date()
        born = self.birth_date
        return (day.year - born.year - ((day.month, day.day) < (born.month, born.day))) < 18


def _symbols(raw: bytes) -> str:
    number = int.from_bytes(raw, "big")
    out = []
    for _ in range(_LENGTH):
        number, digit = divmod(number, len(_ALPHABET))
        out.append(_ALPHABET[digit])
    return "".join(out)


def reference(rt: Runtime, space_id: uuid.UUID, at: datetime, channel: str, key_id: str | None = None) -> str:
    """`OPP-XXXX-XXXX-XXXX-XXXX`: 16 symbols of 30 (78 bits) of an HMAC of the opposition's facts."""
    key = peppers(rt.settings).subkey("opposition-proof", key_id)
    message = f"opposition {space_id.hex} {at.astimezone(UTC).isoformat()} {channel}".encode()
    raw = _symbols(hmac.new(key, message, hashlib.sha256).digest()[:12])
    return "OPP-" + "-".join(raw[i : i + 4] for i in range(0, _LENGTH, 4))


async def _recorded_in(conn: Conn, rt: Runtime, space_id: uuid.UUID) -> Opposition:
    found = await activation_store.last_opposition(conn, space_id)
    if found is None:
        raise NotFound(
            "Aucune opposition enregistrée pour cet espace / no opposition recorded for this space"
        )
    at, channel, _ = found
    holder = await holder_in(conn, rt, space_id)
    return Opposition(
        space_id,
        holder.name,
        holder.birth_date,
        at,
        channel,
        reference(rt, space_id, at, channel),
        holder.state,
    )


async def recorded(rt: Runtime, space_id: uuid.UUID) -> Opposition:
    """The space's latest opposition. NotFound when none was recorded (or the space was destroyed)."""
    return await rt.db.read("opposition_recorded", _recorded_in, rt, space_id)


async def space_of_ins(rt: Runtime, ins: str) -> uuid.UUID:
    found = await lifecycle.space_of_ins(rt, ins)
    if found is None:
        raise NotFound("Aucun espace pour cet INS / no space for this INS")
    return found


async def verify(rt: Runtime, ins: str, ref: str) -> Opposition | None:
    """The opposition this reference proves for this person, or None (wrong reference, no opposition). The
    reference is compared as typed on the phone: case, spaces and dashes do not matter."""
    space_id = await space_of_ins(rt, ins)
    try:
        found = await recorded(rt, space_id)
    except NotFound:
        return None
    typed = normalise(ref).removeprefix("OPP")  # no O among the symbols: the prefix is unambiguous
    for key_id in peppers(rt.settings).keys:
        expected = normalise(reference(rt, space_id, found.at, found.channel, key_id)).removeprefix("OPP")
        if hmac.compare_digest(typed.encode(), expected.encode()):
            return found
    return None


def _day(value: date) -> str:
    return words.day_fr(value)


def pdf(op: Opposition) -> bytes:
    """The proof, one A4 page in French with an English summary: who, when, how, the reference, what it means
    and how to ask for a space later."""
    # Imported here: reportlab takes seconds to import, which the server and CLI pay only when a PDF is made.
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.pdfgen.canvas import Canvas
    from reportlab.platypus import Frame, Paragraph

    regular, bold = letters.fonts()
    width, height = A4
    body = ParagraphStyle("body", fontName=regular, fontSize=10.5, leading=14, spaceAfter=7)
    strong = ParagraphStyle("strong", parent=body, fontName=bold)
    title = ParagraphStyle("title", parent=body, fontName=bold, fontSize=14, leading=18, spaceAfter=10)
    small = ParagraphStyle("small", parent=body, fontSize=9, leading=12)
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4, pageCompression=1, invariant=1)
    canvas.setTitle("Attestation d'opposition - Mon espace santé")
    canvas.setAuthor(INSURER)
    canvas.setFont(bold, 11)
    canvas.drawString(20 * mm, height - 20 * mm, "Mon espace santé")
    canvas.setFont(regular, 9)
    canvas.drawString(20 * mm, height - 25 * mm, INSURER)
    canvas.drawString(20 * mm, height - 29 * mm, f"Téléphone : {PHONE}")

    child = op.minor_then
    who = "Enfant concerné" if child else "Nom"
    born = _day(op.birth_date) if op.birth_date else "non connue"
    channel_fr = CHANNELS_FR.get(op.channel, op.channel)
    space_words = "l'espace santé de votre enfant" if child else "votre espace santé"
    story: list[Any] = [
        Paragraph("Attestation d'opposition à la création de Mon espace santé", title),
        Paragraph(escape(f"{who} : {op.name}"), strong),
        Paragraph(escape(f"Date de naissance : {born}"), body),
        Paragraph(escape(f"Opposition enregistrée {when(op.at)} (heure de Paris), {channel_fr}."), body),
        Paragraph(escape(f"Référence : {op.reference}"), strong),
        Paragraph("Ce que cela signifie", strong),
        Paragraph(
            escape(
                f"L'opposition à la création de {space_words} est enregistrée. Cet espace ne sera pas ouvert et "
                "aucun professionnel de santé ne pourra y déposer de document."
            ),
            body,
        ),
        Paragraph(
            escape(
                "Aucune donnée médicale n'est conservée : ce qui avait pu y être déposé a été supprimé "
                "définitivement. Seules l'identité transmise par l'Assurance maladie (nom, date de naissance) et "
                "la trace de l'opposition sont gardées, pour la prouver et pour ne pas créer d'espace à nouveau."
            ),
            body,
        ),
        Paragraph(
            escape(
                "Vous pourrez changer d'avis à tout moment : pour demander la création de l'espace, appelez le "
                f"{PHONE} ou rendez-vous à l'accueil de votre caisse d'assurance maladie. Un nouveau courrier "
                "avec un code d'activation vous sera alors envoyé."
            ),
            body,
        ),
        Paragraph(
            escape(
                "Gardez cette attestation. L'Assurance maladie peut vérifier qu'elle est authentique grâce à sa "
                "référence."
            ),
            body,
        ),
        Paragraph(
            escape(
                f"In English: the objection to the creation of this Mon espace santé health space was recorded "
                f"{when(op.at, 'en')} (Paris time), {CHANNELS_EN.get(op.channel, op.channel)}, reference "
                f"{op.reference}. The space will not be opened and no medical data is kept. To ask for a space "
                f"later, call {PHONE} or visit a health insurance office."
            ),
            small,
        ),
        Paragraph(escape(INSURER), body),
    ]
    Frame(20 * mm, 20 * mm, width - 40 * mm, height - 60 * mm, showBoundary=0).addFromList(story, canvas)
    canvas.showPage()
    canvas.save()
    return out.getvalue()


async def proof_pdf(ctx: Context, space_id: uuid.UUID) -> tuple[Opposition, bytes]:
    """The proof of the space's latest opposition, printed by an operator (after one by phone or at a counter,
    or again on request): it shows the person's name and birth date, so who printed it is traced in the
    space's chain, in the same transaction as the read. NotFound when none was recorded."""
    actor = ctx.actor

    async def work(conn: Conn) -> Opposition:
        found = await _recorded_in(conn, ctx.runtime, space_id)
        await audit_store.append(
            conn,
            space_id,
            Record(
                action="opposition:proof",
                outcome=SUCCESS,
                actor_kind=actor.kind,
                actor_id=actor.id,
                actor_display=actor.display,
                basis="attestation d'opposition / proof of objection",
                detail=found.reference,
                request_id=ctx.request_id,
            ),
        )
        return found

    found = await ctx.runtime.db.interaction("opposition_proof", work)
    return found, pdf(found)


def filename(op: Opposition) -> str:
    """A file name that names nobody (it may be seen in a downloads list)."""
    return f"attestation-opposition-{op.at.astimezone(UTC):%Y%m%d}.pdf"
