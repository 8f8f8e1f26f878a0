"""Rendering pages: one Jinja2 environment with autoescape on (SECURITY V5 5.2.5: no user templates), and the
page Content-Security-Policy (V14 14.4: scripts and styles from this site only, never inline)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

from espace_sante.web import i18n

#: Pages may load this site's own scripts and styles (web/static/), post forms to this site only, and be
#: framed by nobody. The middleware's stricter default (`default-src 'none'`) applies to everything else.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "manifest-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

env = Environment(
    loader=PackageLoader("espace_sante.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    extensions=["jinja2.ext.i18n"],
)
# The page's language is a context variable (web/i18n.py): one environment serves French and English.
env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)  # type: ignore[attr-defined]
# A `{% trans %}` block's text is looked up as `make messages` extracted it (babel.cfg `trimmed`): its lines
# joined, so that templates can wrap their prose.
env.policies["ext.i18n.trimmed"] = True
env.globals["date_text"] = i18n.date_text
env.globals["instant_text"] = i18n.instant_text


def switch_url(request: Request, locale: str) -> str:
    """The language switch's link: to `locale`, back to this very page."""
    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/langue?" + urlencode({"vers": locale, "retour": back})


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    csp: str = PAGE_CSP,
) -> HTMLResponse:
    """A page from `templates/`, in the person's language (web/i18n.py `negotiate`) with the switch to the
    other. Responses are never cached: they can hold secrets shown once or personal data (SECURITY V8
    8.1.1)."""
    values: dict[str, Any] = {"csrf": "", "signed_in": False, "error": "", "notice": ""}
    values.update(context or {})
    values["request_path"] = request.url.path
    lang = i18n.negotiate(request)
    values["lang"] = lang
    values["languages"] = [
        (code, i18n.NAMES[code], switch_url(request, code)) for code in i18n.LOCALES if code != lang
    ]
    with i18n.speaking(lang):
        html = env.get_template(name).render(**values)
    response = HTMLResponse(html, status_code=status)
    response.headers["Content-Security-Policy"] = csp
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Language"] = lang
    response.headers["Vary"] = "Accept-Language, Cookie"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response
