"""Latency profiling and benchmark reports: statistics, machine description, model / pipeline
profiles, the formats benchmark, comparison against a saved report, Markdown + PNG output.

Nothing here imports torch at module level: profiling an ONNX model or an engine on a Jetson
needs only the edge runtime.
"""
