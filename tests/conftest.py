"""Shared fixtures (tiny NeoBERT configs, the `shared` CLI inputs) and the run's defaults: everything offline, one
intra-op thread, and tests marked `slow` or `gpu` left out unless `-m` names them, so that `-m "not integration"` is the
quick loop and the plain run is what CI runs. Helper functions live in `tests/helpers/`."""

import os


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "offline")
# Tiny models on a 2-core machine: one intra-op thread is several times faster than two that contend with the
# test's own subprocesses (and is inherited by them).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from neobert_hf import NeoBERTConfig  # noqa: E402
from helpers.modeling import make_sequences, pack, pad, random_lengths, tiny_config  # noqa: E402, F401


torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def config() -> NeoBERTConfig:
    return tiny_config()


@pytest.fixture
def fresh_flex_compile():
    """torch 2.13's CPU inductor emits C++ that does not compile (`cur_qSplitSize8 was not declared`) when
    transformers' compiled flex_attention is recompiled for a second shape with dynamic shapes. Start each flex test
    from an empty compile cache so the kernel is compiled once, statically, for its shape."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Inputs shared by the cases, outside the folder each case watches."""
    from helpers.cli import ROOT, contrastive_checkpoint, corpus_lines
    from helpers.glue import make_tokenizer, save_pretrained_model, task_files

    root = tmp_path_factory.mktemp("shared")
    (root / "corpus.jsonl").write_text(corpus_lines())
    tokenizer = make_tokenizer(root / "glue_tok")
    return {
        "root": root,
        "corpus": str(root / "corpus.jsonl"),
        "glue_model": str(save_pretrained_model(root / "glue_model", tokenizer)),
        "glue_files": task_files(root / "glue", "sst2", n_train=16, n_eval=8),
        "st_model": contrastive_checkpoint(root / "st_model"),
        "st_train": str(ROOT / "tests" / "assets" / "contrastive" / "train.jsonl"),
    }


def pytest_collection_modifyitems(config, items):
    """Leave out tests marked `slow` or `gpu` unless the `-m` expression names that marker."""
    expression = config.getoption("markexpr") or ""
    skipped = [m for m in ("slow", "gpu") if m not in expression]
    if not skipped:
        return
    kept, left_out = [], []
    for item in items:
        (left_out if any(item.get_closest_marker(m) for m in skipped) else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept
