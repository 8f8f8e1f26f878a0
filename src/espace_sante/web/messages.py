"""A service message's two languages, as the pages show them. Services write their refusals « français /
English » (errors.py); a page shows the half of its own language (`shown`), never both."""

from __future__ import annotations

from espace_sante.web import i18n


def halves(message: str) -> tuple[str, str]:
    """(French, English) of a message written « français / English », as written ("" when no English)."""
    fr, _, en = message.partition(" / ")
    return fr.strip(), en.strip()


def sentence(text: str) -> str:
    """The text as a sentence: a capital first, a full stop last (unless it ends with one already)."""
    text = text[:1].upper() + text[1:]
    return text if not text or text.endswith((".", "!", "?")) else f"{text}."


def sentences(message: str) -> tuple[str, str]:
    """(French, English) of a service message, each a sentence ("" when it has no English)."""
    fr, en = halves(message)
    return sentence(fr), sentence(en) if en else ""


def in_language(fr: str, en: str) -> str:
    """Of a text given in both languages, the one of the page being made (web/i18n.py `current`); the French
    when there is no English."""
    return en if en and i18n.current() == "en" else fr


def shown(message: str) -> str:
    """A service message « français / English » as the page shows it: the half of its language, a sentence."""
    return in_language(*sentences(message))
