"""Evaluation: metrics against hand-computed values (ties included), the CFP protocol on the real
release, pixel-baseline embeddings of real aligned faces, and the ``eval`` CLI in a subprocess."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from coreface_edge.errors import CorefaceError
from coreface_edge.evaluation.cfp_protocol import EVAL_FOLDS, load_protocol, parse_image_list, parse_pairs
from coreface_edge.evaluation.embedding import embed_batches, pixel_embedder, read_aligned, with_flip
from coreface_edge.evaluation.evaluate import evaluate_cfp, evaluate_pairs, far_label, score_cfp
from coreface_edge.evaluation.metrics import (
    accuracy_at,
    auc,
    best_threshold,
    contiguous_folds,
    equal_error_rate,
    kfold_accuracy,
    roc_curve,
    tar_at_far,
    threshold_for_far,
)
from coreface_edge.evaluation.scores import exhaustive_scores, l2_normalize, pair_scores

from conftest import run_cli

# Tiny score set with ties: 0.8 is both a genuine (twice) and an impostor score, 0.1 an impostor twice.
GENUINE = np.array([0.9, 0.8, 0.8, 0.4])
IMPOSTOR = np.array([0.8, 0.5, 0.3, 0.1, 0.1])
SUBSET = "401-410,451-460"  # 20 identities, both evaluation folds (09: 401-450, 10: 451-500)
SUBSET_IDS = set(range(401, 411)) | set(range(451, 461))


# --------------------------------------------------------------------------- metrics


def test_roc_moves_tied_scores_together():
    roc = roc_curve(GENUINE, IMPOSTOR)
    np.testing.assert_array_equal(roc.thresholds, [np.inf, 0.9, 0.8, 0.5, 0.4, 0.3, 0.1])
    np.testing.assert_allclose(roc.tar, [0, 1 / 4, 3 / 4, 3 / 4, 1, 1, 1])
    np.testing.assert_allclose(roc.far, [0, 0, 1 / 5, 2 / 5, 2 / 5, 3 / 5, 1])
    assert (roc.n_genuine, roc.n_impostor) == (4, 5)


def test_auc_equals_mann_whitney_with_half_ties():
    # genuine 0.9 beats 5; each 0.8 beats 4 and ties 1 (4.5); 0.4 beats 3 -> 17 of 20 pairs.
    assert auc(roc_curve(GENUINE, IMPOSTOR)) == pytest.approx(17 / 20)
    rng = np.random.default_rng(0)
    g, i = rng.integers(0, 20, 300), rng.integers(0, 20, 400)  # many ties
    expected = ((g[:, None] > i[None, :]).sum() + 0.5 * (g[:, None] == i[None, :]).sum()) / (g.size * i.size)
    assert auc(roc_curve(g, i)) == pytest.approx(expected)


def test_eer_interpolates_where_frr_meets_far():
    # (FAR, FRR) goes (0.2, 0.25) -> (0.4, 0.25): FRR = FAR at 0.25.
    assert equal_error_rate(roc_curve(GENUINE, IMPOSTOR)) == pytest.approx(0.25)
    # exact crossing at an ROC point: threshold 0.5 gives FAR = FRR = 1/2
    assert equal_error_rate(roc_curve([0.9, 0.4], [0.5, 0.1])) == pytest.approx(0.5)
    assert equal_error_rate(roc_curve([0.9, 0.8], [0.2, 0.1])) == 0.0


@pytest.mark.parametrize(
    "target,threshold,tar,far",
    [(0.0, 0.9, 0.25, 0.0), (0.1, 0.9, 0.25, 0.0), (0.2, 0.8, 0.75, 0.2), (0.39, 0.8, 0.75, 0.2), (0.4, 0.4, 1.0, 0.4), (1.0, 0.1, 1.0, 1.0)],
)
def test_tar_at_far_takes_the_lowest_threshold_within_the_target(target, threshold, tar, far):
    point = tar_at_far(roc_curve(GENUINE, IMPOSTOR), target)
    assert (point.threshold, point.tar, point.far) == pytest.approx((threshold, tar, far))


def test_tar_at_far_counts_an_exact_far_of_k_over_n():
    # 1 of 1000 impostors accepted is FAR 1e-3 exactly: allowed at the 1e-3 target.
    impostor = np.r_[np.linspace(0, 0.5, 999), 0.95]
    point = tar_at_far(roc_curve([0.99, 0.9], impostor), 1e-3)
    assert (point.far, point.threshold, point.tar) == pytest.approx((1e-3, 0.9, 1.0))
    assert tar_at_far(roc_curve([0.99, 0.9], impostor), 1e-4).threshold == 0.99


@pytest.mark.parametrize("target,expected", [(0.2, 0.8), (0.5, 0.5), (0.6, 0.3), (0.9, 0.3), (1.0, 0.1)])
def test_threshold_for_far_on_impostors_with_ties(target, expected):
    assert threshold_for_far(IMPOSTOR, target) == expected


def test_threshold_for_far_is_the_smallest_that_keeps_the_target():
    assert threshold_for_far(IMPOSTOR, 0.1) == np.nextafter(0.8, 1.0)  # even the top score is too many
    rng = np.random.default_rng(1)
    impostor = rng.integers(0, 50, 2000) / 50.0
    for target in (1e-3, 1e-2, 0.05, 0.3):
        t = threshold_for_far(impostor, target)
        assert np.mean(impostor >= t) <= target
        lower = impostor[impostor < t]
        if lower.size:  # the next lower score would exceed the target
            assert np.mean(impostor >= lower.max()) > target


def test_best_threshold_is_the_midpoint_of_the_best_interval():
    scores = np.r_[GENUINE, IMPOSTOR]
    labels = np.r_[np.ones(4, bool), np.zeros(5, bool)]
    # 7 of 9 right at 0.8 and at 0.4; the higher wins, midway to the next score 0.5.
    threshold, accuracy = best_threshold(scores, labels)
    assert threshold == pytest.approx(0.65) and accuracy == pytest.approx(7 / 9)
    assert accuracy_at(scores, labels, threshold) == pytest.approx(7 / 9)
    with pytest.raises(ValueError):
        best_threshold([0.2, 0.1], [True, True])


def test_kfold_accuracy_chooses_each_threshold_on_the_other_folds():
    scores = np.array([0.9, 0.7, 0.6, 0.2, 0.8, 0.4, 0.5, 0.3])
    labels = np.array([1, 1, 0, 0, 1, 1, 0, 0], bool)
    folds = np.array([9, 9, 9, 9, 10, 10, 10, 10])
    # fold 10's pairs put the threshold at 0.65 (fold 09 all right); fold 09's at 0.65 too
    # (0.7 vs 0.6), which rejects fold 10's genuine 0.4 -> 3/4.
    result = kfold_accuracy(scores, labels, folds)
    assert result.folds == [9, 10]
    assert result.thresholds == pytest.approx([0.65, 0.65])
    assert result.accuracies == pytest.approx([1.0, 0.75])
    assert (result.mean, result.std) == pytest.approx((0.875, 0.125))
    with pytest.raises(ValueError, match="at least 2 folds"):
        kfold_accuracy(scores, labels, np.zeros(8))


def test_contiguous_folds_split_in_order():
    folds = contiguous_folds(23, 10)
    assert np.bincount(folds).tolist() == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert (np.diff(folds) >= 0).all()


def test_exhaustive_scores_count_every_pair_once():
    emb = l2_normalize(np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1], [-1, 0]], np.float32))
    ids = np.array([1, 1, 2, 2, 3])
    genuine, impostor = exhaustive_scores(emb, ids)
    assert genuine.size == 2 and impostor.size == 8  # C(5,2) = 10
    np.testing.assert_allclose(np.sort(genuine), [np.dot(emb[0], emb[1])] * 2, rtol=1e-6)
    genuine, impostor = exhaustive_scores(emb[:3], ids[:3], emb[3:], ids[3:])
    assert genuine.size == 1 and impostor.size == 5
    assert genuine[0] == pytest.approx(np.dot(emb[2], emb[3]))
    np.testing.assert_allclose(pair_scores(emb, np.array([0, 2]), np.array([1, 3])), [np.dot(emb[0], emb[1]), np.dot(emb[2], emb[3])])


def test_embed_batches_refuses_broken_embedder_output():
    batches = [np.zeros((3, 112, 112, 3), np.uint8)]
    console = Console(file=io.StringIO())
    nan_row = lambda crops: np.where(np.arange(len(crops))[:, None] == 1, np.nan, 1.0) * np.ones((len(crops), 4))  # noqa: E731
    with pytest.raises(CorefaceError, match=r"embedder returned NaN or inf for 1 of 3 crops"):
        embed_batches(batches, 3, nan_row, console, "x")
    with pytest.raises(CorefaceError, match=r"embedder returned shape \(3,\) for a batch of 3 crops"):
        embed_batches(batches, 3, lambda crops: np.ones(len(crops)), console, "x")
    np.testing.assert_allclose(embed_batches(batches, 3, lambda c: np.full((len(c), 4), 2.0), console, "x"), 0.5)


def test_far_labels():
    assert [far_label(f) for f in (1e-2, 1e-3, 1e-4)] == ["1e-2", "1e-3", "1e-4"]


# --------------------------------------------------------------------------- CFP protocol


@pytest.fixture(scope="session")
def protocol(cfp_root):
    return load_protocol(cfp_root)


@pytest.mark.parametrize("setting", ["FF", "FP"])
def test_official_folds_have_350_same_and_350_diff_pairs_of_their_identities(protocol, setting):
    for fold in range(1, 11):
        pairs = protocol.pairs(setting, (fold,))
        assert (pairs.labels.sum(), (~pairs.labels).sum()) == (350, 350), fold
        ids = {img.identity for img in pairs.left + pairs.right}
        assert min(ids) >= 50 * (fold - 1) + 1 and max(ids) <= 50 * fold, fold
        same = np.array([a.identity == b.identity for a, b in zip(pairs.left, pairs.right)])
        np.testing.assert_array_equal(same, pairs.labels)
        assert {a.kind for a in pairs.left} == {"frontal"}
        assert {b.kind for b in pairs.right} == {"frontal" if setting == "FF" else "profile"}


def test_image_lists_and_identity_subsets(protocol):
    assert len(protocol.frontal) == 5000 and len(protocol.profile) == 2000
    assert protocol.frontal[4503].aligned_relpath == "451/frontal_03.jpg"
    assert protocol.profile[1801].aligned_relpath == "451/profile_01.jpg"
    assert len(protocol.images(SUBSET_IDS, "frontal")) == 200 and len(protocol.images(SUBSET_IDS, "profile")) == 80
    pairs = protocol.pairs("FF", EVAL_FOLDS, SUBSET_IDS)
    assert set(pairs.folds.tolist()) == {9, 10}
    assert all(a.identity in SUBSET_IDS and b.identity in SUBSET_IDS for a, b in zip(pairs.left, pairs.right))


def test_open_set_protocol_on_401_500_counts_and_speed(protocol):
    """All 1,400 images of 401-500 on precomputed embeddings: every pair kind counted right, in seconds."""
    import time

    ids = set(range(401, 501))
    images = protocol.images(ids, "frontal") + protocol.images(ids, "profile")
    assert len(images) == 1400
    embeddings = l2_normalize(np.random.default_rng(0).standard_normal((1400, 512)).astype(np.float32))
    start = time.perf_counter()
    result, rocs = score_cfp(protocol, images, embeddings, ids)
    assert time.perf_counter() - start < 30  # typically ~1 s; generous for a loaded CI machine
    ff, fp = result["rows"]["FF"], result["rows"]["FP"]
    assert (ff["verification"]["genuine_pairs"], ff["verification"]["impostor_pairs"]) == (100 * 45, 1000 * 999 // 2 - 4500)
    assert (fp["verification"]["genuine_pairs"], fp["verification"]["impostor_pairs"]) == (100 * 40, 1000 * 400 - 4000)
    for row in (ff, fp):
        assert row["accuracy"]["pairs"] == 1400 and row["official_pairs_dropped"] == 0
        assert 0.4 < row["accuracy"]["mean"] < 0.6  # random embeddings: chance
        assert row["verification"]["auc"] == pytest.approx(0.5, abs=0.03)
    assert rocs["FF"].n_impostor == 495000


def test_protocol_files_with_bad_lines_name_file_and_line(tmp_path):
    bad = tmp_path / "same.txt"
    bad.write_text("4,7\n1;4\n")
    with pytest.raises(CorefaceError, match=r"same.txt:2: expected 'i,j'"):
        parse_pairs(bad)
    listing = tmp_path / "image_list_F.txt"
    listing.write_text("1 Data/Images/001/frontal/01.jpg\n2 Data/Images/001/side/02.jpg\n")
    with pytest.raises(CorefaceError, match=r"image_list_F.txt:2:"):
        parse_image_list(listing)
    with pytest.raises(CorefaceError, match="no Protocol/ folder"):
        load_protocol(tmp_path)


# --------------------------------------------------------------------------- embeddings and CLI


@pytest.fixture(scope="session")
def aligned_dir(cfp_root, tmp_path_factory) -> Path:
    """Aligned CFP crops of SUBSET: $COREFACE_CFP_ALIGNED if set, else aligned now with prepare-cfp."""
    prepared = os.environ.get("COREFACE_CFP_ALIGNED")
    if prepared:
        return Path(prepared)
    from coreface_edge.data.cfp import parse_identities
    from coreface_edge.data.prepare import prepare_cfp

    out = tmp_path_factory.mktemp("cfp112")
    summary = prepare_cfp(cfp_root, out, parse_identities(SUBSET), workers=1)
    assert summary.done == 280 and not summary.failures
    return out


@pytest.fixture(scope="session")
def crops(aligned_dir) -> np.ndarray:
    paths = [aligned_dir / f"{i}/frontal_{n:02d}.jpg" for i in (401, 402) for n in (1, 2, 3)]
    return next(read_aligned(paths, batch_size=6))


def test_pixel_embedder_is_mean_removed_and_unit_length(crops):
    emb = pixel_embedder(crops)
    assert emb.shape == (6, 112 * 112) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(emb.sum(axis=1), 0.0, atol=1e-3)
    assert pixel_embedder(crops[:1])[0] @ emb[0] == pytest.approx(1.0, abs=1e-5)  # same crop, batch-independent


def test_flip_augmentation_is_mirror_invariant(crops):
    flipped = with_flip(pixel_embedder)
    mirrored = np.ascontiguousarray(crops[:, :, ::-1])
    np.testing.assert_allclose(flipped(crops), pixel_embedder(crops) + pixel_embedder(mirrored), rtol=1e-6)
    np.testing.assert_allclose(flipped(mirrored), flipped(crops), atol=1e-6)


def test_read_aligned_rejects_a_wrong_size_crop(tmp_path, face_photos):
    wrong = tmp_path / "big.jpg"
    shutil.copy(face_photos[0], wrong)
    with pytest.raises(CorefaceError, match=r"big.jpg: expected a 112x112 aligned crop"):
        next(read_aligned([wrong], 4))


def test_missing_crops_are_skipped_and_listed(protocol, aligned_dir, tmp_path):
    for identity in ("401", "402"):
        shutil.copytree(aligned_dir / identity, tmp_path / identity)
    (tmp_path / "402" / "profile_03.jpg").unlink()
    console = Console(file=io.StringIO())
    result, _ = evaluate_cfp(protocol, tmp_path, pixel_embedder, {401, 402}, 16, console)
    assert result["images"] == {"listed": 28, "embedded": 27, "missing": ["402/profile_03.jpg"]}
    assert result["rows"]["FP"]["verification"]["genuine_pairs"] == 10 * 4 + 10 * 3
    assert result["rows"]["FF"]["accuracy"] is None  # both identities are in fold 09 only
    with pytest.raises(CorefaceError, match="needs genuine and impostor pairs"):
        evaluate_cfp(protocol, tmp_path, pixel_embedder, {401}, 16, console)
    with pytest.raises(CorefaceError, match="no aligned CFP images found"):
        evaluate_cfp(protocol, tmp_path / "401", pixel_embedder, {401, 402}, 16, console)


def test_eval_cli_on_a_verification_bin(protocol, aligned_dir, tmp_path):
    from coreface_edge.data.verification_bin import write_verification_bin

    pairs = protocol.pairs("FF", (9,), set(range(401, 411)))
    bins = [(aligned_dir / img.aligned_relpath).read_bytes() for pair in zip(pairs.left, pairs.right) for img in pair]
    write_verification_bin(tmp_path / "cfp_sub.bin", bins, pairs.labels.tolist())
    proc = run_cli("eval", "pixels", "--protocol", "bin", "--data", tmp_path / "cfp_sub.bin", "--out", tmp_path / "out")
    assert "cfp_sub" in proc.stdout and "TAR@1e-2 %" in proc.stdout
    row = json.loads((tmp_path / "out" / "eval_bin.json").read_text())["rows"]["cfp_sub"]
    assert len(row["accuracy"]["folds"]) == 10 and row["accuracy"]["pairs"] == len(pairs)
    assert row["verification"]["genuine_pairs"] == int(pairs.labels.sum())
    # the same pairs through the library give the same accuracy
    crops = np.concatenate([next(read_aligned([aligned_dir / a.aligned_relpath, aligned_dir / b.aligned_relpath], 2)) for a, b in zip(pairs.left, pairs.right)])
    expected, _ = evaluate_pairs("x", crops, pairs.labels, pixel_embedder, 32, Console(file=io.StringIO()))
    assert row["accuracy"]["mean"] == pytest.approx(expected["rows"]["x"]["accuracy"]["mean"])
    assert (tmp_path / "out" / "roc_bin.png").stat().st_size > 10_000


@pytest.fixture(scope="session")
def cli_run(cfp_root, aligned_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_out")
    proc = run_cli("eval", "pixels", "--protocol", "cfp", "--data", aligned_dir, "--identities", SUBSET, "--cfp-root", cfp_root, "--out", out)
    return proc, out


def test_eval_cli_writes_table_json_and_roc_plot(cli_run, protocol, aligned_dir):
    proc, out = cli_run
    assert "TAR@1e-3 %" in proc.stdout and "FF" in proc.stdout and "FP" in proc.stdout
    result = json.loads((out / "eval_cfp.json").read_text())
    assert result["model"]["model"] == "pixels" and result["identities"] == SUBSET and result["flip"] is False
    ff, fp = result["rows"]["FF"], result["rows"]["FP"]
    assert (ff["verification"]["genuine_pairs"], ff["verification"]["impostor_pairs"]) == (20 * 45, 200 * 199 // 2 - 900)
    assert (fp["verification"]["genuine_pairs"], fp["verification"]["impostor_pairs"]) == (20 * 40, 200 * 80 - 800)
    assert set(ff["accuracy"]["folds"]) == {"9", "10"}
    # the JSON holds the numbers the library computes on the same crops
    expected, _ = evaluate_cfp(protocol, aligned_dir, pixel_embedder, SUBSET_IDS, 64, Console(file=io.StringIO()))
    for setting in ("FF", "FP"):
        got, want = result["rows"][setting], expected["rows"][setting]
        assert got["accuracy"]["mean"] == pytest.approx(want["accuracy"]["mean"])
        assert got["verification"]["auc"] == pytest.approx(want["verification"]["auc"])
        assert got["verification"]["tar_at_far"]["1e-2"]["tar"] == pytest.approx(want["verification"]["tar_at_far"]["1e-2"]["tar"])
    # raw pixels are weak but far from chance on frontal pairs
    assert 0.6 < ff["verification"]["auc"] < 0.95
    png = (out / "roc_cfp.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_eval_cli_bad_data_is_one_line_error(tmp_path):
    proc = run_cli("eval", "pixels", "--protocol", "cfp", "--data", tmp_path / "nope", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "nope: not a folder" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_eval_cli_on_an_exported_onnx_model_with_flip(cfp_root, aligned_dir, model_onnx, tmp_path):  # skip before exporting
    """A model file goes through runtime.open_backend (ONNX Runtime here), in a real CLI run."""
    out = tmp_path / "out"
    run_cli("eval", model_onnx, "--data", aligned_dir, "--identities", "401-403", "--cfp-root", cfp_root, "--flip", "--out", out)
    result = json.loads((out / "eval_cfp.json").read_text())
    assert result["model"]["backend"] == "onnxruntime" and result["flip"] is True
    ff = result["rows"]["FF"]["verification"]
    assert (ff["genuine_pairs"], ff["impostor_pairs"]) == (3 * 45, 30 * 29 // 2 - 135)
    assert 0.0 <= ff["auc"] <= 1.0 and result["rows"]["FF"]["accuracy"] is None  # 401-403: fold 09 only
