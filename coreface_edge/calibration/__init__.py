"""Calibration sets, INT8 quantization with an accuracy guard on held-out faces, FP16 conversion."""
