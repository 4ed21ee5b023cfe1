"""Write the demo's bundled samples (coreface_edge/assets/demo/) from a CFP release.

    python scripts/make_demo_samples.py ../shared/data/cfp

Identities come from the evaluation half (401-500), which no shipped model was trained on, in
fixed blocks: 401-408 are enrolled (frontal 01-03), 401-416 walk past the "camera" (frontal 06
and 07; 409-416 were never enrolled), 417-424 give the INT8 calibration photos (frontal 01-04).
The shipped operating threshold is measured on identities 425-500 only, so no demo face helped
choose it. Photos are downscaled to at most MAX_SIDE pixels and saved at JPEG_QUALITY.
"""

from __future__ import annotations

import csv
import random
import shutil
import sys
from pathlib import Path

import cv2

ENROLLED = range(401, 409)
STRANGERS = range(409, 417)
CALIBRATION = range(417, 425)
ENROLL_PHOTOS = (1, 2, 3)
CAMERA_PHOTOS = (6, 7)
CALIBRATION_PHOTOS = (1, 2, 3, 4)
MAX_SIDE = 160
JPEG_QUALITY = 85
OUT = Path(__file__).resolve().parents[1] / "coreface_edge" / "assets" / "demo"

README = """Demo samples for `coreface-edge demo`: real faces from CFP (Sengupta et al., "Frontal to
Profile Face Verification in the Wild", WACV 2016; research use only, see the CFP licence).
Only identities 401-500 are used, which the shipped model never saw in training:
  enroll/<name>/      3 frontal photos of each of the 8 people the demo enrolls (CFP 401-408)
  camera/             32 photos the gate sees one after another: 2 other photos of each enrolled
                      person and 2 of each of 8 people never enrolled (CFP 409-416);
                      ground_truth.csv names the owner of each frame ("" = not enrolled)
  calibration/        32 photos of 8 more people (CFP 417-424) for INT8 calibration
Made by scripts/make_demo_samples.py; photos downscaled to at most 160 px, JPEG quality 85.
"""


def name_of(identity: int) -> str:
    return f"cfp{identity}"


def copy_photo(cfp: Path, identity: int, number: int, target: Path) -> None:
    source = cfp / "Data" / "Images" / f"{identity:03d}" / "frontal" / f"{number:02d}.jpg"
    image = cv2.imread(str(source), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"{source}: not a readable image")
    target.parent.mkdir(parents=True, exist_ok=True)
    scale = min(1.0, MAX_SIDE / max(image.shape[:2]))
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(target), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])


def main(cfp: Path) -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    for identity in ENROLLED:
        for n in ENROLL_PHOTOS:
            copy_photo(cfp, identity, n, OUT / "enroll" / name_of(identity) / f"{n:02d}.jpg")
    visits = [(identity, n) for identity in (*ENROLLED, *STRANGERS) for n in CAMERA_PHOTOS]
    random.Random(0).shuffle(visits)
    rows = []
    for k, (identity, n) in enumerate(visits, 1):
        frame = f"frame_{k:03d}.jpg"
        copy_photo(cfp, identity, n, OUT / "camera" / frame)
        rows.append({"frame": frame, "person": name_of(identity) if identity in ENROLLED else "", "cfp_photo": f"{identity:03d}/frontal/{n:02d}.jpg"})
    with open(OUT / "camera" / "ground_truth.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["frame", "person", "cfp_photo"])
        writer.writeheader()
        writer.writerows(rows)
    for identity in CALIBRATION:
        for n in CALIBRATION_PHOTOS:
            copy_photo(cfp, identity, n, OUT / "calibration" / f"{identity:03d}_{n:02d}.jpg")
    (OUT / "README.txt").write_text(README)
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {sum(1 for _ in OUT.rglob('*.jpg'))} photos, {size / 1024:.0f} KiB, to {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/cfp"))
