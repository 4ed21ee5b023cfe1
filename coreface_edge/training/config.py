"""Training configuration: a dataclass tree loaded from YAML or TOML plus ``key.sub=value`` overrides.

Every key is checked against the tree before any work starts: an unknown key or a value of the
wrong type is a one-line :class:`CorefaceError` naming the key.
"""

from __future__ import annotations

import sys
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import CorefaceError


@dataclass
class ModelConfig:
    backbone: str = "mobilefacenet"
    embedding_size: int = 512
    init_from: str = ""  # backbone weights to start from: arcface_torch checkpoint, our backbone.pt or last.pt
    options: dict[str, Any] = field(default_factory=dict)  # extra build_backbone kwargs, e.g. blocks
    freeze_bn: bool = False  # keep BatchNorm statistics fixed (fine-tuning with small per-GPU batches)
    freeze: list[str] = field(default_factory=list)  # parameter-name prefixes kept fixed (e.g. [stem, blocks.0]): fine-tune the rest


@dataclass
class HeadConfig:
    name: str = "arcface"  # arcface | cosface
    scale: float = 64.0
    margin: float | None = None  # None: the head's own (ArcFace 0.5, CosFace 0.35)
    sample_rate: float = 1.0  # < 1: Partial FC style sampled classifier
    init: str = "random"  # random | centroids: class centres start at each identity's mean embedding (fine-tuning)


@dataclass
class MethodConfig:
    """The CoReFace schedule: one dropout view until ``switch_epoch``, then two views."""

    name: str = "coreface"  # coreface | arcface (single view throughout)
    switch_epoch: int = -1  # -1: the first LR decay (first entry of optim.milestones)
    single_dropout: float = 0.4
    two_view_dropout: float = 0.6
    ce_weight: float = 0.5
    con_weight: float = 0.05
    con_scale: float = 64.0
    mask: str = "zero"  # zero | exclude
    protocol: str = "one-way"  # one-way | two-way | 2N
    margin_momentum: float = 0.99


@dataclass
class DistillConfig:
    """A frozen teacher's embeddings guide the student (``teacher`` empty: no distillation)."""

    teacher: str = ""  # backbone artefact (.pt) or a shipped model's name
    embedding_weight: float = 1.0  # 1 - cos(student, teacher); needs the teacher's embedding size
    relation_weight: float = 1.0  # batch cosine-similarity matrices, any embedding sizes


@dataclass
class DataConfig:
    format: str = "imagefolder"  # imagefolder | recordio
    root: str = ""
    identities: str = ""  # e.g. "1-400"; empty: every identity folder
    workers: int = 2
    flip: bool = True


@dataclass
class OptimConfig:
    epochs: int = 20
    batch_size: int = 64  # per process
    lr: float = 0.1  # for ``base_batch`` images per step; scaled linearly with the global batch
    base_batch: int = 512
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: list[int] = field(default_factory=lambda: [10, 16])
    gamma: float = 0.1
    clip_grad: float = 5.0  # gradient-norm clip on the backbone only; 0 disables
    steps_per_epoch: int = 0  # > 0: cap each epoch at this many steps (short schedules); 0: full pass


@dataclass
class EvalConfig:
    every_epochs: int = 1  # 0: no periodic evaluation
    cfp_root: str = ""  # the CFP release (its Protocol/ folder); empty: no evaluation
    aligned_dir: str = ""  # aligned CFP (``data prepare-cfp`` output); empty: data.root (an aligned CFP folder)
    identities: str = "401-500"  # the open-set evaluation identities
    bins: list[str] = field(default_factory=list)  # insightface verification .bin files (lfw.bin, cfp_fp.bin, agedb_30.bin)
    batch_size: int = 128


@dataclass
class TrainConfig:
    output: str = "runs/train"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | none
    threads: int = 0  # torch intra-op threads; 0 keeps the default
    log_every: int = 10  # steps between metric lines
    checkpoint_every: int = 0  # steps between mid-epoch checkpoints; 0: at epoch ends only
    max_steps: int = 0  # stop (with a checkpoint) after this many steps in total; 0: no limit
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def first_two_view_epoch(self) -> int | None:
        """The epoch (0-based) at which the two-view CoReFace loss starts; None for plain ArcFace."""
        if self.method.name != "coreface":
            return None
        if self.method.switch_epoch >= 0:
            return self.method.switch_epoch
        return self.optim.milestones[0] if self.optim.milestones else 0


CHOICES = {
    "device": ("auto", "cpu", "cuda"),
    "amp": ("auto", "bf16", "fp16", "none"),
    "head.name": ("arcface", "cosface"),
    "head.init": ("random", "centroids"),
    "method.name": ("coreface", "arcface"),
    "method.mask": ("zero", "exclude"),
    "method.protocol": ("one-way", "two-way", "2N"),
    "data.format": ("imagefolder", "recordio"),
}

# Keys that may differ between a checkpoint and the resumed run without changing the result.
RESUME_FREE_KEYS = frozenset(
    {"output", "device", "threads", "log_every", "checkpoint_every", "max_steps", "data.workers", "data.root", "eval.every_epochs", "eval.cfp_root", "eval.aligned_dir", "eval.identities", "eval.bins", "eval.batch_size"}
)


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML/TOML file (or start from defaults when ``path`` is None) and apply overrides."""
    raw: dict[str, Any] = {} if path is None else _read_file(Path(path))
    source = str(path) if path is not None else "config"
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise CorefaceError(f"override {item!r}: expected key.sub=value")
        _set_dotted(raw, key.strip(), _parse_override(item, text))
    cfg = _build(TrainConfig, raw, "", source)
    validate(cfg, source)
    return cfg


def dump_config(cfg: TrainConfig) -> str:
    """The config as YAML text that :func:`load_config` reads back to the same tree."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def validate(cfg: TrainConfig, source: str) -> None:
    """Range and choice checks the type system cannot express."""
    for key, allowed in CHOICES.items():
        value = _get_dotted(cfg, key)
        if value not in allowed:
            raise CorefaceError(f"{source}: {key} must be one of {list(allowed)}, got {value!r}")
    checks = [
        ("optim.epochs", cfg.optim.epochs >= 1, ">= 1"),
        ("optim.batch_size", cfg.optim.batch_size >= 2, ">= 2"),
        ("optim.base_batch", cfg.optim.base_batch >= 1, ">= 1"),
        ("optim.lr", cfg.optim.lr > 0, "> 0"),
        ("optim.momentum", 0 <= cfg.optim.momentum < 1, "in [0, 1)"),
        ("optim.weight_decay", cfg.optim.weight_decay >= 0, ">= 0"),
        ("optim.gamma", cfg.optim.gamma > 0, "> 0"),
        ("optim.clip_grad", cfg.optim.clip_grad >= 0, ">= 0"),
        ("optim.steps_per_epoch", cfg.optim.steps_per_epoch >= 0, ">= 0"),
        ("log_every", cfg.log_every >= 1, ">= 1"),
        ("checkpoint_every", cfg.checkpoint_every >= 0, ">= 0"),
        ("max_steps", cfg.max_steps >= 0, ">= 0"),
        ("threads", cfg.threads >= 0, ">= 0"),
        ("model.embedding_size", cfg.model.embedding_size >= 1, ">= 1"),
        ("head.scale", cfg.head.scale > 0, "> 0"),
        ("head.margin", cfg.head.margin is None or cfg.head.margin >= 0, ">= 0"),
        ("data.workers", cfg.data.workers >= 0, ">= 0"),
        ("eval.every_epochs", cfg.eval.every_epochs >= 0, ">= 0"),
        ("eval.batch_size", cfg.eval.batch_size >= 1, ">= 1"),
        ("head.sample_rate", 0 < cfg.head.sample_rate <= 1, "in (0, 1]"),
        ("method.single_dropout", 0 <= cfg.method.single_dropout < 1, "in [0, 1)"),
        ("method.two_view_dropout", 0 <= cfg.method.two_view_dropout < 1, "in [0, 1)"),
        ("method.margin_momentum", 0 <= cfg.method.margin_momentum <= 1, "in [0, 1]"),
        ("distill.embedding_weight", cfg.distill.embedding_weight >= 0, ">= 0"),
        ("distill.relation_weight", cfg.distill.relation_weight >= 0, ">= 0"),
        ("optim.milestones", list(cfg.optim.milestones) == sorted(cfg.optim.milestones), "increasing"),
    ]
    for key, ok, want in checks:
        if not ok:
            raise CorefaceError(f"{source}: {key} must be {want}, got {_get_dotted(cfg, key)!r}")
    if cfg.eval.cfp_root and not cfg.eval.aligned_dir and cfg.data.format != "imagefolder":
        raise CorefaceError(f"{source}: eval.aligned_dir is not set (the prepare-cfp output to evaluate on)")
    switch = cfg.first_two_view_epoch()
    if switch is not None and switch >= cfg.optim.epochs:
        raise CorefaceError(
            f"{source}: the CoReFace two-view phase would start at epoch {switch} (method.switch_epoch, or the first of "
            f"optim.milestones) but the run has optim.epochs={cfg.optim.epochs}: it would train plain ArcFace only "
            "(set method.name=arcface, or an earlier method.switch_epoch)"
        )
    if not cfg.data.root:
        raise CorefaceError(f"{source}: data.root is not set (an aligned image folder or a RecordIO prefix)")


def config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two config dicts, ignoring :data:`RESUME_FREE_KEYS`."""
    fa, fb = _flatten(a), _flatten(b)
    return sorted(k for k in set(fa) | set(fb) if k not in RESUME_FREE_KEYS and fa.get(k) != fb.get(k))


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CorefaceError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            data = _toml_module(path).loads(text)
        else:
            data = yaml.safe_load(text)
    except CorefaceError:
        raise
    except Exception as exc:  # yaml.YAMLError, tomllib.TOMLDecodeError
        raise CorefaceError(f"{path}: cannot parse ({_parse_error(exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CorefaceError(f"{path}: expected a mapping at the top level")
    return data


def _parse_override(item: str, text: str) -> Any:
    """The YAML value of one ``key=value`` override (empty text: the empty string)."""
    if not text.strip():
        return ""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CorefaceError(f"override {item!r}: cannot parse the value ({_parse_error(exc)})") from None


def _parse_error(exc: Exception) -> str:
    """One line for a YAML/TOML error, with its line and column where the parser gives them."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is not None and problem:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(exc).splitlines()[0]


def _toml_module(path: Path) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:
        import tomli  # type: ignore[import-not-found]
    except ImportError:
        raise CorefaceError(f"{path}: reading TOML on Python < 3.11 needs the 'tomli' package (or use YAML)") from None
    return tomli


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise CorefaceError(f"override {key}: {part} is not a section")
    node[parts[-1]] = value


def _get_dotted(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if not isinstance(raw, dict):
        raise CorefaceError(f"{source}: {prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise CorefaceError(f"{source}: unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(known))})")
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        kind = hints[name]
        key = f"{prefix}{name}"
        if is_dataclass(kind):
            kwargs[name] = _build(kind, value, f"{key}.", source)
        else:
            kwargs[name] = _coerce(kind, value, key, source)
    return cls(**kwargs)


def _coerce(kind: Any, value: Any, key: str, source: str) -> Any:
    args = typing.get_args(kind)
    if type(None) in args:  # ``X | None``: None, or a value of X
        if value is None:
            return None
        (kind,) = [a for a in args if a is not type(None)]
    if typing.get_origin(kind) is dict:
        if not isinstance(value, dict):
            raise CorefaceError(f"{source}: {key} must be a mapping, got {value!r}")
        return dict(value)
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        if not isinstance(value, list):
            raise CorefaceError(f"{source}: {key} must be a list of {item.__name__}, got {value!r}")
        return [_coerce(item, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):  # YAML 1.1 reads 1e30 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if not ok:
        raise CorefaceError(f"{source}: {key} must be {kind.__name__}, got {value!r}")
    return value

