"""Drift guard for the private `Trainer` methods the package overrides or calls.

Private methods change without notice between transformers releases. The package overrides at most three of them,
each where no public hook exists (the reason is in a comment next to each override), and calls a few. These tests
fail loudly, naming the method, when one disappears from the installed transformers (or sentence-transformers) or
its parameters change, and when a new private override appears without being recorded here.
"""

import importlib
import inspect
import pkgutil
import re

import pytest
from transformers import Trainer

import neobert_hf


# (our class, method) -> (parent class that defines it, recorded parameters as (name, kind, default)).
_EMPTY = "<required>"
OVERRIDES = {
    ("neobert_hf.training.trainer.NeoBERTTrainer", "_set_signature_columns_if_needed"): (
        "transformers.trainer.Trainer",
        [("self", "POSITIONAL_OR_KEYWORD", _EMPTY)],
    ),
    ("neobert_hf.training.trainer.NeoBERTTrainer", "_push_from_checkpoint"): (
        "transformers.trainer.Trainer",
        [("self", "POSITIONAL_OR_KEYWORD", _EMPTY), ("checkpoint_folder", "POSITIONAL_OR_KEYWORD", _EMPTY)],
    ),
    ("neobert_hf.integrations.glue_trainer.GlueTrainer", "_push_from_checkpoint"): (
        "transformers.trainer.Trainer",
        [("self", "POSITIONAL_OR_KEYWORD", _EMPTY), ("checkpoint_folder", "POSITIONAL_OR_KEYWORD", _EMPTY)],
    ),
    ("neobert_hf.integrations.glue_trainer.GlueTrainer", "_load_from_checkpoint"): (
        "transformers.trainer.Trainer",
        [
            ("self", "POSITIONAL_OR_KEYWORD", _EMPTY),
            ("resume_from_checkpoint", "POSITIONAL_OR_KEYWORD", _EMPTY),
            ("model", "POSITIONAL_OR_KEYWORD", None),
        ],
    ),
    ("neobert_hf.integrations.contrastive.ContrastiveTrainer", "_push_from_checkpoint"): (
        "sentence_transformers.base.trainer.BaseTrainer",
        [("self", "POSITIONAL_OR_KEYWORD", _EMPTY), ("checkpoint_folder", "POSITIONAL_OR_KEYWORD", _EMPTY)],
    ),
}

# Private methods the checkpoint code calls (it does not override them).
CALLED = {
    "_save_checkpoint": [
        ("self", "POSITIONAL_OR_KEYWORD", _EMPTY),
        ("model", "POSITIONAL_OR_KEYWORD", _EMPTY),
        ("trial", "POSITIONAL_OR_KEYWORD", _EMPTY),
    ],  # CheckpointTreeTrainerMixin.save_last_step
    "_finish_current_push": [("self", "POSITIONAL_OR_KEYWORD", _EMPTY)],  # CleanHubPushMixin: the last push waits
}

MAX_OVERRIDDEN_METHODS = 3


def _parameters(function) -> list[tuple]:
    return [
        (p.name, p.kind.name, _EMPTY if p.default is inspect.Parameter.empty else p.default)
        for p in inspect.signature(function).parameters.values()
    ]


def _qualified(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _import(qualified: str):
    module, _, name = qualified.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _package_trainers() -> list[type]:
    """Every `Trainer` subclass defined in neobert_hf (modules whose optional dependencies are missing are skipped)."""
    found = {}
    for info in pkgutil.walk_packages(neobert_hf.__path__, "neobert_hf."):
        if info.name.rsplit(".", 1)[-1] == "__main__":  # runs a command when imported
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:
            continue
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, Trainer) and value.__module__.startswith("neobert_hf"):
                found[_qualified(value)] = value
    return list(found.values())


def _parent_defining(cls, name: str, after):
    """The first class after `after` in `cls`'s MRO that defines `name`."""
    mro = cls.__mro__
    for klass in mro[mro.index(after) + 1 :]:
        if name in vars(klass):
            return klass
    return None


def _private_overrides() -> dict[tuple[str, str], type]:
    """(trainer, method) -> the outside class whose private method one of the package's classes overrides."""
    overrides = {}
    for trainer in _package_trainers():
        for klass in trainer.__mro__:
            if not klass.__module__.startswith("neobert_hf"):
                continue
            for name, value in vars(klass).items():
                if not name.startswith("_") or name.startswith("__") or not callable(value):
                    continue
                parent = _parent_defining(trainer, name, klass)
                if parent is not None and not parent.__module__.startswith("neobert_hf"):
                    overrides.setdefault((_qualified(trainer), name), parent)
    return overrides


@pytest.mark.parametrize("key", sorted(OVERRIDES), ids=lambda key: f"{key[0].rsplit('.', 1)[-1]}.{key[1]}")
def test_each_overridden_private_method_still_exists_with_the_same_parameters(key):
    trainer_name, method = key
    parent_name, recorded = OVERRIDES[key]
    try:
        parent = _import(parent_name)
    except ImportError:
        pytest.skip(f"{parent_name} is not installed")
    function = getattr(parent, method, None)
    assert function is not None, (
        f"{parent_name}.{method} no longer exists in the installed version, but {trainer_name} overrides it: the "
        "override is now dead code and the behaviour it provided is gone. Find the new hook and move the override."
    )
    assert _parameters(function) == recorded, (
        f"{parent_name}.{method} changed its parameters: now {inspect.signature(function)}, recorded {recorded}. "
        f"Check the override in {trainer_name} against the new code, then update the record here."
    )


@pytest.mark.parametrize("method", sorted(CALLED))
def test_each_private_method_the_checkpoint_code_calls_still_exists(method):
    function = getattr(Trainer, method, None)
    assert function is not None, f"transformers.Trainer.{method} no longer exists; the checkpoint code calls it."
    assert _parameters(function) == CALLED[method], (
        f"transformers.Trainer.{method} changed its parameters: now {inspect.signature(function)}."
    )


def test_no_private_override_beyond_the_recorded_ones():
    found = _private_overrides()
    unrecorded = sorted(
        f"{t}.{m} (overrides {_qualified(p)}.{m})" for (t, m), p in found.items() if (t, m) not in OVERRIDES
    )
    assert not unrecorded, (
        f"New private Trainer overrides: {unrecorded}. Use a public hook (compute_loss, callbacks, "
        "get_train_dataloader, get_resumed_dataloader, create_optimizer, create_scheduler, save_model, train) or, "
        "where none exists, record the override here with the reason in a comment next to it."
    )
    missing = sorted(f"{t}.{m}" for t, m in OVERRIDES if (t, m) not in found)
    assert not missing, f"Recorded overrides that the package no longer has (remove them here): {missing}"
    methods = {m for _, m in found}
    assert len(methods) <= MAX_OVERRIDDEN_METHODS, f"{len(methods)} private Trainer methods overridden: {methods}"


def test_the_checkpoint_callback_runs_right_after_the_stock_save():
    """CheckpointTreeCallback.on_save moves the folder `Trainer._save_checkpoint` has just written: transformers must
    still call `on_save` right after it, and name that folder `checkpoint-<step>` under `output_dir`."""
    source = inspect.getsource(Trainer._maybe_log_save_evaluate)
    pattern = r"self\._save_checkpoint\(model, trial\)\s*\n\s*self\.control = self\.callback_handler\.on_save"
    assert re.search(pattern, source), (
        "transformers.Trainer._maybe_log_save_evaluate no longer calls callback_handler.on_save right after "
        "_save_checkpoint: CheckpointTreeCallback relies on it."
    )
    save = inspect.getsource(Trainer._save_checkpoint)
    assert 'f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"' in save and "self._get_output_dir(trial=trial)" in save
    assert hasattr(Trainer, "get_resumed_dataloader"), "NeoBERTTrainer keeps a restored stream through this hook"
