"""Pure parts of calibration: sampling, de-duplication, scheme choice, the guard's verdict, the set file."""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest

from coreface_edge.calibration.calibset import CalibrationSet, load_calibration_set, save_calibration_set
from coreface_edge.calibration.collect import DuplicateFilter, balanced_indices
from coreface_edge.calibration.guard import check_pairs, judge
from coreface_edge.calibration.scheme import S8_TO_U8, choose_scheme, cpu_isa, host_isa
from coreface_edge.calibration.sensitivity import TensorSensitivity, channel_sqnr_db, search_exclusions, sqnr_db
from coreface_edge.contract import InputContract
from coreface_edge.errors import CorefaceError


def test_balanced_indices_spreads_over_groups_and_frames() -> None:
    groups = ["video"] * 90 + ["a"] * 5 + ["b"] * 5
    picked = balanced_indices(groups, 20)
    assert picked.size == 20 and np.unique(picked).size == 20
    counts = {g: sum(groups[i] == g for i in picked) for g in ("video", "a", "b")}
    assert counts == {"video": 10, "a": 5, "b": 5}  # small groups given in full, the rest to the big one
    video = picked[picked < 90]
    assert video.min() == 0 and video.max() == 89  # spread over the whole clip, not its start
    assert balanced_indices(["x"] * 3, 10).tolist() == [0, 1, 2]


def test_duplicate_filter_drops_repeats_keeps_changes() -> None:
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    other = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    marks = np.array([[40, 50], [70, 50], [55, 70], [42, 90], [68, 90]], np.float32)
    dedupe = DuplicateFilter(threshold=8.0)
    assert not dedupe.is_duplicate(marks, face)
    assert dedupe.is_duplicate(marks + 2, face)  # same face, barely moved
    assert not dedupe.is_duplicate(marks + 4, other)  # same place, different content
    assert not dedupe.is_duplicate(marks + 500, face)  # far away: another face


def test_scheme_follows_the_isa() -> None:
    assert cpu_isa({"avx2", "fma"}, "x86_64") == "avx2"
    assert cpu_isa({"avx2", "avx512_vnni"}, "x86_64") == "vnni"
    assert cpu_isa(set(), "aarch64") == "arm"
    no_vnni = choose_scheme("cpu", "avx2")
    assert no_vnni.reduce_range and "reduce_range" in no_vnni.reason and no_vnni.quantize_bias
    assert not choose_scheme("cpu", "vnni").reduce_range
    trt = choose_scheme("tensorrt", "avx2")
    assert not trt.reduce_range and not trt.quantize_bias and trt.check_disabled_optimizers == (S8_TO_U8,)
    assert choose_scheme("tensorrt", "vnni").check_disabled_optimizers == ()
    with pytest.raises(CorefaceError, match="unknown target"):
        choose_scheme("gpu", "avx2")


ZEN3 = "model name\t: AMD EPYC 7B13 64-Core Processor\nflags\t\t: fpu sse4_2 avx avx2 fma f16c\n"
ZEN4 = "model name\t: AMD EPYC 9B14 96-Core Processor\nflags\t\t: fpu sse4_2 avx avx2 fma f16c avx512f avx512_vnni avx512_bf16\n"


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 cpuinfo parsing")
def test_host_isa_reads_cpuinfo_of_both_cpu_kinds(tmp_path: Path) -> None:
    for text, isa in ((ZEN3, "avx2"), (ZEN4, "vnni")):
        (tmp_path / "cpuinfo").write_text(text)
        assert host_isa(tmp_path / "cpuinfo") == isa
    assert choose_scheme("cpu", host_isa(tmp_path / "cpuinfo")).reason.startswith("VNNI accumulates")
    this_cpu = host_isa()  # this machine: VNNI exactly when /proc/cpuinfo lists a VNNI flag
    flags = Path("/proc/cpuinfo").read_text().split()
    assert this_cpu == ("vnni" if {"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags) else "avx2")


def _embeddings(n_ids: int = 20, per_id: int = 4, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_ids, dim))
    labels = np.repeat(np.arange(n_ids), per_id)
    return (centres[labels] + 0.35 * rng.normal(size=(labels.size, dim))).astype(np.float32), labels


def test_guard_passes_identical_and_names_the_numbers_when_it_trips() -> None:
    emb, labels = _embeddings()
    same = judge(emb, emb.copy(), labels)
    assert same.passed and same.mean_cosine == pytest.approx(1.0, abs=1e-5) and same.tar_drop_points == 0
    noisy = emb + np.random.default_rng(1).normal(scale=1.5, size=emb.shape).astype(np.float32)
    bad = judge(emb, noisy, labels)
    assert not bad.passed
    assert any("mean cosine" in p and f"{bad.mean_cosine:.4f}" in p for p in bad.problems)
    assert bad.reference.tar > bad.candidate.tar and any("TAR@FAR=0.001 fell" in p for p in bad.problems)


def test_check_pairs_needs_enough_impostors() -> None:
    assert "impostor pairs" in check_pairs(np.repeat(np.arange(4), 4), 1e-3)
    assert check_pairs(np.repeat(np.arange(20), 4), 1e-3) is None
    assert "genuine" in check_pairs(np.arange(100), 1e-3)


def test_search_exclusions_keeps_only_needed_groups() -> None:
    ranking = [TensorSensitivity(f"t{i}", float(i), [f"n{i}"]) for i in range(5)]
    emb, labels = _embeddings()

    def evaluate(nodes: list[str]):  # only leaving n2 in float fixes the model
        return judge(emb, emb if "n2" in nodes else -emb, labels)

    found = search_exclusions(ranking, evaluate, max_groups=4)
    assert found.passed and found.nodes == ["n2"]
    stuck = search_exclusions(ranking, lambda nodes: judge(emb, -emb, labels), max_groups=2)
    assert not stuck.passed and stuck.nodes == ["n0", "n1"]
    assert sqnr_db(np.ones(10), np.ones(10)) > 100 and sqnr_db(np.ones(10), np.zeros(10)) == pytest.approx(0.0)


def test_channel_sqnr_sees_an_outlier_channel_that_tensor_sqnr_misses() -> None:
    x = np.random.default_rng(0).normal(size=(4, 8, 5, 5))
    x[:, 0] *= 1e4
    scale = np.abs(x).max() / 127.0
    flattened = np.round(x / scale) * scale  # one per-tensor INT8 scale: the small channels round to 0
    assert sqnr_db(x, flattened) > 30  # looks like healthy INT8: the outlier's energy hides the damage
    assert channel_sqnr_db(x, flattened) < 10


def test_calibration_set_roundtrip_and_contract_check(tmp_path) -> None:
    crops = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    path = tmp_path / "c.npz"
    save_calibration_set(path, CalibrationSet(crops, [{"source": "s", "frame": i} for i in range(3)]))
    back = load_calibration_set(path)
    assert np.array_equal(back.crops, crops) and back.entries[2]["frame"] == 2
    back.check_for(InputContract(), "c.npz")
    with pytest.raises(CorefaceError, match="another input contract: size 112 \\(model needs 128\\)"):
        back.check_for(InputContract(size=128), "c.npz")
    np.savez(tmp_path / "bad.npz", crops=crops)
    with pytest.raises(CorefaceError, match="not a calibration set"):
        load_calibration_set(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_text("nope")
    with pytest.raises(CorefaceError, match="not a readable"):
        load_calibration_set(tmp_path / "junk.npz")


def test_calibration_runs_without_torch() -> None:
    """The Jetson edge image has no torch: the whole calibrate path must import without it."""
    import subprocess
    import sys

    code = "import sys, coreface_edge.calibration.pipeline, coreface_edge.calibration.commands; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
