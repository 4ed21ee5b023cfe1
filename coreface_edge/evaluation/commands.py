"""``coreface-edge eval MODEL``: CFP open-set protocol or an insightface verification .bin."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from ..data.cfp import DEFAULT_CFP_ROOT
from ..errors import CorefaceError
from ..contract import Embedder
from .metrics import Roc

_Run = tuple[dict[str, Any], dict[str, Roc], str]  # JSON result, ROC per row, plot/table title


class Protocol(str, Enum):
    cfp = "cfp"
    bin = "bin"


def eval_command(
    model: str = typer.Argument(..., help="'pixels' (raw-pixel baseline) or a model file: .pt, .onnx, .engine/.plan."),
    protocol: Optional[Protocol] = typer.Option(
        None, help="cfp: aligned CFP folder; bin: insightface verification .bin (default: bin for a .bin --data, else cfp)."
    ),
    data: Path = typer.Option(..., help="Aligned CFP folder (data prepare-cfp output) or a verification .bin file."),
    flip: bool = typer.Option(False, "--flip", help="Add each crop's mirror-image embedding (flip test-time augmentation)."),
    out: Optional[Path] = typer.Option(None, help="Output folder for the JSON and ROC plot (default: runs/eval/MODEL-PROTOCOL)."),
    batch_size: int = typer.Option(64, min=1, help="Crops per embedder call."),
    identities: str = typer.Option("401-500", help="cfp: identities to evaluate, e.g. 401-500 or 401-410,451-460."),
    cfp_root: Path = typer.Option(
        DEFAULT_CFP_ROOT, envvar="COREFACE_CFP_ROOT", help="cfp: CFP release with the official Protocol/ folder."
    ),
    backend: Optional[str] = typer.Option(None, help="Force a backend: torch, onnxruntime or tensorrt (default: by file suffix)."),
    device: Optional[str] = typer.Option(None, help="Backend device, e.g. cpu or cuda (default: the backend's own)."),
) -> None:
    """Evaluate a model: k-fold accuracy, TAR@FAR 1e-2/1e-3/1e-4, AUC, EER; JSON + ROC PNG."""
    from .embedding import open_embedder, with_flip
    from .evaluate import FAR_TARGETS
    from .report import plot_rocs, summary_table, write_json

    protocol = protocol or (Protocol.bin if data.suffix == ".bin" else Protocol.cfp)
    name = "pixels" if model == "pixels" else Path(model).stem
    out = out or Path("runs") / "eval" / f"{name}-{protocol.value}"
    if out.exists() and not out.is_dir():  # found now, not after minutes of embedding
        raise CorefaceError(f"{out}: exists and is not a folder (--out takes a folder)")
    console = Console()
    embedder, info = open_embedder(model, backend, **({} if device is None else {"device": device}))
    if flip and info["flip_fused"]:
        console.print("--flip: this model already adds the mirror image's embedding; not flipping again")
    elif flip:
        embedder = with_flip(embedder)
    if protocol is Protocol.cfp:
        result, rocs, title = _run_cfp(embedder, data, identities, cfp_root, batch_size, console)
    else:
        result, rocs, title = _run_bin(embedder, data, batch_size, console)
    title = f"{name}{' +flip' if flip else ''} on {title}"
    result.update(model=info, flip=flip, data=str(data), batch_size=batch_size)
    write_json(out / f"eval_{protocol.value}.json", result)
    plot_rocs(out / f"roc_{protocol.value}.png", rocs, title, FAR_TARGETS)
    console.print(summary_table(result, title))
    missing = result.get("images", {}).get("missing", [])
    if missing:
        console.print(f"[yellow]{len(missing)} aligned images missing (their pairs skipped):[/] {', '.join(missing)}", soft_wrap=True)
    timing = result["timing_s"]
    console.print(f"embedding {timing['embed']:.1f} s, scoring {timing['score']:.2f} s; wrote {out}/eval_{protocol.value}.json, roc_{protocol.value}.png")


def _run_cfp(embedder: Embedder, data: Path, identities: str, cfp_root: Path, batch_size: int, console: Console) -> _Run:
    from ..data.cfp import check_aligned_folder, parse_identities
    from .cfp_protocol import load_protocol
    from .evaluate import evaluate_cfp

    check_aligned_folder(data)
    selected = set(parse_identities(identities))
    result, rocs = evaluate_cfp(load_protocol(cfp_root), data, embedder, selected, batch_size, console)
    result["identities"] = identities
    return result, rocs, f"CFP {identities}"


def _run_bin(embedder: Embedder, data: Path, batch_size: int, console: Console) -> _Run:
    from ..data.verification_bin import load_verification_bin
    from .evaluate import evaluate_pairs

    pairs = load_verification_bin(data)
    result, rocs = evaluate_pairs(data.stem, pairs.crops, pairs.issame, embedder, batch_size, console)
    return result, rocs, data.name


def register(app: typer.Typer) -> None:
    """Add ``eval`` to the root app."""
    app.command("eval")(eval_command)
