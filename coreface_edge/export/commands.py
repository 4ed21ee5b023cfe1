"""``coreface-edge export`` (checkpoint -> ONNX with parity) and ``coreface-edge build`` (ONNX -> TensorRT)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import CorefaceError
from ..progress import progress_bar


def export_command(
    checkpoint: str = typer.Argument(
        ..., help="Backbone artefact (.pt with its .json sidecar), or a shipped model's name: dlib_resnet."
    ),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="ONNX file to write [default: beside the checkpoint; in the working folder for a shipped model]."),
    bake_preprocess: bool = typer.Option(False, "--bake-preprocess", help="Graph takes uint8 BGR NHWC crops and normalises them itself."),
    fuse_flip: bool = typer.Option(False, "--fuse-flip", help="Graph returns embedding(crop) + embedding(mirror)."),
    l2_normalize: bool = typer.Option(False, "--l2-normalize", help="Graph returns L2-normalised embeddings."),
    opset: int = typer.Option(17, "--opset", min=17, help="ONNX opset (>= 17)."),
    parity_images: Optional[Path] = typer.Option(
        None, "--parity-images", help="Folder of face photos or aligned 112x112 crops for the parity check [default: packaged CFP crops]."
    ),
) -> None:
    """Export a checkpoint to ONNX (dynamic batch, BN folded, onnxslim, contract metadata), parity-checked."""
    from .onnx_export import EXPORT_STEPS, ExportOptions, default_output, export_onnx
    from .parity import load_parity_crops

    from ..pretrained import can_export, copy_packaged_export, resolve_checkpoint, shipped_name_of, shipped_onnx_path

    source = resolve_checkpoint(checkpoint)
    console = Console()
    opts = ExportOptions(bake_preprocess=bake_preprocess, fuse_flip=fuse_flip, l2_normalize=l2_normalize, opset=opset)
    if output is None:  # a shipped model's file lies in site-packages: write into the working folder
        output = default_output(source, opts) if source == Path(checkpoint) else Path(default_output(source, opts).name)
    shipped = shipped_name_of(source)
    if shipped is not None and not can_export():  # a Jetson: the packaged export is this very export
        if opts != ExportOptions():
            raise CorefaceError(
                f"{shipped}: exporting with other options needs torch and onnxslim (pip install 'coreface-edge[train]'); "
                f"the packaged export with the default options is {shipped_onnx_path(shipped)}"
            )
        copy_packaged_export(shipped, output)
        console.print(f"torch/onnxslim not installed: copied the packaged export of {shipped} (default options, parity-checked "
                      f"when it was packaged) to {output}, with its operating threshold", soft_wrap=True)  # fmt: skip
        return
    crops = load_parity_crops(parity_images)
    with progress_bar(console, transient=True) as progress:
        task = progress.add_task("export", total=len(EXPORT_STEPS))

        def on_step(name: str) -> None:
            progress.update(task, description=name, completed=EXPORT_STEPS.index(name))

        result = export_onnx(source, output, opts, crops, on_step)
        progress.update(task, completed=len(EXPORT_STEPS))
    table = Table(title=f"export {source.name} ({result.contract.architecture})")
    for column in ("file", "size", "opset", "input", "faces", "min cosine", "max abs diff", "time"):
        table.add_column(column)
    c = result.contract
    table.add_row(
        result.path.name,
        f"{result.size_bytes / 2**20:.1f} MiB",
        str(result.opset),
        f"{c.input_name} {c.dtype} {c.layout}" + (" +flip" if c.flip_fused else "") + (" +L2" if c.l2_normalized else ""),
        str(result.parity.faces),
        f"{result.parity.min_cosine:.6f}",
        f"{result.parity.max_abs_diff:.2e} (rel {result.parity.max_rel_diff:.1e})",
        f"{result.seconds:.1f} s",
    )
    console.print(table)
    console.print(f"parity vs PyTorch on {result.parity.faces} faces passed; wrote {result.path}", soft_wrap=True)
    if result.threshold is not None:
        console.print(f"operating threshold (gate and enroll use it): {result.threshold}", soft_wrap=True)


def build_command(
    model: Path = typer.Argument(..., help="ONNX model: FP32, FP16 (FP32 I/O) or Q/DQ INT8."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Engine file [default: MODEL.<precision>.engine]."),
    precision: str = typer.Option("fp16", "--precision", help="fp32 | fp16 | int8 (int8 needs a Q/DQ ONNX)."),
    min_batch: int = typer.Option(1, "--min-batch", min=1),
    opt_batch: int = typer.Option(8, "--opt-batch", min=1),
    max_batch: int = typer.Option(32, "--max-batch", min=1),
    workspace_mb: int = typer.Option(1024, "--workspace-mb", min=1, help="Builder workspace memory pool limit."),
    timing_cache: Optional[Path] = typer.Option(None, "--timing-cache", help="Timing cache file, loaded if present and saved back."),
    dla_core: Optional[int] = typer.Option(None, "--dla-core", min=0, help="Run on this DLA core (Jetson Orin), GPU fallback on; DLA needs one batch size (min = opt = max)."),
) -> None:
    """Build a TensorRT engine (TensorRT 10 or 11) and its JSON sidecar."""
    from .tensorrt_builder import BuildOptions, build_engine

    console = Console()
    output = output or model.with_name(f"{model.stem}.{precision}.engine")
    opts = BuildOptions(precision, min_batch, opt_batch, max_batch, workspace_mb, timing_cache, dla_core)
    with console.status(f"building {precision} engine from {model.name} (minutes on a Jetson)"):
        result = build_engine(model, output, opts)
    info = result.info
    table = Table(title=f"TensorRT {info.tensorrt_version} on {info.gpu_name} (compute {info.compute_capability})")
    for column in ("engine", "size", "precision", "batch min/opt/max", "typing", "DLA", "build time"):
        table.add_column(column)
    table.add_row(
        result.engine.name,
        f"{result.size_bytes / 2**20:.1f} MiB",
        info.precision,
        f"{info.min_batch}/{info.opt_batch}/{info.max_batch}",
        "strong" if info.strongly_typed else "weak",
        "-" if info.dla_core is None else str(info.dla_core),
        f"{result.seconds:.1f} s",
    )
    console.print(table)
    console.print(f"wrote {result.engine} and {result.sidecar.name}", soft_wrap=True)
    _carry_threshold(model, result.engine, info.precision, info.contract.fingerprint, console)


def _carry_threshold(model: Path, engine: Path, precision: str, fingerprint: str, console: Console) -> None:
    """FP32/FP16 engines score like their ONNX: they take its operating threshold; INT8 does not."""
    from ..threshold_file import carry_threshold, sidecar_path

    if not sidecar_path(model).is_file():
        return
    if precision == "int8":
        console.print(f"[yellow]note:[/] INT8 scores differ from {model.name}'s: measure this engine's threshold (coreface-edge threshold --store)")
        return
    try:
        carried = carry_threshold(model, engine, fingerprint, f"measured on {model.name}, carried to this {precision} engine")
    except CorefaceError as exc:
        console.print(f"[yellow]note:[/] threshold not carried: {exc}", soft_wrap=True)
        return
    console.print(f"operating threshold of {model.name} carried to {carried}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
    app.command("build")(build_command)
