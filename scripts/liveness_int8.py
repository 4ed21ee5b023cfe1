"""Does INT8 pay for the liveness models? Static QDQ quantization (ONNX Runtime, per-channel
weights) of each shipped MiniFASNet ONNX, calibrated on liveness crops of CFP identities
001-060; measured on CFP 401-500 (one photo each): p50 latency at batch 1 (1 thread, three
alternating rounds against FP32) and the drift of the live probability.

    python scripts/liveness_int8.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from coreface_edge.face.detector import YuNetDetector
from coreface_edge.liveness.crop import liveness_crops
from coreface_edge.liveness.runtime import LivenessModel, shipped_liveness


def crops_of(identities: range, photo: int, cfp: Path, scale: float) -> np.ndarray:
    detector, out = YuNetDetector(), []
    for identity in identities:
        image = cv2.imread(str(sorted((cfp / f"{identity:03d}" / "frontal").glob("*.jpg"))[photo]))
        found = detector.detect(image)
        if len(found):
            out.append(liveness_crops(image, found.select(found.order_by_size_and_centrality(image.shape)[:1]).boxes, scale, 80))
    return np.concatenate(out)


def p50_ms(session: ort.InferenceSession, x: np.ndarray, calls: int = 200) -> float:
    for _ in range(20):
        session.run(None, {"crops": x})
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        session.run(None, {"crops": x})
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    cfp = parser.parse_args().shared / "data" / "cfp" / "Data" / "Images"
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.log_severity_level = 1, 3
    for path in shipped_liveness().models:
        fp32 = LivenessModel(path, threads=1)
        calibration = crops_of(range(1, 61), 0, cfp, fp32.spec.scale)
        held_out = crops_of(range(401, 501), 1, cfp, fp32.spec.scale)

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.batches = iter([{"crops": c[None]} for c in calibration])

            def get_next(self) -> dict | None:
                return next(self.batches, None)

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "int8.onnx"
            quantize_static(str(path), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, per_channel=True)  # fmt: skip
            int8 = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
            a = fp32.session.run(None, {"crops": held_out})[0][:, 1]
            b = int8.run(None, {"crops": held_out})[0][:, 1]
            rounds = [(p50_ms(fp32.session, held_out[:1]), p50_ms(int8, held_out[:1])) for _ in range(3)]
            print(f"{path.name}: p50 ms FP32/INT8 {[(round(x, 2), round(y, 2)) for x, y in rounds]}, |live FP32 - INT8| mean "
                  f"{np.abs(a - b).mean():.3f} max {np.abs(a - b).max():.3f}, verdicts changed at 0.5: {int(((a >= .5) != (b >= .5)).sum())} "
                  f"of {len(a)}, size {out.stat().st_size / 1e6:.2f} MB vs {path.stat().st_size / 1e6:.2f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
