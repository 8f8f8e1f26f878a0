"""`espace-sante account …`: create and disable people's sign-in accounts, list their sessions.

The password is read from standard input (never an argument: it would show in the process list and the shell
history). With `--totp`, the TOTP secret and ten recovery codes are printed once."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from espace_sante.audit.wording import when
from espace_sante.cli import common

if TYPE_CHECKING:
    from espace_sante.runtime import Runtime

T = TypeVar("T")

app = typer.Typer(
    help="Comptes de connexion des personnes / people's sign-in accounts.", no_args_is_help=True
)


def _run_with_runtime(work: Callable[[Runtime], Awaitable[T]]) -> T:

    return common.run(lambda: common.with_runtime(common.settings(), work))


@app.command("create")
def create(
    kind: Annotated[str, typer.Option("--kind", help="holder, practitioner ou operator.")],
    actor_id: Annotated[
        str, typer.Option("--actor-id", help="INS (holder), RPPS (practitioner) ou login d'opérateur.")
    ],
    login: Annotated[str, typer.Option("--login", help="Identifiant de connexion (e-mail ou nom).")],
    email: Annotated[str | None, typer.Option("--email", help="Adresse pour les avis de sécurité.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Lit le mot de passe sur l'entrée standard.")
    ] = False,
    with_totp: Annotated[
        bool, typer.Option("--totp", help="Crée un secret TOTP et 10 codes de secours (affichés une fois).")
    ] = False,
) -> None:
    """Crée un compte de connexion / create a sign-in account."""
    from espace_sante.people import accounts

    if kind == "operator" and not with_totp:
        typer.echo(
            "espace-sante: un opérateur doit avoir un second facteur : ajoutez --totp "
            "/ an operator must have a second factor: add --totp",
            err=True,
        )
        raise typer.Exit(2)
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            typer.echo(
                "espace-sante: mot de passe vide sur l'entrée standard / empty password on stdin", err=True
            )
            raise typer.Exit(2)

    async def work(rt: Runtime) -> accounts.Created:
        return await accounts.create(
            rt, kind=kind, actor_id=actor_id, login=login, password=password, email=email, new_totp=with_totp
        )

    try:
        created = _run_with_runtime(work)
    except accounts.AccountError as exc:
        typer.echo(f"espace-sante: {exc.message}", err=True)
        raise typer.Exit(2) from None
    if not created.created:
        typer.echo(f"compte existant / existing account: {created.account_id} (inchangé / unchanged)")
        return
    typer.echo(f"compte créé / account created: {created.account_id}")
    if created.totp_secret:
        typer.echo(f"secret TOTP / TOTP secret: {created.totp_secret}")
        typer.echo("codes de secours / recovery codes:")
        for code in created.recovery_codes:
            typer.echo(f"  {code}")
        typer.echo("Ces secrets ne seront plus affichés / these secrets will not be shown again.")
    elif not password_stdin:
        typer.echo(
            "Attention : sans mot de passe ni second facteur, ce compte ne peut pas encore se connecter "
            "/ warning: without a password and a second factor this account cannot sign in yet."
        )
    else:
        typer.echo(
            "Attention : sans second facteur (--totp), le mot de passe seul ne permet pas de se connecter "
            "/ warning: without a second factor (--totp), the password alone does not sign in."
        )


@app.command("disable")
def disable(login: Annotated[str, typer.Option("--login", help="Identifiant du compte.")]) -> None:
    """Désactive un compte et ferme ses sessions / disable an account and end its sessions."""
    from espace_sante.people import accounts

    async def work(rt: Runtime) -> accounts.Account:
        return await accounts.disable(rt, login)

    try:
        account = _run_with_runtime(work)
    except accounts.AccountError as exc:
        typer.echo(f"espace-sante: {exc.message}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"compte désactivé / account disabled: {account.account_id}")


@app.command("sessions")
def list_sessions(login: Annotated[str, typer.Option("--login", help="Identifiant du compte.")]) -> None:
    """Liste les sessions ouvertes d'un compte / list an account's live sessions."""
    from espace_sante.people import accounts, sessions

    async def work(rt: Runtime) -> list[sessions.Session] | None:
        account = await accounts.find_by_login(rt, login)
        if account is None:
            return None
        return await sessions.list_for_account(rt, account.account_id)

    found = _run_with_runtime(work)
    if found is None:
        typer.echo("espace-sante: aucun compte avec cet identifiant / no account with this login", err=True)
        raise typer.Exit(2)
    if not found:
        typer.echo("aucune session ouverte / no live session")
        return
    for s in found:
        typer.echo(
            f"{s.session_id}  {s.method}  {s.acr}  ouverte / started {when(s.created_at)}  "
            f"vue / seen {when(s.last_seen_at)}  {s.ip}  {s.user_agent[:60]}"
        )
