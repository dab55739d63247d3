"""One SQLite file shared by the threads of a server: the connection settings every llmlab store uses."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

StoreT = TypeVar("StoreT", bound="LockedSQLite")


class LockedSQLite:
    """An open SQLite file: one connection in autocommit mode usable from any thread, the WAL journal (readers do
    not block the writer), foreign keys on, and one lock serialising every statement (`_all` for reads; writers
    take `self._lock` around their transaction). Subclasses add their schema and queries."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA foreign_keys=ON")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self: StoreT) -> StoreT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()
