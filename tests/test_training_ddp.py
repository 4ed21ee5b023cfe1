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

import subprocess
import sys
from pathlib import Path

import numpy as np

from coreface_edge.training.metrics_log import read_metrics

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
    assert (double / "last.pt").is_file() and not (double / "tensorboard-rank1").exists()
