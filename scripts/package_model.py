"""Record a shipped model's operating threshold and provenance in its artefact sidecar.

After ``coreface-edge export A.pt -o A.onnx`` and ``coreface-edge threshold --model A.onnx
--far 1e-4 --identities 425-500 --data data/cfp112 --store``, this copies the stored operating
point into ``A.json`` (``operating_threshold``), so every later ``export`` writes it beside the
ONNX, and adds the provenance lines the model card repeats. The ``.pt`` is not touched (the
sidecar's SHA-256 still matches it).

Run: ``python scripts/package_model.py coreface_edge/assets/models/dlib_resnet.pt --data-note "..." --provenance "..."``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from coreface_edge.atomic import write_text_atomic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path, help="The shipped .pt (its .json sidecar and .onnx.threshold.json beside it).")
    parser.add_argument("--data-note", required=True, help="Which pairs measured the threshold, and the command.")
    parser.add_argument("--provenance", required=True, help="Where the weights come from and under which licence.")
    args = parser.parse_args()
    sidecar_path = args.artifact.with_suffix(".json")
    stored = json.loads(Path(f"{args.artifact.with_suffix('.onnx')}.threshold.json").read_text())
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["operating_threshold"] = {
        key: stored[key] for key in ("threshold", "reject_threshold", "far", "tar", "genuine_pairs", "impostor_pairs")
    } | {"far_target": stored["far_target"], "data": args.data_note}
    sidecar["provenance"] = args.provenance
    write_text_atomic(sidecar_path, json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    print(f"{sidecar_path}: operating threshold {stored['threshold']:.4f} at FAR {stored['far_target']:g}")


if __name__ == "__main__":
    main()
