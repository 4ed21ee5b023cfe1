"""The central store's schema, created and migrated by the project (``fleet init``).

Each migration is applied once, in order, in one transaction under an advisory lock, and
recorded in ``schema_version``; a server whose schema is newer than this release is refused.
Vectors are stored unsized (``vector``): the dimension comes from the first enrolled model and
is bound then, together with the HNSW index on ``embedding::vector(D)``.
"""

from __future__ import annotations

from typing import Any

from ..errors import CorefaceError

LOCK_KEY = 0x0C0EFACE  # pg_advisory_xact_lock: one migrator / enroller / revoker at a time
GATE_ROLE = "coreface_gate"
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE fleet_meta (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO fleet_meta VALUES ('store_id', gen_random_uuid()::text);
CREATE TABLE persons (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    name_key text NOT NULL,
    badge text,
    enrolled timestamptz NOT NULL DEFAULT clock_timestamp(),
    revoked timestamptz
);
CREATE UNIQUE INDEX persons_active_name ON persons (name_key) WHERE revoked IS NULL;
CREATE UNIQUE INDEX persons_active_badge ON persons (badge) WHERE revoked IS NULL AND badge IS NOT NULL;
CREATE TABLE templates (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id bigint NOT NULL REFERENCES persons(id),
    model text NOT NULL,
    embedding vector NOT NULL,
    quality text,
    source text,
    created timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX templates_person ON templates (person_id);
CREATE TABLE changes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('enroll', 'revoke')),
    person_id bigint NOT NULL REFERENCES persons(id),
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE events (
    event uuid PRIMARY KEY,
    gate uuid NOT NULL,
    gate_name text NOT NULL,
    local_id bigint NOT NULL,
    time timestamptz NOT NULL,
    camera text NOT NULL,
    frame text,
    decision text NOT NULL,
    person_id bigint,
    person text,
    badge text,
    score real,
    margin real,
    votes integer,
    track integer,
    quality jsonb,
    total_ms real,
    received timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX events_gate_time ON events (gate, time);
CREATE TABLE labels (
    event uuid NOT NULL,
    wrong boolean NOT NULL,
    labelled timestamptz NOT NULL,
    PRIMARY KEY (event, labelled)
);
CREATE TABLE gate_syncs (
    gate uuid NOT NULL,
    gate_name text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    cursor bigint NOT NULL,
    pushed bigint NOT NULL,
    queued bigint NOT NULL,
    PRIMARY KEY (gate, at)
)
""",
    ),
)
LATEST = MIGRATIONS[-1][0]
GATE_READS = ("fleet_meta", "schema_version", "persons", "templates", "changes")
GATE_INSERTS = ("events", "labels", "gate_syncs")


def current_version(conn: Any) -> int | None:
    """The schema version on the server, or None where ``fleet init`` never ran."""
    exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()[0]
    if not exists:
        return None
    return conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]


def check(conn: Any, server: str) -> None:
    """Refuse a server without the fleet schema, with an older one, or with a newer one."""
    version = current_version(conn)
    if version is None:
        raise CorefaceError(f"{server}: no coreface-edge fleet schema here: run coreface-edge fleet init first")
    if version > LATEST:
        raise CorefaceError(f"{server}: fleet schema v{version} is newer than this coreface-edge (v{LATEST}): upgrade coreface-edge")
    if version < LATEST:
        raise CorefaceError(f"{server}: fleet schema v{version} is older than this coreface-edge (v{LATEST}): run coreface-edge fleet init to migrate")


def migrate(conn: Any, server: str) -> list[int]:
    """Apply the missing migrations (inside the caller's transaction); returns the versions applied."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())")
    found = current_version(conn) or 0
    if found > LATEST:
        raise CorefaceError(f"{server}: fleet schema v{found} is newer than this coreface-edge (v{LATEST}): upgrade coreface-edge")
    applied = []
    for version, sql in MIGRATIONS:
        if version > found:
            for statement in filter(str.strip, sql.split(";")):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
            applied.append(version)
    return applied


def grant_gate_role(conn: Any, login: str | None = None, password: str | None = None) -> None:
    """The gate's least privilege: read templates and revocations, insert audit events and
    sync marks, nothing else (no update, no delete, no other table). ``login``: a login role
    in that group (its password set from ``password``)."""
    from psycopg import sql

    role = sql.Identifier(GATE_ROLE)
    if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (GATE_ROLE,)).fetchone():
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(role))
    database = conn.execute("SELECT current_database()").fetchone()[0]
    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), role))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role))
    for table in GATE_READS:
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(table), role))
    for table in GATE_INSERTS:
        conn.execute(sql.SQL("GRANT INSERT ON {} TO {}").format(sql.Identifier(table), role))
    if login:
        user = sql.Identifier(login)
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        secret = sql.SQL(" PASSWORD {}").format(sql.Literal(password)) if password else sql.SQL("")
        conn.execute(sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE{}").format(user, secret))
        conn.execute(sql.SQL("GRANT {} TO {}").format(role, user))
