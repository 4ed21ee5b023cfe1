"""DDP equivalence: 2 CPU processes over gloo, launched by real torchrun, follow the same loss
trajectory as 1 process with the same global batch.

Set-up that makes the two runs comparable: global batch 16 (1 x 16 vs 2 x 8), the same data
order (the sampler splits each global batch between the ranks), no dropout (masks are drawn per
rank), the ArcFace loss (the CoReFace contrastive term is per process by design, as in the
reference) and ``model.freeze_bn`` (BatchNorm batch statistics over 8 images differ from those
over 16; with them the runs drift by a few percent per step, see docs/training.md). What
remains is data sharding, gradient all-reduce and loss averaging, which must agree up to float
summation order: tolerance 1e-4 relative.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from coreface_edge.data.imagefolder import ImageFolder
from coreface_edge.training.metrics_log import read_metrics
from coreface_edge.training.sampler import ResumableSampler

from conftest import run_cli

COMMON = [
    "model.options={blocks: [1, 1, 1, 1]}",
    "model.freeze_bn=true",
    "method.name=arcface",
    "method.single_dropout=0.0",
    "optim.epochs=1",
    "optim.milestones=[1]",
    "optim.lr=0.005",
    "optim.base_batch=16",
    "data.workers=0",
    "log_every=1",
    "eval.every_epochs=0",
    "threads=1",
    "max_steps=4",
]


def test_two_gloo_processes_follow_the_single_process_trajectory(tiny_faces: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 0\n")
    single, double = tmp_path / "single", tmp_path / "double"
    run_cli("train", cfg, f"data.root={tiny_faces}", f"output={single}", "optim.batch_size=16", *COMMON)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517", "-m", "coreface_edge.training"]
    proc = subprocess.run([*cmd, str(cfg), f"data.root={tiny_faces}", f"output={double}", "optim.batch_size=8", *COMMON], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = np.array([r["total"] for r in read_metrics(single / "metrics.jsonl")])
    two = np.array([r["total"] for r in read_metrics(double / "metrics.jsonl")])
    assert one.size == two.size == 4
    assert np.ptp(one) > 0.01  # the weights moved, so later steps test the all-reduced update
    np.testing.assert_allclose(two, one, rtol=1e-4)
    # Only rank 0 writes: the 2-process run leaves exactly the files of the 1-process run (config.yaml,
    # metrics.jsonl with each step once, last.pt; max_steps stops before backbone.pt), nothing per rank.
    names = sorted(p.name for p in double.iterdir())
    assert names == sorted(p.name for p in single.iterdir())
    assert {"config.yaml", "metrics.jsonl", "last.pt"} <= set(names) and "backbone.pt" not in names
    if (double / "tensorboard").is_dir():  # optional dependency; one SummaryWriter, not one per rank
        assert len(list((double / "tensorboard").iterdir())) == 1


def _torchrun(port: int, *args: object) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port), "-m", "coreface_edge.training"]
    return subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=300)


def test_torchrun_user_error_is_one_line_from_rank_zero(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 0\n")
    proc = _torchrun(29518, cfg, f"data.root={tmp_path}/[red]faces", f"output={tmp_path / 'out'}", "threads=1")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {tmp_path}/[red]faces: not a folder"], proc.stderr[-3000:]  # rich markup escaped, rank 1 silent
    assert "exitcode  : 2" in proc.stderr


def test_torchrun_corrupt_image_read_by_rank_one_is_reported(tiny_faces: Path, tmp_path: Path) -> None:
    """A sample is read by one rank only: its error must not be lost when that rank is not 0."""
    faces = tmp_path / "faces"
    shutil.copytree(tiny_faces, faces)
    folder = ImageFolder(faces)
    first_of_rank1 = next(iter(ResumableSampler(len(folder), 8, rank=1, world_size=2, seed=0)))[0]
    bad = folder.samples[first_of_rank1][0]
    bad.write_bytes(bad.read_bytes()[:500])
    cfg = tmp_path / "c.yaml"
    cfg.write_text("seed: 0\n")
    for workers in (0, 1):
        proc = _torchrun(29519, cfg, f"data.root={faces}", f"output={tmp_path / f'out{workers}'}", "optim.batch_size=8", *COMMON, f"data.workers={workers}")
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert errors == [f"error: rank 1: {bad}: not a decodable image"], proc.stderr[-3000:]
