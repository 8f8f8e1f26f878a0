"""`python -m benchmarks.portal`: the holder's portal pages against a real `espace-sante serve --workers 1`.

One space, one holder, many accesses: her dashboard (`GET /`), the sharing page (`GET /mon-espace/acces`) and
the first page of her access history (`GET /mon-espace/historique`), her space's trace holding 50,000 records,
each page by 1 and 16 concurrent signed-in sessions of hers. Target (issue 18): p95 under 50 ms for each page at
16 sessions. Reported: medians of interleaved repeats (req/s, p50, p95, p99, CPU per request of the app and
PostgreSQL) and the SQL statements each page sends.

1. The data folder `benchmarks/.data/portal-t<records>/` is built once and kept unchanged (a pristine copy):
   - through the API (a `system/*.*` client): six professionals (Practitioner + PractitionerRole), the holder's
     Patient and a probe Patient, eight documents for her and two for the probe (DocumentReference + PDF by
     INS, the documents benchmark's transaction);
   - her account with the real command (`espace-sante account create --kind holder --password-stdin --totp`);
   - the professionals' access bases (`storage/access.set_basis`: a médecin traitant, four members of her care
     team, a pharmacist by her consent) on both spaces;
   - each professional reads the probe's Patient, searches and reads its documents and downloads one, through
     the API with his own token (`espace-sante token issue`): the trace records the server writes for these
     requests are the models of her history;
   - her trace: copies of those records (her Patient and documents named instead of the probe's, fresh request
     ids, times spread over the last three years, mostly her médecin traitant), appended in order with the
     trace's own `storage/audit.append_batch` (chain hashes as `audit_append` makes them: `espace-sante audit
     verify` finds the chain intact), then the same professionals' real requests on her record through the
     API (the newest records, and the notifications of their first accesses), up to `--records` in her chain;
   - `VACUUM (ANALYZE)`.
2. Each run works on a fresh copy of that folder, so that every run starts from the same chain (each page view
   appends her reading to it: over a run it grows by thousands of records, reported per run).
3. 16 sessions: the first through the real sign-in forms (`GET /connexion`, `POST /connexion` with the
   password, `POST /connexion/code` with a fresh TOTP code); the other 15 with `people/sessions.start`, the
   function the sign-in's second step calls (same assurance level and method), in this process against the same
   database: a TOTP code works once, so 16 real sign-ins would take seven minutes of TOTP steps.
4. `espace-sante serve --workers 1`, benchmarks/loadgen.py's closed-loop clients (`--loadgen`, with this module's
   scenario: client i keeps session i), `run.CpuMeter`, medians of interleaved repeats.
5. Then the statements: serve restarted with `pg_stat_statements` loaded (on the run copy only), and each page
   requested alone a few times, statistics reset before each: the top-level statements PostgreSQL ran for it
   (BEGIN and COMMIT included: each one a round trip), the fewest over the tries, with their execution times.

Figures and caveats: benchmarks/README.md, "Portal"."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from benchmarks import dataset, documents, loadgen, procs, report, run
from benchmarks.stats import median_of

SCENARIOS = ("dashboard", "sharing", "history")
PAGES = {"dashboard": "/", "sharing": "/mon-espace/acces", "history": "/mon-espace/historique"}
#: What each page shows when it is the page asked for, her data in it (besides HTTP 200).
MARKERS = {
    "dashboard": b'href="/mon-espace/historique"',
    "sharing": "équipe de soins".encode(),
    "history": b'<ol class="liste historique"',
}
DATA_ROOT = Path(__file__).parent / ".data"
#: The target of issue 18: p95 under 50 ms for each page at 16 concurrent sessions.
TARGET_P95_MS = 50.0
TARGET_CLIENTS = 16
#: Sessions opened per run (client i uses session i % SESSIONS).
SESSIONS = 16
#: Records appended per transaction while writing her trace.
BATCH = 5000
#: Each page is requested this many times alone for the statement count (the fewest is reported).
COUNT_TRIES = 5
RPPS_SYSTEM = "https://rpps.esante.gouv.fr"
G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"


@dataclass(frozen=True)
class Professional:
    family: str
    given: str
    #: TRE_G15 profession code (10 médecin, 21 pharmacien, 60 infirmier, 70 masseur-kinésithérapeute).
    profession: str
    basis: str
    #: Share of her trace's records that are his.
    weight: int


PROFESSIONALS = (
    Professional("Lefèvre", "Claire", "10", "medecin_traitant", 40),
    Professional("Nguyen", "Paul", "10", "care_team", 20),
    Professional("Moreau", "Sophie", "60", "care_team", 15),
    Professional("Garcia", "Luc", "70", "care_team", 10),
    Professional("Fontaine", "Anne", "21", "consent", 10),
    Professional("Roux", "Marc", "10", "care_team", 5),
)
#: The requests a professional makes on a record, and how often: (kind, weight).
KINDS = (("read-patient", 30), ("search-documents", 30), ("read-document", 25), ("download", 15))
DOCUMENTS = 8
PROBE_DOCUMENTS = 2
#: Real requests by the professionals on her record at the end of the build (the newest records).
LIVE_REQUESTS = 60
#: Her trace's copies are spread over this many days before the build.
SPAN_DAYS = 3 * 365
DOCUMENT_TITLES = (
    "Compte rendu de consultation de cardiologie",
    "Résultats de biologie",
    "Compte rendu d'échographie abdominale",
    "Ordonnance",
    "Lettre de liaison de sortie",
    "Compte rendu de radiographie du thorax",
    "Résultats de biologie",
    "Compte rendu de consultation",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.portal", description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=50_000, help="trace records in her space")
    p.add_argument("--quick", action="store_true", help="smoke run: 2,000 records, 3 s, one repeat")
    p.add_argument("--duration", type=float, help="measured seconds per run (default 8, quick 3)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per run (default 2, quick 1)")
    p.add_argument("--repeats", type=int, help="runs per page and clients level (default 3, quick 1)")
    p.add_argument("--clients", default=f"1,{TARGET_CLIENTS}", help="concurrency levels, comma-separated")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="subset of " + ", ".join(SCENARIOS))
    p.add_argument("--no-count", action="store_true", help="skip the statement count (pg_stat_statements)")
    p.add_argument("--data-root", type=Path, default=DATA_ROOT)
    p.add_argument("--fresh", action="store_true", help="discard the cached data folder and build it again")
    p.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)  # the load generator's process
    args = p.parse_args(argv)
    given = argv if argv is not None else sys.argv
    if args.quick and "--records" not in given:
        args.records = 2_000
    args.duration = args.duration or (3.0 if args.quick else 8.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.clients = [int(c) for c in args.clients.split(",")]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if max(args.clients) > SESSIONS:
        p.error(f"at most {SESSIONS} clients (one session each)")
    return args


# --- the load generator's scenario (run in the load generator's process) ----------------------------------------


class PortalScenario:
    """Requests for loadgen's closed-loop clients: each client (its own random generator) keeps one session."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.name: str = spec["scenario"]
        self.host = f"{spec['host']}:{spec['port']}"
        self.cookies: list[str] = spec["cookies"]
        marker = MARKERS[self.name]
        self.check: loadgen.Check = lambda body: marker in body
        self._raw_of: dict[int, bytes] = {}

    def next(self, rng: random.Random) -> loadgen.Request:
        raw = self._raw_of.get(id(rng))
        if raw is None:
            cookie = self.cookies[len(self._raw_of) % len(self.cookies)]
            raw = (
                f"GET {PAGES[self.name]} HTTP/1.1\r\nHost: {self.host}\r\nAccept: text/html\r\n"
                f"Accept-Language: fr-FR,fr;q=0.9\r\nCookie: __Host-es_session={cookie}\r\n\r\n"
            ).encode()
            self._raw_of[id(rng)] = raw
        return loadgen.Request(raw, 200, self.check)


def loadgen_main() -> None:
    """`python -m benchmarks.portal --loadgen < spec.json > result.json`: loadgen's clients and figures with
    PortalScenario in place of its scenarios."""
    import uvloop

    spec = json.loads(sys.stdin.read())
    loadgen.Scenario = PortalScenario  # type: ignore[misc,assignment]
    sys.stdout.write(json.dumps(uvloop.run(loadgen.run(spec))))


# --- building the data folder ------------------------------------------------------------------------------------


def _rpps(rng: random.Random) -> str:
    """An RPPS: 11 digits, Luhn key (as the tests' factory makes them)."""
    digits = [1, *(rng.randrange(10) for _ in range(9))]
    for check in range(10):
        total = 0
        for i, d in enumerate(reversed([*digits, check])):
            d = d * 2 if i % 2 else d
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return "".join(map(str, digits)) + str(check)
    raise AssertionError("unreachable")


def _created(response: httpx.Response, rtype: str) -> list[str]:
    """The ids of the `rtype` resources a transaction's answer created."""
    if response.status_code != 200:
        raise RuntimeError(f"transaction: HTTP {response.status_code}: {response.text[:2000]}")
    return [
        e["response"]["location"].split("/")[1]
        for e in response.json()["entry"]
        if e["response"]["location"].startswith(f"{rtype}/")
    ]


def add_professional(client: httpx.Client, who: Professional, rpps: str) -> None:
    """A Practitioner and his PractitionerRole, as the directory's feed sends them."""
    ref = f"urn:uuid:{uuid.uuid4()}"
    name: dict[str, Any] = {"family": who.family, "given": [who.given]}
    if who.profession == "10":
        name["prefix"] = ["Dr"]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": ref,
                "resource": {
                    "resourceType": "Practitioner",
                    "identifier": [{"system": RPPS_SYSTEM, "value": rpps}],
                    "name": [name],
                },
                "request": {"method": "POST", "url": "Practitioner"},
            },
            {
                "resource": {
                    "resourceType": "PractitionerRole",
                    "practitioner": {"reference": ref},
                    "code": [{"coding": [{"system": G15, "code": who.profession}]}],
                },
                "request": {"method": "POST", "url": "PractitionerRole"},
            },
        ],
    }
    _created(client.post("", content=orjson.dumps(bundle)), "Practitioner")


def add_patient(client: httpx.Client, index: int) -> tuple[str, str]:
    """A Patient (the dataset's index-th INS): (INS, Patient id)."""
    nir = dataset.nir(index)
    body = dataset.patient(nir, index)
    body["name"] = [{"use": "official", "family": "Martin", "given": ["Jeanne"]}]
    body["gender"] = "female" if nir[0] == "2" else "male"
    response = client.post("/Patient", content=orjson.dumps(body))
    if response.status_code != 201:
        raise RuntimeError(f"Patient: HTTP {response.status_code}: {response.text[:2000]}")
    return nir, str(response.json()["id"])


def add_documents(
    client: httpx.Client, nir: str, pdf: bytes, count: int, rng: random.Random
) -> list[tuple[str, str]]:
    """`count` documents (DocumentReference + PDF), subject by INS: [(DocumentReference id, Binary id)]."""
    found = []
    mark = pdf.index(documents.MARK)
    start = datetime.now(UTC) - timedelta(days=400)
    for k in range(count):
        bundle = documents.generic_bundle(nir, documents.vary(pdf, mark, rng))
        reference = bundle["entry"][0]["resource"]
        reference["description"] = DOCUMENT_TITLES[k % len(DOCUMENT_TITLES)]
        reference["date"] = (start + timedelta(days=50 * k)).isoformat(timespec="seconds")
        response = client.post("", content=orjson.dumps(bundle))
        found.append((_created(response, "DocumentReference")[0], _created(response, "Binary")[0]))
    return found


def create_account(data_dir: Path, nir: str, login: str, password: str) -> str:
    """Her account, with the real command; returns the TOTP secret it prints once."""
    out = subprocess.run(
        [sys.executable, "-m", "espace_sante", "--data-dir", str(data_dir), "account", "create", "--kind",
         "holder", "--actor-id", nir, "--login", login, "--password-stdin", "--totp"],
        input=password + "\n",
        env=procs.base_env(data_dir),
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    found = re.search(r"TOTP secret: (\S+)", out.stdout)
    if found is None:
        raise RuntimeError(f"account create printed no TOTP secret:\n{out.stdout}\n{out.stderr}")
    return found.group(1)


def professional_token(data_dir: Path, rpps: str) -> str:
    """A development token (one hour) for a professional, from the real CLI (as procs.practitioner_token)."""
    out = subprocess.run(
        [sys.executable, "-m", "espace_sante", "--data-dir", str(data_dir), "token", "issue", "--actor",
         f"practitioner:{rpps}", "--scope", "user/*.rs", "--json"],
        env=procs.base_env(data_dir),
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    return str(json.loads(out.stdout.strip().splitlines()[-1])["access_token"])


def professional_request(client: httpx.Client, kind: str, patient_id: str, document: tuple[str, str]) -> int:
    """One of a professional's requests on a record (KINDS); returns the HTTP status."""
    match kind:
        case "read-patient":
            return client.get(f"/Patient/{patient_id}").status_code
        case "search-documents":
            return client.get("/DocumentReference", params={"patient": patient_id}).status_code
        case "read-document":
            return client.get(f"/DocumentReference/{document[0]}").status_code
        case "download":
            return client.get(f"/Binary/{document[1]}", headers={"Accept": "*/*"}).status_code
    raise ValueError(kind)


async def _set_bases(db_url: str, bases: list[tuple[uuid.UUID, str, str]]) -> None:
    from espace_sante.storage import access as access_store

    conn = await asyncpg.connect(db_url)
    try:
        async with conn.transaction():
            for space_id, who, basis in bases:
                await access_store.set_basis(conn, space_id, who, basis, "benchmarks.portal")
    finally:
        await conn.close()


async def _chain_head(db_url: str, space_id: uuid.UUID) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        return int(await conn.fetchval("SELECT seq FROM audit_chain WHERE space_id = $1", space_id) or 0)
    finally:
        await conn.close()


Template = list[Any]  # the records of one request (storage.audit.Record), in chain order


async def _templates(db_url: str, probe: uuid.UUID) -> dict[tuple[str, str], Template]:
    """The records each professional's probe requests left in the probe's chain, by (RPPS, kind): the records
    of one request share its request id."""
    from espace_sante.storage import audit

    conn = await asyncpg.connect(db_url)
    try:
        groups: dict[tuple[str, str], Template] = {}
        async for stored in audit.chain(conn, probe):
            r = stored.record
            if r.actor_kind == "practitioner":
                groups.setdefault((r.actor_id, r.request_id), []).append(r)
    finally:
        await conn.close()
    by_kind: dict[tuple[str, str], Template] = {}
    for (rpps, _), records in groups.items():
        first = records[0]
        kind = {
            ("resource:read", "Patient"): "read-patient",
            ("resource:search", "DocumentReference"): "search-documents",
            ("resource:read", "DocumentReference"): "read-document",
            ("document:download", "Binary"): "download",
            ("document:download", "DocumentReference"): "download",
        }.get((first.action, first.entity_type or ""))
        if kind is not None:
            by_kind.setdefault((rpps, kind), records)
    return by_kind


def _copy(
    records: Template, when: datetime, patient: str, doc: tuple[str, str], probe: dict[str, str]
) -> Template:
    """A request's records again, at `when`, about her Patient and document `doc` instead of the probe's."""
    request_id = secrets.token_hex(8)  # as the app's middleware makes them
    mapping = {probe["patient"]: patient, probe["document"]: doc[0], probe["binary"]: doc[1]}
    return [
        replace(
            r,
            entity_id=mapping.get(r.entity_id, r.entity_id) if r.entity_id else r.entity_id,
            detail=r.detail.replace(probe["patient"], patient),
            request_id=request_id,
            recorded_at=when + timedelta(microseconds=50 * i),
        )
        for i, r in enumerate(records)
    ]


async def _write_trace(
    db_url: str,
    space_id: uuid.UUID,
    count: int,
    templates: dict[tuple[str, str], Template],
    patient: str,
    docs: list[tuple[str, str]],
    probe: dict[str, str],
    weights: dict[str, int],
    seed: int,
) -> int:
    """About `count` records in her chain (whole requests: not one more), copies of the probe's, oldest first
    over the last SPAN_DAYS, appended with storage/audit.append_batch; returns how many."""
    from espace_sante.storage import audit

    rng = random.Random(seed)
    people = sorted({rpps for rpps, _ in templates})
    shares = [weights[rpps] for rpps in people]
    end = datetime.now(UTC) - timedelta(days=1)
    start = end - timedelta(days=SPAN_DAYS)
    plan: list[Template] = []
    planned = 0
    while True:
        rpps = rng.choices(people, shares)[0]
        kinds = [(k, w) for k, w in KINDS if (rpps, k) in templates]
        kind = rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        group = templates[(rpps, kind)]
        if planned + len(group) > count:
            break
        plan.append(group)
        planned += len(group)
    step = (end - start) / max(len(plan), 1)
    conn = await asyncpg.connect(db_url)
    await conn.execute("SET synchronous_commit = off")  # a bulk load: one fsync per batch is not the point
    written = 0
    try:
        batch: list[tuple[uuid.UUID, Any]] = []
        for i, group in enumerate(plan):
            # Working hours, a request every ~half hour on average: an instant within its slot.
            when = start + step * i + step * rng.random() * 0.9
            for r in _copy(group, when, patient, docs[rng.randrange(len(docs))], probe):
                batch.append((space_id, r))
            if len(batch) >= BATCH or i == len(plan) - 1:
                async with conn.transaction():
                    await audit.append_batch(conn, batch)
                written += len(batch)
                batch = []
                print(f"  {written:,} records written", flush=True)
    finally:
        await conn.close()
    return written


async def _vacuum(db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("VACUUM (ANALYZE)")
    finally:
        await conn.close()


def build(data_dir: Path, base: str, tokens: procs.Tokens, records: int) -> dict[str, Any]:
    """Everything in section 1 of the module's docstring, on the running serve; returns the manifest."""
    started = time.monotonic()
    rng = random.Random(time.time_ns())
    db_url = procs.database_url(data_dir)
    headers = {
        "Authorization": f"Bearer {tokens.get()}",
        "Content-Type": "application/fhir+json",
        "Accept": "application/fhir+json",
    }
    people: list[tuple[Professional, str]] = []
    with httpx.Client(base_url=f"{base}/fhir", headers=headers, timeout=60) as client:
        for who in PROFESSIONALS:
            rpps = _rpps(rng)
            add_professional(client, who, rpps)
            people.append((who, rpps))
        nir, patient_id = add_patient(client, 0)
        probe_nir, probe_id = add_patient(client, 1)
        print("  professionals and patients made; documents ...", flush=True)
        pdf = documents.report_pdf()
        docs = add_documents(client, nir, pdf, DOCUMENTS, rng)
        probe_docs = add_documents(client, probe_nir, pdf, PROBE_DOCUMENTS, rng)
    space_id, probe_space = uuid.UUID(patient_id[:32]), uuid.UUID(probe_id[:32])
    login = "jeanne.martin@exemple.fr"
    password = "banc d'essai " + secrets.token_urlsafe(12)
    totp_secret = create_account(data_dir, nir, login, password)
    bases = [(s, rpps, who.basis) for who, rpps in people for s in (space_id, probe_space)]
    asyncio.run(_set_bases(db_url, bases))
    print("  account and access bases made; the professionals' tokens and probe requests ...", flush=True)
    pro_tokens = {rpps: professional_token(data_dir, rpps) for _, rpps in people}

    def as_professional(rpps: str) -> httpx.Client:
        h = {"Authorization": f"Bearer {pro_tokens[rpps]}", "Accept": "application/fhir+json"}
        return httpx.Client(base_url=f"{base}/fhir", headers=h, timeout=60)

    refused: dict[str, list[str]] = {}
    for _, rpps in people:
        with as_professional(rpps) as client:
            for kind, _ in KINDS:
                status = professional_request(client, kind, probe_id, probe_docs[0])
                if status != 200:
                    refused.setdefault(rpps, []).append(f"{kind}: {status}")
    templates = asyncio.run(_templates(db_url, probe_space))
    if not templates:
        raise RuntimeError(f"no professional request reached the probe's trace: {refused}")
    probe = {"patient": probe_id, "document": probe_docs[0][0], "binary": probe_docs[0][1]}
    live = [_pick(templates, rng, i) for i in range(LIVE_REQUESTS)]
    live_records = sum(len(templates[key]) for key in live)
    head = asyncio.run(_chain_head(db_url, space_id))
    print(f"  her trace: {records - head - live_records:,} records in bulk ...", flush=True)
    written = asyncio.run(
        _write_trace(
            db_url,
            space_id,
            records - head - live_records,
            templates,
            patient_id,
            docs,
            probe,
            {rpps: who.weight for who, rpps in people},
            rng.randrange(2**32),
        )
    )
    for rpps, kind in live:
        with as_professional(rpps) as client:
            professional_request(client, kind, patient_id, docs[rng.randrange(len(docs))])
    final = asyncio.run(_chain_head(db_url, space_id))
    print(f"  her chain: {final:,} records; VACUUM ANALYZE ...", flush=True)
    asyncio.run(_vacuum(db_url))
    return {
        "records": final,
        "records_asked": records,
        "bulk_records": written,
        "live_requests": len(live),
        "build_seconds": round(time.monotonic() - started, 1),
        "holder": {"ins": nir, "patient": patient_id, "space": str(space_id), "login": login},
        "secrets": {"password": password, "totp": totp_secret},
        "professionals": [
            {"rpps": rpps, "name": f"{w.given} {w.family}", "basis": w.basis} for w, rpps in people
        ],
        "documents": len(docs),
        "refused_in_probe": refused,
    }


def _pick(templates: dict[tuple[str, str], Template], rng: random.Random, i: int) -> tuple[str, str]:
    """The i-th live request: every professional in turn, a kind he has a template for."""
    rpps_list = sorted({rpps for rpps, _ in templates})
    rpps = rpps_list[i % len(rpps_list)]
    kinds = [(k, w) for k, w in KINDS if (rpps, k) in templates]
    return rpps, rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.chmod(0o600)  # her password and TOTP secret
    tmp.rename(path)  # a manifest exists only for a complete build


# --- a run: sessions, measurements, statements -------------------------------------------------------------------

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Browser:
    """A browser's cookies by hand: the portal's cookies are `__Host-` (Secure), which an HTTP client keeps only
    over https, and the benchmark's server listens on plain http on loopback."""

    def __init__(self, base: str) -> None:
        self.client = httpx.Client(base_url=base, timeout=60, follow_redirects=False)
        self.jar: dict[str, str] = {}

    def send(self, method: str, path: str, data: dict[str, str] | None = None) -> httpx.Response:
        self.client.cookies.clear()
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.jar.items())} if self.jar else {}
        response = self.client.request(method, path, data=data, headers=headers)
        for line in response.headers.get_list("set-cookie"):
            name, _, rest = line.partition("=")
            value = rest.split(";", 1)[0].strip('"')
            if value and "max-age=0" not in line.lower():
                self.jar[name.strip()] = value
            else:
                self.jar.pop(name.strip(), None)
        return response

    def csrf(self, response: httpx.Response) -> str:
        found = _CSRF.search(response.text)
        if response.status_code != 200 or found is None:
            raise RuntimeError(f"{response.request.url}: HTTP {response.status_code}, no form token")
        return found.group(1)


def sign_in_with_forms(base: str, login: str, password: str, totp_secret: str) -> str:
    """The two sign-in forms, as her browser fills them; returns the session cookie's secret. The code is the
    current TOTP step's: each run's folder is a fresh copy in which no step was used yet."""
    from espace_sante.people import sessions, totp

    browser = Browser(base)
    try:
        page = browser.send("GET", "/connexion")
        first = browser.send(
            "POST", "/connexion", {"csrf": browser.csrf(page), "login": login, "password": password}
        )
        if first.status_code != 303 or first.headers.get("location") != "/connexion/code":
            raise RuntimeError(f"password step: HTTP {first.status_code}: {first.text[:1000]}")
        form = browser.send("GET", "/connexion/code")
        code = totp.code_at(totp_secret, int(time.time() // totp.STEP_SECONDS))
        done = browser.send("POST", "/connexion/code", {"csrf": browser.csrf(form), "code": code})
        if done.status_code != 303 or sessions.COOKIE not in browser.jar:
            raise RuntimeError(f"code step: HTTP {done.status_code}: {done.text[:1000]}")
        return browser.jar[sessions.COOKIE]
    finally:
        browser.client.close()


async def _more_sessions(data_dir: Path, db_url: str, login: str, count: int) -> list[str]:
    """`count` sessions opened by people/sessions.start, as the sign-in's second step opens them."""
    from espace_sante.people import accounts, sessions
    from espace_sante.people.signin import ACR
    from espace_sante.runtime import Runtime
    from espace_sante.settings import Settings

    settings = Settings.model_validate({"dev": True, "data_dir": data_dir, "DATABASE_URL": db_url})
    rt = await Runtime.open(settings)
    try:
        account = await accounts.find_by_login(rt, login)
        if account is None:
            raise RuntimeError(f"no account {login}")
        out = []
        for _ in range(count):
            secret, _session = await sessions.start(
                rt, account.account_id, acr=ACR, method="password+totp", user_agent="benchmarks.portal",
                ip=procs.HOST,
            )  # fmt: skip
            out.append(secret)
        return out
    finally:
        await rt.close()


def open_sessions(base: str, data_dir: Path, manifest: dict[str, Any]) -> list[str]:
    login, saved = manifest["holder"]["login"], manifest["secrets"]
    first = sign_in_with_forms(base, login, saved["password"], saved["totp"])
    more = asyncio.run(_more_sessions(data_dir, procs.database_url(data_dir), login, SESSIONS - 1))
    return [first, *more]


def warm_up(base: str, cookies: list[str], scenarios: list[str]) -> None:
    """Each page once in each session before any measurement (templates compiled, sessions seen once)."""
    with httpx.Client(base_url=base, timeout=60) as client:
        for cookie in cookies:
            for scenario in scenarios:
                client.cookies.clear()
                response = client.get(PAGES[scenario], headers={"Cookie": f"__Host-es_session={cookie}"})
                if response.status_code != 200 or MARKERS[scenario] not in response.content:
                    raise RuntimeError(f"{scenario}: HTTP {response.status_code}: {response.text[:500]}")


#: Lines added to the run copy's postgresql.auto.conf (never the cached folder's) for the statement count: the
#: statements' statistics, and the plans of those over SLOW_MS as they ran (auto_explain, in the server's log).
SLOW_MS = 5
STATEMENT_SETTINGS = (
    "# benchmarks.portal, the run copy only\n"
    "shared_preload_libraries = 'pg_stat_statements,auto_explain'\n"
    f"auto_explain.log_min_duration = '{SLOW_MS}ms'\n"
    "auto_explain.log_analyze = on\n"
    "auto_explain.log_buffers = on\n"
)


def load_statement_modules(data_dir: Path) -> int:
    """Add STATEMENT_SETTINGS; returns the server log's size, where the count's plans will start."""
    conf = data_dir / "pg" / "postgresql.auto.conf"
    conf.write_text(conf.read_text() + STATEMENT_SETTINGS)
    log = data_dir / "pg" / "log"
    return log.stat().st_size if log.exists() else 0


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \S+ \[\d+\] ")
_PLAN = re.compile(r"LOG:  duration: ([\d.]+) ms  plan:\n(.*)", re.S)


def slow_plans(data_dir: Path, offset: int) -> list[dict[str, Any]]:
    """The plans auto_explain logged since `offset`: the last of each query text (the count requests each page
    several times: the first may read cold pages), slowest first."""
    with (data_dir / "pg" / "log").open(errors="replace") as log:
        log.seek(offset)
        text = log.read()
    entries: list[str] = []
    for line in text.splitlines():
        if _LOG_LINE.match(line):
            entries.append(line)
        elif entries:
            entries[-1] += "\n" + line
    last: dict[str, dict[str, Any]] = {}
    for entry in entries:
        found = _PLAN.search(entry)
        if found is None:
            continue
        body = found.group(2)
        query = " ".join(body.split("\n", 1)[0].strip().removeprefix("Query Text:").split())[:200]
        if query.startswith("WITH RECURSIVE typeinfo_tree"):
            continue  # asyncpg's type introspection, once per new connection: no page's own statement
        last[query] = {"duration_ms": float(found.group(1)), "query": query, "plan": body}
    return sorted(last.values(), key=lambda p: -float(p["duration_ms"]))


_STATEMENTS = (
    "SELECT query, calls, total_exec_time, rows FROM pg_stat_statements WHERE toplevel AND dbid = "
    "(SELECT oid FROM pg_database WHERE datname = current_database()) AND query NOT LIKE '%pg_stat_statements%' "
    "ORDER BY total_exec_time DESC"
)


async def count_statements(db_url: str, base: str, cookie: str, scenarios: list[str]) -> dict[str, Any]:
    """Each page requested alone COUNT_TRIES times (after one unrecorded), the statistics reset before each
    request: the top-level statements of the try with the fewest, with their execution times in PostgreSQL."""
    conn = await asyncpg.connect(db_url)
    out: dict[str, Any] = {}
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("SELECT pg_stat_statements_reset()")
        await asyncio.sleep(2)
        idle = sum(r["calls"] for r in await conn.fetch(_STATEMENTS))
        headers = {"Cookie": f"__Host-es_session={cookie}", "Accept": "text/html"}
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            for scenario in scenarios:
                tries = []
                for attempt in range(COUNT_TRIES + 1):
                    await conn.execute("SELECT pg_stat_statements_reset()")
                    client.cookies.clear()
                    response = await client.get(PAGES[scenario], headers=headers)
                    if response.status_code != 200 or MARKERS[scenario] not in response.content:
                        raise RuntimeError(f"{scenario}: HTTP {response.status_code}: {response.text[:500]}")
                    rows = await conn.fetch(_STATEMENTS)
                    if attempt:
                        tries.append(rows)
                counts = [sum(r["calls"] for r in rows) for rows in tries]
                best = tries[counts.index(min(counts))]
                out[scenario] = {
                    "statements": min(counts),
                    "statements_per_try": counts,
                    "pg_exec_ms": round(sum(r["total_exec_time"] for r in best), 3),
                    "by_statement": [
                        {
                            "calls": r["calls"],
                            "exec_ms": round(r["total_exec_time"], 3),
                            "rows": r["rows"],
                            "query": " ".join(r["query"].split())[:300],
                        }
                        for r in best
                    ],
                }
        out["idle_statements_in_2_s"] = idle
    finally:
        await conn.close()
    return out


async def _her_chain(db_url: str, space_id: uuid.UUID, ins: str) -> dict[str, int]:
    """Her chain's length and how many of its records are her own (her readings of her pages)."""
    conn = await asyncpg.connect(db_url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS records, count(*) FILTER (WHERE actor_id = $2) AS hers FROM audit_event "
            "WHERE space_id = $1",
            space_id,
            ins,
        )
        assert row is not None
        return {"records": int(row["records"]), "her_own": int(row["hers"])}
    finally:
        await conn.close()


class WaitSampler:
    """What the app's PostgreSQL connections are doing during a run: `pg_stat_activity` sampled every 50 ms
    from a thread (its own connection), tallied by state and wait event ("CPU" when active and not waiting).
    Where a page's time goes on the database side: running, waiting for a lock (the chain's head row), for
    the WAL flush of a commit, or idle in a transaction while the app works."""

    QUERY = (
        "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
        "WHERE application_name = 'espace-sante' AND backend_type = 'client backend'"
    )

    def __init__(self, db_url: str, every: float = 0.05) -> None:
        self.db_url = db_url
        self.every = every
        self.counts: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._poll()), daemon=True)

    async def _poll(self) -> None:
        conn = await asyncpg.connect(self.db_url)
        try:
            while not self._stop.is_set():
                for r in await conn.fetch(self.QUERY):
                    state = r["state"] or "?"
                    if state == "active":
                        what = f"{r['wait_event_type']}:{r['wait_event']}" if r["wait_event_type"] else "CPU"
                        self.counts[f"active {what}"] += 1
                    elif state != "idle":
                        self.counts[state] += 1
                self.samples += 1
                await asyncio.sleep(self.every)
        finally:
            await conn.close()

    def __enter__(self) -> WaitSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def busy(self) -> dict[str, float]:
        """Average number of the app's connections in each non-idle state per sample, most first."""
        n = max(self.samples, 1)
        return {k: round(v / n, 2) for k, v in self.counts.most_common()}


def run_loadgen(spec: dict[str, Any], meter: run.CpuMeter, db_url: str) -> dict[str, Any]:
    with WaitSampler(db_url) as sampler:
        result = run.run_loadgen(spec, meter, ("benchmarks.portal", "--loadgen"))
    result["pg_connections_busy"] = sampler.busy()
    return result


def summarize(runs: dict[tuple[str, int], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """benchmarks.report's medians, and CPU milliseconds per request (app, PostgreSQL)."""
    rows = report.summarize(runs)
    for row in rows:
        repeats = runs[(row["scenario"], row["clients"])]
        for r in repeats:
            rps = r["rps"] or math.nan
            r["app_cpu_ms"] = r["server_cpu_percent"] * 10 / rps
            r["pg_cpu_ms"] = r["postgres_cpu_percent"] * 10 / rps
        for key in ("app_cpu_ms", "pg_cpu_ms"):
            row[key] = round(median_of(repeats, key), 2)
        states = {k for r in repeats for k in r["pg_connections_busy"]}
        busy = {
            k: round(sum(r["pg_connections_busy"].get(k, 0.0) for r in repeats) / len(repeats), 2)
            for k in states
        }
        row["pg_connections_busy"] = dict(sorted(busy.items(), key=lambda kv: -kv[1]))
    return rows


def verdicts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for row in rows:
        if row["clients"] != TARGET_CLIENTS:
            continue
        p95 = row["p95_ms"]
        out[row["scenario"]] = {
            "target": f"p95 < {TARGET_P95_MS:.0f} ms at {TARGET_CLIENTS} sessions",
            "p95_ms": p95,
            "met": p95 < TARGET_P95_MS,
            "over_by_ms": round(max(0.0, p95 - TARGET_P95_MS), 2),
            "times_target": round(p95 / TARGET_P95_MS, 2),
        }
    return out


def table(rows: list[dict[str, Any]], statements: dict[str, Any], checks: dict[str, Any]) -> str:
    head = (
        f"{'page':<10} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6} "
        f"{'cpu ms/req app+pg':>18} {'cpu% app/pg/gen/all':>20} {'SQL':>4}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        per = f"{r['app_cpu_ms']:.2f}+{r['pg_cpu_ms']:.2f}"
        sql = statements.get(r["scenario"], {}).get("statements", "")
        lines.append(
            f"{r['scenario']:<10} {r['clients']:>7} {r['rps']:>8,.1f} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} "
            f"{r['p99_ms']:>8.2f} {r['errors']:>6} {per:>18} {report.cpu_column(r):>20} {sql!s:>4}"
        )
    lines.append("")
    for r in rows:
        if r["clients"] == TARGET_CLIENTS:
            busy = ", ".join(f"{k} {v}" for k, v in list(r["pg_connections_busy"].items())[:4])
            lines.append(f"{r['scenario']} at {r['clients']}: the app's connections, on average: {busy}")
    lines.append("")
    for scenario, check in checks.items():
        verdict = (
            "MET" if check["met"] else f"NOT MET (over by {check['over_by_ms']} ms, ×{check['times_target']})"
        )
        lines.append(f"target {scenario} {check['target']}: {check['p95_ms']} ms, {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.loadgen:
        loadgen_main()
        return 0
    signal.signal(signal.SIGTERM, run._on_sigterm)
    pristine: Path = (args.data_root / f"portal-t{args.records}").resolve()
    manifest_path = pristine / "manifest.json"
    if pristine.exists() and (args.fresh or not manifest_path.exists()):
        shutil.rmtree(pristine)  # no manifest: an interrupted build, never measured
    children: list[procs.Managed] = []
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    statements: dict[str, Any] = {}
    try:
        if not manifest_path.exists():
            pristine.mkdir(parents=True, exist_ok=True)
            print(f"building {pristine.name}: one space, {args.records:,} trace records ...", flush=True)
            port = procs.free_port()
            serve = procs.start_serve(pristine, port)
            children.append(serve)
            base = f"http://{procs.HOST}:{port}"
            made = build(pristine, base, procs.Tokens(base, procs.ensure_client(pristine)), args.records)
            serve.stop()
            children.remove(serve)
            write_manifest(manifest_path, made)
        manifest = json.loads(manifest_path.read_text())
        print(
            f"dataset: her chain {manifest['records']:,} records ({manifest['bulk_records']:,} in bulk), built in "
            f"{manifest['build_seconds']:,} s",
            flush=True,
        )
        work = pristine.with_name(pristine.name + ".run")
        if work.exists():
            shutil.rmtree(work)
        # `cp -a`: the embedded PostgreSQL's files keep their owner (its own user when run as root).
        subprocess.run(["cp", "-a", str(pristine), str(work)], check=True)
        port = procs.free_port()
        serve = procs.start_serve(work, port)
        children.append(serve)
        base = f"http://{procs.HOST}:{port}"
        db_url = procs.database_url(work)
        cookies = open_sessions(base, work, manifest)
        space_id, ins = uuid.UUID(manifest["holder"]["space"]), manifest["holder"]["ins"]
        facts = asyncio.run(documents._db_facts(db_url))
        warm_up(base, cookies, args.scenarios)
        at_start = asyncio.run(_her_chain(db_url, space_id, ins))
        print(f"{len(cookies)} sessions open; her chain {at_start['records']:,} records", flush=True)
        for repeat in range(args.repeats):
            for scenario in args.scenarios:
                for clients in args.clients:
                    chain = asyncio.run(_her_chain(db_url, space_id, ins))
                    spec = {
                        "scenario": scenario,
                        "clients": clients,
                        "host": procs.HOST,
                        "port": port,
                        "cookies": cookies,
                        "warmup": args.warmup,
                        "duration": args.duration,
                        "seed": f"{time.time_ns()}/{scenario}/{clients}/{repeat}",
                    }
                    serve.check_alive()
                    result = run_loadgen(spec, run.CpuMeter(serve.pid, work), db_url)
                    result["chain_at_start"] = chain
                    runs.setdefault((scenario, clients), []).append(result)
                    print(
                        f"  [{repeat + 1}/{args.repeats}] {scenario:<10} {clients:>2} clients: "
                        f"{result['rps']:>7,.1f} req/s  p50 {result['p50_ms']:.2f}  p95 {result['p95_ms']:.2f}  "
                        f"p99 {result['p99_ms']:.2f} ms  errors {result['errors']}  (her chain "
                        f"{chain['records']:,}, {chain['her_own']:,} her own)",
                        flush=True,
                    )
                    busy = ", ".join(f"{k} {v}" for k, v in list(result["pg_connections_busy"].items())[:4])
                    print(f"      app connections busy (average): {busy}", flush=True)
                    for sample in result["error_samples"][:2]:
                        print(f"      error: {sample}", flush=True)
        at_end = asyncio.run(_her_chain(db_url, space_id, ins))
        serve.stop()
        children.remove(serve)
        if not args.no_count:
            print("statements per page (pg_stat_statements, serve restarted with it) ...", flush=True)
            offset = load_statement_modules(work)
            serve = procs.start_serve(work, port)
            children.append(serve)
            statements = asyncio.run(
                count_statements(procs.database_url(work), base, cookies[0], args.scenarios)
            )
            statements["slow_plans"] = slow_plans(work, offset)
            for plan in statements["slow_plans"][:3]:
                print(f"  slow: {plan['duration_ms']:.1f} ms  {plan['query'][:100]}", flush=True)
    finally:
        for child in reversed(children):
            child.stop()

    rows = summarize(runs)
    checks = verdicts(rows)
    print(
        f"\nMedians of {args.repeats} run(s); cpu ms/req = CPU milliseconds per request of the app process and of "
        "PostgreSQL; cpu% = target process / PostgreSQL / load generator / whole machine (100 = one core; "
        f"{os.cpu_count()} cores); SQL = statements per page (top-level, BEGIN/COMMIT included)\n"
    )
    print(table(rows, statements, checks))
    path = report.write(
        {
            "benchmark": "portal",
            "machine": report.machine(facts["version"]),
            "settings": {
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "repeats": args.repeats,
                "clients": args.clients,
                "app_workers": 1,
                "sessions": SESSIONS,
                "sessions_by_sign_in_forms": 1,
            },
            "dataset": {
                "records": manifest["records"],
                "bulk_records": manifest["bulk_records"],
                "live_requests": manifest["live_requests"],
                "professionals": len(manifest["professionals"]),
                "documents": manifest["documents"],
                "build_seconds": manifest["build_seconds"],
                "her_chain_at_start": at_start,
                "her_chain_at_end": at_end,
                "at_start": {k: v for k, v in facts.items() if k != "version"},
            },
            "summary": rows,
            "portal": {
                "pages": PAGES,
                "checks": checks,
                "statements": statements,
            },
            "runs": [{"scenario": s, "clients": c, "runs": r} for (s, c), r in runs.items()],
        }
    )
    print(f"\nresults: {path}")
    return 1 if sum(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: child processes stopped", file=sys.stderr)
        sys.exit(130)
