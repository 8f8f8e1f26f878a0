"""Rendering pages: one Jinja2 environment with autoescape on (SECURITY V5 5.2.5: no user templates), and the
page Content-Security-Policy (V14 14.4: scripts and styles from this site only, never inline)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

#: Pages may load this site's own scripts and styles (web/static/), post forms to this site only, and be
#: framed by nobody. The middleware's stricter default (`default-src 'none'`) applies to everything else.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

env = Environment(
    loader=PackageLoader("espace_sante.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    csp: str = PAGE_CSP,
) -> HTMLResponse:
    """A page from `templates/`. Responses are never cached: they can hold secrets shown once or personal
    data (SECURITY V8 8.1.1)."""
    values: dict[str, Any] = {"csrf": "", "signed_in": False, "error": "", "notice": ""}
    values.update(context or {})
    values["request_path"] = request.url.path
    html = env.get_template(name).render(**values)
    response = HTMLResponse(html, status_code=status)
    response.headers["Content-Security-Policy"] = csp
    response.headers["Cache-Control"] = "no-store"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response
