"""The gate's audit log as the outbox of the central audit: events after the pushed watermark
are queued (on disk, in the log itself). Each event's UUID derives from the gate's id (made once
per log) and its local id, so a batch pushed again after a crash is recognised by the server.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

from ..gate import db
from ..gate.audit import AuditLog

STATE_TABLE = "CREATE TABLE IF NOT EXISTS fleet_outbox (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
EVENT_SQL = (
    "SELECT id, time, camera, frame, decision, person_id, person, badge, score, margin, votes, track, quality, total_ms "
    "FROM events WHERE id > ? ORDER BY id LIMIT ?"
)


class Outbox:
    """Pending events of one audit log (created if missing) and the watermark of those pushed."""

    def __init__(self, audit: str | Path, name: str) -> None:
        self.log = AuditLog(audit, create=True)
        self.path, self.name = self.log.path, name
        with db.transaction(self.log.conn, self.path) as conn:
            conn.execute(STATE_TABLE)
            conn.execute("INSERT OR IGNORE INTO fleet_outbox VALUES ('gate', ?)", (str(uuid.uuid4()),))
            conn.execute("INSERT OR IGNORE INTO fleet_outbox VALUES ('pushed', '0')")
            conn.execute("INSERT OR IGNORE INTO fleet_outbox VALUES ('labels_pushed', '0')")
        self.gate = uuid.UUID(self._state("gate"))

    def _state(self, key: str) -> str:
        return self.log.rows("SELECT value FROM fleet_outbox WHERE key=?", (key,))[0][0]

    @property
    def pushed(self) -> int:
        """Local id of the last event the server has acknowledged."""
        return int(self._state("pushed"))

    def queued(self) -> int:
        return int(self.log.rows("SELECT COUNT(*) FROM events WHERE id > ?", (self.pushed,))[0][0])

    def event_uuid(self, local_id: int) -> uuid.UUID:
        return uuid.uuid5(self.gate, str(local_id))

    def pending(self, limit: int) -> list[tuple]:
        """The next ``limit`` queued events as rows for ``FleetStore.push`` (``EVENT_FIELDS`` order)."""
        out = []
        for r in self.log.rows(EVENT_SQL, (self.pushed, limit)):
            local_id, t, *rest, quality, total_ms = r
            out.append((self.event_uuid(local_id), self.gate, self.name, local_id, datetime.fromtimestamp(t, timezone.utc),
                        *rest, quality, total_ms))  # fmt: skip
        return out

    def labels(self) -> tuple[list[tuple], float]:
        """Labels made since the last labels push (the server keys them by event UUID, so one may
        arrive before its event), and the new labels watermark."""
        since = float(self._state("labels_pushed"))
        rows = self.log.rows("SELECT event_id, wrong, labelled FROM labels WHERE labelled > ?", (since,))
        return [(self.event_uuid(e), bool(w), t) for e, w, t in rows], max([since, *(t for _, _, t in rows)])

    def acknowledge(self, last_id: int | None = None, labels_until: float | None = None) -> None:
        """Advance the watermarks after the server committed (a crash before this re-pushes)."""
        with db.transaction(self.log.conn, self.path) as conn:
            if last_id is not None:
                conn.execute("UPDATE fleet_outbox SET value=? WHERE key='pushed'", (str(last_id),))
            if labels_until is not None:
                conn.execute("UPDATE fleet_outbox SET value=? WHERE key='labels_pushed'", (repr(labels_until),))

    def close(self) -> None:
        self.log.close()
