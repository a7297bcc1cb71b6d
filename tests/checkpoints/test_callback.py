"""`neobert_hf.CheckpointTreeCallback` on Trainers that are not the package's: a plain `transformers.Trainer` on a
NeoBERT classification head and a `SentenceTransformerTrainer` on a NeoBERT sentence-transformers model each get the
canonical `checkpoints/<step>/` tree (manifest last, retention, the last step saved, no token on disk, loadable with
`from_pretrained`) and resume from a folder of the tree exactly: stopping at a middle step and resuming gives the
weights and losses of the uninterrupted run. Offline, tiny models built in memory."""

import json
import os
from pathlib import Path

import pytest
import torch
from helpers.modeling import save_tiny_checkpoint, tiny_config
from transformers import (
    AutoModelForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
)

from neobert_hf import CheckpointTreeCallback, NeoBERTForSequenceClassification
from neobert_hf.checkpoints import LOCK_NAME, MANIFEST_NAME, list_checkpoints, read_manifest, verify_checkpoint


TOKEN = "hf_" + "s3cr3t" * 6


class StopAt(TrainerCallback):
    """Stops training after optimizer step `step` (an interrupted run, saved by the tree's final save)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def losses(trainer) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in trainer.state.log_history if "loss" in e}


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def no_token_in(folder) -> bool:
    return not any(TOKEN.encode() in p.read_bytes() for p in Path(folder).rglob("*") if p.is_file())


def assert_tree(output_dir, steps):
    assert [s for s, _ in list_checkpoints(output_dir)] == steps
    names = sorted(os.listdir(Path(output_dir) / "checkpoints"))
    assert names == [str(s) for s in steps]  # no temporary folder left, nothing else
    assert not any(n.startswith("checkpoint-") for n in os.listdir(output_dir))  # transformers' folders moved
    assert not (Path(output_dir) / LOCK_NAME).exists()
    for step in steps:
        folder = Path(output_dir) / "checkpoints" / str(step)
        manifest = read_manifest(folder)
        assert manifest["step"] == step
        # the manifest is written last: every other file is older or as old
        newest = max(p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)
        assert (folder / MANIFEST_NAME).stat().st_mtime_ns >= newest
        verify_checkpoint(folder)
        state = json.loads((folder / "trainer_state.json").read_text())
        assert state["global_step"] == step


# ---------------------------------------------------------------------------------------------------------------------
# A plain transformers.Trainer on NeoBERTForSequenceClassification
# ---------------------------------------------------------------------------------------------------------------------


def classification_data(n: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 128, (n, 12), generator=g)
    labels = (ids[:, 0] > 64).long()
    return [{"input_ids": i, "attention_mask": torch.ones_like(i), "labels": int(y)} for i, y in zip(ids, labels)]


def plain_trainer(output_dir, max_steps=6, callbacks=(), **overrides) -> Trainer:
    torch.manual_seed(0)
    model = NeoBERTForSequenceClassification(tiny_config(num_labels=2, classifier_dropout=0.1))
    values = dict(
        output_dir=str(output_dir), max_steps=max_steps, per_device_train_batch_size=4, learning_rate=1e-3,
        save_strategy="steps", save_steps=2, logging_steps=1, report_to="none", use_cpu=True, disable_tqdm=True,
        seed=0, hub_token=TOKEN, dataloader_num_workers=0,
    )  # fmt: skip
    values.update(overrides)
    return Trainer(
        model=model,
        args=TrainingArguments(**values),
        train_dataset=classification_data(40),
        eval_dataset=classification_data(8, seed=1),
        data_collator=default_data_collator,
        callbacks=[CheckpointTreeCallback(), *callbacks],
    )


@pytest.mark.integration
def test_a_plain_trainer_writes_the_tree_and_resumes_exactly(tmp_path):
    full = plain_trainer(tmp_path / "full", save_total_limit=2)
    full.train()
    assert_tree(tmp_path / "full", [4, 6])  # save_total_limit=2
    assert no_token_in(tmp_path / "full")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "full" / "checkpoints" / "6")
    assert_same_weights(loaded, full.model)
    assert (tmp_path / "full" / "checkpoints" / "6" / "README.md").is_file()  # the model card

    # stopped at step 3 (not a save step): the tree's final save keeps it
    stopped = plain_trainer(tmp_path / "resumed", callbacks=[StopAt(3)])
    stopped.train()
    assert_tree(tmp_path / "resumed", [2, 3])

    resumed = plain_trainer(tmp_path / "resumed")
    resumed.train(resume_from_checkpoint=str(tmp_path / "resumed" / "checkpoints" / "3"))
    assert resumed.state.global_step == 6
    assert_same_weights(resumed.model, full.model)
    assert {s: v for s, v in losses(resumed).items() if s > 3} == {s: v for s, v in losses(full).items() if s > 3}
    assert_tree(tmp_path / "resumed", [2, 3, 4, 6])
    assert no_token_in(tmp_path / "resumed")


def test_best_model_checkpoint_names_the_tree_and_load_best_model_at_end_works(tmp_path):
    trainer = plain_trainer(
        tmp_path, eval_strategy="steps", eval_steps=2, load_best_model_at_end=True, metric_for_best_model="loss",
        greater_is_better=True, save_total_limit=1,
    )  # fmt: skip
    trainer.train()
    best = trainer.state.best_model_checkpoint
    assert best is not None and Path(best).parent == tmp_path / "checkpoints"
    steps = [s for s, _ in list_checkpoints(tmp_path)]
    assert int(Path(best).name) in steps and 6 in steps and len(steps) <= 2  # a limit of 1 keeps the best too
    loaded = AutoModelForSequenceClassification.from_pretrained(best)
    assert_same_weights(loaded, trainer.model)  # the best weights were loaded at the end
    state = json.loads((tmp_path / "checkpoints" / "6" / "trainer_state.json").read_text())
    assert state["best_model_checkpoint"] == best


# ---------------------------------------------------------------------------------------------------------------------
# SentenceTransformerTrainer on a NeoBERT sentence-transformers model
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def neobert_folder(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("st") / "mlm")


def st_trainer(neobert_folder, output_dir, max_steps=4, callbacks=(), **overrides):
    pytest.importorskip("sentence_transformers")
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from neobert_hf.integrations.sentence_transformers import build_sentence_transformer

    torch.manual_seed(0)
    model = build_sentence_transformer(neobert_folder, device="cpu", dropout=0.1)
    words = ["cat", "car", "rain", "bread", "music", "river", "book", "match", "tree", "lamp", "road", "snow"]
    pairs = Dataset.from_dict(
        {"anchor": [f"the {w} is here" for w in words], "positive": [f"a {w} was there" for w in words]}
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(output_dir), max_steps=max_steps, per_device_train_batch_size=4, learning_rate=1e-3,
        save_strategy="steps", save_steps=2, logging_steps=1, report_to="none", use_cpu=True, disable_tqdm=True,
        seed=0, dataloader_pin_memory=False, hub_token=TOKEN, **overrides,
    )  # fmt: skip
    return SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=pairs,
        eval_dataset=pairs if args.eval_strategy != "no" else None,
        loss=MultipleNegativesRankingLoss(model),
        callbacks=[CheckpointTreeCallback(), *callbacks],
    )


@pytest.mark.integration
def test_a_sentence_transformers_trainer_writes_the_tree_and_resumes_exactly(neobert_folder, tmp_path):
    from sentence_transformers import SentenceTransformer

    full = st_trainer(neobert_folder, tmp_path / "full")
    full.train()
    assert_tree(tmp_path / "full", [2, 4])
    assert no_token_in(tmp_path / "full")
    folder = tmp_path / "full" / "checkpoints" / "4"
    assert (folder / "modules.json").is_file()  # a sentence-transformers folder, with its own card
    loaded = SentenceTransformer(str(folder), device="cpu")
    assert_same_weights(loaded, full.model)

    stopped = st_trainer(neobert_folder, tmp_path / "resumed", callbacks=[StopAt(1)])
    stopped.train()
    assert_tree(tmp_path / "resumed", [1])

    resumed = st_trainer(neobert_folder, tmp_path / "resumed")
    resumed.train(resume_from_checkpoint=str(tmp_path / "resumed" / "checkpoints" / "1"))
    assert resumed.state.global_step == 4
    assert_same_weights(resumed.model, full.model)
    assert {s: v for s, v in losses(resumed).items() if s > 1} == {s: v for s, v in losses(full).items() if s > 1}
    assert_tree(tmp_path / "resumed", [1, 2, 4])


def test_push_to_hub_with_the_callback_alone_is_refused(tmp_path):
    """transformers' own push uploads `output_dir` minus `checkpoint-*`: the whole tree with its optimizer state."""
    args = TrainingArguments(output_dir=str(tmp_path), push_to_hub=True, hub_model_id="org/tiny", report_to="none")
    with pytest.raises(ValueError, match="would upload the checkpoints/ tree"):
        CheckpointTreeCallback().on_init_end(args, None, None)
    callback = CheckpointTreeCallback()
    callback.pushes_clean_exports = True  # what the package's Trainers set: they push an export
    callback.on_init_end(args, None, None)


@pytest.mark.integration
def test_sentence_transformers_card_names_the_best_step(neobert_folder, tmp_path):
    # sentence-transformers reads the best step from a `checkpoint-<step>` name; the tree's `checkpoints/<step>` too.
    trainer = st_trainer(
        neobert_folder, tmp_path / "run", max_steps=6, eval_strategy="steps", eval_steps=2,
        load_best_model_at_end=True, metric_for_best_model="loss", greater_is_better=True,
    )  # fmt: skip
    trainer.train()
    best = Path(trainer.state.best_model_checkpoint)
    assert best.parent == tmp_path / "run" / "checkpoints"
    assert trainer.model.model_card_data.best_model_step == int(best.name)
