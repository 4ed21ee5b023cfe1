"""The site-wide report over the central audit: decisions per gate and day, and the observed
FAR / FRR from the operators' labels (the rules of the single-gate report, ``gate.report``)."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from ..gate.report import KINDS, error_rates
from .store import FleetStore

ROWS_SQL = (
    "SELECT e.gate_name, extract(epoch FROM e.time)::float8, e.decision, l.wrong FROM events e "
    "LEFT JOIN LATERAL (SELECT wrong FROM labels WHERE labels.event = e.event ORDER BY labelled DESC LIMIT 1) l ON true "
    "WHERE e.time >= to_timestamp(%s) ORDER BY e.time"
)


def site_report(store: FleetStore, since: float = 0.0) -> list[dict[str, Any]]:
    """One row per (gate, local day): counts per decision, labelled, false accepts/rejects, FAR, FRR."""
    with store.transaction():
        rows = store.conn.execute(ROWS_SQL, (since,)).fetchall()
    groups: dict[tuple[str, str], list[tuple[str, Any]]] = defaultdict(list)
    for gate, t, decision, wrong in rows:
        groups[(gate, time.strftime("%Y-%m-%d", time.localtime(t)))].append((decision, wrong))
    out = []
    for (gate, day), items in sorted(groups.items()):
        decisions = [d for d, _ in items]
        rates = error_rates(decisions, [w for _, w in items])
        out.append({
            "gate": gate, "day": day, "events": len(items), **{k: decisions.count(k) for k in KINDS},
            "labelled": rates.labelled, "false_accepts": rates.false_accepts, "false_rejects": rates.false_rejects,
            "far": rates.far, "frr": rates.frr,
        })  # fmt: skip
    return out
