"""Pretrained weights in: dlib's .dat reader and ResNet (parity with dlib itself where installed),
arcface_torch .pth and insightface-layout ONNX import, one-line errors for bad files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from coreface_edge.errors import CorefaceError
from coreface_edge.models import build_backbone, load_backbone_artifact, save_backbone_artifact
from coreface_edge.models.dlib_format import read_network
from coreface_edge.models.dlib_resnet import DLIB_MEAN_RGB, DlibResNet, chip_grid, state_dict_from_dlib
from coreface_edge.models.importers import import_weights

from conftest import run_cli
from dlib_writer import dlib_bytes, random_dlib_resnet

PARITY_PHOTOS = sorted((Path(__file__).resolve().parents[1] / "coreface_edge" / "assets" / "parity").glob("*.jpg"))


def _real_dlib_weights() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or importlib.util.find_spec("dlib") is None:
        pytest.skip("dlib's real weights need the face-recognition-models and dlib-bin packages (pip install dlib-bin face-recognition-models)")
    return Path(spec.origin).parent / "models" / "dlib_face_recognition_resnet_model_v1.dat"


def _crops(n: int = 4) -> torch.Tensor:
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.uniform(-1, 1, (n, 3, 112, 112)).astype(np.float32))


# ---------------------------------------------------------------- dlib format, synthetic file
@pytest.fixture(scope="module")
def synthetic_dat(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DlibResNet]:
    model = random_dlib_resnet(seed=3)
    path = tmp_path_factory.mktemp("dlib") / "synthetic.dat"
    path.write_bytes(dlib_bytes(model))
    return path, model


def test_reader_round_trips_every_weight(synthetic_dat: tuple[Path, DlibResNet]) -> None:
    path, model = synthetic_dat
    network = read_network(path.read_bytes(), str(path))
    assert network.loss == "loss_metric_2" and network.input_size == (150, 150)
    assert network.input_mean_rgb == pytest.approx(DLIB_MEAN_RGB)
    assert [layer.kind for layer in network.layers][:4] == ["con", "affine", "relu", "max_pool"]
    rebuilt = DlibResNet().eval()
    rebuilt.load_state_dict(state_dict_from_dlib(network, str(path)))
    with torch.no_grad():
        x = _crops()
        assert torch.allclose(rebuilt(x), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cut", [1, 100, 50_000, -7])
def test_truncated_dat_is_one_line(synthetic_dat: tuple[Path, DlibResNet], tmp_path: Path, cut: int) -> None:
    data = synthetic_dat[0].read_bytes()
    bad = tmp_path / "cut.dat"
    bad.write_bytes(data[:cut])
    with pytest.raises(CorefaceError, match=r"cut\.dat: not a readable dlib network \(file ends early: truncated"):
        read_network(bad.read_bytes(), str(bad))


def test_other_dlib_networks_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CorefaceError, match=r"loss layer 'loss_mmod_'; only metric-learning networks"):
        read_network(dlib_bytes(random_dlib_resnet(), loss="loss_mmod_"), "detector.dat")
    with pytest.raises(CorefaceError, match="not a readable dlib network"):
        read_network(b"\x05garbage" * 10, "junk.dat")


def test_chip_grid_maps_the_arcface_crop_onto_dlibs_chip() -> None:
    grid = chip_grid()[0].numpy()  # (150, 150, 2) in [-1, 1] crop coordinates
    assert grid.shape == (150, 150, 2)
    centre = grid[75, 75]
    assert abs(centre[0]) < 0.05  # the face's vertical axis stays centred
    assert -1.0 < grid[0, :, 0].min() < -0.85 and 0.85 < grid[0, :, 0].max() < 1.0  # dlib's chip width lies inside the crop
    assert grid[-1, 75, 1] > 1.0  # dlib's chip reaches below the ArcFace crop (chin): zero padding there


# ---------------------------------------------------------------- real weights against dlib
def test_real_dlib_weights_match_dlib_on_real_faces() -> None:
    dat = _real_dlib_weights()
    import dlib

    from coreface_edge.face.detector import YuNetDetector

    model = DlibResNet().eval()
    model.load_state_dict(state_dict_from_dlib(read_network(dat.read_bytes(), str(dat)), str(dat)))
    reference = dlib.face_recognition_model_v1(str(dat))
    detector = YuNetDetector()
    worst = 0.0
    for photo in PARITY_PHOTOS[:4]:
        bgr = cv2.imread(str(photo))
        faces = detector.detect(bgr)
        x, y, w, h = faces.boxes[int(faces.order_by_size_and_centrality(bgr.shape)[0])]
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        # a 150x150 face chip (the box, resized): parity of the networks needs no alignment
        chip = np.ascontiguousarray(cv2.resize(rgb[int(y):int(y + h), int(x):int(x + w)], (150, 150)))
        expected = np.array(reference.compute_face_descriptor(chip))
        tensor = (torch.from_numpy(chip.astype(np.float32)).permute(2, 0, 1)[None] - torch.tensor(DLIB_MEAN_RGB).view(1, 3, 1, 1)) / 256
        with torch.no_grad():
            got = model.fc(model.blocks(model.stem(tensor)).mean((2, 3)))[0].numpy()
        worst = max(worst, float(np.abs(got - expected).max()))
    assert worst < 1e-5, f"max abs diff to dlib {worst}"


def test_import_cli_on_real_weights(tmp_path: Path) -> None:
    dat = _real_dlib_weights()
    out = tmp_path / "dlib.pt"
    proc = run_cli("models", "import", dat, "-o", out)
    assert "dlib_resnet, 5.61M parameters, 128-d embedding" in proc.stdout
    model, meta = load_backbone_artifact(out)
    assert meta["imported_from"]["sha256"] == "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
    assert model(_crops(2)).shape == (2, 128)


# ---------------------------------------------------------------- CLI, errors
def test_import_cli_synthetic_dat_and_bad_files(synthetic_dat: tuple[Path, DlibResNet], tmp_path: Path) -> None:
    path, model = synthetic_dat
    out = tmp_path / "imported.pt"
    run_cli("models", "import", path, "-o", out)
    imported, meta = load_backbone_artifact(out)
    assert meta["imported_from"]["format"] == "dlib .dat"
    with torch.no_grad():
        assert torch.allclose(imported(_crops(2)), model(_crops(2)), atol=1e-4, rtol=1e-4)
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(path.read_bytes()[:-1000])
    for bad, message in [(truncated, "truncated.dat: not a readable dlib network (file ends early: truncated"),
                         (tmp_path / "missing.dat", "missing.dat: file not found"),
                         (tmp_path / "weights.h5", "unknown weight format '.h5'")]:
        if bad.suffix == ".h5":
            bad.write_bytes(b"\x89HDF")
        proc = run_cli("models", "import", bad, "-o", tmp_path / "x.pt", check=False)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.pt").exists()


# ---------------------------------------------------------------- arcface_torch .pth
@pytest.mark.parametrize("name, kwargs, size", [("iresnet18", {}, 256), ("mobilefacenet", {"scale": 2}, 512)])
def test_arcface_torch_pth_is_recognised(tmp_path: Path, name: str, kwargs: dict, size: int) -> None:
    torch.manual_seed(0)
    source = build_backbone(name, size, **kwargs).eval()
    pth = tmp_path / f"{name}.pth"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, pth)  # DDP-prefixed, as arcface_torch saves
    result = import_weights(pth, tmp_path / "out.pt")
    assert (result.architecture, result.embedding_size) == (name, size)
    imported, _ = load_backbone_artifact(result.artifact)
    with torch.no_grad():
        assert torch.allclose(imported(_crops(2)), source(_crops(2)), atol=1e-5)


def test_bad_pth_is_one_line(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CorefaceError, match=r"corrupt\.pth: not a readable PyTorch checkpoint"):
        import_weights(corrupt, tmp_path / "o.pt")
    foreign = tmp_path / "foreign.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, foreign)
    with pytest.raises(CorefaceError, match=r"foreign\.pth: its 1 weights fit no known backbone"):
        import_weights(foreign, tmp_path / "o.pt")
    ours = tmp_path / "ours.pt"
    save_backbone_artifact(build_backbone("mobilefacenet", 64, blocks=[1, 1, 1, 1]), ours, {})
    with pytest.raises(CorefaceError, match=r"ours\.pt: already a coreface-edge file \(coreface-edge-backbone/1\); use it as it is"):
        import_weights(ours, tmp_path / "o.pt")
    compiled = tmp_path / "compiled.pth"
    source = build_backbone("iresnet18", 64).eval()
    torch.save({f"module._orig_mod.{k}": v for k, v in source.state_dict().items()}, compiled)  # DDP around torch.compile
    assert import_weights(compiled, tmp_path / "c.pt").architecture == "iresnet18"


# ---------------------------------------------------------------- insightface-layout ONNX
def _insightface_like_onnx(path: Path, in_shape: list, out_dim: int = 8) -> None:
    """A real (tiny) ONNX backbone in insightface's layout: float (N, 3, 112, 112) -> (N, D)."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [3 * 112 * 112, out_dim], np.random.default_rng(0).normal(size=3 * 112 * 112 * out_dim).astype(np.float32).tolist())
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input.1"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["683"])],
        "r50",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["N", out_dim])],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_onnx_import_stamps_the_contract_and_runs_in_the_gate_backend(tmp_path: Path) -> None:
    from coreface_edge.runtime import open_backend

    source = tmp_path / "w600k_like.onnx"
    _insightface_like_onnx(source, ["N", 3, 112, 112])
    out = tmp_path / "imported.onnx"
    proc = run_cli("models", "import", source, "-o", out)
    assert "onnx:w600k_like, 8-d embedding" in proc.stdout
    backend = open_backend(str(out))
    assert backend.contract.fingerprint and backend.contract.embedding_size == 8
    crops = np.stack([cv2.resize(cv2.imread(str(p)), (112, 112)) for p in PARITY_PHOTOS[:2]])
    assert backend.embed(crops).shape == (2, 8)
    again = run_cli("models", "import", out, "-o", tmp_path / "twice.onnx", check=False)
    assert again.returncode == 2 and "already a coreface-edge model" in again.stderr
    wrong = tmp_path / "wrong.onnx"
    _insightface_like_onnx(wrong, ["N", 3, 128, 128])
    bad = run_cli("models", "import", wrong, "-o", tmp_path / "w.onnx", check=False)
    assert bad.returncode == 2 and "an insightface-layout backbone takes float (N, 3, 112, 112)" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
