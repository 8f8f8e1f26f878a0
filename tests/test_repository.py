"""A clone of the repository alone runs: nothing in the code, the tests or the documentation names a path of
one particular machine or a folder beside the repository (but the optional extras), and the guard plugin
catches a read there at run time."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from tests import repository_guard

REPOSITORY = Path(__file__).resolve().parents[1]
#: A path of the machine the project is written on, or `../<folder>` naming a folder beside this clone.
_BESIDE = sorted(e.name for e in REPOSITORY.parent.iterdir() if e.is_dir() and e.resolve() != REPOSITORY)
_PARENT = REPOSITORY.parent
_PARENT_PATH = (
    [] if _PARENT in (Path("/"), Path(tempfile.gettempdir()).resolve()) else [re.escape(f"{_PARENT}/")]
)
MACHINE_PATH = re.compile("|".join([*_PARENT_PATH, "/work/", *(re.escape(f"../{n}/") for n in _BESIDE)]))


#: Folders beside the clone that may be named on purpose, and why: the guide keeps optional extras there. Only
#: these paths are allowed, wherever they are named (tests/citus/cluster.py, the README, docs/architecture.md).
OPTIONAL_EXTRAS = {
    "../shared/citus": "`make test-citus` builds Citus from ../shared/citus when it is there (issue 17, "
    "tests/citus/cluster.py); `make test` never runs it, and without it the command says how to get Citus",
}
_EXTRA = re.compile("|".join(rf"{re.escape(extra)}(?![\w.-])" for extra in OPTIONAL_EXTRAS))
#: Where the scan looks: the code, the tests, the benchmarks and the documentation.
_SCANNED = ("src", "tests", "benchmarks", "docs", "README.md")


def _scanned_files() -> list[Path]:
    found = []
    for name in _SCANNED:
        top = REPOSITORY / name
        for path in [top] if top.is_file() else top.rglob("*"):
            if path.is_file() and path.suffix in (".py", ".md", ".toml", ".json", ".sql", ".html", ".txt"):
                found.append(path)
    return found


def test_no_source_test_or_document_names_a_path_outside_the_repository() -> None:
    offenders = []
    for path in _scanned_files():
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if MACHINE_PATH.search(_EXTRA.sub("", line)):
                offenders.append(f"{path.relative_to(REPOSITORY)}:{number}: {line.strip()[:100]}")
    assert offenders == []


def test_the_scan_reads_the_documentation_and_allows_only_the_optional_extras() -> None:
    scanned = {str(p.relative_to(REPOSITORY)) for p in _scanned_files()}
    assert {"README.md", "docs/architecture.md", "tests/citus/cluster.py"} <= scanned
    assert MACHINE_PATH.search(_EXTRA.sub("", "the source in ../shared/citus/citus-14.tar.gz")) is None
    assert MACHINE_PATH.search(_EXTRA.sub("", "see /work/shared/DESIGN.md")) is not None


def test_the_guard_sees_a_read_beside_the_repository(tmp_path: Path) -> None:
    """The plugin's hook is live in this very run: a file opened in a watched folder is recorded."""
    neighbour = tmp_path / "reference"
    neighbour.mkdir()
    (neighbour / "value-set.json").write_text("{}")
    saved_watched, saved_seen = repository_guard.WATCHED, list(repository_guard.SEEN)
    repository_guard.WATCHED = (str(neighbour) + "/",)
    try:
        (neighbour / "value-set.json").read_text()
        assert str(neighbour / "value-set.json") in repository_guard.SEEN
    finally:
        repository_guard.WATCHED = saved_watched
        repository_guard.SEEN[:] = saved_seen


#: changelog.d/README.md: `<issue>[.<name>].<type>.md`, or `+<name>.<type>.md` for a change with no issue.
FRAGMENT = re.compile(
    r"^(\d+(\.[a-z0-9]+(-[a-z0-9]+)*)?|\+[a-z0-9]+(-[a-z0-9]+)*)\.(feature|bugfix|fix|misc)\.md$"
)


def test_every_changelog_fragment_is_named_as_changelog_d_readme_says() -> None:
    names = [p.name for p in (REPOSITORY / "changelog.d").iterdir() if p.name != "README.md"]
    assert names, "changelog.d holds the fragments"
    assert [n for n in names if not FRAGMENT.match(n)] == []


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("17.citus.feature.md", True),
        ("15.feature.md", True),
        ("+smart-oauth.feature.md", True),
        ("16.count-trace.fix.md", True),
        ("16.verify.misc.md", True),
        ("15.clone.bugfix.md", True),
        ("17.citus.features.md", False),
        ("17.Citus.feature.md", False),
        ("citus.feature.md", False),
        ("+.feature.md", False),
        ("17..feature.md", False),
        ("17.citus.feature.txt", False),
        ("17.citus-.feature.md", False),
    ],
)
def test_the_fragment_names_rule(name: str, valid: bool) -> None:
    assert bool(FRAGMENT.match(name)) is valid
