"""Characters that change how a text reads without being seen (issue 16 #5, "Trojan Source" CVE-2021-42574).

A bidirectional control reorders what follows it on screen: the title `rapport \\u202eexe.fdp` shows as
`rapport pdf.exe`. Such a title, file name, author, person name, subject or message would lie to whoever
reads it, so every path that stores one refuses it with a message naming the field (stripping it silently
would store something else than what was sent, and hide that someone tried).

What is refused is exactly the Unicode property Bidi_Control (UAX #9 section 2, PropList.txt): U+061C, U+200E,
U+200F, U+202A-U+202E, U+2066-U+2069. Not the whole of category Cf, which also holds characters that names and
text need and that reorder nothing: U+200D ZERO WIDTH JOINER (emoji sequences, Indic scripts), U+200C ZERO
WIDTH NON-JOINER (Persian), U+00AD SOFT HYPHEN (pasted from word processors), U+2060 WORD JOINER, the tag
characters of subdivision flags, U+FEFF.

Identifiers a person compares by eye and that need none of those characters, the logins and e-mail addresses of
accounts (people/accounts.py), refuse every format character (`format_character`, category Cf): a zero-width
space or a soft hyphen makes `jeanne@exa<U+200B>mple.fr` look like another account's address. Pure functions,
no I/O."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["BIDI_CONTROLS", "bidi_control", "bidi_message", "format_character"]

#: Unicode 15.1 PropList.txt, Bidi_Control.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069",
)
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def bidi_control(text: str) -> str | None:
    """The first bidirectional control in `text`, written `U+202E`; None when there is none."""
    found = _BIDI.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def bidi_message(where: str, code: str) -> str:
    """The refusal of a text holding the control `code` (from `bidi_control`), French then English."""
    return (
        f"{where} : caractère invisible interdit ({code}, contrôle du sens d'écriture, qui change l'ordre "
        f"d'affichage du texte) / invisible character not allowed ({code}, a bidirectional control that "
        "changes the order in which the text is displayed)"
    )


def format_character(text: str) -> str | None:
    """The first format character (Unicode category Cf, bidirectional controls included) in `text`, written
    `U+200B`; None when there is none. For identifiers only: names and free text keep their joiners."""
    for char in text:
        if unicodedata.category(char) == "Cf":
            return f"U+{ord(char):04X}"
    return None
