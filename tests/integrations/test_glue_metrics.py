"""The shipped `glue` metric module: loads offline through `evaluate` by path, equals scikit-learn/scipy, and is
installed with the package."""

import importlib.resources

import evaluate
import numpy as np
import pytest
import setuptools
import tomllib
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from helpers.glue import REPO

from neobert_hf.integrations.glue import GLUE_TASKS, build_compute_metrics, task_score
from neobert_hf.integrations.glue_metrics import GLUE_METRIC_PATH


RNG = np.random.default_rng(0)
PREDS = RNG.integers(0, 2, 200)
REFS = np.where(RNG.random(200) < 0.7, PREDS, 1 - PREDS)  # correlated, not equal


def load(config):
    return evaluate.load(GLUE_METRIC_PATH, config, keep_in_memory=True)


def test_cola_is_matthews():
    out = load("cola").compute(predictions=PREDS, references=REFS)
    assert out == {"matthews_correlation": pytest.approx(matthews_corrcoef(REFS, PREDS), abs=1e-12)}
    assert 0.2 < out["matthews_correlation"] < 0.8


@pytest.mark.parametrize("config", ["mrpc", "qqp"])
def test_mrpc_qqp_are_accuracy_and_f1(config):
    out = load(config).compute(predictions=PREDS, references=REFS)
    assert set(out) == {"accuracy", "f1"}
    assert out["accuracy"] == pytest.approx(accuracy_score(REFS, PREDS), abs=1e-12)
    assert out["f1"] == pytest.approx(f1_score(REFS, PREDS), abs=1e-12)


def test_stsb_is_pearson_and_spearman():
    refs = RNG.uniform(0, 5, 100)
    preds = refs + RNG.normal(0, 1.0, 100)
    out = load("stsb").compute(predictions=preds, references=refs)
    # The module takes float32 inputs, as the Hub's glue metric does.
    assert out["pearson"] == pytest.approx(pearsonr(preds, refs)[0], abs=1e-6)
    assert out["spearmanr"] == pytest.approx(spearmanr(preds, refs)[0], abs=1e-6)


@pytest.mark.parametrize("config", ["sst2", "mnli", "mnli_matched", "mnli_mismatched", "qnli", "rte", "wnli"])
def test_accuracy_tasks(config):
    labels = RNG.integers(0, 3 if config.startswith("mnli") else 2, 50)
    preds = labels.copy()
    preds[:10] = (preds[:10] + 1) % 2
    assert load(config).compute(predictions=preds, references=labels) == {
        "accuracy": pytest.approx(accuracy_score(labels, preds))
    }


def test_unknown_configuration_names_the_valid_ones():
    with pytest.raises(KeyError, match="cola, mrpc"):
        load("glue_typo")


def test_compute_metrics_of_every_task_reports_its_official_metrics():
    for task in GLUE_TASKS.values():
        compute = build_compute_metrics(task)
        if task.is_regression:
            labels = np.linspace(0, 5, 12).astype(np.float32)
            logits = (labels + np.sin(np.arange(12)))[:, None]
        else:
            labels = np.arange(12) % task.num_labels
            logits = np.eye(task.num_labels)[(labels + (np.arange(12) % 4 == 0)) % task.num_labels]
        out = compute(type("P", (), {"predictions": logits, "label_ids": labels})())
        expected = {m.split("_", 1)[1] if task.name == "mnli" else m for m in task.metrics}
        assert set(out) == expected, task.name
    # the task score is the mean of the official metrics
    assert task_score("mrpc", {"accuracy": 0.8, "f1": 0.9}) == pytest.approx(0.85)
    assert task_score("mnli", {"matched_accuracy": 0.8}) is None


def test_metric_module_is_installed_with_the_package():
    # A module of a regular package: setuptools' packages.find installs it without a package-data glob.
    files = importlib.resources.files("neobert_hf.integrations.glue_metrics")
    assert files.joinpath("glue.py").is_file() and files.joinpath("__init__.py").is_file()
    with open(REPO / "pyproject.toml", "rb") as f:
        find = tomllib.load(f)["tool"]["setuptools"]["packages"]["find"]
    assert find.get("where") == ["src"]
    assert "neobert_hf.integrations.glue_metrics" in setuptools.find_packages(str(REPO / "src"))
