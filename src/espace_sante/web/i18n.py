"""The portal's languages: French, the source of every string, and English, from a Babel catalogue
(`web/locale/en/LC_MESSAGES/messages.po`, kept with `make messages`).

A page's language is the one the person chose with the switch (a cookie, remembered a year), else the first
of the browser's languages we have (Accept-Language, RFC 9110 §12.5.4), else French. Templates mark their
strings with `{% trans %}` or `_()` (Jinja2's i18n extension); the current language is a context variable set
for the rendering of one page, so one shared template environment serves both. Dates are written in the
page's language by Babel (`date_text`). tests/web/test_languages.py fails on a marked string without its
English."""

from __future__ import annotations

import functools
import gettext as gettext_module
import io
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from babel import dates as babel_dates
from babel.messages import mofile, pofile
from babel.support import Translations
from starlette.requests import Request

LOCALES: Final = ("fr", "en")
SOURCE: Final = "fr"
#: The switch's cookie: only a language code, remembered a year (not a tracker: no identifier in it).
COOKIE: Final = "langue"
COOKIE_SECONDS: Final = 365 * 24 * 3600
#: Each language's name in itself, for the switch.
NAMES: Final = {"fr": "Français", "en": "English"}

CATALOGUES: Final = Path(__file__).resolve().parent / "locale"

_current: ContextVar[str] = ContextVar("espace_sante_locale", default=SOURCE)


@functools.cache
def translations(locale: str) -> gettext_module.NullTranslations:
    """The catalogue of `locale`, read from its .po file once per process (no compiled file to keep in step):
    French is the source, its strings are shown as written. Fuzzy entries are left out, as gettext does."""
    if locale == SOURCE:
        return gettext_module.NullTranslations()
    with (CATALOGUES / locale / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalogue = pofile.read_po(po, locale=locale)
    compiled = io.BytesIO()
    mofile.write_mo(compiled, catalogue)
    compiled.seek(0)
    return Translations(compiled)


def current() -> str:
    return _current.get()


@contextmanager
def speaking(locale: str) -> Iterator[None]:
    """Render in `locale` within the block."""
    token = _current.set(locale if locale in LOCALES else SOURCE)
    try:
        yield
    finally:
        _current.reset(token)


def gettext(message: str) -> str:
    return translations(_current.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(_current.get()).ngettext(singular, plural, n)


def accepted(header: str) -> list[str]:
    """The primary language tags of an Accept-Language header, most wanted first (q=0 left out)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().split("-")[0].lower()
        if primary and primary != "*" and quality > 0:
            ranked.append((-quality, index, primary))
    return [tag for _, _, tag in sorted(ranked)]


def negotiate(request: Request) -> str:
    """This request's language: the switch's choice, else the browser's first language we have, else French."""
    chosen = request.cookies.get(COOKIE, "")
    if chosen in LOCALES:
        return chosen
    for tag in accepted(request.headers.get("accept-language", "")):
        if tag in LOCALES:
            return tag
    return SOURCE


#: Instants are shown in French time (winter and summer), as the trace's words are (audit/wording.when).
FRANCE: Final = ZoneInfo("Europe/Paris")


def date_text(value: date | datetime) -> str:
    """A date as the page's language writes it in full (« 7 décembre 2026 », "December 7, 2026"); an instant's
    date is its day in France (23:30 UTC on the 7th in winter is the 8th there)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(FRANCE)
    return str(babel_dates.format_date(value, format="long", locale=_current.get()))


def instant_text(value: datetime) -> str:
    """An instant with its French time, in the page's language (« 8 décembre 2026, 00:33 »)."""
    return str(babel_dates.format_datetime(value, "d MMMM y, HH:mm", tzinfo=FRANCE, locale=_current.get()))
