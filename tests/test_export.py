"""ONNX export on real initialised backbones: parity, metadata, baked pre-processing, flip, L2, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from fixtures_models import initialised_artifact
from conftest import run_cli

from coreface_edge.contract import CONTRACT_METADATA_KEY, InputContract
from coreface_edge.errors import CorefaceError
from coreface_edge.export.onnx_export import ExportOptions, default_output, export_onnx
from coreface_edge.export.onnx_meta import contract_of, graph_precision, read_metadata
from coreface_edge.export.parity import compare_embeddings, load_parity_crops
from coreface_edge.runtime import open_backend
from coreface_edge.pretrained import DEFAULT_MODEL


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, model_artifact: Path, parity_faces: np.ndarray) -> dict[str, Path]:
    """The MobileFaceNet artefact exported with each option on its own."""
    out = tmp_path_factory.mktemp("variants")
    variants = {
        "baked": ExportOptions(bake_preprocess=True),
        "flip": ExportOptions(fuse_flip=True),
        "l2": ExportOptions(l2_normalize=True),
    }
    return {name: export_onnx(model_artifact, out / f"{name}.onnx", opts, parity_faces).path for name, opts in variants.items()}


def _no_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".onnx", ".tmp"))


def test_compare_embeddings_math() -> None:
    a = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
    report = compare_embeddings(a, a * 3)
    assert report.min_cosine == pytest.approx(1.0) and report.max_abs_diff == pytest.approx(4.0) and report.passed
    assert report.max_rel_diff == pytest.approx(2.0)
    bent = compare_embeddings(a, np.array([[1.0, 1.0], [0.0, 2.0]]))
    assert bent.min_cosine == pytest.approx(np.sqrt(0.5)) and not bent.passed
    with pytest.raises(CorefaceError, match="differ in shape"):
        compare_embeddings(a, a[:1])


def test_packaged_parity_crops_are_real_aligned_faces(parity_faces: np.ndarray) -> None:
    assert parity_faces.shape == (8, 112, 112, 3) and parity_faces.dtype == np.uint8
    assert 40 < parity_faces.mean() < 220 and parity_faces.std() > 20


def test_parity_images_folder_detects_and_aligns_photos(face_photos: list[Path], tmp_path: Path) -> None:
    for photo in face_photos[:3]:
        (tmp_path / photo.name).write_bytes(photo.read_bytes())
    (tmp_path / "notes.txt").write_text("ignored")
    crops = load_parity_crops(tmp_path)
    assert crops.shape == (3, 112, 112, 3)
    with pytest.raises(CorefaceError, match="parity image folder not found"):
        load_parity_crops(tmp_path / "nope")


def _check_exported_graph(path: Path, checkpoint: Path, architecture: str, embedding_size: int) -> None:
    from coreface_edge.models import checkpoint_fingerprint

    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.HasField("dim_value")  # dynamic batch axis
    ops = [n.op_type for n in model.graph.node]
    assert "Dropout" not in ops and graph_precision(model) == "fp32"
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    bn_after = [producers.get(n.input[0]) for n in model.graph.node if n.op_type == "BatchNormalization"]
    assert "Conv" not in bn_after and "Gemm" not in bn_after and "MatMul" not in bn_after  # all foldable BN folded
    meta = read_metadata(model)
    contract = contract_of(model, str(path))
    assert contract == InputContract.from_json(meta[CONTRACT_METADATA_KEY])
    assert contract.architecture == architecture and contract.fingerprint == checkpoint_fingerprint(checkpoint)
    assert meta["source_checkpoint_sha256"] == contract.fingerprint and meta["embedding_size"] == str(embedding_size)
    assert meta["input_name"] == model.graph.input[0].name and meta["input_layout"] == "NCHW" and meta["input_dtype"] == "float32"
    assert meta["normalization"].startswith("(x - 127.5) / 127.5, RGB")


def test_shipped_model_export_graph_and_metadata(model_onnx: Path, model_artifact: Path) -> None:
    sidecar = json.loads(model_artifact.with_suffix(".json").read_text())
    _check_exported_graph(model_onnx, model_artifact, sidecar["architecture"], sidecar["embedding_size"])


@pytest.mark.parametrize("architecture", ["iresnet18", pytest.param("iresnet50", marks=pytest.mark.slow)])
def test_iresnet_export_parity(architecture: str, tmp_path: Path, parity_faces: np.ndarray) -> None:
    checkpoint = initialised_artifact(architecture, tmp_path / f"{architecture}.pt", parity_faces)
    result = export_onnx(checkpoint, tmp_path / f"{architecture}.onnx", ExportOptions(), parity_faces)
    assert result.parity.passed and result.parity.faces == 8 and result.parity.min_cosine >= 0.9999
    assert result.opset == 17 and result.size_bytes == result.path.stat().st_size > 50e6
    _check_exported_graph(result.path, checkpoint, architecture, 512)
    ref = open_backend(checkpoint).embed(parity_faces)
    out = open_backend(result.path).embed(parity_faces)
    assert compare_embeddings(ref, out).min_cosine >= 0.9999


def test_baked_preprocess_equals_external(exported: dict[str, Path], model_onnx: Path, parity_faces: np.ndarray) -> None:
    baked = open_backend(exported["baked"])
    assert baked.contract.baked_preprocess and baked.contract.dtype == "uint8" and baked.contract.layout == "NHWC"
    graph_input = onnx.load(str(exported["baked"])).graph.input[0]
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_value for d in graph_input.type.tensor_type.shape.dim][1:] == [112, 112, 3]
    external = open_backend(model_onnx).embed(parity_faces)
    inside = baked.embed(parity_faces)
    assert compare_embeddings(external, inside).min_cosine >= 0.99999
    np.testing.assert_allclose(inside, external, atol=1e-4 * np.abs(external).max())


def test_flip_fusion_equals_sum_by_hand(exported: dict[str, Path], model_onnx: Path, parity_faces: np.ndarray) -> None:
    plain = open_backend(model_onnx)
    by_hand = plain.embed(parity_faces) + plain.embed(np.ascontiguousarray(parity_faces[:, :, ::-1]))
    fused = open_backend(exported["flip"])
    assert fused.contract.flip_fused and fused.info()["flip_fused"]
    np.testing.assert_allclose(fused.embed(parity_faces), by_hand, atol=1e-4 * np.abs(by_hand).max())


def test_l2_output_has_unit_norm(exported: dict[str, Path], model_onnx: Path, parity_faces: np.ndarray) -> None:
    out = open_backend(exported["l2"]).embed(parity_faces)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    raw = open_backend(model_onnx).embed(parity_faces)
    np.testing.assert_allclose(out, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)


def test_failed_parity_removes_output(tmp_path: Path, model_artifact: Path, parity_faces: np.ndarray) -> None:
    target = tmp_path / "strict.onnx"
    with pytest.raises(CorefaceError, match="parity failed: min cosine .* nothing written") as err:
        export_onnx(model_artifact, target, ExportOptions(parity_threshold=1.5), parity_faces)
    assert "\n" not in str(err.value)
    assert _no_leftovers(tmp_path) == []


def test_corrupt_and_mismatched_checkpoints(tmp_path: Path, parity_faces: np.ndarray) -> None:
    import torch

    from coreface_edge.models import build_backbone

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x04 definitely not a torch file")
    with pytest.raises(CorefaceError, match="corrupt.pt") as err:
        export_onnx(corrupt, tmp_path / "a.onnx", ExportOptions(), parity_faces)
    assert "\n" not in str(err.value)
    # an artefact that claims mobilefacenet but carries iresnet18 weights
    other = build_backbone("iresnet18")
    wrong = tmp_path / "wrong_arch.pt"
    torch.save(
        {"format": "coreface-edge-backbone/1", "architecture": "mobilefacenet", "embedding_size": 512, "kwargs": {}, "state_dict": other.state_dict(), "metadata": {}},
        wrong,
    )
    with pytest.raises(CorefaceError, match="wrong_arch.pt"):
        export_onnx(wrong, tmp_path / "b.onnx", ExportOptions(), parity_faces)
    with pytest.raises(CorefaceError, match="must end in .onnx"):
        export_onnx(wrong, tmp_path / "c.engine", ExportOptions(), parity_faces)
    with pytest.raises(CorefaceError, match="at least 17"):
        export_onnx(wrong, tmp_path / "d.onnx", ExportOptions(opset=13), parity_faces)
    assert _no_leftovers(tmp_path) == []


def test_default_output_name() -> None:
    assert default_output(Path("m/best.pt"), ExportOptions()) == Path("m/best.onnx")
    assert default_output(Path("best.pt"), ExportOptions(bake_preprocess=True, l2_normalize=True)) == Path("best.baked.l2.onnx")


def test_cli_export_real_subprocess(tmp_path: Path, model_artifact: Path) -> None:
    out = tmp_path / "cli" / "model.onnx"
    proc = run_cli("export", model_artifact, "-o", out, "--bake-preprocess", "--fuse-flip", "--l2-normalize")
    assert out.is_file() and "1.000000" in proc.stdout and f"passed; wrote {out}" in proc.stdout
    contract = open_backend(out).contract
    assert contract.baked_preprocess and contract.flip_fused and contract.l2_normalized
    bad = tmp_path / "bad.pt"
    bad.write_text("garbage")
    failed = run_cli("export", bad, "-o", tmp_path / "bad.onnx", check=False)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert failed.stderr.strip().count("\n") == 0 and "bad.pt" in failed.stderr
    assert not (tmp_path / "bad.onnx").exists()


def test_operating_threshold_travels_with_the_export(exported: dict[str, Path], model_onnx: Path, model_artifact: Path) -> None:
    """An artefact whose card carries a measured operating point (the shipped model's does)
    gets it written beside its export, tied to the export's fingerprint; a flip-fused export
    scores differently, so it gets neither the threshold nor the same fingerprint."""
    import json

    from coreface_edge.threshold_file import load_threshold

    plain = open_backend(model_onnx).contract
    assert open_backend(exported["flip"]).contract.fingerprint != plain.fingerprint
    assert open_backend(exported["l2"]).contract.fingerprint == plain.fingerprint  # same scores, same galleries
    assert not Path(f"{exported['flip']}.threshold.json").exists()
    point = json.loads(model_artifact.with_suffix(".json").read_text()).get("operating_threshold")
    if point is None:
        assert not Path(f"{model_onnx}.threshold.json").exists()
        pytest.skip("the artefact in use carries no operating threshold (the shipped model's card does)")
    stored = load_threshold(model_onnx, plain.fingerprint)
    assert stored is not None and stored.threshold == point["threshold"] and stored.far_target == point["far_target"]
    assert stored.reject_threshold < stored.threshold and "425-500" in stored.data


def test_export_keeps_a_threshold_the_user_measured(tmp_path: Path, model_artifact: Path, parity_faces: np.ndarray) -> None:
    """Re-exporting over a model must not replace the threshold stored for it (say, measured
    on the site's own faces) with the card's; another model's stale threshold is replaced."""
    import json
    from dataclasses import replace

    from coreface_edge.threshold_file import load_threshold, store_threshold

    if "operating_threshold" not in json.loads(model_artifact.with_suffix(".json").read_text()):
        pytest.skip("the artefact in use carries no operating threshold (the shipped model's card does)")
    out = tmp_path / "model.onnx"
    fingerprint = export_onnx(model_artifact, out, ExportOptions(), parity_faces).contract.fingerprint
    card = load_threshold(out, fingerprint)
    store_threshold(out, replace(card, threshold=0.995, data="our entrance, 2,000 faces"))
    export_onnx(model_artifact, out, ExportOptions(bake_preprocess=True), parity_faces)
    assert load_threshold(out, fingerprint).threshold == 0.995
    store_threshold(out, replace(card, fingerprint="0" * 64))
    export_onnx(model_artifact, out, ExportOptions(), parity_faces)
    assert load_threshold(out, fingerprint).threshold == card.threshold


def test_the_shipped_model_exports_without_torch_from_its_packaged_onnx(tmp_path: Path) -> None:
    """A Jetson has no torch: `export` of the shipped model copies the packaged export (same
    default options) with its threshold; other options say what they need, in one line."""
    import subprocess
    import sys

    from coreface_edge.pretrained import shipped_onnx_path

    script = "import sys; sys.modules['torch'] = None\nfrom coreface_edge.cli import main\nsys.argv = ['coreface-edge', *sys.argv[1:]]\nmain()\n"

    def export(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", script, "export", DEFAULT_MODEL, *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)

    proc = export("-o", "model.onnx")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "model.onnx").read_bytes() == shipped_onnx_path(DEFAULT_MODEL).read_bytes()
    assert (tmp_path / "model.onnx.threshold.json").is_file() and "copied the packaged export" in " ".join(proc.stdout.split())
    proc = export("-o", "flip.onnx", "--fuse-flip")
    assert proc.returncode == 2 and "needs torch and onnxslim" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "flip.onnx").exists()
