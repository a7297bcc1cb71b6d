"""NeoBERTTrainer loss and evaluation: gradient accumulation == one large batch (both loss paths, padded and packed),
zero-masked batches, eval metrics against a direct computation, argument validation."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from test_training_fixtures import (
    GradCapture,
    losses,
    make_args,
    make_model,
    make_trainer,
    mlm_samples,
    pack_collate,
    pad_collate,
    relative_error,
)

from neobert_hf.training import NeoBERTTrainingArguments


def _train_capture(tmp_path, name, data, collator, batch, accumulation, masked_only, steps=2):
    capture = GradCapture()
    args = make_args(
        tmp_path / name,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        max_steps=steps,
        learning_rate=0.0,  # weights stay put: every step's gradient is comparable
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        masked_logits_only_loss=masked_only,
        save_final_checkpoint=False,
    )
    trainer = make_trainer(args, train_dataset=data, collator=collator, callbacks=[capture])
    trainer.train()
    return capture.steps, losses(trainer)


@pytest.mark.parametrize("collator", [pad_collate, pack_collate], ids=["padded", "packed"])
@pytest.mark.parametrize("masked_only", [True, False], ids=["masked-logits-only", "full-logits"])
def test_gradient_accumulation_equals_one_large_batch(tmp_path, collator, masked_only):
    data = mlm_samples(16, mask_rates=[0.0, 0.0, 0.5, 0.4, 0.05, 0.02, 0.3, 0.1])
    # the microbatches of 2 samples have very uneven masked-token counts (one has none)
    per_micro = [sum(t != -100 for s in data[i : i + 2] for t in s["labels"]) for i in range(0, 16, 2)]
    assert min(per_micro) == 0 and max(per_micro) >= 5 * max(min(c for c in per_micro if c), 1)

    accumulated, loss_accumulated = _train_capture(tmp_path, "ga4", data, collator, 2, 4, masked_only)
    large, loss_large = _train_capture(tmp_path, "ga1", data, collator, 8, 1, masked_only)
    assert len(accumulated) == len(large) == 2
    for step_a, step_b in zip(accumulated, large):
        assert step_a.keys() == step_b.keys()
        for name in step_b:
            assert relative_error(step_a[name], step_b[name]) < 1e-6, name
    for step in (1, 2):
        assert loss_accumulated[step] == pytest.approx(loss_large[step], rel=1e-6)


def test_both_loss_paths_give_the_same_gradient(tmp_path):
    data = mlm_samples(8)
    sparse, _ = _train_capture(tmp_path, "sparse", data, pad_collate, 4, 2, True, steps=1)
    full, _ = _train_capture(tmp_path, "full", data, pad_collate, 4, 2, False, steps=1)
    for name in full[0]:
        assert relative_error(sparse[0][name], full[0][name]) < 1e-5, name


def test_loss_is_mean_over_masked_tokens_of_the_step(tmp_path):
    data = mlm_samples(8)
    _, logged = _train_capture(tmp_path, "one", data, pad_collate, 4, 2, True, steps=1)
    model = make_model()
    batch = pad_collate(data)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
    assert logged[1] == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("masked_only", [True, False])
def test_step_without_masked_tokens_gives_zero_loss_and_finite_gradients(tmp_path, masked_only):
    data = mlm_samples(8, mask_rates=[0.0])
    grads, logged = _train_capture(tmp_path, "zero", data, pad_collate, 2, 2, masked_only, steps=2)
    assert logged == {1: 0.0, 2: 0.0}
    for step in grads:
        for name, grad in step.items():
            assert torch.isfinite(grad).all(), name
            assert not grad.any(), name


def test_microbatch_without_masked_tokens_keeps_gradients_finite(tmp_path):
    data = mlm_samples(8, mask_rates=[0.0, 0.0, 0.3, 0.3])
    grads, logged = _train_capture(tmp_path, "partial", data, pad_collate, 2, 2, True, steps=2)
    assert all(math.isfinite(v) and v > 0 for v in logged.values())
    assert all(torch.isfinite(g).all() for step in grads for g in step.values())


@pytest.mark.parametrize("masked_only", [True, False])
@pytest.mark.parametrize("collator", [pad_collate, pack_collate], ids=["padded", "packed"])
def test_eval_metrics_equal_a_direct_computation(tmp_path, masked_only, collator):
    eval_data = mlm_samples(10, seed=3)
    args = make_args(tmp_path, per_device_eval_batch_size=4, masked_logits_only_loss=masked_only)
    trainer = make_trainer(args, eval_dataset=eval_data, collator=collator)
    metrics = trainer.evaluate()

    model = trainer.model
    total, count, correct = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, 10, 4):
            batch = pad_collate(eval_data[start : start + 4])
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            selected = batch["labels"] != -100
            total += float(F.cross_entropy(logits[selected].double(), batch["labels"][selected], reduction="sum"))
            count += int(selected.sum())
            correct += int((logits[selected].argmax(-1) == batch["labels"][selected]).sum())
    assert metrics["eval_masked_tokens"] == count
    assert metrics["eval_loss"] == pytest.approx(total / count, rel=1e-5)
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)
    assert metrics["eval_mlm_accuracy"] == pytest.approx(correct / count, abs=1e-12)


def test_eval_max_batches_limits_the_evaluation(tmp_path):
    eval_data = mlm_samples(12, seed=3)
    args = make_args(tmp_path, per_device_eval_batch_size=4, eval_max_batches=2)
    metrics = make_trainer(args, eval_dataset=eval_data).evaluate()
    expected = sum(t != -100 for s in eval_data[:8] for t in s["labels"])
    assert metrics["eval_masked_tokens"] == expected


def test_eval_never_builds_full_logits_on_the_masked_path(tmp_path, monkeypatch):
    shapes = []
    args = make_args(tmp_path)
    trainer = make_trainer(args, eval_dataset=mlm_samples(8, seed=1))
    trainer.model.decoder.register_forward_hook(lambda module, inputs, output: shapes.append(tuple(output.shape)))
    trainer.evaluate()
    assert shapes and all(len(shape) == 2 for shape in shapes)  # (n_masked, V), never (B, S, V)


def test_fp16_is_rejected_for_pretraining(tmp_path):
    with pytest.raises(ValueError, match="fp16 is not supported for pretraining; use bf16"):
        NeoBERTTrainingArguments(output_dir=str(tmp_path), fp16=True)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"label_smoothing_factor": 0.1}, "label_smoothing_factor"),
        ({"qk_clip_alpha": 1.5}, "qk_clip_alpha"),
        ({"qk_clip_threshold": 0.0}, "qk_clip_threshold"),
        ({"qk_clip_interval": 0}, "qk_clip_interval"),
        ({"muon_momentum": 1.0}, "muon_momentum"),
        ({"final_lr_ratio": 2.0}, "final_lr_ratio"),
        ({"final_lr_ratio": 0.1, "lr_scheduler_type": "constant"}, "cosine' or 'linear"),
        ({"eval_max_batches": 0}, "eval_max_batches"),
    ],
)
def test_invalid_arguments_fail_with_a_clear_message(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        NeoBERTTrainingArguments(output_dir=str(tmp_path), **overrides)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_final_lr_ratio_decays_to_the_floor(tmp_path, schedule):
    args = make_args(
        tmp_path, lr_scheduler_type=schedule, final_lr_ratio=0.1, warmup_steps=2, max_steps=10, learning_rate=1e-3
    )
    trainer = make_trainer(args)
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    rates = []
    for _ in range(11):
        rates.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    assert rates[0] == 0.0 and rates[2] == pytest.approx(1e-3)
    assert rates[10] == pytest.approx(1e-4)
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(rates[2:]))  # monotone decay after warmup
    # rebuilding the arguments from their dict keeps the mapping (idempotent)
    again = NeoBERTTrainingArguments(**{**args.to_dict(), "output_dir": str(tmp_path)})
    assert again.lr_scheduler_type == args.lr_scheduler_type and again.lr_scheduler_kwargs == args.lr_scheduler_kwargs
