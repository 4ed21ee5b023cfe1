"""The training loop: AMP, gradient clipping on the backbone, DDP, periodic evaluation,
atomic checkpoints with exact resume, a NaN guard, and the backbone artefact at the end.

A step never reads the device: loss terms stay on it and are read to the host in one transfer
at log steps, checkpoints, ``max_steps`` and epoch ends, where the NaN guard runs too; a
checkpoint is written only from finite weights, buffers and optimizer state."""

from __future__ import annotations

import bisect
import math
import random
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..atomic import write_text_atomic
from ..errors import CorefaceError
from ..models import build_backbone, load_backbone_artifact, load_insightface_state_dict, save_backbone_artifact
from ..pretrained import resolve_checkpoint
from . import distributed as ddp
from .checkpoint import (
    CHECKPOINT_NAME,
    first_non_finite,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    set_rng_state,
    state_dict_mismatch,
)
from .config import TrainConfig, config_differences, dump_config
from .data import TrainData, open_training_data
from .evaluate import PeriodicEvaluation, evaluate_backbone, prepare_evaluation
from .metrics_log import MetricsLog, read_metrics
from .module import FaceTrainModule
from .plots import plot_training_curves

ARTIFACT_NAME = "backbone.pt"
LOSS_KEYS = ("total", "ce1", "ce2", "con", "distill_emb", "distill_rel", "margin")
SUMMARY_EVAL_KEYS = ("FF_acc", "FF_tar@1e-3", "FP_acc", "FP_tar@1e-3")


@dataclass
class TrainState:
    """Where the run stands: the next batch to run is ``batch`` of ``epoch``; ``step`` counts all."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=dict)  # loss sums of the current epoch so far


class NonFiniteLoss(CorefaceError):
    """The loss or the weights became NaN or inf; the last good checkpoint is kept."""


def train(
    cfg: TrainConfig,
    resume: bool = False,
    allow_config_change: bool = False,
    console: Console | None = None,
) -> Path | None:
    """Run (or resume) a training job; returns the artefact path on rank 0 when it finished."""
    info = ddp.setup(cfg.device)
    try:
        return Trainer(cfg, info, console or Console(stderr=True)).run(resume, allow_config_change)
    finally:
        ddp.teardown()


def learning_rate(cfg: TrainConfig, world_size: int) -> float:
    """The reference lr scaled linearly with the global batch."""
    return cfg.optim.lr * cfg.optim.batch_size * world_size / cfg.optim.base_batch


def step_seed(seed: int, rank: int, step: int) -> int:
    """Seed of the dropout masks of one step on one rank: resume and worker count never change it."""
    return (seed * 1_000_003 + rank * 7_919 + step) % (2**63)


class Trainer:
    def __init__(self, cfg: TrainConfig, info: ddp.DistInfo, console: Console) -> None:
        self.cfg = cfg
        self.info = info
        self.console = console
        self.output = Path(cfg.output)
        self.amp_dtype = _amp_dtype(cfg.amp, info.device)
        self.evaluation: PeriodicEvaluation | None = None
        self.saved_step: int | None = None  # step of the last checkpoint written or resumed from

    # ----------------------------------------------------------------- set-up
    def _build(self, data: TrainData) -> None:
        cfg, device = self.cfg, self.info.device
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        backbone = build_backbone(cfg.model.backbone, cfg.model.embedding_size, **cfg.model.options)
        if cfg.model.init_from:
            load_insightface_state_dict(backbone, _read_state_dict(Path(cfg.model.init_from)), source=cfg.model.init_from)
        freeze_parameters(backbone, cfg.model.freeze)
        self.module = FaceTrainModule(backbone, cfg, data.num_classes).to(device)
        self.backbone = self.module.backbone
        self.teacher = self._load_teacher(backbone.embedding_size) if cfg.distill.teacher else None
        self.optimizer = torch.optim.SGD(
            self.module.parameters(),
            lr=learning_rate(cfg, self.info.world_size),
            momentum=cfg.optim.momentum,
            weight_decay=cfg.optim.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, cfg.optim.milestones, cfg.optim.gamma)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.ddp_module: torch.nn.Module = self.module
        if self.info.distributed:
            # The adaptive margin is per process (docs/training.md): no broadcast from rank 0.
            torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self.module, ["loss.margin.value"])
            self.ddp_module = torch.nn.parallel.DistributedDataParallel(
                self.module, device_ids=[device.index] if device.type == "cuda" else None
            )

    def _load_teacher(self, student_size: int) -> torch.nn.Module:
        """The frozen teacher of ``distill.teacher`` (eval mode, no gradients) on the training device."""
        source = self.cfg.distill.teacher
        teacher, _ = load_backbone_artifact(resolve_checkpoint(source))
        if self.cfg.distill.embedding_weight > 0 and teacher.embedding_size != student_size:
            raise CorefaceError(
                f"{source}: the teacher embeds in {teacher.embedding_size} dimensions, the student in {student_size}; "
                "set model.embedding_size to match or distill.embedding_weight=0 (relation distillation only)"
            )
        teacher.requires_grad_(False)
        return teacher.eval().to(self.info.device)

    @torch.no_grad()
    def _init_head_centroids(self, data: TrainData) -> None:
        """``head.init=centroids``: each class centre starts at its identity's mean normalised
        embedding under the starting backbone (one epoch of the sampler, so capped by
        ``optim.steps_per_epoch``; classes it never reaches keep their random centre), so
        fine-tuning a pretrained backbone starts from a sensible classifier instead of a random one."""
        head = self.module.loss.head
        sums = torch.zeros_like(head.weight)
        counts = torch.zeros(head.weight.shape[0], device=sums.device)
        self.backbone.eval()
        data.sampler.set_position(0, 0)
        for images, labels in data.loader():
            emb = torch.nn.functional.normalize(self.backbone(images.to(self.info.device)).float(), dim=1)
            labels = labels.to(self.info.device)
            sums.index_add_(0, labels, emb.to(sums.dtype))
            counts.index_add_(0, labels, torch.ones_like(labels, dtype=counts.dtype))
        sums, counts = ddp.sum_over_ranks(sums, self.info), ddp.sum_over_ranks(counts, self.info)
        seen = counts > 0
        head.weight[seen] = torch.nn.functional.normalize(sums[seen], dim=1).to(head.weight.dtype)
        if self.info.is_main:
            self.console.print(f"head: {int(seen.sum())} of {len(seen)} class centres set from mean embeddings", highlight=False)

    def _restore(self, resume: bool, allow_config_change: bool, fingerprint: str) -> TrainState:
        path = self.output / CHECKPOINT_NAME
        if not resume:
            if path.is_file():
                raise CorefaceError(f"{path}: a checkpoint exists; pass --resume to continue it or choose another output")
            return TrainState()
        ckpt = load_checkpoint(path)
        saved_world = ckpt.get("world_size", self.info.world_size)
        if saved_world != self.info.world_size:
            raise CorefaceError(
                f"{path}: written by a run of {saved_world} process(es), this one has {self.info.world_size}; "
                "an exact resume needs the same count (the sampler position and the LR scaling depend on it)"
            )
        changed = config_differences(ckpt["config"], self.cfg.to_dict())
        if changed and not allow_config_change:
            raise CorefaceError(f"{path}: config differs from the checkpoint's in {', '.join(changed)} (pass --allow-config-change to resume anyway)")
        if ckpt["data_fingerprint"] != fingerprint and not allow_config_change:
            raise CorefaceError(f"{path}: the training data changed since this checkpoint (pass --allow-config-change to resume anyway)")
        saved_backbone = ckpt["config"]["model"]["backbone"]
        if saved_backbone != self.cfg.model.backbone:
            raise CorefaceError(f"{path}: the checkpoint holds a {saved_backbone} model, the config asks for {self.cfg.model.backbone}")
        try:
            self.module.load_state_dict(ckpt["module"])
        except RuntimeError:
            raise CorefaceError(f"{path}: checkpoint does not fit this model ({state_dict_mismatch(self.module.state_dict(), ckpt['module'])})") from None
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if any(key.startswith("optim.") for key in changed):
            self._apply_optim_config()
        set_rng_state(ckpt["rng"])
        self.saved_step = ckpt["step"]
        return TrainState(ckpt["epoch"], ckpt["batch"], ckpt["step"], list(ckpt["history"]), dict(ckpt["sums"]))

    def _apply_optim_config(self) -> None:
        """After loading an optimizer/scheduler state, use this config's LR, schedule, momentum and
        weight decay (``--allow-config-change``); the LR is where this schedule puts the current epoch."""
        optim = self.cfg.optim
        base = learning_rate(self.cfg, self.info.world_size)
        self.scheduler.milestones = Counter(optim.milestones)
        self.scheduler.gamma = optim.gamma
        self.scheduler.base_lrs = [base] * len(self.optimizer.param_groups)
        decays = bisect.bisect_right(sorted(optim.milestones), self.scheduler.last_epoch)
        for group in self.optimizer.param_groups:
            group.update(lr=base * optim.gamma**decays, initial_lr=base, momentum=optim.momentum, weight_decay=optim.weight_decay)
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _checkpoint(self, state: TrainState, fingerprint: str) -> None:
        """Write ``last.pt`` (rank 0), unless a weight, buffer or optimizer state is NaN/inf: then
        stop, keeping the previous checkpoint (a finite loss does not prove finite weights)."""
        named = [*self.module.state_dict().items()]
        named += [(f"optimizer state {k}", v) for st in self.optimizer.state.values() for k, v in st.items()]
        bad = first_non_finite(named)
        if bad is not None:
            kept = f"the checkpoint of step {self.saved_step} is kept" if self.saved_step is not None else "no checkpoint was written"
            raise NonFiniteLoss(
                f"{self.output / CHECKPOINT_NAME}: {bad} became NaN/inf by step {state.step} (epoch {state.epoch}); "
                f"stopped, {kept} (resume it with a lower optim.lr and --allow-config-change)"
            )
        if self.info.is_main:
            save_checkpoint(
                self.output / CHECKPOINT_NAME,
                {
                    "config": self.cfg.to_dict(),
                    "world_size": self.info.world_size,
                    "data_fingerprint": fingerprint,
                    "epoch": state.epoch,
                    "batch": state.batch,
                    "step": state.step,
                    "history": state.history,
                    "sums": state.sums,
                    "module": self.module.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "scaler": self.scaler.state_dict(),
                },
            )
        self.saved_step = state.step
        ddp.barrier(self.info)

    # ------------------------------------------------------------------ loop
    def run(self, resume: bool, allow_config_change: bool) -> Path | None:
        cfg, info = self.cfg, self.info
        data = open_training_data(cfg.data, cfg.optim.batch_size, info.rank, info.world_size, cfg.seed, cfg.optim.steps_per_epoch)
        self.evaluation = prepare_evaluation(cfg.eval, cfg.data.root, evaluates=info.is_main)
        self._build(data)
        state = self._restore(resume, allow_config_change, data.fingerprint)
        if cfg.head.init == "centroids" and state.step == 0:
            self._init_head_centroids(data)
        log = MetricsLog(self.output, state.step if resume else None) if info.is_main else None
        if info.is_main:
            for stale in remove_stale_temporaries(self.output):
                self.console.print(f"removed {stale.name}, a checkpoint a stopped run left half-written", highlight=False)
            write_text_atomic(self.output / "config.yaml", dump_config(cfg))
        switch = cfg.first_two_view_epoch()
        steps_per_epoch = data.sampler.steps_per_epoch
        try:
            with self._progress(steps_per_epoch * cfg.optim.epochs, state.step) as progress:
                while state.epoch < cfg.optim.epochs:
                    two_view = switch is not None and state.epoch >= switch
                    sums = self._epoch(data, state, two_view, log, progress)
                    if sums is None:  # max_steps reached mid-epoch
                        self._checkpoint(state, data.fingerprint)
                        return self._stopped(state)
                    row = {"epoch": state.epoch, "two_view": two_view, **sums}
                    state.epoch, state.batch = state.epoch + 1, 0
                    self.scheduler.step()
                    if self.evaluation is not None and state.epoch % cfg.eval.every_epochs == 0:
                        row.update(self._evaluate(self.evaluation, state, log))
                    state.history.append(row)
                    self._checkpoint(state, data.fingerprint)
                    if cfg.max_steps and state.step >= cfg.max_steps and state.epoch < cfg.optim.epochs:
                        return self._stopped(state)
        finally:
            if log is not None:
                log.close()
        if not info.is_main:
            return None
        artifact = self.output / ARTIFACT_NAME
        save_backbone_artifact(
            self.backbone,
            artifact,
            {"training_config": cfg.to_dict(), "data_fingerprint": data.fingerprint, "history": state.history, "steps": state.step},
        )
        plot_training_curves(read_metrics(self.output / "metrics.jsonl"), self.output / "curves.png", f"{cfg.model.backbone} {cfg.method.name} ({self.output.name})")
        self.console.print(_summary_table(state.history))
        self.console.print(f"backbone artefact: {artifact}; curves: {self.output / 'curves.png'}")
        return artifact

    def _epoch(self, data: TrainData, state: TrainState, two_view: bool, log: MetricsLog | None, progress: Progress) -> dict[str, float] | None:
        cfg, info, device = self.cfg, self.info, self.info.device
        data.sampler.set_position(state.epoch, state.batch)
        self.module.train()
        for name, layer in self.backbone.named_modules():
            if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm) and (cfg.model.freeze_bn or is_frozen(name, cfg.model.freeze)):
                layer.eval()
        window_t, window_n = time.perf_counter(), 0
        pending: list[torch.Tensor] = []  # per-step loss rows not yet read to the host
        keys: list[str] = []
        for images, labels in data.loader():
            torch.manual_seed(step_seed(cfg.seed, info.rank, state.step))
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            keys, row = self._step(images, labels, two_view)
            pending.append(row)
            state.step += 1
            state.batch += 1
            window_n += images.shape[0] * info.world_size
            log_now = state.step % cfg.log_every == 0 or state.batch == data.sampler.steps_per_epoch
            checkpoint_now = bool(cfg.checkpoint_every) and state.step % cfg.checkpoint_every == 0
            stop_now = bool(cfg.max_steps) and state.step >= cfg.max_steps and state.batch < data.sampler.steps_per_epoch
            if log_now or checkpoint_now or stop_now:
                losses = self._read_losses(keys, pending, state)
            if log_now:
                ips = window_n / max(time.perf_counter() - window_t, 1e-9)
                window_t, window_n = time.perf_counter(), 0
                record = {"kind": "train", "step": state.step, "epoch": state.epoch, "lr": self.optimizer.param_groups[0]["lr"], "img_s": ips, **losses}
                if log is not None:
                    log.write(record)
                progress.update(progress.task_ids[0], completed=state.step, stats=_stats_text(record))
                if not self.console.is_terminal and info.is_main:
                    self.console.print(_stats_text(record), highlight=False, soft_wrap=True)
            else:
                progress.update(progress.task_ids[0], completed=state.step)
            if checkpoint_now:
                self._checkpoint(state, data.fingerprint)
            if stop_now:
                return None
        self._read_losses(keys, pending, state)
        means = {k: v / max(state.batch, 1) for k, v in state.sums.items()}
        state.sums = {}
        return means

    def _step(self, images: torch.Tensor, labels: torch.Tensor, two_view: bool) -> tuple[list[str], torch.Tensor]:
        """Queue one optimisation step without reading anything back to the host.

        Returns the names of the loss terms and their float32 values as a device tensor.
        """
        autocast = torch.autocast(self.info.device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()
        with autocast:
            teacher = None
            if self.teacher is not None:
                with torch.no_grad():
                    teacher = self.teacher(images)
            out = self.ddp_module(images, labels, two_view, teacher)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out["total"]).backward()
        if self.cfg.optim.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.backbone.parameters(), self.cfg.optim.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        keys = [k for k in LOSS_KEYS if k in out]
        return keys, torch.stack([out[k].detach().float() for k in keys])

    def _read_losses(self, keys: list[str], pending: list[torch.Tensor], state: TrainState) -> dict[str, float]:
        """Read the pending steps' loss rows (the last ``len(pending)`` steps) to the host in one
        transfer, averaged over ranks, and add them to the epoch sums; returns the last step's.

        The NaN guard: a non-finite total stops the run, naming the first bad step, before any
        checkpoint is written from that state (the last good checkpoint is kept).
        """
        if not pending:
            return {}
        rows = ddp.mean_over_ranks(torch.stack(pending), self.info).tolist()
        pending.clear()
        first = state.step - len(rows) + 1
        for offset, row in enumerate(rows):
            values = dict(zip(keys, row))
            if not math.isfinite(values["total"]):
                raise NonFiniteLoss(
                    f"{self.output / CHECKPOINT_NAME}: loss became {values['total']} at step {first + offset} "
                    f"(epoch {state.epoch}); stopped, the last good checkpoint is kept (try a lower optim.lr)"
                )
            for k, v in values.items():
                state.sums[k] = state.sums.get(k, 0.0) + v
        return values

    def _stopped(self, state: TrainState) -> None:
        """``max_steps`` reached: say where the run stands and how to continue it."""
        if self.info.is_main:
            self.console.print(
                f"stopped at step {state.step} (max_steps={self.cfg.max_steps}), epoch {state.epoch} batch {state.batch}; "
                f"checkpoint {self.output / CHECKPOINT_NAME}; continue with --resume (and a larger max_steps, or 0)",
                highlight=False,
            )

    def _evaluate(self, setup: PeriodicEvaluation, state: TrainState, log: MetricsLog | None) -> dict[str, float]:
        result: dict[str, float] = {}
        if self.info.is_main:
            result = evaluate_backbone(self.backbone, setup, self.info.device)
            finished = state.epoch - 1  # 0-based, as the train lines and the summary table count epochs
            if log is not None:
                log.write({"kind": "eval", "step": state.step, "epoch": finished, **result})
            self.console.print(
                f"eval after epoch {finished} ({state.epoch} of {self.cfg.optim.epochs} done): " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()),
                highlight=False,
            )
        ddp.barrier(self.info)
        return result

    def _progress(self, total: int, done: int) -> Progress:
        progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[stats]}"),
            console=self.console,
            disable=not (self.info.is_main and self.console.is_terminal),
        )
        progress.add_task("train", total=total, completed=done, stats="")
        return progress


def is_frozen(name: str, prefixes: list[str]) -> bool:
    """Whether the parameter or module ``name`` lies under one of the ``model.freeze`` prefixes."""
    return any(name == p or name.startswith(f"{p}.") for p in prefixes)


def freeze_parameters(backbone: torch.nn.Module, prefixes: list[str]) -> None:
    """``model.freeze``: no gradient for the parameters under ``prefixes`` (each must match one)."""
    names = [name for name, _ in backbone.named_parameters()]
    for prefix in prefixes:
        if not any(is_frozen(name, [prefix]) for name in names):
            raise CorefaceError(f"model.freeze: {prefix!r} names no parameter of the backbone (e.g. {names[0].rsplit('.', 1)[0]})")
    for name, param in backbone.named_parameters():
        if is_frozen(name, prefixes):
            param.requires_grad_(False)


def _read_state_dict(path: Path) -> Any:
    """What ``--init-from`` names: an arcface_torch backbone checkpoint (tensors only), or one of
    our backbone artefacts or training checkpoints (``last.pt`` also holds RNG states)."""
    if not path.is_file():
        raise CorefaceError(f"{path}: --init-from checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors of a foreign or truncated file, or a non-tensor payload
        first_error = str(exc).strip().splitlines()[0][:200]
    try:
        return load_checkpoint(path)
    except CorefaceError:
        raise CorefaceError(f"{path}: not a readable torch checkpoint ({first_error})") from None


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "none" or (amp == "auto" and device.type != "cuda"):
        return None
    if device.type != "cuda":
        raise CorefaceError(f"amp={amp} needs a CUDA device (CPU training runs in fp32)")
    return torch.float16 if amp == "fp16" else torch.bfloat16


def _stats_text(record: dict[str, Any]) -> str:
    parts = [f"step {record['step']}", f"{record['img_s']:.1f} img/s", f"loss {record['total']:.3f}", f"ce1 {record['ce1']:.3f}"]
    if "ce2" in record:
        parts += [f"ce2 {record['ce2']:.3f}", f"con {record['con']:.3f}"]
    parts.append(f"m {record.get('margin', 0.0):.3f}")
    return " | ".join(parts)


def _summary_table(history: list[dict[str, Any]]) -> Table:
    table = Table(title="training summary")
    bin_acc = sorted({k for row in history for k in row if k.endswith("_acc") and k not in SUMMARY_EVAL_KEYS})
    keys = ["epoch", "two_view", "total", "ce1", "con", "margin", *SUMMARY_EVAL_KEYS, *bin_acc]
    keys = [k for k in keys if any(k in row for row in history)]
    for key in keys:
        table.add_column(key, justify="right")
    for row in history:
        table.add_row(*(_fmt(row.get(k)) for k in keys))
    return table


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)
