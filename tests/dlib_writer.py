"""A minimal writer of dlib's DNN serialisation, for tests: a :class:`DlibResNet`'s weights as the
``.dat`` layout that ``dlib::serialize`` produces (see ``coreface_edge.models.dlib_format``)."""

from __future__ import annotations

import numpy as np
import torch

from coreface_edge.models.dlib_resnet import BN_EPS, DlibResNet, _expected_kinds


def _int(value: int) -> bytes:
    raw = abs(value).to_bytes(8, "little").rstrip(b"\0")
    return bytes([len(raw) | (0x80 if value < 0 else 0)]) + raw


def _str(text: str) -> bytes:
    return _int(len(text)) + text.encode()


def _real(value: float) -> bytes:
    mantissa, exponent = float(value).as_integer_ratio()
    shift = exponent.bit_length() - 1  # denominator is a power of two
    return _int(mantissa) + _int(-shift)


def _tensor(values: np.ndarray) -> bytes:
    flat = np.asarray(values, "<f4").reshape(-1)
    return _int(2) + _int(flat.size) + _int(1) * 3 + flat.tobytes() if flat.size else _int(2) + _int(0) * 4


def _alias(*dims: int) -> bytes:
    return _int(1) + b"".join(_int(d) for d in dims)


def _tail(bottom: bool) -> bytes:
    return b"110" + _tensor(np.zeros(0)) * 3 + (_int(1) if bottom else b"")


def dlib_bytes(model: DlibResNet, loss: str = "loss_metric_2") -> bytes:
    """``model``'s weights in dlib's format (BatchNorm folded into dlib's ``affine`` layers)."""
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    records = []
    for kind, prefix in _expected_kinds(model):
        if kind == "con":
            conv = model.get_submodule(prefix)
            w, b = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
            geometry = (w.shape[0], w.shape[2], w.shape[3], *conv.stride, *conv.padding)
            body = _tensor(np.concatenate([w.reshape(-1), b])) + b"".join(_int(v) for v in geometry)
            body += _alias(*w.shape) + _alias(1, w.shape[0], 1, 1) + _real(1.0) * 3 + _real(0.0)
            records.append(_str("con_4") + body)
        elif kind == "affine":
            g, b = state[f"{prefix}.weight"], state[f"{prefix}.bias"]
            scale = g / np.sqrt(state[f"{prefix}.running_var"] + BN_EPS)
            shift = b - state[f"{prefix}.running_mean"] * scale
            records.append(_str("affine_") + _tensor(np.concatenate([scale, shift])) + _alias(1, g.size, 1, 1) * 2 + _int(0))
        elif kind in ("max_pool", "avg_pool"):
            geometry = {"max_pool": (3, 3, 2, 2, 0, 0), "avg_pool": (2, 2, 2, 2, 0, 0)}[kind] if prefix != "global" else (0, 0, 1, 1, 0, 0)
            records.append(_str(f"{kind}_2") + b"".join(_int(v) for v in geometry))
        elif kind == "fc":
            w = state["fc.weight"].T  # dlib's (inputs, outputs)
            records.append(_str("fc_2") + _int(w.shape[1]) + _int(w.shape[0]) + _tensor(w) + _alias(*w.shape, 1, 1)
                           + _alias(0, 0, 0, 0) + _int(0) + _real(1.0) * 4)
        else:
            records.append(_str(f"{kind}_"))
    head = _int(1) + _str(loss) + _real(0.04) + _real(0.6) + _int(2) * (len(records) + 1) + _int(3)
    head += _str("input_rgb_image_sized") + _real(122.782) + _real(117.001) + _real(104.298) + _int(150) + _int(150)
    return head + b"".join(r + _tail(i == 0) for i, r in enumerate(records))


def random_dlib_resnet(seed: int = 0) -> DlibResNet:
    """A DlibResNet with random weights and non-trivial frozen-BN statistics."""
    torch.manual_seed(seed)
    model = DlibResNet()
    torch.nn.init.zeros_(model.fc.bias)  # dlib's fc_no_bias
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    return model.eval()

