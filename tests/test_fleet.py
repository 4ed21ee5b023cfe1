"""The fleet on a real PostgreSQL + pgvector server (started by .ci/run through
scripts/fleet_server.sh; COREFACE_TEST_PG names its directory): real gate and sync processes,
kill -9 of a sync agent, of a gate and of the server, a server outage, revocations, refusals."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cli
from test_gate_cli import PEOPLE, PHOTO_GATE, SITE_THRESHOLD, decisions, site  # noqa: F401 - the shared gate site fixture

from coreface_edge.errors import CorefaceError
from coreface_edge.fleet import dsn as dsns
from coreface_edge.gate import db
from coreface_edge.gate.audit import EVENT_COLUMNS, AuditLog
from coreface_edge.gate.gallery import Gallery

PG_DIR = os.environ.get("COREFACE_TEST_PG")
GATE_PASSWORD = "gate-" + uuid.uuid4().hex[:12]
OUTAGE_S = 30.0  # issue 15: gates keep deciding through a 30 s server outage
psycopg = pytest.importorskip("psycopg", reason="the fleet extra is not installed (pip install -e '.[fleet]')")


def _server_dir() -> Path:
    if not PG_DIR:
        pytest.skip("no PostgreSQL for the fleet tests: start one with 'bash scripts/fleet_server.sh up DIR' and set COREFACE_TEST_PG=DIR (.ci/run does)")
    return Path(PG_DIR)


def admin_dsn(database: str = "postgres") -> str:
    return (_server_dir() / "admin.dsn").read_text().strip().rsplit("/", 1)[0] + "/" + database


def server(action: str) -> None:
    """Stop or start the test server (a start right after a kill -9 may find its old shared memory still held: retried)."""
    for attempt in range(20):
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "fleet_server.sh"), action, str(_server_dir())], capture_output=True, text=True, timeout=120)
        if proc.returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"fleet_server.sh {action} failed: {proc.stderr}")


def kill_server() -> None:
    """kill -9 of the postmaster (its children die with it; the next start recovers from the WAL)."""
    pid = int((_server_dir() / "data" / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    time.sleep(0.5)  # the backends notice the postmaster's death and exit
    (_server_dir() / "data" / "postmaster.pid").unlink(missing_ok=True)


def sql(dsn: str, query: str, args: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, args)
        return cur.fetchall() if cur.description else []


@pytest.fixture()
def fleet(tmp_path: Path) -> dict[str, str]:
    """A fresh database on the test server, initialised by 'fleet init' with a gate login;
    admin and gate connection strings in files (as an operator keeps them)."""
    try:
        sql(admin_dsn(), "SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.fail(f"COREFACE_TEST_PG={PG_DIR} is set but its server is not reachable: {dsns.scrub(admin_dsn(), exc)}")
    name = "cf_" + uuid.uuid4().hex[:10]
    sql(admin_dsn(), f"CREATE DATABASE {name}")
    admin = admin_dsn(name)
    port = admin.rsplit(":", 1)[1].split("/")[0]
    gate = f"postgresql://cf_gate:{GATE_PASSWORD}@127.0.0.1:{port}/{name}"
    files = {"admin": tmp_path / "admin.dsn", "gate": tmp_path / "gate.dsn"}
    files["admin"].write_text(f"# fleet admin\n{admin}\n")
    files["gate"].write_text(gate + "\n")
    os.environ["COREFACE_FLEET_GATE_PASSWORD"] = GATE_PASSWORD
    try:
        out = run_cli("fleet", "init", "--dsn", f"@{files['admin']}", "--gate-login", "cf_gate").stdout
    finally:
        del os.environ["COREFACE_FLEET_GATE_PASSWORD"]
    assert "fleet store ready" in out and GATE_PASSWORD not in out
    yield {"admin": admin, "gate": gate, "admin_at": f"@{files['admin']}", "gate_at": f"@{files['gate']}"}
    try:
        sql(admin_dsn(), f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    except psycopg.OperationalError:
        pass


@pytest.fixture()
def frames(site: dict[str, Path], tmp_path: Path) -> Path:  # noqa: F811
    """A camera folder: the site's photos, three times over (15 decisions per run)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(3):
        for photo in sorted(site["queries"].iterdir()):
            shutil.copy(photo, folder / f"{k}_{photo.name}")
    return folder


def gate_cmd(site: dict[str, Path], frames: Path, work: Path, name: str, fleet_at: str) -> list[str]:  # noqa: F811
    return [sys.executable, "-m", "coreface_edge", "gate", str(frames), "--model", str(site["model"]), "--gallery", str(work / f"{name}.cache.db"),
            "--audit", str(work / f"{name}.audit.db"), "--camera-name", name, "--threshold", SITE_THRESHOLD, "--fleet", fleet_at, *PHOTO_GATE]  # fmt: skip


def local_events(audit: Path) -> list[tuple]:
    with AuditLog(audit, create=False) as log:
        return log.rows("SELECT id, decision, person FROM events ORDER BY id")


def central_events(dsn: str, gate_name: str | None = None) -> list[tuple]:
    where = "WHERE gate_name = %s" if gate_name else ""
    return sql(dsn, f"SELECT local_id, decision, person FROM events {where} ORDER BY local_id", (gate_name,) if gate_name else ())


def synthetic_audit(path: Path, n: int) -> None:
    """An audit log of ``n`` decisions (the real file format), written in one transaction."""
    with AuditLog(path) as log:
        log.start_run("cam", "model", 0.5, {})
        row = lambda k: (1e9 + k, "cam", f"f{k}", "unknown", None, None, None, 0.1, 0.1, 1, k, "{}", 1, 1, 1, 1, 4)  # noqa: E731
        with db.transaction(log.conn, path) as conn:
            conn.executemany(f"INSERT INTO events (run_id, {', '.join(EVENT_COLUMNS)}) VALUES ({log.run_id}, {', '.join('?' * len(EVENT_COLUMNS))})",
                             [row(k) for k in range(n)])  # fmt: skip


def wait_for(predicate, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


# --- without a server ------------------------------------------------------------------------
def test_connection_strings_are_read_from_files_and_env_and_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    assert dsns.mask("postgresql://gate:s3cr%20t@db:5432/site") == "postgresql://gate:***@db:5432/site"
    assert dsns.mask("host=db password='a b' user=x") == "host=db password=*** user=x"
    (tmp_path / "f.dsn").write_text("# comment\n\n  postgresql://u:pw@h/db  \n")
    assert dsns.resolve(f"@{tmp_path / 'f.dsn'}") == "postgresql://u:pw@h/db"
    monkeypatch.setenv(dsns.ENV_DSN, f"@{tmp_path / 'f.dsn'}")
    assert dsns.resolve(None) == dsns.resolve("env") == "postgresql://u:pw@h/db"
    monkeypatch.delenv(dsns.ENV_DSN)
    with pytest.raises(CorefaceError, match="no server given"):
        dsns.resolve(None)
    with pytest.raises(CorefaceError, match="cannot read"):
        dsns.resolve(f"@{tmp_path / 'missing.dsn'}")
    assert dsns.describe_server("postgresql://gate:pw@db:6543/site") == "fleet server gate@db:6543/site"


def test_bad_servers_are_one_line_without_the_password(tmp_path: Path):
    """Unreachable server, malformed string: one line, exit 2, no password, no traceback."""
    for dsn, expected in (("postgresql://gate:hunter2@127.0.0.1:1/site", "cannot connect"),
                          ("host=127.0.0.1 password=hunter2 dbname", "not a valid connection string")):  # fmt: skip
        proc = run_cli("fleet", "status", "--dsn", dsn, check=False)
        assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
        assert "hunter2" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


# --- with the server -------------------------------------------------------------------------
def test_init_is_versioned_and_the_gate_role_is_least_privilege(fleet: dict[str, str]):
    again = run_cli("fleet", "init", "--dsn", fleet["admin_at"]).stdout
    assert "none (up to" in again  # nothing applied twice
    assert sql(fleet["admin"], "SELECT version FROM schema_version") == [(1,)]
    sql(fleet["gate"], "SELECT COUNT(*) FROM templates")
    sql(fleet["gate"], "INSERT INTO events (event, gate, gate_name, local_id, time, camera, decision) "
                       "VALUES (gen_random_uuid(), gen_random_uuid(), 'g', 1, now(), 'c', 'unknown')")  # fmt: skip
    for forbidden in ("DELETE FROM events", "UPDATE persons SET name = 'x'", "INSERT INTO fleet_meta VALUES ('a', 'b')",
                      "SELECT COUNT(*) FROM events", "DROP TABLE labels", "CREATE TABLE mine (x int)"):  # fmt: skip
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            sql(fleet["gate"], forbidden)


def test_a_newer_schema_and_a_wrong_password_are_refused(fleet: dict[str, str]):
    sql(fleet["admin"], "INSERT INTO schema_version (version) VALUES (99)")
    for args in (("status", "--dsn", fleet["admin_at"]), ("init", "--dsn", fleet["admin_at"])):
        proc = run_cli("fleet", *args, check=False)
        assert proc.returncode == 2 and "schema v99 is newer than this coreface-edge (v1)" in proc.stderr
    assert sql(fleet["admin"], "SELECT MAX(version) FROM schema_version") == [(99,)]  # nothing touched
    wrong = fleet["gate"].replace(GATE_PASSWORD, "not-it")
    proc = run_cli("fleet", "status", "--dsn", wrong, check=False)
    assert proc.returncode == 2 and "password authentication failed" in proc.stderr and "not-it" not in proc.stderr


def test_enroll_revoke_and_templates_of_another_model(fleet: dict[str, str], site: dict[str, Path], tmp_path: Path):  # noqa: F811
    out = run_cli("fleet", "enroll", str(site["gallery"]), "--dsn", fleet["admin_at"]).stdout
    assert "enrolled 3 people" in out
    people = sql(fleet["admin"], "SELECT name, badge, vector_dims(t.embedding) FROM persons p JOIN templates t ON t.person_id = p.id ORDER BY name")
    with Gallery(site["gallery"]) as g:
        dim = g.matrix(g.model).embeddings.shape[1]
    assert people == [("ann", "100", dim), ("bob", "101", dim), ("cid", "102", dim)]  # the model's size, whatever it is
    again = run_cli("fleet", "enroll", str(site["gallery"]), "--dsn", fleet["admin_at"], check=False)
    assert again.returncode == 2 and "'ann' is already enrolled" in again.stderr
    other = tmp_path / "other.db"  # the same people, "embedded" by another model
    with Gallery(site["gallery"]) as g, Gallery(other, create=True) as o:
        m = g.matrix(g.model)
        o.add_person("dan", m.embeddings[:1], "f" * 64)
    refused = run_cli("fleet", "enroll", str(other), "--dsn", fleet["admin_at"], check=False)
    assert refused.returncode == 2 and "refused: the fleet holds model" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert sql(fleet["admin"], "SELECT COUNT(*) FROM persons") == [(3,)]  # nothing stored
    assert "revoked 'bob'" in run_cli("fleet", "revoke", "badge:101", "--dsn", fleet["admin_at"]).stdout
    listing = " ".join(run_cli("fleet", "people", "--dsn", fleet["admin_at"]).stdout.split())
    assert "3 people" in listing and "bob" in listing  # the revoked stay listed, with the time
    assert run_cli("fleet", "revoke", "bob", "--dsn", fleet["admin_at"], check=False).returncode == 2  # no longer active
    hits = [row[0][1] for row in fleet_search(fleet["admin"], m.embeddings)]
    assert hits[0] == "ann" and hits[1] != "bob" and hits[2] == "cid"  # bob's own template finds someone else: revoked


def fleet_search(dsn: str, queries: np.ndarray) -> list[list[tuple[float, str]]]:
    from coreface_edge.fleet.store import FleetStore

    with FleetStore(dsn) as store:
        exact = store.search(queries, k=1, exact=True)
        hnsw = store.search(queries, k=1, exact=False)
        names = dict(sql(dsn, "SELECT id, name FROM persons"))
    assert [[p for p, _ in row] for row in exact] == [[p for p, _ in row] for row in hnsw]
    return [[(s, names[p]) for p, s in row] for row in exact]


def test_a_gate_with_another_model_is_refused_in_one_line(fleet: dict[str, str], site: dict[str, Path], frames: Path, tmp_path: Path):  # noqa: F811
    run_cli("fleet", "enroll", str(site["gallery"]), "--dsn", fleet["admin_at"])
    sql(fleet["admin"], "UPDATE fleet_meta SET value = %s WHERE key = 'model'", ("e" * 64,))
    proc = subprocess.run(gate_cmd(site, frames, tmp_path, "g1", fleet["gate_at"]), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "the fleet's templates come from model eeeeeeeeeeee" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_three_gates_share_one_server_and_all_see_a_revocation(fleet: dict[str, str], site: dict[str, Path], frames: Path, tmp_path: Path):  # noqa: F811
    """3 gate processes at once: each pulls the fleet's gallery into its cache, decides, and
    pushes every decision exactly once; after a revocation no gate accepts that person."""
    run_cli("fleet", "enroll", str(site["gallery"]), "--dsn", fleet["admin_at"])
    names = ("dock", "hall", "lab")
    procs = [subprocess.Popen(gate_cmd(site, frames, tmp_path, n, fleet["gate_at"]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in names]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["fleet"]["queued"] == 0 and summary["fleet"]["pushed"] == 15
    for n in names:
        local = local_events(tmp_path / f"{n}.audit.db")
        assert len(local) == 15 and central_events(fleet["admin"], n) == local
        assert {p for _, d, p in local if d == "accept"} == set(PEOPLE)
    first_accept = next(i for i, d, _ in local_events(tmp_path / "dock.audit.db") if d == "accept")
    run_cli("report", "label", str(tmp_path / "dock.audit.db"), str(first_accept), "--wrong")  # travels with the next push
    run_cli("fleet", "revoke", "name:ANN", "--dsn", fleet["admin_at"])
    procs = [subprocess.Popen(gate_cmd(site, frames, tmp_path, n, fleet["gate_at"]), stdout=subprocess.PIPE, text=True) for n in names]
    for n, proc in zip(names, procs):  # the next run of every gate starts from a synced cache
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "ann" not in {d["person"] for d in decisions(out) if d["decision"] == "accept"}
        with Gallery(tmp_path / f"{n}.cache.db") as cache:
            assert [p.name for p in cache.persons()] == ["bob", "cid"]
    assert len(central_events(fleet["admin"])) == 90
    report = run_cli("fleet", "report", "--dsn", fleet["admin_at"], "--json", str(tmp_path / "site.json")).stdout
    rows = json.loads((tmp_path / "site.json").read_text())
    assert sorted(r["gate"] for r in rows) == sorted(names) and sum(r["events"] for r in rows) == 90
    dock = [r for r in rows if r["gate"] == "dock"]
    assert sum(r["labelled"] for r in dock) == sum(r["false_accepts"] for r in dock) == 1
    assert sum(r["labelled"] for r in rows) == 1 and all(r["far"] is not None for r in dock)
    assert "site report: 90 decisions from 3 gates" in " ".join(report.split())
    status = run_cli("fleet", "status", "--dsn", fleet["gate_at"], check=False)  # a gate's login cannot read the central audit
    assert status.returncode == 2 and "permission denied" in status.stderr and "Traceback" not in status.stderr


def sync_cmd(site: dict[str, Path], work: Path, name: str, fleet_at: str, *extra: str) -> list[str]:  # noqa: F811
    return [sys.executable, "-m", "coreface_edge", "fleet", "sync", "--gallery", str(work / f"{name}.cache.db"), "--audit",
            str(work / f"{name}.audit.db"), "--model", str(site["model"]), "--name", name, "--dsn", fleet_at, *extra]  # fmt: skip


def test_revocation_reaches_every_running_gate_within_seconds(fleet: dict[str, str], site: dict[str, Path], tmp_path: Path):  # noqa: F811
    run_cli("fleet", "enroll", str(site["gallery"]), "--dsn", fleet["admin_at"])
    names = ("dock", "hall", "lab")
    agents = [subprocess.Popen(sync_cmd(site, tmp_path, n, fleet["gate_at"], "--loop", "--every", "0.5"), stderr=subprocess.PIPE, text=True)
              for n in names]  # fmt: skip
    try:
        caches = [tmp_path / f"{n}.cache.db" for n in names]

        def holds(cache: Path, who: str) -> bool:
            try:  # read-only: the agent may be creating the file right now
                with contextlib.closing(sqlite3.connect(f"file:{cache}?mode=ro", uri=True)) as conn:
                    return bool(conn.execute("SELECT 1 FROM persons WHERE name = ?", (who,)).fetchone())
            except sqlite3.Error:
                return False

        wait_for(lambda: all(holds(c, "bob") for c in caches), 60, "the first sync of 3 agents")
        run_cli("fleet", "revoke", "bob", "--dsn", fleet["admin_at"])
        took = wait_for(lambda: not any(holds(c, "bob") for c in caches), 30, "the revocation in every cache")
        assert took < 10
    finally:
        for agent in agents:
            agent.send_signal(signal.SIGTERM)
        for agent in agents:
            assert agent.wait(timeout=30) == 0, agent.stderr.read()
    status = run_cli("fleet", "status", "--dsn", fleet["admin_at"]).stdout
    assert "3 gates" in status and "revocation propagation over 3" in status
    late = subprocess.run(sync_cmd(site, tmp_path, "late", fleet["gate_at"]), capture_output=True, text=True, timeout=120)
    assert late.returncode == 0, late.stderr
    status = run_cli("fleet", "status", "--dsn", fleet["admin_at"]).stdout  # a gate installed after the revocation adds no delay
    assert "4 gates" in status and "revocation propagation over 3" in status, status


def test_kill_9_of_a_sync_agent_mid_push_loses_and_duplicates_nothing(fleet: dict[str, str], site: dict[str, Path], tmp_path: Path):  # noqa: F811
    run_cli("fleet", "enroll", str(site["gallery"]), "--dsn", fleet["admin_at"])
    n = 3000
    synthetic_audit(tmp_path / "g.audit.db", n)
    agent = subprocess.Popen(sync_cmd(site, tmp_path, "g", fleet["gate_at"], "--batch", "20"), stderr=subprocess.PIPE, text=True)
    count = lambda: sql(fleet["admin"], "SELECT COUNT(*) FROM events")[0][0]  # noqa: E731
    wait_for(lambda: count() >= 200 or agent.poll() is not None, 120, "the first pushes")
    agent.kill()
    agent.wait()
    stored = count()
    assert 0 < stored < n, "the kill must land mid-push"
    run_cli("fleet", "sync", *sync_cmd(site, tmp_path, "g", fleet["gate_at"])[5:], timeout=120)
    central = central_events(fleet["admin"])
    assert len(central) == n and central == local_events(tmp_path / "g.audit.db")


def test_a_stop_does_not_wait_for_a_backlog_and_the_rest_stays_queued(fleet: dict[str, str], site: dict[str, Path], tmp_path: Path):  # noqa: F811
    """A gate back from a long outage has a backlog; SIGTERM must still end its sync within a
    round's push budget (ROUND_PUSH_S), and what was not pushed goes on the next sync, once."""
    from coreface_edge.fleet.sync import ROUND_PUSH_S

    run_cli("fleet", "enroll", str(site["gallery"]), "--dsn", fleet["admin_at"])
    n = 40000  # 8,000 push transactions of 5: many seconds, however fast the server
    synthetic_audit(tmp_path / "g.audit.db", n)
    agent = subprocess.Popen(sync_cmd(site, tmp_path, "g", fleet["gate_at"], "--loop", "--batch", "5"), stderr=subprocess.PIPE, text=True)
    count = lambda: sql(fleet["admin"], "SELECT COUNT(*) FROM events")[0][0]  # noqa: E731
    wait_for(lambda: count() >= 100 or agent.poll() is not None, 120, "the first pushes")
    started = time.monotonic()
    agent.send_signal(signal.SIGTERM)
    _, err = agent.communicate(timeout=60)
    took = time.monotonic() - started
    assert agent.returncode == 0, err
    stored = count()
    assert stored < n and took < ROUND_PUSH_S + 3.0, (stored, took)
    run_cli("fleet", "sync", *sync_cmd(site, tmp_path, "g", fleet["gate_at"])[5:], timeout=300)
    central = central_events(fleet["admin"])
    assert len(central) == n and central == local_events(tmp_path / "g.audit.db")


def test_a_gate_stop_pushes_for_its_budget_and_leaves_the_rest_queued(fleet: dict[str, str], site: dict[str, Path], tmp_path: Path):  # noqa: F811
    """What ``gate --fleet`` does on stop: join the sync thread, one last push round of at most
    ``push_for_s``; the rest stays queued and the next sync stores every event once."""
    from coreface_edge.fleet.dsn import resolve
    from coreface_edge.fleet.sync import ROUND_PUSH_S, SyncAgent
    from coreface_edge.gate.threshold import open_model

    run_cli("fleet", "enroll", str(site["gallery"]), "--dsn", fleet["admin_at"])
    n = 40000
    synthetic_audit(tmp_path / "g.audit.db", n)
    _, fingerprint = open_model(site["model"])
    agent = SyncAgent(resolve(fleet["gate_at"]), tmp_path / "g.cache.db", tmp_path / "g.audit.db", fingerprint, "g", batch=5)
    agent.sync_once(push=False)
    agent.start(lambda kind, detail: None)
    time.sleep(0.5)
    started = time.monotonic()
    summary = agent.close(push_for_s=0.5)
    took = time.monotonic() - started
    assert 0 < summary["queued"] < n and summary["pushed"] > 0 and took < ROUND_PUSH_S + 0.5 + 3.0, (summary, took)
    run_cli("fleet", "sync", *sync_cmd(site, tmp_path, "g", fleet["gate_at"])[5:], timeout=300)
    central = central_events(fleet["admin"])
    assert len(central) == n and central == local_events(tmp_path / "g.audit.db")


def test_kill_9_of_the_server_mid_push_loses_and_duplicates_nothing(fleet: dict[str, str], site: dict[str, Path], tmp_path: Path):  # noqa: F811
    run_cli("fleet", "enroll", str(site["gallery"]), "--dsn", fleet["admin_at"])
    n = 3000
    synthetic_audit(tmp_path / "g.audit.db", n)
    agent = subprocess.Popen(sync_cmd(site, tmp_path, "g", fleet["gate_at"], "--loop", "--every", "0.2", "--batch", "20"),
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    count = lambda: sql(fleet["admin"], "SELECT COUNT(*) FROM events")[0][0]  # noqa: E731
    try:
        wait_for(lambda: count() >= 200, 120, "the first pushes")
        kill_server()
        time.sleep(2)
        assert agent.poll() is None  # the agent waits for the server, it does not die
        server("start")
        wait_for(lambda: count() == n, 120, "the agent to catch up after the restart")
        time.sleep(1)
    finally:
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=30)
    assert agent.returncode == 0 and "fleet_offline" in err and "fleet_online" in err, err
    assert central_events(fleet["admin"]) == local_events(tmp_path / "g.audit.db")


def test_gates_keep_deciding_while_the_server_is_down_and_catch_up(fleet: dict[str, str], site: dict[str, Path], frames: Path, tmp_path: Path):  # noqa: F811
    """Server stopped for OUTAGE_S: a gate with a cache keeps starting, decides every frame from
    it and queues the events on disk; a gate without a cache refuses to start; back up, one sync
    catches up. Then kill -9 of a gate mid-run: what it committed reaches the server once."""
    run_cli("fleet", "enroll", str(site["gallery"]), "--dsn", fleet["admin_at"])
    subprocess.run(gate_cmd(site, frames, tmp_path, "dock", fleet["gate_at"]), capture_output=True, timeout=300, check=True)
    server("stop")
    stopped, runs = time.monotonic(), []
    try:
        while not runs or time.monotonic() - stopped < OUTAGE_S:
            runs.append(subprocess.run(gate_cmd(site, frames, tmp_path, "dock", fleet["gate_at"]), capture_output=True, text=True, timeout=300))
        fresh = subprocess.run(gate_cmd(site, frames, tmp_path, "new", fleet["gate_at"]), capture_output=True, text=True, timeout=300)
        outage = time.monotonic() - stopped
    finally:
        server("start")
    assert outage >= OUTAGE_S
    for n, down in enumerate(runs, start=1):
        assert down.returncode == 0, down.stderr
        assert '"event": "fleet_offline"' in down.stdout and len(decisions(down.stdout)) == 15
        assert json.loads(down.stdout.strip().splitlines()[-1])["fleet"]["queued"] == 15 * n
    assert fresh.returncode == 2 and "holds no cached gallery yet" in fresh.stderr and len(fresh.stderr.strip().splitlines()) == 1
    assert len(central_events(fleet["admin"], "dock")) == 15
    run_cli("fleet", "sync", *sync_cmd(site, tmp_path, "dock", fleet["gate_at"])[5:], timeout=120)
    expected = 15 * (1 + len(runs))
    assert central_events(fleet["admin"], "dock") == local_events(tmp_path / "dock.audit.db") and len(local_events(tmp_path / "dock.audit.db")) == expected
    gate = subprocess.Popen(gate_cmd(site, frames, tmp_path, "dock", fleet["gate_at"]), stdout=subprocess.PIPE, text=True)
    for line in gate.stdout:
        if '"decision"' in line:  # committed before it was printed
            gate.kill()
            break
    gate.wait()
    run_cli("fleet", "sync", *sync_cmd(site, tmp_path, "dock", fleet["gate_at"])[5:], timeout=120)
    local = local_events(tmp_path / "dock.audit.db")
    assert len(local) > expected and central_events(fleet["admin"], "dock") == local
