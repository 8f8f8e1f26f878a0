"""`espace-sante token issue`: a development token for a demo person, refused outside development mode, and
written in the trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_commands import run

HOLDER = "holder:284052A32102552"


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder that was never made by --demo: production-like as far as tokens go."""
    folder = tmp_path_factory.mktemp("plain")
    run(folder, "migrate")
    return folder


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo")
    run(folder, "demo")
    return folder


def test_outside_development_mode_no_token_is_minted(plain: Path) -> None:
    done = run(plain, "token", "issue", "--actor", HOLDER, "--scope", "patient/*.rs", check=False)
    assert done.returncode != 0
    assert "mode développement" in done.stderr and done.stdout == ""


def test_a_demo_holder_gets_a_token_as_json(demo: Path) -> None:
    done = run(demo, "token", "issue", "--actor", HOLDER, "--scope", "patient/*.rs", "--json")
    issued = json.loads(done.stdout)
    assert set(issued) == {"access_token", "expires_in"} and issued["expires_in"] == 3600
    assert len(issued["access_token"]) >= 43


@pytest.mark.parametrize(
    ("actor", "message"),
    [
        ("holder:284052A32102553", "INS"),  # wrong key
        ("practitioner:10000000007", "RPPS"),  # not in the directory, or invalid
        ("insurer:MUTUELLE", "acteur invalide"),
        ("operator:nobody", "aucun opérateur"),
    ],
)
def test_unknown_or_invalid_people_are_refused_with_a_clear_message(
    demo: Path, actor: str, message: str
) -> None:
    done = run(demo, "token", "issue", "--actor", actor, "--scope", "user/*.rs", check=False)
    assert done.returncode != 0 and message in done.stderr, done.stderr


def test_every_token_minted_is_in_the_trace(demo: Path) -> None:
    before = json.loads(run(demo, "audit", "verify", "--json").stdout)["records"]
    run(demo, "token", "issue", "--actor", "practitioner:10007654320", "--scope", "user/*.rs")
    after = json.loads(run(demo, "audit", "verify", "--json").stdout)
    assert after["records"] == before + 1 and not after["broken"]
