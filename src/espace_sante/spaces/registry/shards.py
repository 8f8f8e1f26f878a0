"""`registry import --jobs N`: one registry file imported by N processes at once, one shard each.

A process runs Python on one core at a time; the import's Python (reading, checking, sealing, the codes and
notices) is most of its cost, so one process leaves a core of a machine like ours idle while PostgreSQL waits
for it. Here N processes each read the whole file but check and import only the rows of their shard
(spaces/registry/rows.py `shard_of`: by the NIR, so a person's rows stay in order in one shard), each as a run of its
own: its own checkpoint and lock (a run killed midway is resumed by the same command), its own rejects, merged
by line at the end. A child and its representative may fall in different shards: the links are recorded by
INS whatever the order (tests/registry/test_import.py runs importers at once), and with --notify a minor whose
representative was not yet known is notified by the last step, `notices send`, run here once every shard is
done (its notifying step by every process of the pool at once). The counts are the sums of the shards'; equal
to one process's (tests/registry/test_shards.py)."""

from __future__ import annotations

import asyncio
import csv
import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

from espace_sante.runtime import Runtime
from espace_sante.settings import Settings
from espace_sante.spaces import deaths
from espace_sante.spaces.notices import delivery, issue
from espace_sante.spaces.registry.importer import Counts, import_file
from espace_sante.spaces.registry.rejects import RejectsFile


def _shard(
    settings: Settings, path: Path, shard: int, shards: int, rejects: Path | None, notify: date | None
) -> Counts:
    """One shard's import, in a process of its own (the entry point of each child)."""

    async def run() -> Counts:
        rt = await Runtime.open(settings)
        try:
            with RejectsFile(rejects) as out:
                return await import_file(rt, path, rejects=out, notify=notify, shard=(shard, shards))
        finally:
            await rt.close()

    return asyncio.run(run())


def _notify_rest(settings: Settings, notify: date) -> issue.SendCounts:
    """The spaces still `registered` once every shard is imported, notified by one of the pool's processes
    (each runs this at once: `issue.notify_registered` shares the spaces out by SKIP LOCKED)."""

    async def run() -> issue.SendCounts:
        rt = await Runtime.open(settings)
        try:
            return await issue.notify_registered(rt, notify)
        finally:
            await rt.close()

    return asyncio.run(run())


def _merge_rejects(parts: list[Path], into: Path) -> None:
    """The shards' rejects as one file, by line number (as one process writes them)."""
    rows: list[dict[str, str]] = []
    for part in parts:
        if part.exists():
            with part.open(encoding="utf-8", newline="") as fh:
                rows += list(csv.DictReader(fh))
    rows.sort(key=lambda r: int(r["line"]))
    with into.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=("line", "field", "reason"))
        writer.writeheader()
        writer.writerows(rows)


def _add(total: Counts, part: Counts) -> None:
    total.read += part.read
    total.created += part.created
    total.updated += part.updated
    total.unchanged += part.unchanged
    total.rejected += part.rejected
    for name, n in part.by_field.items():
        total.by_field[name] = total.by_field.get(name, 0) + n
    if part.notices is not None:
        total.notices = total.notices or issue.SendCounts()
        total.notices.add(part.notices)


async def import_sharded(
    rt: Runtime,
    path: Path,
    *,
    jobs: int,
    rejects: Path | None = None,
    notify: date | None = None,
    deliver: bool = False,
) -> Counts:
    """Import `path` with `jobs` processes (one shard each) on `rt`'s database, then, with `notify`, notify
    what is still `registered` (`notices send`, delivering the e-mails when `deliver`). A shard's failure
    (a file that is not a registry, a run of the same shard already going on) is raised once all have
    stopped; what the other shards committed stays, and the same command resumes."""
    loop = asyncio.get_running_loop()
    # The parent's settings (keys, peppers) on the parent's database by URL: the children join it, none of
    # them starts or stops an embedded server.
    settings = rt.settings.model_copy(update={"database_url": rt.db.dsn})
    total = Counts(notices=issue.SendCounts() if notify is not None else None)
    rest = issue.SendCounts()  # what the last step, after the shards, notified and delivered
    with tempfile.TemporaryDirectory(prefix="registry-shards-") as tmp:
        parts = [Path(tmp) / f"rejects-{k}.csv" for k in range(jobs)]
        # "spawn": a fresh interpreter per shard, with none of this process's event loop, pool or threads.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = [
                loop.run_in_executor(
                    pool, _shard, settings, path, k, jobs, parts[k] if rejects else None, notify
                )
                for k in range(jobs)
            ]
            done = await asyncio.gather(*futures, return_exceptions=True)
            failed = next((d for d in done if isinstance(d, BaseException)), None)
            if failed is not None:
                raise failed
            for part in done:
                assert isinstance(part, Counts)
                _add(total, part)
            if rejects is not None:
                _merge_rejects(parts, rejects)
            if notify is not None and total.notices is not None:
                # `notices send`, its notifying step spread over the pool: the minors whose representative
                # was in another shard are a few per cent of the rows, and notifying one reads and decrypts
                # two or three identities, a single process's work for a fifth of the run before.
                await deaths.close_deceased(rt, notify)
                sending = [loop.run_in_executor(pool, _notify_rest, settings, notify) for _ in range(jobs)]
                for sent in await asyncio.gather(*sending):
                    rest.notified += sent.notified
                    rest.emails += sent.emails
                    rest.letters += sent.letters
                    rest.skipped += sent.skipped
    if notify is not None and total.notices is not None:
        if deliver:
            out = await delivery.deliver(rt)
            rest.delivered, rest.failed, rest.uncertain = out.delivered, out.failed, out.uncertain
        total.notices.add(rest)
    return total
