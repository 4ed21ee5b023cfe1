"""The CFP (Celebrities in Frontal-Profile) folder layout and its 30-point fiducials.

Layout: ``Data/Images/NNN/{frontal,profile}/MM.jpg`` with fiducials in
``Data/Fiducials/NNN/{frontal,profile}/MM.txt`` (30 lines ``x,y``). The 30 points annotate
*one half* of the face (the image-left half of a frontal, the visible half of a profile):

====== =====================================================================
 index  meaning
====== =====================================================================
 0-8    jaw contour, from the ear down to the chin (8)
 9-11   eyebrow
 12-17  eye: 12 and 15 the corners, 13-14 upper lid, 16-17 lower lid
 18-21  nose bridge, from between the eyes (18) down to the tip (20-21)
 22-24  nose base: subnasale (22) and the nostril wing (23-24)
 25     mouth corner (annotated side)
 26-29  lip mid-line: 26 upper lip, 27/29 between the lips, 28 lower lip
====== =====================================================================

``five_points`` turns them into the 5 ArcFace points (the order YuNet gives). The hidden
eye and mouth corner are estimated: a frontal face mirrors them across its mid-line; a
profile puts them on the silhouette (bridge and lips), where YuNet places them too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CorefaceError

KINDS = ("frontal", "profile")
NUM_IDENTITIES = 500
NUM_FIDUCIALS = 30

_EYE = slice(12, 18)
_BRIDGE_TOP = 18
_MOUTH_CORNER = 25
_FRONTAL_NOSE = [21]
_PROFILE_NOSE = [20, 21]
_MIDLINE = [8, 18, 19, 20, 21, 26, 27, 28, 29]
_PROFILE_LIPS = [27, 29]
# How far beyond the bridge the hidden eye of a profile projects, as a fraction of the
# visible-eye-to-bridge distance (fitted to YuNet on 500 CFP profiles).
_PROFILE_EYE_OVERHANG = 0.25


@dataclass(frozen=True, order=True)
class CfpImage:
    """One CFP photo: identity 1..500, ``kind`` frontal/profile, ``number`` 1-based."""

    identity: int
    kind: str
    number: int

    @property
    def image_relpath(self) -> str:
        return f"Data/Images/{self.identity:03d}/{self.kind}/{self.number:02d}.jpg"

    @property
    def fiducial_relpath(self) -> str:
        return f"Data/Fiducials/{self.identity:03d}/{self.kind}/{self.number:02d}.txt"

    @property
    def aligned_relpath(self) -> str:
        return aligned_relpath(self.identity, self.kind, self.number)


DEFAULT_CFP_ROOT = Path("../shared/data/cfp")  # the CFP release beside a checkout; COREFACE_CFP_ROOT overrides


def aligned_relpath(identity: int, kind: str, number: int) -> str:
    """Where the aligned crop lives in a prepared folder: ``401/frontal_03.jpg``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return f"{identity:03d}/{kind}_{number:02d}.jpg"


def check_aligned_folder(folder: Path) -> None:
    """One-line error unless ``folder`` is a folder (the aligned set ``data prepare-cfp`` writes)."""
    if not folder.is_dir():
        raise CorefaceError(f"{folder}: not a folder (give the aligned CFP folder written by 'data prepare-cfp')")


def parse_identities(spec: str, upper: int = NUM_IDENTITIES) -> list[int]:
    """``"1-400"``, ``"401-402,410"`` or ``"7"`` -> sorted identity numbers in ``1..upper``."""
    found: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise CorefaceError(f"identities {spec!r}: expected ranges like 1-400 or 401,405-410")
        lo = int(match.group(1))
        hi = int(match.group(2) or lo)
        if not 1 <= lo <= hi <= upper:
            raise CorefaceError(f"identities {spec!r}: range {part} is outside 1-{upper} or reversed")
        found.update(range(lo, hi + 1))
    return sorted(found)


def check_root(root: Path) -> Path:
    """Return ``root`` if it looks like a CFP release (``Data/Images`` inside), else raise."""
    if not (root / "Data" / "Images").is_dir():
        raise CorefaceError(f"{root}: not a CFP folder (no Data/Images inside)")
    return root


def list_images(root: Path, identities: list[int] | None = None) -> list[CfpImage]:
    """Every photo of ``identities`` (default: all) present under ``root``, sorted."""
    images_dir = check_root(root) / "Data" / "Images"
    wanted = identities if identities is not None else range(1, NUM_IDENTITIES + 1)
    found = []
    for identity in wanted:
        for kind in KINDS:
            for path in (images_dir / f"{identity:03d}" / kind).glob("*.jpg"):
                if path.stem.isdigit():
                    found.append(CfpImage(identity, kind, int(path.stem)))
    return sorted(found)


def read_fiducials(path: Path) -> np.ndarray:
    """The 30 ``x,y`` fiducials of one photo as ``(30, 2)`` float32."""
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        points = np.array([[float(v) for v in line.split(",")] for line in lines], dtype=np.float32)
    except OSError as exc:
        raise CorefaceError(f"{path}: cannot read fiducials ({exc.strerror})") from None
    except ValueError:
        raise CorefaceError(f"{path}: fiducials must be 'x,y' numbers, one pair per line") from None
    if points.shape != (NUM_FIDUCIALS, 2):
        raise CorefaceError(f"{path}: expected {NUM_FIDUCIALS} 'x,y' lines, got shape {points.shape}")
    return points


def _reflect(points: np.ndarray, line_points: np.ndarray) -> np.ndarray:
    """Mirror ``points`` across the least-squares line through ``line_points``."""
    centre = line_points.mean(axis=0)
    direction = np.linalg.svd(line_points - centre)[2][0]
    offset = points - centre
    return centre + 2.0 * np.outer(offset @ direction, direction) - offset


def five_points(fiducials: np.ndarray, kind: str) -> np.ndarray:
    """ArcFace 5 points ``(5, 2)`` float32 from the 30 CFP fiducials of a ``kind`` photo.

    Order as YuNet: the image-left eye first, then the other eye, nose tip, and the mouth
    corners in the same left/right order as the eyes.
    """
    p = np.asarray(fiducials, dtype=np.float64).reshape(NUM_FIDUCIALS, 2)
    eye, mouth = p[_EYE].mean(axis=0), p[_MOUTH_CORNER]
    if kind == "frontal":
        nose = p[_FRONTAL_NOSE].mean(axis=0)
        eye2, mouth2 = _reflect(np.stack([eye, mouth]), p[_MIDLINE])
    elif kind == "profile":
        nose = p[_PROFILE_NOSE].mean(axis=0)
        bridge = p[_BRIDGE_TOP]
        eye2 = bridge + _PROFILE_EYE_OVERHANG * (bridge - eye)
        mouth2 = p[_PROFILE_LIPS].mean(axis=0)
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if eye[0] <= eye2[0]:
        out = [eye, eye2, nose, mouth, mouth2]
    else:
        out = [eye2, eye, nose, mouth2, mouth]
    return np.array(out, dtype=np.float32)
