"""`espace-sante worker`: runs the background jobs (jobs/queue.py, docs/jobs.md) until SIGTERM or Ctrl-C, which
let the running jobs finish (up to 30 s) before it stops; `--once` delivers what waits and exits."""

from __future__ import annotations

from typing import Annotated

import typer

from espace_sante.cli import common


def worker(
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=64, help="Tâches en parallèle / jobs at once.")
    ] = 4,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Traite ce qui attend puis s'arrête / process what waits, then exit (no periodic tasks).",
        ),
    ] = False,
) -> None:
    """Exécute les tâches de fond (envois des avis, cycle de vie, documents) / run the background jobs.

    Arrêt propre sur SIGTERM ou Ctrl-C : les tâches en cours se terminent / graceful stop on SIGTERM or
    Ctrl-C: running jobs finish first."""
    from espace_sante.jobs import queue
    from espace_sante.logs import configure
    from espace_sante.runtime import Runtime
    from espace_sante.spaces.notices import delivery

    settings = common.settings()
    configure(settings.log_level)

    async def work(rt: Runtime) -> None:
        with queue.on_runtime(rt, max_connections=concurrency + 2) as app:
            async with app.open_async():
                if once:
                    # What a killed worker left (its jobs stay `doing` until jobs.recover sees it silent):
                    # the notices' own states say what is left to do, so deliver from them first.
                    await delivery.deliver(rt)
                await app.run_worker_async(**queue.worker_options(rt, concurrency=concurrency, once=once))

    common.run(lambda: common.with_runtime(settings, work))
