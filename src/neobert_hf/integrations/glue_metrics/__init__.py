"""`evaluate` metric modules shipped inside neobert-hf, loadable offline by path.

- `GLUE_METRIC_PATH`: the `glue` metric (`evaluate.load(GLUE_METRIC_PATH, "<task>")`).

The modules are plain files read by `evaluate`'s loader; nothing here imports `evaluate`.
"""

import os


GLUE_METRIC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "glue.py")

__all__ = ["GLUE_METRIC_PATH"]
