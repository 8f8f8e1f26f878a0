"""The background jobs (docs/jobs.md): procrastinate on the same PostgreSQL as the data, its schema installed by
our migrations (0012_jobs.sql), run by `espace-sante worker`.

Why procrastinate: jobs live in PostgreSQL, so a job can be inserted in the transaction of the data it is about
(storage/jobs.defer: a notice and its delivery job commit together or not at all), with locks (one job per
notice), retries with backoff and periodic tasks that many workers share without running them twice.

procrastinate talks to PostgreSQL through psycopg 3 (its PsycopgConnector); the rest of the application uses
asyncpg. Both reach the same database: the worker opens our Runtime (asyncpg pool, keys, settings) for the
tasks, and procrastinate's own pool for the queue.

The tasks:
- `notices.deliver`: one e-mail notice (spaces/notices/delivery.deliver_one), deferred with the notice; a relay that
  cannot take it now raises DeliveryDeferred, retried with exponential backoff (2^n seconds, 12 attempts:
  about two hours and a quarter in all); then the periodic sweep picks the notice up;
- `notices.deliver_many`: the e-mails of one batch transaction (`notices send`, `registry import --notify`),
  deferred with them, delivered one by one as `notices.deliver` does; any the relay could not take make the
  job retried the same way, and the retry skips those delivered since;
- periodic `notices.sweep` (every 10 minutes): delivers the notices still waiting 10 minutes after they were
  recorded (a job killed with its worker, a job out of retries);
- periodic `lifecycle.run` (hourly): opens the spaces whose opposition window ended, closes and destroys what
  is due: the same code as `espace-sante lifecycle run`, idempotent and set-based;
- periodic `legacy.retry` (hourly, half an hour after it): deposits the legacy DMP documents set aside until
  their space opened or their person was registered (spaces/legacy/importer.retry);
- periodic `documents.round` (every 5 minutes): the round serve's timer runs (jobs/documents.py), idempotent;
- periodic `notices.purge` (hourly, at :47): deletes the files of letter batches handed over or past
  `letter_files_days`, and drops the texts of outbox messages delivered `outbox_body_days` ago
  (spaces/notices/letters.purge: codes in clear kept no longer than needed, docs/notices.md "Retention");
- `notifications.deliver`: one notification's e-mail (notifications/delivery.deliver_one), deferred with the event
  it tells of, retried as a notice is; periodic `notifications.sweep` (every 10 minutes, at :03) sends those
  whose job was lost;
- periodic `jobs.recover` (every 5 minutes): jobs left `doing` by a worker that stopped sending heartbeats
  (killed) are queued again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from procrastinate import App, JobContext, PsycopgConnector, RetryStrategy

from espace_sante.access.actors import DOCUMENTS
from espace_sante.audit import trace
from espace_sante.context import Context
from espace_sante.logs import get_logger
from espace_sante.mail import DeliveryDeferred
from espace_sante.notifications import delivery as notifications
from espace_sante.record import documents
from espace_sante.runtime import Runtime
from espace_sante.spaces import lifecycle
from espace_sante.spaces.legacy import importer as legacy
from espace_sante.spaces.notices import delivery, letters
from espace_sante.storage import notifications as notifications_store

log = get_logger(__name__)

#: A worker silent this long is taken for dead: its `doing` jobs are queued again (jobs.recover).
STALLED_SECONDS = 60
#: The sweep leaves younger notices to their own jobs (it is the safety net, not the main path).
SWEEP_AGE_SECONDS = 600
#: How long a stopping worker (SIGTERM, Ctrl-C) waits for its running jobs before cancelling them.
GRACEFUL_SECONDS = 30

#: Tasks registered here; the worker binds it to the runtime's database (`on_runtime`).
app = App(connector=PsycopgConnector())

DELIVERY_RETRY = RetryStrategy(max_attempts=12, exponential_wait=2, retry_exceptions={DeliveryDeferred})


def _runtime(context: JobContext) -> Runtime:
    rt = context.additional_context["runtime"]
    assert isinstance(rt, Runtime)
    return rt


@app.task(name=delivery.DELIVER_TASK, queue=delivery.QUEUE, pass_context=True, retry=DELIVERY_RETRY)
async def deliver_notice(context: JobContext, space_id: str, notice_id: str) -> str:
    """Deliver exactly this notice (its outcome is the job's result, kept in logs: no address, no text)."""
    return await delivery.deliver_one(_runtime(context), uuid.UUID(space_id), uuid.UUID(notice_id))


@app.task(name=delivery.DELIVER_MANY_TASK, queue=delivery.QUEUE, pass_context=True, retry=DELIVERY_RETRY)
async def deliver_notices(context: JobContext, emails: list[list[str]]) -> dict[str, int]:
    """Deliver the e-mails one transaction recorded, each on its own (the outcomes' counts are the result)."""
    pairs = [(uuid.UUID(s), uuid.UUID(n)) for s, n in emails]
    return await delivery.deliver_these(_runtime(context), pairs)


@app.periodic(cron="*/10 * * * *", periodic_id="sweep")
@app.task(name="notices.sweep", queue=delivery.QUEUE, pass_context=True, queueing_lock="notices.sweep")
async def sweep_notices(context: JobContext, timestamp: int) -> None:
    done = await delivery.deliver(_runtime(context), min_age_seconds=SWEEP_AGE_SECONDS)
    if done.delivered or done.failed or done.uncertain:
        log.info("notices.sweep", delivered=done.delivered, failed=done.failed, uncertain=done.uncertain)


@app.task(
    name=notifications_store.DELIVER_TASK,
    queue=notifications_store.QUEUE,
    pass_context=True,
    retry=DELIVERY_RETRY,
)
async def deliver_notification(context: JobContext, space_id: str, notification_id: str) -> str:
    """Send exactly this notification's e-mail (its outcome is the job's result: no address, no text)."""
    return await notifications.deliver_one(_runtime(context), uuid.UUID(space_id), uuid.UUID(notification_id))


@app.periodic(cron="3-59/10 * * * *", periodic_id="sweep")
@app.task(
    name="notifications.sweep",
    queue=notifications_store.QUEUE,
    pass_context=True,
    queueing_lock="notifications.sweep",
)
async def sweep_notifications(context: JobContext, timestamp: int) -> dict[str, int]:
    done = await notifications.sweep(_runtime(context))
    if done:
        log.info("notifications.sweep", **done)
    return done


@app.task(name=trace.COPY_REFUSAL_TASK, queue=trace.QUEUE, pass_context=True)
async def copy_refusal(context: JobContext, space_id: str, record: dict[str, Any]) -> bool:
    """A refusal into the refused record's chain, after the refused request's transaction (audit/trace.py)."""
    return await trace.copy_refusal(_runtime(context), uuid.UUID(space_id), record)


@app.periodic(cron="7 * * * *", periodic_id="hourly")
@app.task(name="lifecycle.run", queue="lifecycle", pass_context=True, queueing_lock="lifecycle.run")
async def lifecycle_run(context: JobContext, timestamp: int) -> dict[str, Any]:
    counts = await lifecycle.run(_runtime(context))
    result: dict[str, Any] = counts.as_json()
    log.info("lifecycle.run", **{k: v for k, v in result.items() if k != "as_of"})
    return result


@app.periodic(cron="37 * * * *", periodic_id="hourly")
@app.task(name="legacy.retry", queue="legacy", pass_context=True, queueing_lock="legacy.retry")
async def legacy_retry(context: JobContext, timestamp: int) -> dict[str, int] | None:
    """The legacy DMP documents set aside until their space opens (or their person is registered) are
    deposited once it has: half an hour after the hourly lifecycle run. A manual `legacy import` or
    `legacy retry` running at that moment holds the lock: this round is skipped, the next one catches up."""
    try:
        counts = await legacy.retry(_runtime(context))
    except legacy.LegacyRunning:
        return None
    result = counts.as_json()
    if counts.retried:
        log.info("legacy.retry", **result)
    return result


@app.periodic(cron="47 * * * *", periodic_id="hourly")
@app.task(name="notices.purge", queue=delivery.QUEUE, pass_context=True, queueing_lock="notices.purge")
async def purge_notices(context: JobContext, timestamp: int) -> dict[str, Any]:
    """The retention purge (spaces/notices/letters.purge); idempotent, so a missed hour is caught up by the next."""
    return (await letters.purge(_runtime(context))).as_json()


@app.periodic(cron="*/5 * * * *", periodic_id="round")
@app.task(name="documents.round", queue="documents", pass_context=True, queueing_lock="documents.round")
async def documents_round(context: JobContext, timestamp: int) -> None:
    ctx = Context(_runtime(context), DOCUMENTS)
    released = await documents.run_hidden_documents(ctx)
    collected = await documents.collect_orphans(ctx)
    if released.noticed or released.released or collected:
        log.info("documents.job", noticed=released.noticed, released=released.released, orphans=collected)


@app.periodic(cron="*/5 * * * *", periodic_id="recover")
@app.task(name="jobs.recover", queue="jobs", pass_context=True, queueing_lock="jobs.recover")
async def recover_stalled(context: JobContext, timestamp: int) -> int:
    """Queue again the jobs a dead worker left `doing` (procrastinate does not on its own). Safe for every task
    here: each is idempotent, and a notice's delivery state says what a dead attempt did."""
    manager = context.app.job_manager
    stalled = list(await manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_SECONDS))
    for job in stalled:
        await manager.retry_job(job)
    if stalled:
        log.info("jobs.recovered", jobs=len(stalled))
    return len(stalled)


@contextmanager
def on_runtime(rt: Runtime, *, max_connections: int = 10) -> Iterator[App]:
    """The app on the runtime's database (DATABASE_URL or the embedded PostgreSQL), for the block."""
    connector = PsycopgConnector(
        conninfo=rt.db.dsn,
        min_size=1,
        max_size=max_connections,
        kwargs={"application_name": "espace-sante-worker"},
    )
    with app.replace_connector(connector) as bound:
        yield bound


def worker_options(rt: Runtime, *, concurrency: int, once: bool) -> dict[str, Any]:
    """How `espace-sante worker` runs procrastinate's worker."""
    return {
        "concurrency": concurrency,
        "wait": not once,
        "additional_context": {"runtime": rt},
        "delete_jobs": "successful",  # 68 M notices: keep the table small, keep failures to look at
        "shutdown_graceful_timeout": GRACEFUL_SECONDS,
        "install_signal_handlers": True,
        "stalled_worker_timeout": STALLED_SECONDS,
        "name": "espace-sante",
    }
