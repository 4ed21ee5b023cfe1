"""The gate's decision logic, pure (no I/O): face tracks, temporal voting, cooldowns.

Each frame brings the judged faces' boxes and matches. Faces are tied to tracks across
frames by box IoU. Every track keeps its last ``vote_n`` votes (a person index when the
score reached the threshold, else ``NO_MATCH``); it decides once ``vote_k`` of them agree:

- ``accept``: k votes for one person, unless that person was accepted less than
  ``cooldown_s`` ago (then the track is quietly marked as done);
- ``reject``: k votes below threshold, and the face looks like someone enrolled (a claimed
  badge that does not match, or a best score within ``reject_margin`` under the threshold);
- ``unknown``: k votes below threshold from a face like no one enrolled;
- ``spoof`` (with liveness on, ``live_threshold`` set): k frames whose liveness score fell
  below ``live_threshold`` (a presentation attack: a photo or a screen), whoever it matched.

With liveness on, ``update`` asks its ``liveness`` callback for the scores of the faces whose
vote can make a decision (tracks not silent, or a vote for another enrolled person than the
silent track's last decision): a track that decided is not checked again during its cooldown,
which keeps the cost to a few frames per decision. Only checked frames count as votes then, so
no decision ever rests on a frame that was not checked.

A track that decided stays silent for ``cooldown_s``, except that k votes for an enrolled
person other than the one it last decided on end the silence: in a queue the next person
steps into the same track, and must not wait out the previous person's cooldown (votes that
fall below the threshold after an accept, a head turning, stay silent). Everything is bounded
(``max_tracks``, ``vote_n``-long deques), so memory stays flat however long the gate runs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from ..errors import CorefaceError

NO_MATCH = -1
SPOOF_VOTE = -2  # a frame whose liveness score fell below the liveness threshold
ACCEPT, REJECT, UNKNOWN, SPOOF = "accept", "reject", "unknown", "spoof"
Liveness = Callable[[list[int]], Sequence[float]]
"""Liveness scores (live probability) of the faces at these indices of this frame's observations."""


@dataclass(frozen=True)
class Observation:
    """One judged face in one frame: ``box`` (x, y, w, h), best/claimed person, score, margin."""

    box: tuple[float, float, float, float]
    person: int
    score: float
    margin: float
    claimed: bool = False
    live: float | None = None  # liveness score (None: not checked)


@dataclass(frozen=True)
class Decision:
    kind: str
    track: int
    person: int
    score: float
    margin: float
    votes: int
    face: int  # index of the observation (in this frame) that completed the vote
    live: float | None = None  # mean liveness score of the agreeing frames (None: liveness off)


@dataclass
class _Track:
    id: int
    box: tuple[float, float, float, float]
    last_seen: float
    votes: deque = field(default_factory=deque)
    silent_until: float = float("-inf")
    decided: int = NO_MATCH  # the vote of the track's last decision (a person index or NO_MATCH)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes."""
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class VotingPolicy:
    threshold: float
    vote_k: int = 3
    vote_n: int = 5
    cooldown_s: float = 5.0
    reject_margin: float = 0.1
    min_iou: float = 0.3
    track_ttl_s: float = 1.0
    max_tracks: int = 64
    live_threshold: float | None = None  # liveness on: a frame scoring below it votes spoof

    def __post_init__(self) -> None:
        if not 1 <= self.vote_k <= self.vote_n:
            raise CorefaceError(f"voting: need 1 <= vote_k <= vote_n, got k={self.vote_k} n={self.vote_n}")


class Decider:
    """Feed it each frame's observations with the frame time; it returns the decisions taken."""

    def __init__(self, policy: VotingPolicy) -> None:
        self.policy = policy
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._accepted_at: dict[int, float] = {}

    @property
    def n_tracks(self) -> int:
        return len(self._tracks)

    def remap(self, new_index: dict[int, int]) -> None:
        """The gallery was reloaded: person indices ``old -> new``; people no longer enrolled lose
        their votes (they become ``NO_MATCH``) and their cooldowns."""

        def moved(person: int) -> int:
            return new_index.get(person, NO_MATCH) if person >= 0 else person

        self._accepted_at = {new_index[k]: t for k, t in self._accepted_at.items() if k in new_index}
        for track in self._tracks:
            track.votes = deque(((moved(v), replace(o, person=moved(o.person))) for v, o in track.votes), maxlen=track.votes.maxlen)
            track.decided = moved(track.decided)

    def _match_vote(self, obs: Observation) -> int:
        return obs.person if obs.score >= self.policy.threshold and obs.person != NO_MATCH else NO_MATCH

    def _vote(self, obs: Observation) -> int:
        live_threshold = self.policy.live_threshold
        if live_threshold is not None and obs.live is not None and obs.live < live_threshold:
            return SPOOF_VOTE
        return self._match_vote(obs)

    def _can_decide(self, now: float, track: _Track, obs: Observation) -> bool:
        """Whether this face's vote can make its track decide (so it needs a liveness check)."""
        vote = self._match_vote(obs)
        return now >= track.silent_until or vote not in (NO_MATCH, track.decided)

    def update(self, now: float, observations: Sequence[Observation], liveness: Liveness | None = None) -> list[Decision]:
        """This frame's decisions; with ``policy.live_threshold`` set, ``liveness`` scores the faces
        whose vote can decide (see the module docstring)."""
        p = self.policy
        self._tracks = [t for t in self._tracks if now - t.last_seen <= p.track_ttl_s]
        self._accepted_at = {k: v for k, v in self._accepted_at.items() if now - v < p.cooldown_s}
        tracks = self._assign(now, observations)
        observations = list(observations)
        if p.live_threshold is not None and liveness is not None:
            need = [f for f, (obs, track) in enumerate(zip(observations, tracks)) if self._can_decide(now, track, obs)]
            for f, live in zip(need, liveness(need) if need else []):
                observations[f] = replace(observations[f], live=float(live))
        decisions = []
        for face, (obs, track) in enumerate(zip(observations, tracks)):
            track.votes.append((self._vote(obs), obs))
            silent = now < track.silent_until
            decision = self._tally(now, track, face, silent)
            if decision is not None:
                decisions.append(decision)
        return decisions

    def _assign(self, now: float, observations: Sequence[Observation]) -> list[_Track]:
        """Greedy IoU matching of this frame's boxes to live tracks; new tracks for the rest."""
        p = self.policy
        free = list(self._tracks)
        assigned = []
        for obs in observations:
            overlaps = [iou(obs.box, t.box) for t in free]
            best = int(np.argmax(overlaps)) if overlaps else -1
            if best >= 0 and overlaps[best] >= p.min_iou:
                track = free.pop(best)
            else:
                track = _Track(self._next_id, obs.box, now, deque(maxlen=p.vote_n))
                self._next_id += 1
                self._tracks.append(track)
                if len(self._tracks) > p.max_tracks:
                    self._tracks.sort(key=lambda t: t.last_seen)
                    self._tracks.pop(0)
            track.box, track.last_seen = obs.box, now
            assigned.append(track)
        return assigned

    def _tally(self, now: float, track: _Track, face: int, silent: bool) -> Decision | None:
        """The decision ``vote_k`` agreeing votes make, if any; while ``silent`` only a vote for
        another enrolled person than the track's last decision counts (the next person in a queue)."""
        p = self.policy
        counts: dict[int, list[Observation]] = {}
        for vote, obs in track.votes:
            if p.live_threshold is None or obs.live is not None:  # liveness on: checked frames only
                counts.setdefault(vote, []).append(obs)
        if not counts:
            return None
        vote, agreeing = max(counts.items(), key=lambda kv: len(kv[1]))
        if len(agreeing) < p.vote_k or (silent and vote in (NO_MATCH, track.decided)):
            return None
        track.votes.clear()
        track.silent_until = now + p.cooldown_s
        track.decided = vote
        last = agreeing[-1]
        score = float(np.mean([o.score for o in agreeing]))
        live = float(np.mean([o.live for o in agreeing])) if p.live_threshold is not None else None
        if vote == SPOOF_VOTE:  # the person the attack impersonated, if it matched one
            person = last.person if self._match_vote(last) != NO_MATCH else NO_MATCH
            return Decision(SPOOF, track.id, person, score, last.margin, len(agreeing), face, live)
        if vote != NO_MATCH:
            if vote in self._accepted_at:
                return None
            self._accepted_at[vote] = now
            return Decision(ACCEPT, track.id, vote, score, last.margin, len(agreeing), face, live)
        if last.claimed or score >= p.threshold - p.reject_margin:
            return Decision(REJECT, track.id, last.person, score, last.margin, len(agreeing), face, live)
        return Decision(UNKNOWN, track.id, NO_MATCH, score, last.margin, len(agreeing), face, live)
