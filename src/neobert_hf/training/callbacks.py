"""Callbacks of NeoBERT pretraining.

- [`ThroughputMonitor`]: real tokens/s (non-padding), masked tokens/s, token utilisation (real tokens / tokens in the
  batch: the packing or padding efficiency), peak memory, optionally the training MLM accuracy and the split of the
  step time into data wait / forward / backward / optimizer (p50, p95). [`NeoBERTTrainer`] feeds it and merges its
  metrics into the Trainer's training logs, so they reach the progress bar and every `report_to` tracker. It reads
  device counters once per logging step: no extra synchronisation in between (CUDA times come from events).
- [`CompactProgressCallback`] / [`CompactPrinterCallback`]: one readable line per logging step instead of a dict,
  installed when no tracker is on (`report_to none`).
- [`QKClipCallback`]: applies [`~neobert_hf.training.optim.QKClip`] right after the optimizer step.
"""

from __future__ import annotations

import math
import resource
import sys
import time

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..modeling.modeling_neobert import padding_mask_to_bool


_PHASES = ("data", "forward", "backward", "optimizer", "step")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def peak_memory_gb(device: torch.device) -> tuple[str, float]:
    """`("peak_cuda_memory_gb", max allocated)` on CUDA, else `("peak_rss_gb", peak resident set size)`."""
    if device.type == "cuda" and torch.cuda.is_available():
        return "peak_cuda_memory_gb", torch.cuda.max_memory_allocated(device) / 2**30
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return "peak_rss_gb", peak / (2**30 if sys.platform == "darwin" else 2**20)


class _Clock:
    """Marks are `perf_counter()` floats on CPU and recorded CUDA events on CUDA (read at logging time only)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda" and torch.cuda.is_available()

    def mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def elapsed_ms(self, start, end) -> float:
        if self.cuda:
            return start.elapsed_time(end)
        return (end - start) * 1000.0


class ThroughputMonitor(TrainerCallback):
    """Token throughput, utilisation, peak memory and step-time attribution over each logging window.

    The trainer calls [`count`] for every training microbatch, [`record_data_wait`] around the fetch of the batches
    of a step, and [`forward_start`], [`forward_end`], [`backward_end`] inside `training_step`; the callback events
    mark the optimizer step and the step boundaries. [`pop_metrics`] returns the window's metrics and starts a new
    window.

    Args:
        device (`torch.device`): where the batches live.
        pad_token_id (`int`, *optional*): counts `input_ids != pad_token_id` as real tokens when the batch has no
            `attention_mask` (packed batches, or padded ones without a mask).
        log_timing (`bool`): record the step-time split.
        log_accuracy (`bool`): the trainer also reports correct predictions (`mlm_accuracy`).
    """

    def __init__(
        self,
        device: torch.device,
        pad_token_id: int | None = None,
        log_timing: bool = False,
        log_accuracy: bool = False,
    ):
        self.device = device
        self.pad_token_id = pad_token_id
        self.log_timing = log_timing
        self.log_accuracy = log_accuracy
        self.clock = _Clock(device)
        self._reset_window()

    # -- window ---------------------------------------------------------------------------------------------------------

    def _reset_window(self) -> None:
        # real tokens, tokens in the batch, masked tokens, correct predictions
        self._counts = torch.zeros(4, dtype=torch.int64, device=self.device)
        self._window_start = time.perf_counter()
        self._excluded = 0.0
        self._steps: list[dict] = []
        self._current = self._new_step()

    def _new_step(self) -> dict:
        return {"data": 0.0, "forward": [], "backward": [], "optimizer": None, "start": None}

    def exclude(self, seconds: float) -> None:
        """Removes time spent outside training (evaluation, checkpoint saving) from the throughput window."""
        self._excluded += seconds

    # -- feeding --------------------------------------------------------------------------------------------------------

    def count(self, inputs: dict, correct: torch.Tensor | None = None) -> None:
        ids = inputs.get("input_ids")
        labels = inputs.get("labels")
        if ids is None:
            return
        total = torch.tensor(ids.numel(), device=self.device, dtype=torch.int64)
        mask = inputs.get("attention_mask")
        if mask is not None:
            real = padding_mask_to_bool(mask).sum()
        elif self.pad_token_id is not None:
            real = (ids != self.pad_token_id).sum()
        else:
            real = total
        masked = (labels != -100).sum() if labels is not None else torch.zeros((), dtype=torch.int64)
        correct = correct if correct is not None else torch.zeros((), dtype=torch.int64)
        self._counts += torch.stack([real.to(self.device), total, masked.to(self.device), correct.to(self.device)]).to(
            torch.int64
        )

    def record_data_wait(self, seconds: float) -> None:
        if self.log_timing:
            if self._current["start"] is None:
                self._current["start"] = time.perf_counter() - seconds
            self._current["data"] += seconds * 1000.0

    def forward_start(self):
        if self.log_timing:
            if self._current["start"] is None:
                self._current["start"] = time.perf_counter()
            self._forward_mark = self.clock.mark()

    def forward_end(self):
        if self.log_timing:
            self._forward_end_mark = self.clock.mark()
            self._current["forward"].append((self._forward_mark, self._forward_end_mark))

    def backward_end(self):
        if self.log_timing:
            self._current["backward"].append((self._forward_end_mark, self.clock.mark()))
            self._last_backward_end = self._current["backward"][-1][1]

    # -- callback events ------------------------------------------------------------------------------------------------

    def on_train_begin(self, args, state, control, **kwargs):
        self._reset_window()

    def on_optimizer_step(self, args, state, control, **kwargs):
        if self.log_timing and getattr(self, "_last_backward_end", None) is not None:
            # clipping + optimizer.step: from the end of the last backward to now
            self._current["optimizer"] = (self._last_backward_end, self.clock.mark())
            self._last_backward_end = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.log_timing:
            # from the start of the batch fetch to the end of the optimizer step (evaluation and saving excluded)
            start = self._current["start"]
            self._current["step_ms"] = (time.perf_counter() - start) * 1000.0 if start is not None else float("nan")
            self._steps.append(self._current)
        self._current = self._new_step()

    # -- reading --------------------------------------------------------------------------------------------------------

    def pop_metrics(self) -> dict[str, float]:
        """The metrics of the window since the previous call (one device sync; token counts are summed over all
        ranks, so the rates are global; memory is this process's)."""
        counts = self._counts
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            counts = counts.clone()
            torch.distributed.all_reduce(counts)
        real, total, masked, correct = counts.tolist()
        elapsed = max(time.perf_counter() - self._window_start - self._excluded, 1e-9)
        metrics = {
            "tokens_per_second": real / elapsed,
            "masked_tokens_per_second": masked / elapsed,
            "token_utilization": real / total if total else float("nan"),
        }
        if self.log_accuracy:
            metrics["mlm_accuracy"] = correct / masked if masked else 0.0
        name, value = peak_memory_gb(self.device)
        metrics[name] = value
        if self.log_timing and self._steps:
            metrics.update(self._timing_metrics())
        steps, self._steps = self._steps, []
        del steps
        self._counts.zero_()
        self._window_start = time.perf_counter()
        self._excluded = 0.0
        return metrics

    def _timing_metrics(self) -> dict[str, float]:
        if self.clock.cuda:
            torch.cuda.synchronize(self.device)
        series = {phase: [] for phase in _PHASES}
        for step in self._steps:
            series["data"].append(step["data"])
            series["forward"].append(sum(self.clock.elapsed_ms(a, b) for a, b in step["forward"]))
            series["backward"].append(sum(self.clock.elapsed_ms(a, b) for a, b in step["backward"]))
            if step["optimizer"] is not None:
                series["optimizer"].append(self.clock.elapsed_ms(*step["optimizer"]))
            series["step"].append(step.get("step_ms", float("nan")))
        metrics = {}
        for phase, values in series.items():
            if values:
                metrics[f"time_{phase}_ms_p50"] = _percentile(values, 50)
                metrics[f"time_{phase}_ms_p95"] = _percentile(values, 95)
        return metrics


# ---------------------------------------------------------------------------------------------------------------------
# Console
# ---------------------------------------------------------------------------------------------------------------------


def _si(value: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f}{unit}"
    return f"{value:.0f}"


def format_log_line(logs: dict, state) -> str | None:
    """One line for a training or evaluation log; `None` for anything else (printed as a dict)."""
    step = f"step {state.global_step}" + (f"/{state.max_steps}" if state.max_steps else "")
    if "loss" in logs and not any(k.startswith("eval_") for k in logs):
        parts = [step, f"loss {logs['loss']:.4f}"]
        if "learning_rate" in logs:
            parts.append(f"lr {logs['learning_rate']:.2e}")
        if logs.get("grad_norm") is not None:
            parts.append(f"gnorm {float(logs['grad_norm']):.3g}")
        if "mlm_accuracy" in logs:
            parts.append(f"acc {logs['mlm_accuracy']:.3f}")
        if "tokens_per_second" in logs:
            parts.append(f"{_si(logs['tokens_per_second'])} tok/s")
        if "masked_tokens_per_second" in logs:
            parts.append(f"{_si(logs['masked_tokens_per_second'])} masked/s")
        if "token_utilization" in logs and logs["token_utilization"] == logs["token_utilization"]:
            parts.append(f"util {100 * logs['token_utilization']:.1f}%")
        if "document_share" in logs:
            parts.append(f"doc {100 * logs['document_share']:.0f}%")
        if "time_step_ms_p50" in logs:
            split = " ".join(
                f"{short} {logs[f'time_{phase}_ms_p50']:.0f}"
                for phase, short in (("data", "data"), ("forward", "fwd"), ("backward", "bwd"), ("optimizer", "opt"))
                if f"time_{phase}_ms_p50" in logs
            )
            parts.append(f"time {logs['time_step_ms_p50']:.0f}ms p95 {logs['time_step_ms_p95']:.0f} ({split})")
        if "qk_max_logit" in logs:
            parts.append(f"qk max {logs['qk_max_logit']:.1f}")
        for key in ("peak_cuda_memory_gb", "peak_rss_gb"):
            if key in logs:
                parts.append(f"peak {logs[key]:.2f} GB")
        return " | ".join(parts)
    if "eval_loss" in logs:
        parts = [f"eval {step}", f"loss {logs['eval_loss']:.4f}"]
        if "eval_perplexity" in logs:
            parts.append(f"ppl {logs['eval_perplexity']:.2f}")
        if "eval_mlm_accuracy" in logs:
            parts.append(f"acc {logs['eval_mlm_accuracy']:.3f}")
        return " | ".join(parts)
    if "train_runtime" in logs:  # the summary `Trainer.train` logs once training ends
        parts = [f"train: {state.global_step} steps in {float(logs['train_runtime']):.1f} s"]
        if "train_steps_per_second" in logs:
            parts.append(f"{float(logs['train_steps_per_second']):.3g} steps/s")
        if "train_loss" in logs:
            parts.append(f"mean loss {float(logs['train_loss']):.4f}")
        if logs.get("epoch") is not None:
            parts.append(f"epoch {float(logs['epoch']):.3g}")
        return " | ".join(parts)
    return None


class CompactProgressCallback(ProgressCallback):
    """transformers' progress bar, writing one compact line per training/eval log instead of a dict."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        line = format_log_line(logs or {}, state)
        if line is None:
            return super().on_log(args, state, control, logs=logs, **kwargs)
        if state.is_world_process_zero and self.training_bar is not None:
            self.training_bar.write(line)


class CompactPrinterCallback(PrinterCallback):
    """transformers' printer (no progress bar), one compact line per training/eval log."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        line = format_log_line(logs or {}, state)
        if line is None:
            return super().on_log(args, state, control, logs=logs, **kwargs)
        if state.is_local_process_zero:
            print(line, flush=True)


# ---------------------------------------------------------------------------------------------------------------------
# QK-clip
# ---------------------------------------------------------------------------------------------------------------------


class QKClipCallback(TrainerCallback):
    """Runs [`~neobert_hf.training.optim.QKClip.apply`] after the optimizer step on the steps it is due."""

    def __init__(self, qk_clip):
        self.qk_clip = qk_clip

    def on_optimizer_step(self, args, state, control, **kwargs):
        # `global_step` is incremented after this event: the update just applied is number global_step + 1.
        if self.qk_clip.is_due(state.global_step + 1):
            self.qk_clip.apply()


# ---------------------------------------------------------------------------------------------------------------------
# Anomalies and weight norms
# ---------------------------------------------------------------------------------------------------------------------


class NonFiniteGradientError(RuntimeError):
    """A gradient holds NaN or inf before the optimizer step (`detect_anomalies`)."""


def raise_on_nonfinite_gradients(model: torch.nn.Module, step: int) -> None:
    """Raise [`NonFiniteGradientError`] naming the parameters (at most ten) whose gradient holds NaN or inf.

    Called after the backward pass of the last microbatch of optimizer step `step` (`detect_anomalies`): the gradients
    are complete (and, in data-parallel training, the same on every process), and gradient clipping has not yet
    spread one parameter's NaN over all of them through the global norm. Costs one device sync.
    """
    named = [(name, p.grad) for name, p in model.named_parameters() if p.grad is not None]
    if not named:
        return
    finite = torch.stack([torch.isfinite(grad).all() for _, grad in named])
    if bool(finite.all()):
        return
    bad = [name for (name, _), ok in zip(named, finite.tolist()) if not ok]
    shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
    raise NonFiniteGradientError(
        f"Non-finite gradient (NaN or inf) at optimizer step {step} in {len(bad)} parameter(s): {shown}. The update "
        "was not applied and the weights are those of the previous step. Lower the learning rate, check the data of "
        "this step, or resume from the last checkpoint."
    )


class WandbInitCallback(TrainerCallback):
    """Starts the W&B run with the arguments' `wandb_*` settings (project, entity, tags, mode, dir) when training
    begins. transformers' `WandbCallback` starts the run itself with only `WANDB_PROJECT` and the run name, and uses a
    run that is already started: place this callback before it ([`WandbInitCallback.install`])."""

    def __init__(self, init_kwargs: dict):
        self.init_kwargs = init_kwargs

    @classmethod
    def install(cls, trainer) -> None:
        """Insert the callback just before the trainer's `WandbCallback` (nothing when W&B is not reported to or no
        `wandb_*` setting is given, or the arguments have no `wandb_*` fields: not a `WandbArguments`)."""
        kwargs = trainer.args.wandb_init_kwargs() if hasattr(trainer.args, "wandb_init_kwargs") else {}
        callbacks = trainer.callback_handler.callbacks
        index = next((i for i, c in enumerate(callbacks) if type(c).__name__ == "WandbCallback"), None)
        if kwargs and index is not None:
            callbacks.insert(index, cls(kwargs))

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        import wandb

        if wandb.run is None:
            wandb.init(**self.init_kwargs)


def weight_norms(model: torch.nn.Module) -> dict[str, float]:
    """L2 norms of the weights: `weight_norm` over all of them, and `weight_norm/<name>` per kind of parameter, with
    the layer index taken out of the name (`transformer_encoder.3.qkv.weight` counts towards `qkv.weight`)."""
    squares: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        parts = name.split(".")
        digits = [i for i, part in enumerate(parts) if part.isdigit()]
        kind = ".".join(parts[digits[-1] + 1 :]) if digits else ".".join(parts[-2:])
        square = param.detach().float().pow(2).sum()
        squares[kind] = squares[kind] + square if kind in squares else square
    if not squares:
        return {}
    values = torch.stack(list(squares.values())).cpu()  # one transfer
    metrics = {"weight_norm": float(values.sum().sqrt())}
    metrics.update({f"weight_norm/{kind}": float(v.sqrt()) for kind, v in zip(squares, values)})
    return metrics


__all__ = [
    "NonFiniteGradientError",
    "WandbInitCallback",
    "raise_on_nonfinite_gradients",
    "weight_norms",
    "CompactPrinterCallback",
    "CompactProgressCallback",
    "QKClipCallback",
    "ThroughputMonitor",
    "format_log_line",
    "peak_memory_gb",
]
