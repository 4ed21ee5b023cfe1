"""The trial report of an audit log: decisions per hour/day, counts, latency, observed error rates.

Error rates come from the operator's labels (``report label`` or a CSV): an accept labelled
wrong is a false accept (a stranger let in / the wrong person); a reject or unknown labelled
wrong is a false reject (an enrolled person kept out). Unlabelled events count as right.

With liveness on, presentation-attack detection rates use the ISO/IEC 30107-3 names: APCER, the
share of attack presentations not classified ``spoof``; BPCER, the share of bona fide (live)
presentations classified ``spoof``. What was presented comes from the operator's presentation
label (``report label ID --attack`` / ``--bona-fide``), else from the verdict label of a ``spoof``
(right: an attack; wrong: a live person); every other event counts as bona fide.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..profiling.stats import summarize
from .audit import AuditLog
from .voting import ACCEPT, REJECT, SPOOF, UNKNOWN

KINDS = (ACCEPT, REJECT, UNKNOWN, SPOOF)
LATENCY_COLUMNS = ("detect_ms", "align_ms", "embed_ms", "match_ms", "total_ms")


@dataclass(frozen=True)
class ErrorRates:
    """Observed error rates from labelled events (see the module docstring)."""

    false_accepts: int
    false_rejects: int
    genuine_attempts: int  # right accepts + wrong rejects/unknowns
    impostor_attempts: int  # wrong accepts + right rejects/unknowns
    labelled: int

    @property
    def far(self) -> float | None:
        return self.false_accepts / self.impostor_attempts if self.impostor_attempts else None

    @property
    def frr(self) -> float | None:
        return self.false_rejects / self.genuine_attempts if self.genuine_attempts else None


def per_period(times: np.ndarray, decisions: list[str], fmt: str) -> dict[str, Counter]:
    """Decision counts per local-time bucket named by ``time.strftime(fmt)``, in time order."""
    out: dict[str, Counter] = {}
    for t, kind in sorted(zip(times.tolist(), decisions)):
        out.setdefault(time.strftime(fmt, time.localtime(t)), Counter())[kind] += 1
    return out


def error_rates(decisions: list[str], wrong: list[int | None]) -> ErrorRates:
    """False accepts / rejects and the attempts they are rates of (unlabelled = right)."""
    accepted = np.array([d == ACCEPT for d in decisions], dtype=bool)
    is_wrong = np.array([bool(w) for w in wrong], dtype=bool)
    fa = int((accepted & is_wrong).sum())
    fr = int((~accepted & is_wrong).sum())
    return ErrorRates(
        false_accepts=fa,
        false_rejects=fr,
        genuine_attempts=int((accepted & ~is_wrong).sum()) + fr,
        impostor_attempts=int((~accepted & ~is_wrong).sum()) + fa,
        labelled=sum(w is not None for w in wrong),
    )


@dataclass(frozen=True)
class PresentationRates:
    """Presentation-attack detection errors from labelled events (see the module docstring)."""

    attacks: int
    attacks_missed: int  # attack presentations not classified spoof
    bona_fide: int
    bona_fide_flagged: int  # live presentations classified spoof

    @property
    def apcer(self) -> float | None:
        return self.attacks_missed / self.attacks if self.attacks else None

    @property
    def bpcer(self) -> float | None:
        return self.bona_fide_flagged / self.bona_fide if self.bona_fide else None


def presentation_rates(decisions: list[str], wrong: list[int | None], attack: list[int | None]) -> PresentationRates:
    """APCER / BPCER counts: ``attack`` is the operator's presentation label (1 attack, 0 bona
    fide, None unlabelled), ``wrong`` the verdict label (a wrong ``spoof`` was a live person)."""
    flagged = np.array([d == SPOOF for d in decisions], dtype=bool)
    truth = np.array([bool(a) if a is not None else (d == SPOOF and not w) for d, w, a in zip(decisions, wrong, attack)], dtype=bool)
    return PresentationRates(
        attacks=int(truth.sum()),
        attacks_missed=int((truth & ~flagged).sum()),
        bona_fide=int((~truth).sum()),
        bona_fide_flagged=int((~truth & flagged).sum()),
    )


def build_report(audit: AuditLog) -> tuple[dict[str, Any], list[float]]:
    """Everything the report prints (JSON-ready), and each decision's frame latency in ms."""
    presentations = audit.table_exists("presentations")
    rows = audit.rows(
        f"SELECT e.time, e.decision, {', '.join('e.' + c for c in LATENCY_COLUMNS)}, "
        + ("p.attack, " if presentations else "NULL, ") + "l.wrong FROM events e LEFT JOIN labels l ON l.event_id = e.id "
        + ("LEFT JOIN presentations p ON p.event_id = e.id " if presentations else "") + "ORDER BY e.time"
    )
    runs = audit.rows("SELECT started, stopped, frames, camera FROM runs ORDER BY id")
    times = np.array([r[0] for r in rows], dtype=np.float64)
    decisions = [r[1] for r in rows]
    latency = {}
    for k, column in enumerate(LATENCY_COLUMNS, start=2):
        values = [r[k] for r in rows if r[k] is not None]
        if values:
            s = summarize(values)
            latency[column.removesuffix("_ms")] = {"p50_ms": s.p50_ms, "p90_ms": s.p90_ms, "p99_ms": s.p99_ms, "max_ms": s.max_ms}
    rates = error_rates(decisions, [r[-1] for r in rows])
    liveness_on = audit.table_exists("liveness") or presentations
    pad = presentation_rates(decisions, [r[-1] for r in rows], [r[-2] for r in rows]) if liveness_on else None
    totals = [r[2 + LATENCY_COLUMNS.index("total_ms")] for r in rows]
    report = {
        "audit": str(audit.path),
        "events": len(rows),
        "runs": [{"started": r[0], "stopped": r[1], "frames": r[2], "camera": r[3]} for r in runs],
        "counts": {k: decisions.count(k) for k in (KINDS if liveness_on else KINDS[:3])},  # spoof: where liveness ran
        "per_day": {k: dict(v) for k, v in per_period(times, decisions, "%Y-%m-%d").items()},
        "per_hour": {k: dict(v) for k, v in per_period(times, decisions, "%Y-%m-%d %H:00").items()},
        "latency": latency,
        "labels": {
            "labelled": rates.labelled,
            "false_accepts": rates.false_accepts,
            "false_rejects": rates.false_rejects,
            "genuine_attempts": rates.genuine_attempts,
            "impostor_attempts": rates.impostor_attempts,
            "false_accept_rate": rates.far,
            "false_reject_rate": rates.frr,
        },
        "presentation_attacks": None if pad is None else {
            "attacks": pad.attacks, "attacks_missed": pad.attacks_missed, "apcer": pad.apcer,
            "bona_fide": pad.bona_fide, "bona_fide_flagged": pad.bona_fide_flagged, "bpcer": pad.bpcer,
        },
    }  # fmt: skip
    return report, [t for t in totals if t is not None]


def plot_report(report: dict[str, Any], totals: list[float], path: Path) -> Path:
    """PNG: decisions per hour (stacked bars) and the histogram of per-decision frame latency."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    ax_hours, ax_latency = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    hours = list(report["per_hour"])
    bottom = np.zeros(len(hours))
    colours = {ACCEPT: "tab:green", REJECT: "tab:red", UNKNOWN: "tab:grey", SPOOF: "tab:purple"}
    for kind in KINDS:
        values = np.array([report["per_hour"][h].get(kind, 0) for h in hours], dtype=float)
        ax_hours.bar(range(len(hours)), values, bottom=bottom, color=colours[kind], label=kind)
        bottom += values
    ax_hours.set_xticks(range(len(hours)), [h[5:] for h in hours], rotation=60, ha="right", fontsize=7)
    ax_hours.set_ylabel("decisions")
    ax_hours.set_title("decisions per hour")
    ax_hours.legend()
    if totals:
        ax_latency.hist(totals, bins=40, color="tab:blue")
        for q, style in ((50, "--"), (99, ":")):
            ax_latency.axvline(float(np.percentile(totals, q)), color="k", linestyle=style, label=f"p{q}")
        ax_latency.legend()
    ax_latency.set_xlabel("frame latency of each decision (ms)")
    ax_latency.set_title("latency")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return path
