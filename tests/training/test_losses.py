"""NeoBERTTrainer loss and evaluation: gradient accumulation == one large batch (both loss paths, padded and packed),
zero-masked batches, eval metrics against a direct computation, argument validation."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from helpers.training import (
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
from neobert_hf.training.losses import MaskedLMLoss, MaskedLMTrainingOutput, install_masked_lm_loss


def _train_capture(tmp_path, name, data, collator, batch, accumulation, masked_only, steps=2, **extra):
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
        **extra,
    )
    trainer = make_trainer(args, train_dataset=data, collator=collator, callbacks=[capture])
    trainer.train()
    return capture.steps, losses(trainer)


@pytest.mark.integration
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
        ({"optimizer": "adam", "optim": "adafactor"}, "optim set with optimizer=adam"),
        ({"optimizer": "muonclip", "optim_args": "foo=1"}, "optim_args set with optimizer=muonclip"),
        ({"optimizer": "adam", "optim_target_modules": ["qkv"]}, "optim_target_modules set with optimizer=adam"),
        ({"loss_chunk_size": 0}, "loss_chunk_size must be >= 1"),
        ({"loss_chunk_size": 8, "masked_logits_only_loss": False}, "masked_logits_only_loss=false"),
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


# ---------------------------------------------------------------------------------------------------------------------
# loss_chunk_size: the masked-token loss without the masked rows' logits
# ---------------------------------------------------------------------------------------------------------------------


def _training_call(model, chunk_size=None, **inputs):
    """One training forward through the MLM training loss (as NeoBERTTrainer.compute_loss makes it)."""
    install_masked_lm_loss(model)
    return model(**inputs, sparse_prediction=True, training_loss=MaskedLMLoss(chunk_size=chunk_size))


@pytest.mark.parametrize("chunk", [1, 3, 1000])
@pytest.mark.parametrize("bias", [True, False])
def test_chunked_loss_equals_the_logits_loss(chunk, bias):
    """Loss, masked_correct and the gradients of every parameter (tied decoder/embedding included) and of the input
    embeddings equal those of the path that builds the logits, in float64."""
    results = []
    for loss_chunk_size in (None, chunk):
        model = make_model(decoder_bias=bias).double()
        batch = pad_collate(mlm_samples(6, mask_rates=[0.3, 0.0, 0.5]))
        embeds = model.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_()
        out = _training_call(
            model,
            loss_chunk_size,
            inputs_embeds=embeds,
            attention_mask=batch["attention_mask"],
            labels=batch["labels"],
            num_items_in_batch=torch.tensor(50),
        )
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        grads["inputs_embeds"] = embeds.grad
        assert isinstance(out, MaskedLMTrainingOutput)
        if loss_chunk_size is None:
            selected = batch["labels"] != -100
            correct = (out.logits.argmax(-1) == batch["labels"][selected]).sum()
        else:
            assert out.logits is None
            correct = out.masked_correct
        results.append((out.loss.detach(), correct, grads))
    (loss_a, correct_a, grads_a), (loss_b, correct_b, grads_b) = results
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-12, atol=1e-12)
    assert int(correct_a) == int(correct_b)
    assert grads_a.keys() == grads_b.keys()
    assert {"decoder.weight", "model.encoder.weight"} & grads_a.keys()  # the decoder (tied or not) is compared
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-10, atol=1e-12, msg=name)


def test_training_loss_equals_the_models_own_loss_bitwise():
    """The torch training loss and the model's own (transformers' ForMaskedLMLoss) agree bit for bit in fp32."""
    model = make_model()
    batch = pad_collate(mlm_samples(6, mask_rates=[0.3, 0.0, 0.5]))
    own = model(**batch, sparse_prediction=True, num_items_in_batch=torch.tensor(17))
    training = _training_call(model, None, **batch, num_items_in_batch=torch.tensor(17))
    assert torch.equal(own.loss, training.loss) and torch.equal(own.logits, training.logits)
    model.train(False)  # a call without training_loss is the model's own forward, whatever the mode
    assert type(model(**batch, sparse_prediction=True)) is not MaskedLMTrainingOutput


def test_chunked_loss_without_masked_tokens_is_zero_and_connected():
    model = make_model()
    batch = pad_collate(mlm_samples(2, mask_rates=[0.0]))
    out = _training_call(model, 4, **batch)
    assert out.loss.item() == 0.0 and out.loss.requires_grad and int(out.masked_correct) == 0
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_chunked_loss_never_builds_more_than_one_chunk_of_logits(monkeypatch):
    """The largest tensor with a vocabulary dimension built by the chunked head has loss_chunk_size rows."""
    model = make_model()
    batch = pad_collate(mlm_samples(8, mask_rates=[0.5]))
    n_masked = int((batch["labels"] != -100).sum())
    vocab = model.config.vocab_size
    rows_seen = []
    real_linear = F.linear

    def spy(input, weight, bias=None):
        out = real_linear(input, weight, bias)
        if out.shape[-1] == vocab:
            rows_seen.append(out.numel() // vocab)
        return out

    monkeypatch.setattr(F, "linear", spy)
    _training_call(model, 5, **batch).loss.backward()
    assert n_masked > 20 and rows_seen and max(rows_seen) == 5


def test_chunked_loss_errors():
    model = make_model()
    batch = pad_collate(mlm_samples(2))
    install_masked_lm_loss(model)
    with pytest.raises(ValueError, match="need sparse_prediction=True"):
        model(**batch, sparse_prediction=False, training_loss=MaskedLMLoss(chunk_size=4))
    with pytest.raises(ValueError, match="positive number of rows"):
        MaskedLMLoss(chunk_size=0)
    # a subclass that keeps nn.Linear's forward (e.g. FSDP2's FSDPLinear) is fine; one that changes it is refused
    wrapped = type("FSDPLinear", (torch.nn.Linear,), {})(model.config.hidden_size, model.config.vocab_size)
    model.decoder = wrapped
    assert _training_call(model, 4, **batch).loss.isfinite()
    converted = type("Converted", (torch.nn.Linear,), {"forward": lambda self, x: 2 * torch.nn.Linear.forward(self, x)})
    model.decoder = converted(model.config.hidden_size, model.config.vocab_size)
    with pytest.raises(ValueError, match="decoder is a Converted"):
        _training_call(model, 4, **batch)


@pytest.mark.integration
@pytest.mark.parametrize("collator", [pad_collate, pack_collate], ids=["padded", "packed"])
def test_chunked_loss_gradient_accumulation_equals_one_large_batch(tmp_path, collator):
    """With loss_chunk_size the trainer's steps (GA=4 x 2 vs GA=1 x 8, uneven masked counts) match each other and
    the unchunked run, and the logged training accuracy is the unchunked one."""
    data = mlm_samples(16, mask_rates=[0.0, 0.0, 0.5, 0.4, 0.05, 0.02, 0.3, 0.1])
    accumulated, loss_accumulated = _train_capture(
        tmp_path, "ga4", data, collator, 2, 4, True, loss_chunk_size=3, log_train_accuracy=True
    )
    large, loss_large = _train_capture(tmp_path, "ga1", data, collator, 8, 1, True, loss_chunk_size=3)
    plain, loss_plain = _train_capture(tmp_path, "plain", data, collator, 2, 4, True, log_train_accuracy=True)
    for step_a, step_b, step_c in zip(accumulated, large, plain):
        for name in step_b:
            assert relative_error(step_a[name], step_b[name]) < 1e-6, name
            assert relative_error(step_a[name], step_c[name]) < 1e-6, name
    for step in (1, 2):
        assert loss_accumulated[step] == pytest.approx(loss_large[step], rel=1e-6)
        assert loss_accumulated[step] == pytest.approx(loss_plain[step], rel=1e-6)
