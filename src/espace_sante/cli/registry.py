"""`espace-sante registry`: the insurer's registry of beneficiaries (docs/registry-format.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from espace_sante import clock
from espace_sante.cli import common

registry_app = typer.Typer(
    help="Registre des bénéficiaires / registry of beneficiaries.", no_args_is_help=True
)


@registry_app.command("check")
def registry_check(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV ou/or NDJSON")
    ],
    rejects: Annotated[
        Path | None, typer.Option("--rejects", help="fichier CSV des lignes refusées / rejects file")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help='{"read": N, "valid": N, "rejected": N}')] = False,
) -> None:
    """Vérifie un fichier du registre sans rien importer / check a registry file, importing nothing.

    Chaque ligne refusée va dans le fichier des rejets avec son numéro de ligne, le champ et la raison."""

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from espace_sante.spaces.registry.rejects import RejectsFile, Tally
    from espace_sante.spaces.registry.rows import RegistryFormatError, Rejected, read_registry

    tally = Tally()
    try:
        with (
            file.open("rb") as stream,
            RejectsFile(rejects) as out,
            Progress(
                SpinnerColumn(),
                TextColumn("{task.completed:,} lignes lues / rows read"),
                TimeElapsedColumn(),
                disable=as_json or not sys.stderr.isatty(),
                console=None,
                transient=True,
            ) as progress,
        ):
            task = progress.add_task("registry", total=None)
            for row in read_registry(stream):
                tally.add(row)
                if isinstance(row, Rejected):
                    out.write(row)
                if tally.read % 10_000 == 0:
                    progress.update(task, completed=tally.read)
    except RegistryFormatError as exc:
        typer.echo(f"espace-sante: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"espace-sante: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps({"read": tally.read, "valid": tally.valid, "rejected": tally.rejected}))
        return
    typer.echo(
        f"{tally.read:,} lignes lues, {tally.valid:,} valides, {tally.rejected:,} refusées / rows read, valid, rejected"
    )
    for name, count in sorted(tally.by_field.items(), key=lambda kv: -kv[1]):
        typer.echo(f"  {name}: {count:,}")


@registry_app.command("import")
def registry_import(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV ou/or NDJSON")
    ],
    rejects: Annotated[
        Path | None, typer.Option("--rejects", help="fichier CSV des lignes refusées / rejects file")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='{"read": N, "created": N, "updated": N, "unchanged": N, "rejected": N} (and with --notify '
            '"notified", "emails", "letters", "delivered")',
        ),
    ] = False,
    notify: Annotated[
        bool,
        typer.Option(
            "--notify",
            help="Envoie aussi les avis (codes d'activation) des espaces créés, dans la même transaction, puis "
            "`notices send` pour le reste / also notify the spaces created, in the same transaction, then "
            "what is left as `notices send` does.",
        ),
    ] = False,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="Avec --notify : date d'envoi AAAA-MM-JJ / with --notify: sending date."
        ),
    ] = None,
    deliver: Annotated[
        bool,
        typer.Option(
            "--deliver/--no-deliver",
            help="Avec --notify : remet les courriels à la fin, sinon le worker s'en charge / with --notify: "
            "deliver the e-mails at the end; with --no-deliver the worker's jobs do.",
        ),
    ] = True,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            min=1,
            max=64,
            help="Processus en parallèle, un lot de NIR chacun / processes at once, one shard of the NIRs "
            'each (docs/registry-format.md, "Throughput").',
        ),
    ] = 1,
) -> None:
    """Importe le registre : crée, met à jour ou laisse chaque espace / import the registry of beneficiaries.

    Idempotent et reprenable : relancé après une interruption, il reprend où il s'était arrêté / idempotent,
    and a run killed midway is resumed by the next run of the same file. Avec --notify, en un seul passage, les
    personnes créées reçoivent leur avis comme avec `notices send` / with --notify, one pass: the people
    created get their notices as `notices send` would give them."""
    from concurrent.futures.process import BrokenProcessPool

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from espace_sante.runtime import Runtime
    from espace_sante.spaces.registry.importer import Counts, ImportRunning, import_file
    from espace_sante.spaces.registry.rejects import RejectsFile
    from espace_sante.spaces.registry.rows import RegistryFormatError
    from espace_sante.spaces.registry.shards import import_sharded

    if as_of is not None and not notify:
        raise common.fail("--as-of va avec --notify / --as-of goes with --notify")
    day = (common.day(as_of) or clock.today()) if notify else None

    with (
        Progress(
            SpinnerColumn(),
            TextColumn(
                "{task.completed:,} lignes lues / rows read · {task.fields[created]:,} créés / created · "
                "{task.fields[updated]:,} mis à jour / updated · {task.fields[rejected]:,} refusés / rejected"
            ),
            TimeElapsedColumn(),
            disable=as_json or jobs > 1 or not sys.stderr.isatty(),
            transient=True,
        ) as progress,
        RejectsFile(rejects if jobs == 1 else None) as out,
    ):
        task = progress.add_task("registry", total=None, created=0, updated=0, rejected=0)

        def show(counts: Counts) -> None:
            progress.update(
                task,
                completed=counts.read,
                created=counts.created,
                updated=counts.updated,
                rejected=counts.rejected,
            )

        async def work(rt: Runtime) -> Counts:
            if jobs > 1:
                return await import_sharded(rt, file, jobs=jobs, rejects=rejects, notify=day, deliver=deliver)
            return await import_file(
                rt, file, rejects=out, progress=show, resumed=tell, notify=day, deliver=deliver
            )

        def tell(line: int) -> None:
            typer.echo(f"reprise après la ligne {line:,} / resuming after line {line}", err=True)

        try:
            counts = common.run(lambda: common.with_runtime(common.settings(), work))
        except RegistryFormatError as exc:
            raise common.fail(str(exc)) from None
        except ImportRunning as exc:
            raise common.fail(str(exc), 3) from None
        except BrokenProcessPool:
            # A shard's process died (killed, out of memory): what every shard committed stays, and each
            # resumes from its own checkpoint.
            raise common.fail(
                "un des processus de l'import s'est arrêté : relancez la même commande pour reprendre / "
                "a shard's process stopped: run the same command again to resume",
                1,
            ) from None
    if as_json:
        typer.echo(json.dumps(counts.as_json()))
        return
    typer.echo(
        f"{counts.read:,} lignes lues, {counts.created:,} créées, {counts.updated:,} mises à jour, "
        f"{counts.unchanged:,} inchangées, {counts.rejected:,} refusées / rows read, created, updated, "
        "unchanged, rejected"
    )
    for name, count in sorted(counts.by_field.items(), key=lambda kv: -kv[1]):
        typer.echo(f"  {name}: {count:,}")
    if counts.notices is not None:
        n = counts.notices
        typer.echo(
            f"{n.notified:,} avis envoyés : {n.emails:,} courriels, {n.letters:,} lettres ; {n.delivered:,} "
            "courriels remis / notified: e-mails, letters queued; e-mails delivered"
        )


@registry_app.command("sample")
def registry_sample(
    out: Annotated[
        Path, typer.Option("--out", dir_okay=False, help="fichier CSV à écrire / CSV file to write")
    ],
    rows: Annotated[
        int, typer.Option("--rows", min=1, max=10_000_000, help="nombre de lignes / rows")
    ] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="graine / seed (same seed, same people)")] = 6,
    as_json: Annotated[
        bool,
        typer.Option("--json", help='{"rows": N, "minors": N, "bad": N, "with_email": N, "deceased": N}'),
    ] = False,
) -> None:
    """Écrit un registre fictif pour essayer / write a made-up registry to try the import.

    NIR valides, noms et adresses français, environ 20 % de mineurs rattachés à leurs représentants, 60 %
    avec une adresse e-mail, quelques décès et environ 0,1 % de lignes erronées. Personne n'y existe."""
    from espace_sante.spaces.registry.sample import generate

    try:
        stats = generate(out, rows, seed)
    except OSError as exc:
        typer.echo(f"espace-sante: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(stats))
        return
    typer.echo(
        f"{stats['rows']} lignes écrites dans {out} ({stats['minors']} mineurs, {stats['with_email']} avec e-mail, "
        f"{stats['bad']} erronées) / rows written"
    )
