"""What every portal page does with a form: read it within limits, take a field, point a problem at its field,
and answer a POST with a 303 to the page that shows the result."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse


@dataclass(frozen=True)
class Problem:
    """One error of a form: the field it is about (its id, linked from the summary) and what to say, in the
    page's language."""

    field: str
    text: str


def see_other(path: str) -> RedirectResponse:
    """After a POST, the page that shows its result (never cached: it may follow a change)."""
    return RedirectResponse(path, status_code=303, headers={"Cache-Control": "no-store"})


def field(form: Mapping[str, Any], name: str, size: int = 200) -> str:
    """A text field, cut at `size` characters; "" when absent or a file."""
    value = form.get(name)
    return value[:size] if isinstance(value, str) else ""


async def small_form(
    request: Request, *, max_fields: int = 10, max_part_size: int = 8 * 1024
) -> FormData | None:
    """The request's urlencoded or multipart form without files, or None when it is malformed or too large:
    one refusal, never a 500."""
    try:
        return await request.form(max_files=0, max_fields=max_fields, max_part_size=max_part_size)
    except (HTTPException, ValueError, UnicodeDecodeError):
        return None
