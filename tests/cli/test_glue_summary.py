"""`neobert-hf glue-summary`: the table, the GLUE score convention, and missing tasks that are always named."""

import json

import pytest

from neobert_hf.cli.glue_summary import ALL_TASKS, summarize
from neobert_hf.cli.main import main


SCORES = {
    "cola": {"matthews_correlation": 0.60},
    "sst2": {"accuracy": 0.93},
    "mrpc": {"accuracy": 0.86, "f1": 0.90},
    "stsb": {"pearson": 0.88, "spearmanr": 0.86},
    "qqp": {"accuracy": 0.90, "f1": 0.87},
    "mnli": {"matched_accuracy": 0.85, "mismatched_accuracy": 0.83},
    "qnli": {"accuracy": 0.91},
    "rte": {"accuracy": 0.70},
    "wnli": {"accuracy": 0.56},
}
TASK_SCORES = {  # percent: the mean of each task's official metrics
    "cola": 60.0, "sst2": 93.0, "mrpc": 88.0, "stsb": 87.0, "qqp": 88.5, "mnli": 84.0, "qnli": 91.0, "rte": 70.0,
    "wnli": 56.0,
}  # fmt: skip


def write_runs(root, tasks):
    for task in tasks:
        folder = root / task
        folder.mkdir(parents=True)
        (folder / "glue_results.json").write_text(json.dumps({"task": task, "scores": SCORES[task]}))
    return root


def test_full_set_gives_the_glue_score(tmp_path):
    summary = summarize([str(write_runs(tmp_path, ALL_TASKS))])
    assert summary["missing"] == [] and summary["partial_average"] is None
    for task, expected in TASK_SCORES.items():
        assert summary["tasks"][task]["task_score"] == pytest.approx(expected)
    assert summary["glue_score"] == pytest.approx(sum(TASK_SCORES.values()) / 9)
    # The paper's 8 tasks (no WNLI): the set is chosen explicitly and the score says over which tasks.
    eight = summarize([str(tmp_path)], tasks=[t for t in ALL_TASKS if t != "wnli"])
    assert eight["glue_score"] == pytest.approx(sum(v for k, v in TASK_SCORES.items() if k != "wnli") / 8)
    assert eight["not_counted"] == ["wnli"]


def test_missing_tasks_are_named_and_never_averaged_silently(tmp_path, capsys):
    runs = write_runs(tmp_path / "runs", ["cola", "mrpc", "mnli"])
    (tmp_path / "runs" / "rte").mkdir()  # an unfinished run: no results yet
    json_path, md_path = tmp_path / "s.json", tmp_path / "s.md"
    status = main(["glue-summary", str(runs), "--json", str(json_path), "--markdown", str(md_path)])
    assert status == 0
    out = capsys.readouterr().out
    missing = ["sst2", "stsb", "qqp", "qnli", "rte", "wnli"]
    assert f"GLUE score: n/a (missing: {', '.join(missing)})" in out
    partial = (60.0 + 88.0 + 84.0) / 3
    assert f"Partial average over 3 of 9 tasks (cola, mrpc, mnli; excludes {', '.join(missing)}): {partial:.2f}" in out
    assert "This is not a GLUE score" in out
    assert "| MNLI | matched_accuracy 85.00 / mismatched_accuracy 83.00 | 84.00 |" in out
    assert "| RTE | **missing** (no run) | n/a |" in out
    assert "Skipped" not in out  # the rte folder sits inside a folder of runs; it is simply a missing task
    summary = json.loads(json_path.read_text())
    assert summary["glue_score"] is None and summary["missing"] == missing
    assert summary["partial_average"] == {"value": pytest.approx(partial), "tasks": ["cola", "mrpc", "mnli"],
                                          "missing": missing}  # fmt: skip
    assert md_path.read_text() == out
    assert main(["glue-summary", str(runs), "--require-all"]) == 1


def test_incomplete_results_duplicates_and_empty_folders(tmp_path, capsys):
    runs = write_runs(tmp_path / "a", ["cola"])
    (runs / "mrpc").mkdir()
    (runs / "mrpc" / "glue_results.json").write_text(json.dumps({"task": "mrpc", "scores": {"accuracy": 0.8}}))
    summary = summarize([str(runs), str(tmp_path / "nothing")])
    assert summary["tasks"]["mrpc"]["status"] == "missing" and "f1" in summary["tasks"]["mrpc"]["reason"]
    assert "mrpc" in summary["missing"] and summary["glue_score"] is None
    assert summary["skipped"] == [{"path": str(tmp_path / "nothing"), "reason": "does not exist"}]
    write_runs(tmp_path / "b", ["cola"])
    assert main(["glue-summary", str(runs / "cola"), str(tmp_path / "b" / "cola")]) == 2
    assert "Two runs of cola" in capsys.readouterr().err
