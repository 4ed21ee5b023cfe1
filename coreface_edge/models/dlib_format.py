"""Reader for dlib's DNN serialisation (``dlib::serialize`` of a ``loss_metric`` network).

Pure functions over bytes, no dlib needed. The layout of a ``.dat`` network file:

- integers: a control byte (low 4 bits: byte count, bit 7: negative) then little-endian bytes;
  strings: an integer length then the bytes; floats: integer mantissa and exponent
  (``m * 2**e``); booleans: the characters ``'0'``/``'1'``;
- tensors: version 2, four dimensions, then raw little-endian float32 values;
- the loss layer (version, name, its floats), then one version number per nested ``add_layer``
  (tags and skips included) down to the input layer (version 3), then each layer's record from
  the bottom up: its name, its parameters, and ``add_layer``'s bookkeeping (three booleans, three
  empty tensors; the bottom layer one integer more).

:func:`read_network` returns the layer records in that bottom-up order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import CorefaceError


@dataclass
class DlibLayer:
    """One computational layer: its dlib name, integer geometry and parameter tensors."""

    kind: str  # "con", "affine", "relu", "max_pool", "avg_pool", "add_prev", "fc"
    geometry: tuple[int, ...] = ()
    params: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class DlibNetwork:
    loss: str
    input: str
    input_mean_rgb: tuple[float, float, float]
    input_size: tuple[int, int]
    layers: list[DlibLayer]


class _Reader:
    def __init__(self, data: bytes, source: str) -> None:
        self.data, self.pos, self.source = data, 0, source

    def fail(self, problem: str) -> CorefaceError:
        return CorefaceError(f"{self.source}: not a readable dlib network ({problem} at byte {self.pos})")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail("file ends early: truncated")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def integer(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte {control:#x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def string(self, limit: int = 256) -> str:
        n = self.integer()
        if not 0 <= n <= limit:
            raise self.fail(f"implausible string length {n}")
        try:
            return self.take(n).decode("ascii")
        except UnicodeDecodeError:
            raise self.fail("non-text layer name") from None

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        return float(mantissa) * 2.0 ** exponent

    def boolean(self) -> bool:
        char = self.take(1)
        if char not in (b"0", b"1"):
            raise self.fail(f"bad boolean {char!r}")
        return char == b"1"

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise self.fail(f"tensor format version {version}, expected 2")
        dims = tuple(self.integer() for _ in range(4))
        if any(d < 0 for d in dims):
            raise self.fail(f"negative tensor dimension {dims}")
        count = int(np.prod(dims, dtype=np.int64))
        return np.frombuffer(self.take(4 * count), dtype="<f4").reshape(dims).astype(np.float32)

    def alias(self) -> tuple[int, ...]:
        version = self.integer()
        if version != 1:
            raise self.fail(f"alias-tensor version {version}, expected 1")
        return tuple(self.integer() for _ in range(4))


def _split(params: np.ndarray, shapes: list[tuple[int, ...]], reader: _Reader) -> list[np.ndarray]:
    """Cut a layer's flat parameter tensor into its aliased parts (dlib stores them back to back)."""
    flat = params.reshape(-1)
    sizes = [int(np.prod(s)) for s in shapes]
    if sum(sizes) != flat.size:
        raise reader.fail(f"parameter count {flat.size} does not match shapes {shapes}")
    parts, start = [], 0
    for shape, size in zip(shapes, sizes):
        parts.append(flat[start:start + size].reshape(shape))
        start += size
    return parts


def _layer(reader: _Reader, name: str) -> DlibLayer:
    if name == "con_4":
        params = reader.tensor()
        geometry = tuple(reader.integer() for _ in range(7))  # filters, rows, cols, stride y/x, padding y/x
        filters, biases = reader.alias(), reader.alias()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            reader.real()
        parts = _split(params, [filters] + ([(filters[0],)] if any(biases) else []), reader)
        return DlibLayer("con", geometry, dict(zip(("weight", "bias"), parts)))
    if name == "affine_":
        params = reader.tensor()
        gamma, _ = reader.alias(), reader.alias()
        reader.integer()  # mode: per channel (conv) or per element (fc)
        channels = int(np.prod(gamma))
        scale, shift = _split(params, [(channels,), (channels,)], reader)
        return DlibLayer("affine", (channels,), {"gamma": scale, "beta": shift})
    if name in ("max_pool_2", "avg_pool_2"):
        return DlibLayer(name[:-2], tuple(reader.integer() for _ in range(6)))  # rows, cols, stride y/x, padding y/x
    if name == "relu_":
        return DlibLayer("relu")
    if name == "add_prev_":
        return DlibLayer("add_prev")
    if name == "fc_2":
        outputs, inputs = reader.integer(), reader.integer()
        params = reader.tensor()
        reader.alias()  # the weights: (inputs, outputs), read from the counts above
        biases = reader.alias()
        reader.integer()  # bias mode
        for _ in range(4):
            reader.real()
        parts = _split(params, [(inputs, outputs)] + ([(outputs,)] if any(biases) else []), reader)
        parts[0] = parts[0].T.copy()  # dlib computes x @ W with W (inputs, outputs)
        return DlibLayer("fc", (outputs, inputs), dict(zip(("weight", "bias"), parts)))
    raise reader.fail(f"unsupported layer {name!r}")


def read_network(data: bytes, source: str = "dlib network") -> DlibNetwork:
    """Parse a serialised dlib ``loss_metric`` network; a one-line ``CorefaceError`` otherwise."""
    reader = _Reader(data, source)
    reader.integer()  # add_loss_layer version
    loss = reader.string()
    if not loss.startswith("loss_metric"):
        raise reader.fail(f"loss layer {loss!r}; only metric-learning networks (loss_metric) are embedders")
    reader.real(), reader.real()  # margin, distance threshold
    while (version := reader.integer()) != 3:  # one per nested layer, down to the input layer
        if version not in (1, 2):
            raise reader.fail(f"layer version {version}")
    input_name = reader.string()
    if input_name != "input_rgb_image_sized":
        raise reader.fail(f"input layer {input_name!r}, expected input_rgb_image_sized")
    mean = (reader.real(), reader.real(), reader.real())
    size = (reader.integer(), reader.integer())
    layers: list[DlibLayer] = []
    while reader.pos < len(data):
        layers.append(_layer(reader, reader.string()))
        for _ in range(3):
            reader.boolean()
        for _ in range(3):
            reader.tensor()
        if len(layers) == 1:
            reader.integer()  # the bottom layer's sample expansion factor
    return DlibNetwork(loss, input_name, mean, size, layers)
