"""The trained module: backbone + margin head + CoReFace loss, one forward per step.

Single-view phase: ``project(dropout(flat, p))`` -> margin head -> cross-entropy.
Two-view phase: two dropout masks on the same flat feature -> shared ``project`` -> e1, e2
-> ``CoReFaceLoss``. The backbone body runs once per image in both phases.
With a teacher's embeddings (``distill.teacher``), the dropout-free embedding is distilled too
(``models.distill``): the terms ``distill_emb`` and ``distill_rel`` join the total.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.coreface import CoReFaceLoss, dropout_views
from ..models.distill import embedding_distillation, relation_distillation
from ..models.heads import build_head
from .config import TrainConfig


class FaceTrainModule(nn.Module):
    """Wraps what DDP synchronises: the backbone and the loss (head weights; the adaptive margin
    buffer stays per process)."""

    def __init__(self, backbone: nn.Module, cfg: TrainConfig, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        head = build_head(
            cfg.head.name,
            embedding_size=backbone.embedding_size,
            num_classes=num_classes,
            scale=cfg.head.scale,
            margin=cfg.head.margin,
            sample_rate=cfg.head.sample_rate,
        )
        m = cfg.method
        self.loss = CoReFaceLoss(
            head,
            ce_weight=m.ce_weight,
            con_weight=m.con_weight,
            scale=m.con_scale,
            mask=m.mask,
            protocol=m.protocol,
            margin_momentum=m.margin_momentum,
        )
        self.single_dropout = m.single_dropout
        self.two_view_dropout = m.two_view_dropout
        self.distill_weights = (cfg.distill.embedding_weight, cfg.distill.relation_weight)

    def forward(self, images: torch.Tensor, labels: torch.Tensor, two_view: bool, teacher: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Loss terms as device tensors (``margin``: the running margin after this step);
        ``teacher``: the frozen teacher's embeddings of ``images``, to distil."""
        flat = self.backbone.forward_flat(images)
        if two_view:
            v1, v2 = dropout_views(flat, self.two_view_dropout)
            out = self.loss(self.backbone.project(v1), self.backbone.project(v2), labels)
        else:
            emb = self.backbone.project(F.dropout(flat, self.single_dropout, training=self.training))
            ce = F.cross_entropy(self.loss.head(emb, labels), labels)
            out = {"total": ce, "ce1": ce, "margin": self.loss.margin.value.clone()}
        if teacher is not None:
            out.update(self._distill(self.backbone.project(flat), teacher, out["total"]))
        return out

    def _distill(self, student: torch.Tensor, teacher: torch.Tensor, total: torch.Tensor) -> dict[str, torch.Tensor]:
        w_emb, w_rel = self.distill_weights
        terms = {"distill_rel": relation_distillation(student, teacher)}
        if w_emb > 0:
            terms["distill_emb"] = embedding_distillation(student, teacher)
        extra = w_rel * terms["distill_rel"] + w_emb * terms.get("distill_emb", 0.0)
        return {**terms, "total": total + extra}

    def get_extra_state(self) -> dict[str, Any]:
        """The adaptive margin (momentum and a device tensor) travels in ``state_dict`` for exact resume."""
        return self.loss.margin.get_state()

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Also reads older checkpoints, whose margin ``value`` is a plain float."""
        self.loss.margin.set_state(state)
