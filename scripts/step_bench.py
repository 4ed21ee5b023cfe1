"""Training-step throughput of the real trainer loop: ArcFace vs CoReFace, no data loading.

Builds ``coreface_edge.training.trainer.Trainer`` from a recipe (plus ``key=value`` overrides),
puts one batch on the device (real faces from ``data.root``, or ``--synthetic CLASSES``) and runs
the trainer's own ``_epoch`` loop (per-step seeding, step, loss bookkeeping, log steps every
``log_every``) over that batch ``--steps`` times, alternating single-view (ArcFace) and two-view
(CoReFace) epochs ``--repeats`` times after one warm-up epoch each. Each epoch is timed with one
device synchronisation at its end, so the figure is throughput, as in a real run (``train-bench``
synchronises after every step and measures step latency instead). It uses whichever
``coreface_edge`` comes first on ``sys.path``: put an older copy first on PYTHONPATH to measure
before/after a change of the loop (scripts/gpu_step_bench.sh).

    python scripts/step_bench.py configs/iresnet50_coreface.toml --synthetic 400 amp=bf16 --out x.json
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import torch
from rich.console import Console

import coreface_edge
from coreface_edge.training import distributed as ddp
from coreface_edge.training.config import load_config
from coreface_edge.training.data import open_training_data
from coreface_edge.training.trainer import Trainer, TrainState


class RepeatedBatch:
    """Stands in for ``TrainData`` in ``Trainer._epoch``: the same device batch, ``steps`` times."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, steps: int) -> None:
        self.images, self.labels, self.steps = images, labels, steps
        self.sampler = SimpleNamespace(steps_per_epoch=steps, set_position=lambda epoch, batch: None)
        self.fingerprint = "repeated-batch"

    def loader(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter([(self.images, self.labels)] * self.steps)


def first_batch(cfg: Any, synthetic: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """One training batch and the class count: real faces, or random ones over ``synthetic`` classes."""
    batch = cfg.optim.batch_size
    if synthetic:
        gen = torch.Generator().manual_seed(cfg.seed)
        return torch.rand(batch, 3, 112, 112, generator=gen) * 2 - 1, torch.randint(synthetic, (batch,), generator=gen), synthetic
    data = open_training_data(cfg.data, batch, 0, 1, cfg.seed)
    data.sampler.set_position(0, 0)
    images, labels = next(data.loader())
    return images, labels, data.num_classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("overrides", nargs="*", help="key.sub=value")
    parser.add_argument("--steps", type=int, default=50, help="steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per loss, interleaved")
    parser.add_argument("--synthetic", type=int, default=0, metavar="CLASSES", help="random images and labels instead of data.root")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN pick conv algorithms by timing (the trainer does not)")
    parser.add_argument("--label", default="", help="name of this run in the output (e.g. before/after)")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_intermixed_args()
    overrides = [f"data.root={args.config.parent}"] if args.synthetic else []  # data.root must be set; unused
    cfg = load_config(args.config, [*overrides, *args.overrides, "checkpoint_every=0", "max_steps=0", "eval.every_epochs=0"])
    info = ddp.setup(cfg.device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    images, labels, classes = first_batch(cfg, args.synthetic)
    trainer = Trainer(cfg, info, Console(file=io.StringIO()))
    trainer._build(SimpleNamespace(num_classes=classes))
    batches = RepeatedBatch(images.to(info.device), labels.to(info.device), args.steps)

    def sync() -> None:
        if info.device.type == "cuda":
            torch.cuda.synchronize()

    def epoch(two_view: bool, steps: int) -> tuple[float, float]:
        batches.steps = batches.sampler.steps_per_epoch = steps
        state = TrainState()
        sync()
        start, start_cpu = time.perf_counter(), time.process_time()
        trainer._epoch(batches, state, two_view, None, trainer._progress(steps, 0))
        sync()
        return time.perf_counter() - start, time.process_time() - start_cpu

    for two_view in (False, True):
        epoch(two_view, min(args.steps, 5))
    wall: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):
        for two_view in (False, True):
            w, c = epoch(two_view, args.steps)
            wall[two_view].append(w / args.steps)
            cpu[two_view].append(c / args.steps)
    arc, core = statistics.median(wall[False]), statistics.median(wall[True])
    result = {
        "label": args.label,
        "package": str(Path(coreface_edge.__file__).parent),
        "backbone": cfg.model.backbone,
        "batch": cfg.optim.batch_size,
        "device": torch.cuda.get_device_name(info.device) if info.device.type == "cuda" else "cpu",
        "amp": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype else "fp32",
        "threads": torch.get_num_threads(),
        "cudnn_benchmark": args.cudnn_benchmark,
        "log_every": cfg.log_every,
        "steps": args.steps,
        "repeats": args.repeats,
        "arcface_step_s": arc,
        "coreface_step_s": core,
        "coreface_over_arcface": core / arc,
        # each CoReFace epoch against the ArcFace epoch just before it: less exposed to drift
        "coreface_over_arcface_paired": statistics.median(c / a for a, c in zip(wall[False], wall[True])),
        "arcface_step_cpu_s": statistics.median(cpu[False]),
        "coreface_step_cpu_s": statistics.median(cpu[True]),
        "arcface_img_s": cfg.optim.batch_size / arc,
        "coreface_img_s": cfg.optim.batch_size / core,
        "arcface_step_s_all": wall[False],
        "coreface_step_s_all": wall[True],
    }
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    ddp.teardown()


if __name__ == "__main__":
    main()
