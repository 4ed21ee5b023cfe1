"""The central store on PostgreSQL: enroll, revoke, pull changes, push audit events, search.

Writers of the change log (enroll, revoke) serialise on an advisory lock, so change ids become
visible in order and a gate's cursor (the last change id it applied) never skips one. Audit
events are inserted idempotently (their UUID is the key): a batch pushed twice stores once.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ..errors import CorefaceError
from ..gate.gallery import name_key
from . import dsn as dsns
from . import schema

PULL_CHANGES = 1000
HNSW_INDEX = "templates_hnsw"
EVENT_FIELDS = (
    "event", "gate", "gate_name", "local_id", "time", "camera", "frame", "decision", "person_id", "person", "badge",
    "score", "margin", "votes", "track", "quality", "total_ms",
)  # fmt: skip


@dataclass(frozen=True)
class Enrolled:
    """One person as pulled by a gate: the central id, and the templates of the gate's model."""

    id: int
    name: str
    badge: str | None
    enrolled: float
    vectors: list[np.ndarray] = field(default_factory=list)
    qualities: list[str | None] = field(default_factory=list)
    sources: list[str | None] = field(default_factory=list)


@dataclass(frozen=True)
class Pulled:
    """Changes after a cursor, in order: ``(change id, kind, person id)``; the people enrolled."""

    changes: list[tuple[int, str, int]]
    people: dict[int, Enrolled]
    refused: int  # templates of another model, never applied

    @property
    def cursor(self) -> int | None:
        return self.changes[-1][0] if self.changes else None


class FleetStore:
    """A connection to the fleet server. ``check_schema=False`` only for ``fleet init``."""

    def __init__(self, dsn: str, check_schema: bool = True) -> None:
        self.dsn, self.server = dsn, dsns.describe_server(dsn)
        self._dim: int | None = None
        self.conn = dsns.connect(dsn)
        try:
            if check_schema:
                with self.transaction():
                    schema.check(self.conn, self.server)
                self.register()
        except Exception:
            self.conn.close()
            raise

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """One transaction; server errors become one line (a lost connection: ``Unreachable``)."""
        pg = dsns.psycopg()
        try:
            with self.conn.transaction():
                yield self.conn
        except (pg.OperationalError, pg.InterfaceError) as exc:
            raise dsns.Unreachable(f"{self.server}: lost the connection ({dsns.scrub(self.dsn, exc)})") from None
        except pg.errors.InsufficientPrivilege as exc:
            raise CorefaceError(f"{self.server}: {dsns.scrub(self.dsn, exc)} (a gate's login may only read templates and insert events)") from None
        except pg.Error as exc:
            raise CorefaceError(f"{self.server}: {dsns.scrub(self.dsn, exc)}") from None

    def register(self) -> None:
        from pgvector.psycopg import register_vector

        with self.transaction() as conn:  # a connection lost here is Unreachable, like any other query
            register_vector(conn)

    def __enter__(self) -> "FleetStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    # --- settings ------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        with self.transaction():
            return dict(self.conn.execute("SELECT key, value FROM fleet_meta").fetchall())

    def check_model(self, model: str) -> dict[str, str]:
        """Refuse a gate whose model is not the one the fleet's templates come from."""
        meta = self.meta()
        bound = meta.get("model")
        if bound is not None and bound != model:
            raise CorefaceError(
                f"{self.server}: the fleet's templates come from model {bound[:12]}, this gate runs {model[:12]}: "
                f"run the fleet's model or re-enroll everyone with this one"
            )
        return meta

    # --- admin: enroll and revoke --------------------------------------------------------
    def _bind_model(self, model: str, dim: int) -> None:
        """First enrollment: the fleet takes this model and dimension, and the HNSW index."""
        meta = dict(self.conn.execute("SELECT key, value FROM fleet_meta").fetchall())
        if "model" not in meta:
            self.conn.execute("INSERT INTO fleet_meta VALUES ('model', %s), ('dim', %s)", (model, str(dim)))
            self.conn.execute(
                f"CREATE INDEX IF NOT EXISTS {HNSW_INDEX} ON templates USING hnsw ((embedding::vector({dim})) vector_ip_ops)"
            )
            return
        if meta["model"] != model:
            raise CorefaceError(
                f"{self.server}: templates of model {model[:12]} refused: the fleet holds model {meta['model'][:12]} "
                f"(enroll with that model); nothing stored"
            )
        if int(meta["dim"]) != dim:
            raise CorefaceError(f"{self.server}: {dim}-d templates refused: the fleet holds {meta['dim']}-d; nothing stored")

    def enroll(self, model: str, people: dict[str, dict[str, Any]]) -> dict[str, int]:
        """Add everyone of ``people`` (``gallery.read_people`` format) in one transaction; returns
        name -> central id. A name or badge already active in the fleet refuses the whole batch.
        Face images are never sent: templates only."""
        if not people:
            return {}
        dims = {len(row[0]) for entry in people.values() for row in entry["rows"]}
        if len(dims) != 1:
            raise CorefaceError(f"{self.server}: templates of several sizes {sorted(dims)} refused; nothing stored")
        ids: dict[str, int] = {}
        with self.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (schema.LOCK_KEY,))
            self._bind_model(model, dims.pop())
            active = self.conn.execute("SELECT name, name_key, badge FROM persons WHERE revoked IS NULL").fetchall()
            by_key = {key: name for name, key, _ in active}
            badges = {badge: name for name, _, badge in active if badge}
            for name, entry in people.items():
                if name_key(name) in by_key:
                    raise CorefaceError(f"{self.server}: {name!r} is already enrolled as {by_key[name_key(name)]!r} (revoke it first); nothing stored")
                if entry["badge"] and entry["badge"] in badges:
                    raise CorefaceError(f"{self.server}: badge {entry['badge']!r} already belongs to {badges[entry['badge']]!r}; nothing stored")
                by_key[name_key(name)] = name
                if entry["badge"]:
                    badges[entry["badge"]] = name
                person = self.conn.execute(
                    "INSERT INTO persons (name, name_key, badge) VALUES (%s, %s, %s) RETURNING id", (name.strip(), name_key(name), entry["badge"])
                ).fetchone()[0]
                with self.conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO templates (person_id, model, embedding, quality, source) VALUES (%s, %s, %s, %s, %s)",
                        [(person, model, np.asarray(v, np.float32), q, s) for v, q, s, _jpeg in entry["rows"]],
                    )
                self.conn.execute("INSERT INTO changes (kind, person_id) VALUES ('enroll', %s)", (person,))
                ids[name] = person
        return ids

    def revoke(self, ref: str) -> tuple[int, str]:
        """Revoke one active person (``id:N``, ``badge:B``, ``name:X``, or a bare name or badge):
        their templates are deleted (the person row stays, with the time, for the audit)."""
        with self.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (schema.LOCK_KEY,))
            active = self.conn.execute("SELECT id, name, name_key, badge FROM persons WHERE revoked IS NULL").fetchall()
            field_, colon, value = ref.partition(":")
            if colon and field_ in ("id", "badge", "name"):
                column = {"id": 0, "name": 2, "badge": 3}[field_]
                wanted = name_key(value) if field_ == "name" else value
                matches = [p for p in active if str(p[column]) == wanted]
            else:
                matches = [p for p in active if p[2] == name_key(ref) or p[3] == ref]
            if not matches:
                raise CorefaceError(f"{self.server}: no active person {ref!r} (by id:N, badge:B, name:X, or name or badge)")
            if len(matches) > 1:
                names = "; ".join(f"id {p[0]} {p[1]!r} (badge {p[3] or '-'})" for p in matches)
                raise CorefaceError(f"{self.server}: {ref!r} matches {len(matches)} people: {names}; nothing done: use id:N")
            person_id, name = matches[0][0], matches[0][1]
            self.conn.execute("UPDATE persons SET revoked = clock_timestamp() WHERE id = %s", (person_id,))
            self.conn.execute("DELETE FROM templates WHERE person_id = %s", (person_id,))
            self.conn.execute("INSERT INTO changes (kind, person_id) VALUES ('revoke', %s)", (person_id,))
        return person_id, name

    # --- gate: pull, push, mark ----------------------------------------------------------
    def pull(self, cursor: int, model: str, limit: int = PULL_CHANGES) -> Pulled:
        """The next ``limit`` changes after ``cursor``, with the templates of ``model`` only."""
        with self.transaction():
            changes = self.conn.execute(
                "SELECT id, kind, person_id FROM changes WHERE id > %s ORDER BY id LIMIT %s", (cursor, limit)
            ).fetchall()
            wanted = sorted({p for _, kind, p in changes if kind == "enroll"})
            rows = self.conn.execute(
                "SELECT p.id, p.name, p.badge, extract(epoch FROM p.enrolled)::float8, t.model, t.embedding, t.quality, t.source "
                "FROM persons p JOIN templates t ON t.person_id = p.id WHERE p.id = ANY(%s) ORDER BY p.id, t.id",
                (wanted,),
            ).fetchall() if wanted else []  # fmt: skip
        people: dict[int, Enrolled] = {}
        refused = 0
        for pid, name, badge, enrolled, template_model, vector, quality, source in rows:
            person = people.setdefault(pid, Enrolled(pid, name, badge, enrolled))
            if template_model != model:
                refused += 1
                continue
            person.vectors.append(np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, np.float32))  # pgvector < 0.3: ndarray
            person.qualities.append(quality)
            person.sources.append(source)
        return Pulled([(int(i), k, int(p)) for i, k, p in changes], people, refused)

    def push(self, rows: Sequence[tuple], labels: Iterable[tuple] = ()) -> None:
        """Insert audit events (``EVENT_FIELDS`` order) and labels in one transaction; rows
        already there (a batch pushed again after a crash) are skipped, never duplicated."""
        with self.transaction(), self.conn.cursor() as cur:
            if rows:
                cur.executemany(
                    f"INSERT INTO events ({', '.join(EVENT_FIELDS)}) VALUES ({', '.join('%s::jsonb' if f == 'quality' else '%s' for f in EVENT_FIELDS)}) "
                    "ON CONFLICT DO NOTHING",
                    rows,
                )
            labels = list(labels)
            if labels:
                cur.executemany("INSERT INTO labels VALUES (%s, %s, to_timestamp(%s)) ON CONFLICT DO NOTHING", labels)

    def mark(self, gate: uuid.UUID, name: str, cursor: int, pushed: int, queued: int) -> None:
        """Record that ``gate`` applied changes up to ``cursor`` (revocation propagation) and its queue."""
        with self.transaction():
            self.conn.execute(
                "INSERT INTO gate_syncs (gate, gate_name, cursor, pushed, queued) VALUES (%s, %s, %s, %s, %s)",
                (gate, name, cursor, pushed, queued),
            )

    # --- reading: people, status, propagation, search ------------------------------------
    def people(self) -> list[tuple]:
        with self.transaction():
            return self.conn.execute(
                "SELECT p.id, p.name, p.badge, p.enrolled, p.revoked, COUNT(t.id) FROM persons p "
                "LEFT JOIN templates t ON t.person_id = p.id GROUP BY p.id ORDER BY p.id"
            ).fetchall()

    def status(self) -> tuple[int, list[dict[str, Any]]]:
        """The latest change id, and per gate: last sync, cursor, pushed/queued, events stored."""
        with self.transaction():
            latest = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM changes").fetchone()[0]
            rows = self.conn.execute(
                "SELECT s.gate, s.gate_name, s.at, s.cursor, s.queued, "
                "(SELECT COUNT(*) FROM events e WHERE e.gate = s.gate), extract(epoch FROM clock_timestamp() - s.at)::float8 "
                "FROM (SELECT DISTINCT ON (gate) * FROM gate_syncs ORDER BY gate, at DESC) s ORDER BY s.gate_name"
            ).fetchall()
        keys = ("gate", "name", "last_sync", "cursor", "queued", "events", "age_s")
        return int(latest), [dict(zip(keys, r)) for r in rows]

    def propagation(self) -> list[float]:
        """Seconds from each revocation to its first sync by each gate that was already in the fleet
        when it was made (server clock); a gate installed later never held the revoked person."""
        with self.transaction():
            rows = self.conn.execute(
                "SELECT extract(epoch FROM (SELECT MIN(s.at) FROM gate_syncs s WHERE s.gate = g.gate AND s.cursor >= c.id) - c.at)::float8 "
                "FROM changes c CROSS JOIN (SELECT gate, MIN(at) AS joined FROM gate_syncs GROUP BY gate) g "
                "WHERE c.kind = 'revoke' AND g.joined <= c.at"
            ).fetchall()
        return [r[0] for r in rows if r[0] is not None]

    def search(self, queries: np.ndarray, k: int = 1, exact: bool = True, ef_search: int = 40) -> list[list[tuple[int, float]]]:
        """1:N on the server: the ``k`` best (person id, cosine) per query (revoked people have no
        templates left); ``exact``: a sequential scan, else the HNSW index (``ef_search`` candidates)."""
        if self._dim is None:
            self._dim = int(self.meta()["dim"])
        column = f"embedding::vector({self._dim})"
        out = []
        with self.transaction():
            if exact:
                self.conn.execute("SET LOCAL enable_indexscan = off")
            else:  # the index even where the planner would price a scan lower (small tables, large ef_search)
                self.conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef_search)}")
                self.conn.execute("SET LOCAL enable_seqscan = off")
            for q in np.atleast_2d(queries).astype(np.float32):
                rows = self.conn.execute(
                    f"SELECT person_id, -({column} <#> %s::vector({self._dim})) FROM templates "
                    f"ORDER BY {column} <#> %s::vector({self._dim}) LIMIT %s",
                    (q, q, k),
                ).fetchall()
                out.append([(int(a), float(b)) for a, b in rows])
        return out


def init(dsn: str, login: str | None = None, password: str | None = None) -> tuple[list[int], dict[str, str]]:
    """Create or migrate the schema and the gate role; returns (versions applied, fleet_meta)."""
    store = FleetStore(dsn, check_schema=False)
    try:
        with store.transaction():
            applied = schema.migrate(store.conn, store.server)
            schema.grant_gate_role(store.conn, login, password)
        return applied, store.meta()
    finally:
        store.close()
