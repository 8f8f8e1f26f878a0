"""The command line as an operator uses it: real processes on a real data folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.factories import patient

EXE = [sys.executable, "-m", "espace_sante"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESPACE_SANTE_") and k != "DATABASE_URL"}
    env["PYTHONWARNINGS"] = "ignore"
    return env


def run(data: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*EXE, "--data-dir", str(data), *args], capture_output=True, text=True, env=_env(), timeout=120
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(server: subprocess.Popen[str], base: str, timeout: float = 60) -> None:
    """Until `serve` answers /readyz (its PostgreSQL started, migrations applied); fails with its stderr if it
    exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        assert time.monotonic() < deadline, "serve did not become ready"
        time.sleep(0.3)


def _postgres_of(data: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(data / "pg") in " ".join(cmdline):
            found.append(proc)
    return found


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


def test_migrate_then_again_changes_nothing(folder: Path) -> None:
    assert "0001_foundation" in run(folder, "migrate").stdout
    assert run(folder, "migrate").stdout.strip() == "schema is current"
    assert _postgres_of(folder) == []  # a command that started the server stops it


def test_demo_is_idempotent(folder: Path) -> None:
    first = run(folder, "demo").stdout
    second = run(folder, "demo").stdout
    assert "0 already there" not in first
    assert second.startswith("demo data: 0 created")


def test_client_create_prints_exactly_the_credentials_in_json(folder: Path) -> None:
    out = json.loads(
        run(
            folder, "client", "create", "--name", "Logiciel du cabinet", "--scope", "system/*.*", "--json"
        ).stdout
    )
    assert set(out) == {"client_id", "client_secret"}
    assert len(out["client_secret"]) >= 40


def test_a_bad_scope_is_a_readable_error(folder: Path) -> None:
    done = run(folder, "client", "create", "--name", "x", "--scope", "tout/*.*", check=False)
    assert done.returncode == 2
    assert "unsupported scope: tout/*.*" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_shares_its_database_with_other_commands_and_stops_it_on_sigterm(folder: Path) -> None:
    """An operator serves the API, registers a client from another terminal while it runs, a feed uses it;
    then stopping the service stops its PostgreSQL too: no process is left behind."""
    port = _free_port()
    server = subprocess.Popen(
        [*EXE, "--data-dir", str(folder), "serve", "--port", str(port), "--workers", "2"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(server, base)
        creds = json.loads(
            run(folder, "client", "create", "--name", "flux", "--scope", "system/*.cruds", "--json").stdout
        )
        token = httpx.post(
            f"{base}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(creds["client_id"], creds["client_secret"]),
        ).json()["access_token"]
        created = httpx.post(
            f"{base}/fhir/Patient",
            json=patient(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
        )
        assert created.status_code == 201, created.text
        assert _postgres_of(folder)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert server.returncode == 0
    deadline = time.monotonic() + 10
    while _postgres_of(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _postgres_of(folder) == []
    stderr = server.stderr.read() if server.stderr else ""
    lines = [line for line in stderr.splitlines() if line.startswith("{")]
    assert lines and all(json.loads(line) for line in lines)  # JSON logs
    assert "Bearer" not in stderr and "Martin" not in stderr  # no token, no medical content


def test_rotating_the_key_encryption_key_from_the_command_line(folder: Path) -> None:
    """An operator rotates the KEK: new key configured, old one kept as previous, `keys rewrap`; afterwards the
    old key can be dropped and the demo data still reads (`demo` reads every demo resource back)."""
    import base64

    old = (folder / "kek.key").read_text().strip()
    new = base64.b64encode(os.urandom(32)).decode()
    env = {"ESPACE_SANTE_KEK": new, "ESPACE_SANTE_KEK_PREVIOUS": old}
    done = subprocess.run(
        [*EXE, "--data-dir", str(folder), "keys", "rewrap"],
        capture_output=True,
        text=True,
        env={**_env(), **env},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[0]) >= 2  # the directory's key and the demo spaces' keys
    again = subprocess.run(
        [*EXE, "--data-dir", str(folder), "demo"],
        capture_output=True,
        text=True,
        env={**_env(), "ESPACE_SANTE_KEK": new},
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("demo data: 0 created")
