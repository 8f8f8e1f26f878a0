"""`python -m benchmarks.provisioning_cpu`: the registry import's Python work per row, without a database
(benchmarks/README.md, "Provisioning").

The end-to-end benchmark (`benchmarks.provisioning`) measures what matters, rows per second with
PostgreSQL, but on a shared machine its runs vary by a third for the same code. This one times only the CPU
steps an import process runs for each row of a `registry import --notify`, on one core, in this process:

- `read`: reading and checking the rows (`registry.rows.read_registry`: decoding, splitting, field checks,
  NIR keys);
- `prepare`: the ids, the fingerprint and the Patient body of each row (`importer.prepare`);
- `build`: the rows that create the spaces: data keys, sealed identities, the first trace records, the codes
  and the sealed notices (`Importer.build`, what the reading task does while the previous batch is in
  the database).

Each step is the best of `--repeats` timings over the same file, in µs per row: the least disturbed run, which
is what a code change moves. A change that saves a few µs per row shows here when the end-to-end rate cannot
resolve it.

    .venv/bin/python -m benchmarks.provisioning_cpu            # 20,000 rows, best of 5
    .venv/bin/python -m benchmarks.provisioning_cpu --rows 50000 --repeats 7
"""

from __future__ import annotations

import argparse
import gc
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from espace_sante import clock
from espace_sante.crypto import KeyRing, LocalKek
from espace_sante.fhir import compartment
from espace_sante.runtime import Runtime
from espace_sante.settings import Settings
from espace_sante.spaces.registry.importer import BATCH, Importer, prepare
from espace_sante.spaces.registry.rows import Beneficiary, read_registry
from espace_sante.spaces.registry.sample import generate
from espace_sante.storage.keys import KeyStore


def _runtime(folder: Path) -> Runtime:
    """Settings and keys only: `build` touches no database (the `db` field is never used here)."""
    settings = Settings(data_dir=folder)
    keys = KeyStore(KeyRing(LocalKek(os.urandom(32))))
    return Runtime(settings, None, keys)  # type: ignore[arg-type]


def _best(step: Any, repeats: int) -> float:
    """The least CPU time of `repeats` runs of `step`, with the cyclic collector off as `registry import`
    runs (importer.import_file: off during the run, one collection every few batches)."""
    times = []
    for _ in range(repeats):
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            started = time.process_time()
            step()
            times.append(time.process_time() - started)
        finally:
            gc.enable()
            gc.unfreeze()
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="provisioning-cpu-") as tmp:
        folder = Path(tmp)
        registry = folder / "registre.csv"
        generate(registry, args.rows)
        data = registry.read_bytes()
        today = clock.today()
        importer = Importer(_runtime(folder), today=today, notify=today)

        rows: list[Beneficiary] = []

        def read() -> None:
            rows[:] = [r for r in read_registry(io.BytesIO(data), today=today) if isinstance(r, Beneficiary)]

        prepared: list[Any] = []

        def prep() -> None:
            ids = compartment.new_spaces(len(rows))
            prepared[:] = [prepare(r, i) for r, i in zip(rows, ids, strict=True)]

        def build() -> None:
            for at in range(0, len(prepared), BATCH):
                importer.build(prepared[at : at + BATCH])

        results = {}
        for name, step in (("read", read), ("prepare", prep), ("build", build)):
            results[name] = 1e6 * _best(step, args.repeats) / args.rows
        total = sum(results.values())
        print(
            f"{args.rows:,} rows, best of {args.repeats}, µs of CPU per row: "
            + ", ".join(f"{k} {v:.1f}" for k, v in results.items())
            + f"; total {total:.1f}"
        )


if __name__ == "__main__":
    main()
