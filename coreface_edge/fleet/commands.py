"""CLI of the fleet: ``fleet init|enroll|revoke|people|status|sync|report``. The connection
string comes from ``--dsn``, ``@FILE`` or ``$COREFACE_FLEET_DSN`` and is never printed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import CorefaceError

DSN_HELP = "Server: @FILE (first line: a libpq connection string), a connection string without password (~/.pgpass), or leave out to use $COREFACE_FLEET_DSN."
GATE_PASSWORD_ENV = "COREFACE_FLEET_GATE_PASSWORD"

fleet_app = typer.Typer(help="A fleet of gates on one PostgreSQL + pgvector server (docs/fleet.md).", no_args_is_help=True)


def _store(dsn: Optional[str]) -> Any:
    from .dsn import resolve
    from .store import FleetStore

    return FleetStore(resolve(dsn))


def _table(title: str, columns: tuple[str, ...], rows: list[tuple]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row))
    return table


@fleet_app.command("init")
def fleet_init(
    dsn: Optional[str] = typer.Option(None, help=DSN_HELP + " Needs a superuser the first time (creates the vector extension, tables and the gate role)."),
    gate_login: Optional[str] = typer.Option(None, help=f"Also create (or update) this login role for gates, with the gate privileges only; its password from ${GATE_PASSWORD_ENV}."),
) -> None:
    """Create or migrate the fleet schema (versioned) and the least-privilege gate role."""
    from .dsn import describe_server, resolve
    from .schema import GATE_ROLE, LATEST
    from .store import init

    value = resolve(dsn)
    password = os.environ.get(GATE_PASSWORD_ENV)
    if gate_login and not password:
        raise CorefaceError(f"fleet init --gate-login {gate_login}: set ${GATE_PASSWORD_ENV} to its password first")
    applied, meta = init(value, gate_login, password)
    rows = [(f"v{LATEST}", ", ".join(f"v{v}" for v in applied) or "none (up to date)", meta["store_id"],
             (meta.get("model") or "not bound yet")[:13], GATE_ROLE + (f" + login {gate_login}" if gate_login else ""))]  # fmt: skip
    Console().print(_table(f"{describe_server(value)}: fleet store ready", ("schema", "migrations applied", "store id", "model", "gate role"), rows))


@fleet_app.command("enroll")
def fleet_enroll(
    source: Path = typer.Argument(..., help="People to add: a gallery file ('coreface-edge enroll' at reception) or a bundle ('gallery export')."),
    dsn: Optional[str] = typer.Option(None, help=DSN_HELP),
) -> None:
    """Add everyone of a gallery or bundle to the fleet (templates only, never images), all or nothing."""
    from ..gate.gallery import read_people

    model, people = read_people(source)
    with _store(dsn) as store, Console(stderr=True).status(f"enrolling {len(people)} people from {source} (one transaction)"):
        ids = store.enroll(model, people)
    rows = [(ids[name], name, people[name]["badge"], len(people[name]["rows"])) for name in sorted(ids, key=ids.get)]
    Console().print(_table(f"enrolled {len(ids)} people in the fleet (model {model[:12]})", ("id", "name", "badge", "templates"), rows))


@fleet_app.command("revoke")
def fleet_revoke(
    person: str = typer.Argument(..., help="id:N, badge:B, name:NAME, or a name or badge."),
    dsn: Optional[str] = typer.Option(None, help=DSN_HELP),
) -> None:
    """Revoke a person: every online gate drops them at its next sync (about a second)."""
    with _store(dsn) as store:
        person_id, name = store.revoke(person)
    Console().print(f"revoked {name!r} (id {person_id}); gates drop them at their next sync")


@fleet_app.command("people")
def fleet_people(dsn: Optional[str] = typer.Option(None, help=DSN_HELP)) -> None:
    """Everyone enrolled in the fleet, revoked ones included."""
    with _store(dsn) as store:
        rows = store.people()
    stamp = lambda t: None if t is None else t.astimezone().strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
    Console().print(_table(f"{len(rows)} people", ("id", "name", "badge", "enrolled", "revoked", "templates"),
                           [(i, n, b, stamp(e), stamp(r), k) for i, n, b, e, r, k in rows]))  # fmt: skip


@fleet_app.command("status")
def fleet_status(dsn: Optional[str] = typer.Option(None, help=DSN_HELP)) -> None:
    """Every gate: last sync, changes applied, events stored and still queued; revocation propagation."""
    import numpy as np

    with _store(dsn) as store:
        latest, gates = store.status()
        delays = store.propagation()
    rows = [(g["name"], str(g["gate"])[:8], f"{g['age_s']:.0f} s ago", f"{g['cursor']}/{latest}",
             "yes" if g["cursor"] >= latest else "no", g["events"], g["queued"]) for g in gates]  # fmt: skip
    console = Console()
    console.print(_table(f"{len(gates)} gates", ("gate", "id", "last sync", "changes applied", "up to date", "events stored", "queued at gate"), rows))
    if delays:
        console.print(f"revocation propagation over {len(delays)} (revocation, gate) pairs: p50 {np.percentile(delays, 50):.2f} s, "
                      f"p99 {np.percentile(delays, 99):.2f} s, max {max(delays):.2f} s", highlight=False)  # fmt: skip


@fleet_app.command("sync")
def fleet_sync(
    gallery: Path = typer.Option(..., help="The gate's local cache (a gallery file, created if missing)."),
    audit: Path = typer.Option(..., help="The gate's audit log: its events after the pushed mark are sent."),
    model: Path = typer.Option(..., help="The gate's model (its fingerprint must be the fleet's)."),
    name: str = typer.Option(..., help="The gate's name in the central audit."),
    dsn: Optional[str] = typer.Option(None, help=DSN_HELP),
    loop: bool = typer.Option(False, "--loop", help="Keep syncing (every --every s) until SIGTERM/SIGINT; else one full round."),
    every: float = typer.Option(1.0, min=0.05, help="--loop: seconds between rounds."),
    batch: int = typer.Option(500, min=1, help="Events per push transaction."),
) -> None:
    """Sync one gate's cache and audit log with the server (what 'gate --fleet' does beside the gate)."""
    import signal
    import threading

    from ..gate.threshold import open_model
    from .dsn import resolve
    from .sync import SyncAgent

    stop = threading.Event()
    if loop:  # from the start: a stop that arrives while the model opens still ends cleanly
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    _, fingerprint = open_model(model)
    agent = SyncAgent(resolve(dsn), gallery, audit, fingerprint, name, every_s=every, batch=batch)
    console = Console(stderr=True)
    try:
        if loop:
            agent.on_event = lambda kind, detail: console.print(f"{kind}: {detail}", highlight=False)
            agent.run(stop)
        else:
            queued = agent.outbox.queued()
            started = time.perf_counter()
            with console.status(f"syncing: {queued} events queued"):
                agent.sync_once()
            console.print(f"synced in {time.perf_counter() - started:.1f} s", highlight=False)
    finally:
        summary = agent.close(final_sync=False)
    Console().print(_table(f"fleet sync of {name}", tuple(summary), [tuple(summary.values())]))


@fleet_app.command("report")
def fleet_report(
    dsn: Optional[str] = typer.Option(None, help=DSN_HELP),
    days: Optional[float] = typer.Option(None, min=0.0, help="Only the last DAYS days."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the rows as JSON."),
) -> None:
    """Site-wide report: decisions per gate and day, observed FAR / FRR where events are labelled."""
    from ..atomic import write_text_atomic
    from ..gate.report import KINDS, SPOOF
    from .report import site_report

    with _store(dsn) as store:
        rows = site_report(store, time.time() - days * 86400 if days is not None else 0.0)
    rate = lambda r: "-" if r is None else f"{100 * r:.2f} %"  # noqa: E731
    kinds = [k for k in KINDS if k != SPOOF or any(r.get(SPOOF) for r in rows)]  # spoof: where liveness ran
    table = _table(
        f"site report: {sum(r['events'] for r in rows)} decisions from {len({r['gate'] for r in rows})} gates",
        ("gate", "day", *kinds, "labelled", "false accepts", "false rejects", "FAR", "FRR"),
        [(r["gate"], r["day"], *(r.get(k, 0) for k in kinds), r["labelled"], r["false_accepts"], r["false_rejects"],
          rate(r["far"]), rate(r["frr"])) for r in rows],
    )  # fmt: skip
    Console().print(table)
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(rows, indent=2) + "\n")


def register(app: typer.Typer) -> None:
    """Add the fleet commands to the root app."""
    app.add_typer(fleet_app, name="fleet")
