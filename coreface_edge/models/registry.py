"""Backbone registry: ``build_backbone(name, embedding_size, **kwargs)`` by name.

Every registered backbone exposes ``forward_flat(x) -> (N, F)`` (the feature map after the
final normalisation, flattened), ``project(flat) -> (N, D)`` (the shared embedding layer),
``forward(x) = project(forward_flat(x))`` and the attributes ``embedding_size``,
``flat_features`` and ``architecture``. ``build_kwargs`` records the keyword arguments used,
so an artefact can rebuild the same module.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from torch import nn

from ..errors import CorefaceError

BackboneFactory = Callable[..., nn.Module]

_BACKBONES: dict[str, BackboneFactory] = {}
_BUILTIN_MODULES = ("iresnet", "mobilefacenet", "dlib_resnet")


def _load_builtins() -> None:
    """Import the built-in backbone modules (they register themselves on import)."""
    for module in _BUILTIN_MODULES:
        importlib.import_module(f"{__package__}.{module}")


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator: register ``factory(embedding_size=..., **kwargs) -> nn.Module`` under ``name``."""

    def decorator(factory: BackboneFactory) -> BackboneFactory:
        if name in _BACKBONES and _BACKBONES[name] is not factory:
            raise ValueError(f"backbone {name!r} is already registered")
        _BACKBONES[name] = factory
        return factory

    return decorator


def list_backbones() -> list[str]:
    """Names of the registered backbones, sorted."""
    _load_builtins()
    return sorted(_BACKBONES)


def build_backbone(name: str, embedding_size: int = 512, **kwargs: Any) -> nn.Module:
    """Build the backbone ``name``; unknown names or bad arguments raise a one-line CorefaceError."""
    _load_builtins()
    factory = _BACKBONES.get(name)
    if factory is None:
        raise CorefaceError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}")
    if not isinstance(embedding_size, int) or embedding_size <= 0:
        raise CorefaceError(f"backbone {name}: embedding_size must be a positive integer, got {embedding_size!r}")
    try:
        model = factory(embedding_size=embedding_size, **kwargs)
    except (TypeError, ValueError, IndexError) as exc:  # unknown keyword, a value of the wrong kind or length
        raise CorefaceError(f"backbone {name}: bad arguments {kwargs} ({exc})") from None
    model.architecture = name
    model.build_kwargs = dict(kwargs)
    return model
