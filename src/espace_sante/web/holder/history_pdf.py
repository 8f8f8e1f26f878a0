"""« Historique des accès » as a PDF: the very lines of the page (the sentence of each record, "access refused"
where it was), under the page's title and the filters chosen, in the page's language, A4.

Only what the page shows: no medical content, no identifier. The file says its language (the catalogue's
/Lang) and its title (/Title, shown by the viewer instead of the file name: DisplayDocTitle), its text is real
text in reading order with a Unicode map (it can be read aloud, searched and copied), and the entries are in
the order of the page. ReportLab's open-source edition writes no structure tree, so the file is not a tagged
PDF (PDF/UA): a screen reader reads it as plain text in order, which is how it is laid out (one column, no
table).

Drawn line by line on the canvas rather than with Platypus paragraphs: a download may hold 50,000 records
(web/holder/history.py DOWNLOAD_MAX), which Platypus lays out at under a thousand a second."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from espace_sante.spaces.notices import letters

#: A4 in points, and the margins (20 mm).
_WIDTH, _HEIGHT = 595.2756, 841.8898
_MARGIN = 56.69
_SIZE, _LEADING = 10.0, 13.0
_TITLE_SIZE, _TITLE_LEADING = 15.0, 19.0
_GAP = 5.0  # between two entries


@dataclass(frozen=True)
class Words:
    """What the file says besides its entries, in its language."""

    #: BCP 47 tag of the file's language ("fr-FR", "en-GB").
    lang: str
    title: str
    author: str
    #: Lines under the title: whose space, when the file was made, the filters chosen.
    heading: Sequence[str]
    #: Above an entry whose access was refused.
    refused: str
    #: When nothing matches the filters.
    empty: str
    #: Lines after the entries: that the file stops at the cap, what the law says.
    closing: Sequence[str]
    #: The footer of page n.
    page: Callable[[int], str]


class _Layout:
    """A canvas and a cursor: lines wrapped to the text width, a new page when one is full."""

    def __init__(self, out: io.BytesIO, words: Words) -> None:
        from reportlab.pdfgen.canvas import Canvas  # lazy: seconds to import, only a download needs it

        self.regular, self.bold = letters.fonts()
        self.words = words
        self.canvas = Canvas(out, pagesize=(_WIDTH, _HEIGHT), pageCompression=1, lang=words.lang)
        self.canvas.setTitle(words.title)
        self.canvas.setAuthor(words.author)
        self.canvas.setSubject(words.title)
        self.canvas.setCreator(words.author)
        self.canvas.setViewerPreference("DisplayDocTitle", "true")
        self.width = _WIDTH - 2 * _MARGIN
        self.y = _HEIGHT - _MARGIN
        self.number = 1
        self.widths: dict[tuple[str, str, float], float] = {}
        self.current = ("", 0.0)

    def measure(self, word: str, font: str, size: float) -> float:
        # The same words come back on every line ("a consulté", names, months): measured once each.
        key = (word, font, size)
        found = self.widths.get(key)
        if found is None:
            from reportlab.pdfbase.pdfmetrics import stringWidth

            found = self.widths[key] = stringWidth(word, font, size)
        return found

    def wrap(self, text: str, font: str, size: float) -> list[str]:
        space = self.measure(" ", font, size)
        lines: list[str] = []
        current: list[str] = []
        used = 0.0
        for word in text.split():
            width = self.measure(word, font, size)
            while width > self.width:  # a word longer than the line (a long name): cut where it must
                cut = len(word)
                while cut > 1 and self.measure(word[:cut], font, size) > self.width:
                    cut -= 1
                if current:
                    lines.append(" ".join(current))
                    current, used = [], 0.0
                lines.append(word[:cut])
                word = word[cut:]
                width = self.measure(word, font, size)
            if current and used + space + width > self.width:
                lines.append(" ".join(current))
                current, used = [], 0.0
            used += (space if current else 0.0) + width
            current.append(word)
        if current:
            lines.append(" ".join(current))
        return lines or [""]

    def footer(self) -> None:
        self.font(self.regular, 8)
        self.canvas.drawString(_MARGIN, _MARGIN / 2, self.words.page(self.number))

    def font(self, name: str, size: float) -> None:
        # Set only when it changes: each setFont writes its own text object into the page.
        if self.current != (name, size):
            self.canvas.setFont(name, size)
            self.current = (name, size)

    def room(self, height: float) -> None:
        """A new page unless `height` still fits on this one."""
        if self.y - height < _MARGIN:
            self.footer()
            self.canvas.showPage()
            self.number += 1
            self.y = _HEIGHT - _MARGIN
            self.current = ("", 0.0)  # a new page starts with the canvas's initial font

    def lines(self, lines: Sequence[str], font: str, size: float = _SIZE, leading: float = _LEADING) -> None:
        for line in lines:
            self.room(leading)
            self.font(font, size)
            self.y -= leading
            self.canvas.drawString(_MARGIN, self.y + (leading - size) / 2, line)

    def block(self, text: str, font: str, size: float = _SIZE, leading: float = _LEADING) -> None:
        """A paragraph, on one page when it is short."""
        lines = self.wrap(text, font, size)
        self.room(min(len(lines), 4) * leading)
        self.lines(lines, font, size, leading)

    def entry(self, refused: bool, sentence: str) -> None:
        """One record: its sentence, under "access refused" when it was; kept on one page."""
        lines = self.wrap(sentence, self.regular, _SIZE)
        self.room(min(len(lines) + (1 if refused else 0), 8) * _LEADING)
        if refused:
            self.lines([self.words.refused], self.bold)
        self.lines(lines, self.regular)
        self.y -= _GAP

    def close(self) -> None:
        self.footer()
        self.canvas.showPage()
        self.canvas.save()


def render(words: Words, entries: Sequence[tuple[bool, str]]) -> bytes:
    """The file: `entries` are (refused, sentence), newest first, as the page lists them."""
    out = io.BytesIO()
    layout = _Layout(out, words)
    layout.block(words.title, layout.bold, _TITLE_SIZE, _TITLE_LEADING)
    layout.y -= _GAP
    for line in words.heading:
        layout.block(line, layout.regular)
    layout.y -= 2 * _GAP
    for refused, sentence in entries:
        layout.entry(refused, sentence)
    if not entries:
        layout.block(words.empty, layout.regular)
    layout.y -= _GAP
    for line in words.closing:
        layout.block(line, layout.regular)
        layout.y -= _GAP
    layout.close()
    return out.getvalue()
