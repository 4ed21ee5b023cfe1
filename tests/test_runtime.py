"""Backends behind one interface: registry, ONNX Runtime and torch on real faces, bad inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from coreface_edge.contract import InputContract
from coreface_edge.errors import CorefaceError
from coreface_edge.runtime import EmbeddingBackend, open_backend
from coreface_edge.contract import infer_contract
from coreface_edge.ort_session import select_providers
from coreface_edge.runtime.registry import backend_for

INFO_KEYS = {"backend", "runtime", "device", "precision", "file", "architecture", "baked_preprocess", "flip_fused"}


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _tiny_onnx(path: Path, shape: list, elem: int = TensorProto.FLOAT) -> Path:
    """A real, runnable foreign model: global average pool -> (N, 3) 'embedding'."""
    inp = helper.make_tensor_value_info("data", elem, shape)
    out = helper.make_tensor_value_info("feat", TensorProto.FLOAT, ["N", 3])
    pool = helper.make_node("GlobalAveragePool", ["data"], ["pooled"])
    flat = helper.make_node("Flatten", ["pooled"], ["feat"], axis=1)
    graph = helper.make_graph([pool, flat], "tiny", [inp], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)  # loadable by older ORT too
    onnx.save(model, str(path))
    return path


def test_backend_for_suffix_and_explicit_name(tmp_path: Path) -> None:
    assert backend_for("m.pt") == "torch"
    assert backend_for("m.ONNX") == "onnxruntime"
    assert backend_for("m.engine") == "tensorrt" and backend_for("m.plan") == "tensorrt"
    assert backend_for("m.bin", "onnxruntime") == "onnxruntime"
    with pytest.raises(CorefaceError, match="cannot tell the backend"):
        backend_for("m.bin")
    with pytest.raises(CorefaceError, match="unknown backend 'tflite'"):
        backend_for("m.onnx", "tflite")
    with pytest.raises(CorefaceError, match="file not found"):
        open_backend(tmp_path / "missing.onnx")


def test_select_providers() -> None:
    cpu = "CPUExecutionProvider"
    assert select_providers("cpu", [cpu, "CUDAExecutionProvider"]) == [cpu]
    assert select_providers("auto", [cpu]) == [cpu]
    assert select_providers("auto", ["CUDAExecutionProvider", cpu]) == ["CUDAExecutionProvider", cpu]
    both = ["TensorrtExecutionProvider", "CUDAExecutionProvider", cpu]
    assert select_providers("tensorrt", both) == both
    with pytest.raises(CorefaceError, match="CUDAExecutionProvider is not available"):
        select_providers("cuda", [cpu])
    with pytest.raises(CorefaceError, match="unknown device"):
        select_providers("npu", [cpu])


def test_torch_and_onnxruntime_conform_and_agree(model_artifact: Path, model_onnx: Path, parity_faces: np.ndarray) -> None:
    ref = open_backend(model_artifact)
    ort = open_backend(model_onnx, threads=2)
    for backend in (ref, ort):
        assert isinstance(backend, EmbeddingBackend)
        assert INFO_KEYS <= set(backend.info())
    assert (ref.name, ort.name) == ("torch", "onnxruntime")
    assert ort.contract.fingerprint == ref.contract.fingerprint and len(ref.contract.fingerprint) == 64
    size = ref.contract.embedding_size
    assert ort.contract.embedding_size == size and size in (129, 512)  # the shipped dlib_resnet (sphere-lifted) or a 512-d fixture
    assert ort.info()["precision"] == "fp32" and ort.info()["threads"] == 2
    a, b = ref.embed(parity_faces), ort.embed(parity_faces)
    assert a.shape == b.shape == (len(parity_faces), size) and a.dtype == b.dtype == np.float32
    assert _cosines(a, b).min() >= 0.9999
    assert np.abs(a - b).max() < 1e-3 * np.abs(a).max()
    # an embedding does not depend on the rest of the batch (eval mode, no batch statistics)
    np.testing.assert_allclose(ort.embed(parity_faces[2:3])[0], b[2], rtol=1e-4, atol=1e-5)
    assert ort.embed(parity_faces[:0]).shape == (0, size)


def test_wrong_batch_shape_or_dtype_is_one_line(model_onnx: Path, model_artifact: Path, parity_faces: np.ndarray) -> None:
    for backend in (open_backend(model_onnx), open_backend(model_artifact)):
        with pytest.raises(CorefaceError, match=r"shape \(N, 112, 112, 3\)") as shape_err:
            backend.embed(parity_faces[0])
        with pytest.raises(CorefaceError, match="uint8") as dtype_err:
            backend.embed(parity_faces.astype(np.float32))
        with pytest.raises(CorefaceError, match="shape"):
            backend.embed(parity_faces[:, :100])
        assert "\n" not in str(shape_err.value) + str(dtype_err.value)


def test_infer_contract_rule() -> None:
    assert infer_contract("x", ["N", 3, 112, 112], "tensor(float)", ["N", 128], "m.onnx") == InputContract(input_name="x", embedding_size=128)
    assert infer_contract("x", [1, 3, 112, 112], "tensor(float16)", ["N", "D"], "m.onnx").embedding_size == 0  # asked at load
    with pytest.raises(CorefaceError, match=r"^m.onnx: input 'x' is tensor\(float\) \('N', 112, 112, 3\)"):
        infer_contract("x", ["N", 112, 112, 3], "tensor(float)", ["N", 128], "m.onnx")


def test_foreign_onnx_gets_an_inferred_contract(tmp_path: Path, parity_faces: np.ndarray) -> None:
    model = open_backend(_tiny_onnx(tmp_path / "foreign.onnx", ["N", 3, 112, 112]))
    assert model.contract == InputContract(input_name="data", embedding_size=3)
    out = model.embed(parity_faces)
    rgb_means = (parity_faces[..., ::-1].astype(np.float32).mean(axis=(1, 2)) - 127.5) / 127.5
    np.testing.assert_allclose(out, rgb_means, atol=1e-5)


def test_foreign_onnx_with_wrong_input_shape_fails(tmp_path: Path) -> None:
    bad = _tiny_onnx(tmp_path / "wrong.onnx", ["N", 3, 64, 64])
    with pytest.raises(CorefaceError, match=r"expected float \(N, 3, 112, 112\)") as err:
        open_backend(bad)
    assert str(err.value).startswith(str(bad)) and "\n" not in str(err.value)
    with pytest.raises(CorefaceError, match="tensor\\(uint8\\)"):
        open_backend(_tiny_onnx(tmp_path / "u8.onnx", ["N", 3, 112, 112], TensorProto.UINT8))


def test_corrupt_files_are_one_line_errors(tmp_path: Path, model_onnx: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(model_onnx.read_bytes()[:5000])
    with pytest.raises(CorefaceError) as err:
        open_backend(corrupt)
    assert str(err.value).startswith(str(corrupt)) and "\n" not in str(err.value)
    corrupt_pt = tmp_path / "corrupt.pt"
    corrupt_pt.write_bytes(b"not a checkpoint")
    with pytest.raises(CorefaceError, match="corrupt.pt"):
        open_backend(corrupt_pt)
    with pytest.raises(CorefaceError, match="bad option for the onnxruntime backend"):
        open_backend(model_onnx, fp16=True)


def test_metadata_contract_must_match_graph(tmp_path: Path, model_onnx: Path) -> None:
    from coreface_edge.export.onnx_meta import contract_metadata, contract_of, set_metadata

    model = onnx.load(str(model_onnx))
    lying = contract_of(model, "test").__class__(baked_preprocess=True, layout="NHWC", dtype="uint8", input_name="crops")
    set_metadata(model, contract_metadata(lying))
    onnx.save(model, str(tmp_path / "lying.onnx"))
    with pytest.raises(CorefaceError, match="does not match its metadata contract"):
        open_backend(tmp_path / "lying.onnx")


def test_onnx_backend_does_not_import_torch(model_onnx: Path) -> None:
    code = (
        "import sys; from coreface_edge.runtime import open_backend; import numpy as np; "
        f"m = open_backend({str(model_onnx)!r}); m.embed(np.zeros((1, 112, 112, 3), np.uint8)); "
        "import coreface_edge.cli; assert 'torch' not in sys.modules and 'tensorrt' not in sys.modules, 'heavy import'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_tensorrt_engines_go_beside_the_model_or_to_the_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A packaged model in a read-only site-packages gets its engine cache under ~/.cache instead."""
    import os

    from coreface_edge.ort_session import trt_cache_dir

    model = tmp_path / "yunet.onnx"
    assert trt_cache_dir(model) == tmp_path / "yunet.ort-trt-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as a read-only install looks (root may write anywhere)
    elsewhere = trt_cache_dir(model)
    assert elsewhere.parent == tmp_path / "cache" / "coreface-edge" / "ort-trt" and elsewhere.name.startswith("yunet-")
    assert trt_cache_dir(tmp_path / "other" / "yunet.onnx") != elsewhere  # one folder per model path
