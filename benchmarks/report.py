"""The summary: medians over the repeats, the read/ceiling ratios, the two targets, machine information, the
table on stdout and the JSON file under benchmarks/results/."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.stats import median_of

RESULTS = Path(__file__).parent / "results"
FIGURES = ("rps", "p50_ms", "p95_ms", "p99_ms")
#: Targets from the issue: read by id >= 50 % of the ceiling (one worker each); search by identifier
#: p95 < 20 ms at 16 clients with 100,000 Patients.
READ_RATIO_TARGET = 0.5
SEARCH_P95_TARGET_MS = 20.0
SEARCH_TARGET_CLIENTS = 16
SEARCH_TARGET_PATIENTS = 100_000


def summarize(runs: dict[tuple[str, int], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for (scenario, clients), repeats in runs.items():
        row: dict[str, Any] = {"scenario": scenario, "clients": clients, "repeats": len(repeats)}
        for key in (
            *FIGURES,
            "server_cpu_percent",
            "postgres_cpu_percent",
            "loadgen_cpu_percent",
            "machine_cpu_percent",
        ):
            row[key] = round(median_of(repeats, key), 2)
        row["errors"] = sum(r["errors"] for r in repeats)
        row["requests"] = sum(r["requests"] for r in repeats)
        rows.append(row)
    return rows


def verdicts(rows: list[dict[str, Any]], patients: int) -> dict[str, Any]:
    by = {(r["scenario"], r["clients"]): r for r in rows}
    out: dict[str, Any] = {"read_over_ceiling": {}}
    for clients in sorted({r["clients"] for r in rows}):
        read, ceiling = by.get(("read", clients)), by.get(("ceiling", clients))
        if read and ceiling and ceiling["rps"]:
            out["read_over_ceiling"][str(clients)] = round(read["rps"] / ceiling["rps"], 3)
    ratios = out["read_over_ceiling"].values()
    out["read_target"] = {
        "target": f">= {READ_RATIO_TARGET:.0%} of the ceiling (req/s medians, each clients level)",
        "met": bool(ratios) and all(r >= READ_RATIO_TARGET for r in ratios),
    }
    search = by.get(("search-identifier", SEARCH_TARGET_CLIENTS))
    out["search_target"] = {
        "target": f"search by identifier p95 < {SEARCH_P95_TARGET_MS:.0f} ms at {SEARCH_TARGET_CLIENTS} clients "
        f"with {SEARCH_TARGET_PATIENTS:,} Patients",
        "p95_ms": search["p95_ms"] if search else None,
        "met": search is not None
        and search["p95_ms"] < SEARCH_P95_TARGET_MS
        and patients >= SEARCH_TARGET_PATIENTS,
        "dataset_large_enough": patients >= SEARCH_TARGET_PATIENTS,
    }
    return out


def cpu_column(r: dict[str, Any]) -> str:
    """CPU % of the target process, PostgreSQL, the load generator and the whole machine (100 = one core)."""
    keys = ("server_cpu_percent", "postgres_cpu_percent", "loadgen_cpu_percent", "machine_cpu_percent")
    return "/".join(f"{r[k]:.0f}" for k in keys)


def table(rows: list[dict[str, Any]], checks: dict[str, Any]) -> str:
    head = (
        f"{'scenario':<18} {'clients':>7} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'errors':>6}  {'cpu% app/pg/gen/all':>20}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        cpu = cpu_column(r)
        lines.append(
            f"{r['scenario']:<18} {r['clients']:>7} {r['rps']:>9,.0f} {r['p50_ms']:>8.2f} "
            f"{r['p95_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>6}  {cpu:>20}"
        )
    lines.append("")
    for clients, ratio in checks["read_over_ceiling"].items():
        lines.append(f"read / ceiling at {clients:>2} client(s): {ratio:.0%}")
    read, search = checks["read_target"], checks["search_target"]
    lines.append(f"target read >= {READ_RATIO_TARGET:.0%} of ceiling: {'MET' if read['met'] else 'NOT MET'}")
    note = "" if search["dataset_large_enough"] else " (dataset below 100,000 Patients: not a valid check)"
    lines.append(
        f"target search-identifier p95 < {SEARCH_P95_TARGET_MS:.0f} ms at {SEARCH_TARGET_CLIENTS} clients: "
        f"{search['p95_ms']} ms, {'MET' if search['met'] else 'NOT MET'}{note}"
    )
    return "\n".join(lines)


def machine(postgres_version: str) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "postgres": postgres_version,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def write(payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}.json"
    tmp = path.with_suffix(".tmp")  # benchmarks/results/*.tmp is git-ignored
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False))
    tmp.rename(path)
    return path
