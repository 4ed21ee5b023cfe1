"""Inference backends behind one interface: torch (reference), onnxruntime, tensorrt."""

from .base import EmbeddingBackend, open_backend

__all__ = ["EmbeddingBackend", "open_backend"]
