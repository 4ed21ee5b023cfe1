"""Margin heads, dropout views and the CoReFace loss against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coreface_edge.errors import CorefaceError
from coreface_edge.models import (
    AdaptiveMargin,
    ArcFaceHead,
    CoReFaceLoss,
    CosFaceHead,
    SampledHead,
    build_backbone,
    build_head,
    contrastive_loss,
    dropout_views,
)


def _lse(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def reference_contrastive(e1, e2, labels, margin, scale, mask, protocol):
    """Loop-by-loop NumPy version of the CoReFace contrastive loss (independent of the module)."""
    z1 = e1 / np.linalg.norm(e1, axis=1, keepdims=True)
    z2 = e2 / np.linalg.norm(e2, axis=1, keepdims=True)
    n = len(labels)

    def rows(anchors, cands, lab, positive_of, skip_self):
        losses, margins = [], []
        for i in range(len(anchors)):
            pos = positive_of(i)
            logits, negatives = [], []
            for j in range(len(cands)):
                c = float(anchors[i] @ cands[j])
                if skip_self and j == i:
                    continue
                if j == pos:
                    logits.append(scale * (c - margin))
                    pos_logit, pos_cos = logits[-1], c
                elif lab[j] == lab[i]:
                    if mask == "zero":
                        logits.append(0.0)
                        negatives.append(0.0)
                else:
                    logits.append(scale * c)
                    negatives.append(c)
            losses.append(_lse(logits) - pos_logit)
            if negatives:
                margins.append(pos_cos - max(negatives))
        return float(np.mean(losses)), (float(np.mean(margins)) if margins else margin)

    if protocol == "2N":
        z = np.concatenate([z1, z2])
        return rows(z, z, np.concatenate([labels, labels]), lambda i: (i + n) % (2 * n), True)
    forward = rows(z1, z2, labels, lambda i: i, False)
    if protocol == "one-way":
        return forward
    backward = rows(z2, z1, labels, lambda i: i, False)
    return 0.5 * (forward[0] + backward[0]), 0.5 * (forward[1] + backward[1])


def test_contrastive_two_samples_by_hand() -> None:
    # C = cos(e1_i, e2_j) = [[1, 0.6], [0, 0.8]]; m = 0.1, s = 2.
    e1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    e2 = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    loss, bm = contrastive_loss(e1, e2, torch.tensor([0, 1]), margin=0.1, scale=2.0)
    expected = 0.5 * ((math.log(math.exp(1.8) + math.exp(1.2)) - 1.8) + (math.log(math.exp(0.0) + math.exp(1.4)) - 1.4))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert bm.item() == pytest.approx(0.5 * ((1 - 0.6) + (0.8 - 0.0)), rel=1e-5)
    # Same identity: "zero" replaces the off-diagonal cosines by 0 (still in the softmax,
    # and the hardest negative is floored at 0); "exclude" drops them, leaving only the positive.
    same = torch.tensor([3, 3])
    loss, bm = contrastive_loss(e1, e2, same, margin=0.1, scale=2.0, mask="zero")
    expected = 0.5 * ((math.log(math.exp(1.8) + 1.0) - 1.8) + (math.log(1.0 + math.exp(1.4)) - 1.4))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert bm.item() == pytest.approx(0.5 * (1.0 + 0.8), rel=1e-5)
    loss, bm = contrastive_loss(e1, e2, same, margin=0.1, scale=2.0, mask="exclude")
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert bm.item() == pytest.approx(0.1)  # no negatives at all: the running margin stays put


@pytest.mark.parametrize("protocol", ["one-way", "two-way", "2N"])
@pytest.mark.parametrize("mask", ["zero", "exclude"])
def test_contrastive_matches_reference(protocol: str, mask: str) -> None:
    rng = np.random.default_rng(7)
    e1 = rng.normal(size=(4, 3))
    e2 = e1 + 0.5 * rng.normal(size=(4, 3))
    labels = np.array([0, 0, 1, 2])
    want_loss, want_margin = reference_contrastive(e1, e2, labels, 0.2, 4.0, mask, protocol)
    loss, bm = contrastive_loss(torch.tensor(e1, dtype=torch.float32), torch.tensor(e2, dtype=torch.float32),
                                torch.tensor(labels), margin=0.2, scale=4.0, mask=mask, protocol=protocol)
    assert loss.item() == pytest.approx(want_loss, rel=1e-4)
    assert bm.item() == pytest.approx(want_margin, rel=1e-4)
    assert not bm.requires_grad


def test_contrastive_zero_mask_entries_carry_no_gradient() -> None:
    """``zero`` must equal a softmax in which the same-label entries are the constant 0."""
    e1 = torch.tensor([[1.0, 0.2], [0.3, 1.0], [-1.0, 0.4]], requires_grad=True)
    e2 = torch.tensor([[0.9, 0.1], [0.1, 1.0], [-0.8, 0.5]], requires_grad=True)
    loss, _ = contrastive_loss(e1, e2, torch.tensor([0, 0, 1]), margin=0.0, scale=1.0, mask="zero")
    loss.backward()
    e1b, e2b = e1.detach().clone().requires_grad_(), e2.detach().clone().requires_grad_()
    c = F.normalize(e1b) @ F.normalize(e2b).T
    zero = torch.tensor(0.0)
    logits = torch.stack([
        torch.stack([c[0, 0], zero, c[0, 2]]),
        torch.stack([zero, c[1, 1], c[1, 2]]),
        c[2],
    ])
    manual = F.cross_entropy(logits, torch.arange(3))
    manual.backward()
    assert loss.item() == pytest.approx(manual.item(), rel=1e-6)
    torch.testing.assert_close(e1.grad, e1b.grad)
    torch.testing.assert_close(e2.grad, e2b.grad)


def test_contrastive_rejects_unknown_options() -> None:
    e = torch.randn(2, 4)
    with pytest.raises(CorefaceError, match="contrastive mask 'drop' unknown"):
        contrastive_loss(e, e, torch.tensor([0, 1]), 0.0, mask="drop")
    with pytest.raises(CorefaceError, match="contrastive protocol '3N' unknown"):
        CoReFaceLoss(ArcFaceHead(4, 2), protocol="3N")


def test_adaptive_margin_update_and_state() -> None:
    m = AdaptiveMargin()
    assert m.value.item() == 0.0 and m.value.dtype == torch.float64
    assert m.update(0.5).item() == pytest.approx(0.99 * 0.5)
    assert m.update(torch.tensor(0.3)).item() == pytest.approx(0.99 * 0.3 + 0.01 * 0.495)
    other = AdaptiveMargin(momentum=0.5, initial=1.0)
    assert other.update(0.0).item() == pytest.approx(0.5)
    other.set_state(m.get_state())
    assert (other.momentum, other.value.item()) == (0.99, m.value.item())
    other.set_state({"momentum": 0.9, "value": 0.25})  # older checkpoints hold a plain float
    assert (other.momentum, other.value.item()) == (0.9, 0.25)


def test_dropout_views() -> None:
    flat = torch.rand(64, 2000) + 0.5
    gen = torch.Generator().manual_seed(3)
    v1, v2 = dropout_views(flat, 0.6, generator=gen)
    for v in (v1, v2):
        kept = v != 0
        assert abs(1 - kept.float().mean().item() - 0.6) < 0.01
        torch.testing.assert_close(v[kept], flat[kept] / 0.4)
    assert ((v1 != 0) != (v2 != 0)).float().mean().item() > 0.4  # independent masks (2*0.6*0.4 = 0.48)
    again = dropout_views(flat, 0.6, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(again[0], v1)
    assert dropout_views(flat, 0.0)[0] is flat
    with pytest.raises(CorefaceError, match=r"dropout p must be in \[0, 1\), got 1.0"):
        dropout_views(flat, 1.0)


def _centres_at(cos_target: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Embedding e = x-axis; class 0 at angle acos(cos_target), class 1 at 90 degrees."""
    theta = math.acos(cos_target)
    weight = torch.tensor([[math.cos(theta), math.sin(theta)], [0.0, 1.0]])
    return torch.tensor([[1.0, 0.0]]), weight


@pytest.mark.parametrize("cos_t", [0.9, 0.3, -0.5])
def test_arcface_and_cosface_logits_follow_the_formula(cos_t: float) -> None:
    e, w = _centres_at(cos_t)
    y = torch.tensor([0])
    arc = ArcFaceHead(2, 2)
    arc.weight.data.copy_(w)
    logits = arc(e, y)[0]
    assert logits[0].item() == pytest.approx(64 * math.cos(math.acos(cos_t) + 0.5), abs=1e-3)
    assert logits[1].item() == pytest.approx(0.0, abs=1e-5)
    cos = CosFaceHead(2, 2)
    cos.weight.data.copy_(w)
    assert cos(e, y)[0, 0].item() == pytest.approx(64 * (cos_t - 0.35), abs=1e-4)
    assert build_head("cosface", 2, 2, margin=0.2).margin == 0.2


def test_arcface_falls_back_past_pi_minus_m() -> None:
    e, w = _centres_at(-0.95)  # theta = 2.82 > pi - 0.5
    arc = ArcFaceHead(2, 2)
    arc.weight.data.copy_(w)
    got = arc(e, torch.tensor([0]))[0, 0].item()
    assert got == pytest.approx(64 * (-0.95 - math.sin(math.pi - 0.5) * 0.5), abs=1e-3)


@pytest.mark.parametrize("head_cls", [ArcFaceHead, CosFaceHead])
@pytest.mark.parametrize("sign", [1.0, -1.0])  # theta = 0 and theta = pi
def test_heads_are_finite_at_theta_0_and_pi(head_cls, sign: float) -> None:
    head = head_cls(3, 4)
    e = (sign * head.weight.detach()[[2, 1]].clone()).requires_grad_()
    y = torch.tensor([2, 1])
    logits = head(e, y)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    assert torch.isfinite(e.grad).all() and torch.isfinite(head.weight.grad).all()


def test_sampled_head_keeps_positives_and_samples_negatives() -> None:
    torch.manual_seed(0)
    head = SampledHead(ArcFaceHead(8, 100), sample_rate=0.1, generator=torch.Generator().manual_seed(0))
    e = torch.randn(6, 8)
    y = torch.tensor([3, 3, 50, 97, 0, 12])
    logits = head.train()(e, y)
    finite = torch.isfinite(logits[0])
    assert finite.sum().item() == 10 and bool(finite[y].all())
    full = head.head(e, y)
    torch.testing.assert_close(logits[:, finite], full[:, finite])
    loss = F.cross_entropy(logits, y)
    loss.backward()
    touched = head.weight.grad.abs().sum(1) > 0
    assert torch.equal(touched, finite)  # only the sampled centres are updated
    torch.testing.assert_close(head.eval()(e, y), full)
    assert isinstance(build_head("arcface", 8, 100, sample_rate=0.2), SampledHead)
    with pytest.raises(CorefaceError, match=r"sample_rate must be in \(0, 1\], got 1.5"):
        build_head("arcface", 8, 100, sample_rate=1.5)
    with pytest.raises(CorefaceError, match="unknown head 'sphereface'; known: arcface, cosface"):
        build_head("sphereface", 8, 100)


def test_coreface_loss_combines_terms_and_updates_margin() -> None:
    torch.manual_seed(0)
    head = CosFaceHead(6, 5)
    e1, e2 = torch.randn(4, 6), torch.randn(4, 6)
    y = torch.tensor([0, 1, 1, 4])
    crit = CoReFaceLoss(head, ce_weight=0.3, con_weight=0.2, scale=16.0, protocol="two-way")
    crit.margin.value.fill_(0.1)
    out = crit(e1, e2, y)
    con, bm = contrastive_loss(e1, e2, y, 0.1, 16.0, "zero", "two-way")
    ce1, ce2 = F.cross_entropy(head(e1, y), y), F.cross_entropy(head(e2, y), y)
    assert out["con"].item() == pytest.approx(con.item(), rel=1e-6)  # used the margin from before the batch
    assert out["ce1"].item() == pytest.approx(ce1.item()) and out["ce2"].item() == pytest.approx(ce2.item())
    assert out["total"].item() == pytest.approx(0.3 * (ce1 + ce2).item() + 0.2 * con.item(), rel=1e-6)
    assert out["margin"].item() == pytest.approx(0.99 * bm.item() + 0.01 * 0.1)
    crit.eval()
    assert crit(e1, e2, y)["margin"].item() == out["margin"].item()  # evaluation leaves the state alone


@pytest.mark.parametrize("name,fc", [("mobilefacenet", "features.layers.2"), ("iresnet18", "fc")])
def test_gradients_reach_backbone_through_both_views(name: str, fc: str) -> None:
    torch.manual_seed(0)
    model = build_backbone(name, embedding_size=64).train()
    crit = CoReFaceLoss(build_head("arcface", 64, 3)).train()
    x = torch.randn(4, 3, 112, 112)
    y = torch.tensor([0, 1, 2, 0])
    flat = model.forward_flat(x)
    v1, v2 = dropout_views(flat, 0.6)
    v1.retain_grad()
    v2.retain_grad()
    out = crit(model.project(v1), model.project(v2), y)
    out["total"].backward()
    assert v1.grad.abs().sum() > 0 and v2.grad.abs().sum() > 0
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.grad.abs().sum() > 0
    assert model.get_submodule(fc).weight.grad.abs().sum() > 0
    assert crit.head.weight.grad.abs().sum() > 0


def test_loss_is_float32_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    crit = CoReFaceLoss(build_head("arcface", 16, 4), protocol="2N")
    flat = torch.randn(4, 32, requires_grad=True)
    proj = torch.nn.Linear(32, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v1, v2 = dropout_views(flat.to(torch.bfloat16), 0.6)
        e1, e2 = proj(v1), proj(v2)
        out = crit(e1, e2, torch.tensor([0, 1, 2, 1]))
    assert e1.dtype == torch.bfloat16 and v1.dtype == torch.bfloat16
    assert out["total"].dtype == torch.float32 and out["con"].dtype == torch.float32
    out["total"].backward()
    assert torch.isfinite(flat.grad).all() and flat.grad.abs().sum() > 0


# ---------------------------------------------------------------- distillation
def test_distillation_losses_by_construction() -> None:
    from coreface_edge.models.distill import embedding_distillation, relation_distillation

    torch.manual_seed(0)
    teacher = torch.randn(16, 8)
    q, _ = torch.linalg.qr(torch.randn(8, 8))
    rotated = teacher @ q  # same relations, other directions
    assert embedding_distillation(teacher * 3.0, teacher).item() == pytest.approx(0.0, abs=1e-6)  # scale-free
    assert embedding_distillation(rotated, teacher).item() > 0.3
    assert relation_distillation(rotated, teacher).item() == pytest.approx(0.0, abs=1e-6)
    wider = torch.cat([teacher, torch.zeros(16, 4)], dim=1)  # relation distillation takes other widths
    assert relation_distillation(wider, teacher).item() == pytest.approx(0.0, abs=1e-6)
    noisy = teacher + torch.randn(16, 8)
    by_hand = ((F.normalize(noisy) @ F.normalize(noisy).T - F.normalize(teacher) @ F.normalize(teacher).T) ** 2)
    assert relation_distillation(noisy, teacher).item() == pytest.approx(by_hand[~torch.eye(16, dtype=torch.bool)].mean().item(), rel=1e-5)
    student = noisy.clone().requires_grad_(True)
    relation_distillation(student, teacher).backward()
    assert student.grad.abs().sum() > 0
