"""calibrate collect / quantize / fp16 end to end: real faces, real ONNX Runtime sessions, real CLI runs.

The ``model_onnx`` fixture is the trained model shipped in the package (tests/fixtures_models.py), else a
random initialisation (BatchNorm statistics from real faces). Neither reaches the default
cosine floor of 0.99 with a 16-face calibration set (trained: ~0.987 on real faces vs ~0.94 on
blank images; random: ~0.8 vs ~0.1), and TAR@FAR=1e-3 on 60 faces rests on two impostor pairs,
so the tests use a cosine floor between the real-face and the blank-image figures and no TAR
limit: the guard must pass the first and refuse the second.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from conftest import FIXTURES, run_cli
from fixtures_models import trained_artifact

from coreface_edge.calibration.calibset import CalibrationSet, crop_contract, load_calibration_set, save_calibration_set
from coreface_edge.calibration.scheme import host_isa
from coreface_edge.export.onnx_meta import graph_precision
from coreface_edge.runtime import open_backend

FLOOR = 0.97 if trained_artifact() is not None else 0.6
HOLDOUT_MAX = 60
FAST = ["--holdout-max", str(HOLDOUT_MAX), "--speed-iterations", "2", "--min-cosine", str(FLOOR), "--max-tar-drop", "100"]


@pytest.fixture(scope="session")
def holdout_dir(cfp_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Aligned CFP identities 401-406 (never trained on), one folder per identity."""
    from coreface_edge.data.prepare import prepare_cfp

    out = tmp_path_factory.mktemp("holdout") / "cfp112"
    prepare_cfp(cfp_root, out, list(range(401, 407)))
    return out


@pytest.fixture(scope="session")
def collected(walkers_video: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``calibrate collect`` on the walkers clip and the committed photos, through the CLI."""
    out = tmp_path_factory.mktemp("calib") / "calib.npz"
    proc = run_cli("calibrate", "collect", walkers_video, FIXTURES, "-o", out, "--size", "16", "--min-faces", "16")
    return out, proc.stdout


@pytest.fixture(scope="session")
def quantized_trt(model_onnx: Path, collected: tuple[Path, str], holdout_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("q") / "mbf_int8_trt.onnx"
    run_cli("calibrate", "quantize", model_onnx, "--calib", collected[0], "--holdout", holdout_dir, "--target", "tensorrt", "-o", out, *FAST)
    return out


def _row(stdout: str, name: str) -> int:
    match = re.search(rf"{re.escape(name)}\s*│\s*(\d+)", stdout)
    assert match, stdout
    return int(match.group(1))


def test_collect_drops_duplicates_and_keeps_a_balanced_sample(collected: tuple[Path, str]) -> None:
    path, stdout = collected
    calib = load_calibration_set(path)
    assert len(calib) == 16 and calib.crops.dtype == np.uint8 and calib.contract == crop_contract()
    assert _row(stdout, "dropped as near-duplicates") > 0 and _row(stdout, "dropped for quality") > 0
    assert _row(stdout, "faces seen") > _row(stdout, "candidates") >= _row(stdout, "kept") == 16
    sources = {e["source"] for e in calib.entries}
    assert len(sources) == 2  # the clip and the photo folder both contribute
    video_frames = sorted(int(e["frame"]) for e in calib.entries if e["source"].endswith("walkers.mp4"))
    assert video_frames[-1] - video_frames[0] > 50  # spread over the clip
    assert all({"sharpness", "frontal", "size"} <= set(e["quality"]) for e in calib.entries)


def test_collect_refuses_a_tiny_set(tmp_path: Path) -> None:
    out = tmp_path / "tiny.npz"
    proc = run_cli("calibrate", "collect", FIXTURES, "-o", out, check=False)
    assert proc.returncode == 2 and not out.exists()
    assert re.search(r"found \d faces, need at least 32", proc.stderr) and proc.stderr.count("\n") == 1


def test_tensorrt_target_is_symmetric_qdq_and_runs_in_ort(quantized_trt: Path, holdout_dir: Path, model_onnx: Path) -> None:
    model = onnx.load(str(quantized_trt))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 20 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)  # no int32 bias Q/DQ either
    per_channel = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and inits.get(n.input[1], np.zeros(())).size > 1]
    assert per_channel  # per-channel weight scales
    backend, source = open_backend(quantized_trt, threads=2), open_backend(model_onnx).contract
    assert backend.contract.architecture == source.architecture
    embeddings = backend.embed(np.stack([np.zeros((112, 112, 3), np.uint8)] * 2))
    assert embeddings.shape == (2, source.embedding_size) and np.isfinite(embeddings).all()
    report = json.loads(quantized_trt.with_suffix(".report.json").read_text())
    assert report["guard"]["passed"] and report["scheme"]["target"] == "tensorrt" and len(report["ranges"]) > 50
    assert [r["batch"] for r in report["speed"]] == [1, 8]
    assert "| TAR@FAR=0.001" in quantized_trt.with_suffix(".report.md").read_text()
    assert quantized_trt.with_suffix(".roc.png").read_bytes()[:4] == b"\x89PNG"


def test_already_quantized_model_is_refused(quantized_trt: Path, collected: tuple[Path, str], holdout_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "again.onnx"
    proc = run_cli("calibrate", "quantize", quantized_trt, "--calib", collected[0], "--holdout", holdout_dir, "-o", out, check=False)
    assert proc.returncode == 2 and "already quantized" in proc.stderr and not out.exists()


def _blank_set(path: Path, n: int = 16) -> Path:
    save_calibration_set(path, CalibrationSet(np.full((n, 112, 112, 3), 128, np.uint8), [{"source": "blank", "frame": i} for i in range(n)]))
    return path


def test_guard_trips_on_blank_calibration_and_auto_exclude_says_it_cannot(model_onnx: Path, holdout_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "blank_int8.onnx"
    calib = _blank_set(tmp_path / "blank.npz")
    proc = run_cli("calibrate", "quantize", model_onnx, "--calib", calib, "--holdout", holdout_dir, "-o", out, "--auto-exclude", "--max-excluded", "1", *FAST, check=False)
    assert proc.returncode == 2 and not out.exists(), proc.stdout + proc.stderr
    assert "rejected by the accuracy guard: mean cosine to FP32" in proc.stderr and proc.stderr.count("\n") == 1
    assert "auto-exclude cannot restore accuracy (1 tries)" in proc.stderr
    report = json.loads((tmp_path / "blank_int8.report.json").read_text())
    assert not report["guard"]["passed"] and report["guard"]["mean_cosine"] < FLOOR
    assert report["auto_exclude"].startswith("cannot restore accuracy") and len(report["exclusion_search"]) == 1
    assert report["sensitivity"][0]["sqnr_db"] <= report["sensitivity"][-1]["sqnr_db"]


def add_outlier_channel(src: Path, dst: Path, factor: float = 1e4) -> Path:
    """A copy of ``src`` with one activation channel scaled up by ``factor`` and back down right after.

    Two depthwise 1x1 convolutions (exact under per-channel weight quantization) around the
    first activation's output (PReLU or ReLU, right after a convolution): the function is unchanged in float, but the tensor between them has
    one huge channel, so its single INT8 activation scale wipes out every other channel -- the
    outlier-channel failure sensitivity analysis must find and leave in float.
    """
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    prelu = next(n for n in graph.node if n.op_type in ("PRelu", "Relu"))
    conv = next(n for n in graph.node if prelu.input[0] in n.output)
    channels = next(numpy_helper.to_array(i) for i in graph.initializer if i.name == conv.input[1]).shape[0]
    up = np.ones((channels, 1, 1, 1), np.float32)
    up[0] = factor
    graph.initializer.extend([numpy_helper.from_array(up, "outlier_up"), numpy_helper.from_array(1 / up, "outlier_down")])
    for node in graph.node:
        node.input[:] = ["outlier_restored" if name == prelu.output[0] else name for name in node.input]
    at = list(graph.node).index(prelu) + 1
    graph.node.insert(at, helper.make_node("Conv", [prelu.output[0], "outlier_up"], ["outlier_scaled"], name="outlier_up_conv", group=channels))
    graph.node.insert(at + 1, helper.make_node("Conv", ["outlier_scaled", "outlier_down"], ["outlier_restored"], name="outlier_down_conv", group=channels))
    onnx.save(model, str(dst))
    return dst


def test_auto_exclude_restores_an_outlier_layer(model_onnx: Path, collected: tuple[Path, str], holdout_dir: Path, tmp_path: Path) -> None:
    from coreface_edge.calibration.guard import Tolerance
    from coreface_edge.calibration.pipeline import QuantizeOptions, run_quantize

    model = add_outlier_channel(model_onnx, tmp_path / "outlier.onnx")
    fp32 = open_backend(model, threads=2)
    faces = load_calibration_set(collected[0]).crops[:8]
    assert np.allclose(fp32.embed(faces), open_backend(model_onnx).embed(faces), atol=1e-3)  # same function in float
    options = QuantizeOptions(auto_exclude=True, max_excluded_groups=2, holdout_max=HOLDOUT_MAX, speed_iterations=1, tolerance=Tolerance(min_mean_cosine=FLOOR, max_tar_drop_points=100))
    report = run_quantize(model, collected[0], holdout_dir, tmp_path / "outlier_int8.onnx", options)
    assert report["exclusion_search"][0]["mean_cosine"] > report["guard"]["tolerance"]["min_mean_cosine"]
    assert report["sensitivity"][0]["tensor"] == "outlier_scaled"
    assert report["excluded_nodes"] == ["outlier_up_conv", "outlier_down_conv"] and report["guard"]["passed"]
    assert (tmp_path / "outlier_int8.onnx").is_file()


def test_precision_auto_measures_and_decides(model_onnx: Path, collected: tuple[Path, str], holdout_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "auto.onnx"
    proc = run_cli("calibrate", "quantize", model_onnx, "--calib", collected[0], "--holdout", holdout_dir, "--target", "cpu", "--precision", "auto", "-o", out, *FAST)
    report = json.loads((tmp_path / "auto.report.json").read_text())
    assert report["chosen_precision"] in ("int8", "fp32") and f"scheme: cpu on {host_isa()}: " in proc.stdout  # says which ISA it chose
    assert graph_precision(onnx.load(str(out))) == report["chosen_precision"]
    slower = min(r["int8_speedup"] for r in report["speed"]) < 1.05
    assert ("is not faster than FP32" in report["speed_note"]) == slower
    assert (report["chosen_precision"] == "fp32") == (slower or not report["guard"]["passed"])


def test_calibration_for_another_contract_is_refused(model_onnx: Path, holdout_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "c128.npz"
    save_calibration_set(path, CalibrationSet(np.zeros((20, 128, 128, 3), np.uint8), [{"source": "x", "frame": i} for i in range(20)], crop_contract(128)))
    proc = run_cli("calibrate", "quantize", model_onnx, "--calib", path, "--holdout", holdout_dir, "-o", tmp_path / "o.onnx", check=False)
    assert proc.returncode == 2 and "made for another input contract: size 128 (model needs 112)" in proc.stderr


def test_fp16_parity(model_onnx: Path, holdout_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "mbf_fp16.onnx"
    proc = run_cli("calibrate", "fp16", model_onnx, "--holdout", holdout_dir, "-o", out, "--holdout-max", str(HOLDOUT_MAX))
    model = onnx.load(str(out))
    assert graph_precision(model) == "fp16"
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # FP32 I/O kept
    report = json.loads((tmp_path / "mbf_fp16.report.json").read_text())
    assert report["guard"]["passed"] and report["guard"]["mean_cosine"] > 0.999
    if not {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(onnxruntime.get_available_providers()):
        assert "FP16 pays on GPUs" in " ".join(proc.stdout.split()) and "FP16 pays on GPUs" in report["speed_note"]
    assert (tmp_path / "mbf_fp16.roc.png").stat().st_size > 1000


def test_ctrl_c_in_quantize_says_nothing_was_written(model_onnx: Path, collected: tuple[Path, str], holdout_dir: Path, tmp_path: Path) -> None:
    """Ctrl-C used to end ``calibrate quantize`` with exit status 130 and nothing on the screen."""
    out = tmp_path / "int8.onnx"
    args = ["calibrate", "quantize", model_onnx, "--calib", collected[0], "--holdout", holdout_dir, "-o", out, *FAST]
    proc = subprocess.Popen([sys.executable, "-m", "coreface_edge", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    try:
        assert proc.stdout.readline().startswith(">"), proc.stderr.read()  # the first step has started
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert f"interrupted: nothing was written: {out} and its report appear only when the run completes" in " ".join(err.split())
    assert not out.exists() and not list(tmp_path.iterdir())


def test_quantizer_without_the_range_cache_gives_the_same_model(model_onnx: Path, parity_faces: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Older ONNX Runtime releases (Python 3.10 wheels up to 1.23, Jetson builds) have no
    ``calibration_cache_path``: the Quantizer then calibrates on each call and reads the ranges
    with ORT's own calibrator. Same data, same method -> the same scales and ranges."""
    from coreface_edge.calibration import quantize as quantize_module
    from coreface_edge.calibration.quantize import Quantizer, ranges_cached
    from coreface_edge.calibration.scheme import choose_scheme

    contract = open_backend(model_onnx).contract
    scheme = choose_scheme("tensorrt", host_isa())

    def run(tag: str) -> tuple[dict[str, np.ndarray], dict[str, tuple[float, float]]]:
        with Quantizer(model_onnx, parity_faces, contract, scheme, "minmax") as quantizer:
            model = onnx.load(str(quantizer.quantize(tmp_path / f"{tag}.onnx")))
            ranges = {r.name: (r.low, r.high) for r in quantizer.ranges()}
        scales = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("_scale")}
        return scales, ranges

    has_cache = ranges_cached()
    if has_cache:
        cached_scales, cached_ranges = run("cached")
    monkeypatch.setattr(quantize_module, "ranges_cached", lambda: False)
    scales, ranges = run("uncached")
    assert scales and ranges and len(open_backend(tmp_path / "uncached.onnx").embed(parity_faces)) == len(parity_faces)
    if has_cache:
        assert scales.keys() == cached_scales.keys() and all(np.allclose(scales[k], cached_scales[k]) for k in scales)
        assert ranges.keys() == cached_ranges.keys()
        assert all(np.allclose(ranges[k], cached_ranges[k], rtol=1e-5, atol=1e-6) for k in ranges)
