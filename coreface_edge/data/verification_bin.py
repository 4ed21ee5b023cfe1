"""insightface verification ``.bin`` files (lfw.bin, cfp_fp.bin, agedb_30.bin, ...).

A pickled ``(bins, issame_list)``: ``bins`` holds 2N encoded JPEG/PNG images, pair ``i`` is
``bins[2i], bins[2i+1]``, ``issame_list[i]`` says whether they show the same person.
Unpickling runs code from the file, so only plain lists/tuples/bytes/bools/ints are allowed.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_bytes_atomic
from ..errors import CorefaceError
from .crops import decode_crop

_ALLOWED_NAMES = ("list", "tuple", "bytes", "bool", "int")


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> type:
        if module in ("builtins", "__builtin__") and name in _ALLOWED_NAMES:  # __builtin__: Python 2 pickles
            return super().find_class("builtins", name)
        raise pickle.UnpicklingError(f"forbidden object {module}.{name}")


@dataclass
class VerificationPairs:
    """``crops`` ``(2N, 112, 112, 3)`` uint8 BGR; pair i = crops[2i], crops[2i+1]; ``issame`` ``(N,)`` bool."""

    crops: np.ndarray
    issame: np.ndarray

    def __len__(self) -> int:
        return int(self.issame.shape[0])


def read_bin_raw(path: str | Path) -> tuple[list[bytes], list[bool]]:
    """The encoded images and same/different flags of a ``.bin``, structure checked."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            obj = _RestrictedUnpickler(fh, encoding="bytes").load()
    except OSError as exc:
        raise CorefaceError(f"{path}: cannot read ({exc.strerror})") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise CorefaceError(f"{path}: not a verification .bin pickle ({str(exc) or type(exc).__name__})") from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2 and all(isinstance(x, (list, tuple)) for x in obj)):
        raise CorefaceError(f"{path}: expected a pickled (bins, issame_list) pair of lists")
    bins, issame = obj
    if not all(isinstance(b, (bytes, bytearray)) for b in bins):
        raise CorefaceError(f"{path}: bins must be encoded image bytes")
    if not all(isinstance(s, (bool, int)) for s in issame):
        raise CorefaceError(f"{path}: issame_list must hold booleans")
    if len(bins) != 2 * len(issame) or not issame:
        raise CorefaceError(f"{path}: {len(bins)} images for {len(issame)} pairs (need exactly 2 per pair, at least one pair)")
    return [bytes(b) for b in bins], [bool(s) for s in issame]


def load_verification_bin(path: str | Path, size: int = 112) -> VerificationPairs:
    """Decode a ``.bin`` into crops (resized to ``size`` if needed) and pair labels."""
    bins, issame = read_bin_raw(path)
    crops = np.empty((len(bins), size, size, 3), dtype=np.uint8)
    for i, data in enumerate(bins):
        crops[i] = decode_crop(data, f"{path} image {i}", size)
    return VerificationPairs(crops, np.array(issame, dtype=bool))


def write_verification_bin(path: str | Path, bins: list[bytes], issame: list[bool]) -> None:
    """Write encoded image pairs as an insightface ``.bin`` (atomically)."""
    if len(bins) != 2 * len(issame):
        raise ValueError(f"{len(bins)} images for {len(issame)} pairs")
    buffer = io.BytesIO()
    pickle.dump((list(map(bytes, bins)), list(map(bool, issame))), buffer, protocol=4)
    write_bytes_atomic(path, buffer.getvalue())
