"""`espace-sante documents`: the document store's maintenance (docs/documents.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer

from espace_sante.cli import common

documents_app = typer.Typer(help="Documents du dossier / the record's documents.", no_args_is_help=True)


def _as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"date invalide / invalid date « {value} » (YYYY-MM-DD)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@documents_app.command("verify")
def documents_verify(
    deep: Annotated[
        bool,
        typer.Option("--deep", help="Déchiffre chaque contenu / decrypt and authenticate every content."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Rapport en JSON / JSON report.")] = False,
) -> None:
    """Compare la base et le stockage des contenus / compare the database and the content store.

    Code de sortie 1 si un contenu manque, est altéré ou orphelin / exit code 1 when anything is missing,
    altered or orphaned."""
    from espace_sante.access.actors import DOCUMENTS
    from espace_sante.context import Context
    from espace_sante.record import documents

    async def work(rt: object) -> documents.Verification:
        return await documents.verify(Context(rt, DOCUMENTS), deep=deep)  # type: ignore[arg-type]

    report = common.run(lambda: common.with_runtime(common.settings(), work))
    if as_json:
        typer.echo(json.dumps(report.as_json()))
    else:
        data = report.as_json()
        typer.echo(
            f"{data['blobs']} contenu(s) vérifié(s) / content(s) checked"
            + (f", {data['content_checked']} déchiffré(s) / decrypted" if deep else "")
        )
        for what in ("missing", "wrong_size", "unreadable", "orphans", "binaries_without_content"):
            for key in data[what]:
                typer.echo(f"{what}: {key}")
        typer.echo("ok" if report.clean else "PROBLÈMES / PROBLEMS")
    if not report.clean:
        raise typer.Exit(1)


@documents_app.command("collect")
def documents_collect(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Date de référence / as of (YYYY-MM-DD)")
    ] = None,
) -> None:
    """Supprime les contenus de soumissions jamais validées / delete content of submissions that never
    committed (after the grace period)."""
    from espace_sante.access.actors import DOCUMENTS
    from espace_sante.context import Context
    from espace_sante.record import documents

    when = _as_of(as_of)

    async def work(rt: object) -> int:
        return await documents.collect_orphans(Context(rt, DOCUMENTS), now=when)  # type: ignore[arg-type]

    removed = common.run(lambda: common.with_runtime(common.settings(), work))
    typer.echo(f"{removed} contenu(s) orphelin(s) supprimé(s) / orphan content(s) deleted")


@documents_app.command("release")
def documents_release(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Date de référence / as of (YYYY-MM-DD)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help='{"noticed": N, "released": N}')] = False,
) -> None:
    """Prévient les titulaires et rend visibles les documents en attente d'annonce échus / tell holders and
    release documents hidden until an announcement consultation, when due (R1111-53)."""
    from espace_sante.access.actors import DOCUMENTS
    from espace_sante.context import Context
    from espace_sante.record import documents

    when = _as_of(as_of)

    async def work(rt: object) -> documents.ReleaseRun:
        return await documents.run_hidden_documents(Context(rt, DOCUMENTS), when)  # type: ignore[arg-type]

    run = common.run(lambda: common.with_runtime(common.settings(), work))
    if as_json:
        typer.echo(json.dumps({"noticed": run.noticed, "released": run.released}))
    else:
        typer.echo(
            f"{run.noticed} titulaire(s) prévenu(s) / told, {run.released} document(s) rendu(s) visible(s) / released"
        )
