"""`espace-sante opposition`: the proof of an opposition (spaces/opposition.py, docs/activation.md).

An operator records an opposition made by phone or at a counter with `espace-sante lifecycle set INS oppose
--channel phone|counter --operator LOGIN` (and a later request for a space with `lifecycle set INS request`);
these commands print the proof the person keeps, and check a proof's reference when someone shows one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from espace_sante.cli import common

opposition_app = typer.Typer(help="Attestations d'opposition / proofs of opposition.", no_args_is_help=True)


@opposition_app.command("proof")
def opposition_proof(
    space: Annotated[
        str, typer.Argument(help="espace (32 hex) ou INS du titulaire / space id or holder's INS")
    ],
    out: Annotated[Path, typer.Option("--out", help="fichier PDF à écrire / PDF file to write")],
    operator: Annotated[
        str | None,
        typer.Option(
            "--operator", help="agent qui imprime (tracé) / operator printing it (traced; else: the service)"
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help='{"space": …, "reference": …, "at": …, "channel": …, "file": …}')
    ] = False,
) -> None:
    """Écrit l'attestation de la dernière opposition d'un espace / write the proof of a space's opposition.

    Refusé (code 1) si aucune opposition n'est enregistrée / exit 1 when no opposition was recorded."""
    from espace_sante.access.actors import Actor
    from espace_sante.context import Context
    from espace_sante.errors import NotFound
    from espace_sante.runtime import Runtime
    from espace_sante.spaces import opposition

    async def work(rt: Runtime) -> opposition.Opposition | None:
        space_id = await common.space_named(rt, space)
        try:
            ctx = (
                Context(rt, Actor("operator", operator, display=operator)) if operator else Context.system(rt)
            )
            found, content = await opposition.proof_pdf(ctx, space_id)
        except NotFound:
            return None
        # Written next to its final name, then renamed: a half-written proof is never left under that name.
        partial = out.with_name(out.name + ".partiel")
        partial.write_bytes(content)
        partial.replace(out)
        return found

    found = common.run(lambda: common.with_runtime(common.settings(), work))
    if found is None:
        raise common.fail(
            "aucune opposition enregistrée pour cet espace / no opposition recorded for this space", 1
        )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "space": found.space_id.hex,
                    "reference": found.reference,
                    "at": found.at.isoformat(),
                    "channel": found.channel,
                    "file": str(out),
                }
            )
        )
        return
    typer.echo(f"{out}: {found.reference}")


@opposition_app.command("check")
def opposition_check(
    ins: Annotated[str, typer.Argument(help="INS du titulaire / holder's INS")],
    reference: Annotated[str, typer.Argument(help="référence de l'attestation / the proof's reference")],
    as_json: Annotated[
        bool, typer.Option("--json", help='{"valid": true|false, "at": …, "channel": …, "state": …}')
    ] = False,
) -> None:
    """Vérifie la référence d'une attestation d'opposition / check a proof of opposition's reference.

    Code 1 si elle ne correspond à aucune opposition de cette personne / exit 1 when it proves nothing."""
    from espace_sante.runtime import Runtime
    from espace_sante.spaces import opposition

    async def work(rt: Runtime) -> opposition.Opposition | None:
        return await opposition.verify(rt, ins, reference)

    found = common.run(lambda: common.with_runtime(common.settings(), work))
    if as_json:
        typer.echo(
            json.dumps(
                {"valid": False}
                if found is None
                else {
                    "valid": True,
                    "at": found.at.isoformat(),
                    "channel": found.channel,
                    "state": found.state,
                }
            )
        )
    if found is None:
        raise common.fail(
            "référence inconnue pour cette personne / this reference proves no opposition of theirs", 1
        )
    if not as_json:
        typer.echo(
            f"valide : opposition {opposition.CHANNELS_FR.get(found.channel, found.channel)}, "
            f"{found.at.isoformat()} (état actuel : {found.state}) / valid"
        )
