"""coreface-edge: CoReFace training, export, quantization and an on-device face gate."""

__version__ = "0.1.0"
