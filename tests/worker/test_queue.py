"""The job queue (jobs/queue.py, storage/jobs.py): procrastinate's schema shipped in our migrations, delivery
jobs deferred in the notice's own transaction, e-mails through a real SMTP server with a stable Message-ID,
retries, the uncertain state, and the periodic lifecycle job."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import date
from importlib import resources
from pathlib import Path

import asyncpg
import pytest

from espace_sante import clock
from espace_sante.context import Context
from espace_sante.jobs import queue
from espace_sante.runtime import Runtime
from espace_sante.spaces import lifecycle
from espace_sante.spaces.notices import delivery, issue
from espace_sante.storage import jobs as jobs_store
from espace_sante.storage.db import Conn
from tests.notices.test_notices import mail, space_of
from tests.registry.test_import import person, run, write
from tests.worker.smtp import Recorder, SmtpServer

BEGIN, END = "-- BEGIN procrastinate schema.sql\n", "-- END procrastinate schema.sql\n"


def test_the_migration_ships_the_installed_procrastinate_schema() -> None:
    """An upgrade of procrastinate changes its schema.sql: this fails, and the upgrade ships a migration."""
    shipped = (Path(queue.__file__).parents[1] / "storage" / "migrations" / "0012_jobs.sql").read_text()
    installed = resources.files("procrastinate.sql").joinpath("schema.sql").read_text(encoding="utf-8")
    between = shipped.split(BEGIN, 1)[1].split(END, 1)[0]
    assert between.rstrip("\n") == installed.rstrip("\n")


def test_the_tasks_and_their_schedules() -> None:
    names = set(queue.app.tasks)
    assert {
        delivery.DELIVER_TASK,
        delivery.DELIVER_MANY_TASK,
        "notices.sweep",
        "lifecycle.run",
        "documents.round",
        "legacy.retry",
        "jobs.recover",
    } <= names
    crons = {p.task.name: p.cron for p in queue.app.periodic_registry.periodic_tasks.values()}
    assert crons["lifecycle.run"] == "7 * * * *" and crons["notices.sweep"] == "*/10 * * * *"
    assert crons["legacy.retry"] == "37 * * * *"  # after the lifecycle run has opened spaces
    assert queue.app.tasks[delivery.DELIVER_TASK].retry_strategy is queue.DELIVERY_RETRY
    assert queue.app.tasks[delivery.DELIVER_MANY_TASK].retry_strategy is queue.DELIVERY_RETRY


async def jobs_for(runtime: Runtime, notice_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    async def q(conn: Conn) -> list[asyncpg.Record]:
        return list(
            await conn.fetch(
                "SELECT task_name, queue_name, lock, queueing_lock, args, status FROM procrastinate_jobs "
                "WHERE queueing_lock = ANY($1::text[]) ORDER BY id",
                [f"notice:{n}" for n in notice_ids],
            )
        )

    return await runtime.db.read("t", q)


async def notice_ids(runtime: Runtime, space: uuid.UUID) -> list[uuid.UUID]:
    async def q(conn: Conn) -> list[uuid.UUID]:
        rows = await conn.fetch(
            "SELECT notice_id FROM notice WHERE space_id = $1 AND channel = 'email'", space
        )
        return [r["notice_id"] for r in rows]

    return await runtime.db.read("t", q)


class Rollback(Exception):
    pass


async def test_the_delivery_job_commits_with_the_notice_or_not_at_all(
    runtime: Runtime, tmp_path: Path
) -> None:
    row = person(email=mail())
    await run(runtime, write(tmp_path / "r.csv", [row]))
    space = await space_of(runtime, row["nir"])
    ctx = Context.system(runtime)
    seen: list[uuid.UUID] = []

    async def notify_then_fail(conn: Conn) -> None:
        assert await issue.notify_in(conn, ctx, space, clock.today()) == ["email"]
        seen.extend(
            r["notice_id"]
            for r in await conn.fetch("SELECT notice_id FROM notice WHERE space_id = $1", space)
        )
        [job] = await conn.fetch(
            "SELECT status FROM procrastinate_jobs WHERE queueing_lock = $1", f"notice:{seen[0]}"
        )  # visible inside the transaction
        assert job["status"] == "todo"
        raise Rollback

    with pytest.raises(Rollback):
        await runtime.db.interaction("t", notify_then_fail)
    assert seen and await jobs_for(runtime, seen) == []  # rolled back: no job, no notice
    assert await notice_ids(runtime, space) == []
    assert await lifecycle.state(runtime, space) == "registered"

    assert await runtime.db.interaction("t", issue.notify_in, ctx, space, clock.today()) == ["email"]
    [notice] = await notice_ids(runtime, space)
    [job] = await jobs_for(runtime, [notice])
    assert job["task_name"] == delivery.DELIVER_TASK and job["queue_name"] == delivery.QUEUE
    assert job["lock"] == job["queueing_lock"] == f"notice:{notice}" and job["status"] == "todo"
    assert job["args"] == f'{{"space_id": "{space}", "notice_id": "{notice}"}}'

    # One waiting job per notice: a second one is refused by procrastinate's own unique index.
    with pytest.raises(asyncpg.UniqueViolationError):
        await runtime.db.interaction("t", jobs_store.defer, [delivery.delivery_job(space, notice)])


async def delivery_jobs(runtime: Runtime, notice_ids: list[uuid.UUID]) -> list[tuple[str, list[uuid.UUID]]]:
    """The waiting delivery jobs naming any of these notices: (task, the notices it delivers)."""

    async def q(conn: Conn) -> list[asyncpg.Record]:
        return list(
            await conn.fetch(
                "SELECT task_name, args FROM procrastinate_jobs WHERE status = 'todo' "
                "AND task_name = ANY($1::text[]) ORDER BY id",
                [delivery.DELIVER_TASK, delivery.DELIVER_MANY_TASK],
            )
        )

    wanted, found = set(notice_ids), []
    for job in await runtime.db.read("t", q):
        args = json.loads(job["args"]) if isinstance(job["args"], str) else job["args"]
        named = (
            [uuid.UUID(n) for _, n in args["emails"]] if "emails" in args else [uuid.UUID(args["notice_id"])]
        )
        if wanted & set(named):
            found.append((job["task_name"], named))
    return found


async def test_send_defers_the_emails_jobs_in_their_batch_transaction(
    runtime: Runtime, tmp_path: Path
) -> None:
    """A batch's e-mails get one delivery job per `notice_emails_per_job` of them (a lone e-mail its own),
    each e-mail in exactly one job, deferred with the notices."""
    rows = [person(email=mail()) for _ in range(7)] + [person(email="")]
    await run(runtime, write(tmp_path / "r.csv", rows))
    settings = runtime.settings.model_copy(update={"notice_emails_per_job": 2})
    counts = await issue.send(dataclasses.replace(runtime, settings=settings), batch=8, deliver_now=False)
    assert counts.notified >= 8 and counts.delivered == 0
    ids = [n for r in rows for n in await notice_ids(runtime, await space_of(runtime, r["nir"]))]
    assert len(ids) == 7
    jobs = await delivery_jobs(runtime, ids)
    assert sorted(n for _, named in jobs for n in named if n in ids) == sorted(ids)
    assert all(len(named) <= 2 for _, named in jobs)
    assert any(task == delivery.DELIVER_MANY_TASK for task, _ in jobs)


def with_smtp(runtime: Runtime, server: SmtpServer) -> Runtime:
    settings = runtime.settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": server.port})
    return dataclasses.replace(runtime, settings=settings)


async def state_of(runtime: Runtime, notice: uuid.UUID) -> asyncpg.Record:
    async def q(conn: Conn) -> asyncpg.Record:
        found = await conn.fetchrow(
            "SELECT delivered_at, handed_at, uncertain_at, attempts, error, body, sealed FROM notice WHERE notice_id = $1",
            notice,
        )
        assert found is not None
        return found

    return await runtime.db.read("t", q)


async def test_smtp_delivery_of_exactly_that_notice_with_a_stable_message_id(
    runtime: Runtime, tmp_path: Path
) -> None:
    refused, fine = person(email=mail()), person(email=mail())
    await run(runtime, write(tmp_path / "r.csv", [refused, fine]))
    await issue.send(runtime, deliver_now=False)
    [bad] = await notice_ids(runtime, await space_of(runtime, refused["nir"]))
    [good] = await notice_ids(runtime, await space_of(runtime, fine["nir"]))
    recorder = Recorder(refuse={refused["email"]})
    with SmtpServer(recorder) as server:
        rt = with_smtp(runtime, server)
        assert await delivery.deliver_one(rt, await space_of(runtime, fine["nir"]), good) == "delivered"
        assert await delivery.deliver_one(rt, await space_of(runtime, fine["nir"]), good) == "already"
        [message] = recorder.messages
        assert (
            message.recipient == fine["email"]
            and message.message_id == f"<notice.{good.hex}@espace-sante.localhost>"
        )
        assert "Hello" in message.text and (await state_of(runtime, good))["sealed"] is None

        # A refusal after the end of DATA: not accepted, so it stays to deliver (the job retries it).
        with pytest.raises(delivery.DeliveryDeferred):
            await delivery.deliver_one(rt, await space_of(runtime, refused["nir"]), bad)
        state = await state_of(runtime, bad)
        assert state["delivered_at"] is None and state["handed_at"] is None and state["uncertain_at"] is None
        assert state["error"].startswith("SMTPDataError 554") and state["attempts"] == 1
        recorder.refuse.clear()
        assert await delivery.deliver_one(rt, await space_of(runtime, refused["nir"]), bad) == "delivered"
        assert recorder.by_recipient() == {fine["email"]: 1, refused["email"]: 1}

    # The relay is down: nothing handed, a retryable failure.
    down = with_smtp(runtime, server)
    row = person(email=mail())
    await run(runtime, write(tmp_path / "r2.csv", [row]))
    await issue.send(runtime, deliver_now=False)
    [late] = await notice_ids(runtime, await space_of(runtime, row["nir"]))
    with pytest.raises(delivery.DeliveryDeferred):
        await delivery.deliver_one(down, await space_of(runtime, row["nir"]), late)
    assert (await state_of(runtime, late))["handed_at"] is None


async def test_a_notice_handed_by_a_dead_attempt_is_never_sent_again(
    runtime: Runtime, tmp_path: Path
) -> None:
    row = person(email=mail())
    await run(runtime, write(tmp_path / "r.csv", [row]))
    await issue.send(runtime, deliver_now=False)
    space = await space_of(runtime, row["nir"])
    [notice] = await notice_ids(runtime, space)

    async def handed(conn: Conn) -> None:  # what a worker killed right after the final "." leaves
        await conn.execute("UPDATE notice SET handed_at = now(), attempts = 1 WHERE notice_id = $1", notice)

    await runtime.db.interaction("t", handed)
    with SmtpServer() as server:
        rt = with_smtp(runtime, server)
        assert await delivery.deliver_one(rt, space, notice) == "uncertain"
        assert await delivery.deliver_one(rt, space, notice) == "already"
        assert (await delivery.deliver(rt)).failed == 0
        assert server.recorder.by_recipient()[row["email"]] == 0
    state = await state_of(runtime, notice)
    assert state["uncertain_at"] is not None and state["delivered_at"] is None


async def test_the_jobs_deliver_and_the_periodic_lifecycle_job_opens_spaces(
    runtime: Runtime, tmp_path: Path
) -> None:
    online, paper = person(email=mail()), person(email="")
    await run(runtime, write(tmp_path / "r.csv", [online, paper]))
    # Notified long ago: the opposition window has ended.
    await issue.send(runtime, date(2000, 1, 1), deliver_now=False)
    spaces = [await space_of(runtime, r["nir"]) for r in (online, paper)]
    [notice] = await notice_ids(runtime, spaces[0])
    with queue.on_runtime(runtime) as app:
        async with app.open_async():
            await queue.lifecycle_run.defer_async(timestamp=0)
            options = queue.worker_options(runtime, concurrency=2, once=True)
            await app.run_worker_async(queues=["lifecycle"], **options)
            await app.run_worker_async(queues=[delivery.QUEUE], **options)
    for space in spaces:
        assert await lifecycle.state(runtime, space) == "open"
    assert (await state_of(runtime, notice))["delivered_at"] is not None  # the job wrote the outbox
    assert await jobs_for(runtime, [notice]) == []  # a successful job is deleted
