"""The gate's decisions against the ground truth of the camera frames (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .samples import Visit

LET_THROUGH, FALSE_REJECT, WRONG_PERSON = "let through", "kept out (false reject)", "WRONG PERSON ACCEPTED"
KEPT_OUT, STRANGER_IN, NOT_JUDGED = "kept out", "STRANGER LET IN", "no face judged"


def verdict(visit: Visit, decision: dict[str, Any] | None) -> str:
    """What one frame's decision means for this visitor."""
    if decision is None:
        return NOT_JUDGED
    accepted = decision["decision"] == "accept"
    if visit.person is None:
        return STRANGER_IN if accepted else KEPT_OUT
    if not accepted:
        return FALSE_REJECT
    return LET_THROUGH if decision["person"] == visit.person else WRONG_PERSON


@dataclass
class GateScore:
    """Every frame's verdict and the counts that matter at a door."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(r["verdict"] == kind for r in self.rows)

    @property
    def enrolled_attempts(self) -> int:
        return sum(r["truth"] is not None for r in self.rows)

    @property
    def stranger_attempts(self) -> int:
        return sum(r["truth"] is None for r in self.rows)

    @property
    def safe(self) -> bool:
        """No stranger let in and nobody accepted as someone else."""
        return self.count(STRANGER_IN) == 0 and self.count(WRONG_PERSON) == 0

    def share_let_through(self) -> float:
        return self.count(LET_THROUGH) / self.enrolled_attempts if self.enrolled_attempts else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "frames": len(self.rows),
            "enrolled_attempts": self.enrolled_attempts,
            "let_through": self.count(LET_THROUGH),
            "share_let_through": self.share_let_through(),
            "false_rejects": self.count(FALSE_REJECT),
            "wrong_person_accepted": self.count(WRONG_PERSON),
            "stranger_attempts": self.stranger_attempts,
            "strangers_let_in": self.count(STRANGER_IN),
            "not_judged": self.count(NOT_JUDGED),
            "safe": self.safe,
        }


def score_decisions(visits: list[Visit], decisions: list[dict[str, Any]]) -> GateScore:
    """Match decisions to frames (the last decision of a frame counts) and judge each."""
    by_frame = {d["frame"]: d for d in decisions}
    score = GateScore()
    for visit in visits:
        d = by_frame.get(visit.frame)
        score.rows.append({
            "frame": visit.frame,
            "truth": visit.person,
            "decision": d["decision"] if d else None,
            "person": d.get("person") if d else None,
            "score": d.get("score") if d else None,
            "verdict": verdict(visit, d),
        })  # fmt: skip
    return score
