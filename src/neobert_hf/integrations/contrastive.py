"""Contrastive fine-tuning of a NeoBERT `SentenceTransformer` with `SentenceTransformerTrainer`.

Pieces, each usable on its own:

- **Losses.** In-batch negatives InfoNCE is sentence-transformers' `MultipleNegativesRankingLoss` with
  `scale = 1 / temperature`; its GradCache variant `CachedMultipleNegativesRankingLoss` embeds the batch in
  `mini_batch_size` chunks so the batch can be much larger than what fits in memory. Sentence-transformers has no
  per-negative weight, so a `hard_negative_weight` other than 0 uses [`WeightedHardNegativesLoss`] (or its cached
  twin), which adds the value to the logits of each anchor's own hard negatives (SimCSE's convention: a log-space
  weight, 0 = hard negatives count like in-batch negatives). Labelled data (`anchor` + `label`) trains with the
  supervised contrastive loss [`SupervisedContrastiveLoss`] (`loss_type="supcon"`, Khosla et al. 2020).
- **Data.** Datasets with `(anchor, positive[, negative...])` columns from the Hub or local files; a
  `(query, corpus, negative)` schema is mapped onto them, and a `negative` column holding lists becomes
  `negative_1 ... negative_k`.
- **SimCSE mixing** (`pretraining_prob`): per *batch*, with probability `pretraining_prob`
  the batch is an unsupervised SimCSE batch (`anchor == positive`, the two views differ only by dropout) drawn from
  a text source, otherwise a supervised batch. [`SimCSEMixBatchSampler`] draws the coin; an epoch has as many
  batches as the supervised data.
- **Batches without duplicates**: `batch_sampler="no_duplicates"` by default, so that no in-batch negative is a copy of
  an anchor or positive.
- **Checkpoints** in the package's tree `<output_dir>/checkpoints/<step>/` (written atomically), each a loadable
  sentence-transformers folder plus the training state; `resume_from_checkpoint` takes `latest`, a step or a path.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..import_utils import require


require("sentence_transformers", "Contrastive training")

from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer  # noqa: E402
from sentence_transformers.base.losses.gradcache import CachedLossMixin  # noqa: E402
from sentence_transformers.base.losses.merged_forward import embed_columns  # noqa: E402
from sentence_transformers.base.sampler import BatchSamplers, MultiDatasetDefaultBatchSampler  # noqa: E402
from sentence_transformers.sentence_transformer.losses import (  # noqa: E402
    CachedMultipleNegativesRankingLoss,
    MultipleNegativesRankingLoss,
)
from sentence_transformers.sentence_transformer.training_args import (  # noqa: E402
    SentenceTransformerTrainingArguments,
)

from ..training.argument_checks import check_training_values  # noqa: E402
from ..training.arguments import FinalLRRatioArguments, WandbArguments  # noqa: E402
from ..training.callbacks import WandbInitCallback  # noqa: E402
from ..checkpoints import CheckpointTreeTrainerMixin  # noqa: E402
from ..training.output_dir import TrainingBegan, check_output_dir, failed_start_cleanup  # noqa: E402
from ..training.hub import STAGING_PREFIX, CleanHubPushMixin  # noqa: E402


__all__ = [
    "LEGACY_COLUMNS",
    "LOSS_TYPES",
    "CachedWeightedHardNegativesLoss",
    "ContrastiveArguments",
    "ContrastiveTrainer",
    "ContrastiveTrainingArguments",
    "SimCSEMixBatchSampler",
    "SupervisedContrastiveLoss",
    "WeightedHardNegativesLoss",
    "build_contrastive_loss",
    "build_evaluators",
    "load_table",
    "prepare_contrastive_dataset",
    "prepare_supcon_dataset",
    "simcse_pairs",
    "supervised_contrastive_loss",
    "weighted_info_nce",
]

logger = logging.getLogger(__name__)

LossType = Literal["infonce", "cached_infonce", "supcon"]
LOSS_TYPES: tuple[str, ...] = get_args(LossType)

# The query/corpus/negative contrastive schema -> sentence-transformers' column order (anchor, positive, negatives).
LEGACY_COLUMNS: dict[str, str] = {"query": "anchor", "corpus": "positive", "negative": "negative"}

SIMCSE_KEY, PAIRS_KEY = "simcse", "pairs"


# ---------------------------------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------------------------------


def weighted_info_nce(
    anchors: Tensor,
    candidates: list[Tensor],
    temperature: float,
    hard_negative_weight: float = 0.0,
    rows: slice | None = None,
) -> Tensor:
    """InfoNCE over in-batch negatives where `hard_negative_weight` is added to the logits of each anchor's own hard
    negatives (SimCSE's `hard_negative_weight`).

    For anchor `i` the candidates are every positive and every hard negative of the batch. The logit of a candidate
    is `cos(anchor_i, candidate) / temperature`; the logits of anchor `i`'s *own* hard negatives get `+ v` (after the
    division by the temperature), i.e. their terms in the softmax denominator are multiplied by `exp(v)`. `v = 0` is
    exactly sentence-transformers' `MultipleNegativesRankingLoss` (hard negatives count like any in-batch negative);
    `v > 0` makes them count more (`v = log 2`: twice); `v < 0` less (the other rows' hard negatives stay ordinary
    in-batch negatives).

    Args:
        anchors (`Tensor` of shape `(B, D)`): anchor embeddings.
        candidates (`list[Tensor]`, each `(B, D)`): positives first, then one tensor per hard-negative column.
        temperature (`float`): softmax temperature, `> 0`.
        hard_negative_weight (`float`, *optional*, defaults to 0.0): the log-space weight `v`, any finite number.
        rows (`slice`, *optional*): compute the loss for these anchors only (the mean over them); the GradCache
            variant uses it to chunk the score matrix.

    Returns:
        `Tensor`: the mean cross-entropy over the selected anchors (a scalar).
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    _check_hard_negative_weight(hard_negative_weight)
    if not candidates:
        raise ValueError("weighted_info_nce needs at least the positives.")
    batch_size = anchors.shape[0]
    if any(c.shape != anchors.shape for c in candidates):
        raise ValueError(f"Every candidate column must have the anchors' shape {tuple(anchors.shape)}.")
    rows = rows if rows is not None else slice(0, batch_size)
    row_ids = torch.arange(batch_size, device=anchors.device)[rows]  # (R,)
    queries = F.normalize(anchors[rows], dim=-1)  # (R, D)
    docs = F.normalize(torch.cat(candidates, dim=0), dim=-1)  # (B * (1 + k), D)
    logits = queries @ docs.T / temperature  # (R, B * (1 + k))
    num_negative_columns = len(candidates) - 1
    if num_negative_columns and hard_negative_weight != 0.0:
        own = row_ids[:, None] + batch_size * torch.arange(1, num_negative_columns + 1, device=anchors.device)  # (R, k)
        log_weight = torch.full(own.shape, float(hard_negative_weight), dtype=logits.dtype, device=logits.device)
        logits = logits.scatter_add(1, own, log_weight)
    return F.cross_entropy(logits, row_ids)


def _check_hard_negative_weight(value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value)):
        raise ValueError(
            f"hard_negative_weight must be a finite number (added to the hard negatives' logits; 0 = weighted like "
            f"in-batch negatives), got {value!r}."
        )


class WeightedHardNegativesLoss(nn.Module):
    """In-batch negatives InfoNCE with `hard_negative_weight` added to the logits of each anchor's own hard negatives.

    Input columns: `(anchor, positive)` pairs or `(anchor, positive, negative_1, ..., negative_k)` tuples; no label.
    With `hard_negative_weight=0` it equals `MultipleNegativesRankingLoss(scale=1 / temperature)`. See
    [`weighted_info_nce`] for the exact formula.

    Args:
        model (`SentenceTransformer`): the model being trained.
        temperature (`float`, *optional*, defaults to 0.05): softmax temperature (`scale = 1 / temperature`).
        hard_negative_weight (`float`, *optional*, defaults to 0.0): log-space weight of each anchor's own hard
            negatives (their softmax terms are multiplied by `exp(hard_negative_weight)`).
    """

    def __init__(self, model: SentenceTransformer, temperature: float = 0.05, hard_negative_weight: float = 0.0):
        super().__init__()
        weighted_info_nce(torch.zeros(1, 1), [torch.zeros(1, 1)], temperature, hard_negative_weight)  # validates
        self.model = model
        self.temperature = float(temperature)
        self.hard_negative_weight = float(hard_negative_weight)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        embeddings = embed_columns(self.model, sentence_features)
        if len(embeddings) < 2:
            raise ValueError(
                f"{type(self).__name__} needs (anchor, positive[, negatives]) columns, got {len(embeddings)}."
            )
        return weighted_info_nce(embeddings[0], embeddings[1:], self.temperature, self.hard_negative_weight)

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "hard_negative_weight": self.hard_negative_weight}


class CachedWeightedHardNegativesLoss(CachedLossMixin, nn.Module):
    """GradCache version of [`WeightedHardNegativesLoss`]: embeds the batch in `mini_batch_size` chunks (first
    without gradients, then again with the cached gradients), so the contrastive batch can exceed memory.

    Input columns: `(anchor, positive)` pairs or `(anchor, positive, negative_1, ..., negative_k)` tuples; no label.
    Gives the loss and gradients of [`WeightedHardNegativesLoss`] (up to dropout sampling).

    Args:
        model (`SentenceTransformer`): the model being trained.
        temperature (`float`, *optional*, defaults to 0.05): softmax temperature.
        hard_negative_weight (`float`, *optional*, defaults to 0.0): log-space weight of each anchor's own hard
            negatives (see [`weighted_info_nce`]).
        mini_batch_size (`int`, *optional*, defaults to 32): rows embedded per forward pass.
    """

    def __init__(
        self,
        model: SentenceTransformer,
        temperature: float = 0.05,
        hard_negative_weight: float = 0.0,
        mini_batch_size: int = 32,
    ):
        super().__init__()
        weighted_info_nce(torch.zeros(1, 1), [torch.zeros(1, 1)], temperature, hard_negative_weight)  # validates
        if mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}.")
        self.model = model
        self.temperature = float(temperature)
        self.hard_negative_weight = float(hard_negative_weight)
        self.mini_batch_size = int(mini_batch_size)

    def calculate_loss(self, reps: list[list[Tensor]], labels: Tensor | None = None, *, with_backward: bool = False):
        anchors = torch.cat(reps[0])  # (B, D)
        candidates = [torch.cat(column) for column in reps[1:]]
        batch_size = anchors.shape[0]
        losses = []
        for begin in range(0, batch_size, self.mini_batch_size):
            end = min(begin + self.mini_batch_size, batch_size)
            loss = weighted_info_nce(
                anchors, candidates, self.temperature, self.hard_negative_weight, rows=slice(begin, end)
            ) * ((end - begin) / batch_size)
            if with_backward:
                loss.backward()
                loss = loss.detach()
            losses.append(loss)
        return sum(losses)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        sentence_features = list(sentence_features)
        if len(sentence_features) < 2:
            raise ValueError(f"{type(self).__name__} needs (anchor, positive[, negatives]) columns.")
        return self.forward_cached(sentence_features, labels)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "hard_negative_weight": self.hard_negative_weight,
            "mini_batch_size": self.mini_batch_size,
        }


def supervised_contrastive_loss(embeddings: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """The supervised contrastive loss of Khosla et al. (2020), the `L_out` form, on cosine similarities.

    Every example is an anchor; its positives are the *other* examples with the same label, and its softmax runs over
    every other example of the batch (itself excluded):

    `loss_i = -1 / |P(i)| * sum_{p in P(i)} log( exp(s_ip / T) / sum_{a != i} exp(s_ia / T) )`, `s = cos`,

    averaged over the anchors that have at least one positive. A batch where no label occurs twice has no positive
    pair: the loss is 0 (with a graph, so the step still runs) and carries no signal.

    Args:
        embeddings (`Tensor` of shape `(N, D)`): the batch's embeddings.
        labels (`Tensor` of shape `(N,)`): integer class ids.
        temperature (`float`): softmax temperature, `> 0`.

    Returns:
        `Tensor`: the scalar loss.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"supervised_contrastive_loss needs one label per embedding, got labels of shape {tuple(labels.shape)} "
            f"for {embeddings.shape[0]} embeddings."
        )
    z = F.normalize(embeddings, dim=-1)  # (N, D)
    logits = z @ z.T / temperature  # (N, N)
    self_mask = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)  # (N, N)
    logits = logits.masked_fill(self_mask, float("-inf"))  # an anchor is never its own candidate
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (N, N), -inf on the diagonal
    positives = (labels[:, None] == labels[None, :]) & ~self_mask  # (N, N)
    counts = positives.sum(dim=1)  # (N,)
    has_positive = counts > 0
    if not bool(has_positive.any()):
        return logits.masked_fill(self_mask, 0.0).sum() * 0.0
    positive_log_prob = log_prob.masked_fill(~positives, 0.0).sum(dim=1)  # (N,)
    return -(positive_log_prob[has_positive] / counts[has_positive]).mean()


class SupervisedContrastiveLoss(nn.Module):
    """Supervised contrastive loss (SupCon, Khosla et al. 2020) for labelled texts: within a batch, every example
    with the same label is a positive and every other example a negative ([`supervised_contrastive_loss`]).

    Input columns: `(anchor, label)`; `label` holds integer class ids (the `label` column sentence-transformers passes
    to the loss). Several text columns are allowed: each row's texts all carry the row's label. The default
    `no_duplicates` batch sampler keeps identical texts apart; `group_by_label` makes same-label pairs more frequent.

    Args:
        model (`SentenceTransformer`): the model being trained.
        temperature (`float`, *optional*, defaults to 0.05): softmax temperature.
    """

    def __init__(self, model: SentenceTransformer, temperature: float = 0.05):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        self.model = model
        self.temperature = float(temperature)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        if labels is None:
            raise ValueError(f"{type(self).__name__} needs a label column (anchor, label).")
        embeddings = embed_columns(self.model, sentence_features)
        labels = labels.to(embeddings[0].device).long()
        return supervised_contrastive_loss(torch.cat(embeddings), labels.repeat(len(embeddings)), self.temperature)

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    @property
    def citation(self) -> str:
        return """
@inproceedings{khosla2020supervised,
    title={Supervised Contrastive Learning},
    author={Khosla, Prannay and Teterwak, Piotr and Wang, Chen and Sarna, Aaron and Tian, Yonglong and Isola, Phillip
        and Maschinot, Aaron and Liu, Ce and Krishnan, Dilip},
    booktitle={Advances in Neural Information Processing Systems},
    year={2020}
}
"""


def build_contrastive_loss(
    model: SentenceTransformer,
    loss_type: LossType = "infonce",
    temperature: float = 0.05,
    hard_negative_weight: float = 0.0,
    mini_batch_size: int | None = None,
) -> nn.Module:
    """The contrastive loss for `loss_type`.

    Args:
        model (`SentenceTransformer`): the model being trained.
        loss_type (`str`, *optional*, defaults to `"infonce"`): `"infonce"` (in-batch negatives), `"cached_infonce"`
            (the same objective with GradCache, for batches larger than memory) or `"supcon"` (supervised contrastive
            loss on `(anchor, label)` data).
        temperature (`float`, *optional*, defaults to 0.05): `scale = 1 / temperature` in sentence-transformers'
            terms.
        hard_negative_weight (`float`, *optional*, defaults to 0.0): added to the logits of each anchor's own hard
            negatives (SimCSE's convention, a log-space weight); 0 uses sentence-transformers' losses unchanged.
            Not used by `"supcon"` (an error when set).
        mini_batch_size (`int`, *optional*): chunk size of `"cached_infonce"` (32 when not given); an error with
            the other losses, which have no chunks.

    Returns:
        `nn.Module`: `MultipleNegativesRankingLoss`, `CachedMultipleNegativesRankingLoss`,
        [`WeightedHardNegativesLoss`], [`CachedWeightedHardNegativesLoss`] or [`SupervisedContrastiveLoss`].
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"Unknown loss_type {loss_type!r}. Valid loss types: {', '.join(LOSS_TYPES)}.")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    if loss_type != "cached_infonce" and mini_batch_size is not None:
        raise ValueError("mini_batch_size only applies to loss_type='cached_infonce'; remove it or switch loss_type.")
    _check_hard_negative_weight(hard_negative_weight)
    if loss_type == "supcon":
        if hard_negative_weight != 0.0:
            raise ValueError(
                "hard_negative_weight applies to the InfoNCE losses (hard-negative columns); loss_type='supcon' takes "
                "its negatives from the other labels. Remove it or switch loss_type."
            )
        return SupervisedContrastiveLoss(model, temperature)
    if hard_negative_weight != 0.0:
        if loss_type == "cached_infonce":
            return CachedWeightedHardNegativesLoss(model, temperature, hard_negative_weight, mini_batch_size or 32)
        return WeightedHardNegativesLoss(model, temperature, hard_negative_weight)
    if loss_type == "cached_infonce":
        return CachedMultipleNegativesRankingLoss(model, scale=1.0 / temperature, mini_batch_size=mini_batch_size or 32)
    return MultipleNegativesRankingLoss(model, scale=1.0 / temperature)


# ---------------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------------

def load_table(source: str, split: str = "train", config_name: str | None = None):
    """Load one split of a dataset with [`~neobert_hf.data.loading.load_split`]: a local file (any format of
    [`~neobert_hf.data.loading.FILE_FORMATS`], a single split whatever `split` says), a folder written by
    `save_to_disk`, a local dataset folder, or a Hub id.

    Raises:
        `ValueError`: an unsupported or unreadable file (naming the file and line), a split that does not exist (naming
            the splits that do), or no rows.
    """
    from ..data.loading import load_split

    # A file is named by every error about it; a folder or Hub id is named here.
    what = "the contrastive data" if os.path.isfile(source) else f"the contrastive data {source}"
    return load_split(source, split, config_name=config_name, what=what)


def prepare_contrastive_dataset(dataset, column_mapping: dict[str, str] | None = None):
    """Rename and order the columns as `anchor, positive[, negative_1, ...]`, which is how sentence-transformers'
    losses read them (by position).

    Without `column_mapping`, `query`/`corpus`/`negative` columns are renamed to
    `anchor`/`positive`/`negative` ([`LEGACY_COLUMNS`]). A negative column holding lists (several hard negatives
    per row) is expanded into `negative_1 ... negative_k`; every row must have the same number. Other columns are
    dropped.

    Args:
        dataset (`datasets.Dataset`): the raw dataset.
        column_mapping (`dict[str, str]`, *optional*): `{existing column: anchor | positive | negative |
            negative_<i>}`.

    Raises:
        `ValueError`: no anchor or positive column, a mapping to an unknown role, ragged negative lists.
    """
    names = list(dataset.column_names)
    if column_mapping is None:
        mapping = {old: new for old, new in LEGACY_COLUMNS.items() if old in names and new not in names}
    else:
        mapping = _checked_mapping(column_mapping, names)
    for new in mapping.values():
        if new not in ("anchor", "positive", "negative") and not (
            new.startswith("negative_") and new[len("negative_"):].isdigit()
        ):
            raise ValueError(f"column_mapping target {new!r} must be anchor, positive, negative or negative_<i>.")
    dataset, names = _renamed_with_roles(
        dataset, mapping, ("anchor", "positive"), "The contrastive dataset",
        '{"question": "anchor", "answer": "positive"}',
    )  # fmt: skip
    if "negative" in names and isinstance(dataset[0]["negative"], list):
        lengths = {len(value) for value in dataset["negative"]}
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(
                f"Every row must have the same, non-zero number of negatives; found counts {sorted(lengths)}."
            )
        count = lengths.pop()
        dataset = dataset.map(
            lambda row: {f"negative_{i + 1}": row["negative"][i] for i in range(count)}, remove_columns=["negative"]
        )
        names = list(dataset.column_names)
    negatives = [name for name in names if name == "negative"] + sorted(
        (name for name in names if name.startswith("negative_") and name[len("negative_"):].isdigit()),
        key=lambda name: int(name[len("negative_"):]),
    )
    keep = ["anchor", "positive", *negatives]
    dropped = [name for name in names if name not in keep]
    if dropped:
        logger.info(f"Contrastive data: dropping columns {dropped} (not anchor/positive/negative).")
    dataset = dataset.select_columns(keep)
    _check_texts(dataset, {new: old for old, new in mapping.items()})
    return dataset


def _checked_mapping(column_mapping: dict[str, str], names: list[str]) -> dict[str, str]:
    """`column_mapping` as a dict, once every column it renames exists."""
    mapping = dict(column_mapping)
    unknown_sources = [old for old in mapping if old not in names]
    if unknown_sources:
        raise ValueError(f"column_mapping names columns that do not exist: {unknown_sources} (columns: {names}).")
    return mapping


def _renamed_with_roles(dataset, mapping: dict[str, str], roles: tuple[str, str], who: str, example: str):
    """`dataset` with `mapping` applied, and its column names, once both `roles` columns are there."""
    if mapping:
        dataset = dataset.rename_columns(mapping)
    names = list(dataset.column_names)
    missing = [role for role in roles if role not in names]
    if missing:
        raise ValueError(
            f"{who} needs {roles[0]} and {roles[1]} columns; missing {missing} (columns: {names}). Map yours with "
            f"column_mapping, e.g. '{example}'."
        )
    return dataset, names


def prepare_supcon_dataset(dataset, column_mapping: dict[str, str] | None = None):
    """Bring a labelled dataset into the `(anchor, label)` columns of [`SupervisedContrastiveLoss`].

    Without `column_mapping`, a `text` or `sentence` column is taken as `anchor` when there is no `anchor` column.
    Labels that are not integers (strings, booleans) become class ids in sorted order of their distinct values.

    Args:
        dataset (`datasets.Dataset`): the raw dataset.
        column_mapping (`dict[str, str]`, *optional*): `{existing column: anchor | label}`.

    Raises:
        `ValueError`: no anchor or label column, a null label, a mapping to another role.
    """
    names = list(dataset.column_names)
    if column_mapping is None:
        mapping = {}
        if "anchor" not in names:
            source = next((name for name in ("text", "sentence") if name in names), None)
            mapping = {source: "anchor"} if source else {}
    else:
        mapping = _checked_mapping(column_mapping, names)
        wrong = [new for new in mapping.values() if new not in ("anchor", "label")]
        if wrong:
            raise ValueError(f"With loss_type=supcon, column_mapping targets must be anchor or label, got {wrong}.")
    dataset, names = _renamed_with_roles(
        dataset, mapping, ("anchor", "label"), "loss_type=supcon", '{"sentence": "anchor", "intent": "label"}'
    )
    dropped = [name for name in names if name not in ("anchor", "label")]
    if dropped:
        logger.info(f"Supervised contrastive data: dropping columns {dropped} (not anchor/label).")
    dataset = dataset.select_columns(["anchor", "label"])
    labels = dataset["label"]
    if any(label is None for label in labels):
        row = next(i for i, label in enumerate(labels) if label is None)
        raise ValueError(f"The supervised contrastive data has no label at row {row} (null); every row needs one.")
    if not all(isinstance(label, int) and not isinstance(label, bool) for label in labels):
        ids = {value: i for i, value in enumerate(sorted(set(labels), key=str))}
        dataset = dataset.map(lambda row: {"label": ids[row["label"]]})
        logger.info(f"Supervised contrastive labels as class ids: {ids}.")
    _check_texts(dataset.select_columns(["anchor"]), {new: old for old, new in mapping.items()})
    return dataset


def _check_texts(dataset, original_names: dict[str, str]) -> None:
    """Every anchor, positive and negative must be a string: a null (a missing hard negative) or a number would fail
    deep inside the tokenizer. Names the column and the first bad row."""
    import pyarrow.compute as pc

    table = dataset.with_format("arrow")[:]
    for column in dataset.column_names:
        values = table[column]
        shown = column if original_names.get(column, column) == column else f"{column} ({original_names[column]!r})"
        if values.null_count:
            row = pc.index(pc.is_null(values), True).as_py()
            raise ValueError(
                f"The contrastive data has no text in column {shown} at row {row} (null); every row needs a string "
                "there. Drop or fill such rows."
            )
        if not (values.type == "string" or values.type == "large_string"):
            row, value = next((i, v) for i, v in enumerate(values.to_pylist()) if not isinstance(v, str))
            raise ValueError(
                f"The contrastive data column {shown} holds {values.type} values, not text (row {row}: {value!r})."
            )


def simcse_pairs(texts: Iterable[str]):
    """An unsupervised SimCSE dataset: `anchor == positive` for every distinct non-empty text. The two views of a
    text differ only by the encoder's dropout."""
    from datasets import Dataset

    unique = list(dict.fromkeys(text for text in texts if isinstance(text, str) and text.strip()))
    if not unique:
        raise ValueError("The SimCSE text source has no non-empty text.")
    return Dataset.from_dict({"anchor": unique, "positive": unique})


class SimCSEMixBatchSampler(MultiDatasetDefaultBatchSampler):
    """Per batch, draws an unsupervised SimCSE batch with probability `pretraining_prob`, else a supervised one.

    Expects the `ConcatDataset` of `(supervised, simcse)` with one batch sampler each (the trainer builds them with
    `batch_sampler`, e.g. no duplicates). An epoch has as many batches as the supervised sampler; the sampler that
    runs out first within an epoch starts over. The coin uses its own generator seeded with `seed + epoch`, so a
    resumed run replays the same sequence.

    Args:
        dataset (`ConcatDataset`): the supervised and SimCSE datasets, in this order.
        batch_samplers (`list[BatchSampler]`): their batch samplers.
        pretraining_prob (`float`): probability in `[0, 1]` that a batch is a SimCSE batch.
        generator (`torch.Generator`, *optional*): unused (the child samplers share it); kept for the interface.
        seed (`int`, *optional*, defaults to 0): seed of the coin.
    """

    def __init__(self, dataset, batch_samplers, pretraining_prob: float, generator=None, seed: int = 0):
        if len(batch_samplers) != 2:
            raise ValueError("SimCSEMixBatchSampler expects exactly two datasets: supervised, then SimCSE.")
        if not 0.0 <= pretraining_prob <= 1.0:
            raise ValueError(f"pretraining_prob must be in [0, 1], got {pretraining_prob}.")
        super().__init__(dataset, batch_samplers, generator=generator, seed=seed)
        self.pretraining_prob = float(pretraining_prob)

    def __len__(self) -> int:
        return len(self.batch_samplers[0])

    def __iter__(self) -> Iterator[list[int]]:
        coin = torch.Generator().manual_seed(int(self.seed or 0) + self.epoch)
        offset = len(self.dataset.datasets[0])
        iterators = [iter(sampler) for sampler in self.batch_samplers]

        def draw(which: int) -> list[int]:
            try:
                return next(iterators[which])
            except StopIteration:
                iterators[which] = iter(self.batch_samplers[which])
                return next(iterators[which])

        for _ in range(len(self)):
            if float(torch.rand((), generator=coin)) < self.pretraining_prob:
                yield [index + offset for index in draw(1)]
            else:
                yield draw(0)


# ---------------------------------------------------------------------------------------------------------------------
# Evaluators
# ---------------------------------------------------------------------------------------------------------------------


def build_evaluators(
    sts_eval_file: str | None = None,
    retrieval_eval_dir: str | None = None,
    retrieval_eval_split: str = "test",
    batch_size: int = 32,
) -> list:
    """Sentence-transformers evaluators on local data: `EmbeddingSimilarityEvaluator` named `sts` on an STS jsonl
    file and `InformationRetrievalEvaluator` named `retrieval` on a BEIR-style folder. The files are read here, so a
    broken file fails before training starts."""
    from sentence_transformers.sentence_transformer.evaluation import (
        EmbeddingSimilarityEvaluator,
        InformationRetrievalEvaluator,
    )

    from .eval_data import read_beir_folder, read_sts_jsonl

    evaluators = []
    if sts_eval_file:
        sts = read_sts_jsonl(sts_eval_file)
        evaluators.append(
            EmbeddingSimilarityEvaluator(sts.sentences1, sts.sentences2, sts.scores, batch_size=batch_size, name="sts")
        )
    if retrieval_eval_dir:
        data = read_beir_folder(retrieval_eval_dir, retrieval_eval_split)
        corpus = {doc_id: (f"{doc['title']} {doc['text']}".strip()) for doc_id, doc in data.corpus.items()}
        evaluators.append(
            InformationRetrievalEvaluator(
                data.queries,
                corpus,
                {query_id: set(docs) for query_id, docs in data.qrels.items()},
                batch_size=batch_size,
                name="retrieval",
            )
        )
    return evaluators


# ---------------------------------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class ContrastiveArguments:
    """What to train (model, data, loss) and what to evaluate; the optimisation settings are in
    [`ContrastiveTrainingArguments`]."""

    # No argparse-required fields: the recipe parser looks for --config before reading the YAML, so a required flag
    # could not come from the recipe. __post_init__ checks that both are set.
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "(Required) NeoBERT checkpoint to start from: a checkpoints/<step>/ folder, a run folder, an "
                  "exported folder or a Hub id. Loaded strictly: a missing or unexpected encoder key is an error."},
    )
    train_dataset: str | None = field(
        default=None,
        metadata={"help": "(Required) Training data: a .jsonl/.json/.csv/.tsv/.parquet file, a save_to_disk folder or "
                  "a Hub id, with anchor/positive[/negative...] columns or a (query, corpus, negative) "
                  "schema; with loss_type=supcon, anchor (or text/sentence) and label columns."},
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer, when the checkpoint folder has none."}
    )
    pooling: str = field(
        default="mean",
        metadata={"help": "Sentence pooling: mean, cls or max; avg (the original trainer's name) is accepted and "
                  "stored as mean."},
    )
    normalize: bool = field(
        default=True, metadata={"help": "Append a Normalize module (unit-norm embeddings) to the saved model."}
    )
    max_seq_length: int | None = field(
        default=None, metadata={"help": "Truncate inputs to this many tokens (default: the model's maximum)."}
    )
    dropout: float | None = field(
        default=None,
        metadata={"help": "Override the encoder's dropout; SimCSE (pretraining_prob > 0) needs it above 0."},
    )
    train_dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    train_split: str = field(default="train", metadata={"help": "Split of a Hub or save_to_disk training dataset."})
    eval_dataset: str | None = field(
        default=None, metadata={"help": "Data for the evaluation loss (same formats and columns as train_dataset)."}
    )
    eval_dataset_config: str | None = field(default=None, metadata={"help": "Hub configuration of eval_dataset."})
    eval_split: str = field(default="validation", metadata={"help": "Split of a Hub or save_to_disk eval dataset."})
    column_mapping: str | None = field(
        default=None,
        metadata={"help": "JSON object {column: anchor|positive|negative|negative_<i>}; default maps "
                  "query/corpus/negative columns."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training rows."})
    loss_type: str = field(
        default="infonce",
        metadata={"help": "infonce (in-batch negatives, MultipleNegativesRankingLoss), cached_infonce (GradCache, "
                  "CachedMultipleNegativesRankingLoss, for large batches) or supcon (supervised contrastive loss, "
                  "Khosla et al. 2020, on labelled data: anchor + label columns; every same-label example of the "
                  "batch is a positive). The original trainer's simcse is infonce."},
    )
    temperature: float = field(default=0.05, metadata={"help": "Softmax temperature; scale = 1 / temperature."})
    hard_negative_weight: float = field(
        default=0.0,
        metadata={"help": "Added to the logits (cosine / temperature) of each anchor's own hard negatives, as in "
                  "SimCSE and the original NeoBERT trainer: a log-space weight, their softmax terms are multiplied by "
                  "exp(value). 0 = hard negatives count like the other in-batch negatives (plain InfoNCE); log(2) = "
                  "0.69 counts them twice; negative values count them less. InfoNCE losses only."},
    )
    mini_batch_size: int | None = field(
        default=None,
        metadata={"help": "Rows per forward pass of cached_infonce (default 32); only for cached_infonce."},
    )
    pretraining_prob: float = field(
        default=0.0,
        metadata={"help": "Probability that a training batch is an unsupervised SimCSE batch (anchor == positive, "
                  "dropout noise) instead of a supervised one. Drawn per batch."},
    )
    simcse_dataset: str | None = field(
        default=None,
        metadata={"help": "Text source of the SimCSE batches (file, folder or Hub id with a text column); default: the "
                  "distinct anchor and positive texts of the training data."},
    )
    simcse_split: str = field(default="train", metadata={"help": "Split of a Hub or save_to_disk SimCSE dataset."})
    simcse_text_column: str = field(default="text", metadata={"help": "Text column of simcse_dataset."})
    sts_eval_file: str | None = field(
        default=None, metadata={"help": "STS jsonl (sentence1, sentence2, score) for an EmbeddingSimilarityEvaluator."}
    )
    retrieval_eval_dir: str | None = field(
        default=None,
        metadata={"help": "BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) for an "
                  "InformationRetrievalEvaluator."},
    )
    retrieval_eval_split: str = field(default="test", metadata={"help": "qrels split of retrieval_eval_dir."})

    def __post_init__(self):
        from .sentence_transformers import validate_pooling

        missing = [name for name in ("model_name_or_path", "train_dataset") if not getattr(self, name)]
        if missing:
            raise ValueError(f"Missing required argument(s): {', '.join('--' + name for name in missing)}.")
        self.pooling = validate_pooling(self.pooling)  # `avg` -> `mean`
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"Unknown loss_type {self.loss_type!r}. Valid loss types: {', '.join(LOSS_TYPES)}.")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}.")
        _check_hard_negative_weight(self.hard_negative_weight)
        if self.loss_type != "cached_infonce" and self.mini_batch_size is not None:
            raise ValueError("mini_batch_size only applies to loss_type=cached_infonce; remove it or switch loss_type.")
        if self.loss_type == "supcon":
            if self.hard_negative_weight != 0.0:
                raise ValueError(
                    "hard_negative_weight applies to the InfoNCE losses; loss_type=supcon takes its negatives from the "
                    "other labels. Remove it or switch loss_type."
                )
            if self.pretraining_prob > 0:
                raise ValueError(
                    "pretraining_prob mixes in unlabelled SimCSE batches, which loss_type=supcon cannot score; set "
                    "pretraining_prob to 0 or switch loss_type."
                )
        if self.mini_batch_size is not None and self.mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {self.mini_batch_size}.")
        if not 0.0 <= self.pretraining_prob <= 1.0:
            raise ValueError(f"pretraining_prob must be in [0, 1], got {self.pretraining_prob}.")
        if self.simcse_dataset is not None and self.pretraining_prob == 0.0:
            raise ValueError(
                "simcse_dataset is only used when pretraining_prob > 0; set pretraining_prob or remove it."
            )
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ValueError(f"max_train_samples must be >= 1, got {self.max_train_samples}.")
        if isinstance(self.column_mapping, str):
            try:
                mapping = json.loads(self.column_mapping)
            except json.JSONDecodeError as error:
                raise ValueError(f"column_mapping must be a JSON object, got {self.column_mapping!r}.") from error
            self.column_mapping = mapping
        if self.column_mapping is not None and not (
            isinstance(self.column_mapping, dict) and all(isinstance(v, str) for v in self.column_mapping.values())
        ):
            raise ValueError(f"column_mapping must map column names to roles, got {self.column_mapping!r}.")


@dataclass
class ContrastiveTrainingArguments(WandbArguments, FinalLRRatioArguments, SentenceTransformerTrainingArguments):
    """`SentenceTransformerTrainingArguments` whose batches hold no duplicated text by default (in-batch negatives
    must not be copies of the anchor or positive), whose `resume_from_checkpoint` also takes `latest` or a step
    of `<output_dir>/checkpoints/`, and with the `wandb_*` run settings of [`~neobert_hf.training.arguments.WandbArguments`]."""

    batch_sampler: BatchSamplers | str = field(
        default=BatchSamplers.NO_DUPLICATES,
        metadata={"help": "no_duplicates (default: no text twice in a batch), no_duplicates_hashed, batch_sampler or "
                  "group_by_label."},
    )

    def __post_init__(self):
        check_training_values(self)
        self.check_wandb()
        sampling = getattr(self.train_sampling_strategy, "value", self.train_sampling_strategy)
        if sampling != "random":
            raise ValueError(
                f"train_sampling_strategy={sampling} has no effect here: sentence-transformers builds its batches with "
                "batch_sampler (no_duplicates, no_duplicates_hashed, batch_sampler, group_by_label). Set that instead."
            )
        self.apply_final_lr_ratio()
        super().__post_init__()


# ---------------------------------------------------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------------------------------------------------


class ContrastiveTrainer(CleanHubPushMixin, CheckpointTreeTrainerMixin, SentenceTransformerTrainer):
    """`SentenceTransformerTrainer` with SimCSE batch mixing and the package's checkpoint tree
    ([`~neobert_hf.checkpoints.CheckpointTreeCallback`]: each `checkpoints/<step>/` a loadable sentence-transformers
    folder with its own model card; `resume_from_checkpoint` takes `latest`, a step or a folder; the step where
    training stops is saved, holding the output folder's lock throughout). With `push_to_hub` it uploads only the
    model files of a saved sentence-transformers folder ([`~neobert_hf.export.push_allow_list`]), never the checkpoint
    tree ([`~neobert_hf.training.hub.CleanHubPushMixin`]).

    Args:
        pretraining_prob (`float`, *optional*): when the training dataset is a `DatasetDict` with `pairs` and
            `simcse` splits, the probability that a batch comes from `simcse` ([`SimCSEMixBatchSampler`]).
        kwargs: passed to `SentenceTransformerTrainer`.
    """

    def __init__(self, *args, pretraining_prob: float | None = None, **kwargs):
        self.pretraining_prob = pretraining_prob
        super().__init__(*args, **kwargs)
        WandbInitCallback.install(self)  # the wandb_* settings reach wandb.init
        train = self.train_dataset
        if pretraining_prob is not None and not (isinstance(train, dict) and list(train) == [PAIRS_KEY, SIMCSE_KEY]):
            raise ValueError(f"pretraining_prob needs a training DatasetDict with splits {[PAIRS_KEY, SIMCSE_KEY]}.")

    def get_multi_dataset_batch_sampler(self, dataset, batch_samplers, generator=None, seed=0):
        if self.pretraining_prob is not None and len(batch_samplers) == 2 and self._is_train_concat(dataset):
            return SimCSEMixBatchSampler(dataset, batch_samplers, self.pretraining_prob, generator=generator, seed=seed)
        return super().get_multi_dataset_batch_sampler(dataset, batch_samplers, generator=generator, seed=seed)

    def _is_train_concat(self, concat) -> bool:
        train = self.train_dataset
        return isinstance(train, dict) and [len(d) for d in concat.datasets] == [len(d) for d in train.values()]

    push_needs_processing_class = False  # the SentenceTransformer saves its own tokenizer

    def _stage_export(self, source: str, tag: str) -> str:
        """The export of a sentence-transformers folder: a copy of its allow-listed files (weights, config, tokenizer,
        module files, card)."""
        from ..export import push_allow_list

        staging = os.path.join(self.args.output_dir, f"{STAGING_PREFIX}{tag}-{secrets.token_hex(3)}")
        for rel in push_allow_list(source):
            target = os.path.join(staging, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(os.path.join(source, rel), target)
        return staging


# ---------------------------------------------------------------------------------------------------------------------
# Setup from arguments
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class ContrastiveSetup:
    """Everything `neobert-hf contrastive` trains with, built and checked before anything is written."""

    model: SentenceTransformer
    train_dataset: Any
    eval_dataset: Any
    loss: nn.Module
    evaluators: list
    args: ContrastiveArguments
    training_args: ContrastiveTrainingArguments

    def build_trainer(self) -> ContrastiveTrainer:
        return ContrastiveTrainer(
            model=self.model,
            args=self.training_args,
            train_dataset=self.train_dataset,
            eval_dataset=self.eval_dataset,
            loss=self.loss,
            evaluator=self.evaluators or None,
            pretraining_prob=self.args.pretraining_prob if self.args.pretraining_prob > 0 else None,
            callbacks=[TrainingBegan()],
        )

    def train(self) -> ContrastiveTrainer:
        """Build the Trainer and train (from `resume_from_checkpoint` when set). A start that fails before training
        begins leaves no new folder behind. Returns the Trainer."""
        trainer = None

        def started() -> bool:
            return trainer is not None and TrainingBegan.seen(trainer)

        with failed_start_cleanup(self.training_args.output_dir, started):
            trainer = self.build_trainer()
            trainer.train()
        return trainer

    def summary(self) -> str:
        train = self.train_dataset
        rows = {name: len(d) for name, d in train.items()} if isinstance(train, dict) else {"pairs": len(train)}
        columns = (train[PAIRS_KEY] if isinstance(train, dict) else train).column_names
        sampler = self.training_args.batch_sampler
        return "\n".join(
            [
                f"model: {self.args.model_name_or_path} (pooling={self.args.pooling}, normalize={self.args.normalize}, "
                f"max_seq_length={self.model.max_seq_length})",
                f"training rows: {rows}; columns {columns}",
                f"loss: {type(self.loss).__name__} (temperature={self.args.temperature}, "
                f"hard_negative_weight={self.args.hard_negative_weight})",
                f"SimCSE batches: probability {self.args.pretraining_prob} per batch",
                f"batch sampler: {getattr(sampler, 'value', sampler)}",
                f"evaluators: {[type(e).__name__ for e in self.evaluators] or 'none'}",
                f"checkpoints: {os.path.join(self.training_args.output_dir, 'checkpoints')}/<step>/",
            ]
        )


def prepare_contrastive(args: ContrastiveArguments, training_args: ContrastiveTrainingArguments) -> ContrastiveSetup:
    """Load and check the data, the evaluation files and the model, and build the loss. Writes nothing.

    Raises:
        `ValueError`: bad data or options (including SimCSE without dropout).
        [`~neobert_hf.integrations.sentence_transformers.CheckpointKeysError`]: a checkpoint that does not match.
    """
    from transformers import AutoConfig

    import neobert_hf  # noqa: F401 - registers the NeoBERT config

    from ..checkpoints import resolve_pretrained_path
    from .sentence_transformers import build_sentence_transformer

    from ..training.hub import check_push_arguments

    check_push_arguments(training_args, needs_tokenizer=False)  # the model saves its own tokenizer
    check_output_dir(training_args.output_dir)
    start = time.perf_counter()
    source = resolve_pretrained_path(args.model_name_or_path)  # a run folder -> one of its checkpoints
    if args.pretraining_prob > 0:
        config = AutoConfig.from_pretrained(source)
        dropout = args.dropout if args.dropout is not None else getattr(config, "dropout", 0.0)
        if not dropout > 0:
            raise ValueError(
                f"pretraining_prob={args.pretraining_prob} mixes in SimCSE batches, whose two views differ only by "
                f"dropout, but the encoder's dropout is {dropout}; set dropout (e.g. 0.1)."
            )

    prepare = prepare_supcon_dataset if args.loss_type == "supcon" else prepare_contrastive_dataset
    train = prepare(load_table(args.train_dataset, args.train_split, args.train_dataset_config), args.column_mapping)
    if args.max_train_samples is not None:
        train = train.select(range(min(args.max_train_samples, len(train))))
    eval_dataset = None
    if args.eval_dataset is not None:
        eval_dataset = prepare(
            load_table(args.eval_dataset, args.eval_split, args.eval_dataset_config), args.column_mapping
        )
    if args.pretraining_prob > 0:
        if args.simcse_dataset is not None:
            table = load_table(args.simcse_dataset, args.simcse_split)
            if args.simcse_text_column not in table.column_names:
                raise ValueError(
                    f"{args.simcse_dataset} has no column {args.simcse_text_column!r} (columns: {table.column_names})."
                )
            texts = table[args.simcse_text_column]
        else:
            texts = list(train["anchor"]) + list(train["positive"])
        from datasets import DatasetDict

        train = DatasetDict({PAIRS_KEY: train, SIMCSE_KEY: simcse_pairs(texts)})
    evaluators = build_evaluators(
        args.sts_eval_file,
        args.retrieval_eval_dir,
        args.retrieval_eval_split,
        batch_size=training_args.per_device_eval_batch_size,
    )
    if training_args.eval_strategy != "no" and eval_dataset is None and not evaluators:
        # No eval data named: evaluation is skipped, as the original trainer did, unless best-model selection needs it.
        # Named eval data (eval_dataset, sts_eval_file, retrieval_eval_dir) that cannot be read is an error above.
        strategy = getattr(training_args.eval_strategy, "value", training_args.eval_strategy)
        if training_args.load_best_model_at_end:
            raise ValueError(
                "load_best_model_at_end needs something to evaluate: set eval_dataset, sts_eval_file or "
                "retrieval_eval_dir."
            )
        logger.warning(
            f"eval_strategy={strategy} but there is nothing to evaluate (no eval_dataset, sts_eval_file or "
            "retrieval_eval_dir): evaluation is skipped (eval_strategy set to no)."
        )
        from transformers.trainer_utils import IntervalStrategy

        training_args.eval_strategy = IntervalStrategy.NO
        training_args.do_eval = False

    model = build_sentence_transformer(
        source,
        pooling=args.pooling,
        normalize=args.normalize,
        max_seq_length=args.max_seq_length,
        tokenizer_name_or_path=args.tokenizer_name_or_path,
        dropout=args.dropout,
    )
    loss = build_contrastive_loss(
        model, args.loss_type, args.temperature, args.hard_negative_weight, args.mini_batch_size
    )
    logger.info(f"Prepared contrastive training in {time.perf_counter() - start:.1f}s")
    return ContrastiveSetup(model, train, eval_dataset, loss, evaluators, args, training_args)
