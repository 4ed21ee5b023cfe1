"""SQLite plumbing shared by the gallery and the audit log: WAL, foreign keys, schema version.

Every failure a user can cause (a locked file, a corrupt or foreign file, a newer schema)
becomes a one-line ``CorefaceError``; nothing is ever rewritten in place.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import CorefaceError

BUSY_TIMEOUT_S = 5.0


def describe(path: str | Path, exc: sqlite3.Error) -> CorefaceError:
    """Turn an sqlite3 error into the one-line message a user can act on."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return CorefaceError(f"{path}: database is locked by another process (is a gate still running on it?)")
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return CorefaceError(f"{path}: not a valid SQLite database (corrupt or wrong file); restore it from a backup")
    if "readonly" in text or "unable to open" in text:
        return CorefaceError(f"{path}: cannot open the database for writing ({text})")
    return CorefaceError(f"{path}: database error ({text})")


def connect(path: str | Path, kind: str, version: int, schema: str, create: bool) -> sqlite3.Connection:
    """Open (or create) a SQLite file holding ``kind`` at schema ``version``.

    WAL journal with ``synchronous=FULL`` (a committed row survives a power cut), foreign
    keys on; ``schema`` is a series of ``;``-separated CREATE statements. A file of another kind, a newer schema or a corrupt file is refused.
    """
    path = Path(path)
    if not path.exists() and not create:
        raise CorefaceError(f"{path}: no such {kind} file")
    if path.is_dir():
        raise CorefaceError(f"{path}: is a directory, expected a {kind} SQLite file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise describe(path, exc) from None
    try:
        conn.execute("PRAGMA journal_mode=WAL").fetchone()
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise CorefaceError(f"{path}: SQLite integrity check failed ({check}); restore it from a backup")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            with transaction(conn, path):
                for statement in filter(str.strip, schema.split(";")):
                    conn.execute(statement)
                conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                conn.executemany("INSERT INTO meta VALUES (?, ?)", [("kind", kind), ("schema_version", str(version))])
        else:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall()) if "meta" in tables else {}
            if meta.get("kind") != kind:
                raise CorefaceError(f"{path}: not a coreface-edge {kind} file (it holds {sorted(tables)})")
            found = int(meta.get("schema_version", "0"))
            if found > version:
                raise CorefaceError(f"{path}: {kind} schema v{found} is newer than this coreface-edge (v{version}); upgrade")
    except sqlite3.Error as exc:
        conn.close()
        raise describe(path, exc) from None
    except CorefaceError:
        conn.close()
        raise
    return conn


class transaction:
    """``with transaction(conn, path):`` BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error.

    sqlite3 errors inside become one-line ``CorefaceError`` naming ``path``.
    """

    def __init__(self, conn: sqlite3.Connection, path: str | Path) -> None:
        self.conn, self.path = conn, path

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise describe(self.path, exc) from None
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
                return False
            except sqlite3.Error as err:
                self.conn.execute("ROLLBACK")
                raise describe(self.path, err) from None
        self.conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise describe(self.path, exc) from None
        return False
