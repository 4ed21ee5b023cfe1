"""Knowledge distillation from a frozen teacher embedder: pure torch losses.

``embedding_distillation``: the student's embedding points where the teacher's does
(``1 - cos``, per sample; needs equal dimensions). ``relation_distillation``: the student's
batch similarity matrix matches the teacher's (any dimensions): what a verifier scores is the
cosine between two faces, so this is the relation that matters at the gate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def embedding_distillation(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cos(student_i, teacher_i)`` over the batch; ``(N, D)`` each."""
    return (1.0 - F.cosine_similarity(student, teacher.to(student.dtype), dim=1)).mean()


def relation_distillation(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the off-diagonal cosine-similarity matrices; ``(N, Ds)``, ``(N, Dt)``."""
    s = F.normalize(student, dim=1)
    t = F.normalize(teacher.to(student.dtype), dim=1)
    n = s.shape[0]
    if n < 2:
        return s.sum() * 0.0
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=s.device)
    return ((s @ s.T - t @ t.T)[off_diagonal] ** 2).mean()
