"""The input contract of an embedding model, shared by export, runtimes, calibration and gate.

Every backend takes aligned face crops as ``uint8`` BGR arrays of shape ``(N, 112, 112, 3)``
(what OpenCV and the aligner produce) and applies the contract's pre-processing itself, unless
that pre-processing is baked into the model graph (``baked_preprocess``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Sequence

import numpy as np

from .errors import CorefaceError

CONTRACT_METADATA_KEY = "coreface_edge.contract"
CROP_SIZE = 112

Embedder = Callable[[np.ndarray], np.ndarray]
"""Any function from uint8 BGR aligned crops ``(N, 112, 112, 3)`` to ``(N, D)`` float32."""


def scores_fingerprint(checkpoint_sha256: str, flip_fused: bool) -> str:
    """What galleries and thresholds are tied to: the checkpoint, and whether the model adds the
    mirror image's embedding (that changes every score; pre-processing and L2 output do not)."""
    if not flip_fused:
        return checkpoint_sha256
    return hashlib.sha256(f"{checkpoint_sha256}+flip".encode()).hexdigest()


@dataclass(frozen=True)
class InputContract:
    """How a model wants its input and what it returns."""

    input_name: str = "input"
    layout: str = "NCHW"  # "NCHW" (float model input) or "NHWC" (baked pre-processing)
    dtype: str = "float32"  # "float32" or "uint8" (baked pre-processing)
    color: str = "RGB"  # channel order the network was trained on
    mean: float = 127.5  # x_norm = (x - mean) / std, i.e. (x/255 - 0.5)/0.5
    std: float = 127.5
    size: int = CROP_SIZE
    embedding_size: int = 512
    baked_preprocess: bool = False
    flip_fused: bool = False
    l2_normalized: bool = False
    architecture: str = ""
    fingerprint: str = ""  # scores_fingerprint(): the source checkpoint's SHA-256 (+ flip fusion)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "model metadata") -> "InputContract":
        """Parse :meth:`to_json` output; ``source`` names the file in the one-line error."""
        try:
            raw: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CorefaceError(f"{source}: input contract is not valid JSON ({exc})") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise CorefaceError(f"{source}: unknown input-contract keys {unknown}")
        return cls(**raw)

    def check_crops(self, crops: np.ndarray) -> None:
        """Raise a one-line error unless ``crops`` is a ``uint8 (N, size, size, 3)`` batch."""
        want = (self.size, self.size, 3)
        if not isinstance(crops, np.ndarray) or crops.ndim != 4 or crops.shape[1:] != want:
            shape = getattr(crops, "shape", type(crops).__name__)
            raise CorefaceError(f"expected aligned crops of shape (N, {self.size}, {self.size}, 3), got {shape}")
        if crops.dtype != np.uint8:
            raise CorefaceError(f"expected uint8 BGR crops, got dtype {crops.dtype}")

    def model_input(self, crops: np.ndarray) -> np.ndarray:
        """Turn uint8 BGR crops into the tensor the model graph takes."""
        self.check_crops(crops)
        if self.baked_preprocess:
            return np.ascontiguousarray(crops)
        return preprocess_crops(crops, self.color, self.mean, self.std)


def preprocess_crops(crops: np.ndarray, color: str = "RGB", mean: float = 127.5, std: float = 127.5) -> np.ndarray:
    """uint8 BGR ``(N, H, W, 3)`` -> float32 ``(N, 3, H, W)`` normalised, in ``color`` order."""
    x = crops[..., ::-1] if color == "RGB" else crops
    x = np.transpose(x, (0, 3, 1, 2)).astype(np.float32)
    x -= np.float32(mean)
    x *= np.float32(1.0 / std)
    return np.ascontiguousarray(x)


def infer_contract(input_name: str, input_shape: Sequence[Any], input_type: str, output_shape: Sequence[Any], source: str) -> InputContract:
    """Contract of a foreign ONNX (no coreface-edge metadata): only ``(N, 3, 112, 112)`` float is accepted."""
    dims = list(input_shape)
    if len(dims) != 4 or dims[1:] != [3, CROP_SIZE, CROP_SIZE] or input_type not in ("tensor(float)", "tensor(float16)"):
        raise CorefaceError(
            f"{source}: input {input_name!r} is {input_type} {tuple(dims)}; expected float (N, 3, {CROP_SIZE}, {CROP_SIZE}) "
            "(or a model exported by coreface-edge)"
        )
    size = output_shape[-1] if output_shape and isinstance(output_shape[-1], int) else 0
    return InputContract(input_name=input_name, embedding_size=size)
