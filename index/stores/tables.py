"""Tables that one part of hoidap (the bot's state, the web registry) keeps in a shared PostgreSQL database:
created together by whichever process comes first, and versioned, so an older hoidap never writes into a
layout it does not know."""

from __future__ import annotations

from dataclasses import dataclass

from index.stores.postgres import DatabaseError, describe_url


@dataclass(frozen=True)
class TableSet:
    """The statements that create one part's tables, the table holding their layout version, and the
    advisory lock taken while they are created or checked (so that processes starting at once do not race)."""

    statements: tuple[str, ...]
    version_table: str
    version: int
    lock: int
    what: str  # for messages: "The bot's tables"
    what_vi: str  # "Các bảng của bot"


class TableVersionError(DatabaseError):
    """The tables were laid out by a newer hoidap than this one."""


def create_tables(connection, tables: TableSet, url: str) -> None:
    """Create the tables if they are missing and check their layout, in one transaction under the lock."""
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (tables.lock,))
        for statement in tables.statements:
            connection.execute(statement)
        connection.execute(f"INSERT INTO {tables.version_table} (version) VALUES (%s) ON CONFLICT DO NOTHING",
                           (tables.version,))
        check_version(connection, tables, url)


def tables_exist(connection, tables: TableSet) -> bool:
    """Whether any process ever created these tables in this database."""
    return connection.execute("SELECT to_regclass(%s) IS NOT NULL", (tables.version_table,)).fetchone()[0]


def check_version(connection, tables: TableSet, url: str) -> None:
    """Refuse tables laid out by a newer hoidap, with one message naming the database."""
    [(version,)] = connection.execute(f"SELECT version FROM {tables.version_table}").fetchall()
    if version > tables.version:
        where = describe_url(url)
        raise TableVersionError(
            f"{tables.what} in the database at {where} were made by a newer hoidap (layout {version}, this "
            f"one knows {tables.version}): upgrade hoidap on this machine.",
            vi=f"{tables.what_vi} trong cơ sở dữ liệu tại {where} do một phiên bản hoidap mới hơn tạo ra (bố cục "
               f"{version}, bản này chỉ biết {tables.version}): hãy nâng cấp hoidap trên máy này.")
