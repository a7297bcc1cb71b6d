"""MTEB evaluation of a NeoBERT sentence-transformers model, with tasks from mteb's registry or from local files.

- [`resolve_tasks`] turns task names, task types and local task specs into mteb task objects, checking every name
  before anything runs: an unknown name is an error (with the closest names), and nothing is written.
- [`local_sts_task`] / [`local_retrieval_task`] define mteb tasks from an STS jsonl (`sentence1`, `sentence2`,
  `score`) or a BEIR folder (`corpus.jsonl`, `queries.jsonl`, `qrels/test.tsv`), so the whole path runs offline.
- [`evaluate`] runs `mteb.evaluate` and writes mteb's own result files under
  `<output_folder>/results/<model_name>/<revision>/<task>.json`.
- [`summarize_results`] reads those files back, task by task, and writes `summary.json` / `summary.md` with per-category
  averages. A task whose file is absent, or lacks one of the task's splits or subsets, is listed as missing, and an
  average over a category with a missing task is reported as partial, never as the category's average.

`mteb` is imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_args

from ..import_utils import require
from .eval_data import read_beir_folder, read_sts_jsonl


if TYPE_CHECKING:
    from mteb import AbsTask


__all__ = [
    "MTEBArguments",
    "UnknownTaskError",
    "check_prompts",
    "evaluate",
    "local_retrieval_task",
    "local_sts_task",
    "parse_local_task",
    "resolve_tasks",
    "summarize_results",
]

logger = logging.getLogger(__name__)

SUMMARY_JSON, SUMMARY_MD = "summary.json", "summary.md"
_LOCAL_SPLIT = "test"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


class UnknownTaskError(ValueError):
    """An MTEB task name or task type that does not exist."""


# ---------------------------------------------------------------------------------------------------------------------
# Local tasks
# ---------------------------------------------------------------------------------------------------------------------


def _metadata(name: str, path: str, task_type: str, main_score: str, description: str):
    from mteb import TaskMetadata

    return TaskMetadata(
        name=name,
        description=description,
        dataset={"path": os.path.abspath(path), "revision": "local"},
        type=task_type,
        category="t2t",
        modalities=["text"],
        eval_splits=[_LOCAL_SPLIT],
        eval_langs=["eng-Latn"],
        main_score=main_score,
        reference=None,
        license="not specified",
    )


def local_sts_task(name: str, path: str | os.PathLike) -> AbsTask:
    """An mteb STS task (main score `cosine_spearman`) from an STS jsonl file (`sentence1`, `sentence2`, `score`).

    The file is read here, so a broken file fails before any model runs. Scores are normalised with the file's own
    minimum and maximum (correlations do not depend on it).
    """
    require("mteb", "Local MTEB tasks")
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.sts import AbsTaskSTS

    path = os.fspath(path)
    data = read_sts_jsonl(path)

    def load_data(self, num_proc=None, *, timer=None, **kwargs):
        if self.data_loaded:
            return
        rows = read_sts_jsonl(path)
        split = Dataset.from_dict({"sentence1": rows.sentences1, "sentence2": rows.sentences2, "score": rows.scores})
        self.dataset = {"default": DatasetDict({_LOCAL_SPLIT: split})}
        self.data_loaded = True

    attributes = {
        "metadata": _metadata(name, path, "STS", "cosine_spearman", f"Local STS task read from {path}."),
        "min_score": min(data.scores),
        "max_score": max(data.scores),
        "load_data": load_data,
    }
    return type(f"LocalSTS_{_python_name(name)}", (AbsTaskSTS,), attributes)()


def local_retrieval_task(name: str, folder: str | os.PathLike) -> AbsTask:
    """An mteb retrieval task (main score `ndcg_at_10`) from a BEIR folder (`corpus.jsonl`, `queries.jsonl`,
    `qrels/test.tsv`). The folder is read here, so a broken file fails before any model runs."""
    require("mteb", "Local MTEB tasks")
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval

    folder = os.fspath(folder)
    read_beir_folder(folder, _LOCAL_SPLIT)

    def load_data(self, num_proc=None, *, timer=None, **kwargs):
        if self.data_loaded:
            return
        data = read_beir_folder(folder, _LOCAL_SPLIT)
        corpus = Dataset.from_dict(
            {
                "id": list(data.corpus),
                "title": [doc["title"] for doc in data.corpus.values()],
                "text": [doc["text"] for doc in data.corpus.values()],
            }
        )
        queries = Dataset.from_dict({"id": list(data.queries), "text": list(data.queries.values())})
        self.dataset = {
            "default": {
                _LOCAL_SPLIT: {"corpus": corpus, "queries": queries, "relevant_docs": data.qrels, "top_ranked": None}
            }
        }
        self.data_loaded = True

    attributes = {
        "metadata": _metadata(name, folder, "Retrieval", "ndcg_at_10", f"Local retrieval task read from {folder}."),
        "load_data": load_data,
    }
    return type(f"LocalRetrieval_{_python_name(name)}", (AbsTaskRetrieval,), attributes)()


def _python_name(name: str) -> str:
    return re.sub(r"\W", "_", name)


def parse_local_task(spec: str) -> tuple[str, str]:
    """`NAME=PATH` -> `(NAME, PATH)`; a folder is a BEIR retrieval task, a file an STS jsonl."""
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise ValueError(f"A local task is NAME=PATH (a BEIR folder or an STS .jsonl file), got {spec!r}.")
    if not _NAME_RE.match(name):
        raise ValueError(f"Local task name {name!r} may only use letters, digits, '_', '-' and '.'.")
    if not os.path.exists(path):
        raise ValueError(f"Local task {name}: {path} does not exist.")
    return name, path


# ---------------------------------------------------------------------------------------------------------------------
# Task selection
# ---------------------------------------------------------------------------------------------------------------------


def _registry_task(name: str) -> AbsTask | None:
    """mteb's task called `name` (renamed tasks included), or `None` when mteb has none."""
    import mteb

    try:
        return mteb.get_task(name)
    except KeyError:
        return None


def _registry_names() -> list[str]:
    """Every task name mteb knows (for suggestions)."""
    import mteb

    tasks = mteb.get_tasks(exclude_superseded=False, exclude_private=False, exclude_beta=False)
    return [task.metadata.name for task in tasks]


ALL_TASK_TYPES = "all"


def _benchmark_tasks(name: str) -> list[AbsTask] | str:
    """The tasks of mteb's benchmark `name`, or the problem (an unknown name, with the closest names)."""
    import mteb

    try:
        return list(mteb.get_benchmark(name).tasks)
    except (KeyError, ValueError):
        names = [benchmark.name for benchmark in mteb.get_benchmarks()]
        close = difflib.get_close_matches(name, names, n=3)
        return f"unknown benchmark {name!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")


def resolve_tasks(
    tasks: Sequence[str] | None = None,
    task_types: Sequence[str] | None = None,
    local_tasks: Sequence[str] | None = None,
    benchmark: str | None = None,
    languages: Sequence[str] | None = None,
) -> list[AbsTask]:
    """Every task to evaluate, checked before anything runs.

    Args:
        tasks: mteb task names (e.g. `STSBenchmark`).
        task_types: mteb task types (e.g. `STS`, `Retrieval`): every public, non-superseded task of these types.
            `["all"]` is every task type: every public, non-superseded text-only task (image, audio and video tasks
            need another kind of model). Giving both `tasks` and `task_types` is an error (mteb would silently ignore
            the types).
        local_tasks: `NAME=PATH` specs ([`parse_local_task`]).
        benchmark: an mteb benchmark name (e.g. `MTEB(eng, v2)`, see `mteb.get_benchmarks()`): its tasks, exactly as
            mteb defines them. Not with `tasks` or `task_types`.
        languages: ISO 639-3 codes (e.g. `eng`): keep the `task_types` selection to tasks in these languages.

    Returns:
        `list[AbsTask]`: registry (or benchmark) tasks first, then local tasks.

    Raises:
        [`UnknownTaskError`]: an unknown task name, type or benchmark (with the closest valid names) or a local task
            whose name is also a registry name.
        `ValueError`: nothing to evaluate, conflicting selectors, or a broken local file.
    """
    require("mteb", "MTEB evaluation")
    import mteb
    from mteb.abstasks.task_metadata import TaskType

    tasks, task_types, local_tasks = list(tasks or []), list(task_types or []), list(local_tasks or [])
    languages = list(languages or [])
    if tasks and task_types:
        raise ValueError("Give either tasks or task_types, not both (mteb ignores task_types when tasks are named).")
    if benchmark and (tasks or task_types):
        raise ValueError(f"benchmark {benchmark!r} selects its own tasks: give it without tasks or task_types.")
    if languages and not task_types:
        raise ValueError("languages filters the task_types selection; give task_types (e.g. all) with it.")
    if not (tasks or task_types or local_tasks or benchmark):
        raise ValueError("Nothing to evaluate: give tasks, task_types, benchmark or local_tasks.")
    if ALL_TASK_TYPES in task_types and len(task_types) > 1:
        raise ValueError(f"task_types {ALL_TASK_TYPES!r} already selects every type; give it alone.")
    found = {name: _registry_task(name) for name in tasks}
    unknown = [name for name, task in found.items() if task is None]
    valid_types = get_args(TaskType)
    unknown_types = [name for name in task_types if name not in valid_types and name != ALL_TASK_TYPES]
    benchmark_tasks = _benchmark_tasks(benchmark) if benchmark else []
    local_specs = [parse_local_task(spec) for spec in local_tasks]
    clashes = [name for name, _ in local_specs if _registry_task(name) is not None]
    requested = tasks + [name for name, _ in local_specs]
    repeated = sorted({name for name in requested if requested.count(name) > 1})
    problems = []
    known = _registry_names() if unknown else []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=3)
        problems.append(f"unknown task {name!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    for name in unknown_types:
        close = difflib.get_close_matches(name, valid_types, n=3)
        problems.append(
            f"unknown task type {name!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")
            + f"; valid types: {', '.join(valid_types)}"
        )
    if isinstance(benchmark_tasks, str):
        problems.append(benchmark_tasks + "; mteb.get_benchmarks() lists them")
    for name in clashes:
        problems.append(f"local task name {name!r} is an MTEB task name; choose another")
    for name in repeated:
        problems.append(f"task {name!r} is requested twice")
    if problems:
        raise UnknownTaskError("Cannot evaluate: " + "; ".join(problems) + ".")

    resolved: list[AbsTask] = []
    filters: dict[str, Any] = {"languages": languages} if languages else {}
    if tasks:
        resolved.extend(found[name] for name in tasks)
    elif benchmark:
        resolved.extend(benchmark_tasks)
    elif task_types == [ALL_TASK_TYPES]:
        resolved.extend(mteb.get_tasks(modalities=["text"], exclusive_modality_filter=True, **filters))
        if not resolved:
            raise ValueError(f"No public text task{' in ' + ', '.join(languages) if languages else ''}.")
    elif task_types:
        resolved.extend(mteb.get_tasks(task_types=task_types, **filters))
        if not resolved:
            raise ValueError(f"No public task of type(s) {task_types}" + (f" in {languages}." if languages else "."))
    for name, path in local_specs:
        resolved.append(local_retrieval_task(name, path) if os.path.isdir(path) else local_sts_task(name, path))
    return resolved


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation and summary
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class MTEBArguments:
    """The flags of `neobert-hf mteb`."""

    model: str | None = field(
        default=None,
        metadata={"help": "(Required) A sentence-transformers folder, a NeoBERT checkpoint (checkpoints/<step>/, a run "
                  "folder or an export) or a Hub id. A NeoBERT checkpoint is wrapped with pooling/normalize below; "
                  "a sentence-transformers folder keeps its own."},
    )
    tasks: list[str] | None = field(default=None, metadata={"help": "MTEB task names, e.g. STSBenchmark SciFact."})
    task_types: list[str] | None = field(
        default=None,
        metadata={"help": "MTEB task types, e.g. STS Retrieval (every public, non-superseded task of these types); "
                  "all: every type (every public text-only task, well over a thousand: narrow it with languages)."},
    )
    benchmark: str | None = field(
        default=None,
        metadata={"help": "An MTEB benchmark name, e.g. 'MTEB(eng, v2)' (mteb.get_benchmarks() lists them): its tasks. "
                  "Not with tasks or task_types."},
    )
    languages: list[str] | None = field(
        default=None,
        metadata={"help": "ISO 639-3 language codes (e.g. eng) that the task_types selection is narrowed to."},
    )
    local_tasks: list[str] | None = field(
        default=None,
        metadata={"help": "NAME=PATH tasks from local files: a BEIR folder (corpus.jsonl, queries.jsonl, "
                  "qrels/test.tsv) is a retrieval task, an STS .jsonl (sentence1, sentence2, score) an STS task."},
    )
    output_folder: str = field(
        default="mteb_results",
        metadata={"help": "Results go to <output_folder>/results/<model>/<revision>/<task>.json (mteb's format); the "
                  "summary to <output_folder>/summary.{json,md}."},
    )
    model_name: str | None = field(
        default=None,
        metadata={"help": "Name of the model in the results path, 'org/name' (default: the Hub id, or "
                  "'neobert-hf/<folder name>' for a local model)."},
    )
    pooling: str | None = field(
        default=None,
        metadata={"help": "mean, cls or max for a NeoBERT checkpoint (default mean); avg is accepted as mean."},
    )
    normalize: bool | None = field(
        default=None, metadata={"help": "Unit-normalise embeddings of a NeoBERT checkpoint (default false)."}
    )
    max_seq_length: int | None = field(default=None, metadata={"help": "Truncate inputs to this many tokens."})
    batch_size: int = field(default=32, metadata={"help": "Encoding batch size."})
    prompts: str | None = field(
        default=None,
        metadata={"help": "JSON object of prompts keyed by query/document, a task type or an MTEB task name, e.g. "
                  "'{\"query\": \"search_query: \", \"document\": \"search_document: \"}'."},
    )
    overwrite_results: bool = field(
        default=False, metadata={"help": "Re-run tasks whose results already exist (default: only missing ones)."}
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer, when a NeoBERT checkpoint folder has none."}
    )

    def __post_init__(self):
        from .sentence_transformers import validate_pooling

        if not self.model:
            raise ValueError("Missing required argument: --model (a checkpoint, an ST folder or a Hub id).")
        if self.pooling is not None:
            self.pooling = validate_pooling(self.pooling)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
        if self.model_name is not None and "/" not in self.model_name:
            raise ValueError(f"model_name must look like 'org/name' (mteb's convention), got {self.model_name!r}.")
        if isinstance(self.prompts, str):
            try:
                self.prompts = json.loads(self.prompts)
            except json.JSONDecodeError as error:
                raise ValueError(f"prompts must be a JSON object, got {self.prompts!r}.") from error
        if self.prompts is not None and not (
            isinstance(self.prompts, dict) and all(isinstance(v, str) for v in self.prompts.values())
        ):
            raise ValueError(f"prompts must map names to prompt strings, got {self.prompts!r}.")


def _is_sentence_transformers_model(path: str) -> bool:
    """Whether `path` (a folder or a Hub id) is a saved sentence-transformers model (it has a `modules.json`)."""
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, "modules.json"))
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(path, "modules.json")
    except Exception:  # noqa: BLE001 - not on the Hub, not cached offline, or no modules.json: not an ST model
        return False
    return True


def load_model(args: MTEBArguments):
    """The `SentenceTransformer` for `args.model`: a saved sentence-transformers folder as it is (its pooling and
    normalisation; `pooling`/`normalize` must then be unset), anything else through
    [`~neobert_hf.integrations.sentence_transformers.build_sentence_transformer`] (strict loading)."""
    from .sentence_transformers import build_sentence_transformer

    if _is_sentence_transformers_model(args.model):
        if args.pooling is not None or args.normalize is not None or args.tokenizer_name_or_path is not None:
            raise ValueError(
                f"{args.model} is a saved sentence-transformers model with its own pooling, normalisation and "
                "tokenizer; do not pass pooling/normalize/tokenizer_name_or_path (they would be ignored)."
            )
        require("sentence_transformers", "MTEB evaluation")
        from sentence_transformers import SentenceTransformer

        import neobert_hf  # noqa: F401 - registers the NeoBERT classes, so no remote code is needed

        model = SentenceTransformer(args.model)
        if args.max_seq_length is not None:
            limit = model[0].auto_model.config.max_position_embeddings
            if not 0 < args.max_seq_length <= limit:
                raise ValueError(f"max_seq_length must be in [1, {limit}], got {args.max_seq_length}.")
            model.max_seq_length = args.max_seq_length
        return model
    return build_sentence_transformer(
        args.model,
        pooling=args.pooling or "mean",
        normalize=bool(args.normalize),
        max_seq_length=args.max_seq_length,
        tokenizer_name_or_path=args.tokenizer_name_or_path,
    )


def default_model_name(model: str) -> str:
    """`org/name` for the results path: the Hub id as is; `neobert-hf/<folder>` for a local folder, and
    `neobert-hf/<run>-step<step>` for a `<run>/checkpoints/<step>/` folder."""
    if not os.path.exists(model):
        return model if "/" in model else f"neobert-hf/{model}"
    path = os.path.normpath(os.path.abspath(model))
    name, parent = os.path.basename(path), os.path.dirname(path)
    if name.isdigit() and os.path.basename(parent) == "checkpoints":
        name = f"{os.path.basename(os.path.dirname(parent))}-step{name}"
    return f"neobert-hf/{name or 'model'}"


def check_prompts(prompts: dict[str, str] | None, local_names: Sequence[str] = ()) -> None:
    """Raise unless every prompt key is one mteb resolves: `query`, `document`, a task type, a registry task name, or
    `<task name or type>-<query|document>` (mteb itself only warns and drops the others)."""
    if not prompts:
        return
    from mteb.models.abs_encoder import AbsEncoder

    local_keys = [key for key in prompts if key in local_names or key.rsplit("-", 1)[0] in local_names]
    if local_keys:
        raise ValueError(
            f"Prompt keys {local_keys} name local tasks; mteb resolves prompts only by its own task names, task types "
            "and query/document, so use those keys."
        )
    try:
        AbsEncoder.validate_task_to_prompt_name(prompts, raise_for_invalid_keys=True)
    except KeyError as error:
        raise ValueError(f"Invalid prompt keys: {error}") from None


def _wrap(model, model_name: str, prompts: dict[str, str] | None):
    from mteb.models import SentenceTransformerEncoderWrapper

    wrapper = SentenceTransformerEncoderWrapper(model, model_prompts=prompts)
    wrapper.mteb_model_meta = wrapper.mteb_model_meta.model_copy(update={"name": model_name})
    return wrapper


def evaluate(args: MTEBArguments, tasks: list[AbsTask] | None = None) -> dict[str, Any]:
    """Evaluate `args.model` on the tasks, write mteb's result files and the summary, and return the summary.

    Tasks are resolved (and checked) before the model is loaded; a failing task is recorded as missing with its
    error instead of stopping the others.
    """
    require("mteb", "MTEB evaluation")
    import mteb
    from mteb.cache import ResultCache

    if tasks is None:
        tasks = resolve_tasks(args.tasks, args.task_types, args.local_tasks, args.benchmark, args.languages)
    check_prompts(args.prompts, [spec.partition("=")[0] for spec in args.local_tasks or []])
    model = load_model(args)
    wrapper = _wrap(model, args.model_name or default_model_name(args.model), args.prompts)
    cache = ResultCache(cache_path=args.output_folder)
    result = mteb.evaluate(
        wrapper,
        tasks,
        cache=cache,
        encode_kwargs={"batch_size": args.batch_size},
        overwrite_strategy="always" if args.overwrite_results else "only-missing",
        raise_error=False,
        show_progress_bar=False,
    )
    errors = {error.task_name: error.exception for error in result.exceptions or []}
    return summarize_results(args.output_folder, wrapper.mteb_model_meta, tasks, errors=errors)


def _task_score(task, path: str) -> tuple[float | None, str | None]:
    """Mean main score over the task's splits and subsets as stored in `path` (read as mteb's `TaskResult`), or
    `(None, why it is missing)`."""
    import math
    from pathlib import Path

    from mteb import TaskResult

    if not os.path.isfile(path):
        return None, f"no result file {path}"
    try:
        result = TaskResult.from_disk(Path(path))
    except Exception as error:  # noqa: BLE001 - OSError, JSON or pydantic validation errors: the file is unusable
        return None, f"unreadable result file {path} ({' '.join(str(error).split())[:300]})"
    if result.task_name != task.metadata.name:
        return None, f"{path} holds results of task {result.task_name!r}"
    # mteb keeps the task's own splits and subsets and fills a missing one with a NaN main score (with a warning).
    filtered = result.validate_and_filter_scores(task)
    values = []
    for split in task.eval_splits:
        for entry in filtered.scores.get(split, []):
            value = entry.get("main_score")
            if not isinstance(value, (int, float)) or math.isnan(value):
                return None, f"{path} has no scores for split {split!r}, subset {entry.get('hf_subset')!r}"
            values.append(float(value))
    if not values:
        return None, f"{path} has no scores for the splits {list(task.eval_splits)}"
    return sum(values) / len(values), None


def _group(names: list[str], scores: dict[str, float | None]) -> dict[str, Any]:
    evaluated = [name for name in names if scores[name] is not None]
    missing = [name for name in names if scores[name] is None]
    partial = sum(scores[name] for name in evaluated) / len(evaluated) if evaluated else None
    return {
        "tasks": names,
        "evaluated": evaluated,
        "missing": missing,
        "complete": not missing,
        # The average of the category is only defined over all of its tasks.
        "average": partial if not missing else None,
        "average_over_evaluated": partial,
    }


def summarize_results(
    output_folder: str | os.PathLike,
    model_meta,
    tasks: list[AbsTask],
    errors: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Read mteb's result files of `tasks` and write `summary.json` and `summary.md` into `output_folder`.

    A task is *missing* when its result file is absent or unreadable, names another task, or lacks a score for one of
    the task's evaluation splits or subsets (never skipped silently). Category and overall
    `average` are `null` unless every task of the group was evaluated; `average_over_evaluated` is the mean over the
    evaluated ones and is always shown next to the list of missing tasks.

    Args:
        output_folder: the `cache_path` given to mteb (holds `results/`).
        model_meta (`mteb.ModelMeta`): names the results sub-folder (name and revision).
        tasks: the tasks that were requested.
        errors: task name -> error message of a task that failed.

    Returns:
        `dict`: the summary (also written to `summary.json`).
    """
    from mteb.cache import ResultCache

    errors = errors or {}
    output_folder = os.fspath(output_folder)
    cache = ResultCache(cache_path=output_folder)
    rows: dict[str, dict[str, Any]] = {}
    scores: dict[str, float | None] = {}
    by_type: dict[str, list[str]] = {}
    for task in tasks:
        name = task.metadata.name
        path = os.fspath(cache.get_task_result_path(task_name=name, model_name=model_meta))
        score, reason = _task_score(task, path)
        if score is None and name in errors:
            reason = f"evaluation failed: {errors[name]}"
        scores[name] = score
        by_type.setdefault(task.metadata.type, []).append(name)
        rows[name] = {
            "type": task.metadata.type,
            "main_score": task.metadata.main_score,
            "score": score,
            "status": "ok" if score is not None else "missing",
            "reason": reason,
            "result_file": path,
        }
    missing = [name for name, row in rows.items() if row["status"] == "missing"]
    summary = {
        "model": model_meta.name,
        "revision": model_meta.revision,
        "results_folder": os.path.join(output_folder, "results"),
        "tasks": rows,
        "categories": {task_type: _group(names, scores) for task_type, names in by_type.items()},
        "overall": _group(list(rows), scores),
        "missing_tasks": missing,
        "complete": not missing,
    }
    os.makedirs(output_folder, exist_ok=True)
    with open(os.path.join(output_folder, SUMMARY_JSON), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    with open(os.path.join(output_folder, SUMMARY_MD), "w", encoding="utf-8") as handle:
        handle.write(render_summary_markdown(summary))
    return summary


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def render_summary_markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown: one row per task, one per category, the missing tasks spelled out."""
    lines = [f"# MTEB results: {summary['model']} ({summary['revision']})", ""]
    lines += ["| task | type | metric | score |", "| --- | --- | --- | --- |"]
    for name, row in summary["tasks"].items():
        score = _fmt(row["score"]) if row["score"] is not None else "MISSING"
        lines.append(f"| {name} | {row['type']} | {row['main_score']} | {score} |")
    lines += ["", "| category | tasks | average |", "| --- | --- | --- |"]
    groups = list(summary["categories"].items()) + [("all tasks", summary["overall"])]
    for name, group in groups:
        count = f"{len(group['evaluated'])} of {len(group['tasks'])}"
        if group["complete"]:
            average = _fmt(group["average"])
        else:
            average = (
                f"incomplete (missing: {', '.join(group['missing'])}); "
                f"mean of the {len(group['evaluated'])} evaluated: {_fmt(group['average_over_evaluated'])}"
            )
        lines.append(f"| {name} | {count} | {average} |")
    lines.append("")
    if summary["missing_tasks"]:
        lines.append(f"**Missing tasks ({len(summary['missing_tasks'])}):**")
        lines += [f"- {name}: {summary['tasks'][name]['reason']}" for name in summary["missing_tasks"]]
    else:
        lines.append("All requested tasks were evaluated.")
    return "\n".join(lines) + "\n"
