"""Debian's Chromium for the browser tests (`make test` installs it), and the real app served by uvicorn on a
free port for it to open (tests/web/conftest.py `site`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from espace_sante.app import create_app
from espace_sante.services.runtime import Runtime

CHROMIUM = "/usr/bin/chromium"
#: Headless, and none of Chromium's own connections: this machine's network refuses them (env notes).
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is missing: `make test` installs it"
)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the test runner keeps its own signal handlers
        yield


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(runtime: Runtime) -> AsyncIterator[tuple[Runtime, str]]:
    """The real app under uvicorn on a free port. Its base URL uses `localhost`: WebAuthn refuses IP addresses
    as relying party ids, and http://localhost is a secure context (`__Host-` cookies)."""
    port = _free_port()
    base = f"http://localhost:{port}"
    rt = dataclasses.replace(runtime, settings=runtime.settings.model_copy(update={"base_url": base}))
    server = _Server(uvicorn.Config(create_app(runtime=rt), host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield rt, base
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def phone(problems: list[str], width: int = 320, height: int = 640) -> AsyncIterator[Any]:
    """A page in Chromium with a phone's touch screen (320 px wide by default: the narrowest in use); console
    errors and page errors go to `problems`."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = await chromium.new_context(
                viewport={"width": width, "height": height},
                is_mobile=True,
                has_touch=True,
                accept_downloads=True,
            )
            page = await context.new_page()
            page.on(
                "console", lambda m: problems.append(f"{m.text} {m.location}") if m.type == "error" else None
            )
            page.on("pageerror", lambda e: problems.append(str(e)))
            yield page
        finally:
            await chromium.close()


async def tab_to(page: Any, what: str) -> None:
    """Press Tab until the focused element's text or id is `what` (keyboard only, no clicks)."""
    for _ in range(40):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(
            "() => { const e = document.activeElement; return [e.id, (e.textContent || '').trim()]; }"
        )
        if what in focused:
            return
    raise AssertionError(f"{what!r} is not reachable with Tab")
