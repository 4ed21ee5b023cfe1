"""``coreface-edge train CONFIG [key=value ...]`` and ``coreface-edge train-bench CONFIG``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def train_command(
    config: Path = typer.Argument(..., help="Training recipe (YAML or TOML), e.g. configs/mobilefacenet_coreface.yaml."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Overrides key.sub=value, e.g. optim.epochs=3 data.workers=4."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUTPUT/last.pt (exactly where it stopped)."),
    allow_config_change: bool = typer.Option(False, "--allow-config-change", help="Resume even if the config or data changed (a changed optim.* takes effect from the resumed step)."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Start the backbone from an arcface_torch checkpoint, a coreface-edge backbone.pt or a training last.pt."),
) -> None:
    """Train a face-embedding backbone (ArcFace / CoReFace); under torchrun, with DDP."""
    from ..interrupted import say_what_was_kept
    from .config import load_config
    from .trainer import train

    extra = list(overrides or [])
    if init_from is not None:
        extra.append(f"model.init_from={init_from}")
    cfg = load_config(config, extra)
    with say_what_was_kept(lambda: _checkpoint_kept(Path(cfg.output))):
        train(cfg, resume=resume, allow_config_change=allow_config_change)


def _checkpoint_kept(output: Path) -> str:
    """What an interrupted run leaves: its last checkpoint and the command that resumes it."""
    from ..interrupted import this_command
    from .checkpoint import CHECKPOINT_NAME, load_checkpoint

    path = output / CHECKPOINT_NAME
    if not path.is_file():
        return f"no checkpoint was written yet ({path}); nothing to resume, run the same command again to start over"
    ckpt = load_checkpoint(path)
    return f"the last checkpoint {path} (epoch {ckpt['epoch']}, step {ckpt['step']}) is kept; go on from it with: {this_command('--resume')}"


def bench_command(
    config: Path = typer.Argument(..., help="Training recipe whose backbone, batch and data are measured."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Overrides key.sub=value."),
    steps: int = typer.Option(8, min=2, help="Timed steps per loss (after 2 warm-up steps)."),
    out: Optional[Path] = typer.Option(None, help="Also write the figures as JSON here."),
) -> None:
    """Measure step time (ArcFace vs CoReFace, same batch, interleaved) and loader throughput."""
    from .bench import run_bench
    from .config import load_config

    run_bench(load_config(config, list(overrides or [])), steps, out)


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``train-bench`` to the root app."""
    app.command("train")(train_command)
    app.command("train-bench")(bench_command)
