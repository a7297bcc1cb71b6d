"""`neobert-hf glue-summary`: one Markdown and JSON table of GLUE runs, and the GLUE score.

```bash
neobert-hf glue-summary outputs/glue/neobert                  # a folder of run folders
neobert-hf glue-summary outputs/glue/neobert/cola outputs/glue/neobert/mnli --json glue.json --markdown glue.md
neobert-hf glue-summary outputs/glue/neobert --tasks cola sst2 mrpc stsb qqp mnli qnli rte   # without WNLI
```

Each RUN_DIR is a `neobert-hf glue` output folder (it holds `glue_results.json`) or a folder whose direct
subfolders are. Convention: scores are percentages of the best checkpoint on the validation sets; a task's score is
the mean of its official metrics (MRPC and QQP: accuracy and F1; STS-B: Pearson and Spearman; MNLI: matched and
mismatched accuracy, averaged into one MNLI entry; CoLA: Matthews correlation; accuracy elsewhere); the GLUE score is
the unweighted mean over the tasks of `--tasks` (default all nine). When a task is missing the GLUE score is `n/a`
and the missing tasks are named; the average over the tasks present is shown only as a labelled partial average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


__all__ = ["CONVENTION", "HELP", "add_parser", "collect_results", "render_markdown", "run", "summarize"]

HELP = "Tabulate GLUE runs and the GLUE score; names missing tasks."

RESULTS_NAME = "glue_results.json"
ALL_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
DISPLAY = {
    "cola": "CoLA",
    "sst2": "SST-2",
    "mrpc": "MRPC",
    "stsb": "STS-B",
    "qqp": "QQP",
    "mnli": "MNLI",
    "qnli": "QNLI",
    "rte": "RTE",
    "wnli": "WNLI",
}
CONVENTION = (
    "Scores are percentages on the validation sets (best checkpoint). Task score = mean of the task's official "
    "metrics (MRPC/QQP: accuracy and F1; STS-B: Pearson and Spearman; MNLI: matched and mismatched accuracy, one "
    "entry; CoLA: Matthews correlation; accuracy elsewhere). GLUE score = unweighted mean of the task scores over "
    "the expected tasks; n/a when any is missing."
)


class SummaryError(ValueError):
    """Run folders that cannot be summarized together (e.g. two runs of the same task)."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `glue-summary` on the `neobert-hf` subparsers."""
    parser = subparsers.add_parser("glue-summary", help=HELP, description=HELP)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="GLUE output folders, or folders of them.")
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=list(ALL_TASKS),
        choices=ALL_TASKS,
        help="Tasks the GLUE score averages over (default: all nine; the NeoBERT paper's table leaves out wnli).",
    )
    parser.add_argument("--json", dest="json_path", default=None, help="Also write the summary as JSON here.")
    parser.add_argument("--markdown", dest="markdown_path", default=None, help="Also write the Markdown table here.")
    parser.add_argument(
        "--require-all", action="store_true", help="Exit with status 1 when any expected task is missing."
    )
    return parser


def _result_files(run_dirs: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    files, skipped = [], []
    for run_dir in run_dirs:
        direct = os.path.join(run_dir, RESULTS_NAME)
        if os.path.isfile(direct):
            files.append(direct)
            continue
        if not os.path.isdir(run_dir):
            skipped.append({"path": run_dir, "reason": "does not exist"})
            continue
        found = sorted(
            os.path.join(run_dir, name, RESULTS_NAME)
            for name in os.listdir(run_dir)
            if os.path.isfile(os.path.join(run_dir, name, RESULTS_NAME))
        )
        if found:
            files.extend(found)
        else:
            skipped.append(
                {"path": run_dir, "reason": f"no {RESULTS_NAME} in it or in its subfolders (unfinished run?)"}
            )
    return files, skipped


def collect_results(run_dirs: list[str]) -> tuple[dict[str, dict[str, Any]], list[dict[str, str]]]:
    """Reads `glue_results.json` of every run folder.

    Returns:
        `(results, skipped)`: task -> `{"scores", "task_score", "run_dir"}`, and the folders that held no results,
        each with the reason.

    Raises:
        [`SummaryError`]: two runs of the same task (pass only the one to report).
    """
    from ..integrations.glue import CUSTOM_TASK, get_glue_task, task_score

    files, skipped = _result_files(run_dirs)
    results: dict[str, dict[str, Any]] = {}
    for path in files:
        run_dir = os.path.dirname(path)
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
            if record.get("task") == CUSTOM_TASK:
                skipped.append({"path": run_dir, "reason": "a run on local data without a GLUE task name"})
                continue
            task = get_glue_task(record.get("task"))
        except (OSError, ValueError) as err:
            skipped.append({"path": run_dir, "reason": f"unreadable {RESULTS_NAME}: {err}"})
            continue
        if task.name in results:
            raise SummaryError(
                f"Two runs of {task.name}: {results[task.name]['run_dir']} and {run_dir}. Pass only the one to report."
            )
        scores = {k: float(v) for k, v in (record.get("scores") or {}).items() if v is not None}
        missing_metrics = [m for m in task.metrics if m not in scores]
        results[task.name] = {
            "run_dir": run_dir,
            "scores": {m: 100 * scores[m] for m in task.metrics if m in scores},
            "task_score": None if missing_metrics else 100 * task_score(task, scores),
            "missing_metrics": missing_metrics,
        }
    return results, skipped


def summarize(run_dirs: list[str], tasks: list[str] | tuple[str, ...] = ALL_TASKS) -> dict[str, Any]:
    """The summary as a JSON-serialisable dict (scores in percent).

    Keys: `convention`, `expected_tasks`, `tasks` (per task: scores, task score, run folder, or `status: missing`),
    `missing` (expected tasks without a complete result), `glue_score` (`None` unless every expected task is
    present), `partial_average` (`{"value", "tasks", "missing"}` over the tasks present, when some are missing),
    `not_counted` (results of tasks outside `expected_tasks`), `skipped` (folders without results, with reasons).
    """
    tasks = [t for t in ALL_TASKS if t in set(tasks)]
    results, skipped = collect_results(run_dirs)
    table: dict[str, dict[str, Any]] = {}
    missing = []
    for task in tasks:
        entry = results.get(task)
        if entry is None:
            table[task] = {"status": "missing", "reason": "no run"}
            missing.append(task)
        elif entry["task_score"] is None:
            table[task] = {"status": "missing", "reason": f"results lack {entry['missing_metrics']}", **entry}
            missing.append(task)
        else:
            table[task] = {"status": "ok", **entry}
    present = [t for t in tasks if t not in missing]
    mean = (sum(table[t]["task_score"] for t in present) / len(present)) if present else None
    return {
        "convention": CONVENTION,
        "expected_tasks": tasks,
        "tasks": table,
        "missing": missing,
        "glue_score": mean if not missing else None,
        "partial_average": {"value": mean, "tasks": present, "missing": missing} if missing and present else None,
        "not_counted": sorted(set(results) - set(tasks)),
        "skipped": skipped,
    }


def _score_line(summary: dict[str, Any]) -> list[str]:
    lines = []
    n = len(summary["expected_tasks"])
    if summary["glue_score"] is not None:
        lines.append(
            f"**GLUE score: {summary['glue_score']:.2f}** (mean of {n} tasks: {', '.join(summary['expected_tasks'])})"
        )
    else:
        lines.append(f"**GLUE score: n/a (missing: {', '.join(summary['missing'])})**")
        partial = summary["partial_average"]
        if partial:
            lines.append(
                f"Partial average over {len(partial['tasks'])} of {n} tasks ({', '.join(partial['tasks'])}; "
                f"excludes {', '.join(partial['missing'])}): {partial['value']:.2f}. This is not a GLUE score."
            )
    return lines


def render_markdown(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table, the GLUE score line(s), the convention and any skipped folder."""
    rows = ["| task | metrics | score | run |", "| --- | --- | --- | --- |"]
    for task, entry in summary["tasks"].items():
        name = DISPLAY[task]
        if entry["status"] == "ok":
            metrics = " / ".join(f"{m} {v:.2f}" for m, v in entry["scores"].items())
            rows.append(f"| {name} | {metrics} | {entry['task_score']:.2f} | {entry['run_dir']} |")
        else:
            rows.append(f"| {name} | **missing** ({entry['reason']}) | n/a | {entry.get('run_dir', '')} |")
    lines = rows + [""] + _score_line(summary) + ["", f"_{summary['convention']}_"]
    if summary["not_counted"]:
        lines.append(f"\nNot counted (outside --tasks): {', '.join(summary['not_counted'])}.")
    for item in summary["skipped"]:
        lines.append(f"\nSkipped {item['path']}: {item['reason']}.")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Print the Markdown summary (and write the JSON/Markdown files). Exit 1 with `--require-all` and a missing
    task, 2 when the runs cannot be summarized together."""
    summary = summarize(args.run_dirs, args.tasks)  # a SummaryError: exit status 2, see neobert_hf.cli.errors
    markdown = render_markdown(summary)
    print(markdown, end="")
    if args.json_path:
        os.makedirs(os.path.dirname(os.path.abspath(args.json_path)), exist_ok=True)
        with open(args.json_path, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    if args.markdown_path:
        os.makedirs(os.path.dirname(os.path.abspath(args.markdown_path)), exist_ok=True)
        with open(args.markdown_path, "w", encoding="utf-8") as f:
            f.write(markdown)
    if summary["missing"] and args.require_all:
        print(f"neobert-hf glue-summary: missing tasks: {', '.join(summary['missing'])}", file=sys.stderr)
        return 1
    return 0
