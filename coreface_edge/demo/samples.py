"""The demo's bundled faces (package data, made by ``scripts/make_demo_samples.py``).

``enroll/<name>/*.jpg``: photos of each person the demo enrolls; ``camera/*.jpg``: the frames
the gate sees, with ``camera/ground_truth.csv`` (``frame,person,cfp_photo``; ``person`` empty
for someone never enrolled); ``calibration/*.jpg``: photos of other people for INT8.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import CorefaceError

GROUND_TRUTH = "ground_truth.csv"


@dataclass(frozen=True)
class Visit:
    """One camera frame and who is in it: ``person`` is the enrolled name, None for a stranger;
    ``identity`` names the face either way (for verification pairs)."""

    frame: str
    person: str | None
    identity: str


@dataclass(frozen=True)
class DemoSamples:
    root: Path

    @property
    def enroll(self) -> Path:
        return self.root / "enroll"

    @property
    def camera(self) -> Path:
        return self.root / "camera"

    @property
    def calibration(self) -> Path:
        return self.root / "calibration"

    def people(self) -> list[str]:
        return sorted(p.name for p in self.enroll.iterdir() if p.is_dir())

    def visits(self) -> list[Visit]:
        """The ground truth of every camera frame, in frame order."""
        path = self.camera / GROUND_TRUTH
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            return [Visit(r["frame"], r["person"] or None, "cfp" + r["cfp_photo"].split("/")[0]) for r in rows]
        except (OSError, KeyError) as exc:
            raise CorefaceError(f"{path}: not a readable ground truth (frame,person,cfp_photo): {exc}") from None


def bundled_samples() -> DemoSamples:
    """The samples shipped in the package; a clear error when the installation lacks them."""
    root = Path(str(resources.files("coreface_edge") / "assets" / "demo"))
    if not (root / "camera" / GROUND_TRUTH).is_file():
        raise CorefaceError(f"{root}: demo samples missing from this installation (reinstall coreface-edge)")
    return DemoSamples(root)
