"""The sphere lift that spreads dlib's cone of cosine scores: its math, and ``models import --spread``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from coreface_edge.models import load_backbone_artifact
from coreface_edge.models.spread import lift_parameters, sphere_lift

from conftest import run_cli
from dlib_writer import dlib_bytes, random_dlib_resnet


def _cone(n: int, dim: int = 16, width: float = 0.1, seed: int = 0) -> torch.Tensor:
    """Unnormalised embeddings in a narrow cone around one axis, of varying length (dlib's shape)."""
    generator = torch.Generator().manual_seed(seed)
    axis = torch.nn.functional.normalize(torch.randn(dim, generator=generator), dim=0)
    spread = width * torch.randn(n, dim, generator=generator)
    return (axis + spread) * (1.0 + 0.2 * torch.rand(n, 1, generator=generator))


def test_lift_puts_every_measured_face_on_one_sphere_and_keeps_the_ranking() -> None:
    x = _cone(400)
    normalised = torch.nn.functional.normalize(x, dim=1)
    mean, radius = lift_parameters(normalised)
    lifted = sphere_lift(x, mean, radius)
    assert lifted.shape == (400, 17)
    torch.testing.assert_close(lifted.norm(dim=1), radius.expand(400), atol=1e-5, rtol=0)
    # squared distance on the sphere = centred distance + change of the last coordinate
    a, b = lifted[:200], lifted[200:]
    centred = (normalised[:200] - normalised[200:]).pow(2).sum(1)
    torch.testing.assert_close((a - b).pow(2).sum(1), centred + (a[:, -1] - b[:, -1]).pow(2), atol=1e-5, rtol=0)
    # the scores spread: cosines of the raw cone are compressed near 1, the lifted ones are not
    raw = torch.nn.functional.cosine_similarity(x[:200], x[200:])
    spread = torch.nn.functional.cosine_similarity(a, b)
    assert raw.mean() > 0.85 and spread.mean() < raw.mean() - 0.2 and spread.std() > 2 * raw.std()
    # and the order of pairs barely moves (rank correlation of the two scores)
    ranks = lambda s: torch.argsort(torch.argsort(s)).double()  # noqa: E731
    assert torch.corrcoef(torch.stack([ranks(raw), ranks(spread)]))[0, 1] > 0.97


def test_a_face_beyond_the_radius_lands_on_the_equator() -> None:
    mean = torch.tensor([1.0, 0.0, 0.0])
    lifted = sphere_lift(torch.tensor([[0.0, 1.0, 0.0]]), mean, torch.tensor([0.5]))
    torch.testing.assert_close(lifted, torch.tensor([[-1.0, 1.0, 0.0, 0.0]]))


def test_import_with_spread_writes_a_129_d_model_that_exports(tmp_path: Path, face_photos: list[Path]) -> None:
    dat = tmp_path / "synthetic.dat"
    dat.write_bytes(dlib_bytes(random_dlib_resnet(seed=5)))
    faces = tmp_path / "faces"
    for k, photo in enumerate(face_photos[:6]):  # aligned-crop stand-ins: real photos resized to 112
        (faces / str(k % 3 + 1)).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(faces / str(k % 3 + 1) / f"{k}.jpg"), cv2.resize(cv2.imread(str(photo)), (112, 112)))
    out = tmp_path / "spread.pt"
    proc = run_cli("models", "import", dat, "--spread", faces, "--spread-identities", "1-2", "-o", out)
    assert "129-d embedding" in proc.stdout
    model, meta = load_backbone_artifact(out)
    assert meta["spread_on"]["identities"] == "1-2" and meta["spread_on"]["crops"] == 4 and meta["kwargs"] == {"spread": True}
    from coreface_edge.contract import preprocess_crops

    measured = np.stack([cv2.imread(str(p)) for person in ("1", "2") for p in sorted((faces / person).glob("*.jpg"))])
    with torch.no_grad():
        lifted = model(torch.from_numpy(preprocess_crops(measured)))
    assert lifted.shape == (4, 129)  # the faces it was measured on lie on the sphere (none beyond the radius)
    torch.testing.assert_close(lifted.norm(dim=1), model.lift.radius.expand(4), atol=1e-4, rtol=1e-4)
    exported = tmp_path / "spread.onnx"
    run_cli("export", out, "-o", exported)  # parity against PyTorch is checked inside export
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].shape[1] == 129


def test_spread_is_refused_where_it_does_not_apply(tmp_path: Path, face_photos: list[Path]) -> None:
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"not used")
    proc = run_cli("models", "import", onnx_file, "--spread", tmp_path, check=False)
    assert proc.returncode == 2 and "--spread needs dlib weights (.dat)" in proc.stderr
    proc = run_cli("models", "import", onnx_file, "--spread-identities", "1-400", check=False)
    assert proc.returncode == 2 and "--spread-identities needs --spread" in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    dat = tmp_path / "synthetic.dat"
    dat.write_bytes(dlib_bytes(random_dlib_resnet(seed=5)))
    proc = run_cli("models", "import", dat, "--spread", empty, "-o", tmp_path / "x.pt", check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("name", ["iresnet18"])
def test_spread_refuses_an_arcface_backbone(name: str) -> None:
    from coreface_edge.errors import CorefaceError
    from coreface_edge.models import build_backbone
    from coreface_edge.models.importers import spread_embeddings

    with pytest.raises(CorefaceError, match="--spread is for dlib's Euclidean embedding"):
        spread_embeddings(build_backbone(name, 64), Path("unused"))


def test_shipped_model_is_spread() -> None:
    """The packaged model carries the lift: 129-d, impostor-level cosines far from 1."""
    from coreface_edge.pretrained import DEFAULT_MODEL, shipped_model_path

    model, meta = load_backbone_artifact(shipped_model_path(DEFAULT_MODEL))
    assert meta["embedding_size"] == 129 and meta["spread_on"]["identities"] == "1-400"
    assert 0.5 < meta["operating_threshold"]["threshold"] < 0.9
    assert np.isclose(float(model.lift.radius), meta["spread_on"]["radius"], atol=1e-4)
