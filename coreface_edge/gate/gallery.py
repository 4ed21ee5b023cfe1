"""The gallery: one SQLite file of enrolled people and their face embeddings.

Tables: ``persons`` (unique display name, optional unique badge), ``embeddings`` (several
L2-normalised float32 vectors per person, each tagged with the model fingerprint), ``crops``
(aligned face JPEGs, only with ``--keep-crops``) and ``settings`` (the model the gallery is
bound to). Deleting a person cascades to everything stored about them.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from ..atomic import atomic_path
from ..errors import CorefaceError
from ..evaluation.scores import l2_normalize
from . import db

KIND = "gallery"
VERSION = 1
BUNDLE_FORMAT = "coreface-edge-gallery-bundle/1"
SCHEMA = """
CREATE TABLE persons (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    badge TEXT UNIQUE,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE embeddings (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES persons(id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    vector BLOB NOT NULL,
    quality TEXT,
    source TEXT,
    created REAL NOT NULL
);
CREATE INDEX embeddings_person ON embeddings(person_id);
CREATE TABLE crops (
    embedding_id INTEGER PRIMARY KEY REFERENCES embeddings(id) ON DELETE CASCADE,
    jpeg BLOB NOT NULL
);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)
"""
ALL_ROWS_SQL = (
    "SELECT p.name, p.badge, p.created, e.vector, e.quality, e.source, c.jpeg FROM embeddings e "
    "JOIN persons p ON p.id = e.person_id LEFT JOIN crops c ON c.embedding_id = e.id ORDER BY p.id, e.id"
)


@dataclass(frozen=True)
class Person:
    id: int
    name: str
    badge: str | None
    created: float
    updated: float
    n_embeddings: int


@dataclass(frozen=True)
class GalleryMatrix:
    """Everything matching needs, in memory: embeddings sorted by person.

    embeddings: (M, D) float32 unit rows; starts: (P,) index of each person's first row
    (rows of person p are ``starts[p]:starts[p+1]``); ids/names/badges: per person.
    """

    embeddings: np.ndarray
    starts: np.ndarray
    ids: tuple[int, ...]
    names: tuple[str, ...]
    badges: tuple[str | None, ...]
    model: str

    def __len__(self) -> int:
        return len(self.ids)

    def index_of_badge(self, badge: str) -> int:
        try:
            return self.badges.index(badge)
        except ValueError:
            raise CorefaceError(f"badge {badge!r}: not enrolled in this gallery") from None


def model_mismatch(path: str | Path, enrolled: str, given: str) -> CorefaceError:
    return CorefaceError(
        f"{path}: gallery was enrolled with model {enrolled[:12]}, this is {given[:12]}: re-enroll with this model"
    )


class Gallery:
    """A gallery file. Use as a context manager; every write is one transaction."""

    def __init__(self, path: str | Path, create: bool = False) -> None:
        self.path = Path(path)
        self.conn = db.connect(self.path, KIND, VERSION, SCHEMA, create)

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    # --- reading -------------------------------------------------------------------------
    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise db.describe(self.path, exc) from None

    @property
    def model(self) -> str | None:
        """Fingerprint of the model the gallery is bound to (None until the first enrollment)."""
        rows = self._query("SELECT value FROM settings WHERE key='model'")
        return rows[0][0] if rows else None

    def persons(self) -> list[Person]:
        rows = self._query(
            "SELECT p.id, p.name, p.badge, p.created, p.updated, COUNT(e.id) FROM persons p "
            "LEFT JOIN embeddings e ON e.person_id = p.id GROUP BY p.id ORDER BY p.name"
        )
        return [Person(*r) for r in rows]

    def find(self, ref: str) -> Person:
        """A person by id, display name (ignoring case) or badge; ``id:N``, ``name:X``, ``badge:B`` pick one field.

        A reference that matches more than one person (a badge that is another person's id,
        say) is refused, naming the candidates: nothing is ever done to the wrong person.
        """
        field, colon, value = ref.partition(":")
        keys: dict[str, Callable[[Person], str | None]] = {
            "id": lambda p: str(p.id), "name": lambda p: name_key(p.name), "badge": lambda p: p.badge,
        }  # fmt: skip
        if colon and field in keys:
            wanted = name_key(value) if field == "name" else value
            matches = [p for p in self.persons() if keys[field](p) == wanted]
            how = f"by {field}"
        else:
            matches = [p for p in self.persons() if ref in (str(p.id), p.badge) or name_key(ref) == name_key(p.name)]
            how = "by id, name or badge"
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise CorefaceError(f"{self.path}: no enrolled person {ref!r} ({how})")
        candidates = "; ".join(f"id {p.id} {p.name!r} (badge {p.badge or '-'})" for p in sorted(matches, key=lambda p: p.id))
        raise CorefaceError(
            f"{self.path}: {ref!r} matches {len(matches)} people: {candidates}; nothing done: "
            f"say which with id:N, badge:B or name:NAME"
        )

    def check_new_person(self, name: str, badge: str | None = None) -> None:
        """Refuse (one line) a name already enrolled (ignoring case and spacing) or a badge already held.

        ``add_person`` checks again inside its transaction; enrollment calls this first, so a
        clash is reported before any photo is processed.
        """
        _refuse_clash(self.path, self._query("SELECT name, badge FROM persons"), name, badge)

    def check_writable(self) -> None:
        """Refuse (one line) a gallery this process may read but not write (a read-only file or
        folder), before any work is done for a change to it: a write that changes nothing."""
        with db.transaction(self.conn, self.path) as conn:
            conn.execute("DELETE FROM settings WHERE 0")

    def embeddings_of(self, person_id: int) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT e.id, e.model, e.quality, e.source, e.created, c.jpeg IS NOT NULL FROM embeddings e "
            "LEFT JOIN crops c ON c.embedding_id = e.id WHERE e.person_id=? ORDER BY e.id",
            (person_id,),
        )
        keys = ("id", "model", "quality", "source", "created", "crop")
        return [dict(zip(keys, r)) for r in rows]

    def matrix(self, model: str) -> GalleryMatrix:
        """Load all embeddings for matching; refuse another model's embeddings or an empty gallery."""
        enrolled = self.model
        if enrolled is None or not self._query("SELECT 1 FROM embeddings LIMIT 1"):
            raise CorefaceError(f"{self.path}: gallery is empty: enroll someone first (coreface-edge enroll)")
        if enrolled != model:
            raise model_mismatch(self.path, enrolled, model)
        rows = self._query(
            "SELECT p.id, p.name, p.badge, e.vector, e.model FROM embeddings e JOIN persons p ON p.id = e.person_id "
            "ORDER BY p.id, e.id"
        )
        if any(r[4] != model for r in rows):
            raise model_mismatch(self.path, next(r[4] for r in rows if r[4] != model), model)
        vectors = np.stack([np.frombuffer(r[3], dtype=np.float32) for r in rows])
        person_ids = np.array([r[0] for r in rows])
        starts = np.flatnonzero(np.r_[True, person_ids[1:] != person_ids[:-1]])
        return GalleryMatrix(
            embeddings=np.ascontiguousarray(vectors),
            starts=starts,
            ids=tuple(int(rows[s][0]) for s in starts),
            names=tuple(rows[s][1] for s in starts),
            badges=tuple(rows[s][2] for s in starts),
            model=model,
        )

    def crop(self, embedding_id: int) -> bytes | None:
        rows = self._query("SELECT jpeg FROM crops WHERE embedding_id=?", (embedding_id,))
        return rows[0][0] if rows else None

    # --- writing -------------------------------------------------------------------------
    def _bind_model(self, conn: sqlite3.Connection, model: str) -> None:
        row = conn.execute("SELECT value FROM settings WHERE key='model'").fetchone()
        if row is None:
            conn.execute("INSERT INTO settings VALUES ('model', ?)", (model,))
        elif row[0] != model:
            raise model_mismatch(self.path, row[0], model)

    def add_person(
        self,
        name: str,
        embeddings: np.ndarray,
        model: str,
        badge: str | None = None,
        qualities: Sequence[dict[str, float]] | None = None,
        sources: Sequence[str] | None = None,
        crops: np.ndarray | None = None,
        created: float | None = None,
    ) -> int:
        """Enroll one person with ``(K, D)`` embeddings in a single transaction; returns the id."""
        name = name.strip()
        if not name:
            raise CorefaceError(f"{self.path}: a person needs a non-empty --name")
        self.check_new_person(name, badge)  # before the embeddings are touched; again in the transaction
        embeddings = l2_normalize(np.atleast_2d(embeddings))
        if embeddings.shape[0] == 0:
            raise CorefaceError(f"{self.path}: no usable face for {name!r}; nothing enrolled")
        now = time.time() if created is None else created
        with db.transaction(self.conn, self.path) as conn:
            self._bind_model(conn, model)
            dim = conn.execute("SELECT length(vector) / 4 FROM embeddings LIMIT 1").fetchone()
            if dim and dim[0] != embeddings.shape[1]:
                raise CorefaceError(f"{self.path}: embeddings are {embeddings.shape[1]}-d, gallery holds {dim[0]}-d")
            _refuse_clash(self.path, conn.execute("SELECT name, badge FROM persons").fetchall(), name, badge)
            person_id = conn.execute(
                "INSERT INTO persons (name, badge, created, updated) VALUES (?, ?, ?, ?)", (name, badge or None, now, now)
            ).lastrowid
            for k, vector in enumerate(embeddings):
                quality = json.dumps(qualities[k]) if qualities else None
                source = sources[k] if sources else None
                emb_id = conn.execute(
                    "INSERT INTO embeddings (person_id, model, vector, quality, source, created) VALUES (?, ?, ?, ?, ?, ?)",
                    (person_id, model, vector.astype(np.float32).tobytes(), quality, source, now),
                ).lastrowid
                if crops is not None:
                    ok, jpeg = cv2.imencode(".jpg", crops[k], [cv2.IMWRITE_JPEG_QUALITY, 95])
                    conn.execute("INSERT INTO crops VALUES (?, ?)", (emb_id, jpeg.tobytes()))
        return int(person_id)

    def remove(self, ref: str) -> Person:
        """Delete a person and everything stored about them (embeddings, crops)."""
        person = self.find(ref)
        with db.transaction(self.conn, self.path) as conn:
            conn.execute("DELETE FROM persons WHERE id=?", (person.id,))
        return person

    # --- moving a gallery between gates ----------------------------------------------------
    def export_bundle(self, target: str | Path) -> int:
        """Write every person and embedding (and kept crops) to one ``.npz`` bundle, atomically."""
        rows = self._query(ALL_ROWS_SQL)
        if not rows:
            raise CorefaceError(f"{self.path}: gallery is empty, nothing to export")
        meta = {
            "format": BUNDLE_FORMAT,
            "model": self.model,
            "rows": [{"name": r[0], "badge": r[1], "created": r[2], "quality": r[4], "source": r[5]} for r in rows],
        }
        arrays = {
            "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            "embeddings": np.stack([np.frombuffer(r[3], dtype=np.float32) for r in rows]),
        }
        for k, r in enumerate(rows):
            if r[6] is not None:
                arrays[f"crop_{k}"] = np.frombuffer(r[6], dtype=np.uint8)
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        return len({r[0] for r in rows})

    def import_from(self, source: str | Path) -> list[str]:
        """Add the people of a ``.npz`` bundle or of another gallery file, in one transaction.

        The source's model fingerprint must match this gallery's; a name already enrolled
        here refuses the whole import (nothing is changed).
        """
        model, people = read_people(source)
        here = self.persons()
        taken = {name_key(p.name) for p in here}
        clash = sorted(n for n in people if name_key(n) in taken)
        if clash:
            raise CorefaceError(f"{source}: already enrolled here: {', '.join(clash)} (remove them first)")
        twins = _case_twins(people)
        if twins:
            raise CorefaceError(f"{source}: names differ only in case or spacing: {', '.join(map(repr, twins))} (rename one first)")
        badges = {p.badge for p in here if p.badge}
        held = sorted(f"{e['badge']} ({n})" for n, e in people.items() if e["badge"] and e["badge"] in badges)
        if held:
            raise CorefaceError(f"{source}: badges already held here: {', '.join(held)} (remove them first)")
        if self.model is not None and self.model != model:
            raise model_mismatch(source, model, self.model)
        with db.transaction(self.conn, self.path) as conn:
            self._bind_model(conn, model)
            for name, entry in people.items():
                person_id = conn.execute(
                    "INSERT INTO persons (name, badge, created, updated) VALUES (?, ?, ?, ?)",
                    (name, entry["badge"], entry["created"], time.time()),
                ).lastrowid
                for vector, quality, src, jpeg in entry["rows"]:
                    emb_id = conn.execute(
                        "INSERT INTO embeddings (person_id, model, vector, quality, source, created) VALUES (?, ?, ?, ?, ?, ?)",
                        (person_id, model, l2_normalize(vector[None])[0].tobytes(), quality, src, entry["created"]),
                    ).lastrowid
                    if jpeg is not None:
                        conn.execute("INSERT INTO crops VALUES (?, ?)", (emb_id, jpeg))
        return sorted(people)


def name_key(name: str) -> str:
    """What makes two display names the same: case and runs of spaces are ignored."""
    return " ".join(name.split()).casefold()


def _refuse_clash(path: Path, rows: Sequence[tuple[str, str | None]], name: str, badge: str | None) -> None:
    key = name_key(name)
    for other, other_badge in rows:
        if name_key(other) == key:
            same = "" if other == name.strip() else f" as {other!r} (names are unique ignoring case and spacing)"
            raise CorefaceError(f"{path}: {name.strip()!r} is already enrolled{same}: choose another --name or remove it first")
    if badge:
        for other, other_badge in rows:
            if other_badge == badge:
                raise CorefaceError(f"{path}: badge {badge!r} already belongs to {other!r} (remove it first or choose another --badge)")


def _case_twins(people: dict[str, Any]) -> list[str]:
    seen: dict[str, str] = {}
    twins: list[str] = []
    for name in people:
        first = seen.setdefault(name_key(name), name)
        if first != name:
            twins += [first, name]
    return twins


def read_people(source: str | Path) -> tuple[str, dict[str, dict[str, Any]]]:
    """(model, {name: {badge, created, rows: [(vector, quality, source, jpeg)]}}) from a bundle or gallery."""
    source = Path(source)
    if not source.is_file():
        raise CorefaceError(f"{source}: no such file")
    with open(source, "rb") as fh:
        header = fh.read(16)
    people: dict[str, dict[str, Any]] = {}
    if header.startswith(b"SQLite format 3"):
        with Gallery(source) as other:
            model = other.model
            rows = other._query(ALL_ROWS_SQL)
            vectors = [np.frombuffer(r[3], dtype=np.float32) for r in rows]
            items = [(r[0], r[1], r[2], v, r[4], r[5], r[6]) for r, v in zip(rows, vectors)]
    else:
        try:
            with np.load(io.BytesIO(source.read_bytes()), allow_pickle=False) as npz:
                meta = json.loads(npz["meta"].tobytes().decode())
                vectors = list(npz["embeddings"])
                crops = {k: npz[k].tobytes() for k in npz.files if k.startswith("crop_")}
        except (ValueError, KeyError, OSError, json.JSONDecodeError):
            raise CorefaceError(f"{source}: not a gallery bundle (.npz from 'gallery export') or gallery file") from None
        if meta.get("format") != BUNDLE_FORMAT or len(meta["rows"]) != len(vectors):
            raise CorefaceError(f"{source}: not a {BUNDLE_FORMAT} file")
        model = meta["model"]
        items = [
            (m["name"], m["badge"], m["created"], v, m["quality"], m["source"], crops.get(f"crop_{k}"))
            for k, (m, v) in enumerate(zip(meta["rows"], vectors))
        ]
    if not items or not model:
        raise CorefaceError(f"{source}: holds no enrolled person")
    for name, badge, created, vector, quality, src, jpeg in items:
        entry = people.setdefault(name, {"badge": badge, "created": created, "rows": []})
        entry["rows"].append((np.asarray(vector, dtype=np.float32), quality, src, jpeg))
    return model, people


class GalleryWatcher:
    """The gate's gallery: loaded once, then reloaded when another process commits to the file
    (``enroll``, ``gallery remove`` while the gate runs), noticed through SQLite's ``data_version``."""

    def __init__(self, path: str | Path) -> None:
        self.gallery, self.model = Gallery(path), ""
        self._version = -1

    def _data_version(self) -> int:
        return int(self.gallery.conn.execute("PRAGMA data_version").fetchone()[0])

    def load(self, model: str) -> GalleryMatrix:
        """The matrix for ``model`` now; later changes show in :meth:`poll`."""
        self.model, self._version = model, self._data_version()
        return self.gallery.matrix(model)

    def poll(self) -> GalleryMatrix | None:
        """The reloaded matrix if the file changed since the last load, else None."""
        version = self._data_version()
        if version == self._version:
            return None
        self._version = version
        return self.gallery.matrix(self.model)

    def close(self) -> None:
        self.gallery.close()
