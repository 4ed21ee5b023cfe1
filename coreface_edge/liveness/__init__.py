"""Presentation-attack detection (silent liveness) with MiniFASNet: a printed photo or a phone
screen held up to the camera is told from a live face.

``crop`` (the enlarged-box 80x80 crops, pure), ``spec`` (what a liveness model file says about
itself), ``runtime`` (ONNX Runtime sessions, no torch), ``export`` (state dict -> ONNX with
parity, torch inside), ``metrics`` (APCER / BPCER), ``synthetic`` (print/screen-like attack
images for measurement), ``commands`` (``coreface-edge liveness``).
"""
