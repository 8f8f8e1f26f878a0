"""Sample documents built in code: a genuine PDF from reportlab, then pikepdf surgery to plant active content;
CDA R2 documents; a PNG written chunk by chunk; a JPEG from Pillow."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Callable

import pikepdf
from PIL import Image
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas


def report_pdf(pages: int = 1, lines: int = 3) -> bytes:
    """A genuine compte rendu, with accents and a euro sign."""
    out = io.BytesIO()
    page = canvas.Canvas(out, pagesize=A4)
    for number in range(pages):
        for line in range(lines):
            page.drawString(
                72, 780 - 14 * line, f"Compte rendu p. {number + 1} l. {line + 1} : fébrile, 12 €"
            )
        page.showPage()
    page.save()
    return out.getvalue()


def altered_pdf(change: Callable[[pikepdf.Pdf], object], **save: object) -> bytes:
    """The genuine PDF, changed by `change`, saved again by qpdf (with object streams, as modern tools do)."""
    with pikepdf.open(io.BytesIO(report_pdf())) as pdf:
        change(pdf)
        out = io.BytesIO()
        pdf.save(out, object_stream_mode=pikepdf.ObjectStreamMode.generate, **save)  # type: ignore[arg-type]
    return out.getvalue()


def javascript_action(pdf: pikepdf.Pdf) -> pikepdf.Dictionary:
    return pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert('bonjour')"))


def cda(body: str) -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<?xml-stylesheet type="text/xsl" href="CDA.xsl"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
  <id root="1.2.250.1.213.1.1.9" extension="CR-2024-0001"/>
  <code code="11490-0" codeSystem="2.16.840.1.113883.6.1" displayName="Lettre de sortie"/>
  <title>Lettre de liaison à la sortie — Hôpital Saint-Éloi</title>
  <effectiveTime value="20240305101500+0100"/>
  <component>{body}</component>
</ClinicalDocument>
""".encode()


STRUCTURED_BODY = """
    <structuredBody>
      <component><section>
        <title>Traitements</title>
        <text><table><tbody><tr><td>Amoxicilline</td><td>1 g × 3/j</td></tr></tbody></table></text>
      </section></component>
    </structuredBody>"""


def cda_structured() -> bytes:
    return cda(STRUCTURED_BODY)


def cda_non_xml(document: bytes, media_type: str = "application/pdf") -> bytes:
    encoded = base64.encodebytes(document).decode()  # 76-character lines, as most producers write them
    return cda(
        f'<nonXMLBody><text mediaType="{media_type}" representation="B64">{encoded}</text></nonXMLBody>'
    )


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png(width: int = 4, height: int = 3) -> bytes:
    """An RGB PNG written by hand (PNG spec §11): IHDR, one IDAT, IEND."""
    rows = b"".join(b"\x00" + bytes([200, 30, 30]) * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


def jpeg(width: int = 16, height: int = 16) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(out, format="JPEG", quality=80)
    return out.getvalue()


def raw_pdf(catalog: bytes = b"", page: bytes = b"", extra: tuple[bytes, ...] = ()) -> bytes:
    """A PDF written byte by byte, for what pikepdf would tidy away: name escapes, deep nesting, cycles.
    Objects 1-3 are the catalog, the page tree and the page (with `catalog` and `page` added to their
    dictionaries); `extra` become objects 4, 5, ..."""
    bodies = (
        b"<< /Type /Catalog /Pages 2 0 R " + catalog + b" >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] " + page + b" >>",
        *extra,
    )
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(bodies, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(bodies) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(bodies) + 1, xref)
    return bytes(out)
