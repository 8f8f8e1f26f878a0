"""Issue 6's story, as a newcomer follows it in the README ("A country's worth of spaces"), with real
`espace-sante` processes on one fresh data folder: a 10,000-person registry file imported; the notices in
the outbox and the letters' PDFs; one person opposes by phone and gets a proof; another activates early on
the served activation pages (code from her e-mail, password and authenticator app) and signs in; the clock
moves past the window and the spaces open; a hospital deposits a report in a third person's space, which is
closed (the holder reads nothing) and reopened (everything is back), then erased and destroyed by the run
90 days later, after which the encrypted rows and the content object copied before can no longer be
decrypted with anything the system still has.

One `serve` runs for the whole story, so every command shares its embedded PostgreSQL (as while `make run`
serves). Step timings are printed (`-s`)."""

from __future__ import annotations

import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pikepdf
import pyotp
import pytest

from espace_sante import clock
from espace_sante.crypto import DecryptionFailed, blob_aad, open_, resource_aad
from espace_sante.runtime import Runtime
from espace_sante.settings import Settings
from espace_sante.storage import blobcrypt
from tests.accounts.helpers import csrf_of
from tests.activation.pdftext import pdf_text
from tests.cli.test_commands import _free_port as free_port
from tests.cli.test_commands import wait_ready

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
EXE = Path(sys.executable).parent / "espace-sante"
ROWS = 10_000
PASSWORD = "girafe violette sous la pluie 47"
INS = "urn:oid:1.2.250.1.213.1.4.8"
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


def _env() -> dict[str, str]:
    """A clean environment (nothing of the test session's settings) in development mode, as `make run`'s is:
    `token issue` needs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESPACE_SANTE_") and k != "DATABASE_URL"}
    env["PYTHONWARNINGS"] = "ignore"
    env["ESPACE_SANTE_DEV"] = "1"
    return env


class Story:
    """The data folder, the commands a newcomer types, and the time each step took."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.timings: dict[str, float] = {}

    def cli(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(EXE), "--data-dir", str(self.data), *args],
            capture_output=True,
            text=True,
            env=_env(),
            cwd=self.folder,
            timeout=600,
        )
        if ok:
            assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-4000:])
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def state(self, ins: str) -> str:
        return self.cli("lifecycle", "show", ins).stdout.split()[0]

    def timed(self, name: str) -> _Timer:
        return _Timer(self, name)


class _Timer:
    def __init__(self, story: Story, name: str) -> None:
        self.story, self.name = story, name

    def __enter__(self) -> None:
        self.start = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        self.story.timings[self.name] = time.monotonic() - self.start


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Story, str]]:
    """`espace-sante serve` on a fresh folder for the whole story; stopped (with its PostgreSQL) at the end."""
    story = Story(tmp_path)
    port = free_port()
    started = time.monotonic()
    server = subprocess.Popen(
        [str(EXE), "--data-dir", str(story.data), "serve", "--port", str(port)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(server, base, timeout=90)
        story.timings["0. serve ready (PostgreSQL started, migrated)"] = time.monotonic() - started
        yield story, base
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
    assert server.returncode == 0


class Browser:
    """A browser on the served app. Its cookies are `__Host-` ones (Secure): a browser sends them to
    http://127.0.0.1, a secure context, but Python's cookie jar keeps Secure cookies for https only, so they
    are kept here, as the browser keeps them."""

    def __init__(self, base: str) -> None:
        self.client = httpx.AsyncClient(base_url=base, follow_redirects=False, timeout=30)
        self.cookies: dict[str, str] = {}

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = await self.client.request(method, path, headers=headers, **kw)
        for header in response.headers.get_list("set-cookie"):
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or not morsel.value.strip('"'):
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return response

    async def get(self, path: str) -> httpx.Response:
        return await self.request("GET", path)

    async def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        return await self.request("POST", path, data=data)


def _people(registry: Path, rejects: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The imported rows (rejected lines left out), and the adults the story picks from, as the README's
    one-liner picks them: born before 2000, alive, with an e-mail, not a minor."""
    rejected = {r["line"] for r in csv.DictReader(rejects.open(encoding="utf-8"))}
    rows = [
        r
        for n, r in enumerate(csv.DictReader(registry.open(encoding="utf-8")), start=2)
        if str(n) not in rejected
    ]
    adults = [
        r
        for r in rows
        if r["birth_date"] < "2000" and r["email"] and not r["death_date"] and not r["representative_1_nir"]
    ]
    return rows, adults


def _name(row: dict[str, str]) -> str:
    return f"{row['first_names']} {row['last_name']}"


async def _activate_early(base: str, code: str, born: date, login: str) -> None:
    """The activation pages as the person goes through them: the code of her e-mail and her birth date, then a
    password and an authenticator app (its first code), her recovery codes, and a first sign-in."""
    async with Browser(base) as browser:
        home = await browser.get("/activation")
        assert home.status_code == 200 and 'href="/activation/activer"' in home.text
        form = await browser.get("/activation/activer")
        assert form.status_code == 200
        done = await browser.post(
            "/activation/activer",
            {
                "csrf": csrf_of(form.text),
                "code": code,
                "jour": str(born.day),
                "mois": str(born.month),
                "annee": str(born.year),
            },
        )
        assert done.status_code == 303 and done.headers["location"] == "/activation/compte", done.text
        page = await browser.get("/activation/compte")
        assert page.status_code == 200 and "est activé" in page.text
        found = re.search(r'class="secret"><code>([A-Z2-7 ]+)</code>', page.text)
        assert found, "the page shows the authenticator app's secret"
        secret = found.group(1).replace(" ", "")
        app = pyotp.TOTP(secret)
        created = await browser.post(
            "/activation/compte",
            {
                "csrf": csrf_of(page.text),
                "login": login,
                "password": PASSWORD,
                "confirm": PASSWORD,
                "code": app.now(),
            },
        )
        assert created.status_code == 200, created.text
        assert "Votre compte est créé" in created.text
        assert len(re.findall(r"<li><code>([^<]+)</code></li>", created.text)) == 10  # recovery codes

        # The first sign-in proves the new means work (the next step's code: each code works once).
        signin = await browser.get("/connexion")
        first = await browser.post(
            "/connexion", {"csrf": csrf_of(signin.text), "login": login, "password": PASSWORD}
        )
        assert first.status_code == 303, first.text
        second = await browser.get("/connexion/code")
        signed = await browser.post(
            "/connexion/code", {"csrf": csrf_of(second.text), "code": app.at(time.time() + 30)}
        )
        assert signed.status_code == 303, signed.text


def _submission(nir: str) -> bytes:
    """The README's French ITI-65 example (a discharge summary, PDF), for this person."""
    text = (ROOT / "tests" / "data" / "pdsm" / "iti65-fr.json").read_text(encoding="utf-8")
    return text.replace("294037512000591", nir).encode()


async def _open_runtime(data: Path) -> Runtime:
    """The data folder as the service sees it (its KEK, its blob store), joined to serve's PostgreSQL. A fresh
    one each time: a key store caches unwrapped keys for a minute."""
    return await Runtime.open(Settings(data_dir=data, database_url=None, dev=True))


async def _encrypted_rows(data: Path, space: str) -> tuple[list[Any], list[tuple[Any, bytes]]]:
    """A copy of the space's encrypted resource bodies and document objects, as a backup would hold them."""
    rt = await _open_runtime(data)
    try:

        async def fetch(conn: Any) -> tuple[list[Any], list[Any]]:
            bodies = await conn.fetch(
                "SELECT resource_type, resource_id, version_id, key_version, body FROM resource_version "
                "WHERE space_id = $1 AND body IS NOT NULL",
                space,
            )
            blobs = await conn.fetch("SELECT blob_id, key_version FROM blob WHERE space_id = $1", space)
            return list(bodies), list(blobs)

        bodies, blobs = await rt.db.read("t_story_rows", fetch)
        objects = [
            (b, (rt.settings.blob_path / "spaces" / space / str(b["blob_id"])).read_bytes()) for b in blobs
        ]
        return bodies, objects
    finally:
        await rt.close()


async def _decryptable(data: Path, space: str, bodies: list[Any], objects: list[tuple[Any, bytes]]) -> int:
    """How many of these saved ciphertexts the system can still decrypt, with the keys its key store gives."""
    rt = await _open_runtime(data)
    readable = 0
    try:
        for r in bodies:
            try:
                aead = await rt.db.read("t_story_key", rt.keys.version, uuid.UUID(space), r["key_version"])
                aad = resource_aad(
                    space, r["resource_type"], r["resource_id"], r["version_id"], r["key_version"]
                )
                open_(aead, r["body"], aad)
                readable += 1
            except DecryptionFailed:
                pass
        for b, content in objects:
            try:
                aead = await rt.db.read("t_story_key", rt.keys.version, uuid.UUID(space), b["key_version"])
                blobcrypt.decrypt(aead, content, blob_aad(space, str(b["blob_id"]), b["key_version"]))
                readable += 1
            except DecryptionFailed:
                pass
    finally:
        await rt.close()
    return readable


async def _left(data: Path, space: str) -> dict[str, int]:
    rt = await _open_runtime(data)
    try:

        async def fetch(conn: Any) -> dict[str, int]:
            return {
                table: int(await conn.fetchval(f"SELECT count(*) FROM {table} WHERE space_id = $1", space))
                for table in ("space_key", "resource", "resource_version", "blob", "binary_content", "notice")
            }

        counts = await rt.db.read("t_story_left", fetch)
        counts["objects"] = len(list((rt.settings.blob_path / "spaces" / space).glob("*")))
        return counts
    finally:
        await rt.close()


async def test_a_countrys_worth_of_spaces_from_registry_to_destruction(served: tuple[Story, str]) -> None:
    story, base = served
    today = clock.today()

    # 1. The insurer's registry file: 10,000 made-up people; the import makes their spaces.
    with story.timed("1. registry sample + import"):
        sample = story.json("registry", "sample", "--rows", str(ROWS), "--out", "reg.csv")
        imported = story.json("registry", "import", "reg.csv", "--rejects", "rejects.csv")
    assert sample["rows"] == imported["read"] == ROWS
    assert imported["rejected"] == sample["bad"] > 0
    assert imported["created"] == ROWS - imported["rejected"]
    rejects = (story.folder / "rejects.csv").read_text(encoding="utf-8").splitlines()
    assert rejects[0] == "line,field,reason" and len(rejects) == 1 + imported["rejected"]
    rows, adults = _people(story.folder / "reg.csv", story.folder / "rejects.csv")
    assert len(rows) == imported["created"]
    opposer, activator, holder = adults[0], adults[1], adults[2]
    assert story.state(opposer["nir"]) == "registered"

    # 2. The notices: e-mails in the local outbox, letters as PDFs for the mailing house.
    with story.timed("2. notices send"):
        sent = story.json("notices", "send", "--as-of", today.isoformat())
    # Everyone created is notified but the people the registry says died: their spaces are closed first.
    deceased = sum(1 for r in rows if r["death_date"])
    assert deceased and sent["notified"] == imported["created"] - deceased
    assert sent["emails"] == sent["delivered"] and sent["failed"] == sent["uncertain"] == 0
    assert sent["emails"] + sent["letters"] > sent["notified"]  # minors: one notice per representative
    with story.timed("2. outbox list"):
        outbox = story.json("outbox", "list", "--with-body", "--limit", "100000")
    assert len(outbox) == sent["emails"]
    assert not any(m["to"] == "" for m in outbox)
    with story.timed("2. letters build"):
        built = story.json("letters", "build", "--out", "letters")
    assert built["letters"] == sent["letters"]
    folder = story.folder / "letters"
    pages = 0
    for name in built["files"]:
        with pikepdf.open(folder / name) as pdf:
            assert len(pdf.pages) <= 500
            pages += len(pdf.pages)
    assert pages == built["letters"]
    with (folder / built["manifest"]).open(encoding="utf-8", newline="") as manifest:
        lines = list(csv.DictReader(manifest))
    assert len(lines) == built["letters"]
    assert set(lines[0]) == {"file", "page", "name", "address", "postal_code", "city"}
    assert {line["file"] for line in lines} == set(built["files"])
    assert story.json("letters", "build", "--out", "letters")["letters"] == 0  # never built twice

    # 3. An adult opposes by phone: an operator records it and prints the proof.
    with story.timed("3. opposition by phone + proof"):
        opposed = story.json(
            "lifecycle",
            "set",
            opposer["nir"],
            "oppose",
            "--channel",
            "phone",
            "--operator",
            "agent.dupont@demo.localhost",
        )
        proof = story.json("opposition", "proof", opposer["nir"], "--out", "proof.pdf")
    assert (opposed["from"], opposed["to"]) == ("notified", "opposed")
    text = pdf_text((story.folder / "proof.pdf").read_bytes())
    assert _name(opposer) in text and proof["reference"] in text and "par téléphone" in text
    assert story.cli("opposition", "check", opposer["nir"], proof["reference"]).returncode == 0

    # 4. Another adult activates their space early on the activation pages, with the code of their e-mail.
    [mail] = [
        m for m in outbox if m["to"] == activator["email"] and "votre espace a été créé" in m["subject"]
    ]
    assert _name(activator) in mail["body"]
    code = re.search(r"Code d'activation confidentiel : ([0-9A-Z-]+)", mail["body"])
    assert code is not None
    with story.timed("4. early activation on the pages"):
        await _activate_early(
            base, code.group(1), date.fromisoformat(activator["birth_date"]), activator["email"]
        )
        assert story.state(activator["nir"]) == "active"

    # 5. Before the window ends a hospital cannot deposit: the space is not open.
    client = story.json("client", "create", "--name", "Logiciel de l'hôpital", "--scope", "system/*.cruds")
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:

        async def hospital() -> dict[str, str]:
            got = await http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(client["client_id"], client["client_secret"]),
            )
            assert got.status_code == 200, got.text
            return {**FHIR_JSON, "Authorization": f"Bearer {got.json()['access_token']}"}

        early = await http.post("/fhir", content=_submission(holder["nir"]), headers=await hospital())
        # A notified space is out of professionals' reach: its Patient answers as if it did not exist.
        assert early.status_code == 422 and "no resource matches" in early.text, early.text
        assert story.state(holder["nir"]) == "notified"

        # 6. The clock moves past the 42-day window: the run opens every space still notified.
        with story.timed("6. lifecycle run (opening)"):
            run = story.json("lifecycle", "run", "--as-of", (today + timedelta(days=42)).isoformat())
        # Opened: everyone notified but the opposed and the already active; the dead were closed before.
        assert run["opened"] == sent["notified"] - 2
        assert run["closed_deceased"] == 0
        for ins, state in ((opposer["nir"], "opposed"), (activator["nir"], "active")):
            assert story.state(ins) == state
        chosen = random.Random(6).choice(
            [r for r in rows if not r["death_date"] and r not in (opposer, activator, holder)]
        )
        assert story.state(chosen["nir"]) == "open"
        dead = next(r for r in rows if r["death_date"])
        assert story.state(dead["nir"]) == "closed"

        # 5. (continued) Now the hospital deposits a discharge summary in the third person's open space.
        with story.timed("5. deposit (ITI-65) in an open space"):
            deposit = await http.post("/fhir", content=_submission(holder["nir"]), headers=await hospital())
        assert deposit.status_code == 200, deposit.text
        entries = deposit.json()["entry"]
        assert [e["response"]["status"] for e in entries] == ["201 Created"] * 3
        document = next(
            e["resource"] for e in entries if e["resource"]["resourceType"] == "DocumentReference"
        )
        paths = [f"/fhir/{document['subject']['reference']}", f"/fhir/DocumentReference/{document['id']}"]

        # 7. Closed, the space answers "not found" even to its holder; reopened, everything is back.
        token = story.json("token", "issue", "--actor", f"holder:{holder['nir']}", "--scope", "patient/*.rs")
        as_holder = {"Authorization": f"Bearer {token['access_token']}", "Accept": "application/fhir+json"}
        for path in paths:
            assert (await http.get(path, headers=as_holder)).status_code == 200, path
        with story.timed("7. close + reopen"):
            closed = story.json("lifecycle", "set", holder["nir"], "close")
            statuses = [(await http.get(p, headers=as_holder)).status_code for p in paths]
            reopened = story.json("lifecycle", "set", holder["nir"], "reopen")
        assert (closed["from"], closed["to"]) == ("open", "closed") and statuses == [404, 404]
        assert (reopened["from"], reopened["to"]) == ("closed", "active")
        for path in paths:
            assert (await http.get(path, headers=as_holder)).status_code == 200, path

        # 8. Destroyed: a copy of the space's encrypted rows and content object, kept as a backup would
        # keep them, can no longer be decrypted with anything the system has.
        space = str(uuid.UUID(closed["space"]))
        with story.timed("8. erase + run 90 days later + proofs"):
            bodies, objects = await _encrypted_rows(story.data, space)
            assert len(bodies) >= 3 and len(objects) == 1  # Patient, List, DocumentReference, Binary
            assert await _decryptable(story.data, space, bodies, objects) == len(bodies) + 1
            erased = story.json("lifecycle", "set", holder["nir"], "erase")
            assert (erased["from"], erased["to"]) == ("active", "closed")
            later = story.json("lifecycle", "run", "--as-of", (today + timedelta(days=90)).isoformat())
            assert later["destroyed"] == 1
            assert (await http.get(paths[0], headers=as_holder)).status_code == 404
            assert await _decryptable(story.data, space, bodies, objects) == 0
            assert await _left(story.data, space) == dict.fromkeys(
                ("space_key", "resource", "resource_version", "blob", "binary_content", "notice", "objects"),
                0,
            )
            # Only its tombstone is left: the state, found by the space's id or by the registry's INS link.
            assert story.state(closed["space"]) == "destroyed"
            assert story.state(holder["nir"]) == "destroyed"
            verified = story.json("documents", "verify")
        assert verified["missing"] == verified["orphans"] == verified["unreadable"] == []

    print("\n\nprovisioning story, 10,000 people (seconds):")
    for name, seconds in story.timings.items():
        print(f"  {name:<48} {seconds:6.1f}")
