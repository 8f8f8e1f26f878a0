"""The load generator, run as its own process: `python -m benchmarks.loadgen < spec.json > result.json`.

N virtual clients, each with one keep-alive HTTP/1.1 connection, send requests back to back (closed loop) for a
warm-up, then for a fixed duration during which every latency is recorded.

The client is a minimal HTTP/1.1 client on uvloop with httptools' response parser rather than httpx: on a
two-core machine that also runs the server and PostgreSQL, httpx's per-request CPU cost (several times this
one's) would make the generator the bottleneck for the fastest target (the ceiling) and flatten the very ratio
we measure. The generator reports its own CPU use so a saturated generator shows in the results."""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import httptools
import orjson
import uvloop

from benchmarks import dataset
from benchmarks.stats import summarize
from espace_sante.fhir.identifiers import INS_NIR

Check = Callable[[bytes], bool]


@dataclass(frozen=True)
class Request:
    raw: bytes
    expect: int
    check: Check | None = None


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def on_body(self, chunk: bytes) -> None:
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.parser.get_status_code(), body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail(exc or ConnectionError("connection closed by the server"))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


@dataclass
class Recorder:
    measure_from: float
    measure_until: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    last_done: float = 0.0

    def record(self, started: float, done: float, ok: bool, detail: str) -> None:
        if not self.measure_from <= started < self.measure_until:
            return  # warm-up, or started after the window closed
        self.latencies.append(done - started)
        self.last_done = max(self.last_done, done)
        if not ok:
            self.errors += 1
            if len(self.error_samples) < 5:
                self.error_samples.append(detail[:300])


# --- scenarios: each turns a random generator into the next request ----------------------------------------


class Scenario:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.host = f"{spec['host']}:{spec['port']}"
        self.auth = f"Authorization: Bearer {spec['token']}\r\n" if spec.get("token") else ""
        manifest = json.loads(Path(spec["manifest"]).read_text())
        self.patients: list[tuple[str, str]] = [(p[0], p[1]) for p in manifest["patients"]]
        self.name: str = spec["scenario"]

    def _raw(self, method: str, path: str, body: bytes | None = None) -> bytes:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.auth}Accept: application/fhir+json\r\n"
        )
        if body is None:
            return (head + "\r\n").encode()
        head += f"Content-Type: application/fhir+json\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body

    def next(self, rng: random.Random) -> Request:
        nir, pid = self.patients[rng.randrange(len(self.patients))]
        match self.name:
            case "read" | "ceiling" | "read-practitioner":
                return Request(self._raw("GET", f"/fhir/Patient/{pid}"), 200)
            case "search-practitioner":
                # The médecin traitant's view of a record's history (a profile section shared by default).
                return Request(
                    self._raw("GET", f"/fhir/Condition?patient={pid}"), 200, lambda b: b'"total":' in b
                )
            case "search-identifier":
                query = quote(f"{INS_NIR}|{nir}", safe=":")
                # Exactly one Patient has each loaded INS.
                return Request(
                    self._raw("GET", f"/fhir/Patient?identifier={query}"),
                    200,
                    lambda b: b'"total":1,' in b and pid.encode() in b,
                )
            case "search-patient":
                return Request(
                    self._raw("GET", f"/fhir/Observation?patient={pid}"),
                    200,
                    lambda b: b'"resourceType":"Observation"' in b,
                )
            case "create":
                body = dataset.patient(dataset.random_nir(rng, "2A"), rng.randrange(1000))
                return Request(self._raw("POST", "/fhir/Patient", orjson.dumps(body)), 201)
            case "transaction":
                patients = [(rng.randrange(1000), dataset.random_nir(rng, "2B")) for _ in range(5)]
                bundle = dataset.transaction(patients, [3] * 5, rng.randrange(1000))
                return Request(
                    self._raw("POST", "/fhir", orjson.dumps(bundle)),
                    200,
                    lambda b: b.count(b'"status":"201 Created"') == 20,
                )
        raise ValueError(f"unknown scenario {self.name}")


async def _client(scenario: Scenario, host: str, port: int, rng: random.Random, rec: Recorder) -> None:
    loop = asyncio.get_running_loop()
    conn: Connection | None = None
    while time.perf_counter() < rec.measure_until:
        req = scenario.next(rng)
        if conn is None or conn.transport is None:
            _, conn = await loop.create_connection(Connection, host, port)
        started = time.perf_counter()
        try:
            status, body = await conn.send(req.raw)
        except Exception as exc:
            rec.record(started, time.perf_counter(), False, f"{type(exc).__name__}: {exc}")
            conn = None
            continue
        done = time.perf_counter()
        ok = status == req.expect and (req.check is None or req.check(body))
        rec.record(started, done, ok, f"HTTP {status}: {body[:200]!r}")
    if conn is not None and conn.transport is not None:
        conn.transport.close()


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    scenario = Scenario(spec)
    start = time.perf_counter()
    rec = Recorder(start + spec["warmup"], start + spec["warmup"] + spec["duration"])
    seed = spec.get("seed", 0)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(
        *(
            _client(scenario, spec["host"], spec["port"], random.Random(f"{seed}/{i}"), rec)
            for i in range(spec["clients"])
        )
    )
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    elapsed = max(rec.last_done - rec.measure_from, 1e-9)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        **summarize(rec.latencies, elapsed),
        "errors": rec.errors,
        "error_samples": rec.error_samples,
        "loadgen_cpu_percent": round(100 * cpu / (time.perf_counter() - start), 1),
    }


def main() -> None:
    spec = json.loads(sys.stdin.read())
    result = uvloop.run(run(spec))
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
