"""The portal's languages: French, the source of every string, and English, from a Babel catalogue
(`web/locale/en/LC_MESSAGES/messages.po`, kept with `make messages`).

A page's language is the one the person chose with the switch (a cookie, remembered a year), else the first
of the browser's languages we have (Accept-Language, RFC 9110 §12.5.4), else French. Templates mark their
strings with `{% trans %}` or `_()` (Jinja2's i18n extension), Python with `gettext` (as `_`) where the string
is used, or with `N_` where it is written ahead of the request (a router's words, a refusal's title), to be
translated where it is shown. The current language is a context variable set for one request's page
(web/portal.py, web/templating.py), so one shared template environment serves both. Dates are written in
the page's language by Babel (`date_text`, `instant_text`). tests/web/test_languages.py fails on a marked
string without its English."""

from __future__ import annotations

import functools
import gettext as gettext_module
import io
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from pathlib import Path
from typing import Final, Literal
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


def language() -> Literal["fr", "en"]:
    """The current language as the services take it (their `lang` parameter: the French or the English)."""
    return "en" if _current.get() == "en" else "fr"


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
    if _current.get() == SOURCE:
        # French counts 0 and 1 as one (« 0 code »); gettext's plain rule, without a catalogue, only 1.
        return singular if abs(n) < 2 else plural
    return translations(_current.get()).ngettext(singular, plural, n)


def N_(message: str) -> str:
    """Marks a French string for the catalogue where it is written, before any page's language is known (a
    router's words, a refusal's title): whoever shows it translates it then, with `gettext`. The name is
    gettext's own for this no-op, which `make messages` extracts."""
    return message


def translated(message: str) -> bool:
    """Whether the catalogue of the current language has `message` (always, in French: the source)."""
    locale = _current.get()
    return locale == SOURCE or translations(locale).gettext(message) != message


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
    date is its day in France (23:30 UTC on the 7th in winter is the 8th there); in French the first of the
    month is « 1er », as French writes it (CLDR's pattern has no ordinal)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(FRANCE)
    locale = _current.get()
    text = str(babel_dates.format_date(value, format="long", locale=locale))
    if locale == "fr" and value.day == 1 and text.startswith("1 "):
        text = "1er " + text[2:]
    return text


def month_text(year: int, month: int) -> str:
    """A month of a year as the page's language writes it (« juin 2026 », "June 2026")."""
    return str(babel_dates.format_skeleton("yMMMM", date(year, month, 1), locale=_current.get()))


def instant_text(value: datetime) -> str:
    """An instant with its French time, as the page's language writes them (« 8 décembre 2026 à 00:33 »,
    "December 8, 2026 at 12:33 AM")."""
    local = value.astimezone(FRANCE)
    time = str(babel_dates.format_time(local, format="short", locale=_current.get()))
    return gettext("%(date)s à %(time)s") % {"date": date_text(local), "time": time}
