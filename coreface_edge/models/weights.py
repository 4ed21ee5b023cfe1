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


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def load_insightface_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "state_dict") -> nn.Module:
    """Load an arcface_torch backbone ``state_dict`` into ``model`` with strict key/shape checks.

    Accepts a bare state dict, an arcface_torch training checkpoint (``state_dict_backbone``) and
    ``module.``-prefixed (DDP) keys. The first missing, unexpected or mis-shaped key raises a
    one-line ``CorefaceError`` naming it (a checkpoint from another architecture fails here).
    """
    if isinstance(state_dict, Mapping) and "state_dict_backbone" in state_dict:
        state_dict = state_dict["state_dict_backbone"]
    if not isinstance(state_dict, Mapping):
        raise CorefaceError(f"{source}: expected a state_dict (mapping of tensors), got {type(state_dict).__name__}")
    target = unwrap(model)
    expected = target.state_dict()
    arch = getattr(target, "architecture", "") or type(target).__name__
    given = {_strip_prefixes(k): v for k, v in state_dict.items()}
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
