"""TensorRT: the version-path decision and the sidecar check (pure, run everywhere), the missing-TensorRT
message, and real engine builds + inference that run only where TensorRT, pycuda and a GPU exist."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import run_cli
from onnx import TensorProto, helper, numpy_helper

from coreface_edge.contract import InputContract
from coreface_edge.errors import CorefaceError
from coreface_edge.export.engine_sidecar import EngineInfo, check_compatible, read_sidecar, rebuild_command, sidecar_path, write_sidecar
from coreface_edge.export.onnx_meta import asymmetric_qdq, graph_precision
from coreface_edge.export.trt_plan import TENSORRT_MISSING, parse_version, plan_build

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def test_parse_version() -> None:
    assert parse_version("10.3.0.30") == (10, 3, 0)
    assert parse_version("11.0") == (11, 0, 0)
    with pytest.raises(CorefaceError):
        parse_version("unknown")


def test_tensorrt10_paths() -> None:
    fp16 = plan_build("10.3.0", "fp16", "fp32")
    assert fp16.builder_flags == ("FP16",) and fp16.network_flags == () and not fp16.strongly_typed
    from_half = plan_build("10.3.0", "fp16", "fp16")
    assert from_half.network_flags == ("STRONGLY_TYPED",) and from_half.builder_flags == () and from_half.strongly_typed
    int8 = plan_build("10.3.0", "int8", "int8")
    assert int8.builder_flags == ("INT8", "FP16")
    assert plan_build("10.3.0", "fp32", "fp32").builder_flags == ()
    assert plan_build("10.3.0", "fp16", "fp32", dla=True).builder_flags == ("FP16",)


def test_tensorrt11_is_strongly_typed_without_precision_flags() -> None:
    for precision, graph in (("fp32", "fp32"), ("fp16", "fp16"), ("int8", "int8")):
        plan = plan_build("11.4.1", precision, graph)
        assert plan.builder_flags == () and plan.strongly_typed and plan.trt_major == 11
    with pytest.raises(CorefaceError, match="no FP16 builder flag .* FP16 ONNX with FP32 I/O"):
        plan_build("11.0.0", "fp16", "fp32", "m.onnx")


def test_impossible_combinations_are_refused() -> None:
    with pytest.raises(CorefaceError, match="Q/DQ .* implicit INT8 calibrator is not supported"):
        plan_build("10.3.0", "int8", "fp32", "m.onnx")
    with pytest.raises(CorefaceError, match="Q/DQ INT8 ONNX; build it with --precision int8"):
        plan_build("10.3.0", "fp16", "int8")
    with pytest.raises(CorefaceError, match="FP16 ONNX; build it with --precision fp16"):
        plan_build("11.1.0", "fp32", "fp16")
    with pytest.raises(CorefaceError, match="too old"):
        plan_build("8.6.1", "fp16", "fp32")
    with pytest.raises(CorefaceError, match="DLA runs FP16 and INT8 only"):
        plan_build("10.3.0", "fp32", "fp32", dla=True)
    with pytest.raises(CorefaceError, match="unknown precision"):
        plan_build("10.3.0", "bf16", "fp32")


def test_graph_precision_of_real_models(model_onnx: Path, tmp_path: Path) -> None:
    assert graph_precision(onnx.load(str(model_onnx))) == "fp32"
    from coreface_edge.calibration.fp16 import convert_fp16

    half = convert_fp16(model_onnx, tmp_path / "half.onnx")
    assert graph_precision(onnx.load(str(half))) == "fp16"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    scale, zero = numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.int8(0), "z")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    qdq = helper.make_model(helper.make_graph(nodes, "qdq", [x], [y], [scale, zero]))
    assert graph_precision(qdq) == "int8" and asymmetric_qdq(qdq) is None
    zero.CopyFrom(numpy_helper.from_array(np.uint8(128), "z"))  # ONNX Runtime's default asymmetric UINT8
    qdq = helper.make_model(helper.make_graph(nodes, "qdq", [x], [y], [scale, zero]))
    assert asymmetric_qdq(qdq) == "q"
    onnx.save(qdq, str(tmp_path / "uint8_qdq.onnx"))
    from coreface_edge.export.tensorrt_builder import BuildOptions, build_engine

    with pytest.raises(CorefaceError, match=r"uint8_qdq.onnx: Q/DQ node 'q' is asymmetric .* needs symmetric INT8 Q/DQ: quantize with `coreface-edge calibrate quantize`"):
        build_engine(tmp_path / "uint8_qdq.onnx", tmp_path / "q.engine", BuildOptions("int8"))


def _info(**changes: object) -> EngineInfo:
    base = dict(
        tensorrt_version="10.3.0",
        gpu_name="Orin",
        compute_capability="8.7",
        precision="fp16",
        min_batch=1,
        opt_batch=8,
        max_batch=32,
        source_onnx="models/mbf.onnx",
        source_onnx_sha256="ab" * 32,
        contract=InputContract(embedding_size=512, architecture="mobilefacenet"),
        workspace_mb=1024,
    )
    base.update(changes)
    return EngineInfo(**base)  # type: ignore[arg-type]


def test_sidecar_round_trip_and_compatibility(tmp_path: Path) -> None:
    engine = tmp_path / "mbf.fp16.engine"
    info = _info(dla_core=0)
    assert write_sidecar(engine, info) == sidecar_path(engine) == tmp_path / "mbf.fp16.engine.json"
    assert read_sidecar(engine) == info
    check_compatible(info, engine, "10.3.0.30", "Orin", "8.7")  # build number ignored
    rebuild = (
        f"coreface-edge build models/mbf.onnx -o {engine} --precision fp16 --min-batch 1 --opt-batch 8 "
        "--max-batch 32 --workspace-mb 1024 --dla-core 0"
    )
    assert rebuild_command(info, engine) == rebuild
    with pytest.raises(CorefaceError) as err:
        check_compatible(info, engine, "10.7.0", "Orin", "8.7")
    assert str(err.value) == f"{engine}: built with TensorRT 10.3.0, this machine has TensorRT 10.7.0; rebuild it here: {rebuild}"
    with pytest.raises(CorefaceError, match=r"built for Orin \(compute 8.7\), this machine has NVIDIA H100 .*compute 9.0.*rebuild it here: coreface-edge build"):
        check_compatible(info, engine, "10.3.0", "NVIDIA H100 80GB HBM3", "9.0")


def test_cuda_ordinal() -> None:
    from coreface_edge.runtime.tensorrt_backend import cuda_ordinal

    assert [cuda_ordinal(d) for d in (0, "1", "cuda", "cuda:2", "CUDA:0")] == [0, 1, 0, 2, 0]
    with pytest.raises(CorefaceError, match="CUDA device"):
        cuda_ordinal("cpu")


def test_missing_or_broken_sidecar(tmp_path: Path) -> None:
    engine = tmp_path / "x.engine"
    with pytest.raises(CorefaceError, match="sidecar x.engine.json is missing"):
        read_sidecar(engine)
    sidecar_path(engine).write_text('{"tensorrt_version": "10.3.0"}')
    with pytest.raises(CorefaceError, match="not a valid engine sidecar"):
        read_sidecar(engine)


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the message shown where TensorRT is missing")
def test_without_tensorrt_build_says_how_to_install(model_onnx: Path, tmp_path: Path) -> None:
    from coreface_edge.export.tensorrt_builder import BuildOptions, build_engine

    with pytest.raises(CorefaceError) as err:
        build_engine(model_onnx, tmp_path / "m.engine", BuildOptions())
    assert str(err.value) == TENSORRT_MISSING
    from coreface_edge.runtime import open_backend

    engine = tmp_path / "prebuilt.engine"
    engine.write_bytes(b"serialized engine bytes")
    write_sidecar(engine, _info())
    with pytest.raises(CorefaceError) as opened:
        open_backend(engine)
    assert str(opened.value) == TENSORRT_MISSING
    proc = run_cli("build", model_onnx, "-o", tmp_path / "m.engine", check=False)
    assert proc.returncode == 2 and "TensorRT is not installed" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m.engine").exists()


def test_bad_batch_profile_is_refused_before_tensorrt(model_onnx: Path, tmp_path: Path) -> None:
    from coreface_edge.export.tensorrt_builder import BuildOptions, build_engine

    with pytest.raises(CorefaceError, match="1 <= min <= opt <= max"):
        build_engine(model_onnx, tmp_path / "m.engine", BuildOptions(min_batch=8, opt_batch=4, max_batch=32))
    with pytest.raises(CorefaceError, match="DLA has no dynamic shapes.*--min-batch 8 --opt-batch 8 --max-batch 8.*got 1/8/32"):
        build_engine(model_onnx, tmp_path / "m.engine", BuildOptions(dla_core=0))
    BuildOptions(dla_core=0, min_batch=4, opt_batch=4, max_batch=4).check()  # one batch size: accepted
    assert not (tmp_path / "m.engine").exists()


# ---- real TensorRT (skipped here: no machine in this workplace has TensorRT or pycuda) ----


@pytest.fixture(scope="module")
def trt_ready() -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'coreface-edge[tensorrt]' or JetPack)")
    cuda = pytest.importorskip("pycuda.driver", reason="pycuda is not installed")
    try:
        cuda.init()
        count = cuda.Device.count()
    except Exception as exc:  # pycuda raises LogicError/RuntimeError without a driver
        pytest.skip(f"no usable CUDA driver ({exc})")
    if count == 0:
        pytest.skip("no CUDA device")


def _build(onnx_path: Path, tmp_path: Path, precision: str) -> Path:
    from coreface_edge.export.tensorrt_builder import BuildOptions, build_engine

    cache = tmp_path / "timing.cache"
    result = build_engine(onnx_path, tmp_path / f"m.{precision}.engine", BuildOptions(precision, 1, 4, 8, 512, cache))
    assert result.engine.is_file() and result.sidecar.is_file() and cache.is_file() and cache.stat().st_size > 100
    return result.engine


def test_tensorrt_fp32_engine_matches_onnxruntime(trt_ready: None, model_onnx: Path, parity_faces: np.ndarray, tmp_path: Path) -> None:
    from coreface_edge.runtime import open_backend

    engine = _build(model_onnx, tmp_path, "fp32")
    trt_model = open_backend(engine)
    ref = open_backend(model_onnx).embed(parity_faces)
    out = trt_model.embed(parity_faces)
    cos = np.sum(ref * out, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1))
    assert out.shape == ref.shape and out.dtype == np.float32 and cos.min() >= 0.9999
    assert set(trt_model.timings) == {"h2d_ms", "compute_ms", "d2h_ms"} and trt_model.timings["compute_ms"] > 0
    many = np.concatenate([parity_faces, parity_faces[:3]])  # 11 > profile max 8: runs in two chunks
    np.testing.assert_allclose(trt_model.embed(many)[8:], out[:3], rtol=1e-3, atol=1e-4)
    with pytest.raises(CorefaceError, match="uint8"):
        trt_model.embed(parity_faces.astype(np.float32))
    assert read_sidecar(engine).precision == "fp32" and trt_model.info()["batch_profile"] == "1/4/8"


def test_tensorrt_fp16_engine_for_this_version(trt_ready: None, model_onnx: Path, parity_faces: np.ndarray, tmp_path: Path) -> None:
    import tensorrt

    from coreface_edge.runtime import open_backend

    source = model_onnx
    if parse_version(tensorrt.__version__)[0] >= 11:  # strongly typed: give it an FP16 ONNX
        from coreface_edge.calibration.fp16 import convert_fp16

        source = convert_fp16(model_onnx, tmp_path / "half.onnx")
    out = open_backend(_build(source, tmp_path, "fp16")).embed(parity_faces)
    ref = open_backend(model_onnx).embed(parity_faces)
    cos = np.sum(ref * out, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1))
    assert cos.min() >= 0.999


def test_engine_from_other_tensorrt_is_refused(trt_ready: None, model_onnx: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from coreface_edge.runtime import open_backend

    (tmp_path / "timing.cache").write_bytes(b"not a timing cache")  # unreadable cache: replaced by a fresh one
    engine = _build(model_onnx, tmp_path, "fp32")
    write_sidecar(engine, replace(read_sidecar(engine), tensorrt_version="9.9.9"))
    with pytest.raises(CorefaceError, match="built with TensorRT 9.9.9.*rebuild it here: coreface-edge build"):
        open_backend(engine)
