"""The vocabulary shared by the migration modules: subcommands, sections of the original format, [`Rule`] (one
row of the table), the [`Context`] a converter reads and the two exceptions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


PRETRAIN, GLUE, CONTRASTIVE, MTEB = "pretrain", "glue", "contrastive", "mteb"
SUBCOMMANDS = (PRETRAIN, GLUE, CONTRASTIVE, MTEB)
TRAINING = (PRETRAIN, GLUE, CONTRASTIVE)
SUBCOMMAND_OF_TASK = {"pretraining": PRETRAIN, "glue": GLUE, "contrastive": CONTRASTIVE, "mteb": MTEB}

# Mappings of the original format; anything else that holds a mapping is a leaf value (e.g. pretraining_metadata).
SECTIONS = (
    "model", "tokenizer", "dataset", "trainer", "optimizer", "optimizer.muon_config", "optimizer.hparams",
    "scheduler", "datacollator", "wandb", "glue", "contrastive", "torchao", "transformer_engine", "quartet2",
)  # fmt: skip
# Top-level keys that only the original format has: a `--config` recipe holding one of them is an original config.
_ORIGINAL_MARKERS = {"model", "tokenizer", "dataset", "trainer", "optimizer", "scheduler", "datacollator", "wandb",
                     "glue", "contrastive", "torchao", "transformer_engine", "quartet2"}  # fmt: skip


_ORIGINAL_TOP_LEVEL = {"task", "use_deepspeed", "mixed_precision", "mteb_task_type", "mteb_batch_size",
                       "mteb_pooling", "mteb_overwrite_results", "pretrained_checkpoint", "accelerate_config_file",
                       "pretraining_metadata", "config_path", "variables"}  # fmt: skip


class MigrationError(ValueError):
    """The original config cannot be converted: an unknown key, a malformed value or two keys that disagree."""


class NoEquivalent(Exception):
    """Raised by a converter when this value of the key has no equivalent (the reason is reported)."""


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()


@dataclass(frozen=True)
class Rule:
    """One key of the original format and what it becomes.

    Args:
        old: dotted key of the original format (`trainer.max_steps`, `optimizer.muon_config.ns_steps`, `seed`).
        new: recipe keys it may write (fields of the subcommand's argument dataclasses); empty: no equivalent.
        where: subcommands this row applies to (a key may have one row per group of subcommands).
        convert: `(value, ctx) -> {recipe key: value}`, may raise `NoEquivalent(reason)`; None copies the value
            into `new[0]`.
        note: the unit change or meaning of a mapped key, or the reason a key has no equivalent.
        alias_of: a legacy key: converted exactly as this canonical key (a dict picks the key per subcommand).
        carry: for pretraining, the original trainer's default, written when the key is absent because the
            `neobert-hf` default differs.
        structural: handled while reading the file (`task`, `variables`, `optimizer.hparams.*`).
    """

    old: str
    new: tuple[str, ...] = ()
    where: tuple[str, ...] = SUBCOMMANDS
    convert: Callable[[Any, Context], dict[str, Any]] | None = None
    note: str = ""
    alias_of: str | dict[str, str] | None = None
    carry: Any = ABSENT
    structural: bool = False

    @property
    def status(self) -> str:
        if self.structural:
            return "structural"
        if self.alias_of is not None:
            return "renamed"
        if not self.new:
            return "refused"
        if self.convert is None and self.new == (self.old.rsplit(".", 1)[-1],):
            return "mapped"
        return "renamed"

    def canonical(self, subcommand: str) -> str | None:
        if isinstance(self.alias_of, dict):
            return self.alias_of.get(subcommand, self.alias_of.get("*"))
        return self.alias_of


@dataclass
class Context:
    """What a converter may read besides its own value: the whole (flattened) original config and the target."""

    values: dict[str, Any]
    subcommand: str

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key, default)
        return default if value is None else value

    def given(self, key: str) -> bool:
        return self.values.get(key) is not None
