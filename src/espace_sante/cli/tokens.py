"""`espace-sante token issue`: development tokens for demo people (oauth/devtokens.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from espace_sante.cli import common

token_app = typer.Typer(help="Jetons de développement / development tokens.", no_args_is_help=True)


@token_app.command("issue")
def token_issue(
    actor: Annotated[
        str,
        typer.Option(
            "--actor", help="holder:<INS>, representative:<INS>, practitioner:<RPPS> ou/or operator:<login>"
        ),
    ],
    scope: Annotated[str, typer.Option("--scope", help="ex. patient/*.rs, user/*.cruds")],
    acr: Annotated[
        str, typer.Option("--acr", help="niveau de connexion simulé / sign-in level stood for")
    ] = "eidas2",
    as_json: Annotated[bool, typer.Option("--json", help='{"access_token": ..., "expires_in": N}')] = False,
) -> None:
    """Émet un jeton pour une personne de démonstration (mode développement seulement, tracé) / mint a token
    for a demo person (development mode only, traced)."""
    from espace_sante.oauth import devtokens
    from espace_sante.runtime import Runtime

    async def work(rt: Runtime) -> devtokens.Issued:
        return await devtokens.issue(rt, actor, scope, acr=acr)

    issued = common.run(lambda: common.with_runtime(common.settings(), work))
    if as_json:
        typer.echo(json.dumps({"access_token": issued.access_token, "expires_in": issued.expires_in}))
    else:
        typer.echo(issued.access_token)
