"""No demo people outside development (issue 16 #7, ASVS 2.5.4): `espace-sante demo` and `serve --demo` load
accounts with a published password and fixed TOTP secrets, an operator among them; an instance in production
refuses both with one clear line and exit code 2, before anything is written (not even the folder's demo
marker, which would switch development mode on)."""

from __future__ import annotations

import base64
import dataclasses
import subprocess
from pathlib import Path

import pytest

from espace_sante.demo import world as demo
from espace_sante.runtime import Runtime
from tests.cli.test_commands import EXE, _env

KEY = base64.b64encode(bytes(range(32))).decode()


def production(data: Path) -> dict[str, str]:
    """Settings that pass the production check, the database unreachable: whatever the command tries to
    write would fail later, so the line it prints says whether the demo was refused before."""
    return _env() | {
        "ESPACE_SANTE_ENVIRONMENT": "production",
        "ESPACE_SANTE_DATA_DIR": str(data),
        "ESPACE_SANTE_KEK": KEY,
        "ESPACE_SANTE_AUDIT_SIGNING_KEY": KEY,
        "ESPACE_SANTE_PASSWORD_PEPPER": KEY,
        "ESPACE_SANTE_BASE_URL": "https://espace-sante.example",
        "DATABASE_URL": "postgresql://espace@127.0.0.1:9/espace",
    }


@pytest.mark.parametrize("command", [["demo"], ["serve", "--demo", "--no-migrate"]])
def test_production_refuses_the_demo_people(tmp_path: Path, command: list[str]) -> None:
    data = tmp_path / "data"
    done = subprocess.run([*EXE, *command], capture_output=True, text=True, env=production(data), timeout=60)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("espace-sante: données de démonstration refusées hors développement")
    assert "demo data refused outside development" in line and "operator" in line
    assert not (data / "DEMO").exists() and not (data / "demo-client.json").exists()


async def test_the_loader_itself_refuses_outside_development(runtime: Runtime) -> None:
    settings = runtime.settings.model_copy(update={"environment": "production"})
    with pytest.raises(demo.DemoRefused, match="mot de passe publié"):
        await demo.load(dataclasses.replace(runtime, settings=settings))
