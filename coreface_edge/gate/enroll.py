"""Enrollment: collect good faces of one person (image folder or camera), embed, store.

From a folder, each image contributes its face if it passes the quality gate (an image with
several faces is skipped: whose would it be?; ``face.frontend.from_images``); from a camera, frames are taken until ``n`` good ones were collected,
while the console tells the person what to fix ("closer", "face the camera", "too dark").
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

import numpy as np

from ..errors import CorefaceError
from ..face.frontend import Collected, FaceFrontEnd
from .gallery import Gallery
from .matcher import Matcher
from .sources import Frame


def from_camera(
    front: FaceFrontEnd,
    frames: Iterable[Frame],
    n: int,
    guide: Callable[[str], None],
    advance: Callable[[], None],
    min_interval_s: float = 0.3,
    timeout_s: float = 60.0,
    source: str = "camera",
) -> Collected:
    """Collect ``n`` good faces at least ``min_interval_s`` apart; tell the person what to fix."""
    got = Collected()
    start, last_taken, last_advice, why = time.monotonic(), float("-inf"), "", "the source ended"
    for frame in frames:
        now = time.monotonic()
        if now - start > timeout_s:
            why = f"{timeout_s:g} s passed"
            break
        if now - last_taken < min_interval_s:
            continue
        problems = [frame.problem] if frame.problem else got.add(front, frame.image, f"frame {frame.name}")
        advice = ", ".join(problems) if problems else "hold still"
        if advice != last_advice:
            guide(advice)
            last_advice = advice
        if not problems:
            last_taken = now
            advance()
            if len(got.crops) >= n:
                break
    if len(got.crops) < n:
        raise CorefaceError(f"{source}: only {len(got.crops)} of {n} good frames before {why} (last advice: {last_advice}); nothing enrolled")
    return got


def look_alikes(gallery: Gallery, model: str, embeddings: np.ndarray, threshold: float) -> list[tuple[str, float]]:
    """Enrolled people the new face already matches (mean of its embeddings, score >= threshold)."""
    if not gallery.persons() or gallery.model != model:
        return []
    matrix = gallery.matrix(model)
    scores = Matcher(matrix).match(embeddings.mean(axis=0, keepdims=True))
    best = scores[0]
    return [(matrix.names[best.person], best.score)] if best.score >= threshold else []
