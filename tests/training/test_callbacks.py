"""Throughput and timing logs: real/masked tokens, utilisation, peak memory, the step-time split, training accuracy, and
the compact console line when no tracker is on."""

import pytest
import torch
from helpers.training import make_args, make_trainer, mlm_samples, pack_collate, pad_collate
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from neobert_hf.training import CompactPrinterCallback, CompactProgressCallback, ThroughputMonitor
from neobert_hf.training.callbacks import format_log_line


def _train_logs(trainer):
    return [e for e in trainer.state.log_history if "loss" in e and "train_runtime" not in e]


@pytest.mark.parametrize("collator", [pad_collate, pack_collate], ids=["padded", "packed"])
def test_training_logs_carry_throughput_utilisation_and_memory(tmp_path, collator):
    data = mlm_samples(16)
    args = make_args(tmp_path, max_steps=4, logging_steps=2, per_device_train_batch_size=4, log_train_accuracy=True)
    trainer = make_trainer(args, train_dataset=data, collator=collator)
    trainer.train()
    logs = _train_logs(trainer)
    assert [e["step"] for e in logs] == [2, 4]
    for window, entry in zip((data[:8], data[8:]), logs):
        real = sum(len(s["input_ids"]) for s in window)
        if collator is pad_collate:
            total = sum(4 * max(len(s["input_ids"]) for s in window[i : i + 4]) for i in (0, 4))
        else:
            total = real
        assert entry["token_utilization"] == pytest.approx(real / total)
        assert entry["tokens_per_second"] > 0 and entry["masked_tokens_per_second"] > 0
        assert entry["tokens_per_second"] / entry["masked_tokens_per_second"] == pytest.approx(
            real / sum(t != -100 for s in window for t in s["labels"]), rel=1e-6
        )
        assert entry["peak_rss_gb"] > 0
        assert 0.0 <= entry["mlm_accuracy"] <= 1.0
        assert not any(k.startswith("time_") for k in entry)  # log_timing is off


def test_log_timing_adds_the_step_time_split(tmp_path):
    args = make_args(tmp_path, max_steps=4, logging_steps=2, gradient_accumulation_steps=2, log_timing=True)
    trainer = make_trainer(args)
    trainer.train()
    for entry in _train_logs(trainer):
        for phase in ("data", "forward", "backward", "optimizer", "step"):
            assert (
                entry[f"time_{phase}_ms_p50"] >= 0 and entry[f"time_{phase}_ms_p95"] >= entry[f"time_{phase}_ms_p50"]
            )
        parts = sum(entry[f"time_{p}_ms_p50"] for p in ("data", "forward", "backward", "optimizer"))
        assert parts <= entry["time_step_ms_p95"] * 1.05 + 1.0


def test_monitor_counts_real_tokens_from_mask_or_padding():
    monitor = ThroughputMonitor(torch.device("cpu"), pad_token_id=0)
    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    labels = torch.tensor([[5, -100, -100, -100], [-100, 9, -100, -100]])
    monitor.count({"input_ids": ids, "labels": labels})  # pad ids
    monitor.count({"input_ids": ids, "labels": labels, "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])})
    assert monitor._counts.tolist() == [5 + 7, 16, 4, 0]
    metrics = monitor.pop_metrics()
    assert metrics["token_utilization"] == pytest.approx(12 / 16)
    assert monitor._counts.tolist() == [0, 0, 0, 0]


def test_console_shows_one_compact_line_when_no_tracker_is_on(tmp_path, capsys):
    args = make_args(tmp_path, max_steps=2, logging_steps=1, eval_strategy="steps", eval_steps=2)
    trainer = make_trainer(args, eval_dataset=mlm_samples(4, seed=5))
    names = {type(cb) for cb in trainer.callback_handler.callbacks}
    assert CompactPrinterCallback in names and PrinterCallback not in names
    trainer.train()
    out = capsys.readouterr().out
    assert "step 1/2 | loss " in out and " tok/s | " in out and " masked/s | " in out
    assert "eval step 2/2 | loss " in out and "| ppl " in out and "| acc " in out

    with_bar = make_trainer(make_args(tmp_path, disable_tqdm=False))
    names = {type(cb) for cb in with_bar.callback_handler.callbacks}
    assert CompactProgressCallback in names and ProgressCallback not in names


def test_format_log_line_leaves_other_logs_alone():
    class State:
        global_step, max_steps = 3, 10

    line = format_log_line(
        {"loss": 2.0, "learning_rate": 1e-4, "grad_norm": 0.5, "tokens_per_second": 12345.0, "peak_rss_gb": 1.5},
        State(),
    )
    assert line == "step 3/10 | loss 2.0000 | lr 1.00e-04 | gnorm 0.5 | 12.3k tok/s | peak 1.50 GB"
    summary = {"train_runtime": 155.46, "train_samples_per_second": 10.29, "train_steps_per_second": 10.29,
               "total_flos": 0.0, "train_loss": 5.7471, "epoch": 1.0}  # fmt: skip
    assert format_log_line(summary, State()) == "train: 3 steps in 155.5 s | 10.3 steps/s | mean loss 5.7471 | epoch 1"
    assert format_log_line({"custom_metric": 1.0}, State()) is None  # printed as a dict by the stock printer
