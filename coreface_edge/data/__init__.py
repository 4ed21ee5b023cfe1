"""Datasets: the CFP layout and its preparation, and torch-free readers of aligned crops.

cfp (layout, fiducials -> 5 points), prepare (``data prepare-cfp``), imagefolder,
recordio (insightface ``.rec``/``.idx`` without mxnet), verification_bin (insightface ``.bin``),
info (``data info``), commands (the ``data`` CLI group).
"""
