"""Trainer tests on real aligned CFP faces (identities 001-006, aligned by ``prepare_cfp``).

The training runs use a reduced MobileFaceNet (``blocks: [1, 1, 1, 1]``) at batch 16 so the
whole file stays around a minute on 2 CPU cores; the plumbing is the same as the full model's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from coreface_edge.errors import CorefaceError
from coreface_edge.training.checkpoint import CHECKPOINT_NAME, load_checkpoint
from coreface_edge.training.config import config_differences, load_config
from coreface_edge.training.metrics_log import read_metrics
from coreface_edge.training.sampler import ResumableSampler
from coreface_edge.training.trainer import train

from conftest import run_cli
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

TINY = [
    "model.options={blocks: [1, 1, 1, 1]}",
    "optim.batch_size=16",
    "optim.epochs=2",
    "optim.milestones=[1]",
    "optim.lr=0.2",
    "optim.base_batch=16",
    "data.workers=0",
    "log_every=1",
    "eval.every_epochs=0",
    "threads=1",
]


def tiny_config(faces: Path, output: Path, *extra: str):
    return load_config(None, [f"data.root={faces}", f"output={output}", *TINY, *extra])


def losses(output: Path) -> np.ndarray:
    return np.array([r["total"] for r in read_metrics(output / "metrics.jsonl")])


@pytest.fixture(scope="session")
def straight_run(tiny_faces: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 epochs without interruption: ArcFace (p 0.4) in epoch 0, CoReFace (p 0.6) after."""
    output = tmp_path_factory.mktemp("straight")
    assert train(tiny_config(tiny_faces, output)) == output / "backbone.pt"
    return output


# ---------------------------------------------------------------- config
def test_config_rejects_unknown_keys_and_wrong_types(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  root: x\noptim:\n  lr: fast\n")
    with pytest.raises(CorefaceError, match=r"optim\.lr must be float, got 'fast'"):
        load_config(cfg)
    cfg.write_text("data:\n  root: x\n  shuffle: true\n")
    with pytest.raises(CorefaceError, match=r"unknown key data\.shuffle"):
        load_config(cfg)
    with pytest.raises(CorefaceError, match=r"method\.protocol must be one of"):
        load_config(None, ["data.root=x", "method.protocol=three-way"])
    with pytest.raises(CorefaceError, match="expected key.sub=value"):
        load_config(None, ["data.root=x", "optim.lr"])
    with pytest.raises(CorefaceError, match="data.root is not set"):
        load_config(None, [])
    with pytest.raises(CorefaceError, match=r"override 'optim.milestones=\[1,2': cannot parse the value .* line 1, column 5"):
        load_config(None, ["data.root=x", "optim.milestones=[1,2"])
    for override, message in [
        ("log_every=0", "log_every must be >= 1"),
        ("optim.base_batch=0", "optim.base_batch must be >= 1"),
        ("eval.every_epochs=-1", "eval.every_epochs must be >= 0"),
        ("optim.epochs=2", r"two-view phase would start at epoch 10 .* optim.epochs=2"),
    ]:
        with pytest.raises(CorefaceError, match=message):
            load_config(None, ["data.root=x", override])
    assert load_config(None, ["data.root=x", "optim.epochs=2", "method.name=arcface"]).first_two_view_epoch() is None


def test_config_toml_and_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('seed = 3\n[data]\nroot = "faces"\n[optim]\nmilestones = [4, 8]\nlr = 1\n')
    loaded = load_config(cfg, ["optim.epochs=9", "method.protocol=2N"])
    assert (loaded.seed, loaded.optim.milestones, loaded.optim.lr, loaded.optim.epochs) == (3, [4, 8], 1.0, 9)
    assert loaded.method.protocol == "2N" and loaded.first_two_view_epoch() == 4
    assert config_differences(loaded.to_dict(), load_config(cfg).to_dict()) == ["method.protocol", "optim.epochs"]
    cfg.write_text("seed = [\n")
    with pytest.raises(CorefaceError, match="cannot parse"):
        load_config(cfg)
    yml = tmp_path / "c.yaml"
    yml.write_text("data:\n  root: x\nseed: [\n")
    with pytest.raises(CorefaceError, match=r"c\.yaml: cannot parse .* at line 4, column 1"):
        load_config(yml)


def test_cosface_gets_its_own_margin_unless_one_is_set() -> None:
    from coreface_edge.training.module import FaceTrainModule
    from coreface_edge.models import build_backbone

    def head_margin(*overrides: str) -> float:
        cfg = load_config(None, ["data.root=x", *overrides])
        return FaceTrainModule(build_backbone("mobilefacenet", 8, blocks=[1, 1, 1, 1]), cfg, num_classes=3).loss.head.margin

    assert head_margin() == 0.5 and head_margin("head.name=cosface") == 0.35 and head_margin("head.name=cosface", "head.margin=0.2") == 0.2
    with pytest.raises(CorefaceError, match=r"bad arguments .*blocks must be 4 positive integers"):
        build_backbone("mobilefacenet", 8, blocks=[1, 1])


def test_config_errors_through_the_cli(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  root: x\nhead:\n  scale: [64]\n")
    proc = run_cli("train", cfg, check=False)
    assert proc.returncode == 2
    assert "head.scale must be float" in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------- sampler
def test_sampler_ranks_split_the_single_process_global_batches() -> None:
    single = list(ResumableSampler(50, 8, seed=4))
    ranks = [list(ResumableSampler(50, 4, rank=r, world_size=2, seed=4)) for r in range(2)]
    assert len(single) == 48 and all(len(r) == 24 for r in ranks)
    for step in range(6):
        union = ranks[0][step * 4 : step * 4 + 4] + ranks[1][step * 4 : step * 4 + 4]
        assert sorted(union) == sorted(single[step * 8 : step * 8 + 8])
    resumed = ResumableSampler(50, 8, seed=4)
    resumed.set_position(0, 2)
    assert list(resumed) == single[16:]
    capped = ResumableSampler(50, 8, seed=4, max_steps=2)
    assert capped.steps_per_epoch == 2 and list(capped) == single[:16]
    assert any(flip for _, flip in single) and not any(flip for _, flip in ResumableSampler(50, 8, seed=4, flip=False))


def test_lr_scales_with_the_global_batch_and_clipping_spares_the_head(tiny_faces: Path, tmp_path: Path) -> None:
    """``optim.lr`` is per ``base_batch`` images (0.1 per 512 in the reference); the gradient-norm
    clip applies to the backbone only, never to the margin head's centres."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from coreface_edge.training import distributed as ddp
    from coreface_edge.training.trainer import Trainer, learning_rate

    cfg = load_config(None, ["data.root=x", "optim.lr=0.1", "optim.base_batch=512", "optim.batch_size=128"])
    assert learning_rate(cfg, 1) == pytest.approx(0.025) and learning_rate(cfg, 8) == pytest.approx(0.2)
    cfg = tiny_config(tiny_faces, tmp_path, "optim.clip_grad=0.5", "optim.lr=1e-9", "method.name=arcface")
    trainer = Trainer(cfg, ddp.setup("cpu"), Console(file=io.StringIO()))
    trainer._build(SimpleNamespace(num_classes=6))
    images = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (16, 3, 112, 112)).astype(np.float32))
    trainer._step(images, torch.arange(16) % 6, two_view=False)
    backbone = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.backbone.parameters() if p.grad is not None]))
    head = trainer.module.loss.head.weight.grad.norm()
    assert backbone == pytest.approx(0.5, rel=1e-3) and head > 5.0  # the head's gradient is far larger and left alone


# ------------------------------------------------------------- bad data
def test_bad_datasets_fail_before_training(tiny_faces: Path, tmp_path: Path) -> None:
    one = tmp_path / "one"
    (one / "001").mkdir(parents=True)
    (one / "001" / "a.jpg").write_bytes((tiny_faces / "001" / "frontal_01.jpg").read_bytes())
    with pytest.raises(CorefaceError, match="1 identity found; training needs at least 2"):
        train(tiny_config(one, tmp_path / "o1"))
    (one / "002").mkdir()
    with pytest.raises(CorefaceError, match="002: identity folder holds no images"):
        train(tiny_config(one, tmp_path / "o2"))
    with pytest.raises(CorefaceError, match="fewer than one global batch"):
        train(tiny_config(tiny_faces, tmp_path / "o3", "data.identities=1-2", "optim.batch_size=64"))
    assert not (tmp_path / "o3" / CHECKPOINT_NAME).exists()


# -------------------------------------------------------------- training
def test_training_lowers_the_loss_and_writes_the_artefact(straight_run: Path) -> None:
    from coreface_edge.models import load_backbone_artifact

    records = read_metrics(straight_run / "metrics.jsonl")
    assert len(records) == 10  # 84 images // 16 = 5 steps x 2 epochs
    assert all(np.isfinite(r["total"]) and r["img_s"] > 0 for r in records)
    two_view = [r for r in records if "con" in r]
    assert [r["epoch"] for r in two_view] == [1] * 5  # CoReFace from the first LR decay
    assert two_view[-1]["margin"] != 0.0  # the adaptive margin moved
    ce = np.array([r["ce1"] for r in records])
    assert ce[-5:].mean() < ce[:5].mean() - 1.0, ce
    assert (straight_run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    model, meta = load_backbone_artifact(straight_run / "backbone.pt")
    assert meta["training_config"]["method"]["name"] == "coreface" and len(meta["data_fingerprint"]) == 64
    with torch.no_grad():
        emb = model(torch.zeros(2, 3, 112, 112))
    assert emb.shape == (2, 512)


class HostReads:
    """Records every read of a tensor's values by the host (and every ``torch.tensor`` built from
    Python data), with the Python stack that did it: on CUDA each of them waits for the device.

    ``aten._local_scalar_dense`` (what ``item()``, ``float()``, ``bool()``, ``math.isfinite(t)``
    and f-string formatting dispatch to) is seen by a ``TorchDispatchMode``; ``tolist()``,
    ``numpy()`` and ``cpu()`` of a CPU tensor never reach the dispatcher (``tensor_to_list`` reads
    the CPU data pointer directly), and ``torch.tensor(x, device=cuda)`` is a blocking copy on
    CUDA but none on CPU, so a ``TorchFunctionMode`` records those calls.
    """

    METHODS = {torch.Tensor.tolist: "tolist", torch.Tensor.numpy: "numpy", torch.Tensor.cpu: "cpu", torch.tensor: "tensor"}

    def __init__(self) -> None:
        self.reads: list[tuple[str, list[tuple[str, str]]]] = []  # (what, [(file name, function)])
        outer = self

        class Functions(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                if func in HostReads.METHODS:
                    outer._record(HostReads.METHODS[func])
                return func(*args, **(kwargs or {}))

        class Dispatch(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if func is torch.ops.aten._local_scalar_dense.default:
                    outer._record("scalar")
                return func(*args, **(kwargs or {}))

        self.modes = (Functions(), Dispatch())

    def _record(self, what: str) -> None:
        self.reads.append((what, [(Path(f.filename).name, f.name) for f in traceback.extract_stack()]))

    def __enter__(self) -> "HostReads":
        for mode in self.modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        for mode in reversed(self.modes):
            mode.__exit__(*exc)

    def under(self, function: str, file: str = "trainer.py") -> list[tuple[str, list[tuple[str, str]]]]:
        return [r for r in self.reads if (file, function) in r[1]]


def test_tensorboard_gets_the_same_scalars_as_the_jsonl(straight_run: Path) -> None:
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator", reason="tensorboard is not installed")
    events = event_accumulator.EventAccumulator(str(straight_run / "tensorboard"))
    events.Reload()
    total = events.Scalars("train/total")
    assert [e.step for e in total] == [r["step"] for r in read_metrics(straight_run / "metrics.jsonl")]
    np.testing.assert_allclose([e.value for e in total], losses(straight_run), rtol=1e-6)
    assert {"train/ce2", "train/con", "train/margin", "train/lr"} <= set(events.Tags()["scalars"])


def test_training_steps_never_read_the_device_between_log_steps(tiny_faces: Path, tmp_path: Path) -> None:
    """The real trainer, 2 epochs x 5 steps (ArcFace, then CoReFace), ``log_every=2``: the
    step itself (forward, CoReFace margin update, backward, clip, optimizer) reads nothing back;
    the loss terms are read once per log step / epoch end, in one ``tolist()`` each."""
    with HostReads() as host:
        train(tiny_config(tiny_faces, tmp_path, "log_every=2"))
    assert host.under("_step") == []  # forward, margin update, backward, optimizer step
    loop = [r for r in host.under("_epoch") if ("trainer.py", "_read_losses") not in r[1]]
    assert [r for r in loop if not any("dataloader" in f or "sampler" in f for f, _ in r[1])] == []  # only the host data pipeline
    assert [what for what, _ in host.under("_read_losses")] == ["tolist"] * 6  # steps 2, 4, 5 | 6, 8, 10
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [2, 4, 5, 6, 8, 10]
    assert all(np.isfinite(r["total"]) for r in records) and records[-1]["margin"] != 0.0 and "con" in records[-1]


def test_kill_9_mid_epoch_then_resume_gives_the_same_losses(straight_run: Path, tiny_faces: Path, tmp_path: Path) -> None:
    """A real ``coreface-edge train`` is killed with SIGKILL mid-epoch and resumed."""
    output = tmp_path / "killed"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 0\n")
    args = [sys.executable, "-m", "coreface_edge", "train", str(cfg), f"data.root={tiny_faces}", f"output={output}", *TINY, "checkpoint_every=2"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ckpt = output / CHECKPOINT_NAME
            if ckpt.is_file() and load_checkpoint(ckpt)["step"] >= 6:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    stopped = load_checkpoint(output / CHECKPOINT_NAME)
    assert proc.returncode == -signal.SIGKILL and 6 <= stopped["step"] < 10 and stopped["batch"] > 0  # mid-epoch
    run_cli("train", cfg, f"data.root={tiny_faces}", f"output={output}", *TINY, "checkpoint_every=2", "data.workers=1", "--resume")
    np.testing.assert_allclose(losses(output), losses(straight_run), rtol=1e-5, atol=1e-5)


def test_ctrl_c_says_which_checkpoint_is_kept_and_how_to_resume(tiny_faces: Path, tmp_path: Path) -> None:
    """Ctrl-C used to end ``train`` with exit status 130 and nothing on the screen."""
    output = tmp_path / "stopped"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 0\n")
    args = [sys.executable, "-m", "coreface_edge", "train", str(cfg), f"data.root={tiny_faces}", f"output={output}", *TINY, "checkpoint_every=2"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and not (output / CHECKPOINT_NAME).is_file():
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    kept = load_checkpoint(output / CHECKPOINT_NAME)
    assert proc.returncode == 130, err
    assert f"interrupted: the last checkpoint {output / CHECKPOINT_NAME} (epoch {kept['epoch']}, step {kept['step']}) is kept" in err
    assert f"go on from it with: coreface-edge train {cfg} data.root={tiny_faces}" in err and err.rstrip().endswith("--resume")


def test_checkpoints_with_a_float_margin_still_load(straight_run: Path, tiny_faces: Path) -> None:
    """Checkpoints written before the adaptive margin became a device buffer hold a plain float."""
    from coreface_edge.models import build_backbone
    from coreface_edge.training.module import FaceTrainModule

    state = dict(load_checkpoint(straight_run / CHECKPOINT_NAME)["module"])
    margin = state["_extra_state"]["value"]
    assert isinstance(margin, torch.Tensor) and margin.item() != 0.0
    state["_extra_state"] = {"momentum": 0.99, "value": margin.item()}
    cfg = tiny_config(tiny_faces, straight_run)
    module = FaceTrainModule(build_backbone(cfg.model.backbone, cfg.model.embedding_size, **cfg.model.options), cfg, num_classes=6)
    module.load_state_dict(state)
    assert module.loss.margin.value.item() == margin.item()


def test_resume_with_a_changed_config_is_refused(straight_run: Path, tiny_faces: Path) -> None:
    with pytest.raises(CorefaceError, match=r"config differs from the checkpoint's in optim\.lr"):
        train(tiny_config(tiny_faces, straight_run, "optim.lr=0.3"), resume=True)
    with pytest.raises(CorefaceError, match="a checkpoint exists; pass --resume"):
        train(tiny_config(tiny_faces, straight_run))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_faces: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_faces, tmp_path, "optim.lr=1e30", "optim.clip_grad=0.0", "checkpoint_every=1", "method.name=arcface")
    with pytest.raises(CorefaceError, match=r"loss became (nan|inf) at step (\d+).*last good checkpoint is kept") as err:
        train(cfg)
    bad_step = int(err.value.args[0].split(" at step ")[1].split()[0])
    kept = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert kept["step"] == bad_step - 1
    assert all(torch.isfinite(v).all() for v in kept["module"].values() if isinstance(v, torch.Tensor) and v.is_floating_point())
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["step"] == bad_step - 1


def test_a_checkpoint_is_never_written_from_non_finite_weights(straight_run: Path, tiny_faces: Path, tmp_path: Path) -> None:
    """A finite loss does not prove finite weights: an inf BatchNorm running variance (here from
    the starting weights; in practice an overflow at a huge LR) leaves the train-mode loss finite.
    The run must stop at its first checkpoint instead of saving a checkpoint that cannot resume."""
    state = torch.load(straight_run / "backbone.pt", weights_only=True)["state_dict"]
    state["layers.0.layers.1.running_var"] = torch.full_like(state["layers.0.layers.1.running_var"], float("inf"))
    torch.save(state, tmp_path / "poisoned.pth")
    cfg = tiny_config(tiny_faces, tmp_path / "out", f"model.init_from={tmp_path / 'poisoned.pth'}", "checkpoint_every=3", "log_every=1")
    with pytest.raises(CorefaceError, match=r"backbone\.layers\.0\.layers\.1\.running_var became NaN/inf by step 3 .*no checkpoint was written"):
        train(cfg)
    assert not (tmp_path / "out" / CHECKPOINT_NAME).exists()
    assert np.isfinite(losses(tmp_path / "out")).all() and len(losses(tmp_path / "out")) == 3


def test_resume_applies_a_changed_lr_and_refuses_another_process_count(tiny_faces: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / f".{CHECKPOINT_NAME}.x1y2.tmp").write_bytes(b"half a checkpoint")  # left by a killed run
    assert train(tiny_config(tiny_faces, out, "max_steps=3")) is None
    assert not list(out.glob("*.tmp"))
    assert train(tiny_config(tiny_faces, out, "max_steps=5", "optim.lr=0.05"), resume=True, allow_config_change=True) is None
    lrs = {r["step"]: r["lr"] for r in read_metrics(out / "metrics.jsonl")}
    assert lrs[3] == pytest.approx(0.2) and lrs[4] == lrs[5] == pytest.approx(0.05)
    with pytest.raises(CorefaceError, match="the checkpoint holds a mobilefacenet model, the config asks for iresnet18"):
        train(tiny_config(tiny_faces, out, "model.backbone=iresnet18", "model.options={}"), resume=True, allow_config_change=True)
    with pytest.raises(CorefaceError, match=r"does not fit this model \(backbone\.features\.layers\.2\.weight has shape \(512, 512\), the model needs \(128, 512\)\)"):
        train(tiny_config(tiny_faces, out, "model.embedding_size=128"), resume=True, allow_config_change=True)
    ckpt = load_checkpoint(out / CHECKPOINT_NAME)
    assert ckpt["world_size"] == 1
    torch.save({**ckpt, "world_size": 2}, out / CHECKPOINT_NAME)
    with pytest.raises(CorefaceError, match=r"written by a run of 2 process\(es\), this one has 1"):
        train(tiny_config(tiny_faces, out, "max_steps=5", "optim.lr=0.05"), resume=True)


def test_evaluation_settings_are_checked_before_training(tiny_faces: Path, tmp_path: Path, cfp_root: Path) -> None:
    with pytest.raises(CorefaceError, match=r"eval.cfp_root=.*nowhere: no Protocol/ folder"):
        train(tiny_config(tiny_faces, tmp_path / "a", "eval.every_epochs=1", f"eval.cfp_root={tmp_path / 'nowhere'}"))
    with pytest.raises(CorefaceError, match=r"eval.aligned_dir=.*no aligned CFP crops of identities 401-500"):
        train(tiny_config(tiny_faces, tmp_path / "b", "eval.every_epochs=1", f"eval.cfp_root={cfp_root}"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_periodic_evaluation_scores_verification_bins(tiny_faces: Path, tmp_path: Path) -> None:
    """``eval.bins``: an insightface-style .bin (real crops, alternating same / different pairs)
    is scored after each epoch and shows in metrics.jsonl; a missing .bin stops the run first."""
    from coreface_edge.data.verification_bin import write_verification_bin

    people = sorted(p for p in tiny_faces.iterdir() if p.is_dir())
    bins, issame = [], []
    for k in range(10):
        a, b = people[k % len(people)], people[(k + 1) % len(people)]
        same = k % 2 == 0
        right = a / "frontal_02.jpg" if same else b / "frontal_01.jpg"
        bins += [(a / "frontal_01.jpg").read_bytes(), right.read_bytes()]
        issame.append(same)
    write_verification_bin(tmp_path / "mini.bin", bins, issame)
    out = tmp_path / "out"
    train(tiny_config(tiny_faces, out, "eval.every_epochs=1", f"eval.bins=[{tmp_path / 'mini.bin'}]"))
    evals = read_metrics(out / "metrics.jsonl", kind="eval")
    assert [r["epoch"] for r in evals] == [0, 1]  # the epoch just finished, counted as the train lines count it
    assert all(0.0 <= r["mini_acc"] <= 1.0 and 0.0 <= r["mini_auc"] <= 1.0 and "mini_tar@1e-3" in r for r in evals)
    with pytest.raises(CorefaceError, match=r"eval.bins: .*absent.bin: file not found"):
        train(tiny_config(tiny_faces, tmp_path / "o2", "eval.every_epochs=1", f"eval.bins=[{tmp_path / 'absent.bin'}]"))
    assert not (tmp_path / "o2").exists()


def test_recordio_pack_trains_with_worker_processes(tiny_faces: Path, tmp_path: Path) -> None:
    """The same faces packed as insightface RecordIO; 2 loader workers each open their own handle."""
    from coreface_edge.data.imagefolder import ImageFolder
    from coreface_edge.data.recordio import write_insightface_pack

    folder = ImageFolder(tiny_faces)
    write_insightface_pack(tmp_path / "train.rec", ((p.read_bytes(), label) for p, label in folder.samples))
    cfg = tiny_config(tmp_path, tmp_path / "out", "data.format=recordio", "data.workers=2", "max_steps=3", "method.name=arcface")
    assert train(cfg) is None  # stopped by max_steps, checkpoint kept
    assert load_checkpoint(tmp_path / "out" / CHECKPOINT_NAME)["step"] == 3
    assert np.isfinite(losses(tmp_path / "out")).all()
    with pytest.raises(CorefaceError, match="data.identities filters ImageFolder"):
        train(tiny_config(tmp_path, tmp_path / "out2", "data.format=recordio", "data.identities=1-3"))


def test_init_from_an_arcface_torch_checkpoint(straight_run: Path, tiny_faces: Path, tmp_path: Path) -> None:
    """``--init-from``: DDP-prefixed keys in the insightface layout load, so do our own checkpoint and
    artefact; another architecture is refused."""
    from coreface_edge.models import build_backbone

    donor = build_backbone("mobilefacenet", 512, blocks=[1, 1, 1, 1])
    torch.save({f"module.{k}": v for k, v in donor.state_dict().items()}, tmp_path / "backbone.pth")
    out = tmp_path / "ft"
    assert train(tiny_config(tiny_faces, out, f"model.init_from={tmp_path / 'backbone.pth'}", "max_steps=1", "optim.lr=1e-12")) is None
    loaded = load_checkpoint(out / CHECKPOINT_NAME)
    assert loaded["config"]["model"]["init_from"].endswith("backbone.pth") and loaded["step"] == 1
    for name, value in donor.named_parameters():  # lr 1e-12: one step leaves the donor's weights
        torch.testing.assert_close(loaded["module"][f"backbone.{name}"], value.detach(), rtol=0, atol=1e-6)
    torch.save(build_backbone("iresnet18").state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CorefaceError, match="another architecture"):
        train(tiny_config(tiny_faces, tmp_path / "bad", f"model.init_from={tmp_path / 'r18.pth'}"))
    key = "conv_sep.layers.0.weight"
    artefact = torch.load(straight_run / "backbone.pt", weights_only=True)["state_dict"]
    for source, expected in ((out / CHECKPOINT_NAME, loaded["module"][f"backbone.{key}"]), (straight_run / "backbone.pt", artefact[key])):
        again = tmp_path / f"from-{source.name}"  # our own training checkpoint and backbone artefact
        train(tiny_config(tiny_faces, again, f"model.init_from={source}", "max_steps=1", "optim.lr=1e-12"))
        torch.testing.assert_close(load_checkpoint(again / CHECKPOINT_NAME)["module"][f"backbone.{key}"], expected, rtol=0, atol=1e-6)
    with pytest.raises(CorefaceError, match="a mobilefacenet backbone artefact, the config asks for iresnet18"):
        train(tiny_config(tiny_faces, tmp_path / "bad3", "model.backbone=iresnet18", "model.options={}", f"model.init_from={straight_run / 'backbone.pt'}"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CorefaceError, match="not a readable torch checkpoint"):
        train(tiny_config(tiny_faces, tmp_path / "bad2", f"model.init_from={tmp_path / 'junk.pth'}"))


def test_train_bench_reports_step_times_and_loader_throughput(tiny_faces: Path, tmp_path: Path) -> None:
    from coreface_edge.training.bench import run_bench

    result = run_bench(tiny_config(tiny_faces, tmp_path), steps=2, out=tmp_path / "bench.json")
    assert json.loads((tmp_path / "bench.json").read_text()) == result
    for key in ("arcface_step_s", "coreface_step_s", "arcface_step_cpu_s", "loader_img_s", "train_img_s_with_loader"):
        assert result[key] > 0, key
    assert result["coreface_over_arcface"] == pytest.approx(result["coreface_step_s"] / result["arcface_step_s"])


# ---------------------------------------------------------------- fine-tuning and distillation
def test_freeze_keeps_named_layers_and_head_init_uses_class_means(tiny_faces: Path, tmp_path: Path) -> None:
    from coreface_edge.contract import preprocess_crops
    from coreface_edge.data.imagefolder import ImageFolder
    from coreface_edge.models import load_backbone_artifact

    start = train(tiny_config(tiny_faces, tmp_path / "start", "optim.epochs=1", "method.name=arcface"))
    out = tmp_path / "tuned"
    frozen = ["layers.0", "layers.1", "layers.2"]
    cfg = tiny_config(tiny_faces, out, f"model.init_from={start}", f"model.freeze={frozen}", "head.init=centroids",
                      "method.name=arcface", "optim.epochs=1", "max_steps=1", "optim.lr=1e-12")
    train(cfg)
    before, _ = load_backbone_artifact(start)
    ckpt = load_checkpoint(out / CHECKPOINT_NAME)
    weights = ckpt["module"]
    for name, value in before.state_dict().items():
        if name.startswith(tuple(f"{p}." for p in frozen)):
            assert torch.equal(weights[f"backbone.{name}"], value), name  # no gradient, BatchNorm statistics kept
    folder = ImageFolder(tiny_faces)
    with torch.no_grad():
        emb = torch.nn.functional.normalize(before(torch.from_numpy(preprocess_crops(np.stack([folder[i][0] for i in range(len(folder))])))), dim=1)
    labels = torch.tensor(folder.labels)
    means = torch.nn.functional.normalize(torch.stack([emb[labels == c].mean(0) for c in range(folder.num_classes)]), dim=1)
    head = weights["loss.head.weight"]
    assert torch.nn.functional.cosine_similarity(head, means, dim=1).min() > 0.98  # one pass (flips, dropped last batch): near the means
    with pytest.raises(CorefaceError, match=r"model\.freeze: 'stem' names no parameter of the backbone"):
        train(tiny_config(tiny_faces, tmp_path / "bad", "model.freeze=[stem]"))


def test_distillation_pulls_the_student_towards_the_teacher(tiny_faces: Path, tmp_path: Path) -> None:
    from coreface_edge.contract import preprocess_crops
    from coreface_edge.data.imagefolder import ImageFolder
    from coreface_edge.models import load_backbone_artifact

    teacher = train(tiny_config(tiny_faces, tmp_path / "teacher", "optim.epochs=1", "method.name=arcface", "seed=5"))
    plain = train(tiny_config(tiny_faces, tmp_path / "plain"))
    out = tmp_path / "student"
    student = train(tiny_config(tiny_faces, out, f"distill.teacher={teacher}", "distill.embedding_weight=20", "distill.relation_weight=20"))
    rows = [r for r in read_metrics(out / "metrics.jsonl") if r.get("kind") == "train"]
    assert all(np.isfinite(r["distill_emb"]) and np.isfinite(r["distill_rel"]) for r in rows)
    folder = ImageFolder(tiny_faces)
    x = torch.from_numpy(preprocess_crops(np.stack([folder[i][0] for i in range(len(folder))])))
    with torch.no_grad():
        t = load_backbone_artifact(teacher)[0](x)

        def agreement(path: Path) -> float:
            return torch.nn.functional.cosine_similarity(load_backbone_artifact(path)[0](x), t, dim=1).mean().item()

        assert agreement(student) > agreement(plain) + 0.05  # same seed and schedule, only the teacher differs
    with pytest.raises(CorefaceError, match=r"the teacher embeds in 512 dimensions, the student in 64"):
        train(tiny_config(tiny_faces, tmp_path / "bad", f"distill.teacher={teacher}", "model.embedding_size=64"))
