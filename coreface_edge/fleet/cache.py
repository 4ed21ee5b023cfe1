"""The gate's local cache of the fleet gallery: an ordinary gallery file (``gate.gallery``),
filled from the central store's change log. Persons keep their central ids; the last change
applied (the cursor) and the store it came from are in the gallery's ``settings`` table, written
in the same SQLite transaction as the changes, so a crash never leaves a cursor ahead of them.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import CorefaceError
from ..evaluation.scores import l2_normalize
from ..gate import db
from ..gate.gallery import Gallery, model_mismatch
from .store import Pulled


def open_cache(path: str | Path) -> Gallery:
    """The cache file (created if missing); a gallery enrolled locally is refused (its people
    would clash with the fleet's ids and names)."""
    gallery = Gallery(path, create=True)
    settings = dict(gallery._query("SELECT key, value FROM settings"))
    if "fleet_store" not in settings and gallery._query("SELECT 1 FROM persons LIMIT 1"):
        gallery.close()
        raise CorefaceError(f"{path}: a gallery enrolled locally, not a fleet cache: give the gate a new --gallery file for the fleet's cache")
    return gallery


def cursor(gallery: Gallery, store_id: str | None = None) -> int:
    """The last change applied; ``store_id`` given: refuse a cache filled from another store."""
    settings = dict(gallery._query("SELECT key, value FROM settings WHERE key IN ('fleet_store', 'fleet_cursor')"))
    if store_id is not None and settings.get("fleet_store", store_id) != store_id:
        raise CorefaceError(f"{gallery.path}: this cache was filled from another fleet store: give the gate a new --gallery file")
    return int(settings.get("fleet_cursor", 0))


def apply(gallery: Gallery, pulled: Pulled, model: str, store_id: str) -> tuple[int, int]:
    """Apply pulled changes in order, in one transaction; returns (people enrolled, revoked)."""
    if pulled.cursor is None:
        return 0, 0
    enrolled = revoked = 0
    now = time.time()
    with db.transaction(gallery.conn, gallery.path) as conn:
        bound = conn.execute("SELECT value FROM settings WHERE key='model'").fetchone()
        if bound is not None and bound[0] != model:
            raise model_mismatch(gallery.path, bound[0], model)
        conn.execute("INSERT OR IGNORE INTO settings VALUES ('model', ?)", (model,))
        for _, kind, person_id in pulled.changes:
            person = pulled.people.get(person_id)
            if kind == "revoke":
                revoked += conn.execute("DELETE FROM persons WHERE id=?", (person_id,)).rowcount
            elif person is not None and person.vectors:  # enrolled (maybe revoked later in this batch)
                conn.execute("DELETE FROM persons WHERE id=?", (person_id,))  # a change applied twice stays one person
                conn.execute(
                    "INSERT INTO persons (id, name, badge, created, updated) VALUES (?, ?, ?, ?, ?)",
                    (person_id, person.name, person.badge, person.enrolled, now),
                )
                conn.executemany(
                    "INSERT INTO embeddings (person_id, model, vector, quality, source, created) VALUES (?, ?, ?, ?, ?, ?)",
                    [(person_id, model, l2_normalize(v[None])[0].tobytes(), q, s, person.enrolled)
                     for v, q, s in zip(person.vectors, person.qualities, person.sources)],
                )  # fmt: skip
                enrolled += 1
        conn.execute("INSERT OR REPLACE INTO settings VALUES ('fleet_store', ?)", (store_id,))
        conn.execute("INSERT OR REPLACE INTO settings VALUES ('fleet_cursor', ?)", (str(pulled.cursor),))
    return enrolled, revoked


def people(gallery: Gallery) -> int:
    return int(gallery._query("SELECT COUNT(*) FROM persons")[0][0])
