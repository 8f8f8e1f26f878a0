"""A pytest plugin: over the whole run, no INS, no demo person's name and no medical word reaches the logs
(SECURITY V7 7.1.1; issue 16 #7). Registered by tests/conftest.py.

Every test's captured output (stdout, stderr and log records, for setup, call and teardown) is scanned as its
report arrives, so memory stays flat however long the run; the app's JSON logs, uvicorn's and the standard
library's all land there. What is looked for:
- an INS-NIR: 15 characters with a valid key, or the 13 characters of one this run generated
  (`tests.factories.new_nir` is wrapped to remember them) or of a demo person;
- a demo person's family name, or a medical word of the factories and the demo data.
The test client's own request lines (httpx logging the URL a test asked for) are not the app's logs and are
skipped. Findings fail the run at its end, with where they were seen.

With output capture off (`-s`) nothing can be scanned: the summary says so."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from espace_sante.demo import world as demo
from espace_sante.fhir.identifiers import IdentifierError, validate_nir
from tests import factories

#: Words that only a leak of a record's content could bring into a log line (accents folded before matching).
MEDICAL = ("Pénicilline", "Grippe saisonnière", "examen normal", "Compte rendu de consultation")
#: Family names of the demo people and of the factories' patients, matched as whole words, capitalised.
NAMES = (*sorted({p[1] for p in demo.PATIENTS}), "Zéphyrin")

_CANDIDATE = re.compile(r"(?<![0-9A-Za-z])[12][0-9]{4}(?:[0-9]{2}|2[AB])[0-9]{6}(?:[0-9]{2})?(?![0-9A-Za-z])")
_TEST_CLIENT = re.compile(r"HTTP Request: [A-Z]+ " + re.escape(factories.BASE) + r"[/ ?]")
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _fold(text: str) -> str:
    """Accents off and JSON escapes decoded, so that "P\\u00e9nicilline" and "Penicilline" match too."""
    text = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


_WORDS = re.compile(
    "|".join([*(re.escape(_fold(w)) for w in MEDICAL), *(rf"\b{re.escape(_fold(n))}\b" for n in NAMES)]),
    re.IGNORECASE,
)
_NAME_CASE = {_fold(n) for n in NAMES}  # names only count capitalised: "petit" is a French word
_NAME_LOWER = {n.lower() for n in _NAME_CASE}


@dataclass(frozen=True)
class Finding:
    where: str
    what: str
    excerpt: str


class LogCheck:
    def __init__(self) -> None:
        self.known13: set[str] = {p[0] for p in demo.PATIENTS}
        self.findings: list[Finding] = []
        self.scanned = 0

    def remember(self, new_nir: Callable[[], str]) -> Callable[[], str]:
        def wrapped() -> str:
            nir = new_nir()
            self.known13.add(nir[:13])
            return nir

        return wrapped

    def scan(self, where: str, text: str) -> None:
        self.scanned += 1
        for line in text.splitlines():
            if _TEST_CLIENT.search(line):
                continue
            for match in _CANDIDATE.finditer(line):
                if self._is_nir(match.group()):
                    self._found(where, "INS/NIR", line, match.start())
            folded = _fold(line)
            for match in _WORDS.finditer(folded):
                word = match.group()
                if word.lower() in _NAME_LOWER and word not in _NAME_CASE:
                    continue
                self._found(where, f"« {word} »", folded, match.start())

    def _is_nir(self, value: str) -> bool:
        if len(value) == 13:
            return value in self.known13
        try:
            validate_nir(value)
        except IdentifierError:
            return False
        return True

    def _found(self, where: str, what: str, line: str, at: int) -> None:
        if len(self.findings) < 50:  # enough to act on; the count is what matters beyond
            self.findings.append(Finding(where, what, line[max(0, at - 60) : at + 60]))


_check = LogCheck()
factories.new_nir = _check.remember(factories.new_nir)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # A report carries the sections of the phases before it too: each is scanned with its own phase's report.
    for title, content in report.sections:
        if title.startswith("Captured") and title.endswith(report.when) and content:
            _check.scan(f"{report.nodeid} ({title})", content)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _check.findings and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if config.getoption("capture") == "no":
        terminalreporter.write_line("log check: output capture is off (-s), the logs were not checked")
    if not _check.findings:
        return
    terminalreporter.section("log check: personal or medical data in the logs", red=True)
    for f in _check.findings:
        terminalreporter.write_line(f"{f.what} in {f.where}: …{f.excerpt}…")
    terminalreporter.write_line(
        "the run fails: logs must carry no INS, name or medical word (SECURITY V7 7.1.1)"
    )
