"""The checkpoint tree (`<output_dir>/checkpoints/<step>/`): layout, atomic publication, retention, `latest`, resume
errors, exact resume (map-style and stateful stream), and the stop on a non-finite loss."""

import os
import shutil

import pytest
import torch
from helpers.training import (
    PlainStream,
    StatefulStream,
    losses,
    make_args,
    make_model,
    make_trainer,
    mlm_samples,
    pad_collate,
    tiny_tokenizer,
)
from transformers import AutoModelForMaskedLM

from neobert_hf.training import CheckpointError, NeoBERTTrainer, NonFiniteLossError, resolve_checkpoint
from neobert_hf.checkpoints import latest_checkpoint, list_checkpoints


def steps_on_disk(output_dir) -> list[int]:
    return [step for step, _ in list_checkpoints(output_dir)]


def test_checkpoint_tree_holds_a_resumable_state_and_a_loadable_model(tmp_path):
    args = make_args(tmp_path, max_steps=4, save_strategy="steps", save_steps=2)
    trainer = make_trainer(args, processing_class=tiny_tokenizer())
    trainer.train()

    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4"]
    assert not [name for name in os.listdir(tmp_path) if name.startswith("checkpoint-")]
    folder = tmp_path / "checkpoints" / "4"
    names = set(os.listdir(folder))
    assert {
        "model.safetensors",
        "config.json",
        "modeling_neobert.py",
        "configuration_neobert.py",  # the model
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",  # tokenizer and card
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
        "trainer_state.json",
        "training_args.bin",  # resume
    } <= names
    card = (folder / "README.md").read_text()
    assert "step **4**" in card and "AutoModelForMaskedLM" in card

    loaded = AutoModelForMaskedLM.from_pretrained(folder)
    batch = {"input_ids": torch.tensor([[2, 7, 4, 9, 3]])}
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, trainer.model(**batch).logits)


@pytest.mark.integration
def test_final_step_is_always_saved(tmp_path):
    make_trainer(make_args(tmp_path / "a", max_steps=5, save_strategy="steps", save_steps=2)).train()
    assert steps_on_disk(tmp_path / "a") == [2, 4, 5]
    make_trainer(make_args(tmp_path / "b", max_steps=3, save_strategy="no")).train()
    assert steps_on_disk(tmp_path / "b") == [3]
    make_trainer(make_args(tmp_path / "c", max_steps=3, save_final_checkpoint=False)).train()
    assert steps_on_disk(tmp_path / "c") == []


def test_final_step_is_saved_when_the_data_runs_out_early(tmp_path):
    args = make_args(tmp_path, max_steps=-1, num_train_epochs=1, per_device_train_batch_size=4)
    make_trainer(args, train_dataset=mlm_samples(10)).train()  # 3 steps, the last one short
    assert steps_on_disk(tmp_path) == [3]


def test_save_total_limit_keeps_the_newest(tmp_path):
    make_trainer(make_args(tmp_path, max_steps=5, save_strategy="steps", save_steps=1, save_total_limit=2)).train()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4", "5"]


@pytest.mark.integration
def test_interrupted_save_leaves_no_folder_under_a_step_name(tmp_path, monkeypatch):
    args = make_args(tmp_path, max_steps=4, save_strategy="steps", save_steps=2)
    trainer = make_trainer(args)

    def crash(output_dir):
        raise KeyboardInterrupt("simulated crash while saving")

    monkeypatch.setattr(trainer, "_save_rng_state", crash)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    # transformers' save writes `checkpoint-2/` in place; the callback moves it into the tree only once it is complete
    assert not (tmp_path / "checkpoints").exists() and (tmp_path / "checkpoint-2").is_dir()
    assert steps_on_disk(tmp_path) == []
    with pytest.raises(CheckpointError, match="no complete checkpoint.*Interrupted saves.*checkpoint-2"):
        resolve_checkpoint("latest", tmp_path)
    with pytest.raises(CheckpointError, match="has no trainer_state.json"):
        resolve_checkpoint(tmp_path / "checkpoint-2", tmp_path)

    # a crash while the folder is moved into the tree leaves a temporary folder there, never a step name
    trainer = make_trainer(args)

    def crash_publish(tmp_dir, final_dir):
        raise KeyboardInterrupt("simulated crash while publishing")

    monkeypatch.setattr("neobert_hf.checkpoints.callback.publish", crash_publish)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    monkeypatch.undo()
    names = os.listdir(tmp_path / "checkpoints")
    assert "2" not in names and len(names) == 1 and names[0].startswith(".tmp-2-")
    assert not (tmp_path / "checkpoint-2").exists()  # the interrupted save of the first run was cleaned up
    with pytest.raises(CheckpointError, match="temporary folder left by an interrupted save"):
        resolve_checkpoint(tmp_path / "checkpoints" / names[0], tmp_path)

    # the next successful save cleans the leftover up
    make_trainer(make_args(tmp_path, max_steps=2, save_strategy="steps", save_steps=2)).train()
    assert os.listdir(tmp_path / "checkpoints") == ["2"]


def test_resolve_checkpoint_latest_step_and_path(tmp_path):
    make_trainer(make_args(tmp_path, max_steps=4, save_strategy="steps", save_steps=2)).train()
    root = tmp_path / "checkpoints"
    assert resolve_checkpoint("latest", tmp_path) == str(root / "4")
    assert resolve_checkpoint(True, tmp_path) == str(root / "4")
    assert resolve_checkpoint("2", tmp_path) == str(root / "2")
    assert resolve_checkpoint(2, tmp_path) == str(root / "2")
    assert resolve_checkpoint(str(root / "2"), tmp_path) == str(root / "2")
    with pytest.raises(CheckpointError, match=r"no checkpoint for step 3 .*complete steps: \[2, 4\]"):
        resolve_checkpoint(3, tmp_path)
    os.remove(root / "4" / "trainer_state.json")  # a folder that is not complete
    with pytest.raises(CheckpointError, match="has no trainer_state.json"):
        resolve_checkpoint(str(root / "4"), tmp_path)
    # latest never points at it, and never falls back to an older step silently: it names the step to use
    with pytest.raises(CheckpointError, match=r"step 4 .* is not usable: it has no trainer_state.json.* step 2 "):
        resolve_checkpoint("latest", tmp_path)
    assert latest_checkpoint(tmp_path) == str(root / "2")


@pytest.mark.integration
def test_resume_errors_are_raised_before_training(tmp_path):
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        make_trainer(make_args(tmp_path / "empty", resume_from_checkpoint="latest")).train()
    assert not os.path.exists(tmp_path / "empty" / "checkpoints")

    make_trainer(make_args(tmp_path / "model_only", max_steps=2, save_only_model=True)).train()
    with pytest.raises(CheckpointError, match="no optimizer state"):
        make_trainer(make_args(tmp_path / "model_only", max_steps=4)).train(resume_from_checkpoint="latest")

    # a finished run: transformers would train one step past max_steps
    make_trainer(make_args(tmp_path / "done", max_steps=2)).train()
    with pytest.raises(CheckpointError, match="is at step 2 and max_steps is 2: that run is complete"):
        make_trainer(make_args(tmp_path / "done", max_steps=2)).train(resume_from_checkpoint="latest")
    assert steps_on_disk(tmp_path / "done") == [2]
    resumed = make_trainer(make_args(tmp_path / "done", max_steps=3))
    resumed.train(resume_from_checkpoint="latest")
    assert resumed.state.global_step == 3 and steps_on_disk(tmp_path / "done") == [2, 3]

    make_trainer(make_args(tmp_path / "swiglu", max_steps=2)).train()
    gelu = make_model(hidden_act="gelu")
    with pytest.raises(CheckpointError, match="does not match the model: missing keys"):
        make_trainer(make_args(tmp_path / "swiglu", max_steps=4), model=gelu).train(resume_from_checkpoint="latest")


def test_resume_of_a_stream_without_state_is_refused(tmp_path):
    make_trainer(make_args(tmp_path, max_steps=2), train_dataset=StatefulStream()).train()
    with pytest.raises(CheckpointError, match="PlainStream has no state_dict"):
        make_trainer(make_args(tmp_path, max_steps=4), train_dataset=PlainStream()).train(resume_from_checkpoint="2")


def _run(output_dir, dataset_factory, collator, max_steps, resume=None, **overrides):
    args = make_args(
        output_dir,
        max_steps=max_steps,
        save_strategy="steps",
        save_steps=3,
        gradient_accumulation_steps=2,
        per_device_train_batch_size=3,
        lr_scheduler_type="cosine",
        warmup_steps=2,
        **overrides,
    )
    trainer = make_trainer(args, model=make_model(dropout=0.1), train_dataset=dataset_factory(), collator=collator)
    trainer.train(resume_from_checkpoint=resume)
    return trainer


@pytest.mark.integration
@pytest.mark.parametrize(
    "kind, optimizer",
    [("map", "adamw"), ("map", "muonclip"), ("stream", "adamw"), ("datasets-stream", "adamw")],
)
def test_resume_is_exact(tmp_path, kind, optimizer):
    # Masks are a function of the sample (as the data pipeline makes them), not of the global RNG: accelerate's
    # data loader collates one batch ahead of the training step, so a collator drawing from the global RNG
    # interleaves differently with dropout once resumed. Dropout itself (global RNG) must resume exactly.
    if kind == "map":
        factory, extra = (lambda: mlm_samples(48)), {"train_sampling_strategy": "random"}
    elif kind == "stream":
        factory, extra = StatefulStream, {}
    else:  # a `datasets.IterableDataset`, resumed through its own state_dict()
        import datasets

        def factory():
            return datasets.Dataset.from_list(mlm_samples(200)).to_iterable_dataset(num_shards=4)

        extra = {}
    collator = pad_collate
    extra["optimizer"] = optimizer
    if optimizer == "muonclip":
        extra.update(qk_clip_threshold=0.05, qk_clip_interval=1)  # low enough to clip on this tiny model

    straight = _run(tmp_path / "straight", factory, collator, 6, **extra)
    shutil.copytree(tmp_path / "straight" / "checkpoints" / "3", tmp_path / "resumed" / "checkpoints" / "3")
    resumed = _run(tmp_path / "resumed", factory, collator, 6, resume="latest", **extra)

    expected = losses(straight)
    got = {step: loss for step, loss in losses(resumed).items() if step > 3}  # steps 1-3 come from the checkpoint
    assert sorted(got) == [4, 5, 6]
    for step in (4, 5, 6):
        assert got[step] == expected[step], step
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
    if kind != "map":
        assert (tmp_path / "straight" / "checkpoints" / "3" / "data_state.json").is_file()


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    class PoisonedTrainer(NeoBERTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if self.state.global_step == 3:  # the 4th optimizer step
                return result * float("nan") if not return_outputs else (result[0] * float("nan"), result[1])
            return result

    args = make_args(tmp_path, max_steps=6, save_strategy="steps", save_steps=2)
    trainer = make_trainer(args, trainer_cls=PoisonedTrainer)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match=r"optimizer step 4.*Last good checkpoint: .*checkpoints/2"):
        trainer.train()
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2"]
    assert trainer.state.global_step == 3
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # the update was not applied
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_resume_is_exact_with_the_packing_dataset(tmp_path):
    """The package's stateful packing stream (`neobert_hf.data.MicrobatchDataset`) through the Trainer: packed
    microbatches of a fixed token budget, deterministic masks, GA=2, resumed mid-epoch from its saved position."""
    from neobert_hf.data import MicrobatchDataset, MLMMasker, PackedBatchCollator

    documents = [s["input_ids"] for s in mlm_samples(200, seed=7, min_len=5, max_len=90, mask_rates=[0.0])]

    def factory():
        masker = MLMMasker(
            mask_token_id=4,
            vocab_size=128,
            special_token_ids=range(5),
            replacement_token_ids=range(5, 128),
            mlm_probability=0.2,
            mask_all=True,
            seed=0,
        )
        return MicrobatchDataset(
            documents, tokens_per_batch=128, max_seq_length=64, pad_token_id=0, masker=masker, buffer_size=16, seed=0
        )

    def run(output_dir, resume=None):
        args = make_args(
            output_dir,
            max_steps=6,
            save_strategy="steps",
            save_steps=3,
            gradient_accumulation_steps=2,
            per_device_train_batch_size=1,
        )
        trainer = make_trainer(
            args, model=make_model(dropout=0.1), train_dataset=factory(), collator=PackedBatchCollator()
        )
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    straight = run(tmp_path / "straight")
    assert any(name.startswith("data_state") for name in os.listdir(tmp_path / "straight" / "checkpoints" / "3"))
    shutil.copytree(tmp_path / "straight" / "checkpoints" / "3", tmp_path / "resumed" / "checkpoints" / "3")
    resumed = run(tmp_path / "resumed", resume=3)
    expected = losses(straight)
    got = {step: loss for step, loss in losses(resumed).items() if step > 3}
    assert got == {step: expected[step] for step in (4, 5, 6)}
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
