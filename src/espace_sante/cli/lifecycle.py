"""`espace-sante lifecycle`: the states of spaces (spaces/lifecycle.py, docs/lifecycle.md). `run` carries out
every transition due on a date, with the same function as the periodic job; the other commands are the
operator's (the insurer's agents: an opposition by phone or at a counter, a suspension) or stand for the
holder's own requests in development."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import typer

from espace_sante import clock
from espace_sante.cli import common

lifecycle_app = typer.Typer(help="Cycle de vie des espaces / lifecycle of spaces.", no_args_is_help=True)

EVENTS = ("notify", "oppose", "request", "activate", "suspend", "resume", "close", "reopen", "erase")


@lifecycle_app.command("run")
def lifecycle_run(
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="date du calcul / run as of YYYY-MM-DD (today by default)")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='{"as_of": …, "opened": N, "closed_suspended": N, "closed_deceased": N, "destroyed": N, '
            '"of_age": N}',
        ),
    ] = False,
) -> None:
    """Exécute les changements d'état dus à une date / run every transition due as of a date.

    Ouvre les espaces dont le délai d'opposition est passé, ferme les espaces suspendus sans contestation et
    ceux des personnes décédées, détruit les espaces dont l'archivage ou la destruction demandée est échu.
    Idempotent / idempotent: a second run does nothing."""
    from espace_sante.runtime import Runtime
    from espace_sante.spaces import lifecycle

    day = common.day(as_of) or clock.today()

    async def work(rt: Runtime) -> lifecycle.RunCounts:
        return await lifecycle.run(rt, day)

    counts = common.run(lambda: common.with_runtime(common.settings(), work))
    if as_json:
        typer.echo(json.dumps({"as_of": day.isoformat(), **counts.as_json()}))
        return
    typer.echo(
        f"au {day.isoformat()} : {counts.opened} ouverts, {counts.closed_suspended} fermés après suspension, "
        f"{counts.closed_deceased} fermés après décès, {counts.destroyed} détruits, {counts.of_age} majeurs "
        f"prévenus / as of {day.isoformat()}: opened, closed after suspension, closed after death, destroyed, "
        "young adults told their space is now theirs"
    )


@lifecycle_app.command("set")
def lifecycle_set(
    space: Annotated[
        str, typer.Argument(help="espace (32 hex) ou INS du titulaire / space id or holder's INS")
    ],
    event: Annotated[str, typer.Argument(help=" | ".join(EVENTS))],
    operator: Annotated[
        str | None,
        typer.Option("--operator", help="agent qui enregistre / operator login (else: the service)"),
    ] = None,
    channel: Annotated[
        str, typer.Option("--channel", help="opposition : online | phone | counter")
    ] = "counter",
    on: Annotated[
        str | None, typer.Option("--on", help="date de l'avis / notice date (notify, erase)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help='{"space": …, "from": …, "to": …}')] = False,
) -> None:
    """Applique un changement d'état à un espace / apply one transition to a space.

    Un changement non permis est refusé (code 2) / an illegal transition is refused (exit 2)."""
    from espace_sante.access.actors import Actor
    from espace_sante.context import Context
    from espace_sante.runtime import Runtime
    from espace_sante.spaces import lifecycle

    if event not in EVENTS:
        raise common.fail(f"événement inconnu / unknown event {event!r} ({', '.join(EVENTS)})")
    day = common.day(on, "--on")

    async def work(rt: Runtime) -> tuple[uuid.UUID, str, str]:
        space_id = await common.space_named(rt, space)
        ctx = Context.system(rt)
        if operator:
            ctx = Context(rt, Actor("operator", operator, display=operator))
        kw: dict[str, Any] = {
            "reason": channel if event == "oppose" else ("holder" if event == "close" else "")
        }
        if event in ("notify", "erase"):
            kw["on"] = day
        before, after = await lifecycle.transition(ctx, space_id, event, **kw)  # type: ignore[arg-type]
        return space_id, before, after

    space_id, before, after = common.run(lambda: common.with_runtime(common.settings(), work))
    if as_json:
        typer.echo(json.dumps({"space": space_id.hex, "from": before, "to": after}))
        return
    typer.echo(f"{space_id.hex}: {before} -> {after}")


@lifecycle_app.command("show")
def lifecycle_show(
    space: Annotated[
        str, typer.Argument(help="espace (32 hex) ou INS du titulaire / space id or holder's INS")
    ],
) -> None:
    """Affiche l'état d'un espace / show a space's state."""
    from espace_sante.runtime import Runtime
    from espace_sante.spaces import lifecycle

    async def work(rt: Runtime) -> str | None:
        return await lifecycle.state(rt, await common.space_named(rt, space))

    found = common.run(lambda: common.with_runtime(common.settings(), work))
    if found is None:
        raise common.fail("espace introuvable / space not found", 1)
    fr, en = lifecycle.STATE_WORDS.get(found, (found, found))
    typer.echo(f"{found} ({fr} / {en})")
