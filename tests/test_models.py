"""Backbones, the registry, insightface-layout loading and the backbone artefact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from coreface_edge.errors import CorefaceError
from coreface_edge.models import (
    build_backbone,
    checkpoint_fingerprint,
    list_backbones,
    load_backbone_artifact,
    load_insightface_state_dict,
    save_backbone_artifact,
)

ARCFACE_TORCH_BLOCKS = {"iresnet18": [2, 2, 2, 2], "iresnet34": [3, 4, 6, 3], "iresnet50": [3, 4, 14, 3], "iresnet100": [3, 13, 30, 3]}


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    shapes = {f"{prefix}.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")}
    shapes[f"{prefix}.num_batches_tracked"] = ()
    return shapes


def arcface_torch_iresnet_layout(blocks: list[int], embedding: int = 512) -> dict[str, tuple[int, ...]]:
    """Key -> shape of arcface_torch's iresnet ``state_dict``, written out from its source layout."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 3, 3), **_bn("bn1", 64), "prelu.weight": (64,)}
    inplanes = 64
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
        for b in range(count):
            p = f"layer{stage}.{b}"
            shapes.update(_bn(f"{p}.bn1", inplanes))
            shapes[f"{p}.conv1.weight"] = (planes, inplanes, 3, 3)
            shapes.update(_bn(f"{p}.bn2", planes))
            shapes[f"{p}.prelu.weight"] = (planes,)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            shapes.update(_bn(f"{p}.bn3", planes))
            if b == 0:
                shapes[f"{p}.downsample.0.weight"] = (planes, inplanes, 1, 1)
                shapes.update(_bn(f"{p}.downsample.1", planes))
            inplanes = planes
    shapes.update(_bn("bn2", 512))
    shapes["fc.weight"] = (embedding, 512 * 7 * 7)
    shapes["fc.bias"] = (embedding,)
    shapes.update(_bn("features", embedding))
    return shapes


@pytest.fixture(scope="module")
def mbf() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_backbone("mobilefacenet").eval()


@pytest.fixture(scope="module")
def faces(face_photos) -> torch.Tensor:
    """Real CFP photos, centre-cropped to 112x112 and normalised per the input contract."""
    import cv2

    from coreface_edge.contract import preprocess_crops

    crops = []
    for path in face_photos[:4]:
        img = cv2.imread(str(path))
        h, w = img.shape[:2]
        side = min(h, w)
        crops.append(cv2.resize(img[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2], (112, 112)))
    return torch.from_numpy(preprocess_crops(np.stack(crops)))


def test_registry_lists_and_rejects_unknown() -> None:
    assert list_backbones() == ["dlib_resnet", "iresnet100", "iresnet18", "iresnet34", "iresnet50", "mobilefacenet"]
    with pytest.raises(CorefaceError, match="unknown backbone 'resnet9'; known: dlib_resnet, iresnet100, .*mobilefacenet"):
        build_backbone("resnet9")
    with pytest.raises(CorefaceError, match="mobilefacenet: bad arguments"):
        build_backbone("mobilefacenet", depth=3)
    with pytest.raises(CorefaceError, match="embedding_size must be a positive integer"):
        build_backbone("mobilefacenet", embedding_size=0)


def test_mobilefacenet_size_and_interface(mbf, faces) -> None:
    # 1,200,512 parameters at the default (paper) width with a 512-d embedding.
    assert sum(p.numel() for p in mbf.parameters()) == 1_200_512
    assert (mbf.architecture, mbf.embedding_size, mbf.flat_features) == ("mobilefacenet", 512, 512 * 7 * 7)
    with torch.no_grad():
        flat = mbf.forward_flat(faces)
        emb = mbf(faces)
    assert flat.shape == (4, 25088) and emb.shape == (4, 512)
    torch.testing.assert_close(emb, mbf.project(flat))
    with torch.no_grad():
        torch.testing.assert_close(mbf(faces), emb)  # deterministic: no dropout inside
    wide = build_backbone("mobilefacenet", embedding_size=128, scale=2)
    assert wide(faces[:2]).shape == (2, 128) and wide.build_kwargs == {"scale": 2}


def test_mobilefacenet_exports_to_onnx(mbf, faces, tmp_path) -> None:
    import onnxruntime as ort

    path = tmp_path / "mbf.onnx"
    torch.onnx.export(mbf, faces[:1], str(path), dynamo=False, input_names=["input"], output_names=["embedding"],
                      dynamic_axes={"input": {0: "n"}, "embedding": {0: "n"}}, opset_version=17)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": faces.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(out, mbf(faces).numpy(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", ["iresnet18", "iresnet50"])
def test_iresnet_matches_arcface_torch_layout(name: str) -> None:
    model = build_backbone(name)
    expected = arcface_torch_iresnet_layout(ARCFACE_TORCH_BLOCKS[name])
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert list(got) == list(expected)  # same names, same order
    assert got == expected
    assert got["fc.weight"] == (512, 25088) and model.flat_features == 25088
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == ARCFACE_TORCH_BLOCKS[name]
    assert all(m.eps == 1e-05 for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    assert not model.features.weight.requires_grad and bool((model.features.weight == 1.0).all())


def test_iresnet_block_counts_34_100() -> None:
    # Layer counts only (building iresnet100 costs ~65M parameters, so count via the layout).
    assert sum(1 for k in arcface_torch_iresnet_layout(ARCFACE_TORCH_BLOCKS["iresnet100"]) if k.endswith(".conv2.weight")) == 49
    model = build_backbone("iresnet34")
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]


def test_mobilefacenet_scale2_matches_arcface_torch_mbf_keys() -> None:
    """A few keys/shapes of arcface_torch ``get_mbf(num_features=512)`` (scale 2, blocks 1,4,6,2)."""
    shapes = {k: tuple(v.shape) for k, v in build_backbone("mobilefacenet", scale=2).state_dict().items()}
    assert shapes["layers.0.layers.0.weight"] == (128, 3, 3, 3)
    assert shapes["layers.1.layers.0.weight"] == (128, 2, 3, 3)  # ConvBlock with groups=64
    assert shapes["layers.2.layers.1.layers.0.weight"] == (128, 1, 3, 3)  # DepthWise stride 2, 128 groups
    assert shapes["layers.5.layers.5.layers.2.layers.0.weight"] == (256, 256, 1, 1)  # last of 6 residuals
    assert shapes["layers.6.layers.0.layers.0.weight"] == (512, 256, 1, 1)
    assert shapes["conv_sep.layers.0.weight"] == (512, 256, 1, 1)
    assert shapes["features.layers.0.layers.0.weight"] == (512, 1, 7, 7)
    assert shapes["features.layers.2.weight"] == (512, 512)
    assert shapes["features.layers.3.running_var"] == (512,)
    assert len([k for k in shapes if k.startswith("layers.3.layers.") and k.endswith("layers.0.layers.0.weight")]) == 4


def test_insightface_state_dict_loads_and_mismatches_are_named() -> None:
    torch.manual_seed(1)
    layout = arcface_torch_iresnet_layout(ARCFACE_TORCH_BLOCKS["iresnet18"])
    foreign = {k: (torch.randn(s) if s else torch.tensor(7)) for k, s in layout.items()}
    model = build_backbone("iresnet18")
    # DDP-prefixed keys inside an arcface_torch training checkpoint
    load_insightface_state_dict(model, {"state_dict_backbone": {f"module.{k}": v for k, v in foreign.items()}})
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, foreign[key].to(value.dtype))
    no_counters = {k: v for k, v in foreign.items() if not k.endswith("num_batches_tracked")}
    load_insightface_state_dict(model, no_counters)  # exported checkpoints may drop BN step counters

    with pytest.raises(CorefaceError, match=r"ckpt.pth: missing key 'layer1.2.bn1.weight' for a iresnet34"):
        load_insightface_state_dict(build_backbone("iresnet34"), foreign, source="ckpt.pth")
    with pytest.raises(CorefaceError, match=r"key 'fc.weight' has shape \(512, 25088\), iresnet18 expects \(128, 25088\)"):
        load_insightface_state_dict(build_backbone("iresnet18", embedding_size=128), foreign)
    with pytest.raises(CorefaceError, match=r"unexpected key 'conv1.weight' for a mobilefacenet"):
        load_insightface_state_dict(build_backbone("mobilefacenet"), foreign)


def test_artifact_round_trip(mbf, faces, tmp_path) -> None:
    path = tmp_path / "out" / "backbone.pt"
    meta = {"training_config": {"lr": 0.1, "epochs": 2}, "data_fingerprint": "cfp112:abc123"}
    save_backbone_artifact(mbf, path, meta)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["sha256"] == checkpoint_fingerprint(path)
    assert sidecar["architecture"] == "mobilefacenet" and sidecar["embedding_size"] == 512
    assert sidecar["input"] == {"layout": "NCHW", "dtype": "float32", "color": "RGB", "mean": 127.5, "std": 127.5, "size": 112}
    assert sidecar["training_config"] == meta["training_config"] and sidecar["data_fingerprint"] == "cfp112:abc123"
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "coreface-edge-backbone/1" and set(payload) >= {"architecture", "embedding_size", "kwargs", "state_dict"}
    assert sorted(p.name for p in path.parent.iterdir()) == ["backbone.json", "backbone.pt"]  # no temp files left

    model, loaded = load_backbone_artifact(path)
    assert not model.training and loaded == sidecar
    with torch.no_grad():
        torch.testing.assert_close(model(faces), mbf(faces))

    wide = build_backbone("mobilefacenet", embedding_size=128, scale=2)
    save_backbone_artifact(wide, tmp_path / "wide.pt", {})
    path.with_suffix(".json").unlink()  # the .pt alone is self-describing
    model2, meta2 = load_backbone_artifact(tmp_path / "wide.pt")
    assert model2.embedding_size == 128 and meta2["kwargs"] == {"scale": 2}
    _, meta3 = load_backbone_artifact(path)
    assert meta3["training_config"] == meta["training_config"] and "sha256" not in meta3


def test_artifact_bad_inputs(mbf, tmp_path) -> None:
    with pytest.raises(CorefaceError, match=r"missing.pt: no such backbone artefact"):
        load_backbone_artifact(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x04not a torch file")
    with pytest.raises(CorefaceError, match=r"corrupt.pt: not a readable backbone artefact") as err:
        load_backbone_artifact(corrupt)
    assert "\n" not in str(err.value)
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else/2"}, other)
    with pytest.raises(CorefaceError, match=r"other.pt: format 'something-else/2', expected 'coreface-edge-backbone/1'"):
        load_backbone_artifact(other)
    swapped = tmp_path / "swapped.pt"
    torch.save({"format": "coreface-edge-backbone/1", "architecture": "iresnet18", "embedding_size": 512,
                "kwargs": {}, "state_dict": mbf.state_dict()}, swapped)
    with pytest.raises(CorefaceError, match=r"swapped.pt: unexpected key 'layers.0.layers.0.weight' for a iresnet18"):
        load_backbone_artifact(swapped)
    good = tmp_path / "good.pt"
    save_backbone_artifact(mbf, good, {})
    torch.save({"format": "coreface-edge-backbone/1", "architecture": "mobilefacenet", "embedding_size": 512,
                "kwargs": {}, "state_dict": mbf.state_dict()}, good)  # sidecar now describes older bytes
    with pytest.raises(CorefaceError, match=r"good.json: sha256 does not match good.pt"):
        load_backbone_artifact(good)
    with pytest.raises(CorefaceError, match=r"bad.pt: metadata is not JSON-serialisable"):
        save_backbone_artifact(mbf, tmp_path / "bad.pt", {"config": object()})
    assert not (tmp_path / "bad.pt").exists() and not (tmp_path / "bad.json").exists()


def test_mac_counter_on_known_layers() -> None:
    from coreface_edge.models.complexity import count_macs

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 56 * 56, 10))
    assert count_macs(net) == 112 * 112 * 8 * 27 + 56 * 56 * 8 * 9 + 8 * 56 * 56 * 10
    assert net.training  # mode restored
    assert count_macs(build_backbone("mobilefacenet")) == 221_161_984  # ~0.22 GMACs, as in the MobileFaceNet paper


def test_models_cli(tmp_path) -> None:
    from conftest import run_cli

    plot = tmp_path / "lat.png"
    proc = run_cli("models", "bench", "mobilefacenet", "--runs", "3", "--warmup", "1", "--threads", "1", "--plot", plot)
    row = next(line for line in proc.stdout.splitlines() if line.startswith("│ mobilefacenet"))
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[:2] == ["mobilefacenet", "1.201"] and cells[-1] == "1.000"
    min_ms, median_ms, p90_ms = map(float, cells[2:5])
    assert 0 < min_ms <= median_ms <= p90_ms
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = run_cli("models", "bench", "resnet9", check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["error: unknown backbone 'resnet9'; known: dlib_resnet, iresnet100, iresnet18, iresnet34, iresnet50, mobilefacenet"]
    bad = run_cli("models", "list", "--baseline", "vgg", check=False)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: --baseline: unknown backbone 'vgg'")
