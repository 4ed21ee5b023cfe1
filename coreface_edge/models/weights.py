"""Strict state-dict loading with one-line errors (arcface_torch checkpoints and our artefacts)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..errors import CorefaceError

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_OPTIONAL_SUFFIX = "num_batches_tracked"  # BN step counters: absent from some exported checkpoints


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP / ``torch.compile`` wrapper."""
    while True:
        for attribute in ("module", "_orig_mod"):
            inner = getattr(model, attribute, None)
            if isinstance(inner, nn.Module):
                model = inner
                break
        else:
            return model


def strip_wrapper_prefixes(key: str) -> str:
    """A state-dict key without DDP (``module.``) and ``torch.compile`` (``_orig_mod.``) prefixes."""
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def _backbone_weights(stored: object, arch: str, source: str) -> object:
    """The backbone weights inside a known container (else ``stored`` itself)."""
    if not isinstance(stored, Mapping):
        return stored
    if "state_dict_backbone" in stored:  # arcface_torch training checkpoint
        return stored["state_dict_backbone"]
    fmt = stored.get("format")
    if isinstance(fmt, str) and fmt.startswith("coreface-edge-backbone/"):  # our artefact
        if stored.get("architecture") != arch:
            raise CorefaceError(f"{source}: a {stored.get('architecture')} backbone artefact, the config asks for {arch}")
        return stored["state_dict"]
    if isinstance(fmt, str) and fmt.startswith("coreface_edge.training/"):  # our training checkpoint
        return {k[len("backbone."):]: v for k, v in stored["module"].items() if k.startswith("backbone.")}
    return stored


def load_insightface_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "state_dict") -> nn.Module:
    """Load an arcface_torch backbone ``state_dict`` into ``model`` with strict key/shape checks.

    Accepts a bare state dict, an arcface_torch training checkpoint (``state_dict_backbone``),
    ``module.``-prefixed (DDP) keys, and coreface-edge's own files: a backbone artefact
    (``backbone.pt``) or a training checkpoint (``last.pt``, its ``backbone.*`` weights). The first
    missing, unexpected or mis-shaped key raises a one-line ``CorefaceError`` naming it (a
    checkpoint from another architecture fails here).
    """
    target = unwrap(model)
    arch = getattr(target, "architecture", "") or type(target).__name__
    state_dict = _backbone_weights(state_dict, arch, source)
    if not isinstance(state_dict, Mapping):
        raise CorefaceError(f"{source}: expected a state_dict (mapping of tensors), got {type(state_dict).__name__}")
    expected = target.state_dict()
    given = {strip_wrapper_prefixes(k): v for k, v in state_dict.items()}
    for key, value in given.items():
        if key not in expected:
            raise CorefaceError(f"{source}: unexpected key {key!r} for a {arch} backbone (another architecture?)")
        if not isinstance(value, torch.Tensor):
            raise CorefaceError(f"{source}: key {key!r} holds {type(value).__name__}, not a tensor")
        if value.shape != expected[key].shape:
            raise CorefaceError(
                f"{source}: key {key!r} has shape {tuple(value.shape)}, {arch} expects {tuple(expected[key].shape)}"
            )
    missing = [k for k in expected if k not in given and not k.endswith(_OPTIONAL_SUFFIX)]
    if missing:
        raise CorefaceError(f"{source}: missing key {missing[0]!r} for a {arch} backbone ({len(missing)} missing)")
    target.load_state_dict(given, strict=False)
    return model
