"""Pseudo-perplexity (PPPL) of a masked language model on long documents.

For a document of `N` tokens `w_1..w_N`, every token is masked in turn and scored by the model given all the
others (Salazar et al., 2020, "Masked Language Model Scoring"):

    PLL  = sum_t log P(w_t | w_{\\t})          PPPL = exp(-PLL / N)

Batched: each forward pass holds `batch_size` copies of a window, each with one different position masked; for
NeoBERT only the masked row is projected to the vocabulary (the model's `sparse_prediction`).

**Long documents.** A window holds at most `L = max_length - (special tokens)` document tokens, between `[CLS]` and
`[SEP]` (the tokenizer's `cls`/`sep`, else `bos`/`eos`, else none). Windows start every `stride` tokens
(`0, S, 2S, ...`) while they end before the document does, and a last window is aligned with the document's end,
so every window holds exactly `L` tokens (a document of at most `L` tokens is one window). Each token is scored
exactly once, in the window where it is most central, i.e. where its context on the shorter side is largest (ties
go to the earlier window); with the default `stride = L // 2` every token away from the document's ends sees at
least `L // 4` tokens on each side. `stride = L` gives non-overlapping windows.

**Output.** One CSV row per document: `doc_id, tokens, windows, log_likelihood, pppl` (natural log; `pppl` is
`nan` for an empty document). Rows are appended one whole line at a time and flushed to disk, so an interrupted run
loses at most the document it was scoring; running again skips every document already in the CSV (a torn last
line is dropped first). The scoring settings are kept next to the CSV (`<output>.settings.json`) and a resume with
other settings is refused.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


__all__ = [
    "CSV_COLUMNS",
    "PPPLError",
    "PPPLSummary",
    "assign_windows",
    "load_mlm",
    "pseudo_perplexity",
    "read_documents",
    "score_document",
    "window_starts",
]

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("doc_id", "tokens", "windows", "log_likelihood", "pppl")
DEFAULT_MAX_LENGTH = 512


class PPPLError(ValueError):
    """Bad input to the pseudo-perplexity evaluation (nothing was written)."""


# ---------------------------------------------------------------------------------------------------------------------
# Windows
# ---------------------------------------------------------------------------------------------------------------------


def window_starts(num_tokens: int, window: int, stride: int) -> list[int]:
    """Start offsets of the windows covering a document (see the module docstring).

    Args:
        num_tokens (`int`): document length `N`.
        window (`int`): document tokens per window `L` (>= 1).
        stride (`int`): offset between consecutive window starts, `1 <= stride <= window`.

    Returns:
        `list[int]`: strictly increasing starts; every window is `[start, start + min(L, N))`.
    """
    if window < 1:
        raise PPPLError(f"The window must hold at least one document token, got {window}.")
    if not 1 <= stride <= window:
        raise PPPLError(f"stride must be in [1, {window}] (the window's document tokens), got {stride}.")
    if num_tokens <= window:
        return [0]
    starts = list(range(0, num_tokens - window, stride))
    starts.append(num_tokens - window)
    return starts


def assign_windows(num_tokens: int, starts: Sequence[int], window: int) -> torch.Tensor:
    """For each token, the index of the window that scores it: the one whose centre is nearest (largest context on
    the shorter side), ties to the earlier window.

    Returns:
        `torch.LongTensor` of shape `(num_tokens,)`.
    """
    length = min(window, num_tokens)
    # Twice the centres, to stay in integers: 2 * (start + (length - 1) / 2).
    centres2 = torch.tensor(starts, dtype=torch.long) * 2 + (length - 1)  # (W,)
    tokens2 = torch.arange(num_tokens, dtype=torch.long) * 2  # (N,)
    right = torch.searchsorted(centres2, tokens2).clamp(max=len(starts) - 1)  # first centre >= token
    left = (right - 1).clamp(min=0)
    take_left = (tokens2 - centres2[left]).abs() <= (centres2[right] - tokens2).abs()
    return torch.where(take_left, left, right)


# ---------------------------------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------------------------------


def _supports_sparse_prediction(model) -> bool:
    import inspect

    try:
        return "sparse_prediction" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


@torch.no_grad()
def _masked_log_probs(model, input_ids: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor, sparse: bool):
    """Log-probability of `targets[i]` at `positions[i]` of row `i` (which is masked there). `(B,)` fp32."""
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    if sparse:
        labels = torch.full_like(input_ids, -100)
        labels[rows, positions] = targets
        logits = model(input_ids=input_ids, labels=labels, sparse_prediction=True).logits  # (B, V), row order
    else:
        logits = model(input_ids=input_ids).logits[rows, positions]  # (B, V)
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return log_probs[rows, targets]


@torch.no_grad()
def score_document(
    model,
    token_ids: Sequence[int],
    *,
    mask_token_id: int,
    window: int,
    stride: int | None = None,
    prefix: Sequence[int] = (),
    suffix: Sequence[int] = (),
    batch_size: int = 32,
) -> tuple[float, int]:
    """Pseudo-log-likelihood of one tokenized document.

    Args:
        model: a masked language model (`model(input_ids=...).logits` of shape `(B, S, V)`); NeoBERT models are
            called with `sparse_prediction=True` so that only masked rows reach the decoder.
        token_ids (`Sequence[int]`): the document's tokens, without special tokens.
        mask_token_id (`int`): the `[MASK]` id.
        window (`int`): document tokens per window.
        stride (`int`, *optional*): offset between window starts; defaults to `window // 2` (at least 1).
        prefix, suffix (`Sequence[int]`): special tokens around every window (`[CLS]`, `[SEP]`).
        batch_size (`int`): masked copies per forward pass.

    Returns:
        `tuple[float, int]`: the summed natural-log probability of every token, and the number of windows.
    """
    if batch_size < 1:
        raise PPPLError(f"batch_size must be >= 1, got {batch_size}.")
    stride = max(window // 2, 1) if stride is None else stride
    n = len(token_ids)
    if n == 0:
        return 0.0, 0
    device = next(model.parameters()).device
    sparse = _supports_sparse_prediction(model)
    starts = window_starts(n, window, stride)
    owner = assign_windows(n, starts, window)  # (N,)
    length = min(window, n)
    ids = torch.tensor(list(token_ids), dtype=torch.long)
    starts_t = torch.tensor(starts, dtype=torch.long)
    offsets = torch.arange(length)
    windows = ids[starts_t[:, None] + offsets]  # (W, length)
    pre = torch.tensor(list(prefix), dtype=torch.long).expand(len(starts), -1)
    post = torch.tensor(list(suffix), dtype=torch.long).expand(len(starts), -1)
    windows = torch.cat([pre, windows, post], dim=1).to(device)  # (W, len(prefix) + length + len(suffix))
    positions = (torch.arange(n) - starts_t[owner] + len(prefix)).to(device)  # (N,) position in its window
    owner = owner.to(device)
    targets = ids.to(device)
    total = 0.0
    for begin in range(0, n, batch_size):
        chunk = slice(begin, min(begin + batch_size, n))
        rows = torch.arange(chunk.stop - chunk.start, device=device)
        batch = windows[owner[chunk]].clone()  # (B, S)
        batch[rows, positions[chunk]] = mask_token_id
        log_probs = _masked_log_probs(model, batch, positions[chunk], targets[chunk], sparse)
        total += float(log_probs.double().sum())
    return total, len(starts)


# ---------------------------------------------------------------------------------------------------------------------
# Data and results
# ---------------------------------------------------------------------------------------------------------------------


def read_documents(
    path: str | os.PathLike,
    *,
    text_field: str = "text",
    id_field: str = "id",
    limit: int | None = None,
) -> list[tuple[str, str]]:
    """Documents as `(doc_id, text)`.

    Args:
        path: a `.jsonl` file (one JSON object per line, text in `text_field`, id in `id_field` when present, else the
            record's 0-based index) or a text file (`.txt`, any other suffix: one document per non-empty line, id =
            the 0-based line number).
        text_field, id_field: JSON keys.
        limit: keep only the first `limit` documents.

    Raises:
        [`PPPLError`]: missing file, invalid JSON, a record without `text_field`, duplicate ids.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise PPPLError(f"Data file {path} does not exist.")
    if limit is not None and limit < 1:
        raise PPPLError(f"limit must be >= 1, got {limit}.")
    documents: list[tuple[str, str]] = []
    is_json = path.endswith((".jsonl", ".json"))
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle):
            if limit is not None and len(documents) >= limit:
                break
            if not line.strip():
                continue
            if not is_json:
                documents.append((str(line_number), line.rstrip("\n")))
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise PPPLError(f"{path}, line {line_number + 1}: not valid JSON ({err}).") from err
            if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
                raise PPPLError(
                    f"{path}, line {line_number + 1}: expected an object with a string field {text_field!r} "
                    "(set --text-field)."
                )
            doc_id = record.get(id_field, len(documents))
            documents.append((str(doc_id), record[text_field]))
    if not documents:
        raise PPPLError(f"{path} holds no document.")
    seen: set[str] = set()
    duplicates = sorted({doc_id for doc_id, _ in documents if doc_id in seen or seen.add(doc_id)})
    if duplicates:
        raise PPPLError(f"Duplicate document ids in {path}: {duplicates[:10]}; results are keyed by id.")
    return documents


def _settings_path(output: str) -> str:
    return f"{output}.settings.json"


def _prepare_output(output: str, settings: dict[str, Any]) -> set[str]:
    """Create the CSV (header) or check it for a resume; returns the ids already scored."""
    settings_path = _settings_path(output)
    if os.path.exists(output) and os.path.getsize(output) > 0:
        if os.path.isfile(settings_path):
            with open(settings_path, encoding="utf-8") as handle:
                previous = json.load(handle)
            changed = {k: (previous.get(k), v) for k, v in settings.items() if previous.get(k) != v}
            if changed:
                raise PPPLError(
                    f"{output} was written with other settings {changed} (previous, now); resuming would mix "
                    "results. Use another --output."
                )
        with open(output, "rb+") as handle:  # drop a torn last line left by an interrupted write
            data = handle.read()
            if not data.endswith(b"\n"):
                handle.truncate(data.rfind(b"\n") + 1)
        with open(output, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                return _write_header(output, settings)
            if tuple(header) != CSV_COLUMNS:
                raise PPPLError(f"{output} is not a pseudo-perplexity CSV (header {header}, expected {list(CSV_COLUMNS)}).")
            return {row[0] for row in reader if row}
    return _write_header(output, settings)


def _write_header(output: str, settings: dict[str, Any]) -> set[str]:
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(_settings_path(output), "w", encoding="utf-8") as handle:
        json.dump(settings, handle, indent=2)
    _append_line(output, CSV_COLUMNS, truncate=True)
    return set()


def _append_line(output: str, row: Sequence[Any], truncate: bool = False) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(row)
    with open(output, "w" if truncate else "a", encoding="utf-8", newline="") as handle:
        handle.write(buffer.getvalue())  # one write of one whole line
        handle.flush()
        os.fsync(handle.fileno())


# ---------------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------------


def load_mlm(
    model: str | os.PathLike,
    *,
    dtype: str = "float32",
    device: str | None = None,
    trust_remote_code: bool = False,
):
    """Load a masked language model strictly (no missing or unexpected weight) in eval mode.

    `model` is a model folder, a `checkpoints/<step>/` folder, a run's `output_dir` (latest checkpoint) or a Hub id.
    """
    from transformers import AutoModelForMaskedLM

    import neobert_hf  # noqa: F401 - registers NeoBERT with the Auto classes

    from ..export import ExportError, load_strict, resolve_model_folder

    path = os.fspath(model)
    if os.path.isdir(path):
        try:
            path = resolve_model_folder(path)
        except ExportError as err:
            raise PPPLError(str(err)) from err
    if dtype not in ("float32", "bfloat16", "float16"):
        raise PPPLError(f"Unknown dtype {dtype!r}; expected float32, bfloat16 or float16.")
    try:
        loaded = load_strict(path, AutoModelForMaskedLM, dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code)
    except ExportError as err:
        raise PPPLError(str(err)) from err
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return loaded.to(device).eval(), path


# ---------------------------------------------------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class PPPLSummary:
    """What [`pseudo_perplexity`] did.

    Args:
        output: the CSV.
        scored: documents scored in this call.
        skipped: documents already in the CSV.
        tokens: tokens scored in this call.
        pppl: corpus pseudo-perplexity over every row of the CSV (`exp(-sum PLL / sum tokens)`).
    """

    output: str
    scored: int
    skipped: int
    tokens: int
    pppl: float


def _corpus_pppl(output: str) -> float:
    total, tokens = 0.0, 0
    with open(output, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            total += float(row["log_likelihood"])
            tokens += int(row["tokens"])
    return math.exp(-total / tokens) if tokens else float("nan")


def pseudo_perplexity(
    model: str | os.PathLike,
    data: str | os.PathLike,
    output: str | os.PathLike,
    *,
    batch_size: int = 32,
    max_length: int | None = None,
    stride: int | None = None,
    limit: int | None = None,
    text_field: str = "text",
    id_field: str = "id",
    tokenizer: str | os.PathLike | None = None,
    dtype: str = "float32",
    device: str | None = None,
    trust_remote_code: bool = False,
) -> PPPLSummary:
    """Score every document of `data` and append one CSV row per document to `output` (resumable).

    Args:
        model: a masked language model folder, `checkpoints/<step>/` folder, run folder or Hub id.
        data: `.jsonl` or text file (see [`read_documents`]).
        output: the CSV to write or resume.
        batch_size: masked copies per forward pass.
        max_length: tokens per window including special tokens; defaults to `min(512, model context)`.
        stride: offset between window starts in document tokens; defaults to half the window.
        limit: only the first `limit` documents.
        text_field, id_field: JSON keys of a `.jsonl` file.
        tokenizer: defaults to the model's.
        dtype: `float32`, `bfloat16` or `float16`.
        device: `cpu`, `cuda`, ... (default: CUDA when available).
        trust_remote_code: for non-NeoBERT models with remote code.

    Returns:
        [`PPPLSummary`].

    Raises:
        [`PPPLError`]: bad input (checked before anything is written).
    """
    output = os.fspath(output)
    if batch_size < 1:
        raise PPPLError(f"batch_size must be >= 1, got {batch_size}.")
    documents = read_documents(data, text_field=text_field, id_field=id_field, limit=limit)
    mlm, model_path = load_mlm(model, dtype=dtype, device=device, trust_remote_code=trust_remote_code)

    from transformers import AutoTokenizer

    tokenizer_path = os.fspath(tokenizer) if tokenizer is not None else model_path
    try:
        tok = AutoTokenizer.from_pretrained(tokenizer_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise PPPLError(f"No tokenizer could be loaded from {tokenizer_path} ({err}); pass --tokenizer.") from err
    if tok.mask_token_id is None:
        raise PPPLError(f"The tokenizer of {tokenizer_path} has no mask token; pseudo-perplexity needs one.")
    prefix = [t for t in (tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id,) if t is not None]
    suffix = [t for t in (tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id,) if t is not None]
    context = getattr(mlm.config, "max_position_embeddings", None)
    if max_length is None:
        max_length = min(DEFAULT_MAX_LENGTH, context) if context else DEFAULT_MAX_LENGTH
    if context and max_length > context:
        raise PPPLError(f"max_length {max_length} exceeds the model's context of {context} tokens.")
    window = max_length - len(prefix) - len(suffix)
    if window < 1:
        raise PPPLError(f"max_length {max_length} leaves no room for document tokens after the special tokens.")
    stride = max(window // 2, 1) if stride is None else stride
    window_starts(window + 1, window, stride)  # validates stride before anything is written

    settings = {
        "model": os.path.abspath(model_path) if os.path.isdir(model_path) else model_path,
        "tokenizer": os.path.abspath(tokenizer_path) if os.path.isdir(tokenizer_path) else tokenizer_path,
        "max_length": max_length,
        "stride": stride,
        "dtype": dtype,
        "prefix": prefix,
        "suffix": suffix,
    }
    done = _prepare_output(output, settings)
    scored = tokens_total = 0
    skipped = sum(1 for doc_id, _ in documents if doc_id in done)
    for doc_id, text in documents:
        if doc_id in done:
            continue
        start = time.perf_counter()
        ids = tok(text, add_special_tokens=False)["input_ids"]
        log_likelihood, windows = score_document(
            mlm,
            ids,
            mask_token_id=tok.mask_token_id,
            window=window,
            stride=stride,
            prefix=prefix,
            suffix=suffix,
            batch_size=batch_size,
        )
        pppl = math.exp(-log_likelihood / len(ids)) if ids else float("nan")
        _append_line(output, (doc_id, len(ids), windows, repr(log_likelihood), repr(pppl)))
        scored += 1
        tokens_total += len(ids)
        elapsed = time.perf_counter() - start
        logger.info(
            "doc %s: %d tokens, %d windows, pppl %.3f (%.0f tokens/s)",
            doc_id, len(ids), windows, pppl, len(ids) / elapsed if elapsed > 0 else float("inf"),
        )
    return PPPLSummary(output=output, scored=scored, skipped=skipped, tokens=tokens_total, pppl=_corpus_pppl(output))
