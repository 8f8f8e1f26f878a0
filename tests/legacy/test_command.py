"""`espace-sante legacy` as an operator runs it, in a real process on a real data folder: counts in JSON, the
report without identities, readable refusals with exit code 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_commands import run
from tests.factories import new_nir
from tests.legacy.xdm import Doc, package, write, zip_with


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("legacy-cli")


def test_import_report_and_retry_print_counts(folder: Path, tmp_path: Path) -> None:
    nir = new_nir()
    path = write(tmp_path / "dmp.zip", package([[Doc(nir), Doc(nir)]]))
    done = run(folder, "legacy", "import", str(path), "--json")
    counts = json.loads(done.stdout)
    assert counts["documents"] == 2 and counts["set_aside"] == 2 and counts["refused_packages"] == 0

    report = json.loads(run(folder, "legacy", "report", "--json").stdout)
    assert report["by_reason"]["unknown-person"] >= 2
    assert nir not in json.dumps(report)

    retried = json.loads(run(folder, "legacy", "retry", "--json").stdout)
    assert retried["retried"] >= 2 and retried["imported"] == 0

    text = run(folder, "legacy", "report").stdout
    assert "unknown-person" in text and nir not in text

    # The insurer decides this person's former DMP goes: both documents erased, for good.
    assert json.loads(run(folder, "legacy", "forget", nir, "--json").stdout) == {"erased": 2}
    assert run(folder, "legacy", "forget", nir).stdout.startswith("0 document(s)")


def test_bad_input_is_a_readable_error_with_exit_code_2(folder: Path, tmp_path: Path) -> None:
    missing = run(folder, "legacy", "import", str(tmp_path / "absent.zip"), check=False)
    assert missing.returncode == 2 and "introuvable / not found" in missing.stderr
    assert "Traceback" not in missing.stderr

    bomb = write(tmp_path / "bombe.zip", zip_with([("IHE_XDM/SUBSET01/DOC.XML", bytes(8 * 1024 * 1024))]))
    refused = run(folder, "legacy", "import", str(bomb), "--json", check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert json.loads(refused.stdout)["refused_packages"] == 1
    assert "bombe.zip" in refused.stdout and "ZIP bomb" in refused.stdout

    wrong = run(folder, "legacy", "forget", "123", check=False)
    assert wrong.returncode == 2 and "INS invalide / invalid INS" in wrong.stderr
    assert "Traceback" not in wrong.stderr

    empty = tmp_path / "vide"
    empty.mkdir()
    nothing = run(folder, "legacy", "import", str(empty), check=False)
    assert nothing.returncode == 2 and "no .zip file" in nothing.stderr
