"""The audit log: one SQLite file (WAL), one committed transaction per decision.

A crash or power cut loses at most the decision being written. ``runs`` records each gate
session (source, model, threshold, frames); ``labels`` holds the operator's verdicts
("this event was wrong") that the trial report turns into false-accept/-reject rates.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

from ..errors import CorefaceError
from . import db

KIND = "audit"
VERSION = 1
SCHEMA = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    stopped REAL,
    camera TEXT NOT NULL,
    model TEXT NOT NULL,
    threshold REAL NOT NULL,
    frames INTEGER NOT NULL DEFAULT 0,
    settings TEXT NOT NULL
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    time REAL NOT NULL,
    camera TEXT NOT NULL,
    frame TEXT,
    decision TEXT NOT NULL,
    person_id INTEGER,
    person TEXT,
    badge TEXT,
    score REAL,
    margin REAL,
    votes INTEGER,
    track INTEGER,
    quality TEXT,
    detect_ms REAL,
    align_ms REAL,
    embed_ms REAL,
    match_ms REAL,
    total_ms REAL,
    snapshot BLOB
);
CREATE INDEX events_time ON events(time);
CREATE TABLE labels (
    event_id INTEGER PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
    wrong INTEGER NOT NULL,
    labelled REAL NOT NULL
)
"""
# Added after schema v1 (created on first use, so v1 files stay readable by older releases): what
# became of each accept's door action (ok | failed | timeout | stale | queue_full | shutdown).
ACTIONS_TABLE = """CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY,
    event_id INTEGER REFERENCES events(id),
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT,
    waited_s REAL,
    ran_s REAL,
    time REAL NOT NULL
)"""
# Added with the liveness check (created on first use, as ``actions``): the liveness score of each
# decision taken with liveness on (decision ``spoof``: a presentation attack).
LIVENESS_TABLE = """CREATE TABLE IF NOT EXISTS liveness (
    event_id INTEGER PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
    score REAL NOT NULL,
    liveness_ms REAL
)"""
# The operator's verdict on what was presented: an attack (photo, screen, mask) or a live person.
PRESENTATIONS_TABLE = """CREATE TABLE IF NOT EXISTS presentations (
    event_id INTEGER PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
    attack INTEGER NOT NULL,
    labelled REAL NOT NULL
)"""
EVENT_COLUMNS = (
    "time", "camera", "frame", "decision", "person_id", "person", "badge", "score", "margin", "votes", "track",
    "quality", "detect_ms", "align_ms", "embed_ms", "match_ms", "total_ms",
)  # fmt: skip


@dataclass(frozen=True)
class Event:
    """One decision as logged (snapshot: a JPEG of the aligned face, or None)."""

    time: float
    camera: str
    frame: str  # file name (folder source) or frame index
    decision: str
    person_id: int | None
    person: str | None
    badge: str | None
    score: float
    margin: float
    votes: int
    track: int
    quality: dict[str, float]
    timings: dict[str, float]
    snapshot: np.ndarray | None = None
    live: float | None = None  # liveness score (mean over the deciding frames); None: liveness off

    def as_json(self, event_id: int) -> str:
        """The JSON line printed on stdout for this decision."""
        live = {} if self.live is None else {"live": round(self.live, 4)}
        return json.dumps(
            {
                "id": event_id,
                "time": round(self.time, 3),
                "camera": self.camera,
                "frame": self.frame,
                "decision": self.decision,
                "person": self.person,
                "badge": self.badge,
                "score": round(self.score, 4),
                "margin": round(self.margin, 4),
                "votes": self.votes,
                "track": self.track,
                "quality": self.quality,
                **live,
                "latency_ms": {k: round(v, 2) for k, v in self.timings.items()},
            }
        )


class AuditLog:
    """Append-only decision log. ``start_run`` once, ``write`` per decision, ``finish_run`` at stop."""

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        self.conn = db.connect(self.path, KIND, VERSION, SCHEMA, create)
        self.run_id: int | None = None

    def __enter__(self) -> "AuditLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    def start_run(self, camera: str, model: str, threshold: float, settings: dict[str, Any]) -> int:
        with db.transaction(self.conn, self.path) as conn:
            self.run_id = conn.execute(
                "INSERT INTO runs (started, camera, model, threshold, settings) VALUES (?, ?, ?, ?, ?)",
                (time.time(), camera, model, threshold, json.dumps(settings, sort_keys=True)),
            ).lastrowid
        return int(self.run_id)

    def write(self, event: Event) -> int:
        """Commit one decision in its own transaction; returns its event id."""
        snapshot = None
        if event.snapshot is not None:
            ok, jpeg = cv2.imencode(".jpg", event.snapshot, [cv2.IMWRITE_JPEG_QUALITY, 90])
            snapshot = jpeg.tobytes() if ok else None
        t = event.timings
        values = (
            event.time, event.camera, event.frame, event.decision, event.person_id, event.person, event.badge, event.score,
            event.margin, event.votes, event.track, json.dumps(event.quality), t.get("detect"), t.get("align"),
            t.get("embed"), t.get("match"), t.get("total"),
        )  # fmt: skip
        with db.transaction(self.conn, self.path) as conn:
            cur = conn.execute(
                f"INSERT INTO events (run_id, {', '.join(EVENT_COLUMNS)}, snapshot) "
                f"VALUES ({', '.join('?' * (len(EVENT_COLUMNS) + 2))})",
                (self.run_id, *values, snapshot),
            )
            if event.live is not None:
                conn.execute(LIVENESS_TABLE)
                conn.execute("INSERT INTO liveness VALUES (?, ?, ?)", (cur.lastrowid, event.live, t.get("liveness")))
        return int(cur.lastrowid)

    def record_actions(self, outcomes: Iterable[Any]) -> None:
        """Commit what became of door actions (``ActionOutcome``s) in one transaction."""
        rows = [(o.event_id, o.action, o.outcome, o.detail, o.waited_s, o.ran_s, time.time()) for o in outcomes]
        if rows:
            with db.transaction(self.conn, self.path) as conn:
                conn.execute(ACTIONS_TABLE)
                conn.executemany("INSERT INTO actions (event_id, action, outcome, detail, waited_s, ran_s, time) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def finish_run(self, frames: int) -> None:
        with db.transaction(self.conn, self.path) as conn:
            conn.execute("UPDATE runs SET stopped=?, frames=? WHERE id=?", (time.time(), frames, self.run_id))

    def update_frames(self, frames: int) -> None:
        """Checkpoint the frame count of the current run (so a killed run still reports it)."""
        with db.transaction(self.conn, self.path) as conn:
            conn.execute("UPDATE runs SET frames=? WHERE id=?", (frames, self.run_id))

    # --- reading and labelling -----------------------------------------------------------
    def rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise db.describe(self.path, exc) from None

    def label(self, event_id: int, wrong: bool) -> None:
        """Record the operator's verdict on one event (replaces an earlier one)."""
        if not self.rows("SELECT 1 FROM events WHERE id=?", (event_id,)):
            raise CorefaceError(f"{self.path}: no event {event_id}")
        with db.transaction(self.conn, self.path) as conn:
            conn.execute("INSERT OR REPLACE INTO labels VALUES (?, ?, ?)", (event_id, int(wrong), time.time()))

    def label_presentation(self, event_id: int, attack: bool) -> None:
        """Record what was presented at ``event_id``: an attack or a live (bona fide) person."""
        if not self.rows("SELECT 1 FROM events WHERE id=?", (event_id,)):
            raise CorefaceError(f"{self.path}: no event {event_id}")
        with db.transaction(self.conn, self.path) as conn:
            conn.execute(PRESENTATIONS_TABLE)
            conn.execute("INSERT OR REPLACE INTO presentations VALUES (?, ?, ?)", (event_id, int(attack), time.time()))

    def table_exists(self, name: str) -> bool:
        return bool(self.rows("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)))

    def label_csv(self, csv_path: str | Path) -> int:
        """Import verdicts from a CSV with columns ``event_id,wrong`` (wrong: 1/0, yes/no, true/false)."""
        csv_path = Path(csv_path)
        try:
            with open(csv_path, newline="") as fh:
                rows = list(csv.DictReader(fh))
        except OSError as exc:
            raise CorefaceError(f"{csv_path}: cannot read ({exc.strerror})") from None
        verdicts = []
        for line, row in enumerate(rows, start=2):
            try:
                event_id = int(row["event_id"])
                wrong = str(row["wrong"]).strip().lower()
            except (KeyError, TypeError, ValueError):
                raise CorefaceError(f"{csv_path}:{line}: expected columns event_id,wrong") from None
            if wrong not in ("1", "0", "yes", "no", "true", "false"):
                raise CorefaceError(f"{csv_path}:{line}: wrong must be 1/0, yes/no or true/false, got {wrong!r}")
            verdicts.append((event_id, int(wrong in ("1", "yes", "true"))))
        known = {r[0] for r in self.rows("SELECT id FROM events")}
        missing = sorted({e for e, _ in verdicts} - known)
        if missing:
            raise CorefaceError(f"{csv_path}: events not in {self.path.name}: {missing[:10]}")
        now = time.time()
        with db.transaction(self.conn, self.path) as conn:
            conn.executemany("INSERT OR REPLACE INTO labels VALUES (?, ?, ?)", [(e, w, now) for e, w in verdicts])
        return len(verdicts)
