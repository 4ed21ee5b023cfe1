"""ONNX export with verified parity, and the TensorRT engine builder with its sidecar.

Nothing here imports torch or tensorrt at import time: ``onnx_export`` and ``wrapper`` import
torch inside their functions' callers, ``tensorrt_builder`` imports tensorrt when it builds.
"""
