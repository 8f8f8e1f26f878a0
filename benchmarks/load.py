"""Loading the dataset through the real API: transaction Bundles of about 100 entries (Patients with their
Observations and Conditions, linked by urn:uuid fullUrls), a few in flight at once, over loopback HTTP.

The manifest written at the end (every Patient's INS and server-assigned id) is what the load generator draws
from, and its presence marks the data folder as completely loaded (a cache hit for the next run)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from benchmarks import dataset
from benchmarks.procs import Tokens

BUNDLE_ENTRIES = 100


def plan(patients: int, others: int) -> Iterator[tuple[list[tuple[int, str]], list[int], int]]:
    """Bundles as (patients (index, nir), others per patient, number of the first other). The others are spread
    evenly: patient i gets floor((i+1)·O/P) - floor(i·O/P)."""
    batch: list[tuple[int, str]] = []
    counts: list[int] = []
    first = 0
    size = 0
    for i in range(patients):
        n = (i + 1) * others // patients - i * others // patients
        batch.append((i, dataset.nir(i)))
        counts.append(n)
        size += 1 + n
        if size >= BUNDLE_ENTRIES:
            yield batch, counts, first
            first += sum(counts)
            batch, counts, size = [], [], 0
    if batch:
        yield batch, counts, first


async def _post_bundles(
    base: str, tokens: Tokens, work: asyncio.Queue[Any], found: dict[int, str], progress: list[int]
) -> None:
    async with httpx.AsyncClient(base_url=f"{base}/fhir", timeout=300) as client:
        while True:
            item = await work.get()
            if item is None:
                return
            batch, counts, first = item
            bundle = dataset.transaction(batch, counts, first)
            response = await client.post(
                "",
                content=orjson.dumps(bundle),
                headers={"Authorization": f"Bearer {tokens.get()}", "Content-Type": "application/fhir+json"},
            )
            if response.status_code != 200:
                raise RuntimeError(f"loading: HTTP {response.status_code}: {response.text[:500]}")
            entries = response.json()["entry"]
            # Response entries are in request order: each Patient, then its others.
            k = 0
            for (index, _), n in zip(batch, counts, strict=True):
                found[index] = entries[k]["response"]["location"].split("/")[1]
                k += 1 + n
            progress[0] += len(entries)


async def load_http(
    base: str, tokens: Tokens, patients: int, others: int, concurrency: int
) -> dict[str, Any]:
    work: asyncio.Queue[Any] = asyncio.Queue(maxsize=concurrency * 2)
    found: dict[int, str] = {}
    progress = [0]
    total = patients + others
    start = time.monotonic()
    workers = [
        asyncio.create_task(_post_bundles(base, tokens, work, found, progress)) for _ in range(concurrency)
    ]

    async def report() -> None:
        while True:
            await asyncio.sleep(15)
            done, spent = progress[0], time.monotonic() - start
            eta = (total - done) / max(done / spent, 1e-9)
            print(
                f"  loaded {done:,}/{total:,} resources ({done / spent:,.0f}/s, ~{eta:,.0f} s left)",
                flush=True,
            )

    reporter = asyncio.create_task(report())
    try:
        for item in plan(patients, others):
            await work.put(item)
            if any(w.done() for w in workers):
                break
        for _ in workers:
            await work.put(None)
        await asyncio.gather(*workers)
    finally:
        reporter.cancel()
        for w in workers:
            w.cancel()
    seconds = time.monotonic() - start
    return {
        "method": "http-transactions",
        "bundle_entries": BUNDLE_ENTRIES,
        "concurrency": concurrency,
        "seconds": round(seconds, 1),
        "resources_per_second": round(total / seconds, 1),
        "patient_ids": [found[i] for i in range(patients)],
    }


def write_manifest(path: Path, patients: int, others: int, load: dict[str, Any]) -> None:
    ids = load.pop("patient_ids")
    manifest = {
        "patients_loaded": patients,
        "others_loaded": others,
        "load": load,
        "patients": [[dataset.nir(i), pid] for i, pid in enumerate(ids)],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest))
    tmp.rename(path)  # atomic: a manifest exists only for a complete load
