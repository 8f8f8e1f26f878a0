"""`espace-sante lifecycle` as an operator runs it: real processes on their own data folder, moving through
time with --as-of."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_commands import run
from tests.factories import new_nir
from tests.registry.test_import import person, write


def test_a_notified_space_opens_when_the_run_passes_the_window(tmp_path: Path) -> None:
    data = tmp_path / "data"
    row = person()
    run(data, "registry", "import", str(write(tmp_path / "r.csv", [row])))
    assert run(data, "lifecycle", "show", row["nir"]).stdout.startswith("registered")
    moved = run(data, "lifecycle", "set", row["nir"], "notify", "--on", "2030-01-01", "--json")
    assert json.loads(moved.stdout)["to"] == "notified"
    early = json.loads(run(data, "lifecycle", "run", "--as-of", "2030-02-11", "--json").stdout)
    assert early == {
        "as_of": "2030-02-11",
        "opened": 0,
        "closed_suspended": 0,
        "closed_deceased": 0,
        "destroyed": 0,
        "of_age": 0,
    }
    due = json.loads(run(data, "lifecycle", "run", "--as-of", "2030-02-12", "--json").stdout)
    assert due["opened"] == 1
    again = json.loads(run(data, "lifecycle", "run", "--as-of", "2030-02-12", "--json").stdout)
    assert again["opened"] == 0  # idempotent
    assert run(data, "lifecycle", "show", row["nir"]).stdout.startswith("open (ouvert / open)")
    refused = run(data, "lifecycle", "set", row["nir"], "notify", check=False)
    assert refused.returncode == 2 and "changement impossible" in refused.stderr
    closed = run(data, "lifecycle", "set", row["nir"], "close", "--operator", "agent-cpam", "--json")
    assert json.loads(closed.stdout) == {
        "space": json.loads(moved.stdout)["space"],
        "from": "open",
        "to": "closed",
    }
    text = run(data, "lifecycle", "run", "--as-of", "2045-01-01").stdout
    assert "1 détruits" in text
    # The registry's INS link outlives the data: an operator can still tell what became of the space.
    assert run(data, "lifecycle", "show", row["nir"]).stdout.startswith("destroyed (détruit / destroyed)")
    unknown = run(data, "lifecycle", "show", new_nir(), check=False)
    assert unknown.returncode == 2 and "aucun espace" in unknown.stderr
    bad = run(data, "lifecycle", "run", "--as-of", "demain", check=False)
    assert bad.returncode == 2
