"""What every command shares: the settings, a failure as one line on stderr with an exit code, running a
coroutine with the errors a person can cause turned into that line, and a runtime opened for one command.

Commands import the capabilities they run inside their bodies, so that `espace-sante --help` and a command
that needs little do not load the web stack, PDF fonts and crypto for every other command."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from typing import TYPE_CHECKING, TypeVar

import typer

from espace_sante.errors import FhirError
from espace_sante.settings import Settings, UnsafeSettings

if TYPE_CHECKING:
    from espace_sante.runtime import Runtime

T = TypeVar("T")


def settings() -> Settings:
    return Settings()


def fail(message: str, code: int = 2) -> typer.Exit:
    """The exit to raise: `raise fail("...")` prints `espace-sante: ...` on stderr."""
    typer.echo(f"espace-sante: {message}", err=True)
    return typer.Exit(code)


def run(func: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(func())  # type: ignore[arg-type]
    except UnsafeSettings as exc:
        raise fail(str(exc)) from None
    except FhirError as exc:
        raise fail(exc.message) from None
    except OSError as exc:
        raise fail(f"{type(exc).__name__}: {exc}") from None


async def with_runtime(
    settings: Settings, work: Callable[[Runtime], Awaitable[T]], *, migrate: bool = True
) -> T:
    from espace_sante.runtime import Runtime

    rt = await Runtime.open(settings, apply_migrations=migrate)
    try:
        return await work(rt)
    finally:
        await rt.close()


def day(text: str | None, option: str = "--as-of") -> date | None:
    """A date option (YYYY-MM-DD), or None when not given."""
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise fail(
            f"{option} : « {text} » n'est pas une date AAAA-MM-JJ / is not a YYYY-MM-DD date"
        ) from None


async def space_named(rt: Runtime, text: str) -> uuid.UUID:
    """A space named by its id (32 hex) or by its holder's INS (15 characters), as an operator on the phone
    knows it."""
    from espace_sante.errors import NotFound
    from espace_sante.spaces import lifecycle

    if len(text) == 15:
        found = await lifecycle.space_of_ins(rt, text)
        if found is None:
            raise NotFound("aucun espace pour cet INS / no space for this INS")
        return found
    try:
        return uuid.UUID(text)
    except ValueError:
        raise NotFound(f"identifiant d'espace invalide / invalid space id {text!r}") from None
