"""CoReFace training: config, resumable trainer, DDP entry (``python -m coreface_edge.training``)."""
