"""A worker killed while it delivers: every notice received, none twice, as a real SMTP server counts them.

Three hundred registered persons, each with an e-mail address of their own, are notified (`notices send
--no-deliver`: the notices and their delivery jobs, no delivery). Then a real `espace-sante worker
--concurrency 4` (its own process group) delivers them to an aiosmtpd server in this process, and is killed
with SIGKILL at a random moment: after a random number of messages more, plus a random few milliseconds (the
server answers each end of DATA 2 ms late, so kills also land between the relay's acceptance and the
worker's record of it). It is started again and killed again, ROUNDS times; then `worker --once` delivers what
the killed workers left (their jobs stay `doing`; the notices' own states say what is left). A delivery job
holds five e-mails here (`notice_emails_per_job`), delivered one by one.

What the design guarantees (docs/notices.md, "Guarantees"), checked by counting what the server received
(by recipient, one address per notice; NOT by Message-ID):
- no notice is received twice;
- a notice marked delivered was received exactly once;
- a notice not delivered is marked uncertain (a worker died after handing it to the relay): none is left
  waiting, none silently skipped; an uncertain notice was received at most once (mostly once: the relay
  had it; zero when the kill fell between the commit of `handed_at` and the final "." leaving the worker).

The kills come from a seed, printed (WORKER_CRASH_SEED=<n> replays them; WORKER_CRASH_ROUNDS=<n> kills more)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest

from espace_sante.storage.embedded import DATABASE, EmbeddedPostgres, database_uri
from tests.cli.test_commands import EXE
from tests.cli.test_commands import _postgres_of as postgres_of
from tests.documents.crash_client import env, group_members
from tests.registry.test_import import person, write
from tests.worker.smtp import Recorder, SmtpServer

PEOPLE = int(os.environ.get("WORKER_CRASH_PEOPLE", "300"))
ROUNDS = int(os.environ.get("WORKER_CRASH_ROUNDS", "8"))

pytestmark = pytest.mark.slow


def _seed() -> int:
    given = os.environ.get("WORKER_CRASH_SEED")
    return int(given) if given else random.SystemRandom().randrange(2**32)


def _env(port: int) -> dict[str, str]:
    # Five e-mails per delivery job: 60 jobs, so that the jobs a killed worker leaves `doing` (until
    # jobs.recover, a minute later) never stop the next worker from having work.
    return {
        **env(),
        "ESPACE_SANTE_SMTP_HOST": "127.0.0.1",
        "ESPACE_SANTE_SMTP_PORT": str(port),
        "ESPACE_SANTE_NOTICE_EMAILS_PER_JOB": "5",
    }


def _cli(data: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*EXE, "--data-dir", str(data), *args], capture_output=True, text=True, env=_env(port), timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


class Worker:
    def __init__(self, data: Path, port: int, round_: int) -> None:
        self.log = (data / f"worker-{round_}.log").open("wb")
        self.process = subprocess.Popen(
            [*EXE, "--data-dir", str(data), "worker", "--concurrency", "4"],
            env=_env(port),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )

    def kill(self) -> None:
        pgid = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while group_members(pgid):
            assert time.monotonic() < deadline, "processes of the killed group remain"
            time.sleep(0.05)
        self.log.close()


async def _notices(data: Path) -> list[asyncpg.Record]:
    server = EmbeddedPostgres(data / "pg")
    uri = server.start()
    try:
        conn = await asyncpg.connect(database_uri(uri, DATABASE))
        try:
            return list(
                await conn.fetch(
                    "SELECT notice_id, recipient, delivered_at IS NOT NULL AS delivered, "
                    "uncertain_at IS NOT NULL AS uncertain, attempts FROM notice WHERE channel = 'email'"
                )
            )
        finally:
            await conn.close()
    finally:
        server.stop()


def test_a_killed_worker_never_sends_a_notice_twice_nor_loses_one(tmp_path: Path) -> None:
    seed = _seed()
    print(f"\nWORKER_CRASH_SEED={seed}")
    rng = random.Random(seed)
    data = tmp_path / "data"
    rows = [person(email=f"avis-{i:04d}-{rng.randrange(10**6)}@exemple.fr") for i in range(PEOPLE)]
    with SmtpServer(Recorder(delay=0.002)) as smtp:
        port = smtp.port
        _cli(data, port, "registry", "import", str(write(tmp_path / "r.csv", rows)))
        sent = json.loads(_cli(data, port, "notices", "send", "--no-deliver", "--json").stdout)
        assert sent["notified"] == PEOPLE and sent["emails"] == PEOPLE and sent["delivered"] == 0

        story = []
        try:
            for round_ in range(1, ROUNDS + 1):
                before = smtp.recorder.count()
                if before >= PEOPLE:
                    break
                more, extra = rng.randint(1, 40), rng.uniform(0, 0.004)
                worker = Worker(data, port, round_)
                deadline = time.monotonic() + 90
                while smtp.recorder.count() < min(PEOPLE, before + more):
                    if worker.process.poll() is not None:
                        raise AssertionError((data / f"worker-{round_}.log").read_text()[-4000:])
                    assert time.monotonic() < deadline, "the worker delivered nothing"
                    time.sleep(0.0005)
                time.sleep(extra)
                worker.kill()
                story.append(f"round {round_}: killed {extra * 1e3:.1f} ms after message {before + more}")
        finally:
            print("\n".join(story))
        _cli(data, port, "worker", "--once")
        received = smtp.recorder.by_recipient()
        ids = {m.recipient: m.message_id for m in smtp.recorder.messages}

    notices = asyncio.run(_notices(data))
    assert len(notices) == PEOPLE
    uncertain = [n for n in notices if n["uncertain"]]
    print(
        f"{sum(received.values())} messages received for {PEOPLE} notices; {len(uncertain)} uncertain "
        f"({sum(received[n['recipient']] for n in uncertain)} of them received); "
        f"{sum(1 for n in notices if n['attempts'] > 1)} notices tried more than once"
    )
    assert max(received.values()) == 1, [r for r, c in received.items() if c > 1]  # never twice
    assert set(received) <= {r["email"] for r in rows}
    for n in notices:
        if n["delivered"]:
            assert (
                received[n["recipient"]] == 1
                and ids[n["recipient"]] == f"<notice.{n['notice_id'].hex}@espace-sante.localhost>"
            )
        else:
            assert n["uncertain"], f"notice {n['notice_id']} left waiting"  # never silently skipped
    assert postgres_of(data) == []  # the last command stopped the embedded PostgreSQL


def test_sigterm_stops_the_worker_gracefully(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with SmtpServer() as smtp:
        row = person(email="avis-sigterm@exemple.fr")
        _cli(data, smtp.port, "registry", "import", str(write(tmp_path / "r.csv", [row])))
        _cli(data, smtp.port, "notices", "send", "--no-deliver")
        worker = Worker(data, smtp.port, 0)
        deadline = time.monotonic() + 60
        while smtp.recorder.count() < 1:
            assert worker.process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(timeout=45) == 0
        worker.log.close()
    deadline = time.monotonic() + 10
    while postgres_of(data) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert postgres_of(data) == []
