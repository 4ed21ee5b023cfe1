"""The CoReFace regulariser (arXiv 2304.11668): two dropout views of one backbone pass, a
supervised contrastive loss between them with an adaptive margin, and the combined loss.

Pure torch functions plus ``AdaptiveMargin`` (the only state: a device tensor, so a training
step never reads it back to the host; checkpointed by the trainer).
The plain ArcFace phase needs none of this: ``F.cross_entropy(head(e, y), y)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CorefaceError

MASKS = ("zero", "exclude")
PROTOCOLS = ("one-way", "two-way", "2N")


def dropout_views(flat: torch.Tensor, p: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent inverted-dropout views of ``flat`` (each kept entry scaled by ``1/(1-p)``)."""
    if not 0.0 <= p < 1.0:
        raise CorefaceError(f"dropout p must be in [0, 1), got {p}")
    if p == 0.0:
        return flat, flat
    keep_scale = 1.0 / (1.0 - p)

    def view() -> torch.Tensor:
        keep = torch.rand(flat.shape, generator=generator, device=flat.device) >= p
        return flat * keep.to(flat.dtype) * keep_scale

    return view(), view()


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise CorefaceError(f"contrastive {name} {value!r} unknown; choose one of {', '.join(choices)}")


def margin_contrastive(
    sim: torch.Tensor,
    positive: torch.Tensor,
    same_label: torch.Tensor,
    margin: float | torch.Tensor,
    scale: float,
    mask: str,
    invalid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of ``s * (sim - m * [j = positive_i])`` with target ``positive_i``.

    ``same_label`` marks same-identity non-positive candidates: ``zero`` replaces their cosine
    by a constant 0 (no gradient, still in the softmax), ``exclude`` drops them from the softmax.
    ``invalid`` entries (self-pairs in 2N) are always dropped. ``margin`` is a float or a 0-d
    tensor on ``sim``'s device (the trainer's running margin: no host sync). Returns the loss and the
    gradient-free batch margin ``mean_i (sim[i, pos_i] - max_{other j} sim'[i, j])`` where
    ``sim'`` is the masked matrix (zeroed entries included under ``zero``, so the hardest
    negative is floored at 0). Rows with no candidate left are skipped; if none remain the
    batch margin equals ``margin`` (the running value is then unchanged).
    """
    rows = torch.arange(sim.shape[0], device=sim.device)
    if isinstance(margin, torch.Tensor):
        margin = margin.to(sim.dtype)
    is_positive = torch.zeros_like(sim, dtype=torch.bool)
    is_positive[rows, positive] = True
    dropped = invalid if invalid is not None else torch.zeros_like(is_positive)
    neutral = same_label & ~is_positive & ~dropped
    if mask == "zero":
        masked = sim.masked_fill(neutral, 0.0)
    else:
        masked = sim
        dropped = dropped | neutral
    logits = (masked - margin * is_positive.to(sim.dtype)) * scale
    loss = F.cross_entropy(logits.masked_fill(dropped, float("-inf")), positive)
    with torch.no_grad():
        others = masked.masked_fill(dropped | is_positive, float("-inf"))
        hardest = others.max(dim=1).values
        valid = torch.isfinite(hardest)
        gaps = (sim[rows, positive] - hardest).masked_fill(~valid, 0.0)
        count = valid.sum()
        batch_margin = torch.where(count > 0, gaps.sum() / count.clamp(min=1), margin)
    return loss, batch_margin


def contrastive_loss(
    e1: torch.Tensor,
    e2: torch.Tensor,
    labels: torch.Tensor,
    margin: float | torch.Tensor,
    scale: float = 64.0,
    mask: str = "zero",
    protocol: str = "one-way",
) -> tuple[torch.Tensor, torch.Tensor]:
    """CoReFace contrastive loss between the two views; returns ``(loss, batch_margin)``.

    ``C[i, j] = cos(e1_i, e2_j)`` over the batch (float32). Protocols:
    ``one-way``: anchors e1, candidates e2 (the reference). ``two-way``: mean of the e1->e2 and
    e2->e1 losses; the batch margin is the mean of both directions' (same diagonal, hardest
    negative taken per row of C and per row of C^T). ``2N``: SimCLR style over the 2N
    embeddings, self excluded, the positive of e1_i is e2_i and vice versa, same-label masking
    across both views; the batch margin averages all 2N rows. ``batch_margin`` has no gradient.
    """
    _check_choice("mask", mask, MASKS)
    _check_choice("protocol", protocol, PROTOCOLS)
    n = e1.shape[0]
    with torch.autocast(device_type=e1.device.type, enabled=False):
        z1, z2 = F.normalize(e1.float()), F.normalize(e2.float())
        if protocol == "2N":
            z = torch.cat([z1, z2])
            labels2 = torch.cat([labels, labels])
            index = torch.arange(2 * n, device=z.device)
            return margin_contrastive(
                z @ z.T,
                (index + n) % (2 * n),
                labels2[:, None] == labels2[None, :],
                margin,
                scale,
                mask,
                invalid=torch.eye(2 * n, dtype=torch.bool, device=z.device),
            )
        sim = z1 @ z2.T
        same = labels[:, None] == labels[None, :]
        positive = torch.arange(n, device=sim.device)
        loss, batch_margin = margin_contrastive(sim, positive, same, margin, scale, mask)
        if protocol == "two-way":
            loss_t, margin_t = margin_contrastive(sim.T, positive, same.T, margin, scale, mask)
            loss, batch_margin = 0.5 * (loss + loss_t), 0.5 * (batch_margin + margin_t)
        return loss, batch_margin


class AdaptiveMargin(nn.Module):
    """Running margin ``m <- a * m_b + (1 - a) * m`` (the reference's a = 0.99), starting at ``initial``.

    ``value`` is a float64 0-d buffer that moves with the module (``.to(device)``), so updating
    it from a device batch margin never synchronises with the host. It is not persistent:
    ``FaceTrainModule`` checkpoints it through ``get_state``/``set_state``.
    """

    value: torch.Tensor

    def __init__(self, momentum: float = 0.99, initial: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise CorefaceError(f"margin momentum must be in [0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.register_buffer("value", torch.tensor(float(initial), dtype=torch.float64), persistent=False)

    @torch.no_grad()
    def update(self, batch_margin: float | torch.Tensor) -> torch.Tensor:
        """Blend in one batch margin in place (on the device); returns ``value``."""
        batch = torch.as_tensor(batch_margin, dtype=self.value.dtype, device=self.value.device)
        self.value.mul_(1.0 - self.momentum).add_(batch, alpha=self.momentum)
        return self.value

    def get_state(self) -> dict[str, Any]:
        """``{"momentum": float, "value": 0-d tensor}`` (no host sync: ``torch.save`` copies it)."""
        return {"momentum": self.momentum, "value": self.value.detach().clone()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Load :meth:`get_state`'s dict; ``value`` may also be a plain float (older checkpoints)."""
        self.momentum = float(state["momentum"])
        self.value.copy_(torch.as_tensor(state["value"], dtype=self.value.dtype))


class CoReFaceLoss(nn.Module):
    """``ce_w * (CE(head(e1), y) + CE(head(e2), y)) + con_w * L_con(e1, e2, y)``.

    The contrastive term uses the running margin from before this batch; in training mode the
    margin is then updated (on the device) with the batch margin. ``forward`` returns tensors
    ``total, ce1, ce2, con`` and ``margin`` (the updated value, a 0-d float64 tensor; nothing is
    read back to the host). The head is held, not copied; checkpoint ``self.margin.get_state()``
    for exact resume.
    """

    def __init__(
        self,
        head: nn.Module,
        ce_weight: float = 0.5,
        con_weight: float = 0.05,
        scale: float = 64.0,
        mask: str = "zero",
        protocol: str = "one-way",
        margin_momentum: float = 0.99,
    ) -> None:
        super().__init__()
        _check_choice("mask", mask, MASKS)
        _check_choice("protocol", protocol, PROTOCOLS)
        self.head = head
        self.ce_weight = float(ce_weight)
        self.con_weight = float(con_weight)
        self.scale = float(scale)
        self.mask = mask
        self.protocol = protocol
        self.margin = AdaptiveMargin(margin_momentum)

    def forward(self, e1: torch.Tensor, e2: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        ce1 = F.cross_entropy(self.head(e1, labels), labels)
        ce2 = F.cross_entropy(self.head(e2, labels), labels)
        con, batch_margin = contrastive_loss(e1, e2, labels, self.margin.value, self.scale, self.mask, self.protocol)
        total = self.ce_weight * (ce1 + ce2) + self.con_weight * con
        if self.training:
            self.margin.update(batch_margin)
        return {"total": total, "ce1": ce1, "ce2": ce2, "con": con, "margin": self.margin.value.clone()}
