"""The pieces of the crash test (test_crash.py): a real `espace-sante serve` in a process group of its own,
killed with SIGKILL and started again on the same data folder; the CLI run as processes on that folder; and
clients that post submissions (a patient, a document, its PDF) and write down what the server acknowledged."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.cli.test_commands import EXE, _env  # the CLI tests' process helpers
from tests.cli.test_commands import _free_port as free_port
from tests.content.samples import report_pdf
from tests.documents.test_content_path import _transaction
from tests.factories import FHIR_JSON, new_nir

#: What every process of the test sees: development mode, orphans collectable at once, no timers of their own
#: (the test runs `documents collect` itself, and a seal or a collection in the background would only blur what
#: a kill interrupts).
SETTINGS = {
    "ESPACE_SANTE_DEV": "1",
    "ESPACE_SANTE_BLOB_ORPHAN_GRACE_SECONDS": "0",
    "ESPACE_SANTE_DOCUMENTS_JOB_INTERVAL_SECONDS": "0",
    "ESPACE_SANTE_AUDIT_SEAL_INTERVAL_SECONDS": "0",
    "ESPACE_SANTE_LOG_LEVEL": "warning",
}
#: Page counts of the PDFs sent (40 lines a page): from 2 KB to about 120 KB, a third of them more than one
#: 64 KiB segment of the blob encryption.
PAGES = (1, 4, 15, 40, 100, 150)
SEGMENT = 64 * 1024


def env() -> dict[str, str]:
    return {**_env(), **SETTINGS}


def cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One `espace-sante` command on the data folder, as an operator runs it (it joins the embedded
    PostgreSQL that `serve` started, or starts it and stops it again)."""
    return subprocess.run(
        [*EXE, "--data-dir", str(data), *args], capture_output=True, text=True, env=env(), timeout=120
    )


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (a zombie waiting for init to reap it holds nothing any more)."""
    members = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


class Server:
    """`espace-sante serve --workers 2` on `data`, leader of its own process group: uvicorn's supervisor and
    its workers die together. The embedded PostgreSQL is outside that group (pg_ctl detaches it with setsid),
    so it outlives a kill, and the next `serve` joins it after dropping the dead holder's pid."""

    def __init__(self, data: Path, *, workers: int = 2) -> None:
        self.data = data
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None
        self.base = ""
        self.starts = 0
        self._log: Any = None

    @property
    def log_path(self) -> Path:
        return self.data / f"serve-{self.starts}.log"

    def start(self, timeout: float = 90, *, workers: int | None = None) -> None:
        assert self.process is None
        self.starts += 1
        workers = workers or self.workers
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in _reap)
        serve = ["serve", "--port", str(port), "--workers", str(workers)]
        self.process = subprocess.Popen(
            [*EXE, "--data-dir", str(self.data), *serve],
            env=env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited with {self.process.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"serve did not become ready: {self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL to the whole group, then wait until none of its processes is left."""
        assert self.process is not None
        pgid = self.process.pid
        with contextlib.suppress(ProcessLookupError):  # already gone (a failed start)
            os.killpg(pgid, signal.SIGKILL)
        self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while group_members(pgid):
            assert time.monotonic() < deadline, f"processes of the killed group remain: {group_members(pgid)}"
            time.sleep(0.05)
        self._reap()

    def stop(self) -> int:
        """SIGTERM, as an operator stops the service: it lets go of PostgreSQL (and stops it when last)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self._reap()
        return code

    def _reap(self) -> None:
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def token(self, client: dict[str, str]) -> str:
        response = httpx.post(
            f"{self.base}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client["client_id"], client["client_secret"]),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def fhir(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.base}/fhir",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"},
            timeout=60,
        )


# --- the clients ---------------------------------------------------------------------------------------------


@dataclass
class Submission:
    """One submission sent: a new patient (its INS), a DocumentReference and the PDF as a Binary."""

    round: int
    client: int
    nir: str
    pdf: bytes
    #: The HTTP status of the answer; None when no answer came (the server died first).
    status: int | None = None
    binary_id: str | None = None
    document_id: str | None = None
    patient_id: str | None = None
    answer: str = ""

    @property
    def acknowledged(self) -> bool:
        return self.status == 200


@dataclass
class Ledger:
    """Every submission of every client, in the order they were sent."""

    submissions: list[Submission] = field(default_factory=list)
    #: What went wrong in a client itself (not a dropped connection): the test fails on it.
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    digests: set[bytes] = field(default_factory=set)

    def add(self, submission: Submission) -> None:
        with self.lock:
            self.submissions.append(submission)

    def answered(self, round_: int) -> set[int]:
        """The clients that got at least one acknowledgement in this round."""
        with self.lock:
            return {s.client for s in self.submissions if s.round == round_ and s.acknowledged}

    def distinct(self, pdf: bytes) -> bool:
        digest = hashlib.sha256(pdf).digest()
        with self.lock:
            if digest in self.digests:
                return False
            self.digests.add(digest)
            return True


def make_pdf(rng: random.Random, ledger: Ledger, pages: int | None = None) -> bytes:
    """A PDF of a random size among PAGES, never sent before (reportlab gives each file its own /ID)."""
    pages = pages or rng.choice(PAGES)
    while True:
        pdf = report_pdf(pages=pages, lines=40)
        if ledger.distinct(pdf):
            return pdf


def submit(fhir: httpx.Client, submission: Submission) -> None:
    """Post one transaction; write down the answer, or its absence (a transport error: no answer)."""
    bundle = _transaction(submission.nir, submission.pdf, "application/pdf", size=len(submission.pdf))
    hashed = base64.b64encode(hashlib.sha1(submission.pdf, usedforsecurity=False).digest()).decode()
    bundle["entry"][1]["resource"]["content"][0]["attachment"]["hash"] = hashed
    try:
        response = fhir.post("/", content=json.dumps(bundle), headers=FHIR_JSON)
    except httpx.TransportError as exc:
        submission.answer = type(exc).__name__
        return
    submission.status = response.status_code
    submission.answer = response.text[:500]
    if response.status_code == 200:
        resources = {e["resource"]["resourceType"]: e["resource"] for e in response.json()["entry"]}
        submission.binary_id = resources["Binary"]["id"]
        submission.document_id = resources["DocumentReference"]["id"]
        submission.patient_id = resources["Patient"]["id"]


def client_loop(
    server: Server, token: str, round_: int, client: int, seed: int, ledger: Ledger, stop: threading.Event
) -> None:
    """Send submissions one after the other until the server dies (or `stop`)."""
    rng = random.Random(seed)
    first = True
    try:
        with server.fhir(token) as fhir:
            while not stop.is_set():
                # Client 0 starts with a document of several segments: one of those is acknowledged each round.
                pdf = make_pdf(rng, ledger, pages=PAGES[-1] if first and client == 0 else None)
                first = False
                submission = Submission(round_, client, new_nir(), pdf)
                ledger.add(submission)
                submit(fhir, submission)
                if submission.status is None:
                    return
    except Exception as exc:
        with ledger.lock:
            ledger.errors.append(f"client {round_}.{client}: {exc!r}")


def store_files(data: Path) -> set[str]:
    """Names of the files under blobs/spaces, temporary ones included: cheap enough to poll every millisecond
    (one folder per patient, one or two files in each)."""
    names: set[str] = set()
    root = data / "blobs" / "spaces"
    try:
        spaces = list(os.scandir(root))
    except FileNotFoundError:
        return names
    for space in spaces:
        try:
            names.update(f"{space.name}/{entry.name}" for entry in os.scandir(space.path))
        except FileNotFoundError:
            continue
    return names


def wait_for_new_file(data: Path, before: set[str], *, temporary: bool, timeout: float) -> str | None:
    """Poll the store until a file that was not there appears: a temporary one (a put in progress) or an
    object (a put done, its transaction not yet committed or just committed). None after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in store_files(data) - before:
            if name.rpartition("/")[2].startswith(".") == temporary:
                return name
        time.sleep(0.0005)
    return None


def objects_in_store(data: Path) -> tuple[list[str], list[str]]:
    """The objects under blobs/spaces (keys), and the temporary files of interrupted puts."""
    root = data / "blobs"
    objects: list[str] = []
    temps: list[str] = []
    for path in sorted(root.rglob("*")) if root.exists() else ():
        if not path.is_file():
            continue
        key = path.relative_to(root).as_posix()
        (temps if path.name.startswith(".") else objects).append(key)
    return objects, temps
