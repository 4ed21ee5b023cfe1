"""Ops one training step dispatches: ArcFace vs CoReFace, per phase, without a GPU.

On a GPU whose host never waits for it (the trainer's step reads nothing back), a step takes
about ``max(host time to issue its kernels, device time to run them)``. The device share follows
the FLOPs (the two-view extras are ~0.1-0.2 % of iresnet50's); the host share follows the number
of ops, counted here with a ``TorchDispatchMode`` over the trainer's own step (forward, backward,
optimizer with gradient clipping as on CUDA: ``foreach``). Each dispatched op is at least one
kernel launch on CUDA, except views (``t``, ``detach``, ``expand``...: metadata only), which are
counted apart. The per-name difference shows what the two-view phase adds.

    python scripts/step_ops.py configs/iresnet50_coreface.toml --out ops.json
"""

from __future__ import annotations

import argparse
import collections
import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from rich.console import Console
from torch.utils._python_dispatch import TorchDispatchMode

from coreface_edge.training import distributed as ddp
from coreface_edge.training.config import load_config
from coreface_edge.training.trainer import Trainer


class OpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched while active, by name and by phase; views apart."""

    def __init__(self) -> None:
        super().__init__()
        self.phase = "forward"
        self.counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.views: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        if func.is_view:
            self.views[self.phase] += 1
        else:
            self.counts[self.phase][str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))


def build_trainer(config: Path, overrides: list[str], classes: int) -> Trainer:
    cfg = load_config(config, [f"data.root={config.parent}", "device=cpu", "amp=none", *overrides, "checkpoint_every=0", "max_steps=0", "eval.every_epochs=0"])
    trainer = Trainer(cfg, ddp.setup(cfg.device), Console(file=io.StringIO()))
    trainer._build(SimpleNamespace(num_classes=classes))
    for group in trainer.optimizer.param_groups:
        group["foreach"] = True  # the CUDA default (CPU defaults to a per-tensor loop)
    return trainer


def step_in_phases(trainer: Trainer, images: torch.Tensor, labels: torch.Tensor, two_view: bool, counter: OpCounter | None) -> None:
    """``Trainer._step`` split at its phase boundaries (same calls, same order)."""

    def phase(name: str) -> None:
        if counter is not None:
            counter.phase = name

    phase("forward")
    out = trainer.ddp_module(images, labels, two_view)
    trainer.optimizer.zero_grad(set_to_none=True)
    phase("backward")
    out["total"].backward()
    phase("optimizer")
    params = [p for p in trainer.backbone.parameters() if p.grad is not None]
    grads = [p.grad for p in params]
    # clip_grad_norm_ as it runs on CUDA (foreach norms, one scale); CPU has no foreach norm path
    norms = torch._foreach_norm(grads, 2.0)
    total = torch.linalg.vector_norm(torch.stack(norms), 2.0)
    torch._foreach_mul_(grads, torch.clamp(trainer.cfg.optim.clip_grad / (total + 1e-6), max=1.0))
    trainer.optimizer.step()
    torch.stack([out[k].detach().float() for k in ("total", "ce1")])


def count_ops(trainer: Trainer, batch: int, classes: int, two_view: bool) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Non-view ops by phase and name, and view ops by phase, of one step."""
    images = torch.randn(batch, 3, 112, 112)
    labels = torch.arange(batch) % classes
    step_in_phases(trainer, images, labels, two_view, None)  # momentum buffers exist from here on
    counter = OpCounter()
    with counter:
        step_in_phases(trainer, images, labels, two_view, counter)
    return {name: dict(c) for name, c in counter.counts.items()}, dict(counter.views)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("overrides", nargs="*", help="key.sub=value")
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8, help="images per step (the counts do not depend on it)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_intermixed_args()
    torch.set_num_threads(1)
    trainer = build_trainer(args.config, args.overrides, args.classes)
    counted = {name: count_ops(trainer, args.batch, args.classes, two_view) for name, two_view in (("arcface", False), ("coreface", True))}
    ops = {name: kernels for name, (kernels, _) in counted.items()}
    totals = {name: {phase: sum(c.values()) for phase, c in phases.items()} for name, phases in ops.items()}
    result: dict[str, Any] = {
        "config": str(args.config),
        "backbone": trainer.cfg.model.backbone,
        "overrides": args.overrides,
        "ops_per_phase": totals,
        "ops_per_step": {name: sum(t.values()) for name, t in totals.items()},
        "view_ops_per_phase": {name: views for name, (_, views) in counted.items()},
        "extra_ops_by_name": {
            phase: dict(collections.Counter(ops["coreface"].get(phase, {})) - collections.Counter(ops["arcface"].get(phase, {})))
            for phase in ("forward", "backward", "optimizer")
        },
    }
    result["ops_ratio"] = result["ops_per_step"]["coreface"] / result["ops_per_step"]["arcface"]
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
