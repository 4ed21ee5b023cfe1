"""``coreface-edge data align``: photos sorted by person -> labelled 112x112 faces, aligned as
the gate aligns them (real photos, real YuNet), usable as held-out faces for the guard."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
from conftest import run_cli

from coreface_edge.data.imagefolder import ImageFolder
from coreface_edge.face import YuNetDetector, align_faces


def _photos_by_person(root: Path, face_photos: list[Path]) -> Path:
    for photo in face_photos:
        person = root / f"person{photo.name[4:7]}"
        person.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, person / photo.name)
    (root / "person401" / "notes.txt").write_text("not a photo")
    return root


def test_align_writes_one_crop_per_good_photo(tmp_path: Path, face_photos: list[Path]):
    photos = _photos_by_person(tmp_path / "photos", face_photos)
    proc = run_cli("data", "align", photos, tmp_path / "faces")
    crops = sorted((tmp_path / "faces").rglob("*.jpg"))
    frontal = [p for p in face_photos if "frontal" in p.name]
    assert [c.relative_to(tmp_path / "faces").as_posix() for c in crops] == sorted(f"person{p.name[4:7]}/{p.stem}.jpg" for p in frontal)
    assert "cfp_401_profile_01.jpg" in proc.stdout and "skipped" in proc.stdout  # the profile photo fails the quality gate, named
    # the same crop the gate computes: YuNet landmarks -> 5-point similarity alignment
    image = cv2.imread(str(photos / "person402" / "cfp_402_frontal_01.jpg"))
    expected = align_faces(image, YuNetDetector().detect(image).landmarks[:1])[0]
    written = cv2.imread(str(tmp_path / "faces" / "person402" / "cfp_402_frontal_01.jpg"))
    assert written.shape == (112, 112, 3) and np.abs(written.astype(int) - expected.astype(int)).mean() < 3  # JPEG q95


def test_aligned_folder_reads_as_labelled_faces(tmp_path: Path, face_photos: list[Path]):
    """The layout the guard's --holdout and benchmark --faces read (ImageFolder)."""
    run_cli("data", "align", _photos_by_person(tmp_path / "photos", face_photos), tmp_path / "faces")
    folder = ImageFolder(tmp_path / "faces")
    assert len(folder) == 5 and folder[0][0].shape == (112, 112, 3)
    assert sorted(folder.classes) == ["person401", "person402", "person403"]


def test_align_refuses_bad_input(tmp_path: Path):
    proc = run_cli("data", "align", tmp_path / "nowhere", tmp_path / "faces", check=False)
    assert proc.returncode == 2 and "nowhere: not a folder (expected ROOT/<person>/*.jpg)" in proc.stderr
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.jpg").write_bytes(b"")
    proc = run_cli("data", "align", tmp_path / "flat", tmp_path / "faces", check=False)
    assert proc.returncode == 2 and "no person folders with photos" in proc.stderr and not (tmp_path / "faces").exists()


def test_two_photos_with_one_name_keep_both_counts_honest(tmp_path: Path, face_photos: list[Path]):
    """01.jpg and 01.png of one person would write the same crop: the second is skipped, named."""
    person = tmp_path / "photos" / "ann"
    person.mkdir(parents=True)
    frontal = [p for p in face_photos if "frontal" in p.name]
    shutil.copy(frontal[0], person / "01.jpg")
    cv2.imwrite(str(person / "01.png"), cv2.imread(str(frontal[1])))
    (tmp_path / "photos" / ".thumbnails").mkdir()
    shutil.copy(frontal[2], tmp_path / "photos" / ".thumbnails" / "x.jpg")
    proc = run_cli("data", "align", tmp_path / "photos", tmp_path / "faces")
    assert sorted(p.relative_to(tmp_path / "faces").as_posix() for p in (tmp_path / "faces").rglob("*.jpg")) == ["ann/01.jpg"]
    text = " ".join(proc.stdout.split())
    assert "faces aligned │ 1" in text and "same name as 01.jpg" in text and "people │ 1" in text
