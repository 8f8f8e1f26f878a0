"""Debian's Chromium for the browser tests (`make test` installs it), and the real app served by uvicorn on a
free port for it to open (tests/web/conftest.py `site`). Without Chromium the browser tests are skipped, but in
CI (the environment variable `CI` set, as .ci/run does): there they fail, so that the accessibility stories
cannot be skipped unseen."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from espace_sante.app import create_app
from espace_sante.runtime import Runtime

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
MISSING = "Debian's chromium is missing: `make test` installs it (`make chromium`)"


def in_ci(environ: Mapping[str, str]) -> bool:
    """Whether this run is CI's: `CI` set to anything but empty, 0 or false (.ci/run exports CI=1)."""
    return environ.get("CI", "").strip().lower() not in ("", "0", "false")


def skips_without_chromium(environ: Mapping[str, str], chromium: str) -> bool:
    """Whether the browser tests are skipped: Chromium missing, outside CI only."""
    return not Path(chromium).exists() and not in_ci(environ)


needs_chromium = pytest.mark.skipif(skips_without_chromium(os.environ, CHROMIUM), reason=MISSING)


def chromium() -> str:
    """Chromium's path, for `launch(executable_path=...)`; a failure that says why when it is missing (in CI,
    where `needs_chromium` does not skip)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"CI={os.environ.get('CI', '')}: {MISSING}", pytrace=False)
    return CHROMIUM


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
async def phone(
    problems: list[str], width: int = 320, height: int = 640, *, javascript: bool = True
) -> AsyncIterator[Any]:
    """A page in Chromium with a phone's touch screen (320 px wide by default: the narrowest in use), set to
    French (the portal follows the browser's language: a story in English says so), JavaScript on unless
    told; console errors and page errors go to `problems`."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium(), args=ARGS)
        try:
            context = await browser.new_context(
                viewport={"width": width, "height": height},
                is_mobile=True,
                has_touch=True,
                accept_downloads=True,
                locale="fr-FR",
                java_script_enabled=javascript,
            )
            page = await context.new_page()
            page.on(
                "console", lambda m: problems.append(f"{m.text} {m.location}") if m.type == "error" else None
            )
            page.on("pageerror", lambda e: problems.append(str(e)))
            yield page
        finally:
            await browser.close()


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


async def sign_in_with_keyboard(
    page: Any, base: str, login: str, password: str, code: str, lands: str
) -> None:
    """Go to `lands` signed out, and sign in with the keyboard only (login, password, then the 6-digit code):
    back on `lands`."""
    await page.goto(f"{base}{lands}")
    await page.wait_for_url(f"{base}/connexion?next={lands}")
    await tab_to(page, "login")
    await page.keyboard.type(login)
    await page.keyboard.press("Tab")
    await page.keyboard.type(password)
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{base}/connexion/code")
    await page.get_by_label("Code à 6 chiffres").focus()
    await page.keyboard.type(code)
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{base}{lands}")


def page_audit(controls: str, *, target: str = "el", skip: str = "false") -> str:
    """A script for `page.evaluate` listing what keeps a page from a phone and a keyboard: a control
    (`controls`, a CSS selector) under 44 CSS pixels high, a field without a label, a heading that skips a
    level, a page wider than the screen, a language other than French. `target` is the JS expression of the
    element measured for `el` (a checkbox's label, say), `skip` one (on `el` and its box `r`) for those not to
    measure: the pages check their own kinds of controls."""
    return (
        _AUDIT.replace("/*controls*/", json.dumps(controls))
        .replace("/*target*/", target)
        .replace("/*skip*/", skip)
    )


_AUDIT = """() => {
  const problems = [];
  for (const el of document.querySelectorAll(/*controls*/)) {
    const target = /*target*/;
    const r = target.getBoundingClientRect();
    if (/*skip*/) continue;
    if (r.height < 44) problems.push(`${el.tagName} "${el.textContent.trim() || el.name}" is ${r.height}px high`);
  }
  for (const input of document.querySelectorAll('main input:not([type=hidden])')) {
    if (!input.labels || input.labels.length === 0) problems.push(`input ${input.name} has no label`);
  }
  let last = 0;
  for (const h of document.querySelectorAll('h1, h2, h3, h4, h5, h6')) {
    const level = Number(h.tagName[1]);
    if (level > last + 1) problems.push(`${h.tagName} after h${last}`);
    last = level;
  }
  if (document.documentElement.scrollWidth > window.innerWidth) problems.push('wider than the screen');
  if (document.documentElement.lang !== 'fr') problems.push('lang is not fr');
  return problems;
}"""
