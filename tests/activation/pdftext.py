"""The text of a PDF reportlab wrote, read with pikepdf (the one PDF library of the lock file): the strings
each `Tj`/`TJ` shows, decoded through their font's ToUnicode map (reportlab subsets TrueType fonts to
one-byte codes and writes that map), one line per text object."""

from __future__ import annotations

import io
import re

import pikepdf

_PAIR = re.compile(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>")


def _cmap(font: pikepdf.Object) -> dict[int, str]:
    if "/ToUnicode" not in font:
        return {}
    data = font.ToUnicode.read_bytes()
    out: dict[int, str] = {}
    for block in re.findall(rb"beginbfchar(.*?)endbfchar", data, re.S):
        for src, dst in _PAIR.findall(block):
            out[int(src, 16)] = bytes.fromhex(dst.decode()).decode("utf-16-be")
    return out


def pdf_text(content: bytes) -> str:
    lines: list[str] = []
    with pikepdf.open(io.BytesIO(content)) as pdf:
        for page in pdf.pages:
            maps = {str(name): _cmap(font) for name, font in page.Resources.Font.items()}
            current: dict[int, str] = {}
            line: list[str] = []
            for operands, op in pikepdf.parse_content_stream(page):
                name = str(op)
                if name == "Tf":
                    current = maps.get(str(operands[0]), {})
                elif name in ("Tj", "'", '"'):
                    line.append(_decode(bytes(operands[-1]), current))
                elif name == "TJ":
                    for part in operands[0]:
                        if isinstance(part, pikepdf.String):
                            line.append(_decode(bytes(part), current))
                elif name in ("ET", "T*", "Td", "TD") and line:
                    lines.append("".join(line))
                    line = []
            if line:
                lines.append("".join(line))
    return "\n".join(lines)


def _decode(raw: bytes, cmap: dict[int, str]) -> str:
    if not cmap:
        return raw.decode("latin-1")
    return "".join(cmap.get(b, "") or chr(b) for b in raw)
