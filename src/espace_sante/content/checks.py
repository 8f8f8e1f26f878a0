"""Checking a document's bytes before it is stored.

`check_content` decides the type from the bytes (libmagic plus our own structural checks, never the client's
declared type: SECURITY.md V12 12.2.1), verifies the declared size and SHA-1 (the PDSm attachment hash), and
refuses what a reader could execute: PDF active content (12.4.2) and XML with a DOCTYPE. Only five kinds are
kept: PDF, CDA R2, JPEG, PNG and UTF-8 plain text. Each refusal is a `ContentRefused` with a French and an
English message that never quotes the content."""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import io
import re
import struct
from dataclasses import dataclass
from typing import Final

import magic
import pikepdf
from lxml import etree

__all__ = ["KINDS", "Checked", "ContentRefused", "check_content", "media_types_for"]

KINDS: Final = ("pdf", "cda", "jpeg", "png", "text")

# What we serve each kind as. A CDA is text/xml because the DMP declares it so (CI-SIS, XDS mimeType).
_MEDIA_TYPE: Final = {
    "pdf": "application/pdf",
    "cda": "text/xml",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "text": "text/plain",
}

# What a client may declare for each kind. image/jpg and image/pjpeg are not registered but common in the wild;
# accepting them as declarations costs nothing since we serve the canonical type.
_DECLARABLE: Final = {
    "pdf": frozenset({"application/pdf"}),
    "cda": frozenset({"text/xml", "application/xml", "application/hl7-v3+xml", "application/hl7-cda+xml"}),
    "jpeg": frozenset({"image/jpeg", "image/jpg", "image/pjpeg"}),
    "png": frozenset({"image/png"}),
    "text": frozenset({"text/plain"}),
}

_LABEL: Final = {
    "pdf": ("PDF", "PDF"),
    "cda": ("CDA R2", "CDA R2"),
    "jpeg": ("JPEG", "JPEG"),
    "png": ("PNG", "PNG"),
    "text": ("texte UTF-8", "UTF-8 text"),
}


@dataclass(frozen=True)
class Checked:
    """A document that passed: its kind, the media type to serve it with, and its digests."""

    kind: str
    media_type: str
    size: int
    sha1: bytes
    sha256: bytes


class ContentRefused(Exception):
    """The content cannot be stored. `code` is "too-long" for the size limit, "invalid" otherwise."""

    def __init__(self, fr: str, en: str, *, code: str = "invalid") -> None:
        super().__init__(f"{fr} / {en}")
        self.fr = fr
        self.en = en
        self.code = code


def media_types_for(kind: str) -> frozenset[str]:
    """The media types a client may declare for `kind` (without parameters)."""
    try:
        return _DECLARABLE[kind]
    except KeyError:
        raise ValueError(f"unknown content kind: {kind!r}") from None


def check_content(
    data: bytes,
    *,
    declared_type: str | None = None,
    declared_size: int | None = None,
    declared_sha1: bytes | None = None,
    max_size: int,
    allowed: frozenset[str] = frozenset(KINDS),
) -> Checked:
    """Check `data` and return what it is, or raise `ContentRefused`. Cheap checks run first: size, digests,
    type, then the walk of a PDF's object graph."""
    size = len(data)
    if size == 0:
        raise ContentRefused("Document vide", "empty document")
    if size > max_size:
        raise ContentRefused(
            f"Document trop volumineux : {size} octets, {max_size} au plus",
            f"document too large: {size} bytes, at most {max_size}",
            code="too-long",
        )
    if declared_size is not None and declared_size != size:
        raise ContentRefused(
            f"Taille déclarée ({declared_size} octets) différente de la taille reçue ({size} octets)",
            f"declared size ({declared_size} bytes) differs from the size received ({size} bytes)",
        )
    # SHA-1 is what IHE MHD/PDSm puts in attachment.hash: an integrity check, not a security boundary.
    sha1 = hashlib.sha1(data, usedforsecurity=False).digest()
    if declared_sha1 is not None and declared_sha1 != sha1:
        raise ContentRefused(
            "Empreinte SHA-1 déclarée différente de celle du contenu reçu",
            "declared SHA-1 hash differs from the hash of the content received",
        )
    kind = _identify(data, max_size)
    if kind not in allowed:
        fr, en = _LABEL[kind]
        raise ContentRefused(
            f"Type {fr} non accepté ici (acceptés : {_accepted(allowed, 0)})",
            f"{en} not accepted here (accepted: {_accepted(allowed, 1)})",
        )
    if declared_type is not None:
        _check_declared(declared_type, kind)
    if kind == "pdf":
        _check_pdf(data)
    return Checked(kind, _MEDIA_TYPE[kind], size, sha1, hashlib.sha256(data).digest())


def _accepted(allowed: frozenset[str], lang: int) -> str:
    return ", ".join(_LABEL[k][lang] for k in KINDS if k in allowed)


def _shown(value: str) -> str:
    """A client-supplied string made safe to put in a message: printable ASCII only, bounded."""
    cleaned = "".join(c if " " <= c <= "~" else "?" for c in value[:80])
    return cleaned + ("…" if len(value) > 80 else "")


def _check_declared(declared_type: str, kind: str) -> None:
    essence = declared_type.split(";", 1)[0].strip()
    if essence.lower() not in _DECLARABLE[kind]:
        shown, actual = _shown(essence), _MEDIA_TYPE[kind]
        raise ContentRefused(
            f"Type incohérent : déclaré {shown}, contenu {actual}",
            f"type mismatch: declared {shown}, content {actual}",
        )


# --- deciding the kind ----------------------------------------------------------------------------------------

# libmagic decides from the start of a file; 16 KiB is plenty for every format we tell apart, and it bounds
# libmagic's text-encoding scan (2 ms on 60 KB of accented text).
_SNIFF_BYTES: Final = 16 * 1024

# Text formats that a reader would interpret (markup, scripts for a printer) rather than just display.
_ACTIVE_TEXT: Final = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "text/rtf",
        "application/rtf",
        "application/postscript",
    }
)
_ACTIVE_MARKUP: Final = frozenset({"text/html", "application/xhtml+xml", "image/svg+xml"})
_MARKUP_ROOTS: Final = {"html": "text/html", "svg": "image/svg+xml"}

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
# Optional UTF-8 BOM and whitespace, then a tag, a processing instruction, a comment or a declaration.
_MARKUP_START: Final = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\r\n]*<[?!A-Za-z_:\x80-\xff]")


def _sniff(data: bytes) -> str:
    head = data
    if len(data) > _SNIFF_BYTES:
        cut = _SNIFF_BYTES
        # Do not cut inside a UTF-8 sequence, or libmagic calls a UTF-8 text binary.
        while cut > _SNIFF_BYTES - 3 and data[cut] & 0xC0 == 0x80:
            cut -= 1
        head = data[:cut]
    try:
        return str(magic.from_buffer(head, mime=True))
    except magic.MagicException:
        return "application/octet-stream"


def _not_accepted(sniffed: str) -> ContentRefused:
    shown = _shown(sniffed)
    return ContentRefused(
        f"Type de contenu non accepté : {shown} (acceptés : {_accepted(frozenset(KINDS), 0)})",
        f"content type not accepted: {shown} (accepted: {_accepted(frozenset(KINDS), 1)})",
    )


def _expect(sniffed: str, media_type: str) -> None:
    if sniffed != media_type:
        raise _not_accepted(sniffed)


def _identify(data: bytes, max_size: int) -> str:
    sniffed = _sniff(data)
    # An image signature at offset 0 is decisive; a "%PDF-" further in an image is only bytes (EXIF, tEXt).
    if data.startswith(b"\xff\xd8\xff"):
        _expect(sniffed, "image/jpeg")
        _check_jpeg(data)
        return "jpeg"
    if data.startswith(_PNG_SIGNATURE):
        _expect(sniffed, "image/png")
        _check_png(data)
        return "png"
    # ISO 32000 readers accept the header anywhere in the first 1024 bytes (Acrobat implementation note 13).
    if b"%PDF-" in data[:1024]:
        # libmagic only finds a header near the start; past that it says text/plain or octet-stream. Any other
        # answer means the bytes are also another format (a polyglot), which we do not store.
        if sniffed not in ("application/pdf", "text/plain", "application/octet-stream"):
            raise _not_accepted(sniffed)
        return "pdf"
    if sniffed == "application/pdf":
        raise ContentRefused(
            "PDF dont l'en-tête %PDF- n'est pas dans les 1024 premiers octets",
            "PDF whose %PDF- header is not within the first 1024 bytes",
        )
    if _MARKUP_START.match(data):
        _check_cda(data, sniffed, max_size)
        return "cda"
    if sniffed in _ACTIVE_TEXT:
        raise _not_accepted(sniffed)
    bad_byte = _utf8_error(data)
    control = _control_position(data) if bad_byte is None else None
    if bad_byte is None and control is None:
        return "text"
    # Say what is wrong with the text when libmagic also sees text (or nothing it knows); otherwise the bytes are
    # some other format (DICOM, GIF... can be pure ASCII), and naming it is more useful.
    if not sniffed.startswith("text/") and (bad_byte is not None or sniffed != "application/octet-stream"):
        raise _not_accepted(sniffed)
    if bad_byte is not None:
        raise ContentRefused(
            f"Texte qui n'est pas en UTF-8 (octet invalide vers la position {bad_byte})",
            f"text that is not UTF-8 (invalid byte near position {bad_byte})",
        )
    assert control is not None
    if data[control] == 0:
        raise ContentRefused(
            f"Texte contenant un octet nul (position {control})",
            f"text containing a NUL byte (position {control})",
        )
    raise ContentRefused(
        f"Texte contenant un caractère de contrôle (position {control})",
        f"text containing a control character (position {control})",
    )


# --- plain text ------------------------------------------------------------------------------------------------

_UTF8_CHUNK: Final = 1 << 20
# C0 controls but tab, LF, FF and CR, then DEL; C1 controls are U+0080-U+009F, in valid UTF-8 \xc2 then one
# continuation byte (\xc2 is always a lead byte).
_C0_AND_DEL: Final = bytes(range(0x09)) + b"\x0b" + bytes(range(0x0E, 0x20)) + b"\x7f"
_NOT_C0_AND_DEL: Final = bytes(b for b in range(256) if b not in _C0_AND_DEL)
_C0: Final = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_C1: Final = re.compile(rb"\xc2[\x80-\x9f]")


def _utf8_error(data: bytes) -> int | None:
    """Position of the first byte that is not UTF-8, or None. Decodes in chunks so a 20 MB text never becomes
    an 80 MB str."""
    if data.isascii():
        return None
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    for start in range(0, len(data), _UTF8_CHUNK):
        try:
            decoder.decode(view[start : start + _UTF8_CHUNK], final=start + _UTF8_CHUNK >= len(data))
        except UnicodeDecodeError as exc:
            return max(0, start + exc.start)
    return None


def _control_position(data: bytes) -> int | None:
    # A regex with a character class runs at ~4 ns a byte (90 ms for 20 MB); deleting every other byte with
    # translate costs a tenth of that, so the class search only runs to locate a control that is there. _C1
    # starts with a literal, which the regex engine finds as fast as bytes.find.
    positions = []
    if data.translate(None, _NOT_C0_AND_DEL):
        c0 = _C0.search(data)
        assert c0 is not None
        positions.append(c0.start())
    c1 = None if data.isascii() else _C1.search(data)
    if c1 is not None:
        positions.append(c1.start())
    return min(positions, default=None)


# --- images ----------------------------------------------------------------------------------------------------

_MAX_SEGMENTS: Final = 100_000


def _only_zeros_after(data: bytes, end: int) -> bool:
    return data.count(b"\x00", end) == len(data) - end


def _check_jpeg(data: bytes) -> None:
    """Walk the marker segments up to the scan (a frame header must come first), then require the end-of-image
    marker, allowing the zero padding some cameras and scanners add."""
    n, pos, frame = len(data), 2, False
    for _ in range(_MAX_SEGMENTS):
        if pos + 4 > n or data[pos] != 0xFF:
            raise ContentRefused("JPEG mal formé (segments)", "malformed JPEG (segments)")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker == 0xD9:
            raise ContentRefused(
                "JPEG sans image (fin avant les données)", "JPEG without an image (ends before data)"
            )
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            frame = True
        if marker == 0xDA:
            if not frame:
                raise ContentRefused("JPEG sans en-tête d'image (SOF)", "JPEG without a frame header (SOF)")
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2:
            raise ContentRefused("JPEG mal formé (segments)", "malformed JPEG (segments)")
        pos += 2 + length
    else:
        raise ContentRefused("JPEG mal formé (trop de segments)", "malformed JPEG (too many segments)")
    # rstrip returns the same object when there is no padding, so the usual case copies nothing.
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ContentRefused(
            "JPEG tronqué (marqueur de fin FF D9 absent)", "truncated JPEG (no FF D9 end marker)"
        )


def _check_png(data: bytes) -> None:
    """Walk the chunk headers (PNG spec §5.3): IHDR first, at least one IDAT, IEND last, nothing but zero
    padding after it. Chunk data is not decoded."""
    n, pos, has_data = len(data), len(_PNG_SIGNATURE), False
    for index in range(_MAX_SEGMENTS):
        if pos + 12 > n:
            raise ContentRefused("PNG tronqué (pas de bloc IEND)", "truncated PNG (no IEND chunk)")
        length, chunk = struct.unpack_from(">I4s", data, pos)
        if length > 0x7FFFFFFF or not chunk.isalpha():
            raise ContentRefused("PNG mal formé (bloc invalide)", "malformed PNG (invalid chunk)")
        if index == 0 and (chunk != b"IHDR" or length != 13):
            raise ContentRefused(
                "PNG mal formé (IHDR doit venir en premier)", "malformed PNG (IHDR must come first)"
            )
        pos += 12 + length
        if pos > n:
            raise ContentRefused("PNG tronqué", "truncated PNG")
        if chunk == b"IDAT":
            has_data = True
        elif chunk == b"IEND":
            break
    else:
        raise ContentRefused("PNG mal formé (trop de blocs)", "malformed PNG (too many chunks)")
    if not has_data:
        raise ContentRefused("PNG sans données d'image (IDAT)", "PNG without image data (IDAT)")
    if not _only_zeros_after(data, pos):
        raise ContentRefused("PNG suivi de données après IEND", "PNG followed by data after IEND")


# --- PDF -------------------------------------------------------------------------------------------------------

# Keys whose mere presence means active or embedded content (ISO 32000-2 §12.6 actions, §7.11.4 embedded files,
# §12.7.9 XFA, §13.7 rich media). /AA and /OpenAction trigger actions without a click.
_PDF_ACTIVE_KEYS: Final = frozenset(
    {
        "/JavaScript",
        "/JS",
        "/OpenAction",
        "/AA",
        "/Launch",
        "/EmbeddedFile",
        "/EmbeddedFiles",
        "/EF",
        "/RichMedia",
        "/RichMediaContent",
        "/XFA",
        "/SubmitForm",
        "/ImportData",
        "/GoToR",
        "/GoToE",
    }
)
# Action types (/S) that run code, reach outside the document, send data or play media.
_PDF_ACTIVE_ACTIONS: Final = frozenset(
    {
        "/JavaScript",
        "/Launch",
        "/SubmitForm",
        "/ImportData",
        "/GoToR",
        "/GoToE",
        "/RichMediaExecute",
        "/Movie",
        "/Sound",
    }
)
# Annotation subtypes that carry files, media or 3D scenes (which may hold scripts).
_PDF_ACTIVE_SUBTYPES: Final = frozenset(
    {"/FileAttachment", "/RichMedia", "/3D", "/Movie", "/Sound", "/Screen"}
)
# Links a reader may follow; file:, javascript: and relative URIs (resolved against a /Base) are refused.
_PDF_SAFE_URI: Final = re.compile(rb"\s*(?:https?|mailto|tel):", re.IGNORECASE)

# Bounds so a crafted file cannot use unbounded CPU. The budget counts containers and their entries (about a
# microsecond each; a 6,000-page report uses ~200,000). Depth is the nesting of direct objects, reset at each
# indirect object: real files nest a handful deep, while chains of indirect objects (outline /Next) are long
# but cut by the objgen set.
_PDF_BUDGET: Final = 2_000_000
_PDF_MAX_DEPTH: Final = 100
_DICTIONARY: Final = pikepdf.ObjectType.dictionary
_STREAM: Final = pikepdf.ObjectType.stream
_ARRAY: Final = pikepdf.ObjectType.array
_NAME: Final = pikepdf.ObjectType.name_
_STRING: Final = pikepdf.ObjectType.string
# Dictionaries whose keys are names the producer chose (resource names, named destinations, structure roles):
# a font called /AA is not an additional action, so their keys are not matched (their values still are).
_FREE_KEYS: Final = frozenset(
    {
        "/Font",
        "/XObject",
        "/ExtGState",
        "/ColorSpace",
        "/Pattern",
        "/Shading",
        "/Properties",
        "/Dests",
        "/RoleMap",
        "/ClassMap",
    }
)

# qpdf settles some malformations with a mere warning where another reader may settle them differently: a
# repeated key (qpdf keeps the last /S; a reader keeping the first runs the other action) and nesting past
# qpdf's limit of 500 (dropped unread). Other warnings (stray # in a name...) are tolerated.
_PDF_AMBIGUOUS: Final = ("duplicated key", "parser-max-nesting")


def _check_pdf(data: bytes) -> None:
    try:
        # No recovery: a file qpdf must reconstruct is damaged, and a reconstructed view may differ from the
        # one another reader builds. Page attributes stay where they are (we only read), and explicit
        # conversion spares a Decimal per real number (a third of the walk's time).
        with pikepdf.open(
            io.BytesIO(data),
            attempt_recovery=False,
            inherit_page_attributes=False,
            conversion_mode="explicit",
        ) as pdf:
            if pdf.is_encrypted:
                raise ContentRefused("PDF chiffré refusé", "encrypted PDF refused")
            _walk_pdf(pdf)
            if any(sign in warning for warning in pdf.get_warnings() for sign in _PDF_AMBIGUOUS):
                raise ContentRefused(
                    "PDF ambigu (clé répétée ou imbrication excessive)",
                    "ambiguous PDF (repeated key or excessive nesting)",
                )
    except pikepdf.PasswordError:
        raise ContentRefused(
            "PDF protégé par mot de passe refusé", "password-protected PDF refused"
        ) from None
    except (pikepdf.PikepdfError, RuntimeError, ValueError, OverflowError):
        raise ContentRefused("PDF illisible ou endommagé", "unreadable or damaged PDF") from None


def _active(feature: str) -> ContentRefused:
    return ContentRefused(
        f"PDF avec contenu actif refusé ({feature})", f"PDF with active content refused ({feature})"
    )


def _too_complex() -> ContentRefused:
    return ContentRefused("PDF trop complexe (trop d'objets)", "PDF too complex (too many objects)")


def _walk_pdf(pdf: pikepdf.Pdf) -> None:
    """Visit every object reachable from the trailer, direct ones included: an action written inline in a page
    dictionary is as live as an indirect one (STACK.md). Iterative, so nesting cannot exhaust the stack."""
    # (object, direct nesting depth, keys chosen by the producer)
    stack: list[tuple[pikepdf.Object, int, bool]] = [(pdf.trailer, 0, False)]
    # An object is visited once per mode, so one seen first as a resource dictionary still has its keys checked
    # when it is also used elsewhere.
    seen: set[tuple[int, int, bool]] = set()
    budget = _PDF_BUDGET
    while stack:
        obj, depth, free = stack.pop()
        if obj.is_indirect:
            number, generation = obj.objgen
            if (number, generation, free) in seen:
                continue
            seen.add((number, generation, free))
            depth = 0
        elif depth > _PDF_MAX_DEPTH:
            raise ContentRefused("PDF trop profondément imbriqué", "PDF nested too deeply")
        if obj._type_code is _ARRAY:
            items = obj.as_list()
            budget -= 1 + len(items)
            if budget < 0:
                raise _too_complex()
            for item in items:
                if item is None:  # null stays None even in explicit conversion
                    continue
                code = item._type_code
                if code is _DICTIONARY or code is _STREAM or code is _ARRAY:
                    stack.append((item, depth + 1, False))
            continue
        entries = obj.items()  # a dict_items view (typed as a bare Iterable in the stubs)
        budget -= 1 + len(entries)  # type: ignore[arg-type]
        if budget < 0:
            raise _too_complex()
        for key, value in entries:
            if not free and key in _PDF_ACTIVE_KEYS:
                raise _active(key)
            if value is None:  # a reference to a missing object reads as null
                continue
            code = value._type_code
            if code is _DICTIONARY or code is _STREAM or code is _ARRAY:
                stack.append((value, depth + 1, key in _FREE_KEYS and code is _DICTIONARY))
            elif code is _NAME:
                if key == "/S" and str(value) in _PDF_ACTIVE_ACTIONS:
                    raise _active(str(value))
                if key == "/Subtype" and str(value) in _PDF_ACTIVE_SUBTYPES:
                    raise _active(str(value))
                if key == "/Type" and str(value) == "/EmbeddedFile":
                    raise _active("/EmbeddedFile")
            elif code is _STRING and key == "/URI" and not _PDF_SAFE_URI.match(bytes(value)):
                raise _active("/URI")


# --- CDA R2 ----------------------------------------------------------------------------------------------------

_V3: Final = "{urn:hl7-org:v3}"
# A nonXMLBody holds one of these (CI-SIS also allows TIFF and RTF, which we refuse everywhere). Never another
# CDA: one level of nesting is all a reader handles.
_NON_XML_KINDS: Final = frozenset({"pdf", "jpeg", "png", "text"})
_WHITESPACE: Final = b" \t\r\n"


def _declares_before_root(data: bytes) -> bool:
    """True if a markup declaration (<!DOCTYPE, <!ENTITY, ...) comes before the root element. Steps over the
    XML declaration, processing instructions and comments: a DOCTYPE can only sit among them."""
    pos = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    n = len(data)
    while pos < n:
        if data[pos] in _WHITESPACE:
            pos += 1
        elif data.startswith(b"<!--", pos):
            end = data.find(b"-->", pos + 4)
            if end < 0:
                return False  # unterminated: the parser refuses it
            pos = end + 3
        elif data.startswith(b"<?", pos):
            end = data.find(b"?>", pos + 2)
            if end < 0:
                return False
            pos = end + 2
        else:
            return data.startswith(b"<!", pos)
    return False


def _doctype_refused() -> ContentRefused:
    return ContentRefused(
        "XML avec DOCTYPE refusé (DTD et entités interdites)",
        "XML with a DOCTYPE refused (no DTDs or entities)",
    )


def _not_cda() -> ContentRefused:
    return ContentRefused("XML qui n'est pas un document CDA R2", "XML that is not a CDA R2 document")


def _check_cda(data: bytes, sniffed: str, max_size: int) -> None:
    # libmagic's HTML rules fire on a CDA narrative's <table> when there is no XML declaration, so its answer
    # only names what was refused; what a CDA is comes from parsing.
    if _declares_before_root(data):
        raise _not_accepted(sniffed) if sniffed in _ACTIVE_MARKUP else _doctype_refused()
    # STACK.md: entities unresolved, no DTD, no network; huge_tree off keeps libxml2's limits (depth 256,
    # 10 MB per text node).
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        if sniffed in _ACTIVE_MARKUP:
            raise _not_accepted(sniffed) from None
        if exc.code == etree.ErrorTypes.ERR_RESOURCE_LIMIT:  # type: ignore[attr-defined]  # lxml-stubs 0.5 lag
            raise ContentRefused(
                "XML dépassant les limites du lecteur (texte de plus de 10 Mo ou imbrication trop profonde)",
                "XML beyond the parser's limits (a text over 10 MB or nesting too deep)",
            ) from None
        line, column = exc.position
        raise ContentRefused(
            f"XML mal formé (ligne {line}, colonne {column})",
            f"XML not well-formed (line {line}, column {column})",
        ) from None
    if root.getroottree().docinfo.doctype:  # type: ignore[union-attr]  # lxml-stubs 0.5 lag
        # Reached only when the prolog is in an encoding the byte scan cannot read (UTF-16, UTF-7...).
        raise _doctype_refused()
    if root.tag != f"{_V3}ClinicalDocument":
        local = etree.QName(root).localname.lower()
        looks_like = sniffed if sniffed in _ACTIVE_MARKUP else _MARKUP_ROOTS.get(local)
        raise _not_cda() if looks_like is None else _not_accepted(looks_like)
    component = root.find(f"{_V3}component")
    structured = None if component is None else component.find(f"{_V3}structuredBody")
    non_xml = None if component is None else component.find(f"{_V3}nonXMLBody")
    if structured is None and non_xml is None:
        raise ContentRefused(
            "Document CDA sans corps (component/structuredBody ou component/nonXMLBody)",
            "CDA document without a body (component/structuredBody or component/nonXMLBody)",
        )
    if non_xml is not None:
        _check_non_xml_body(non_xml, max_size)
    # Every embedded payload, wherever it sits (another component's nonXMLBody, an observationMedia of a
    # structured body, any ED value in B64): a reader opens each of them (review of 2026-12-03, D6).
    for element in root.iter(f"{_V3}text", f"{_V3}value"):
        if element.get("representation") == "B64" and element.getparent() is not non_xml:
            _check_embedded(element, max_size)
    for extra in root.iter(f"{_V3}nonXMLBody"):
        if extra is not non_xml:
            _check_non_xml_body(extra, max_size)


def _check_embedded(element: etree._Element, max_size: int) -> None:
    """An encapsulated payload (CDA ED data type) passes the same checks as a document."""
    inner = _b64decode(element.text or "")
    try:
        check_content(
            inner, declared_type=element.get("mediaType"), max_size=max_size, allowed=_NON_XML_KINDS
        )
    except ContentRefused as exc:
        raise ContentRefused(
            f"Contenu intégré au CDA : {exc.fr}", f"Content embedded in the CDA: {exc.en}", code=exc.code
        ) from None


def _check_non_xml_body(body: etree._Element, max_size: int) -> None:
    """The document a nonXMLBody carries is what a reader shows: it passes the same checks, so a PDF with
    JavaScript cannot come in wrapped in a CDA."""
    text = body.find(f"{_V3}text")
    if text is None or text.find(f"{_V3}reference") is not None:
        raise ContentRefused(
            "Corps nonXMLBody sans document intégré (élément text absent ou référence externe)",
            "nonXMLBody without an embedded document (no text element, or an external reference)",
        )
    media_type = text.get("mediaType", "text/plain")
    content = text.text or ""
    inner = _b64decode(content) if text.get("representation", "TXT") == "B64" else content.encode("utf-8")
    try:
        check_content(inner, declared_type=media_type, max_size=max_size, allowed=_NON_XML_KINDS)
    except ContentRefused as exc:
        raise ContentRefused(f"Corps nonXMLBody : {exc.fr}", f"nonXMLBody: {exc.en}", code=exc.code) from None


def _b64decode(text: str) -> bytes:
    try:
        raw = text.encode("ascii").translate(None, _WHITESPACE)
        return base64.b64decode(raw, validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise ContentRefused("Corps nonXMLBody : base64 invalide", "nonXMLBody: invalid base64") from None
