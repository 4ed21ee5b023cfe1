"""The sync agent of one gate: pull enrollments and revocations into the local cache, push the
audit events queued in the local log, mark progress on the server; retry while it is away.

Local-first: the gate decides from its cache whatever the server does; the agent runs beside it
(a thread in ``gate --fleet``, or ``fleet sync`` on its own) and only touches the two SQLite
files through their own transactions.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import CorefaceError
from . import cache
from .dsn import Unreachable, describe_server, scrub
from .outbox import Outbox
from .store import FleetStore

PUSH_BATCH = 500
EVERY_S = 1.0
MAX_BACKOFF_S = 5.0
MARK_EVERY_S = 30.0  # a gate with nothing new still says it is alive this often
ROUND_PUSH_S = 2.0  # a background round starts no push batch after this, so a stop never waits for a backlog
FINAL_PUSH_S = 5.0  # on stop, the last round's budget; what is left stays queued on disk for the next start


@dataclass
class SyncState:
    """What the agent did so far (for the gate's summary and ``fleet sync``)."""

    enrolled: int = 0
    revoked: int = 0
    pushed: int = 0
    refused: int = 0
    failures: int = 0
    online: bool = False
    cursor: int = 0


class SyncAgent:
    """Syncs ``gallery`` (the cache) and ``audit`` (the outbox) with the server at ``dsn``."""

    def __init__(self, dsn: str, gallery: str | Path, audit: str | Path, model: str, name: str,
                 every_s: float = EVERY_S, batch: int = PUSH_BATCH) -> None:  # fmt: skip
        self.dsn, self.model, self.every_s, self.batch = dsn, model, every_s, batch
        self.cache = cache.open_cache(gallery)
        self.outbox = Outbox(audit, name)
        self.state = SyncState(cursor=cache.cursor(self.cache))
        self.on_event: Callable[[str, str], None] = lambda kind, detail: None
        self._store: FleetStore | None = None
        self.store_id = ""  # the server's store id, once connected
        self._marked = 0.0
        self._stop = threading.Event()
        self._backlog = False  # the last push stopped at its deadline with events still queued
        self._thread: threading.Thread | None = None
        self._closed: dict | None = None

    # --- one round -----------------------------------------------------------------------
    def _connect(self) -> FleetStore:
        if self._store is None:
            store = FleetStore(self.dsn)
            try:
                self.store_id = store.check_model(self.model)["store_id"]
                cache.cursor(self.cache, self.store_id)
            except Exception:
                store.close()
                raise
            self._store = store
        return self._store

    def sync_once(self, push: bool = True, push_for_s: float | None = None) -> bool:
        """Pull every change, push queued events (``push``: all of them, or batches for about
        ``push_for_s`` seconds); True when anything moved. Any failure is one ``CorefaceError``
        line, so the background thread never dies of one."""
        try:
            store = self._connect()
            deadline = None if push_for_s is None else time.monotonic() + push_for_s
            moved = self._pull(store) | (self._push(store, deadline) if push else False)
            if moved or time.monotonic() - self._marked > MARK_EVERY_S:
                store.mark(self.outbox.gate, self.outbox.name, self.state.cursor, self.outbox.pushed, self.outbox.queued())
                self._marked = time.monotonic()
        except CorefaceError:  # the server went away mid-round (Unreachable), or refused something
            self._drop()
            raise
        except Exception as exc:  # noqa: BLE001 - a driver error no branch above names: still one line
            self._drop()
            raise CorefaceError(f"{self._server()}: {type(exc).__name__}: {scrub(self.dsn, str(exc))}") from None
        return moved

    def _server(self) -> str:
        return describe_server(self.dsn)

    def _pull(self, store: FleetStore) -> bool:
        moved = False
        while True:
            pulled = store.pull(self.state.cursor, self.model)
            if pulled.cursor is None:
                return moved
            enrolled, revoked = cache.apply(self.cache, pulled, self.model, self.store_id)
            self.state.enrolled += enrolled
            self.state.revoked += revoked
            if pulled.refused:
                self.state.refused += pulled.refused
                self.on_event("fleet_refused", f"{pulled.refused} templates of another model than this gate's refused")
            self.state.cursor, moved = pulled.cursor, True

    def _push(self, store: FleetStore, deadline: float | None) -> bool:
        """Push queued events and labels in batches; no new batch starts after ``deadline``."""
        moved, self._backlog = False, False
        while deadline is None or time.monotonic() < deadline:
            rows = self.outbox.pending(self.batch)
            labels, labels_until = self.outbox.labels()
            if not rows and not labels:
                return moved
            store.push(rows, labels)
            self.outbox.acknowledge(rows[-1][3] if rows else None, labels_until)  # after the server's commit
            self.state.pushed += len(rows)
            moved = True
            if not rows:
                return moved
        self._backlog = True
        return moved

    def _drop(self) -> None:
        if self._store is not None:
            try:
                self._store.close()
            except Exception:  # noqa: BLE001 - a dead connection may fail to close
                pass
            self._store = None

    # --- in the background ---------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Sync every ``every_s`` until ``stop``; while the server is away back off (to
        ``MAX_BACKOFF_S``), say so once, and say when it is back."""
        wait = self.every_s
        last_problem = None
        while not stop.is_set():
            try:
                self.sync_once(push_for_s=ROUND_PUSH_S)
                if not self.state.online:
                    self.on_event("fleet_online", f"synced with {self._server()}: {cache.people(self.cache)} people cached, "
                                  f"{self.outbox.queued()} events queued")  # fmt: skip
                # a round that ran out of push time goes on at once; otherwise the next one waits
                self.state.online, last_problem, wait = True, None, 0.0 if self._backlog else self.every_s
            except CorefaceError as exc:
                self.state.failures += 1
                if self.state.online or str(exc) != last_problem:
                    kind = "fleet_offline" if isinstance(exc, Unreachable) else "fleet_error"
                    self.on_event(kind, f"{exc}; deciding from the cache, events queued on disk")
                self.state.online, last_problem = False, str(exc)
                wait = min(MAX_BACKOFF_S, max(wait * 2, self.every_s))
            stop.wait(wait)

    def start(self, on_event: Callable[[str, str], None]) -> None:
        self.on_event = on_event
        self._thread = threading.Thread(target=self.run, args=(self._stop,), name="fleet-sync", daemon=True)
        self._thread.start()

    def close(self, final_sync: bool = True, push_for_s: float = FINAL_PUSH_S) -> dict:
        """Stop the thread; one last round pushes, for ``push_for_s`` seconds at most, what the
        run left queued (if the server is there); the rest stays queued on disk for the next
        start. Returns the summary; closing twice is harmless."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            if final_sync:
                try:
                    self.sync_once(push_for_s=push_for_s)
                except CorefaceError as exc:
                    kind = "fleet_offline" if isinstance(exc, Unreachable) else "fleet_error"
                    self.on_event(kind, f"{exc}; {self.outbox.queued()} events stay queued for the next sync")
        if self._closed is None:
            self._closed = self.summary()
            self._drop()
            self.cache.close()
            self.outbox.close()
        return self._closed

    def summary(self) -> dict:
        return {"online": self.state.online, "cursor": self.state.cursor, "enrolled": self.state.enrolled,
                "revoked": self.state.revoked, "pushed": self.state.pushed, "queued": self.outbox.queued(),
                "refused_templates": self.state.refused, "failed_rounds": self.state.failures}  # fmt: skip
