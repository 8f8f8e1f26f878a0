"""No orphan blobs and no documents without content after a crash.

A real `espace-sante serve` (two uvicorn workers, the embedded PostgreSQL) takes submissions from four clients
at once, each a new patient with a PDF of its own (a third of them more than one 64 KiB segment), and is killed
with SIGKILL, its whole process group, at a random moment; then it is started again on the same data folder,
takes more submissions and is killed again. The embedded PostgreSQL lives outside the killed group (pg_ctl
detaches it): each new `serve` joins it after dropping the dead holder's pid, and a transaction cut short by the
kill is rolled back when its connection drops, as after any crash of the application.

A kill at a random time mostly lands in what takes longest (reading the request, checking the PDF); the
windows that matter here are short (the put, then the commit a few milliseconds later). So each round has its
trigger: a random delay, the moment the store shows a put in progress (a temporary file), or a random few
milliseconds after it shows a put done.

Afterwards:
- every acknowledged submission (a 200) is whole: its DocumentReference reads, and its Binary's content is the
  bytes that were sent;
- no submission is half there: for each patient (searched by INS) there is the document and its content, or
  nothing at all, whether or not the answer reached the client; every Binary of the database belongs to one;
- `documents verify` before collection finds no object that is neither recorded nor announced by an upload
  intent (the intent is committed before the put); `documents collect` deletes what the kills left behind;
  `documents verify --deep` then finds everything clean: as many objects in the store as blobs recorded, each
  decrypting to its size, no pending intent, no Binary without content; and no other file is left in the store.

The triggers' order, the delays and the documents' sizes come from a seed, printed (CRASH_SEED=<n> replays
them; the server's own timing still varies from run to run). CRASH_ROUNDS=<n> kills more times."""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.test_commands import _postgres_of as postgres_of
from tests.documents.crash_client import (
    SEGMENT,
    Ledger,
    Server,
    Submission,
    cli,
    client_loop,
    objects_in_store,
    store_files,
    wait_for_new_file,
)
from tests.factories import INS

ROUNDS = int(os.environ.get("CRASH_ROUNDS", "3"))
CLIENTS = 4
TRIGGERS = ("time", "during-put", "after-put")
#: Random delay of a "time" kill, once every client had one submission acknowledged.
KILL_AFTER = (0.0, 1.5)
#: After a put is seen done: before its transaction commits, while it answers, or in the next submissions.
AFTER_PUT = (0.0, 0.03)


def _seed() -> int:
    given = os.environ.get("CRASH_SEED")
    return int(given) if given else random.SystemRandom().randrange(2**32)


# --- the rounds ----------------------------------------------------------------------------------------------


def _kill_when(trigger: str, server: Server, rng: random.Random, ledger: Ledger, round_: int) -> str:
    """Wait until every client had a submission acknowledged (both workers warm, a document of several
    segments among them), then for the moment this round's trigger chooses; kill the server, say when."""
    deadline = time.monotonic() + 60
    while len(ledger.answered(round_)) < CLIENTS:
        assert not ledger.errors, ledger.errors
        assert time.monotonic() < deadline, f"not every client was answered: {server.log()}"
        time.sleep(0.01)
    if trigger == "time":
        delay = rng.uniform(*KILL_AFTER)
        time.sleep(delay)
        server.kill()
        return f"killed {delay:.2f} s later"
    during = trigger == "during-put"
    extra = 0.0 if during else rng.uniform(*AFTER_PUT)
    seen = wait_for_new_file(server.data, store_files(server.data), temporary=during, timeout=5)
    time.sleep(extra)
    server.kill()
    if seen is None:
        return f"killed after 5 s without seeing a put ({trigger})"
    name = seen.rpartition("/")[2]
    if during:
        left = "left behind" if (server.data / "blobs" / "spaces" / seen).exists() else "renamed before"
        return f"killed during the put of {name} ({left})"
    return f"killed {extra * 1e3:.0f} ms after the put of {name[:13]}"


def _crash_rounds(server: Server, seed: int, ledger: Ledger) -> tuple[list[str], dict[str, str]]:
    rng = random.Random(seed)
    triggers = list(TRIGGERS)
    rng.shuffle(triggers)
    triggers = [triggers[i % len(triggers)] for i in range(ROUNDS)]
    # The feed's client, registered by the operator before the first start (this also makes the database).
    made = cli(server.data, "client", "create", "--name", "flux", "--scope", "system/*.*", "--json")
    assert made.returncode == 0, made.stderr
    client: dict[str, str] = json.loads(made.stdout)
    story = []
    for round_, trigger in enumerate(triggers, start=1):
        started = time.monotonic()
        server.start()
        ready = time.monotonic() - started
        token = server.token(client)
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=client_loop,
                args=(server, token, round_, n, rng.randrange(2**32), ledger, stop),
                name=f"client-{round_}-{n}",
            )
            for n in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        when = _kill_when(trigger, server, rng, ledger, round_)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
            assert not thread.is_alive(), f"{thread.name} still waits for a killed server"
        assert not ledger.errors, ledger.errors
        sent = [s for s in ledger.submissions if s.round == round_]
        story.append(
            f"round {round_} (ready in {ready:.1f} s): {when}; {len(sent)} sent, "
            f"{sum(s.acknowledged for s in sent)} acknowledged, {sum(s.status is None for s in sent)} unanswered"
        )
        print(story[-1])
    return story, client


# --- what is left ----------------------------------------------------------------------------------------------


def _search(fhir: httpx.Client, path: str, **params: str) -> list[dict[str, Any]]:
    """Every resource of a search, page after page."""
    found: list[dict[str, Any]] = []
    response = fhir.get(path, params={"_count": "200", **params})
    while True:
        assert response.status_code == 200, response.text
        bundle = response.json()
        found += [e["resource"] for e in bundle.get("entry", ())]
        after = [link["url"] for link in bundle.get("link", ()) if link["relation"] == "next"]
        if not after:
            return found
        response = fhir.get(after[0])


def _by_ins(fhir: httpx.Client, path: str, param: str, nirs: list[str]) -> list[dict[str, Any]]:
    """Resources found by the patients' INS (`identifier`, or the chain `patient.identifier`), thirty INS to a
    search (a parameter's values stay under the server's 2000 characters)."""
    found = []
    for i in range(0, len(nirs), 30):
        found += _search(fhir, path, **{param: ",".join(f"{INS}|{nir}" for nir in nirs[i : i + 30])})
    return found


def _binary_of(document: dict[str, Any]) -> str:
    (content,) = document["content"]
    url = content["attachment"]["url"]
    match = re.search(r"(?:^|/)Binary/([^/?]+)$", url)
    assert match, f"DocumentReference/{document['id']}: attachment.url {url!r} is not a Binary"
    return match.group(1)


def _content(fhir: httpx.Client, binary_id: str) -> bytes:
    response = fhir.get(f"/Binary/{binary_id}", headers={"Accept": "*/*"})
    assert response.status_code == 200, f"Binary/{binary_id}: {response.status_code} {response.text[:300]}"
    return response.content


def _check_documents(fhir: httpx.Client, submissions: list[Submission], where: str) -> set[str]:
    """Every acknowledged document whole, every other one whole or absent, nothing in the database that no
    submission sent. Returns the ids of the Binaries in the database."""
    for s in submissions:
        if s.acknowledged:
            read = fhir.get(f"/DocumentReference/{s.document_id}")
            assert read.status_code == 200, f"{where}: acknowledged DocumentReference/{s.document_id} gone"
            assert _binary_of(read.json()) == s.binary_id, where
            assert _content(fhir, str(s.binary_id)) == s.pdf, f"{where}: Binary/{s.binary_id} not as sent"

    nirs = [s.nir for s in submissions]
    assert len(set(nirs)) == len(nirs)
    patients: dict[str, list[str]] = {nir: [] for nir in nirs}
    nir_of: dict[str, str] = {}
    for patient in _by_ins(fhir, "/Patient", "identifier", nirs):
        (nir,) = [i["value"] for i in patient["identifier"] if i["system"] == INS]
        patients[nir].append(patient["id"])
        nir_of[f"Patient/{patient['id']}"] = nir
    documents: dict[str, list[dict[str, Any]]] = {nir: [] for nir in nirs}
    for document in _by_ins(fhir, "/DocumentReference", "patient.identifier", nirs):
        documents[nir_of[document["subject"]["reference"]]].append(document)

    committed: set[str] = set()
    for s in submissions:
        what = f"{where}; submission {s.round}.{s.client} (status {s.status}, {s.answer!r})"
        if s.acknowledged:
            assert patients[s.nir] == [s.patient_id], what
            assert [d["id"] for d in documents[s.nir]] == [s.document_id], what
        else:  # the kill came before the commit or after it: all of the submission is there, or nothing
            assert len(patients[s.nir]) == len(documents[s.nir]) <= 1, f"{what}: half there"
        for document in documents[s.nir]:
            binary = _binary_of(document)
            assert _content(fhir, binary) == s.pdf, f"{what}: Binary/{binary} is not what was sent"
            committed.add(binary)

    # Nothing else in the database (this data folder is the test's own).
    binaries = _search(fhir, "/Binary")
    assert sorted(b["id"] for b in binaries) == sorted(committed), f"{where}: Binaries no submission holds"
    assert len(_search(fhir, "/Patient")) == len(committed), f"{where}: patients without their document"
    assert len(_search(fhir, "/DocumentReference")) == len(committed), where
    return committed


def _verify(data: Path, *args: str) -> dict[str, Any]:
    done = cli(data, "documents", "verify", "--json", *args)
    assert done.returncode in (0, 1), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert (done.returncode == 0) == report["clean"], report
    return report


@pytest.mark.slow
def test_killing_the_server_during_submissions_leaves_every_acknowledged_document_whole_and_nothing_else(
    tmp_path: Path,
) -> None:
    seed = _seed()
    print(f"crash test seed {seed} (replay with CRASH_SEED={seed})")
    data = tmp_path / "data"
    data.mkdir()
    server = Server(data)
    ledger = Ledger()
    try:
        story, client = _crash_rounds(server, seed, ledger)
        where = f"seed {seed}; " + "; ".join(story)
        submissions = ledger.submissions
        acknowledged = [s for s in submissions if s.acknowledged]
        assert any(len(s.pdf) > SEGMENT for s in acknowledged), where
        # A submission answered at all is answered 200: a kill shows as a dropped connection, never as an error.
        refused = [(s.status, s.answer) for s in submissions if s.status not in (None, 200)]
        assert not refused, f"{where}: answers other than 200: {refused[:3]}"

        # What the kills left, before anyone collects: every object in the store is a recorded blob or has its
        # upload intent, committed before the put, by which the collector finds it.
        before = _verify(data)
        assert before["orphans"] == [], (
            f"{where}: objects with neither a blob row nor an upload intent: {before}"
        )
        assert before["missing"] == [] and before["binaries_without_content"] == [], f"{where}: {before}"

        server.start(workers=1)  # looking, not crashing: one process starts sooner
        with server.fhir(server.token(client)) as fhir:
            committed = _check_documents(fhir, submissions, where)
            collected = cli(data, "documents", "collect")
            assert collected.returncode == 0, collected.stderr
            report = _verify(data, "--deep")
            objects, temporary = objects_in_store(data)
            for s in acknowledged:  # collection took nothing a document needs
                assert _content(fhir, str(s.binary_id)) == s.pdf, (
                    f"{where}: Binary/{s.binary_id} after collect"
                )
        summary = (
            f"{where}; {len(submissions)} sent, {len(acknowledged)} acknowledged, {len(committed)} in the "
            f"database, {before['pending_uploads']} upload intents left by the kills, "
            f"{collected.stdout.split()[0]} collected, {len(objects)} objects in the store"
        )
        print(summary)

        assert server.stop() == 0
        deadline = time.monotonic() + 10
        while postgres_of(data) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert postgres_of(data) == [], "the last serve stops the embedded PostgreSQL it shared"

        assert report["clean"], f"{summary}: {report}"
        assert report["pending_uploads"] == 0, f"{summary}: {report}"
        assert report["blobs"] == report["content_checked"] == len(committed), f"{summary}: {report}"
        assert len(objects) == report["blobs"], f"{summary}: {objects} in the store, {report}"
        # A put cut short leaves its temporary file (LocalBlobStore writes `.tmp-*`, then renames it over the
        # key): ciphertext of a submission that never committed, which `list` and so `verify` never show.
        assert temporary == [], (
            f"{summary}: files of interrupted puts left in the store after `documents collect`, which "
            f"`documents verify` does not see (clean: {report['clean']}): {temporary}"
        )
    finally:
        if server.process is not None:
            server.kill()
        if postgres_of(data):  # a command run alone stops the server it joined when it is the last one
            cli(data, "migrate")
