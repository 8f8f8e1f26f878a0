"""Segmented AES-256-GCM for document content: round trips, range reads, tampering."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from espace_sante.crypto import DecryptionFailed
from espace_sante.storage import blobcrypt
from espace_sante.storage.blobcrypt import (
    HEADER,
    SEGMENT,
    decrypt,
    encrypt,
    encrypted_size,
    plain_size,
    read_plain,
)
from espace_sante.storage.blobs import BlobInfo, BlobMissing, LocalBlobStore

SEALED = SEGMENT + 16
KEY = AESGCM(AESGCM.generate_key(bit_length=256))
AAD = b"blob/space-1/blob-1/k1"
SIZES = [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 5]


def _plain(size: int) -> bytes:
    return os.urandom(size)


async def _collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in chunks])


class RecordingStore:
    """A store that remembers every read range, to see what read_plain fetches."""

    def __init__(self, inner: LocalBlobStore) -> None:
        self.inner = inner
        self.reads: list[tuple[int, int | None]] = []

    async def put(self, key: str, data: bytes) -> None:
        await self.inner.put(key, data)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        self.reads.append((start, end))
        return await self.inner.read(key, start, end)

    async def size(self, key: str) -> int | None:
        return await self.inner.size(key)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    def list(self, prefix: str = "", *, page_size: int = 1000) -> AsyncIterator[BlobInfo]:
        return self.inner.list(prefix, page_size=page_size)

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> LocalBlobStore:
    return LocalBlobStore(tmp_path_factory.mktemp("crypt-blobs"))


@pytest.mark.parametrize("size", SIZES)
def test_round_trip(size: int) -> None:
    plaintext = _plain(size)
    blob = encrypt(KEY, plaintext, AAD)
    assert len(blob) == encrypted_size(size)
    assert plain_size(len(blob)) == size
    assert decrypt(KEY, blob, AAD) == plaintext
    if size >= 16:  # a shorter run of random bytes turns up in any ciphertext by chance (1 byte: ~11 %)
        assert plaintext not in blob
    # A fresh nonce prefix each time: the same content never encrypts to the same bytes.
    assert encrypt(KEY, plaintext, AAD) != blob


def test_sizes_map_one_to_one_and_impossible_sizes_are_refused() -> None:
    plains = []
    for cipher in range(3 * SEALED + 100):
        try:
            plain = plain_size(cipher)
        except ValueError:
            continue
        assert encrypted_size(plain) == cipher
        plains.append(plain)
    # Every plaintext size up to what fits, each from exactly one ciphertext size.
    assert plains == list(range(len(plains)))
    assert len(plains) > 3 * SEGMENT
    for impossible in (
        0,
        HEADER,
        HEADER + 15,
        HEADER + SEALED + 1,
        HEADER + SEALED + 16,
        HEADER + 2 * SEALED + 16,
    ):
        with pytest.raises(ValueError):
            plain_size(impossible)
    for plain in range(0, 4 * SEGMENT, 997):
        assert plain_size(encrypted_size(plain)) == plain
    with pytest.raises(ValueError):
        encrypted_size(-1)


def _segments(blob: bytes) -> list[bytes]:
    body = blob[HEADER:]
    return [body[i : i + SEALED] for i in range(0, len(body), SEALED)]


def _swap(blob: bytes, a: int, b: int) -> bytes:
    parts = _segments(blob)
    parts[a], parts[b] = parts[b], parts[a]
    return blob[:HEADER] + b"".join(parts)


def _flip(blob: bytes, at: int) -> bytes:
    changed = bytearray(blob)
    changed[at] ^= 0x01
    return bytes(changed)


BLOB_PLAIN = _plain(3 * SEGMENT + 5)
BLOB = encrypt(KEY, BLOB_PLAIN, AAD)
TAMPERED = {
    "flipped byte in magic": _flip(BLOB, 0),
    "flipped byte in nonce prefix": _flip(BLOB, HEADER - 1),
    "flipped byte in first segment": _flip(BLOB, HEADER + 100),
    "flipped byte in a tag": _flip(BLOB, HEADER + SEALED - 1),
    "flipped byte in last segment": _flip(BLOB, len(BLOB) - 1),
    "swapped segments": _swap(BLOB, 0, 1),
    "truncated last segment": BLOB[:-3],
    "last segment dropped": BLOB[: HEADER + 3 * SEALED],
    "segment appended": BLOB + _segments(BLOB)[1],
    "byte appended": BLOB + b"\x00",
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_tampering_is_detected(case: str) -> None:
    with pytest.raises(DecryptionFailed):
        decrypt(KEY, TAMPERED[case], AAD)


def test_wrong_aad_or_key_is_detected() -> None:
    with pytest.raises(DecryptionFailed):
        decrypt(KEY, BLOB, b"blob/space-1/blob-2/k1")  # moved onto another blob
    with pytest.raises(DecryptionFailed):
        decrypt(KEY, BLOB, b"blob/space-1/blob-1/k2")  # another key version
    with pytest.raises(DecryptionFailed):
        decrypt(AESGCM(AESGCM.generate_key(bit_length=256)), BLOB, AAD)
    empty = encrypt(KEY, b"", AAD)
    with pytest.raises(DecryptionFailed):
        decrypt(KEY, empty, b"blob/space-1/blob-2/k1")


def test_segments_of_another_blob_are_refused() -> None:
    """Same key and aad, another blob: its segments carry another nonce prefix."""
    other = encrypt(KEY, BLOB_PLAIN, AAD)
    mixed = BLOB[:HEADER] + _segments(BLOB)[0] + b"".join(_segments(other)[1:])
    with pytest.raises(DecryptionFailed):
        decrypt(KEY, mixed, AAD)


@pytest.mark.parametrize(
    "case", ["swapped segments", "truncated last segment", "flipped byte in last segment"]
)
async def test_read_plain_detects_tampering(local: LocalBlobStore, case: str) -> None:
    key = f"tampered/{case.replace(' ', '-')}"
    await local.put(key, TAMPERED[case])
    with pytest.raises(DecryptionFailed):
        await _collect(read_plain(local, key, KEY, AAD, plain_total=len(BLOB_PLAIN)))


async def test_read_plain_checks_the_recorded_size_and_aad(local: LocalBlobStore) -> None:
    await local.put("checks/doc", BLOB)
    total = len(BLOB_PLAIN)
    # The recorded size decides which segment is final: a wrong one fails where it matters.
    with pytest.raises(DecryptionFailed):
        await _collect(read_plain(local, "checks/doc", KEY, AAD, plain_total=total - 1))
    with pytest.raises(DecryptionFailed):
        await _collect(read_plain(local, "checks/doc", KEY, AAD, plain_total=total + SEGMENT))
    with pytest.raises(DecryptionFailed):
        await _collect(read_plain(local, "checks/doc", KEY, b"blob/space-1/blob-2/k1", plain_total=total))
    with pytest.raises(BlobMissing):
        await _collect(read_plain(local, "checks/none", KEY, AAD, plain_total=total))
    with pytest.raises(ValueError):
        await _collect(read_plain(local, "checks/doc", KEY, AAD, plain_total=total, start=-1))
    with pytest.raises(ValueError):
        await _collect(read_plain(local, "checks/doc", KEY, AAD, plain_total=total, start=5, end=4))


async def test_read_plain_of_empty_content_still_checks_the_blob(local: LocalBlobStore) -> None:
    await local.put("empty/doc", encrypt(KEY, b"", AAD))
    assert await _collect(read_plain(local, "empty/doc", KEY, AAD, plain_total=0)) == b""
    await local.put("empty/other", encrypt(KEY, b"", b"another aad"))
    with pytest.raises(DecryptionFailed):
        await _collect(read_plain(local, "empty/other", KEY, AAD, plain_total=0))
    with pytest.raises(BlobMissing):
        await _collect(read_plain(local, "empty/none", KEY, AAD, plain_total=0))


@settings(max_examples=200, deadline=None)
@given(
    size=st.one_of(st.sampled_from([*SIZES, 2 * SEGMENT, 5 * SEGMENT - 1]), st.integers(0, 5 * SEGMENT + 10)),
    bounds=st.tuples(st.floats(0, 1.1), st.floats(0, 1.1)),
    open_end=st.booleans(),
    chunk_segments=st.integers(1, 4),
)
async def test_every_range_reads_the_plaintext_slice(
    local: LocalBlobStore, size: int, bounds: tuple[float, float], open_end: bool, chunk_segments: int
) -> None:
    plaintext = _plain(size)
    await local.put("ranges/doc", encrypt(KEY, plaintext, AAD))
    start, end = sorted(int(b * size) for b in bounds)
    chunks = [
        c
        async for c in read_plain(
            local,
            "ranges/doc",
            KEY,
            AAD,
            plain_total=size,
            start=start,
            end=None if open_end else end,
            chunk_segments=chunk_segments,
        )
    ]
    assert b"".join(chunks) == plaintext[start : None if open_end else end]
    assert all(chunks)  # no empty chunks for a streaming response to send


async def test_read_plain_reads_only_the_covering_segments(local: LocalBlobStore) -> None:
    size = 10 * SEGMENT + 7
    plaintext = _plain(size)
    await local.put("recorded/doc", encrypt(KEY, plaintext, AAD))
    store = RecordingStore(local)

    def at(segment: int) -> int:
        return HEADER + segment * SEALED

    # Segments 3, 4 and 5, two per store read, plus the header read alongside.
    start, end = 3 * SEGMENT + 10, 5 * SEGMENT + 20
    got = await _collect(
        read_plain(store, "recorded/doc", KEY, AAD, plain_total=size, start=start, end=end, chunk_segments=2)
    )
    assert got == plaintext[start:end]
    assert sorted(store.reads) == [(0, HEADER), (at(3), at(5)), (at(5), at(6))]

    # A range in the first segment: one read, header included.
    store.reads.clear()
    assert (
        await _collect(read_plain(store, "recorded/doc", KEY, AAD, plain_total=size, end=100))
        == plaintext[:100]
    )
    assert store.reads == [(0, at(1))]

    # The tail: only the short final segment (7 bytes + tag).
    store.reads.clear()
    got = await _collect(read_plain(store, "recorded/doc", KEY, AAD, plain_total=size, start=size - 3))
    assert got == plaintext[-3:]
    assert sorted(store.reads) == [(0, HEADER), (at(10), at(10) + 7 + 16)]

    # An empty range reads nothing; the whole document is read 16 segments at a time.
    store.reads.clear()
    assert (
        await _collect(read_plain(store, "recorded/doc", KEY, AAD, plain_total=size, start=50, end=50)) == b""
    )
    assert store.reads == []
    assert await _collect(read_plain(store, "recorded/doc", KEY, AAD, plain_total=size)) == plaintext
    assert store.reads == [(0, at(10) + 7 + 16)]


def test_encrypting_20_mb_takes_tens_of_milliseconds() -> None:
    plaintext = _plain(20 * 1024 * 1024)
    timings = []
    for _ in range(3):
        began = time.perf_counter()
        blob = encrypt(KEY, plaintext, AAD)
        timings.append(time.perf_counter() - began)
    began = time.perf_counter()
    assert decrypt(KEY, blob, AAD) == plaintext
    decrypt_time = time.perf_counter() - began
    print(f"\n20 MiB: encrypt {min(timings) * 1000:.1f} ms, decrypt {decrypt_time * 1000:.1f} ms")
    assert min(timings) < 0.2
    assert decrypt_time < 0.2


def test_format_constants() -> None:
    assert HEADER == 12
    assert blobcrypt.MAGIC == b"ESB\x01"
    assert encrypted_size(0) == HEADER + 16
    assert encrypted_size(SEGMENT) == HEADER + SEALED
    assert encrypted_size(SEGMENT + 1) == HEADER + SEALED + 1 + 16
