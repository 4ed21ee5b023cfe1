"""What a liveness model is: architecture, crop scale and size, which output is "live".

The weight files name their conventions (``<scale>_<W>x<H>_<architecture>.pth``, e.g.
``2.7_80x80_MiniFASNetV2.pth``; ``4_0_0_...`` reads as scale 4.0); an exported ONNX carries the
same facts as JSON in its metadata (``coreface_liveness``), so the runtime needs nothing else.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import CorefaceError

METADATA_KEY = "coreface_liveness"
LIVE_INDEX = 1  # the models' classes: 0 and 2 are attack types, 1 is a live face
_NAME = re.compile(r"^(?P<scale>\d+(?:\.\d+)?)(?:_\d+)*_(?P<w>\d+)x(?P<h>\d+)_(?P<arch>[A-Za-z0-9]+)$")


@dataclass(frozen=True)
class LivenessSpec:
    architecture: str
    scale: float  # the face box is enlarged this much about its centre before cropping
    side: int  # crops are side x side pixels
    live_index: int = LIVE_INDEX
    input: str = "uint8 BGR NHWC, raw 0-255 (the cast and transpose are in the graph)"
    output: str = "softmax probabilities (N, 3)"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str) -> "LivenessSpec":
        try:
            spec = cls(**json.loads(text))
        except (TypeError, ValueError) as exc:
            raise CorefaceError(f"{source}: unreadable {METADATA_KEY} metadata ({exc})") from None
        if spec.side < 16 or spec.scale <= 0:
            raise CorefaceError(f"{source}: {METADATA_KEY} metadata has side {spec.side}, scale {spec.scale}")
        return spec


def spec_from_name(path: str | Path) -> LivenessSpec:
    """The spec a weight file's name states, e.g. ``2.7_80x80_MiniFASNetV2.pth`` -> scale 2.7, 80 px."""
    path = Path(path)
    match = _NAME.match(path.stem)
    if match is None or match["w"] != match["h"]:
        raise CorefaceError(
            f"{path}: cannot read the crop conventions from the name; expected <scale>_<S>x<S>_<architecture>.pth "
            "(e.g. 2.7_80x80_MiniFASNetV2.pth)"
        )
    return LivenessSpec(match["arch"], float(match["scale"]), int(match["w"]))
