"""`espace-sante registry check`: an insurer's operator checks a file before importing it, and gets the
refused rows in a rejects file with line, field and reason."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from espace_sante.fhir.identifiers import make_nir
from espace_sante.spaces.registry.rows import COLUMNS
from tests.cli.test_commands import run

GOOD = {c: "" for c in COLUMNS} | {
    "nir": make_nir("2550814168025"),
    "last_name": "Martin",
    "first_names": "Jeanne",
    "birth_date": "1955-08-14",
    "sex": "F",
}


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def test_a_file_is_checked_and_its_refused_rows_are_kept(tmp_path: Path) -> None:
    registry = tmp_path / "registre.csv"
    _write(registry, [GOOD, GOOD | {"sex": "X"}, GOOD | {"birth_date": "1955-14-08"}, GOOD])
    rejects = tmp_path / "rejets.csv"
    done = run(tmp_path, "registry", "check", str(registry), "--rejects", str(rejects), "--json")
    assert json.loads(done.stdout) == {"read": 4, "valid": 2, "rejected": 2}
    with rejects.open(encoding="utf-8") as fh:
        refused = list(csv.DictReader(fh))
    assert [(r["line"], r["field"]) for r in refused] == [("3", "sex"), ("4", "birth_date")]
    summary = run(tmp_path, "registry", "check", str(registry)).stdout
    assert "4 lignes lues, 2 valides, 2 refusées" in summary


def test_a_wrong_header_is_a_clear_error(tmp_path: Path) -> None:
    registry = tmp_path / "registre.csv"
    registry.write_text("nir,nom\n", encoding="utf-8")
    done = run(tmp_path, "registry", "check", str(registry), check=False)
    assert done.returncode == 2 and "colonnes manquantes" in done.stderr and "Traceback" not in done.stderr
