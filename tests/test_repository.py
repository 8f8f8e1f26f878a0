"""A clone of the repository alone runs: nothing in the code or the tests names a path of one particular
machine or a folder beside the repository, and the guard plugin catches a read there at run time."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from tests import repository_guard

REPOSITORY = Path(__file__).resolve().parents[1]
#: A path of the machine the project is written on, or `../<folder>` naming a folder beside this clone.
_BESIDE = sorted(e.name for e in REPOSITORY.parent.iterdir() if e.is_dir() and e.resolve() != REPOSITORY)
_PARENT = REPOSITORY.parent
_PARENT_PATH = (
    [] if _PARENT in (Path("/"), Path(tempfile.gettempdir()).resolve()) else [re.escape(f"{_PARENT}/")]
)
MACHINE_PATH = re.compile("|".join([*_PARENT_PATH, "/work/", *(re.escape(f"../{n}/") for n in _BESIDE)]))


#: Files that name a folder beside the clone on purpose, and why: the guide keeps optional extras there.
OPTIONAL_EXTRAS = {
    "tests/citus/cluster.py": "`make test-citus` builds Citus from ../shared/citus when it is there (issue 17); "
    "`make test` never runs it, and without it the command says how to get Citus",
}


def test_no_source_or_test_names_a_path_outside_the_repository() -> None:
    offenders = []
    for folder in ("src", "tests", "benchmarks"):
        for path in (REPOSITORY / folder).rglob("*"):
            if (
                path.suffix not in (".py", ".md", ".toml", ".json", ".sql", ".html", ".txt")
                or not path.is_file()
            ):
                continue
            if path == Path(__file__).resolve() or str(path.relative_to(REPOSITORY)) in OPTIONAL_EXTRAS:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if MACHINE_PATH.search(line):
                    offenders.append(f"{path.relative_to(REPOSITORY)}:{number}: {line.strip()[:100]}")
    assert offenders == []


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
