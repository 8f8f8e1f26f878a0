"""`espace-sante legacy`: the import of the legacy DMP's XDM export (docs/legacy.md).

Output names packages by their file name and documents set aside by their package's SHA-256 and their path in
it, with a reason code: never an INS, a title or any content."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from espace_sante.cli import common

legacy_app = typer.Typer(
    help="Reprise des documents de l'ancien DMP / import of the legacy DMP's documents.", no_args_is_help=True
)


def _work(func: Any) -> Any:
    """Run `func(runtime)`; an input the import cannot take is a readable error with exit code 2."""
    from espace_sante.spaces.legacy.importer import LegacyInputError

    try:
        return common.run(lambda: common.with_runtime(common.settings(), func))
    except LegacyInputError as exc:
        raise common.fail(str(exc)) from None


@legacy_app.command("import")
def legacy_import(
    path: Annotated[
        Path, typer.Argument(help="paquet XDM (.zip) ou dossier de paquets / XDM package or folder")
    ],
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='{"packages", "documents", "imported", "already", "set_aside", "refused_packages", …}',
        ),
    ] = False,
) -> None:
    """Importe les documents des paquets XDM, rapprochés par INS / import the XDM packages' documents,
    matched on INS.

    Les documents d'une personne inconnue ou opposée, ou refusés, sont mis de côté (chiffrés) et listés par
    `legacy report` / documents of an unknown or opposed person, or refused, are set aside (encrypted) and
    listed by `legacy report`. Code de sortie 1 si un paquet est refusé, 2 si tous le sont / exit code 1
    when a package is refused, 2 when all are."""
    from espace_sante.spaces.legacy import importer as legacy

    async def work(rt: Any) -> legacy.ImportCounts:
        return await legacy.import_path(rt, path)

    counts: legacy.ImportCounts = _work(work)
    if as_json:
        typer.echo(json.dumps(counts.as_json(), ensure_ascii=False))
    else:
        typer.echo(
            f"{counts.packages} paquet(s) / package(s), {counts.documents} document(s) : "
            f"{counts.imported} importé(s) / imported, {counts.already} déjà présent(s) / already there, "
            f"{counts.set_aside} mis de côté / set aside, {counts.refused_packages} paquet(s) refusé(s) / "
            f"refused package(s), {counts.refused_subsets} sous-ensemble(s) refusé(s) / refused subset(s)"
        )
        for problem in counts.problems:
            typer.echo(f"refusé / refused: {problem}", err=True)
    if counts.refused_packages and counts.refused_packages == counts.packages:
        raise typer.Exit(2)  # nothing could be read: the input itself is wrong
    if counts.refused_packages or counts.refused_subsets:
        raise typer.Exit(1)


@legacy_app.command("report")
def legacy_report(
    as_json: Annotated[bool, typer.Option("--json", help="Rapport en JSON / JSON report.")] = False,
    limit: Annotated[
        int, typer.Option("--limit", min=0, help="Documents listés au plus / listed at most")
    ] = 1000,
) -> None:
    """Liste les documents mis de côté et leur raison / list the documents set aside and why."""
    from espace_sante.spaces.legacy import importer as legacy

    async def work(rt: Any) -> legacy.Report:
        return await legacy.report(rt, limit=limit)

    report: legacy.Report = _work(work)
    data = report.as_json()
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False))
        return
    typer.echo(f"{data['set_aside']} document(s) mis de côté / set aside")
    for reason, n in sorted(data["by_reason"].items()):
        typer.echo(f"  {reason}: {n}")
    if data["resolved"]:
        typer.echo(
            "déjà repris / resolved: " + ", ".join(f"{k}: {v}" for k, v in sorted(data["resolved"].items()))
        )
    for row in data["documents"]:
        typer.echo(
            f"{row['id']}  {row['since'][:19]}  {row['reason']:<16} {row['location']:<40} "
            f"{row['package'][:12]}…  {row['entry']}  ({row['attempts']} essai(s) / attempt(s))"
        )


@legacy_app.command("retry")
def legacy_retry(
    as_json: Annotated[
        bool, typer.Option("--json", help='{"retried", "imported", "already", "set_aside"}')
    ] = False,
) -> None:
    """Retente le dépôt des documents mis de côté / try the documents set aside again (after a registry
    import, an opening…)."""
    from espace_sante.spaces.legacy import importer as legacy

    async def work(rt: Any) -> legacy.RetryCounts:
        return await legacy.retry(rt)

    counts: legacy.RetryCounts = _work(work)
    if as_json:
        typer.echo(json.dumps(counts.as_json()))
    else:
        typer.echo(
            f"{counts.retried} document(s) retenté(s) / retried : {counts.imported} importé(s) / imported, "
            f"{counts.already} déjà présent(s) / already there, {counts.set_aside} toujours de côté / still "
            "set aside"
        )


@legacy_app.command("forget")
def legacy_forget(
    ins: Annotated[str, typer.Argument(help="INS-NIR de la personne (15 caractères) / the person's INS-NIR")],
    as_json: Annotated[bool, typer.Option("--json", help='{"erased": N}')] = False,
) -> None:
    """Efface définitivement les documents mis de côté d'une personne et leur clé / erase for good one
    person's documents set aside, and their key.

    Décision de l'assureur sur l'ancien DMP d'une personne opposée, ou sa demande : aucune sauvegarde ne
    pourra plus les lire / the insurer's decision on an opposed person's former DMP, or their request: no
    backup can read them again. La destruction d'un espace le fait aussi / destroying a space does it too."""
    from espace_sante.fhir.identifiers import IdentifierError, validate_nir
    from espace_sante.spaces.legacy import importer as legacy

    try:
        nir = validate_nir(ins)
    except IdentifierError as exc:
        raise common.fail(f"INS invalide / invalid INS: {exc.message}") from None

    async def work(rt: Any) -> int:
        return await legacy.forget(rt, nir)

    erased: int = _work(work)
    if as_json:
        typer.echo(json.dumps({"erased": erased}))
    else:
        typer.echo(f"{erased} document(s) effacé(s) / erased")
