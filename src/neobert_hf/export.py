"""Export a training checkpoint as a clean, self-contained model folder, and push such a folder to the Hub.

A `checkpoints/<step>/` folder (see [`~neobert_hf.checkpoints`]) holds the model *and* the state needed
to resume training (optimizer, scheduler, RNG, trainer state, data position). [`export_model`] writes only the
model part, rebuilt from a strict load of the weights:

```
<out>/
  config.json                 model_type "neobert", architectures, the full auto_map
  model.safetensors           weights (canonical fused layout), in the requested dtype
  modeling_neobert.py         remote code: AutoModel*.from_pretrained(<out>, trust_remote_code=True)
  configuration_neobert.py
  tokenizer.json  tokenizer_config.json  ...   whatever the tokenizer's save_pretrained writes
  README.md                   model card (neobert_hf/model_cards/neobert.md) with the facts of the run
  modules.json  sentence_bert_config.json  config_sentence_transformers.json  1_Pooling/  [2_Normalize/]
                              only with sentence_transformers=True
```

The folder is written under a temporary name next to `<out>` and renamed once complete, so `<out>` never holds a
partial export; nothing is written when the weights do not load strictly.

[`push_to_hub`] uploads such a folder (a checkpoint is exported to a temporary folder first), and of it only the files
of [`push_allow_list`]: weights, config, tokenizer, remote code, the model card, sentence-transformers module files and
files named explicitly (`include`). Anything else in the folder (a nested `backup/optimizer.pt`, a `.env`, training
state, `run_args.json`) never leaves the machine. The Trainers do the same through
[`~neobert_hf.training.hub.CleanHubPushMixin`].
"""

from __future__ import annotations

import fnmatch
import glob
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Literal

from .model_card import ARCHITECTURE_TO_TASK, TASKS, Task, write_model_card


__all__ = [
    "DTYPES",
    "RESUME_STATE_PATTERNS",
    "PUSH_ALLOW_PATTERNS",
    "ExportError",
    "ExportResult",
    "PushResult",
    "export_model",
    "find_resume_state",
    "load_strict",
    "push_allow_list",
    "push_to_hub",
    "resolve_model_folder",
]

logger = logging.getLogger(__name__)

Pooling = Literal["mean", "cls", "max"]
DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")

#: Top-level modules of the NeoBERT task heads (everything outside the `model` encoder).
HEAD_MODULES: tuple[str, ...] = ("decoder", "classifier")

#: Files of a checkpoint that belong to training, never to a shared model.
RESUME_STATE_PATTERNS: tuple[str, ...] = (
    "optimizer.pt",
    "optimizer.bin",
    "optimizer_*.pt",
    "scheduler.pt",
    "scaler.pt",
    "rng_state*.pth",
    "trainer_state.json",
    "training_args.bin",
    "data_state.json",
    "data_state.pt",
    "pytorch_model_fsdp*",
    "global_step*",
)


#: Names of the files a push uploads: at the top of the folder, or at the top of a sentence-transformers module folder
#: named in `modules.json` (`1_Pooling/config.json`, `2_Dense/model.safetensors`). Nothing deeper, no dot-file.
PUSH_ALLOW_PATTERNS: tuple[str, ...] = (
    # weights
    "*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.bin",
    "adapter_config.json",
    # config
    "config.json",
    "generation_config.json",
    # tokenizer
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",
    "chat_template.jinja",
    "chat_template.json",
    # remote code
    "*.py",
    # model card
    "README.md",
    # sentence-transformers
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
)

#: Names a push never uploads, even when they match [`PUSH_ALLOW_PATTERNS`] or are named explicitly.
PUSH_DENY_PATTERNS: tuple[str, ...] = RESUME_STATE_PATTERNS + (
    "optimizer*",
    "scheduler*",
    "scaler*",
    "rng_state*",
    "run_args.json",
    "preprocess_info.json",
    ".*",
)


class ExportError(ValueError):
    """An export or push that cannot be done as asked; nothing was written or uploaded."""


@dataclass
class ExportResult:
    """What [`export_model`] wrote.

    Args:
        output_dir: the exported folder.
        files: every file in it, relative paths with `/`, sorted.
        task: the exported head.
        num_parameters: parameters of the exported model.
        dropped_keys: checkpoint keys deliberately left out (the MLM head when exporting `task="base"`).
    """

    output_dir: str
    files: list[str]
    task: str
    num_parameters: int
    dropped_keys: list[str] = field(default_factory=list)


def _model_class(task: str):
    from . import modeling

    return getattr(modeling, TASKS[task].class_name)


def find_resume_state(folder: str | os.PathLike) -> list[str]:
    """Names in `folder` that are training state (optimizer, scheduler, RNG, trainer state, data position)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        return []
    return sorted(
        name for name in os.listdir(folder) if any(fnmatch.fnmatch(name, p) for p in RESUME_STATE_PATTERNS)
    )


def _list_files(folder: str) -> list[str]:
    found = []
    for root, _, files in os.walk(folder):
        for name in files:
            found.append(os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/"))
    return sorted(found)


def resolve_model_folder(source: str | os.PathLike) -> str:
    """The model folder that `source` names: itself when it holds `config.json`, else a checkpoint of a run folder
    (its best when the run recorded one, else its latest), as [`~neobert_hf.checkpoints.resolve_pretrained_path`]
    resolves every local model source.

    Raises:
        [`ExportError`]: when `source` is neither, or is an incomplete checkpoint.
    """
    from .checkpoints import CheckpointLoadError, resolve_pretrained_path

    try:
        return resolve_pretrained_path(source, allow_hub_id=False)
    except CheckpointLoadError as err:
        raise ExportError(str(err)) from err


def load_strict(path: str | os.PathLike, model_class: type, **kwargs: Any):
    """[`~neobert_hf.checkpoints.load_strict`] raising [`ExportError`]: `model_class.from_pretrained(path)` that fails
    on any missing, unexpected or mis-shaped weight."""
    from .checkpoints import load_strict as _load_strict

    return _load_strict(path, model_class, error=ExportError, **kwargs)


def _stored_keys(folder: str) -> list[str]:
    from .model_card import _read_json, _safetensors_numel

    index = _read_json(os.path.join(folder, "model.safetensors.index.json"))
    if index is not None:
        return sorted(index.get("weight_map", {}))
    return sorted(_safetensors_numel(os.path.join(folder, "model.safetensors")))


def _torch_dtype(dtype: str):
    import torch

    return None if dtype == "auto" else getattr(torch, dtype)


def _check_output(output_dir: str, source: str, overwrite: bool) -> None:
    out, src = os.path.abspath(output_dir), os.path.abspath(source)
    if out == src or out.startswith(src + os.sep) or src.startswith(out + os.sep):
        raise ExportError(f"The output {output_dir} must not be the source checkpoint, inside it or contain it.")
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise ExportError(f"The output {output_dir} exists and is not a folder.")
        if os.listdir(out) and not overwrite:
            raise ExportError(f"The output {output_dir} exists and is not empty; pass overwrite=True (--overwrite).")


def _validate_pooling(pooling: str) -> None:
    from .integrations.sentence_transformers import validate_pooling

    try:
        validate_pooling(pooling)
    except ValueError as err:
        raise ExportError(str(err)) from err


def _write_sentence_transformers_files(folder: str, pooling: str, normalize: bool) -> None:
    """Add the sentence-transformers module files (`modules.json`, `sentence_bert_config.json`,
    `config_sentence_transformers.json`, `1_Pooling/`, `2_Normalize/`) to a saved model folder, using
    sentence-transformers' own modules and `save`. The transformer weights stay those already in `folder`."""
    from .integrations.sentence_transformers import build_sentence_transformer

    model = build_sentence_transformer(folder, pooling=pooling, normalize=normalize, device="cpu")
    with tempfile.TemporaryDirectory(prefix="neobert-st-") as scratch:
        model.save(scratch)
        for name in os.listdir(scratch):
            if name == "README.md" or os.path.exists(os.path.join(folder, name)):
                continue  # the transformer's own files and card are those already in `folder`
            source = os.path.join(scratch, name)
            if os.path.isdir(source):
                shutil.copytree(source, os.path.join(folder, name))
            else:
                shutil.copy2(source, os.path.join(folder, name))


def _load_for_export(folder: str, task: str, dtype: str):
    """Strict load of `folder` into the class of `task` ([`~neobert_hf.checkpoints.load_pretrained_strict`] with
    `task_head="load"`): a head that the export has must come from the checkpoint (never a fresh random one); only the
    source's own head may be left out, when exporting the bare encoder (`task="base"`)."""
    from .checkpoints import CheckpointLoadError, load_pretrained_strict

    try:
        model = load_pretrained_strict(folder, _model_class(task), task_head="load", dtype=_torch_dtype(dtype))
    except CheckpointLoadError as err:
        raise ExportError(f"{err}\nNothing was written.") from err
    return model.eval()


def export_model(
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    task: Task | None = None,
    dtype: str = "auto",
    sentence_transformers: bool = False,
    pooling: Pooling = "mean",
    normalize: bool = False,
    tokenizer: str | os.PathLike | None = None,
    require_tokenizer: bool = True,
    overwrite: bool = False,
    model_card: bool = True,
    card_facts: dict[str, Any] | None = None,
) -> ExportResult:
    """Write a clean, self-contained model folder from a checkpoint (or another model folder).

    Args:
        source (`str` or `os.PathLike`):
            A `checkpoints/<step>/` folder, a run's `output_dir` (its recorded best checkpoint, else its latest) or an
            exported folder.
        output_dir (`str` or `os.PathLike`):
            The folder to write. It must not exist or be empty, unless `overwrite`.
        task (`str`, *optional*):
            The head to export: `mlm`, `base`, `sequence-classification`, `token-classification`,
            `question-answering`. Defaults to the checkpoint's own architecture, or `base` with
            `sentence_transformers=True`. `base` drops the checkpoint's head on purpose; any other missing or
            unexpected weight is an error.
        dtype (`str`, *optional*, defaults to `"auto"`):
            `auto` (as stored), `float32`, `bfloat16` or `float16`.
        sentence_transformers (`bool`, *optional*, defaults to `False`):
            Also write the sentence-transformers files, so `SentenceTransformer(output_dir)` loads it.
        pooling (`str`, *optional*, defaults to `"mean"`):
            Sentence-transformers pooling: `mean`, `cls` or `max`.
        normalize (`bool`, *optional*, defaults to `False`):
            Add a sentence-transformers `Normalize` module (unit-length embeddings).
        tokenizer (`str` or `os.PathLike`, *optional*):
            Where to load the tokenizer from; defaults to `source`.
        require_tokenizer (`bool`, *optional*, defaults to `True`):
            Fail when no tokenizer is found; `False` exports the model alone, with a warning.
        overwrite (`bool`, *optional*, defaults to `False`):
            Replace a non-empty `output_dir` (only once the new export is complete).
        model_card (`bool`, *optional*, defaults to `True`):
            Write `README.md` from the packaged template.
        card_facts (`dict`, *optional*):
            Overrides of [`~neobert_hf.model_card.ModelCardFacts`] (`model_name`, `model_id`, `dataset`, `license`,
            `base_model`, ...).

    Returns:
        [`ExportResult`].

    Raises:
        [`ExportError`]: bad options, an output that would be overwritten, weights that do not load strictly, a
        missing tokenizer. Nothing is written then.

    Example:

    ```python
    >>> from neobert_hf.export import export_model
    >>> result = export_model("out/checkpoints/1000", "exported/neobert-small")  # doctest: +SKIP
    >>> result.files  # doctest: +SKIP
    ['README.md', 'config.json', 'configuration_neobert.py', 'model.safetensors', 'modeling_neobert.py', ...]
    ```
    """
    if task is not None and task not in TASKS:
        raise ExportError(f"Unknown task {task!r}; expected one of {sorted(TASKS)}.")
    if dtype not in DTYPES:
        raise ExportError(f"Unknown dtype {dtype!r}; expected one of {list(DTYPES)}.")
    if sentence_transformers:
        _validate_pooling(pooling)
        from .import_utils import require

        require("sentence_transformers", "the sentence-transformers export")
    if normalize and not sentence_transformers:
        raise ExportError("normalize applies to the sentence-transformers export; pass sentence_transformers=True.")
    output_dir = os.fspath(output_dir)
    folder = resolve_model_folder(source)
    _check_output(output_dir, folder, overwrite)

    with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    if config.get("model_type") != "neobert":
        raise ExportError(f"{folder} holds a {config.get('model_type')!r} model, not NeoBERT (model_type 'neobert').")
    architectures = config.get("architectures") or []
    source_task = ARCHITECTURE_TO_TASK.get(architectures[0]) if architectures else None
    if task is None:
        task = "base" if sentence_transformers else (source_task or "mlm")

    model_class = _model_class(task)
    model = _load_for_export(folder, task, dtype)
    dropped = []
    if task == "base" and source_task not in (None, "base"):
        dropped = [k for k in _stored_keys(folder) if k.split(".")[0] in HEAD_MODULES]
        logger.info("Exporting task=base: left out the %s head %s.", source_task, dropped)

    from transformers import AutoTokenizer

    tokenizer_source = os.fspath(tokenizer) if tokenizer is not None else folder
    try:
        loaded_tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    except (OSError, ValueError) as err:
        loaded_tokenizer = None
        if require_tokenizer or tokenizer is not None:
            raise ExportError(
                f"No tokenizer could be loaded from {tokenizer_source} ({err}). A model folder without its tokenizer "
                "is not usable; pass the tokenizer the model was trained with (--tokenizer)."
            ) from err
        logger.warning("No tokenizer found in %s: the export holds the model only.", tokenizer_source)
    if loaded_tokenizer is not None and len(loaded_tokenizer) > model.config.vocab_size:
        raise ExportError(
            f"The tokenizer has {len(loaded_tokenizer)} tokens but the model's vocabulary has "
            f"{model.config.vocab_size} rows: it is not the tokenizer of this model."
        )

    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(output_dir))}.tmp-", dir=parent)
    try:
        model.save_pretrained(tmp)
        if loaded_tokenizer is not None:
            loaded_tokenizer.save_pretrained(tmp)
        if sentence_transformers:
            _write_sentence_transformers_files(tmp, pooling, normalize)
        if model_card:
            facts = {
                "task": task,
                "num_parameters": model.num_parameters(),
                "model_name": os.path.basename(os.path.normpath(os.path.abspath(output_dir))),
            }
            if sentence_transformers:
                facts["sentence_transformers"] = {"pooling": pooling, "normalize": normalize}
            facts.update(card_facts or {})
            # Facts of the run come from the source; the card describes the clean folder, not a checkpoint.
            from .model_card import collect_facts

            gathered = collect_facts(folder, **facts)
            gathered.checkpoint = False
            write_model_card(tmp, gathered)
        leftovers = find_resume_state(tmp)
        if leftovers:  # defensive: save_pretrained never writes these
            raise ExportError(f"Training state {leftovers} ended up in the export; nothing was written.")
        load_strict(tmp, model_class)  # the written folder loads with no missing or unexpected key
        files = _list_files(tmp)
        from .checkpoints import publish  # the atomic rename of the checkpoint tree

        publish(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(
        output_dir=output_dir,
        files=files,
        task=task,
        num_parameters=model.num_parameters(),
        dropped_keys=dropped,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Hub
# ---------------------------------------------------------------------------------------------------------------------


def _check_repo_id(repo_id: str | None) -> str:
    if repo_id is None or not str(repo_id).strip():
        raise ExportError("push_to_hub needs a repo id (--repo-id org/name, or hub_model_id); nothing was uploaded.")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ExportError(f"Invalid repo id {repo_id!r}: {err}. Nothing was uploaded.") from err
    return repo_id


def _is_clean_export(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "config.json")) and not find_resume_state(folder)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def _inside(folder: str, path: str) -> bool:
    """`path` (a symlink resolved) is a file inside `folder`."""
    root = os.path.realpath(folder)
    real = os.path.realpath(path)
    return os.path.isfile(real) and real.startswith(root + os.sep)


def _module_dirs(folder: str) -> list[str]:
    """The sentence-transformers module folders that `<folder>/modules.json` names (one level, no `..`)."""
    modules = os.path.join(folder, "modules.json")
    if not os.path.isfile(modules):
        return []
    try:
        with open(modules, encoding="utf-8") as handle:
            entries = json.load(handle)
    except (OSError, ValueError):
        return []
    dirs = []
    for entry in entries if isinstance(entries, list) else []:
        path = entry.get("path") if isinstance(entry, dict) else None
        if isinstance(path, str) and path and "/" not in path.strip("/") and not path.startswith("."):
            dirs.append(path.strip("/"))
    return sorted(set(dirs))


def _check_included(folder: str, include) -> list[str]:
    files = []
    for name in include or ():
        rel = os.path.normpath(os.fspath(name)).replace(os.sep, "/")
        path = os.path.join(folder, rel)
        if os.path.isabs(os.fspath(name)) or rel.startswith("../") or rel == "..":
            raise ExportError(f"--include {name}: name a file inside {folder} by its relative path. Nothing was uploaded.")
        if not os.path.isfile(path):
            raise ExportError(f"--include {name}: there is no such file in {folder}. Nothing was uploaded.")
        if any(_matches(part, PUSH_DENY_PATTERNS) for part in rel.split("/")):
            raise ExportError(
                f"--include {name}: training state, run records and hidden files are never uploaded. Nothing was "
                "uploaded."
            )
        if not _inside(folder, path):
            raise ExportError(f"--include {name}: it links outside {folder}. Nothing was uploaded.")
        files.append(rel)
    return files


def push_allow_list(folder: str | os.PathLike, include=()) -> list[str]:
    """The files of `folder` that a push uploads, relative paths with `/`, sorted.

    A file is uploaded when its name matches [`PUSH_ALLOW_PATTERNS`] and it sits at the top of `folder` or at the top
    of a sentence-transformers module folder named in `modules.json`, or when `include` names it; never when its name
    matches [`PUSH_DENY_PATTERNS`] (optimizer, scheduler, RNG, trainer and data state, `training_args.bin`,
    `run_args.json`, dot-files) or when it is a link to a file outside `folder`.

    Raises:
        [`ExportError`]: an `include` entry that is not a file of `folder`, or that is training state or hidden.
    """
    folder = os.fspath(folder)
    chosen = set(_check_included(folder, include))
    for sub in ["", *_module_dirs(folder)]:
        where = os.path.join(folder, sub)
        if not os.path.isdir(where) or os.path.islink(where) and sub:
            continue
        for name in os.listdir(where):
            path = os.path.join(where, name)
            if _matches(name, PUSH_ALLOW_PATTERNS) and not _matches(name, PUSH_DENY_PATTERNS) and _inside(folder, path):
                chosen.add(f"{sub}/{name}" if sub else name)
    return sorted(chosen)


@dataclass
class PushResult:
    """What [`push_to_hub`] uploaded (or, with `dry_run`, would upload).

    Args:
        repo_id: the Hub repository.
        files: the uploaded files, relative paths with `/`, sorted.
        commit_info: the `CommitInfo` of the upload; `None` for a dry run.
    """

    repo_id: str
    files: list[str]
    commit_info: Any = None

    @property
    def commit_url(self) -> str | None:
        return getattr(self.commit_info, "commit_url", None)


def upload_allowed(api, repo_id: str, folder: str, files: list[str], **kwargs):
    """`api.upload_folder` of exactly `files` of `folder` (huggingface_hub's `allow_patterns`, each an escaped
    literal path, so no other file can match)."""
    if not files:
        raise ExportError(f"{folder} holds no model file to upload; nothing was uploaded.")
    return api.upload_folder(
        repo_id=repo_id, folder_path=folder, allow_patterns=[glob.escape(f) for f in files], **kwargs
    )


def _hub_api(token: str | None = None):
    from huggingface_hub import HfApi

    return HfApi(token=token)


def push_to_hub(
    source: str | os.PathLike,
    repo_id: str | None,
    *,
    private: bool | None = None,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    include=(),
    dry_run: bool = False,
    announce=None,
    **export_kwargs: Any,
) -> PushResult:
    """Upload a clean model folder to the Hub: only the files of [`push_allow_list`].

    An exported folder (a `config.json` and no training state) is uploaded as it is. A checkpoint folder or a run's
    `output_dir` is first exported with [`export_model`] (`export_kwargs`) to a temporary folder, and that folder
    is uploaded: optimizer, scheduler, RNG and trainer state never leave the machine. The list of files is logged
    before the upload.

    Args:
        source: an exported folder, a `checkpoints/<step>/` folder or a run's `output_dir`.
        repo_id: `org/name` on the Hub (created if needed).
        private: visibility of a repo created here.
        revision: branch to push to (created from the default branch if needed).
        token: Hub token (defaults to the logged-in one).
        commit_message: commit message.
        include: more files of the source folder to upload, by relative path (copied into the export of a
            checkpoint); training state and dot-files are refused.
        dry_run: list the files that would be uploaded and upload nothing (no repository is created).
        announce: called with the list of files before anything is uploaded (the CLI prints it); by default the
            list is logged.
        export_kwargs: passed to [`export_model`] when `source` must be exported first (`task`,
            `sentence_transformers`, `pooling`, ...).

    Returns:
        [`PushResult`]: the repo, the uploaded files and the `CommitInfo` (`None` for a dry run).

    Raises:
        [`ExportError`]: no or invalid repo id, a source that is not a model, a bad `include`, or export options
        given with an already exported folder. Nothing is uploaded then.
    """
    repo_id = _check_repo_id(repo_id)
    folder = os.fspath(source)
    if not os.path.isdir(folder):
        raise ExportError(f"{folder} does not exist or is not a folder; nothing was uploaded.")
    with tempfile.TemporaryDirectory(prefix="neobert-push-") as scratch:
        if _is_clean_export(folder) and not os.path.isdir(os.path.join(folder, "checkpoints")):
            if export_kwargs:
                raise ExportError(
                    f"{folder} is already an exported folder; export options {sorted(export_kwargs)} apply only to a "
                    "checkpoint. Export again with `neobert-hf export` instead."
                )
            resolve_model_folder(folder)  # has weights
            upload = folder
            files = push_allow_list(upload, include)
        else:
            model_folder = resolve_model_folder(folder)
            extra = _check_included(model_folder, include)
            card_facts = dict(export_kwargs.pop("card_facts", None) or {})
            card_facts.setdefault("model_id", repo_id)
            card_facts.setdefault("model_name", repo_id.split("/")[-1])  # not the temporary folder's name
            upload = os.path.join(scratch, "export")
            export_model(folder, upload, card_facts=card_facts, **export_kwargs)
            for rel in extra:
                target = os.path.join(upload, rel)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copyfile(os.path.join(model_folder, rel), target)
            files = push_allow_list(upload, extra)
        if not files:
            raise ExportError(f"{folder} holds no model file to upload; nothing was uploaded.")
        if announce is not None:
            announce(files)
        else:
            logger.info("%s %d files to %s: %s", "Would upload" if dry_run else "Uploading", len(files), repo_id,
                        ", ".join(files))
        if dry_run:
            return PushResult(repo_id=repo_id, files=files)
        api = _hub_api(token)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision is not None and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        info = upload_allowed(
            api,
            repo_id,
            upload,
            files,
            revision=revision,
            commit_message=commit_message or f"Upload {os.path.basename(os.path.normpath(folder))} with neobert-hf",
            repo_type="model",
        )
        return PushResult(repo_id=repo_id, files=files, commit_info=info)
