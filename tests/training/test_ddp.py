"""Two CPU processes (DDP over gloo, launched with torchrun): gradient accumulation across ranks gives exactly the
gradient of one large batch, with the Trainer's `average_tokens_across_devices` token count."""

import os
import textwrap

import pytest
import torch
from helpers.distributed import torchrun
from helpers.training import GradCapture, make_args, make_trainer, mlm_samples, pad_collate, relative_error


SCRIPT = textwrap.dedent(
    """
    import os, sys, torch
    sys.path.insert(0, {tests!r})
    from helpers.training import GradCapture, make_args, make_trainer, mlm_samples, pad_collate

    data = mlm_samples(32, mask_rates={rates!r})
    capture = GradCapture()
    args = make_args(
        {output!r}, per_device_train_batch_size=2, gradient_accumulation_steps=2, max_steps=2, learning_rate=0.0,
        lr_scheduler_type="constant", max_grad_norm=0.0, save_final_checkpoint=False, ddp_backend="gloo",
        masked_logits_only_loss={masked_only!r},
    )
    trainer = make_trainer(args, train_dataset=data, collator=pad_collate, callbacks=[capture])
    trainer.train()
    if int(os.environ["RANK"]) == 0:
        logs = [e for e in trainer.state.log_history if "loss" in e and "train_runtime" not in e]
        torch.save({{"grads": capture.steps, "logs": logs}}, {result!r})
    """
)
RATES = [0.0, 0.0, 0.5, 0.4, 0.05, 0.02, 0.3, 0.1]


@pytest.mark.integration
@pytest.mark.parametrize(
    "masked_only", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["masked-logits-only", "full-logits"]
)
def test_ddp_with_accumulation_equals_one_large_batch(tmp_path, masked_only):
    script = tmp_path / "ddp_run.py"
    result = tmp_path / "ddp.pt"
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script.write_text(
        SCRIPT.format(
            tests=tests, rates=RATES, output=str(tmp_path / "ddp"), masked_only=masked_only, result=str(result)
        )
    )
    completed = torchrun(script)
    assert completed.returncode == 0, completed.stderr[-4000:]
    distributed = torch.load(result)

    # one process, one microbatch of 8 = the 2 ranks x 2 accumulation steps x 2 samples of each optimizer step
    capture = GradCapture()
    args = make_args(
        tmp_path / "single",
        per_device_train_batch_size=8,
        max_steps=2,
        learning_rate=0.0,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        save_final_checkpoint=False,
        masked_logits_only_loss=masked_only,
    )
    trainer = make_trainer(
        args, train_dataset=mlm_samples(32, mask_rates=RATES), collator=pad_collate, callbacks=[capture]
    )
    trainer.train()
    single_logs = [e for e in trainer.state.log_history if "loss" in e and "train_runtime" not in e]

    assert len(distributed["grads"]) == len(capture.steps) == 2
    for step_a, step_b in zip(distributed["grads"], capture.steps):
        for name in step_b:
            assert relative_error(step_a[name], step_b[name]) < 1e-6, name
    for a, b in zip(distributed["logs"], single_logs):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        # throughput counts are summed over the ranks
        assert a["token_utilization"] <= 1.0


RESUME_SCRIPT = textwrap.dedent(
    """
    import os, sys, torch
    sys.path.insert(0, {tests!r})
    from helpers.training import StatefulStream, losses, make_args, make_model, make_trainer, pad_collate

    args = make_args(
        {output!r}, max_steps=6, save_strategy="steps", save_steps=3, gradient_accumulation_steps=2,
        per_device_train_batch_size=3, ddp_backend="gloo",
    )
    trainer = make_trainer(args, model=make_model(dropout=0.1), train_dataset=StatefulStream(), collator=pad_collate)
    trainer.train(resume_from_checkpoint={resume!r})
    if int(os.environ["RANK"]) == 0:
        torch.save({{"losses": losses(trainer), "weights": trainer.model.state_dict()}}, {result!r})
    """
)


@pytest.mark.slow
def test_ddp_resume_of_a_stateful_stream_is_exact(tmp_path):
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results = {}
    for name, resume in (("straight", None), ("resumed", 3)):
        if resume is not None:
            import shutil

            shutil.copytree(tmp_path / "straight" / "checkpoints" / "3", tmp_path / name / "checkpoints" / "3")
        script = tmp_path / f"{name}.py"
        script.write_text(
            RESUME_SCRIPT.format(
                tests=tests, output=str(tmp_path / name), resume=resume, result=str(tmp_path / f"{name}.pt")
            )
        )
        completed = torchrun(script)
        assert completed.returncode == 0, completed.stderr[-4000:]
        results[name] = torch.load(tmp_path / f"{name}.pt")
    for step in (4, 5, 6):
        assert results["resumed"]["losses"][step] == results["straight"]["losses"][step]
    for key, value in results["straight"]["weights"].items():
        assert torch.equal(value, results["resumed"]["weights"][key]), key
