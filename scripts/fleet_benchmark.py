"""Fleet benchmark on a real PostgreSQL + pgvector server (docs/benchmarks.md, "The fleet").

1. 1:N search over N synthetic identities (one unit template each, D from the model): pgvector
   exact (sequential scan) and HNSW, FAISS flat (exact) and HNSW, against numpy exact (the
   baseline and the ground truth): recall@1 and query ms p50 / p99, one query at a time.
2. Audit ingestion: 3 real ``fleet sync`` processes push E queued events each at once; events/s
   on the server's clock, against one gate alone in the same run.
3. Revocation propagation: 3 real ``fleet sync --loop`` agents, R revocations; seconds from each
   revocation to each gate's cache (server clock), p50 / p99, at two sync intervals.

    bash scripts/fleet_server.sh up /tmp/fleet-bench 54330
    nice python scripts/fleet_benchmark.py --server /tmp/fleet-bench --sizes 1000 10000 100000

Needs the [fleet] and [faiss] extras. Each part uses a fresh database, dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from coreface_edge.fleet.store import FleetStore, init  # noqa: E402
from coreface_edge.gate import db  # noqa: E402
from coreface_edge.gate.audit import EVENT_COLUMNS, AuditLog  # noqa: E402
from coreface_edge.gate.threshold import open_model  # noqa: E402

MODEL = ROOT / "coreface_edge" / "assets" / "models" / "mobilefacenet_coreface.onnx"


def percentiles(ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


class Database:
    """A fresh database on the benchmark server, initialised by ``fleet init``."""

    def __init__(self, server: Path) -> None:
        import psycopg

        self.root = (server / "admin.dsn").read_text().strip().rsplit("/", 1)[0]
        self.name = "bench_" + uuid.uuid4().hex[:8]
        with psycopg.connect(self.root + "/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.name}")
        self.dsn = f"{self.root}/{self.name}"
        init(self.dsn)

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self.root + "/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def synthetic(n: int, dim: int, queries: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """N unit templates and noisy unit probes of randomly chosen identities."""
    rng = np.random.default_rng(seed)
    gallery = rng.standard_normal((n, dim)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    probes = gallery[rng.integers(0, n, queries)] + noise * rng.standard_normal((queries, dim)).astype(np.float32) / np.sqrt(dim)
    return gallery, (probes / np.linalg.norm(probes, axis=1, keepdims=True)).astype(np.float32)


def load_pgvector(database: Database, gallery: np.ndarray, model: str) -> tuple[dict[int, int], float]:
    """COPY the templates in (persons, templates, changes as 'fleet enroll' writes them), then
    build the HNSW index; returns central person id -> row, and the index build seconds."""
    from pgvector.psycopg import register_vector

    store = FleetStore(database.dsn)
    register_vector(store.conn)
    dim = gallery.shape[1]
    with store.transaction() as conn:
        conn.execute("INSERT INTO fleet_meta VALUES ('model', %s), ('dim', %s)", (model, str(dim)))
        with conn.cursor().copy("COPY persons (name, name_key) FROM STDIN") as copy:
            for k in range(len(gallery)):
                copy.write_row((f"p{k}", f"p{k}"))
        ids = [r[0] for r in conn.execute("SELECT id FROM persons ORDER BY id").fetchall()]
        with conn.cursor().copy("COPY templates (person_id, model, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "text", "vector"])
            for pid, vector in zip(ids, gallery):
                copy.write_row((pid, model, vector))
    started = time.perf_counter()
    store.conn.autocommit = True
    store.conn.execute("SET maintenance_work_mem = '2GB'")
    store.conn.execute("SET statement_timeout = 0")  # a gate's 15 s limit is not for an index build
    store.conn.execute(f"CREATE INDEX templates_hnsw ON templates USING hnsw ((embedding::vector({dim})) vector_ip_ops)")
    store.conn.execute("ANALYZE templates")
    store.conn.autocommit = False
    build = time.perf_counter() - started
    store.close()
    return {pid: k for k, pid in enumerate(ids)}, build


def timed(fn, probes: np.ndarray) -> tuple[list[int], list[float]]:
    found, ms = [], []
    for q in probes:
        t0 = time.perf_counter()
        found.append(int(fn(q)))
        ms.append((time.perf_counter() - t0) * 1e3)
    return found, ms


def search_part(server: Path, sizes: list[int], dim: int, model: str, queries: int, noise: float,
                pg_ef: list[int], faiss_ef: list[int]) -> list[dict]:  # fmt: skip
    import faiss

    faiss.omp_set_num_threads(1)
    rows = []
    for n in sizes:
        gallery, probes = synthetic(n, dim, queries, noise)
        truth, numpy_ms = timed(lambda q: np.argmax(gallery @ q), probes)
        results = {"numpy exact (baseline)": (truth, numpy_ms, 0.0)}
        flat = faiss.IndexFlatIP(dim)
        flat.add(gallery)
        found, ms = timed(lambda q: flat.search(q[None], 1)[1][0, 0], probes)
        results["FAISS flat (exact)"] = (found, ms, 0.0)
        started = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = 64
        hnsw.add(gallery)
        build = time.perf_counter() - started
        for ef in faiss_ef:
            hnsw.hnsw.efSearch = ef
            found, ms = timed(lambda q: hnsw.search(q[None], 1)[1][0, 0], probes)
            results[f"FAISS HNSW (M 32, ef {ef})"] = (found, ms, build)
        database = Database(server)
        try:
            row_of, build = load_pgvector(database, gallery, model)
            with FleetStore(database.dsn) as store:
                for label, exact, ef in (("pgvector exact", True, 0), *((f"pgvector HNSW (m 16, ef {ef})", False, ef) for ef in pg_ef)):
                    store.search(probes[:3], exact=exact, ef_search=ef or 40)  # warm the cache
                    found, ms = timed(lambda q: row_of[store.search(q, exact=exact, ef_search=ef or 40)[0][0][0]], probes)
                    results[label] = (found, ms, 0.0 if exact else build)
        finally:
            database.drop()
        for label, (found, ms, build) in results.items():
            p50, p99 = percentiles(ms)
            rows.append({"identities": n, "method": label, "recall@1": float(np.mean(np.array(found) == np.array(truth))),
                         "p50_ms": p50, "p99_ms": p99, "vs_numpy_p50": p50 / percentiles(numpy_ms)[0], "index_build_s": build})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def synthetic_audit(path: Path, n: int) -> None:
    with AuditLog(path) as log:
        log.start_run("cam", "model", 0.5, {})
        rows = [(time.time(), "cam", f"f{k}", "unknown", None, None, None, 0.1, 0.1, 1, k, '{"blur": 1.0}', 1, 1, 1, 1, 4) for k in range(n)]
        with db.transaction(log.conn, path) as conn:
            conn.executemany(f"INSERT INTO events (run_id, {', '.join(EVENT_COLUMNS)}) VALUES ({log.run_id}, {', '.join('?' * len(EVENT_COLUMNS))})", rows)


def sync_cmd(dsn_file: Path, work: Path, name: str, model: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "coreface_edge", "fleet", "sync", "--gallery", str(work / f"{name}.cache.db"), "--audit",
            str(work / f"{name}.audit.db"), "--model", str(model), "--name", name, "--dsn", f"@{dsn_file}", *extra]  # fmt: skip


def enroll_synthetic(dsn: str, model: str, dim: int, n: int) -> None:
    vectors, _ = synthetic(n, dim, 1, 0.0, seed=1)
    with FleetStore(dsn) as store:
        store.enroll(model, {f"person {k}": {"badge": None, "created": time.time(), "rows": [(v, None, None, None)]} for k, v in enumerate(vectors)})


def ingest_part(server: Path, model_path: Path, model: str, dim: int, events: int) -> list[dict]:
    """The agents run first (connected, idle); then every gate's log gets its events at once."""
    rows = []
    for gates in (1, 3):
        database = Database(server)
        try:
            enroll_synthetic(database.dsn, model, dim, 10)
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                (work / "dsn").write_text(database.dsn + "\n")
                agents = [subprocess.Popen(sync_cmd(work / "dsn", work, f"g{g}", model_path, "--loop", "--every", "0.5"),
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for g in range(gates)]  # fmt: skip
                with FleetStore(database.dsn) as store:
                    wait_until(lambda: len(store.status()[1]) == gates, 60)  # every agent's first sync
                    for g in range(gates):
                        synthetic_audit(work / f"g{g}.audit.db", events)
                    count = lambda: store.status()[1] and sum(g["events"] for g in store.status()[1])  # noqa: E731
                    wait_until(lambda: count() == gates * events, 600)
                    with store.transaction() as conn:
                        span = conn.execute("SELECT extract(epoch FROM MAX(received) - MIN(received))::float8 FROM events").fetchone()[0]
                for agent in agents:
                    agent.send_signal(signal.SIGTERM)
                    agent.wait(timeout=30)
        finally:
            database.drop()
        rows.append({"gates": gates, "events": gates * events, "seconds": span, "events_per_s": gates * events / span})
        print(json.dumps(rows[-1]), flush=True)
    rows[1]["vs_one_gate"] = rows[1]["events_per_s"] / rows[0]["events_per_s"]
    return rows


def wait_until(predicate, timeout: float) -> None:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not done after {timeout} s")
        time.sleep(0.1)


def propagation_part(server: Path, model_path: Path, model: str, dim: int, revocations: int) -> list[dict]:
    rows = []
    for every in (1.0, 0.25):
        database = Database(server)
        try:
            enroll_synthetic(database.dsn, model, dim, revocations)
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                (work / "dsn").write_text(database.dsn + "\n")
                agents = [subprocess.Popen(sync_cmd(work / "dsn", work, f"g{g}", model_path, "--loop", "--every", str(every)),
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for g in range(3)]  # fmt: skip
                rng = np.random.default_rng(0)
                with FleetStore(database.dsn) as store:
                    wait_until(lambda: len(store.status()[1]) == 3, 60)  # every agent's first sync
                    for k in range(revocations):
                        store.revoke(f"name:person {k}")
                        time.sleep(float(rng.uniform(0.2, 0.8)))
                    time.sleep(every + 2)
                    delays = store.propagation()
                for agent in agents:
                    agent.send_signal(signal.SIGTERM)
                    agent.wait(timeout=30)
        finally:
            database.drop()
        assert len(delays) == 3 * revocations, len(delays)
        p50, p99 = percentiles([d * 1e3 for d in delays])
        rows.append({"sync_every_s": every, "pairs": len(delays), "p50_s": p50 / 1e3, "p99_s": p99 / 1e3, "max_s": max(delays)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", type=Path, required=True, help="Directory of scripts/fleet_server.sh (admin.dsn).")
    parser.add_argument("--model", type=Path, default=MODEL, help="The gates' model (its fingerprint and embedding size).")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--pg-ef", type=int, nargs="+", default=[40, 100], help="pgvector hnsw.ef_search values.")
    parser.add_argument("--faiss-ef", type=int, nargs="+", default=[64], help="FAISS HNSW efSearch values.")
    parser.add_argument("--noise", type=float, default=0.8, help="Probe noise (relative norm): cosine to its own template ~0.78.")
    parser.add_argument("--events", type=int, default=20000, help="Queued events per gate for the ingestion part.")
    parser.add_argument("--revocations", type=int, default=30)
    parser.add_argument("--parts", nargs="+", default=["search", "ingest", "propagation"])
    parser.add_argument("--out", type=Path, default=Path("fleet_benchmark.json"))
    args = parser.parse_args()
    backend, model = open_model(args.model)
    from coreface_edge.export.parity import load_parity_crops

    dim = int(backend.embed(load_parity_crops()[:1]).shape[1])
    out = {"machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} CPUs", "dim": dim, "model": model[:12]}
    if "search" in args.parts:
        out["search"] = search_part(args.server, args.sizes, dim, model, args.queries, args.noise, args.pg_ef, args.faiss_ef)
    if "ingest" in args.parts:
        out["ingest"] = ingest_part(args.server, args.model, model, dim, args.events)
    if "propagation" in args.parts:
        out["propagation"] = propagation_part(args.server, args.model, model, dim, args.revocations)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
