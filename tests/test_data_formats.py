"""Data readers on files the tests write themselves (RecordIO, verification .bin, ImageFolder, CFP
helpers), and the data/eval CLI end to end on the committed photos, with no ../shared needed."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import shutil
import struct
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from coreface_edge.data.cfp import aligned_relpath, five_points, parse_identities, read_fiducials
from coreface_edge.data.crops import decode_crop, encode_jpeg
from coreface_edge.data.imagefolder import ImageFolder
from coreface_edge.data.recordio import (
    MAGIC,
    InsightfaceRecordDataset,
    IRHeader,
    RecordIOReader,
    pack,
    record_writer,
    unpack,
    write_insightface_pack,
)
from coreface_edge.data.verification_bin import load_verification_bin, read_bin_raw, write_verification_bin
from coreface_edge.errors import CorefaceError
from conftest import run_cli
from test_data_cfp import _table_value


@pytest.fixture(scope="module")
def photo_crops(face_photos: list[Path]) -> list[tuple[bytes, int]]:
    """Real CFP photos (identities 401-403) as 112x112 JPEG bytes with labels 0..2."""
    labels = {"401": 0, "402": 1, "403": 2}
    out = []
    for path in face_photos:
        crop = cv2.resize(cv2.imread(str(path)), (112, 112), interpolation=cv2.INTER_AREA)
        out.append((encode_jpeg(crop), labels[path.name.split("_")[1]]))
    return sorted(out, key=lambda item: item[1])


@pytest.fixture(scope="module")
def rec_pack(tmp_path_factory: pytest.TempPathFactory, photo_crops: list[tuple[bytes, int]]) -> Path:
    rec = tmp_path_factory.mktemp("rec") / "train.rec"
    assert write_insightface_pack(rec, photo_crops) == (len(photo_crops), 3)
    return rec


# ---------------------------------------------------------------- RecordIO


def test_recordio_pack_round_trip(rec_pack: Path, photo_crops: list[tuple[bytes, int]]) -> None:
    dataset = InsightfaceRecordDataset(rec_pack)
    n = len(photo_crops)
    assert len(dataset) == n and dataset.num_classes == 3
    assert dataset.identity_range == (n + 1, n + 4)
    for i, (jpeg, label) in enumerate(photo_crops):
        crop, got = dataset[i]
        assert got == label
        np.testing.assert_array_equal(crop, decode_crop(jpeg, "expected"))
    # identity records hold each identity's image key range, as insightface writes them
    ranges = [dataset.reader.read_unpacked(k)[0].labels for k in range(n + 1, n + 4)]
    counts = [sum(1 for _, lab in photo_crops if lab == c) for c in range(3)]
    assert [int(b - a) for a, b in ranges] == counts
    assert int(ranges[0][0]) == 1 and int(ranges[-1][1]) == n + 1
    dataset.reader.close()


def test_recordio_scan_without_idx_matches_index(rec_pack: Path, tmp_path: Path) -> None:
    copy = tmp_path / "noidx.rec"
    copy.write_bytes(rec_pack.read_bytes())
    with RecordIOReader(copy) as scanned, RecordIOReader(rec_pack) as indexed:
        assert scanned.keys == indexed.keys
        assert all(scanned.read(k) == indexed.read(k) for k in indexed.keys)


def _labels_in_child(dataset: InsightfaceRecordDataset) -> list[int]:
    return [dataset[i][1] for i in range(len(dataset))]


def test_recordio_dataset_pickles_and_reads_in_forked_workers(rec_pack: Path) -> None:
    """What a torch DataLoader does with it: pickle (spawn) or fork, then read concurrently."""
    dataset = InsightfaceRecordDataset(rec_pack)
    expected = _labels_in_child(dataset)  # opens the file in this process first
    clone = pickle.loads(pickle.dumps(dataset))
    np.testing.assert_array_equal(clone[2][0], dataset[2][0])
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert pool.map(_labels_in_child, [dataset] * 4) == [expected] * 4
    dataset.reader.close()
    clone.reader.close()


def test_recordio_splits_and_rejoins_payload_containing_magic(tmp_path: Path) -> None:
    magic = struct.pack("<I", MAGIC)
    payload = b"abcd" + magic + b"efgh" + magic + b"xyz"  # magic at aligned offsets 4 and 12
    odd = b"a" + magic + b"bc"  # magic at an unaligned offset: no split
    rec = tmp_path / "m.rec"
    with record_writer(rec) as writer:
        writer.write(0, payload)
        writer.write(1, odd)
    raw = rec.read_bytes()
    cflags = []
    offset = 0
    while offset < len(raw):
        _, lrecord = struct.unpack_from("<II", raw, offset)
        cflags.append(lrecord >> 29)
        length = lrecord & ((1 << 29) - 1)
        offset += 8 + length + (-length % 4)
    assert cflags == [1, 2, 3, 0]
    with RecordIOReader(rec) as reader:
        assert reader.read(0) == payload and reader.read(1) == odd


def test_irheader_multi_label_round_trip() -> None:
    header, image = unpack(pack(IRHeader(3, (1.0, 2.5, 7.0), id=5, id2=9), b"img"))
    assert header == IRHeader(3, (1.0, 2.5, 7.0), 5, 9) and image == b"img"
    header, image = unpack(pack(IRHeader(0, (42.0,)), b"x"))
    assert header.label == 42 and image == b"x"
    with pytest.raises(CorefaceError, match="shorter than"):
        unpack(b"\0" * 10, "short")


def test_recordio_bad_magic_names_file_and_offset(rec_pack: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.rec"
    data = bytearray(rec_pack.read_bytes())
    data[0:4] = b"\x00\x01\x02\x03"
    bad.write_bytes(bytes(data))
    (tmp_path / "bad.idx").write_bytes(rec_pack.with_suffix(".idx").read_bytes())
    with RecordIOReader(bad) as reader, pytest.raises(CorefaceError, match=r"bad\.rec: bad RecordIO magic 0x03020100 at offset 0$"):
        reader.read(0)


def test_recordio_truncated_record_names_offset(rec_pack: Path, tmp_path: Path) -> None:
    with RecordIOReader(rec_pack) as reader:
        last = max(reader.offsets.values())
        image_key = 3
        image_offset = reader.offsets[image_key]
    cut = tmp_path / "cut.rec"
    cut.write_bytes(rec_pack.read_bytes()[: image_offset + 20])
    (tmp_path / "cut.idx").write_bytes(rec_pack.with_suffix(".idx").read_bytes())
    with RecordIOReader(cut) as reader:
        with pytest.raises(CorefaceError, match=rf"cut\.rec: truncated record at offset {image_offset} "):
            reader.read(image_key)
        with pytest.raises(CorefaceError, match=rf"truncated record at offset {last}$"):
            reader.read(max(reader.offsets))
    # without an index the scan stops at the same place
    (tmp_path / "cut.idx").unlink()
    with pytest.raises(CorefaceError, match=rf"truncated record at offset {image_offset}"):
        RecordIOReader(cut)


# ---------------------------------------------------------------- verification .bin


def test_verification_bin_round_trip(tmp_path: Path, photo_crops: list[tuple[bytes, int]], face_photos: list[Path]) -> None:
    big_png = cv2.imencode(".png", cv2.imread(str(face_photos[0])))[1].tobytes()  # not 112x112: resized on load
    bins = [photo_crops[0][0], photo_crops[1][0], photo_crops[2][0], big_png]
    path = tmp_path / "pairs.bin"
    write_verification_bin(path, bins, [True, False])
    pairs = load_verification_bin(path)
    assert len(pairs) == 2 and pairs.issame.tolist() == [True, False]
    assert pairs.crops.shape == (4, 112, 112, 3) and pairs.crops.dtype == np.uint8
    np.testing.assert_array_equal(pairs.crops[0], decode_crop(bins[0], "x"))
    expected = cv2.resize(cv2.imread(str(face_photos[0])), (112, 112), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(pairs.crops[3], expected)
    proc = run_cli("data", "info", path)
    assert "verification .bin" in proc.stdout and "1 / 1" in proc.stdout


def test_verification_bin_python2_style_pickle(tmp_path: Path, photo_crops: list[tuple[bytes, int]]) -> None:
    """insightface's files were pickled by Python 2: images as BINSTRING (str) opcodes."""
    images = [photo_crops[0][0], photo_crops[1][0]]
    strings = b"".join(b"T" + struct.pack("<I", len(data)) + data for data in images)
    py2 = b"\x80\x02(](" + strings + b"e](\x88et."  # protocol 2: ([str, str], [True])
    path = tmp_path / "py2.bin"
    path.write_bytes(py2)
    assert read_bin_raw(path) == (images, [True])


@pytest.mark.parametrize(
    "obj, message",
    [
        ({"bins": []}, r"expected a pickled \(bins, issame_list\)"),
        (([b"a", b"b", b"c"], [True]), "3 images for 1 pairs"),
        (([1, 2], [True]), "bins must be encoded image bytes"),
        (([b"a", b"b"], ["yes"]), "issame_list must hold booleans"),
    ],
)
def test_verification_bin_bad_structure(tmp_path: Path, obj: object, message: str) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(CorefaceError, match=rf"bad\.bin: {message}"):
        read_bin_raw(path)


def test_verification_bin_undecodable_image_names_index(tmp_path: Path, photo_crops: list[tuple[bytes, int]]) -> None:
    path = tmp_path / "junk.bin"
    write_verification_bin(path, [photo_crops[0][0], b"not an image"], [True])
    with pytest.raises(CorefaceError, match=r"junk\.bin image 1: not a decodable image"):
        load_verification_bin(path)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(self.marker),))


def test_verification_bin_refuses_code_in_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([_Exploit(marker), b"x"], [True])))
    with pytest.raises(CorefaceError, match=r"evil\.bin: not a verification \.bin pickle \(forbidden object posix\.mkdir\)"):
        read_bin_raw(path)
    assert not marker.exists()
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00garbage")
    with pytest.raises(CorefaceError, match=r"garbage\.bin: not a verification \.bin pickle"):
        read_bin_raw(garbage)


# ---------------------------------------------------------------- ImageFolder


def test_imagefolder_classes_labels_and_identity_filter(tmp_path: Path, photo_crops: list[tuple[bytes, int]]) -> None:
    root = tmp_path / "folder"
    for i, (jpeg, label) in enumerate(photo_crops):
        (root / f"{401 + label:03d}").mkdir(parents=True, exist_ok=True)
        (root / f"{401 + label:03d}" / f"frontal_{i:02d}.jpg").write_bytes(jpeg)
    (root / "manifest.jsonl").write_text("")  # files beside the class folders are ignored
    folder = ImageFolder(root)
    assert folder.classes == ["401", "402", "403"] and len(folder) == len(photo_crops)
    assert folder.labels.tolist() == [label for _, label in photo_crops]
    crop, label = folder[0]
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8 and label == 0
    np.testing.assert_array_equal(crop, decode_crop(photo_crops[0][0], "x"))
    only = ImageFolder(root, identities="402-403")
    assert only.classes == ["402", "403"] and set(only.labels.tolist()) == {0, 1}
    with pytest.raises(CorefaceError, match="no images in class sub-folders for the requested identities"):
        ImageFolder(root, identities="1-400")
    with pytest.raises(CorefaceError, match="not a folder"):
        ImageFolder(root / "missing")
    release = tmp_path / "ms1m"  # an insightface release folder given as an ImageFolder
    release.mkdir()
    (release / "train.idx").write_text("")
    with pytest.raises(CorefaceError, match=r"ms1m: no class sub-folders, but it holds the RecordIO file train\.idx: to train on it set data\.format=recordio"):
        ImageFolder(release)
    (release / "train.rec").write_bytes(b"")
    with pytest.raises(CorefaceError, match=r"holds the RecordIO file train\.rec: .*data\.format=recordio"):
        ImageFolder(release, identities="1-8")
    # the same folder packs into RecordIO and reads back identically
    rec = tmp_path / "folder.rec"
    write_insightface_pack(rec, ((p.read_bytes(), label) for p, label in folder.samples))
    dataset = InsightfaceRecordDataset(rec)
    assert len(dataset) == len(folder) and dataset.num_classes == 3
    np.testing.assert_array_equal(dataset[len(folder) - 1][0], folder[len(folder) - 1][0])
    dataset.reader.close()


# ---------------------------------------------------------------- CFP helpers (pure)


def test_aligned_relpath_and_identity_ranges() -> None:
    assert aligned_relpath(401, "frontal", 3) == "401/frontal_03.jpg"
    assert aligned_relpath(7, "profile", 12) == "007/profile_12.jpg"
    assert parse_identities("401-403, 410") == [401, 402, 403, 410]
    assert parse_identities("1-400") == list(range(1, 401))
    for bad in ("0-3", "5-2", "abc", "1-501"):
        with pytest.raises(CorefaceError, match="identities"):
            parse_identities(bad)


def test_read_fiducials_errors(tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("1,2\n3,4\n")
    with pytest.raises(CorefaceError, match=r"short\.txt: expected 30 'x,y' lines, got shape \(2, 2\)"):
        read_fiducials(short)
    words = tmp_path / "words.txt"
    words.write_text("a,b\n" * 30)
    with pytest.raises(CorefaceError, match=r"words\.txt: fiducials must be 'x,y' numbers"):
        read_fiducials(words)


def _synthetic_half_face() -> np.ndarray:
    """A half-face annotation (image-left side) of a face symmetric about x = 50."""
    p = np.zeros((30, 2), np.float32)
    p[0:9] = np.stack([np.linspace(10, 50, 9), np.linspace(40, 110, 9)], axis=1)  # jaw to chin
    p[12:18] = [[24, 40], [28, 38], [32, 38], [36, 40], [32, 42], [28, 42]]  # eye centred at (30, 40)
    p[18:22] = [[50, 42], [50, 50], [50, 58], [50, 65]]  # bridge down to the tip
    p[25] = [35, 80]
    p[26:30] = [[50, 76], [50, 80], [50, 86], [50, 80]]
    return p


def test_five_points_frontal_mirrors_hidden_side() -> None:
    points = five_points(_synthetic_half_face(), "frontal")
    np.testing.assert_allclose(points, [[30, 40], [70, 40], [50, 65], [35, 80], [65, 80]], atol=1e-4)


def test_five_points_profile_puts_hidden_side_on_silhouette() -> None:
    p = _synthetic_half_face()
    points = five_points(p, "profile")
    # hidden eye slightly beyond the bridge top (50, 42), hidden mouth corner on the lips
    np.testing.assert_allclose(points[1], [55, 42.5], atol=1e-4)
    np.testing.assert_allclose(points[4], [50, 80], atol=1e-4)
    # a profile facing the other way: mirror the annotation, order stays image-left first
    mirrored = p.copy()
    mirrored[:, 0] = 100 - mirrored[:, 0]
    flipped = five_points(mirrored, "profile")
    np.testing.assert_allclose(flipped[[1, 0, 2, 4, 3], 0], 100 - points[:, 0], atol=1e-4)
    assert flipped[0, 0] < flipped[1, 0] and flipped[3, 0] < flipped[4, 0]


# ---------------------------------------------------------------- CLI end to end on the committed fixtures (no ../shared)


def _one_line_error(proc: subprocess.CompletedProcess[str], text: str) -> None:
    """Exit status 2 and a single ``error: ...`` line on stderr containing ``text``, no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error:") and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert text in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory: pytest.TempPathFactory, face_photos: list[Path]) -> tuple[Path, str]:
    """``data prepare-cfp`` on a CFP-layout tree of the committed photos, plus a non-face image.

    The tree has no fiducials, so the blank image (YuNet finds nothing) is a counted failure.
    """
    base = tmp_path_factory.mktemp("fixture_cfp")
    images = base / "cfp" / "Data" / "Images"
    for photo in face_photos:  # cfp_401_frontal_01.jpg -> Data/Images/401/frontal/01.jpg
        _, identity, kind, number = photo.stem.split("_")
        (images / identity / kind).mkdir(parents=True, exist_ok=True)
        (images / identity / kind / f"{number}.jpg").write_bytes(photo.read_bytes())
    (images / "403" / "profile").mkdir(parents=True)
    cv2.imwrite(str(images / "403" / "profile" / "01.jpg"), np.full((250, 250, 3), 128, np.uint8))
    out = base / "aligned"
    proc = run_cli("data", "prepare-cfp", base / "cfp", out, "--identities", "401-403", "--workers", "1")
    return out, proc.stdout


def test_cli_prepare_info_and_pack_on_fixtures(fixture_run: tuple[Path, str], face_photos: list[Path], tmp_path: Path) -> None:
    out, stdout = fixture_run
    assert (_table_value(stdout, "images done"), _table_value(stdout, "failures"), _table_value(stdout, "aligned with YuNet")) == ("6", "1", "6")
    assert "403/profile_01.jpg: no face found and" in stdout and "cannot read fiducials" in stdout
    entries = [line for line in (out / "manifest.jsonl").read_text().splitlines() if line]
    assert len(entries) == len(face_photos) == 6 and not (out / "403" / "profile_01.jpg").exists()
    assert ImageFolder(out).classes == ["401", "402", "403"]
    assert _table_value(run_cli("data", "info", out).stdout, "images") == "6"
    rec = tmp_path / "train.rec"
    run_cli("data", "pack-rec", out, rec)
    info = run_cli("data", "info", rec).stdout
    assert "insightface" in info and _table_value(info, "images") == "6" and _table_value(info, "identities") == "3"
    dataset = InsightfaceRecordDataset(rec)
    assert len(dataset) == 6 and dataset.num_classes == 3
    np.testing.assert_array_equal(dataset[5][0], ImageFolder(out)[5][0])
    dataset.reader.close()


def test_cli_eval_bin_on_fixture_crops(fixture_run: tuple[Path, str], tmp_path: Path) -> None:
    out = fixture_run[0]
    pairs = [("401/frontal_01", "401/frontal_02", True), ("401/frontal_01", "402/frontal_01", False),
             ("402/frontal_01", "402/frontal_03", True), ("401/frontal_02", "403/frontal_01", False)]
    bins = [(out / f"{name}.jpg").read_bytes() for a, b, _ in pairs for name in (a, b)]
    write_verification_bin(tmp_path / "fixtures.bin", bins, [same for _, _, same in pairs])
    run_cli("eval", "pixels", "--data", tmp_path / "fixtures.bin", "--out", tmp_path / "eval")  # --protocol bin implied
    row = json.loads((tmp_path / "eval" / "eval_bin.json").read_text())["rows"]["fixtures"]
    assert len(row["accuracy"]["folds"]) == 4 and row["accuracy"]["pairs"] == 4  # 4 pairs: one fold each
    assert (row["verification"]["genuine_pairs"], row["verification"]["impostor_pairs"]) == (2, 2)
    assert (tmp_path / "eval" / "roc_bin.png").read_bytes().startswith(b"\x89PNG")
    everything_same = tmp_path / "same.bin"
    write_verification_bin(everything_same, bins[:4], [True, True])
    proc = run_cli("eval", "pixels", "--protocol", "bin", "--data", everything_same, "--out", tmp_path / "eval", check=False)
    _one_line_error(proc, "same: needs both same and different pairs")
    proc = run_cli("eval", "pixels", "--protocol", "bin", "--data", tmp_path / "fixtures.bin", "--out", tmp_path / "eval" / "eval_bin.json", check=False)
    _one_line_error(proc, "eval_bin.json: exists and is not a folder")


def test_cli_bad_dataset_files_are_one_line_errors(fixture_run: tuple[Path, str], rec_pack: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "cut.rec"
    truncated.write_bytes(rec_pack.read_bytes()[:-30])  # a download that stopped early
    (tmp_path / "cut.idx").write_bytes(rec_pack.with_suffix(".idx").read_bytes())
    _one_line_error(run_cli("data", "info", truncated, check=False), "cut.rec: truncated record at offset")
    wrong = tmp_path / "dict.bin"
    wrong.write_bytes(pickle.dumps({"bins": [], "issame": []}))
    _one_line_error(run_cli("data", "info", wrong, check=False), "dict.bin: expected a pickled (bins, issame_list)")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(fixture_run[0], corrupt)
    (corrupt / "402" / "frontal_03.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    proc = run_cli("data", "pack-rec", corrupt, tmp_path / "corrupt.rec", check=False)
    _one_line_error(proc, "402/frontal_03.jpg: not a decodable image")
    assert not (tmp_path / "corrupt.rec").exists() and not list(tmp_path.glob(".corrupt.*"))  # nothing half-written
