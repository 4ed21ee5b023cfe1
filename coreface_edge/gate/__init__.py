"""The on-device face gate: gallery (SQLite), sources, per-frame pipeline, voting, audit log, report.

Nothing here imports torch: the gate runs on a Jetson with ONNX Runtime or TensorRT only.
"""
