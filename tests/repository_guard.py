"""A pytest plugin (`-p tests.repository_guard` in pyproject): the run fails if any test or module opened a
file in a folder beside the repository, such as the reference folder of the machine the project was
written on. A clone of the repository alone must pass; what the tests need ships in `tests/data/` or inside the
package.

An audit hook (PEP 578) sees every `open` of the test process, whoever calls it. Only the repository's
neighbours are watched: the interpreter, the temporary folder and the home caches live elsewhere, and a folder
that holds any of them is not watched."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


def _neighbours() -> tuple[str, ...]:
    needed = [Path(p).resolve() for p in (sys.prefix, sys.base_prefix, tempfile.gettempdir(), Path.home())]
    temp = Path(tempfile.gettempdir()).resolve()
    in_temp = temp == REPOSITORY or temp in REPOSITORY.parents
    watched = []
    for entry in REPOSITORY.parent.iterdir():
        entry = entry.resolve()
        if entry == REPOSITORY or not entry.is_dir():
            continue
        if any(entry == p or entry in p.parents for p in needed):
            continue
        # A clone inside the temporary folder has the tests' own temporary files beside it: nothing is watched.
        if in_temp:
            continue
        watched.append(str(entry) + os.sep)
    return tuple(watched)


WATCHED: tuple[str, ...] = ()
SEEN: list[str] = []


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or not WATCHED:
        return
    path = args[0]
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, str):
        return  # a file descriptor
    absolute = os.path.abspath(path)
    if absolute.startswith(WATCHED) and absolute not in SEEN:
        SEEN.append(absolute)


def pytest_configure(config: pytest.Config) -> None:
    global WATCHED
    WATCHED = _neighbours()
    sys.addaudithook(_hook)  # hooks cannot be removed; an empty WATCHED makes it a no-op


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if SEEN:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = "\n".join(f"  {p}" for p in SEEN)
        if reporter is not None:
            reporter.write_line(f"\nFiles read outside the repository ({REPOSITORY}):\n{lines}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
