"""``coreface-edge demo``: the whole chain, export -> INT8 with its guard -> TensorRT ->
enroll -> gate -> benchmark -> latency report, on the bundled CFP faces, in one folder."""
