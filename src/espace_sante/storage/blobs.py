"""Where document content lives: opaque bytes under a key, on a local disk or in any S3 service.

This layer knows nothing of encryption, SQL or HTTP: callers hand it ciphertext (storage/blobcrypt.py) and
keep the keys in the database. Both backends behave alike (same key rules, same errors, same range semantics)
so that tests on one speak for the other.

- `put` is durable when it returns: the local store renames an fsynced temporary file over the key and fsyncs
  the folder; the S3 store returns once the PUT was answered 200. A reader sees the old bytes or the new ones,
  never a mix.
- `read(key, start, end)` returns bytes `[start, end)` like a slice (a range past the end is cut short), and
  raises `BlobMissing` when the object is absent.
- `list(prefix)` walks every object under a prefix, for verification and for collecting orphans (blobs written
  by a submission that never committed). Its order is not part of the contract.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import secrets
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from espace_sante.settings import Settings

__all__ = [
    "BlobInfo",
    "BlobMissing",
    "BlobStore",
    "BlobStoreError",
    "LocalBlobStore",
    "S3BlobStore",
    "check_key",
    "open_blob_store",
]

#: S3's own maximum for one list_objects_v2 page.
DEFAULT_PAGE_SIZE = 1000
#: Temporary files of the local store start with this; `list` skips every dot-name, and keys may not use one.
TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    #: Aware, UTC.
    modified: datetime


class BlobMissing(Exception):
    """No object under this key."""


class BlobStoreError(Exception):
    """The store cannot be reached, or refuses us (credentials, permissions, a missing bucket)."""


class BlobStore(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...

    async def read(self, key: str, start: int = 0, end: int | None = None) -> bytes: ...

    async def size(self, key: str) -> int | None: ...

    async def delete(self, key: str) -> None: ...

    def list(self, prefix: str = "", *, page_size: int = DEFAULT_PAGE_SIZE) -> AsyncIterator[BlobInfo]: ...

    async def close(self) -> None: ...


def check_key(key: str) -> str:
    """Keys are relative slash-separated paths such as `spaces/<uuid>/<hex>`.

    Both backends apply the same rule so a key accepted by one is accepted by the other. The local store maps
    keys onto the file system, where `..`, an absolute path, a backslash or a NUL could escape the blob folder
    or mean something else; dot-names are reserved for the local store's temporary files."""
    if not key or not isinstance(key, str):
        raise ValueError("a blob key is a non-empty string")
    _check_parts(key, key.split("/"))
    return key


def _check_prefix(prefix: str) -> None:
    if not prefix:
        return
    parts = prefix.split("/")
    # A prefix may end in "/" or in a partial name: only the complete components are path components.
    head, tail = parts[:-1], parts[-1]
    _check_parts(prefix, head)
    if tail:
        _check_parts(prefix, [tail])


def _check_parts(key: str, parts: list[str]) -> None:
    if "\x00" in key or "\\" in key:
        raise ValueError(f"blob key {key!r}: NUL and backslash are not allowed")
    if key.startswith("/"):
        raise ValueError(f"blob key {key!r}: must be relative")
    for part in parts:
        if not part:
            raise ValueError(f"blob key {key!r}: empty path component")
        if part.startswith("."):
            raise ValueError(f"blob key {key!r}: a path component may not start with '.' (no '..', no '.')")


def _check_range(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"bad byte range [{start}, {end})")


# --- Local folder ------------------------------------------------------------------------------------------


class LocalBlobStore:
    """Files under `root`, one per key, mode 0600 in folders of mode 0700.

    Writes go to a `.tmp-*` file in the key's folder and are renamed over the key: the rename is atomic
    within one file system, which a temporary folder elsewhere would not guarantee. A crash can leave such a
    temporary file behind; `list` never shows it and `delete_stale_temps` removes it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    async def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        await asyncio.to_thread(self._put, path, data)

    def _put(self, path: Path, data: bytes) -> None:
        self._make_dirs(path.parent)
        # Named after its key, so that deleting the key (orphan collection) also finds a write cut short.
        tmp = path.parent / f"{TEMP_PREFIX}{path.name}.{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        # The rename is only durable once the folder's entry is on disk.
        _fsync_dir(path.parent)

    def _make_dirs(self, folder: Path) -> None:
        """Creates each missing level with mode 0700 (Path.mkdir(parents=True) gives parents the default
        mode) and fsyncs its parent, so that a new folder survives a crash along with the file in it."""
        if folder.is_dir():
            return
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        current = self.root
        for part in folder.relative_to(self.root).parts:
            current = current / part
            try:
                os.mkdir(current, 0o700)
            except FileExistsError:
                continue
            _fsync_dir(current.parent)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        _check_range(start, end)
        path = self._path(key)
        return await asyncio.to_thread(self._read, key, path, start, end)

    @staticmethod
    def _read(key: str, path: Path, start: int, end: int | None) -> bytes:
        try:
            with open(path, "rb") as fh:
                if end is not None and end == start:
                    return b""
                fh.seek(start)
                return fh.read() if end is None else fh.read(end - start)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobMissing(key) from None

    async def size(self, key: str) -> int | None:
        path = self._path(key)
        return await asyncio.to_thread(_file_size, path)

    async def delete(self, key: str) -> None:
        path = self._path(key)
        # No folder fsync: a delete lost in a crash leaves an unreferenced blob, which orphan collection finds
        # again. Empty folders are left in place, because removing them would race with a concurrent put
        # creating a file there.
        await asyncio.to_thread(_unlink_file, path)
        await asyncio.to_thread(_unlink_temps, path)

    async def list(self, prefix: str = "", *, page_size: int = DEFAULT_PAGE_SIZE) -> AsyncIterator[BlobInfo]:
        """`page_size` only exists for parity with S3: the walk goes one folder per thread hop."""
        _check_prefix(prefix)
        folder_key = prefix.rpartition("/")[0]
        pending = [folder_key]
        while pending:
            rel = pending.pop()
            infos, subfolders = await asyncio.to_thread(_scan, self.root, rel, prefix)
            pending.extend(sorted(subfolders, reverse=True))
            for info in infos:
                yield info

    async def stale_temps(self, older_than: timedelta) -> builtins.list[str]:
        """Temporary files older than `older_than`: writes a crash cut short (`documents verify` reports them)."""
        cutoff = datetime.now(UTC).timestamp() - older_than.total_seconds()
        return await asyncio.to_thread(self._stale_temps, cutoff)

    def _stale_temps(self, cutoff: float) -> builtins.list[str]:
        found = []
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                path = os.path.join(folder, name)
                with contextlib.suppress(FileNotFoundError):
                    if name.startswith(TEMP_PREFIX) and os.lstat(path).st_mtime < cutoff:
                        found.append(os.path.relpath(path, self.root).replace(os.sep, "/"))
        return sorted(found)

    async def delete_stale_temps(self, older_than: timedelta) -> int:
        """Removes temporary files left by a crashed `put`, older than `older_than` so that a put in
        progress keeps its file. Returns how many were removed."""
        cutoff = datetime.now(UTC).timestamp() - older_than.total_seconds()
        return await asyncio.to_thread(self._delete_stale_temps, cutoff)

    def _delete_stale_temps(self, cutoff: float) -> int:
        removed = 0
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                if not name.startswith(TEMP_PREFIX):
                    continue
                path = os.path.join(folder, name)
                try:
                    if os.lstat(path).st_mtime < cutoff:
                        os.unlink(path)
                        removed += 1
                except FileNotFoundError:
                    continue
        return removed

    async def close(self) -> None:
        return None


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_size(path: Path) -> int | None:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _unlink_temps(path: Path) -> None:
    """The temporary files of a key's puts that a crash cut short (a put in progress loses its file and fails:
    deletion only happens to keys nobody is writing any more)."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(path.parent):
            if entry.name.startswith(f"{TEMP_PREFIX}{path.name}."):
                _unlink_file(Path(entry.path))


def _unlink_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
        os.unlink(path)


def _scan(root: Path, rel: str, prefix: str) -> tuple[list[BlobInfo], list[str]]:
    """One folder of the walk: its files whose key starts with `prefix` and its subfolders that may hold
    some. Entries vanishing under us (a concurrent delete) are skipped."""
    folder = root.joinpath(*rel.split("/")) if rel else root
    infos: list[BlobInfo] = []
    subfolders: list[str] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return infos, subfolders
    for entry in entries:
        if entry.name.startswith("."):
            continue
        key = f"{rel}/{entry.name}" if rel else entry.name
        try:
            if entry.is_dir(follow_symlinks=False):
                if key.startswith(prefix) or prefix.startswith(key + "/"):
                    subfolders.append(key)
            elif entry.is_file(follow_symlinks=False) and key.startswith(prefix):
                st = entry.stat(follow_symlinks=False)
                infos.append(BlobInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
        except FileNotFoundError:
            continue
    return infos, subfolders


# --- S3 ----------------------------------------------------------------------------------------------------

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_DENIED = {
    "403",
    "AccessDenied",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
}


def _code(exc: Any) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class S3BlobStore:
    """Objects in one bucket of an S3 service (SeaweedFS, MinIO, AWS...).

    One aiobotocore client is created on first use and reused: it holds the connection pool, and creating one
    per call costs milliseconds of endpoint resolution and fresh TLS. The bucket is created on first use when
    missing, so a fresh SeaweedFS or MinIO works without a setup step."""

    def __init__(
        self,
        *,
        endpoint_url: str | None,
        bucket: str,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        max_attempts: int = 3,
    ) -> None:
        if len(bucket) < 3:
            raise ValueError(f"S3 bucket name {bucket!r}: at least 3 characters")
        self.endpoint_url = endpoint_url
        self.bucket = bucket
        self.region = region
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        #: Attempts per call, botocore's "standard" retry mode (backoff with jitter on throttling, 5xx and
        #: connection errors).
        self.max_attempts = max_attempts
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        self._lock = asyncio.Lock()

    def _where(self) -> str:
        return f"bucket {self.bucket!r} at {self.endpoint_url or 'AWS ' + self.region}"

    async def _s3(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                # Imported here: aiobotocore takes over a second to import, which a local store, the CLI and
                # tests that never touch S3 should not pay.
                from aiobotocore.session import get_session
                from botocore.config import Config

                config = Config(
                    signature_version="s3v4",
                    # Self-hosted services answer on one host name; AWS prefers virtual-hosted buckets.
                    s3={"addressing_style": "path" if self.endpoint_url else "auto"},
                    retries={"mode": "standard", "max_attempts": self.max_attempts},
                    connect_timeout=10,
                    read_timeout=60,
                )
                stack = AsyncExitStack()
                try:
                    client = await stack.enter_async_context(
                        get_session().create_client(
                            "s3",
                            endpoint_url=self.endpoint_url,
                            region_name=self.region,
                            aws_access_key_id=self._access_key_id,
                            aws_secret_access_key=self._secret_access_key,
                            config=config,
                        )
                    )
                    await self._create_bucket_if_missing(client)
                except BaseException:
                    # A failed first use (bad credentials, service down) is retried on the next call.
                    await stack.aclose()
                    raise
                self._stack, self._client = stack, client
        return self._client

    async def ensure_bucket(self) -> None:
        """Connects and creates the bucket if missing; raises `BlobStoreError` if the service refuses us."""
        await self._s3()

    async def _create_bucket_if_missing(self, client: Any) -> None:
        with self._errors("check the bucket"):
            try:
                await client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                if _code(exc) not in _NOT_FOUND:
                    raise
            kwargs: dict[str, Any] = {"Bucket": self.bucket}
            if self.region != "us-east-1":  # AWS refuses an explicit us-east-1 constraint
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            try:
                await client.create_bucket(**kwargs)
            except ClientError as exc:
                # Another process created it between our HEAD and our CREATE.
                if _code(exc) != "BucketAlreadyOwnedByYou":
                    raise

    @contextlib.contextmanager
    def _errors(self, doing: str, key: str | None = None) -> Iterator[None]:
        """Turns botocore's errors into `BlobStoreError`s that say what failed and where, naming the access
        key id (not the secret) when the service refuses the credentials."""
        what = f"{doing} {key!r} in {self._where()}" if key else f"{doing}: {self._where()}"
        try:
            yield
        except ClientError as exc:
            code = _code(exc)
            if code in _DENIED:
                raise BlobStoreError(
                    f"S3 refused access ({code}) to {self._where()} with access key id "
                    f"{self._access_key_id!r}: check ESPACE_SANTE_S3_ACCESS_KEY_ID, "
                    "ESPACE_SANTE_S3_SECRET_ACCESS_KEY and the bucket's policy"
                ) from exc
            raise BlobStoreError(f"S3 could not {what}: {exc}") from exc
        except BotoCoreError as exc:
            raise BlobStoreError(f"S3 could not {what}: {exc}") from exc

    async def put(self, key: str, data: bytes) -> None:
        check_key(key)
        client = await self._s3()
        with self._errors("write", key):
            await client.put_object(Bucket=self.bucket, Key=key, Body=data)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        check_key(key)
        _check_range(start, end)
        if end is not None and end == start:
            # An empty range is no HTTP range at all; still say whether the object exists.
            if await self.size(key) is None:
                raise BlobMissing(key)
            return b""
        client = await self._s3()
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        ranged = start > 0 or end is not None
        if ranged:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        with self._errors("read", key):
            try:
                response = await client.get_object(**kwargs)
            except ClientError as exc:
                code = _code(exc)
                if code in _NOT_FOUND:
                    raise BlobMissing(key) from None
                if code == "InvalidRange":
                    # A range starting at or past the end: S3 says 416, a slice says b"".
                    if await self.size(key) is None:
                        raise BlobMissing(key) from None
                    return b""
                raise
            async with response["Body"] as body:
                data: bytes = await body.read()
        if ranged and not response.get("ContentRange"):
            # A service that ignores Range sends the whole object with a 200.
            data = data[start:end]
        return data

    async def size(self, key: str) -> int | None:
        check_key(key)
        client = await self._s3()
        with self._errors("stat", key):
            try:
                head = await client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _code(exc) in _NOT_FOUND:
                    return None
                raise
        return int(head["ContentLength"])

    async def delete(self, key: str) -> None:
        check_key(key)
        client = await self._s3()
        with self._errors("delete", key):
            try:
                await client.delete_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _code(exc) not in _NOT_FOUND:
                    raise

    async def list(self, prefix: str = "", *, page_size: int = DEFAULT_PAGE_SIZE) -> AsyncIterator[BlobInfo]:
        _check_prefix(prefix)
        client = await self._s3()
        paginator = client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
        )
        with self._errors("list", prefix or "/"):
            async for page in pages:
                for item in page.get("Contents", ()):
                    yield BlobInfo(item["Key"], int(item["Size"]), item["LastModified"].astimezone(UTC))

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()


def open_blob_store(settings: Settings) -> BlobStore:
    if settings.blob_backend == "s3":
        return S3BlobStore(
            endpoint_url=settings.s3_endpoint_url,
            bucket=settings.s3_bucket,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
        )
    return LocalBlobStore(settings.blob_path)
