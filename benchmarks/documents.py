"""`python -m benchmarks.documents`: the shared medical record (IHE MHD) against a real `espace-sante serve`.

1. A data folder `benchmarks/.data/documents-p<patients>-d<per patient>/` (kept between runs) with, by default,
   100,000 Patients and 10 DocumentReferences each (1,000,000 documents), written in bulk by SQL COPY the way
   the registry import creates spaces (storage/provision.py `create_spaces`: data keys, encrypted Patients,
   index rows, first audit records), then each space's documents: encrypted bodies, the index rows
   `searchparams.extract` gives, and one audit record each, chained as `audit_append` would. The documents are
   copies of one submitted through the API (the PDSm example when it exists, so they are what the server
   stores), with their own ids, uniqueIds, dates and types; they have no Binary rows or blobs (the search never
   reads them).
2. `espace-sante serve --workers 1` on it (embedded PostgreSQL), a `system/*.*` client (benchmarks/procs.py).
3. Measured, each at 1 and 16 clients, repeats interleaved and medians reported as `benchmarks.run` does:
   - `submit`: ITI-65, a transaction Bundle of one DocumentReference and its Binary (a distinct ~100 KB PDF in
     base64 each time), the subject by INS (`Patient?identifier=urn:oid:1.2.250.1.213.1.4.8|<INS>`);
   - `submit-pdsm`: the same from the PDSm example `tests/data/pdsm/iti65-fr.json` (SubmissionSet List,
     DocumentReference, Binary) with fresh uniqueIds, entryUUIDs, size and hash (when the file exists);
   - `search`: ITI-67, `DocumentReference?patient.identifier=<INS>&status=current` for random patients;
   - `retrieve`: ITI-68, `GET Binary/<id>` with `Accept: */*` of documents deposited by `submit*`;
   - `retrieve-range`: the same with `Range: bytes=0-65535`.

The load generator is benchmarks/loadgen.py's, run as its own process (`--loadgen`) with the scenarios here.
Figures, profile and the sizing they lead to: benchmarks/README.md, "Documents"."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import json
import math
import multiprocessing
import os
import random
import shutil
import signal
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import orjson

from benchmarks import dataset, loadgen, procs, report, run
from benchmarks.stats import median_of
from espace_sante.fhir.identifiers import INS_NIR

SCENARIOS = ("submit", "submit-pdsm", "search", "retrieve", "retrieve-range")
DATA_ROOT = Path(__file__).parent / ".data"
PDSM_EXAMPLE = Path(__file__).parent.parent / "tests" / "data" / "pdsm" / "iti65-fr.json"
#: The PDF's target size, and the bytes a Range request asks for (one blob segment).
PDF_BYTES = 100 * 1024
RANGE_BYTES = 65536
#: Twenty digits changed in place in every submitted copy of the PDF (an uncompressed content stream of its first
#: page, so the file stays valid and its cross-reference offsets right): each document is a distinct file, and the
#: per-space de-duplication of identical content never turns a submission into a no-op.
MARK = b"00000000000000000000"
#: Spaces written per transaction while loading.
LOAD_BATCH = 2000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.documents", description=__doc__.splitlines()[0])
    p.add_argument("--patients", type=int, default=100_000)
    p.add_argument("--per-patient", type=int, default=10, help="documents per patient in the search dataset")
    p.add_argument("--quick", action="store_true", help="smoke run: 2,000 patients, 3 s, one repeat")
    p.add_argument("--duration", type=float, help="measured seconds per run (default 8, quick 3)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per run (default 2, quick 1)")
    p.add_argument("--repeats", type=int, help="runs per scenario and clients level (default 3, quick 1)")
    p.add_argument("--clients", default="1,16", help="concurrency levels, comma-separated")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="subset of " + ", ".join(SCENARIOS))
    p.add_argument("--load-workers", type=int, default=2, help="processes writing the dataset")
    p.add_argument("--data-root", type=Path, default=DATA_ROOT)
    p.add_argument("--fresh", action="store_true", help="discard the cached data folder and build it again")
    p.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)  # the load generator's process
    args = p.parse_args(argv)
    given = argv if argv is not None else sys.argv
    if args.quick and "--patients" not in given:
        args.patients = 2_000
    args.duration = args.duration or (3.0 if args.quick else 8.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.clients = [int(c) for c in args.clients.split(",")]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return args


# --- the document ---------------------------------------------------------------------------------------------


#: The words of the report's text.
WORDS = (
    "patient", "hospitalisé", "pour", "dyspnée", "fébrile", "évolution", "favorable", "sous",
    "antibiothérapie", "probabiliste", "relais", "per", "os", "traitement", "de", "sortie", "surveillance",
    "clinique", "biologique", "radiographie", "thoracique", "opacité", "alvéolaire", "lobe", "inférieur",
    "droit", "fonction", "rénale", "conservée", "créatinine", "CRP", "leucocytes", "amoxicilline", "acide",
    "clavulanique",
)  # fmt: skip


def _ecg_jpeg(width: int, height: int, quality: int) -> bytes:
    """A scanned-looking ECG strip (grid, three leads, scanner noise): what makes a real report weigh 100 KB."""
    from PIL import Image, ImageDraw

    rng = random.Random(7)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    for x in range(0, width, 14):
        draw.line([(x, 0), (x, height)], fill=215 if x % 70 else 170)
    for y in range(0, height, 14):
        draw.line([(0, y), (width, y)], fill=215 if y % 70 else 170)
    for lead in range(3):
        base = height * (lead * 2 + 1) // 6
        points = []
        for x in range(width):
            t = (x % 160) / 160
            v = 0.0
            if 0.10 < t < 0.18:
                v = 10 * math.sin((t - 0.10) / 0.08 * math.pi)
            elif 0.25 < t < 0.27:
                v = -8
            elif 0.27 < t < 0.30:
                v = 70
            elif 0.30 < t < 0.32:
                v = -15
            elif 0.45 < t < 0.60:
                v = 18 * math.sin((t - 0.45) / 0.15 * math.pi)
            points.append((x, base - v + rng.gauss(0, 1.2)))
        draw.line(points, fill=0, width=2)
    pixels = image.load()
    assert pixels is not None
    for _ in range(width * height // 10):
        x, y = rng.randrange(width), rng.randrange(height)
        value = pixels[x, y]
        assert isinstance(value, int)  # a greyscale ("L") image
        pixels[x, y] = max(0, min(255, value + rng.randint(-40, 40)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _report_pdf(quality: int) -> bytes:
    """A four-page compte rendu d'hospitalisation (reportlab, compressed text, an ECG strip on page 2), and a
    document reference line on page 1 in an uncompressed stream holding MARK."""
    import pikepdf
    from reportlab import rl_config
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    rl_config.useA85 = 0  # binary image data, as most producers write it
    rng = random.Random(1)
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=A4, pageCompression=1)
    c.setTitle("Compte rendu d'hospitalisation")
    c.setAuthor("Hôpital Édouard Herriot")
    ecg = ImageReader(io.BytesIO(_ecg_jpeg(1400, 420, quality)))
    for page in range(4):
        c.setFont("Helvetica-Bold", 13)
        c.drawString(56, 800, "Hôpital Édouard Herriot — Service de médecine interne")
        c.setFont("Helvetica", 9)
        c.drawString(56, 786, "5 place d'Arsonval, 69003 Lyon — FINESS 690781810")
        y = 760
        if page == 1:
            c.drawImage(ecg, 56, 480, width=480, height=144)
            y = 460
        c.setFont("Helvetica", 10)
        while y > 60:
            c.drawString(56, y, " ".join(rng.choice(WORDS) for _ in range(12)).capitalize() + ".")
            y -= 13
        c.drawString(500, 30, f"{page + 1}/4")
        c.showPage()
    c.save()
    with pikepdf.open(io.BytesIO(out.getvalue())) as pdf:
        font = next(iter(pdf.pages[0].Resources.Font.keys()))
        line = b"q BT " + font.encode() + b" 8 Tf 56 40 Td (Reference du document : " + MARK + b") Tj ET Q"
        pdf.pages[0].contents_add(pikepdf.Stream(pdf, line), prepend=False)
        saved = io.BytesIO()
        pdf.save(saved, compress_streams=False, stream_decode_level=pikepdf.StreamDecodeLevel.none)
    data = saved.getvalue()
    assert data.count(MARK) == 1
    return data


def report_pdf(target: int = PDF_BYTES) -> bytes:
    """The benchmark's PDF, its JPEG quality chosen so that the file is closest to `target` bytes."""
    best = min((abs(len(pdf) - target), pdf) for pdf in (_report_pdf(q) for q in (35, 45, 55, 65, 75)))
    return best[1]


def vary(pdf: bytes, offset: int, rng: random.Random) -> bytes:
    """A distinct copy of the PDF: its reference line's twenty digits drawn at random."""
    digits = str(rng.randrange(10**20)).zfill(20).encode()
    return pdf[:offset] + digits + pdf[offset + len(MARK) :]


def _oid(rng: random.Random) -> str:
    """A fresh uniqueId: urn:oid:2.25.<128-bit integer> (an OID made from a UUID, as DMP software does)."""
    return f"urn:oid:2.25.{rng.getrandbits(128)}"


def generic_bundle(nir: str, pdf: bytes) -> dict[str, Any]:
    """DocumentReference + Binary, the subject by INS: tests/documents/test_content_path.py's transaction."""
    subject = {"reference": f"Patient?identifier={INS_NIR}|{nir}"}
    doc, binary = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": doc,
                "resource": {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "subject": subject,
                    "content": [{"attachment": {"contentType": "application/pdf", "url": binary}}],
                },
                "request": {"method": "POST", "url": "DocumentReference"},
            },
            {
                "fullUrl": binary,
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "application/pdf",
                    "securityContext": subject,
                    "data": base64.b64encode(pdf).decode(),
                },
                "request": {"method": "POST", "url": "Binary"},
            },
        ],
    }


def pdsm_bundle(example: bytes, nir: str, pdf: bytes, rng: random.Random) -> dict[str, Any]:
    """The PDSm ITI-65 example for this patient and PDF: new SubmissionSet and document uniqueIds, new
    entryUUIDs (fullUrls and the identifiers that repeat them), the PDF's size and SHA-1."""
    text = example.decode()
    old_nir = _example_nir(example)
    if old_nir:
        text = text.replace(old_nir, nir)
    for entry in orjson.loads(example)["entry"]:
        text = text.replace(entry["fullUrl"], f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}")
    bundle: dict[str, Any] = orjson.loads(text)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        match resource["resourceType"]:
            case "List":
                for identifier in resource.get("identifier", ()):
                    if identifier.get("use") == "usual":
                        identifier["value"] = _oid(rng)  # the SubmissionSet uniqueId
            case "DocumentReference":
                resource["masterIdentifier"]["value"] = _oid(rng)
                attachment = resource["content"][0]["attachment"]
                attachment["size"] = len(pdf)
                attachment["hash"] = base64.b64encode(
                    hashlib.sha1(pdf, usedforsecurity=False).digest()
                ).decode()
            case "Binary":
                resource["data"] = base64.b64encode(pdf).decode()
    return bundle


def _example_nir(example: bytes) -> str | None:
    marker = f"Patient?identifier={INS_NIR}|".encode()
    at = example.find(marker)
    return example[at + len(marker) :].split(b'"', 1)[0].decode() if at >= 0 else None


# --- the load generator's scenarios (run in the load generator's process) ---------------------------------------


class DocumentScenario:
    """Requests for loadgen's closed-loop clients (`loadgen._client` calls `next`)."""

    #: Binary ids read from the answers to submissions (this process), written out when it ends.
    deposited: list[str] = []  # noqa: RUF012

    def __init__(self, spec: dict[str, Any]) -> None:
        self.name: str = spec["scenario"]
        self.host = f"{spec['host']}:{spec['port']}"
        self.auth = f"Authorization: Bearer {spec['token']}\r\n"
        manifest = json.loads(Path(spec["manifest"]).read_text())
        self.patients: list[str] = [p[0] for p in manifest["patients"]]
        self.per_patient: int = manifest["documents_per_patient"]
        self.pdf = Path(spec["pdf"]).read_bytes()
        self.mark_at = self.pdf.index(MARK)
        self.example = PDSM_EXAMPLE.read_bytes() if self.name == "submit-pdsm" else b""
        self.binaries: list[str] = []
        if self.name.startswith("retrieve"):
            self.binaries = Path(spec["binaries"]).read_text().split()

    def _raw(self, method: str, path: str, headers: str = "", body: bytes | None = None) -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.auth}{headers}"
        if body is None:
            return (head + "\r\n").encode()
        head += f"Content-Type: application/fhir+json\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body

    def _submitted(self, expected: int) -> loadgen.Check:
        def check(body: bytes) -> bool:
            if body.count(b'"status":"201 Created"') != expected:
                return False
            at = body.find(b'"location":"Binary/')
            if at < 0:
                return False
            self.deposited.append(body[at + 19 :].split(b"/", 1)[0].decode())
            return True

        return check

    def next(self, rng: random.Random) -> loadgen.Request:
        nir = self.patients[rng.randrange(len(self.patients))]
        fhir = "Accept: application/fhir+json\r\n"
        match self.name:
            case "submit":
                bundle = generic_bundle(nir, vary(self.pdf, self.mark_at, rng))
                return loadgen.Request(
                    self._raw("POST", "/fhir", fhir, orjson.dumps(bundle)), 200, self._submitted(2)
                )
            case "submit-pdsm":
                bundle = pdsm_bundle(self.example, nir, vary(self.pdf, self.mark_at, rng), rng)
                return loadgen.Request(
                    self._raw("POST", "/fhir", fhir, orjson.dumps(bundle)), 200, self._submitted(3)
                )
            case "search":
                query = quote(f"{INS_NIR}|{nir}", safe=":")
                # Every loaded patient has per_patient documents, one in ten superseded (and maybe some that
                # submissions added).
                least = self.per_patient - self.per_patient // 10
                return loadgen.Request(
                    self._raw(
                        "GET", f"/fhir/DocumentReference?patient.identifier={query}&status=current", fhir
                    ),
                    200,
                    lambda b: b.count(b'"resourceType":"DocumentReference"') >= least,
                )
            case "retrieve":
                binary = self.binaries[rng.randrange(len(self.binaries))]
                size = len(self.pdf)
                return loadgen.Request(
                    self._raw("GET", f"/fhir/Binary/{binary}", "Accept: */*\r\n"),
                    200,
                    lambda b: len(b) == size and b.startswith(b"%PDF"),
                )
            case "retrieve-range":
                binary = self.binaries[rng.randrange(len(self.binaries))]
                return loadgen.Request(
                    self._raw(
                        "GET",
                        f"/fhir/Binary/{binary}",
                        f"Accept: */*\r\nRange: bytes=0-{RANGE_BYTES - 1}\r\n",
                    ),
                    206,
                    lambda b: len(b) == RANGE_BYTES and b.startswith(b"%PDF"),
                )
        raise ValueError(f"unknown scenario {self.name}")


def loadgen_main() -> None:
    """`python -m benchmarks.documents --loadgen < spec.json > result.json`: benchmarks/loadgen.py's clients,
    recorder and figures, with DocumentScenario in place of its scenarios."""
    import uvloop

    spec = json.loads(sys.stdin.read())
    loadgen.Scenario = DocumentScenario  # type: ignore[misc,assignment]
    result = uvloop.run(loadgen.run(spec))
    if spec.get("deposited"):
        with Path(spec["deposited"]).open("a") as out:
            out.write("".join(f"{b}\n" for b in DocumentScenario.deposited))
    sys.stdout.write(json.dumps(result))


def run_loadgen(spec: dict[str, Any], meter: run.CpuMeter) -> dict[str, Any]:
    """One measurement in a fresh load-generator process, with this module's scenarios."""
    return run.run_loadgen(spec, meter, ("benchmarks.documents", "--loadgen"))


# --- the search dataset: 100,000 spaces × 10 documents, in bulk --------------------------------------------------

#: (LOINC type, display, class code TRE_A03, display): the kinds of documents a record holds.
DOC_TYPES = (
    ("34112-3", "CR hospitalier (séjour)", "10", "Compte rendu"),
    ("11502-2", "CR d'examens biologiques", "11", "Résultat d'examen"),
    ("18748-4", "CR d'imagerie médicale", "11", "Résultat d'examen"),
    ("57833-6", "Prescription de médicaments", "30", "Prescription"),
    ("11488-4", "CR de consultation", "10", "Compte rendu"),
)


def _document(
    template: dict[str, Any], space: uuid.UUID, pid: str, nir: str, k: int, rng: random.Random
) -> dict[str, Any]:
    """The k-th document of a space: the submitted one with its own uniqueId, entryUUID, content, date, type."""
    body: dict[str, Any] = orjson.loads(orjson.dumps(template))
    body.pop("id", None)
    body["subject"] = {"reference": f"Patient/{pid}"}
    body["status"] = "superseded" if k % 10 == 9 else "current"
    when = datetime(2015, 1, 1, 9, tzinfo=UTC) + timedelta(minutes=rng.randrange(12 * 365 * 24 * 60))
    stamp_ = when.isoformat().replace("+00:00", "Z")
    if "masterIdentifier" in body:
        body["masterIdentifier"]["value"] = _oid(rng)
    for identifier in body.get("identifier", ()):
        if str(identifier.get("value", "")).startswith("urn:uuid:"):
            identifier["value"] = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"
    if "date" in body:
        body["date"] = stamp_
    code, display, cls, cls_display = DOC_TYPES[rng.randrange(len(DOC_TYPES))]
    if "type" in body:
        body["type"]["coding"][0].update(code=code, display=display)
    for category in body.get("category", ())[:1]:
        category["coding"][0].update(code=cls, display=cls_display)
    for content in body.get("content", ()):
        attachment = content["attachment"]
        attachment["url"] = f"Binary/{space.hex}{rng.getrandbits(64):016x}"
        if "creation" in attachment:
            attachment["creation"] = stamp_
    period = body.get("context", {}).get("period")
    if period:
        period["start"] = (when - timedelta(days=rng.randrange(1, 10))).isoformat().replace("+00:00", "Z")
        period["end"] = stamp_
    for contained in body.get("contained", ()):
        for identifier in (
            contained.get("identifier", ()) if contained.get("resourceType") == "Patient" else ()
        ):
            if identifier.get("system") == INS_NIR:
                identifier["value"] = nir
    return body


def _settings(data_dir: Path) -> Any:
    from espace_sante.settings import Settings

    return Settings(dev=True, data_dir=data_dir)


async def _load_batches(
    db_url: str, data_dir: str, batches: list[tuple[int, int]], per: int, template: dict[str, Any], seed: int
) -> list[tuple[int, str]]:
    from espace_sante.access.actors import SYSTEM
    from espace_sante.access.policy import decide
    from espace_sante.crypto import KeyRing, LocalKek, resource_aad, seal
    from espace_sante.fhir import compartment, searchparams
    from espace_sante.storage import provision
    from espace_sante.storage.audit import SUCCESS, Record, chain_hash
    from espace_sante.storage.keys import KeyStore
    from espace_sante.storage.resources import stamp

    kek, *previous = _settings(Path(data_dir)).kek_bytes()
    keys = KeyStore(KeyRing(LocalKek(kek), [LocalKek(k) for k in previous]))
    decision = decide(SYSTEM, "create", "Patient")

    def record(**fields: Any) -> Record:
        return Record(outcome=SUCCESS, actor_kind="system", actor_id="benchmarks.documents", **fields)

    found: list[tuple[int, str]] = []
    conn = await asyncpg.connect(db_url)
    await conn.execute("SET synchronous_commit = off")  # a bulk load: one fsync per batch is not the point
    try:
        for first, end in batches:
            rng = random.Random(f"{seed}/{first}")
            spaces = []
            for i in range(first, end):
                space = compartment.new_space_id()
                spaces.append(
                    provision.NewSpace(
                        space, compartment.new_resource_id(space), dataset.patient(dataset.nir(i), i), "open"
                    )
                )
            now = datetime.now(UTC)
            when = now.replace(microsecond=now.microsecond // 1000 * 1000)
            resource_rows, version_rows, audit_rows, chain_rows = [], [], [], []
            index: dict[str, list[tuple[Any, ...]]] = {
                t: [] for t in ("token", "string", "date", "reference")
            }
            async with conn.transaction():
                await provision.create_spaces(
                    conn, keys, decision, spaces, record=record(action="resource:create")
                )
                heads = {
                    r["space_id"]: r["head"]
                    for r in await conn.fetch(
                        "SELECT space_id, head FROM audit_chain WHERE space_id = ANY($1::uuid[])",
                        [s.space_id for s in spaces],
                    )
                }
                for n, s in enumerate(spaces):
                    _, aead = await keys.current(conn, s.space_id)  # just made: from the cache, no query
                    head = heads[s.space_id]  # the Patient's creation, seq 1
                    nir = dataset.nir(first + n)
                    for k in range(per):
                        rid = compartment.new_resource_id(s.space_id)
                        body = _document(template, s.space_id, s.patient_id, nir, k, rng)
                        plaintext = stamp(body, rid, 1, when)
                        aad = resource_aad(str(s.space_id), "DocumentReference", rid, 1, 1)
                        sealed = seal(aead, plaintext, aad)
                        resource_rows.append((s.space_id, "DocumentReference", rid, 1, when, False))
                        version_rows.append((*resource_rows[-1][:5], "POST", 1, sealed))
                        values = searchparams.extract(body)
                        key = (s.space_id, "DocumentReference", rid)
                        index["token"] += [(*key, v.param, v.system, v.code) for v in values.tokens]
                        index["string"] += [(*key, v.param, v.normalized, v.exact) for v in values.strings]
                        index["date"] += [(*key, v.param, v.low, v.high) for v in values.dates]
                        index["reference"] += [
                            (*key, v.param, v.target_type, v.target_id) for v in values.references
                        ]
                        created = record(
                            action="resource:create",
                            entity_type="DocumentReference",
                            entity_id=rid,
                            entity_version=1,
                            recorded_at=now,
                        )
                        seq = k + 2
                        digest = chain_hash(head, s.space_id, seq, created)
                        audit_rows.append(
                            (
                                s.space_id, seq, now, created.action, created.outcome, created.actor_kind,
                                created.actor_id, created.actor_display, created.basis, created.entity_type,
                                created.entity_id, created.entity_version, created.detail, created.request_id,
                                head, digest,
                            )
                        )  # fmt: skip
                        head = digest
                    chain_rows.append((s.space_id, per + 1, head))
                    found.append((first + n, s.patient_id))
                await _copy_documents(conn, resource_rows, version_rows, index, audit_rows, chain_rows)
            print(f"  patients {first:,}-{end - 1:,} written", flush=True)
    finally:
        await conn.close()
    return found


async def _copy_documents(
    conn: asyncpg.Connection,
    resource_rows: list[tuple[Any, ...]],
    version_rows: list[tuple[Any, ...]],
    index: dict[str, list[tuple[Any, ...]]],
    audit_rows: list[tuple[Any, ...]],
    chain_rows: list[tuple[Any, ...]],
) -> None:
    """The rows of a batch's documents, one COPY per table (storage/provision.copy_rows)."""
    from espace_sante.storage import provision

    await provision.copy_rows(conn, resource_rows, version_rows, index, audit_rows)
    # The chains create_spaces started at seq 1 now end at the documents' last record.
    await conn.execute(
        "UPDATE audit_chain c SET seq = n.seq, head = n.head FROM unnest($1::uuid[], $2::bigint[], $3::bytea[]) "
        "AS n(space_id, seq, head) WHERE c.space_id = n.space_id",
        [r[0] for r in chain_rows],
        [r[1] for r in chain_rows],
        [r[2] for r in chain_rows],
    )


def _load_worker(
    args: tuple[str, str, list[tuple[int, int]], int, dict[str, Any], int],
) -> list[tuple[int, str]]:
    return asyncio.run(_load_batches(*args))


def template_document(base: str, token: str, pdf: bytes, use_pdsm: bool) -> tuple[dict[str, Any], str]:
    """Submit one document through the API (a patient of its own, INS in département 2A) and read back the
    DocumentReference the server stored: the model of the bulk documents."""
    rng = random.Random(time.time_ns())
    nir = dataset.random_nir(rng, "2A")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    headers["Accept"] = "application/fhir+json"
    with httpx.Client(base_url=f"{base}/fhir", headers=headers, timeout=60) as client:
        created = client.post("/Patient", content=orjson.dumps(dataset.patient(nir, 0)))
        created.raise_for_status()
        varied = vary(pdf, pdf.index(MARK), rng)
        bundle = (
            pdsm_bundle(PDSM_EXAMPLE.read_bytes(), nir, varied, rng)
            if use_pdsm
            else generic_bundle(nir, varied)
        )
        response = client.post("", content=orjson.dumps(bundle))
        if response.status_code != 200:
            raise RuntimeError(f"template submission: HTTP {response.status_code}: {response.text[:2000]}")
        location = next(
            e["response"]["location"]
            for e in response.json()["entry"]
            if e["response"]["location"].startswith("DocumentReference/")
        )
        stored = client.get("/" + location.split("/_history")[0])
        stored.raise_for_status()
    return stored.json(), "pdsm" if use_pdsm else "generic"


def build_dataset(
    data_dir: Path, base: str, tokens: procs.Tokens, patients: int, per: int, pdf: bytes, workers: int
) -> dict[str, Any]:
    use_pdsm = PDSM_EXAMPLE.exists()
    template, shape = template_document(base, tokens.get(), pdf, use_pdsm)
    db_url = procs.database_url(data_dir)
    plan = [(first, min(first + LOAD_BATCH, patients)) for first in range(0, patients, LOAD_BATCH)]
    seed = time.time_ns()
    start = time.monotonic()
    found: dict[int, str] = {}
    jobs = [(db_url, str(data_dir), plan[w::workers], per, template, seed) for w in range(workers)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        for part in pool.imap_unordered(_load_worker, jobs):
            found.update(part)
    written = time.monotonic() - start
    print(f"  written in {written:,.0f} s; VACUUM ANALYZE ...", flush=True)
    vacuum_start = time.monotonic()

    async def vacuum() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            # What an operator runs after a bulk import: statistics for the planner, the visibility map for
            # index-only scans (and no autovacuum pass starting in the middle of a measurement).
            await conn.execute("VACUUM (ANALYZE)")
        finally:
            await conn.close()

    asyncio.run(vacuum())
    vacuumed = time.monotonic() - vacuum_start
    return {
        "method": "bulk-copy",
        "document_shape": shape,
        "batch_spaces": LOAD_BATCH,
        "workers": workers,
        "write_seconds": round(written, 1),
        "vacuum_seconds": round(vacuumed, 1),
        "documents_per_second": round(patients * per / written, 1),
        "patient_ids": [found[i] for i in range(patients)],
    }


def write_manifest(path: Path, patients: int, per: int, load: dict[str, Any]) -> None:
    ids = load.pop("patient_ids")
    manifest = {
        "patients_loaded": patients,
        "documents_per_patient": per,
        "documents_loaded": patients * per,
        "load": load,
        "patients": [[dataset.nir(i), pid] for i, pid in enumerate(ids)],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest))
    tmp.rename(path)  # a manifest exists only for a complete load


# --- the run -----------------------------------------------------------------------------------------------------


def content_bytes(scenario: str, pdf_size: int) -> int:
    """Document bytes carried by one request (the decoded content, not the base64 or the JSON around it)."""
    return 0 if scenario == "search" else RANGE_BYTES if scenario == "retrieve-range" else pdf_size


def summarize(runs: dict[tuple[str, int], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """benchmarks.report's medians, plus MB/s and CPU milliseconds per request (app, PostgreSQL)."""
    rows = report.summarize(runs)
    for row in rows:
        repeats = runs[(row["scenario"], row["clients"])]
        for r in repeats:
            rps = r["rps"] or math.nan
            r["app_cpu_ms"] = r["server_cpu_percent"] * 10 / rps
            r["pg_cpu_ms"] = r["postgres_cpu_percent"] * 10 / rps
        for key in ("mb_per_s", "app_cpu_ms", "pg_cpu_ms"):
            row[key] = round(median_of(repeats, key), 3)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'scenario':<15} {'clients':>7} {'req/s':>8} {'MB/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'errors':>6} {'cpu ms/req app+pg':>18}  {'cpu% app/pg/gen/all':>20}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        cpu = report.cpu_column(r)
        per = f"{r['app_cpu_ms']:.2f}+{r['pg_cpu_ms']:.2f}"
        lines.append(
            f"{r['scenario']:<15} {r['clients']:>7} {r['rps']:>8,.1f} {r['mb_per_s']:>7.2f} {r['p50_ms']:>8.2f} "
            f"{r['p95_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>6} {per:>18}  {cpu:>20}"
        )
    return "\n".join(lines)


async def _db_facts(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT resource_type, count(*) AS n FROM resource GROUP BY 1 ORDER BY 1")
        return {
            "version": await conn.fetchval("SHOW server_version"),
            "shared_buffers": await conn.fetchval("SHOW shared_buffers"),
            "database_size": await conn.fetchval(
                "SELECT pg_size_pretty(pg_database_size(current_database()))"
            ),
            "resources": {r["resource_type"]: r["n"] for r in rows},
            "blobs": await conn.fetchval("SELECT count(*) FROM blob"),
        }
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.loadgen:
        loadgen_main()
        return 0
    signal.signal(signal.SIGTERM, run._on_sigterm)
    if "submit-pdsm" in args.scenarios and not PDSM_EXAMPLE.exists():
        print(f"{PDSM_EXAMPLE} not found: submit-pdsm skipped", flush=True)
        args.scenarios.remove("submit-pdsm")
    data_dir: Path = (args.data_root / f"documents-p{args.patients}-d{args.per_patient}").resolve()
    manifest = data_dir / "manifest.json"
    if data_dir.exists() and (args.fresh or not manifest.exists()):
        shutil.rmtree(data_dir)  # no manifest: an interrupted build, never measured
    data_dir.mkdir(parents=True, exist_ok=True)
    pdf_path = data_dir / "report.pdf"
    if not pdf_path.exists():
        pdf_path.write_bytes(report_pdf())
    pdf = pdf_path.read_bytes()
    deposited = data_dir / "deposited.txt"  # Binary ids of the PDFs submitted by every run on this folder
    deposited.touch()
    children: list[procs.Managed] = []
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    try:
        print(f"data folder {data_dir}; PDF {len(pdf):,} bytes", flush=True)
        port = procs.free_port()
        serve = procs.start_serve(data_dir, port)
        children.append(serve)
        base = f"http://{procs.HOST}:{port}"
        tokens = procs.Tokens(base, procs.ensure_client(data_dir))
        if not manifest.exists():
            total = args.patients * args.per_patient
            print(f"writing {args.patients:,} patients and {total:,} documents in bulk ...", flush=True)
            stats = build_dataset(
                data_dir, base, tokens, args.patients, args.per_patient, pdf, args.load_workers
            )
            write_manifest(manifest, args.patients, args.per_patient, stats)
        saved = json.loads(manifest.read_text())
        load = saved["load"]
        print(
            f"dataset: {saved['documents_loaded']:,} {load['document_shape']} documents written in "
            f"{load['write_seconds']:,} s ({load['documents_per_second']:,}/s) + VACUUM ANALYZE "
            f"{load['vacuum_seconds']:,} s",
            flush=True,
        )
        db_url = procs.database_url(data_dir)
        facts = asyncio.run(_db_facts(db_url))
        for repeat in range(args.repeats):
            for scenario in args.scenarios:
                for clients in args.clients:
                    if scenario.startswith("retrieve") and not deposited.read_text().strip():
                        raise RuntimeError("nothing to retrieve: run submit or submit-pdsm first")
                    spec = {
                        "scenario": scenario,
                        "clients": clients,
                        "host": procs.HOST,
                        "port": port,
                        "token": tokens.get(margin=args.duration + args.warmup + 60),
                        "manifest": str(manifest),
                        "pdf": str(pdf_path),
                        "binaries": str(deposited),
                        "deposited": str(deposited) if scenario.startswith("submit") else None,
                        "warmup": args.warmup,
                        "duration": args.duration,
                        "seed": f"{time.time_ns()}/{scenario}/{clients}/{repeat}",
                    }
                    serve.check_alive()
                    result = run_loadgen(spec, run.CpuMeter(serve.pid, data_dir))
                    result["mb_per_s"] = round(result["rps"] * content_bytes(scenario, len(pdf)) / 1e6, 3)
                    runs.setdefault((scenario, clients), []).append(result)
                    print(
                        f"  [{repeat + 1}/{args.repeats}] {scenario:<15} {clients:>2} clients: "
                        f"{result['rps']:>7,.1f} req/s {result['mb_per_s']:>6.2f} MB/s  p50 {result['p50_ms']:.2f}  "
                        f"p95 {result['p95_ms']:.2f}  p99 {result['p99_ms']:.2f} ms  errors {result['errors']}",
                        flush=True,
                    )
                    for sample in result["error_samples"][:2]:
                        print(f"      error: {sample}", flush=True)
    finally:
        for child in reversed(children):
            child.stop()

    rows = summarize(runs)
    print(
        f"\nMedians of {args.repeats} run(s); MB/s counts document bytes (decoded content); cpu ms/req = CPU "
        "milliseconds per request of the app process and of PostgreSQL; cpu% = target process / PostgreSQL / "
        f"load generator / whole machine (100 = one core; {os.cpu_count()} cores)\n"
    )
    print(table(rows))
    path = report.write(
        {
            "benchmark": "documents",
            "machine": report.machine(facts["version"]),
            "settings": {
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "repeats": args.repeats,
                "clients": args.clients,
                "app_workers": 1,
                "pdf_bytes": len(pdf),
                "range_bytes": RANGE_BYTES,
            },
            "dataset": {
                "patients": args.patients,
                "documents_per_patient": args.per_patient,
                "load": load,
                "at_start": {k: v for k, v in facts.items() if k != "version"},
            },
            "summary": rows,
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
