# Copyright 2026 the neobert-hf authors. Licensed under the Apache License, Version 2.0.
"""GLUE metrics as an `evaluate` module, shipped with neobert-hf so that it loads offline.

Load it by path, with the task as the configuration name:

```python
>>> import evaluate
>>> from neobert_hf.integrations.glue_metrics import GLUE_METRIC_PATH
>>> metric = evaluate.load(GLUE_METRIC_PATH, "mrpc")
>>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
{'accuracy': 0.6666666666666666, 'f1': 0.6666666666666666}
```

The configuration names and returned keys are those of the Hub's `glue` metric. The scores are computed with
scikit-learn and scipy: CoLA Matthews correlation; MRPC and QQP accuracy and F1 of the positive class; STS-B Pearson
and Spearman correlations; accuracy for every other task.

This file is loaded by `evaluate`'s module loader, which copies it on its own: it imports only `evaluate`, `datasets`,
scikit-learn and scipy.
"""

import datasets
import evaluate
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef


_CITATION = """\
@inproceedings{wang2019glue,
  title={{GLUE}: A Multi-Task Benchmark and Analysis Platform for Natural Language Understanding},
  author={Wang, Alex and Singh, Amanpreet and Michael, Julian and Hill, Felix and Levy, Omer and Bowman, Samuel R.},
  booktitle={International Conference on Learning Representations},
  year={2019}
}
"""

_DESCRIPTION = """\
The official metric of each GLUE task (https://gluebenchmark.com): Matthews correlation for CoLA, accuracy and F1 for
MRPC and QQP, Pearson and Spearman correlations for STS-B, accuracy for SST-2, MNLI (matched and mismatched), QNLI,
RTE, WNLI and HANS.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted labels (integers), or predicted similarity scores (floats) for STS-B.
    references: gold labels (integers), or gold similarity scores (floats) for STS-B.
Returns:
    cola: {"matthews_correlation"}; mrpc, qqp: {"accuracy", "f1"}; stsb: {"pearson", "spearmanr"};
    every other task: {"accuracy"}.
"""

ACCURACY_TASKS = ("sst2", "mnli", "mnli_matched", "mnli_mismatched", "qnli", "rte", "wnli", "hans")
CONFIG_NAMES = ("cola", "mrpc", "qqp", "stsb", *ACCURACY_TASKS)


def _accuracy(predictions, references) -> float:
    return float(sum(int(p == r) for p, r in zip(predictions, references, strict=True)) / len(references))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Glue(evaluate.Metric):
    """GLUE task metrics; the configuration name is the task."""

    def _info(self):
        if self.config_name not in CONFIG_NAMES:
            raise KeyError(
                f"Unknown GLUE metric configuration {self.config_name!r}; choose one of: {', '.join(CONFIG_NAMES)}."
            )
        dtype = "float32" if self.config_name == "stsb" else "int64"
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value(dtype), "references": datasets.Value(dtype)}),
            codebase_urls=[],
            reference_urls=["https://gluebenchmark.com"],
            format="numpy",
        )

    def _compute(self, predictions, references):
        if len(references) == 0:
            raise ValueError("GLUE metric: no predictions to score (empty evaluation set).")
        name = self.config_name
        if name == "cola":
            return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}
        if name == "stsb":
            return {
                "pearson": float(pearsonr(predictions, references)[0]),
                "spearmanr": float(spearmanr(predictions, references)[0]),
            }
        if name in ("mrpc", "qqp"):
            return {
                "accuracy": _accuracy(predictions, references),
                "f1": float(f1_score(y_true=references, y_pred=predictions)),
            }
        return {"accuracy": _accuracy(predictions, references)}
