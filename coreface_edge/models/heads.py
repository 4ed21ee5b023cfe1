"""Margin heads (ArcFace, CosFace) and a sampled classifier (Partial FC style).

Every head holds the class centres ``weight (C, D)`` and offers ``forward(embeddings, labels)
-> logits (N, C)``; the training loss is always ``F.cross_entropy(head(e, y), y)``. The margin
arithmetic is pure functions of the cosine matrix (``arcface_logits``, ``cosface_logits``),
computed in float32 even under autocast: at s = 64 bf16 cosines would shift logits by ~0.25.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CorefaceError

COS_EPS = 1e-6  # keep |cos| <= 1 - eps so sqrt(1 - cos^2) has a finite gradient


def arcface_logits(cos: torch.Tensor, labels: torch.Tensor, scale: float, margin: float, easy_margin: bool = False) -> torch.Tensor:
    """``s * cos(theta_y + m)`` on the target column, ``s * cos(theta_j)`` elsewhere.

    Uses ``cos(t + m) = cos t cos m - sin t sin m`` on cosines clamped to ``[-1+eps, 1-eps]``
    (finite gradients at theta = 0 and pi). Where ``theta + m`` would pass pi the function is no
    longer monotonic, so (as arcface_torch) targets with ``theta > pi - m`` get ``cos t - m sin m``
    instead; ``easy_margin`` applies the margin only where ``cos t > 0``.
    """
    cos = cos.clamp(-1.0 + COS_EPS, 1.0 - COS_EPS)
    target = cos.gather(1, labels.view(-1, 1))
    sin = torch.sqrt(1.0 - target * target)
    with_margin = target * math.cos(margin) - sin * math.sin(margin)
    if easy_margin:
        with_margin = torch.where(target > 0, with_margin, target)
    else:
        with_margin = torch.where(target > math.cos(math.pi - margin), with_margin, target - math.sin(math.pi - margin) * margin)
    return cos.scatter(1, labels.view(-1, 1), with_margin) * scale


def cosface_logits(cos: torch.Tensor, labels: torch.Tensor, scale: float, margin: float) -> torch.Tensor:
    """``s * (cos(theta_y) - m)`` on the target column, ``s * cos(theta_j)`` elsewhere."""
    target = cos.gather(1, labels.view(-1, 1))
    return cos.scatter(1, labels.view(-1, 1), target - margin) * scale


class MarginHead(nn.Module):
    """Normalised class centres plus an additive margin on the target class."""

    def __init__(self, embedding_size: int, num_classes: int, scale: float, margin: float) -> None:
        super().__init__()
        if num_classes < 2:
            raise CorefaceError(f"margin head: need at least 2 classes, got {num_classes}")
        self.embedding_size = embedding_size
        self.num_classes = num_classes
        self.scale = float(scale)
        self.margin = float(margin)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size).normal_(0, 0.01))

    def cosine(self, embeddings: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """float32 ``cos(e_i, w_c)`` for ``weight`` (default: all centres)."""
        weight = self.weight if weight is None else weight
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return F.linear(F.normalize(embeddings.float()), F.normalize(weight.float()))

    def apply_margin(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.apply_margin(self.cosine(embeddings), labels)

    def extra_repr(self) -> str:
        return f"embedding_size={self.embedding_size}, num_classes={self.num_classes}, scale={self.scale}, margin={self.margin}"


class ArcFaceHead(MarginHead):
    """Additive angular margin: ``s * cos(theta_y + m)`` (ArcFace)."""

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0, margin: float = 0.5, easy_margin: bool = False) -> None:
        super().__init__(embedding_size, num_classes, scale, margin)
        self.easy_margin = easy_margin

    def apply_margin(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return arcface_logits(cos, labels, self.scale, self.margin, self.easy_margin)


class CosFaceHead(MarginHead):
    """Additive cosine margin: ``s * (cos(theta_y) - m)`` (CosFace)."""

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0, margin: float = 0.35) -> None:
        super().__init__(embedding_size, num_classes, scale, margin)

    def apply_margin(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return cosface_logits(cos, labels, self.scale, self.margin)


def sample_classes(labels: torch.Tensor, num_classes: int, num_sample: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted class indices: every class in ``labels`` plus random others up to ``num_sample``;
    and ``labels`` re-indexed into that subset."""
    priority = torch.rand(num_classes, generator=generator, device=labels.device)
    priority[labels] = 2.0  # positives always win
    count = max(num_sample, int(torch.unique(labels).numel()))
    index = torch.topk(priority, count, sorted=False).indices.sort().values
    return index, torch.searchsorted(index, labels)


class SampledHead(nn.Module):
    """Partial-FC-style classifier: each training step scores the batch's own classes plus a
    random ``sample_rate`` share of the other centres; evaluation scores all.

    It pays with hundreds of thousands of identities, where the ``N x C x D`` centre matmul
    (and its backward) dominates step time (``sample_rate`` 0.1-0.3 keeps accuracy in the
    Partial FC paper). With a few thousand classes it only adds noise. Unlike insightface's
    Partial FC the centres are not sharded across GPUs and the ``N x C`` logits stay dense
    (unsampled columns are ``-inf``), so the saving is compute, not memory.
    """

    def __init__(self, head: MarginHead, sample_rate: float = 1.0, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 < sample_rate <= 1.0:
            raise CorefaceError(f"sampled head: sample_rate must be in (0, 1], got {sample_rate}")
        self.head = head
        self.sample_rate = float(sample_rate)
        self.generator = generator
        self.num_sample = max(2, math.ceil(sample_rate * head.num_classes))

    @property
    def weight(self) -> nn.Parameter:
        return self.head.weight

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """All-class logits; in training, classes left out of this step's sample are ``-inf``."""
        if not self.training or self.sample_rate >= 1.0:
            return self.head(embeddings, labels)
        index, targets = sample_classes(labels, self.head.num_classes, self.num_sample, self.generator)
        sampled = self.head.apply_margin(self.head.cosine(embeddings, self.head.weight[index]), targets)
        logits = sampled.new_full((embeddings.shape[0], self.head.num_classes), float("-inf"))
        return logits.index_copy(1, index, sampled)


HEADS: dict[str, type[MarginHead]] = {"arcface": ArcFaceHead, "cosface": CosFaceHead}


def build_head(
    name: str,
    embedding_size: int,
    num_classes: int,
    scale: float = 64.0,
    margin: float | None = None,
    sample_rate: float = 1.0,
) -> nn.Module:
    """``arcface`` (default m 0.5) or ``cosface`` (default m 0.35); ``sample_rate < 1`` wraps it in
    a ``SampledHead``."""
    cls = HEADS.get(name)
    if cls is None:
        raise CorefaceError(f"unknown head {name!r}; known: {', '.join(sorted(HEADS))}")
    head = cls(embedding_size, num_classes, scale=scale) if margin is None else cls(embedding_size, num_classes, scale=scale, margin=margin)
    return head if sample_rate == 1.0 else SampledHead(head, sample_rate)
