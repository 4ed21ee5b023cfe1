"""CFP on the real ../shared photos: fiducial 5 points against YuNet, prepare-cfp end to end."""

from __future__ import annotations

import fcntl
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from coreface_edge.data.cfp import CfpImage, five_points, list_images, read_fiducials
from coreface_edge.data.imagefolder import ImageFolder
from coreface_edge.data.recordio import InsightfaceRecordDataset
from coreface_edge.face import YuNetDetector, estimate_similarity
from conftest import run_cli


def _table_value(stdout: str, measure: str) -> str:
    """The value of one row of the summary table printed by prepare-cfp."""
    match = re.search(rf"{re.escape(measure)}\s*│\s*(\S+)", stdout)
    assert match, f"no {measure!r} row in:\n{stdout}"
    return match.group(1)


def _landmark_error_in_crop(cfp_root: Path, image: CfpImage, detector: YuNetDetector) -> np.ndarray:
    """Per-point distance (112-crop pixels) between fiducial-derived and YuNet landmarks."""
    bgr = cv2.imread(str(cfp_root / image.image_relpath))
    detections = detector.detect(bgr)
    assert len(detections), f"YuNet found no face in {image.image_relpath}"
    yunet = detections.landmarks[detections.order_by_size_and_centrality(bgr.shape)[0]]
    derived = five_points(read_fiducials(cfp_root / image.fiducial_relpath), image.kind)
    matrix = estimate_similarity(yunet)  # YuNet's own alignment to the template
    to_crop = lambda p: p @ matrix[:, :2].T + matrix[:, 2]  # noqa: E731
    return np.linalg.norm(to_crop(derived) - to_crop(yunet), axis=1)


def test_list_images_follows_the_cfp_layout(cfp_root: Path) -> None:
    images = list_images(cfp_root, [401, 402])
    assert len(images) == 28
    assert images[0] == CfpImage(401, "frontal", 1) and images[-1] == CfpImage(402, "profile", 4)
    assert all((cfp_root / im.image_relpath).is_file() and (cfp_root / im.fiducial_relpath).is_file() for im in images)


def test_fiducial_points_agree_with_yunet(cfp_root: Path) -> None:
    detector = YuNetDetector(score_threshold=0.5)
    frontal = np.array([_landmark_error_in_crop(cfp_root, CfpImage(i, "frontal", n), detector) for i in range(401, 411) for n in (1, 5)])
    # frontals: a few crop pixels per point (the template's eyes are 35 px apart)
    assert np.median(frontal.max(axis=1)) < 6.0, frontal.round(1)
    assert frontal.mean(axis=0).max() < 4.5, frontal.mean(axis=0)
    profile = np.array([_landmark_error_in_crop(cfp_root, CfpImage(i, "profile", 1), detector) for i in range(401, 411)])
    # profiles: the hidden eye and mouth corner are estimates (YuNet guesses them too)
    assert np.median(profile.max(axis=1)) < 12.0, profile.round(1)


@pytest.fixture(scope="module")
def prepared(cfp_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("prep") / "cfp112"
    proc = run_cli("data", "prepare-cfp", cfp_root, out, "--identities", "401-402", "--workers", "2")
    return out, proc.stdout


def test_prepare_cfp_end_to_end(prepared: tuple[Path, str]) -> None:
    out, stdout = prepared
    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(entries) == 28 and sorted(p.name for p in out.iterdir()) == ["401", "402", "manifest.jsonl"]
    assert [e["path"] for e in entries][:2] == ["401/frontal_01.jpg", "401/frontal_02.jpg"]
    for entry in entries:
        crop = cv2.imread(str(out / entry["path"]))
        assert crop.shape == (112, 112, 3)
        assert entry["method"] in ("yunet", "fiducials") and set(entry["quality"]) >= {"size", "sharpness", "frontal"}
        assert (entry["score"] is None) == (entry["method"] == "fiducials")
    assert _table_value(stdout, "images done") == "28" and _table_value(stdout, "failures") == "0"
    assert int(_table_value(stdout, "aligned with YuNet")) + int(_table_value(stdout, "fiducial fallbacks")) == 28
    info = run_cli("data", "info", out).stdout
    assert "ImageFolder" in info and "28" in info


def test_prepare_cfp_rerun_skips_and_resumes(prepared: tuple[Path, str], cfp_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(prepared[0], out)
    manifest = (out / "manifest.jsonl").read_text()
    rerun = run_cli("data", "prepare-cfp", cfp_root, out, "--identities", "401-402", "--workers", "1").stdout
    assert _table_value(rerun, "skipped (already finished)") == "28" and _table_value(rerun, "images done") == "0"
    assert (out / "manifest.jsonl").read_text() == manifest
    # an interrupted run: journal of 10 entries with a torn last line, no manifest, one crop lost
    lines = manifest.splitlines()
    (out / "manifest.jsonl").unlink()
    (out / ".prepare-cfp.journal.jsonl").write_text("\n".join(lines[:10]) + "\n" + lines[10][:40])
    (out / json.loads(lines[3])["path"]).unlink()
    stale = out / "401" / ".frontal_05.jpg.x1y2.tmp"  # a crop a killed worker was writing
    stale.write_bytes(b"\xff\xd8")
    resumed = run_cli("data", "prepare-cfp", cfp_root, out, "--identities", "401-402", "--workers", "1").stdout
    assert _table_value(resumed, "skipped (already finished)") == "9" and _table_value(resumed, "images done") == "19"
    assert [json.loads(x)["path"] for x in (out / "manifest.jsonl").read_text().splitlines()] == [json.loads(x)["path"] for x in lines]
    assert not (out / ".prepare-cfp.journal.jsonl").exists() and not stale.exists()


def test_prepare_cfp_one_run_per_output_folder(prepared: tuple[Path, str], cfp_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    shutil.copytree(prepared[0], out)
    with open(out / ".prepare-cfp.journal.jsonl", "a") as journal:  # as a running prepare-cfp holds it
        fcntl.flock(journal.fileno(), fcntl.LOCK_EX)
        proc = run_cli("data", "prepare-cfp", cfp_root, out, "--identities", "401-402", check=False)
    assert proc.returncode == 2 and "another prepare-cfp is writing to this folder" in proc.stderr


def test_prepare_cfp_refuses_foreign_output_folder(cfp_root: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("my files")
    proc = run_cli("data", "prepare-cfp", cfp_root, tmp_path, "--identities", "401", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "is not a prepare-cfp output" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_prepare_cfp_counts_and_lists_corrupt_images(cfp_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "cfp"
    for sub in ("Images", "Fiducials"):
        shutil.copytree(cfp_root / "Data" / sub / "401", root / "Data" / sub / "401")
    (root / "Data" / "Images" / "401" / "profile" / "02.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "out"
    proc = run_cli("data", "prepare-cfp", root, out, "--identities", "401", "--workers", "1")
    assert _table_value(proc.stdout, "failures") == "1" and _table_value(proc.stdout, "images done") == "13"
    assert "401/profile_02.jpg: Data/Images/401/profile/02.jpg: unreadable image" in proc.stdout
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 13 and not (out / "401" / "profile_02.jpg").exists()
    missing = run_cli("data", "prepare-cfp", tmp_path / "nowhere", out, check=False)
    assert missing.returncode == 2 and "not a CFP folder" in missing.stderr


def test_pack_rec_from_prepared_folder(prepared: tuple[Path, str], tmp_path: Path) -> None:
    out = prepared[0]
    rec = tmp_path / "train.rec"
    stdout = run_cli("data", "pack-rec", out, rec, "--identities", "402").stdout
    assert _table_value(stdout, "images") == "14" and _table_value(stdout, "identities") == "1"
    folder = ImageFolder(out, identities="402")
    dataset = InsightfaceRecordDataset(rec)
    assert len(dataset) == len(folder) == 14 and dataset.num_classes == 1
    for i in (0, 13):
        np.testing.assert_array_equal(dataset[i][0], folder[i][0])
    dataset.reader.close()
    info = run_cli("data", "info", rec).stdout
    assert "insightface" in info and _table_value(info, "images") == "14"
    bad = run_cli("data", "pack-rec", out, tmp_path / "train.bin", check=False)
    assert bad.returncode == 2 and "must end in .rec" in bad.stderr
