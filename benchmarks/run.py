"""`make bench`: measure `espace-sante serve` over loopback HTTP against a bare ASGI ceiling.

1. A data folder per dataset size under benchmarks/.data/ (kept between runs: loading is the slow part).
2. `espace-sante serve --workers 1` on it (embedded PostgreSQL), a `system/*.*` client, tokens.
3. If the folder is not loaded yet: Patients, Observations and Conditions through HTTP transaction Bundles.
4. The ceiling app (benchmarks/ceiling.py) on the same PostgreSQL.
5. Each scenario at 1 and 16 clients, repeated (interleaved, so drift spreads over all scenarios), each run by
   a separate load-generator process (benchmarks/loadgen.py); medians, ratios and targets are reported.

Every child process is stopped on exit, failure or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import httpx
import psutil

from benchmarks import load, procs, report

SCENARIOS = (
    "ceiling",
    "read",
    "search-identifier",
    "search-patient",
    "create",
    "transaction",
    "read-practitioner",
    "search-practitioner",
)
DATA_ROOT = Path(__file__).parent / ".data"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    p.add_argument("--patients", type=int, default=100_000)
    p.add_argument("--others", type=int, default=200_000, help="Observations and Conditions (2:1)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2,000 / 4,000 resources, 3 s per measurement, one repeat",
    )
    p.add_argument("--duration", type=float, help="measured seconds per run (default 10, quick 3)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per run (default 3, quick 1)")
    p.add_argument(
        "--repeats",
        type=int,
        help="runs per scenario and clients level; the median is reported (default 3, quick 1)",
    )
    p.add_argument("--clients", default="1,16", help="concurrency levels, comma-separated")
    p.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated subset of " + ", ".join(SCENARIOS)
    )
    p.add_argument(
        "--load-concurrency", type=int, default=3, help="transaction Bundles in flight while loading"
    )
    p.add_argument("--data-root", type=Path, default=DATA_ROOT)
    p.add_argument("--fresh", action="store_true", help="discard the cached data folder and load again")
    args = p.parse_args(argv)
    if args.quick:
        if "--patients" not in (argv or sys.argv):
            args.patients = 2_000
        if "--others" not in (argv or sys.argv):
            args.others = 4_000
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.clients = [int(c) for c in args.clients.split(",")]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # same path as Ctrl-C: the finally blocks stop the children


class CpuMeter:
    """CPU seconds used by the app process and by PostgreSQL (postmaster and backends) over a run."""

    def __init__(self, app_pid: int, data_dir: Path) -> None:
        self.app_pid = app_pid
        self.data_dir = data_dir

    def _sample(self) -> tuple[float, dict[int, float]]:
        pg: dict[int, float] = {}
        for pid in procs.postgres_pids(self.data_dir):
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(pid).cpu_times()
                pg[pid] = t.user + t.system
        t = psutil.Process(self.app_pid).cpu_times()
        return t.user + t.system, pg

    def __enter__(self) -> CpuMeter:
        self.start = time.monotonic()
        self.app0, self.pg0 = self._sample()
        self.machine0 = psutil.cpu_times()
        return self

    def __exit__(self, *exc: object) -> None:
        app1, pg1 = self._sample()
        wall = time.monotonic() - self.start
        self.app_percent = round(100 * (app1 - self.app0) / wall, 1)
        # Backends that exited during the run are missed: the pool keeps its connections, so few do.
        self.pg_percent = round(100 * sum(v - self.pg0.get(pid, 0.0) for pid, v in pg1.items()) / wall, 1)
        # The whole machine (100 = one core busy): other tenants' load shows as busy time we did not cause.
        m0, m1 = self.machine0, psutil.cpu_times()
        idle = (m1.idle + getattr(m1, "iowait", 0.0)) - (m0.idle + getattr(m0, "iowait", 0.0))
        self.machine_percent = round(100 * (sum(m1) - sum(m0) - idle) / wall, 1)


def run_loadgen(
    spec: dict[str, Any], meter: CpuMeter, command: tuple[str, ...] = ("benchmarks.loadgen",)
) -> dict[str, Any]:
    """One measurement in a fresh load-generator process (`python -m <command>`, the spec on its stdin)."""
    with meter:
        out = subprocess.run(
            [sys.executable, "-m", *command],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=spec["warmup"] + spec["duration"] + 120,
            check=False,
        )
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    result["server_cpu_percent"] = meter.app_percent
    result["postgres_cpu_percent"] = meter.pg_percent
    result["machine_cpu_percent"] = meter.machine_percent
    return result


async def _db_facts(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT resource_type, count(*) AS n FROM resource GROUP BY 1 ORDER BY 1")
        return {
            "version": await conn.fetchval("SHOW server_version"),
            "shared_buffers": await conn.fetchval("SHOW shared_buffers"),
            "database_size": await conn.fetchval(
                "SELECT pg_size_pretty(pg_database_size(current_database()))"
            ),
            "resources": {r["resource_type"]: r["n"] for r in rows},
        }
    finally:
        await conn.close()


def check_same_json(serve_base: str, ceiling_base: str, token: str, patient_id: str) -> None:
    """The ceiling must return the very bytes the API returns for a read, or the comparison is meaningless."""
    api = httpx.get(f"{serve_base}/fhir/Patient/{patient_id}", headers={"Authorization": f"Bearer {token}"})
    bare = httpx.get(f"{ceiling_base}/fhir/Patient/{patient_id}")
    if api.status_code != 200 or bare.status_code != 200 or api.content != bare.content:
        raise RuntimeError(
            f"ceiling and API differ for Patient/{patient_id}: {api.status_code} vs {bare.status_code}"
        )


def prepare_data_dir(args: argparse.Namespace) -> Path:
    data_dir: Path = (args.data_root / f"p{args.patients}-o{args.others}").resolve()
    if data_dir.exists() and (args.fresh or not (data_dir / "manifest.json").exists()):
        # No manifest: an interrupted load. Start again rather than measure a partial dataset.
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    data_dir = prepare_data_dir(args)
    manifest = data_dir / "manifest.json"
    children: list[procs.Managed] = []
    try:
        print(f"data folder {data_dir}", flush=True)
        port = procs.free_port()
        serve = procs.start_serve(data_dir, port)
        children.append(serve)
        base = f"http://{procs.HOST}:{port}"
        tokens = procs.Tokens(base, procs.ensure_client(data_dir))
        if not manifest.exists():
            print(
                f"loading {args.patients:,} Patients and {args.others:,} other resources over HTTP ...",
                flush=True,
            )
            stats = asyncio.run(
                load.load_http(base, tokens, args.patients, args.others, args.load_concurrency)
            )
            load.write_manifest(manifest, args.patients, args.others, stats)
        saved = json.loads(manifest.read_text())
        print(
            f"dataset loaded in {saved['load']['seconds']:,} s ({saved['load']['resources_per_second']:,}"
            " resources/s)",
            flush=True,
        )
        db_url = procs.database_url(data_dir)
        facts = asyncio.run(_db_facts(db_url))
        ceiling_port = procs.free_port()
        ceiling = procs.start_ceiling(data_dir, ceiling_port, db_url)
        children.append(ceiling)
        check_same_json(base, f"http://{procs.HOST}:{ceiling_port}", tokens.get(), saved["patients"][0][1])
        practitioner = ""
        if any(s.endswith("-practitioner") for s in args.scenarios):
            asyncio.run(procs.ensure_practitioner(base, tokens.get(), db_url))
            practitioner = procs.practitioner_token(data_dir)

        runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for repeat in range(args.repeats):
            for scenario in args.scenarios:
                for clients in args.clients:
                    target = ceiling if scenario == "ceiling" else serve
                    spec = {
                        "scenario": scenario,
                        "clients": clients,
                        "host": procs.HOST,
                        "port": ceiling_port if scenario == "ceiling" else port,
                        "token": None
                        if scenario == "ceiling"
                        else practitioner
                        if scenario.endswith("-practitioner")
                        else tokens.get(margin=args.duration + 60),
                        "manifest": str(manifest),
                        "warmup": args.warmup,
                        "duration": args.duration,
                        "seed": f"{time.time_ns()}/{scenario}/{clients}/{repeat}",
                    }
                    target.check_alive()
                    result = run_loadgen(spec, CpuMeter(target.pid, data_dir))
                    runs.setdefault((scenario, clients), []).append(result)
                    print(
                        f"  [{repeat + 1}/{args.repeats}] {scenario:<18} {clients:>2} clients: "
                        f"{result['rps']:>8,.0f} req/s  p50 {result['p50_ms']:.2f}  p95 {result['p95_ms']:.2f}  "
                        f"p99 {result['p99_ms']:.2f} ms  errors {result['errors']}",
                        flush=True,
                    )
                    for sample in result["error_samples"][:2]:
                        print(f"      error: {sample}", flush=True)
    finally:
        for child in reversed(children):
            child.stop()

    rows = report.summarize(runs)
    checks = report.verdicts(rows, args.patients)
    print(
        "\nMedians of",
        args.repeats,
        "run(s); cpu% = median CPU of the target process / PostgreSQL / load generator / whole machine "
        "(100 = one core; the machine has",
        os.cpu_count(),
        "cores)\n",
    )
    print(report.table(rows, checks))
    path = report.write(
        {
            "machine": report.machine(facts["version"]),
            "settings": {
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "repeats": args.repeats,
                "clients": args.clients,
                "app_workers": 1,
                "ceiling_workers": 1,
            },
            "dataset": {
                "patients": args.patients,
                "others": args.others,
                "load": saved["load"],
                "at_start": {k: v for k, v in facts.items() if k != "version"},
            },
            "summary": rows,
            "checks": checks,
            "runs": [{"scenario": s, "clients": c, "runs": r} for (s, c), r in runs.items()],
        }
    )
    print(f"\nresults: {path}")
    failed = sum(r["errors"] for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: child processes stopped", file=sys.stderr)
        sys.exit(130)
