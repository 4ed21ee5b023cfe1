"""Training speed figures: single-view (ArcFace) vs two-view (CoReFace) step time on the same
backbone and batch, interleaved in one process (wall-clock and process CPU time, medians);
end-to-end img/s with real data loading; and the data loader's own throughput."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from ..atomic import write_text_atomic
from ..models import build_backbone
from . import distributed as ddp
from .config import TrainConfig
from .data import loader_throughput, open_training_data
from .module import FaceTrainModule
from .trainer import _amp_dtype, learning_rate


def run_bench(cfg: TrainConfig, steps: int, out: Path | None, console: Console | None = None) -> dict[str, Any]:
    """Measure and print the figures; ``out`` also gets them as JSON."""
    console = console or Console()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = ddp.pick_device(cfg.device)
    amp = _amp_dtype(cfg.amp, device)
    data = open_training_data(cfg.data, cfg.optim.batch_size, 0, 1, cfg.seed)
    module = FaceTrainModule(build_backbone(cfg.model.backbone, cfg.model.embedding_size, **cfg.model.options), cfg, data.num_classes).to(device)
    optimizer = torch.optim.SGD(module.parameters(), lr=learning_rate(cfg, 1), momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)

    def step(images: torch.Tensor, labels: torch.Tensor, two_view: bool) -> None:
        with torch.autocast(device.type, dtype=amp) if amp else torch.autocast(device.type, enabled=False):
            loss = module(images, labels, two_view)["total"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.backbone.parameters(), cfg.optim.clip_grad or float("inf"))
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    loader = loader_throughput(data, steps)
    data.sampler.set_position(0, 0)
    batches = data.loader()
    images, labels = (t.to(device) for t in next(batches))
    for two_view in (False, True, False, True):  # warm-up
        step(images, labels, two_view)
    times: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}  # process CPU time: robust on a shared machine
    for _ in range(steps):
        for two_view in (False, True):
            start, start_cpu = time.perf_counter(), time.process_time()
            step(images, labels, two_view)
            times[two_view].append(time.perf_counter() - start)
            cpu[two_view].append(time.process_time() - start_cpu)
    e2e_start, e2e_images = time.perf_counter(), 0
    for _, (x, y) in zip(range(steps), batches):
        step(x.to(device), y.to(device), True)
        e2e_images += x.shape[0]
    e2e_s = time.perf_counter() - e2e_start
    arc, core = statistics.median(times[False]), statistics.median(times[True])
    batch = cfg.optim.batch_size
    result = {
        "backbone": cfg.model.backbone,
        "batch": batch,
        "device": str(device),
        "amp": str(amp).replace("torch.", "") if amp else "fp32",
        "threads": torch.get_num_threads(),
        "workers": cfg.data.workers,
        "steps": steps,
        "arcface_step_s": arc,
        "coreface_step_s": core,
        "coreface_over_arcface": core / arc,
        "arcface_step_cpu_s": statistics.median(cpu[False]),
        "coreface_step_cpu_s": statistics.median(cpu[True]),
        "coreface_over_arcface_cpu": statistics.median(cpu[True]) / statistics.median(cpu[False]),
        "arcface_img_s": batch / arc,
        "coreface_img_s": batch / core,
        "train_img_s_with_loader": e2e_images / e2e_s,
        "loader_img_s": loader["img_s"],
    }
    table = Table(title=f"train-bench: {cfg.model.backbone}, batch {batch}, {result['device']}, {result['amp']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
    if out is not None:
        write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    return result
