# Copyright 2026 the neobert-hf authors. Licensed under the Apache License, Version 2.0.
"""Shared pieces of the benchmark scripts: model size flags, document lengths, packed/padded batches, timing, tables.

Not part of the package: the scripts import it from their own folder (`python benchmarks/<script>.py`).
"""

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# ---------------------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------------------


def add_model_arguments(parser: argparse.ArgumentParser, hidden_size=256, num_layers=4, num_heads=4, ffn_size=1024):
    group = parser.add_argument_group("model")
    group.add_argument("--hidden-size", type=int, default=hidden_size, help="residual width H")
    group.add_argument("--num-layers", type=int, default=num_layers, help="encoder blocks")
    group.add_argument("--num-heads", type=int, default=num_heads, help="attention heads (head dim = H / heads)")
    group.add_argument("--ffn-size", type=int, default=ffn_size, help="SwiGLU gate/up width F (a multiple of 8)")
    group.add_argument("--vocab-size", type=int, default=1024, help="small on purpose: the embedding is not measured")
    return group


def build_config(hidden_size: int, num_layers: int, num_heads: int, ffn_size: int, vocab_size: int, max_length: int):
    """A NeoBERT config whose SwiGLU width is exactly `ffn_size` (the config derives it from `intermediate_size`)."""
    from neobert_hf import NeoBERTConfig

    config = NeoBERTConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=math.ceil(ffn_size * 3 / 2),  # F = 8 * ceil(int(2 * I / 3) / 8)
        max_position_embeddings=max_length,
        pad_token_id=0,
        dropout=0.0,
    )
    if config.ffn_size != ffn_size:
        raise SystemExit(f"--ffn-size {ffn_size} is not reachable (got F={config.ffn_size}); use a multiple of 8.")
    return config


def describe_config(config) -> str:
    params = (
        config.num_hidden_layers
        * (4 * config.hidden_size**2 + 3 * config.hidden_size * config.ffn_size + 2 * config.hidden_size)
        / 1e6
    )
    return (
        f"H={config.hidden_size}, {config.num_hidden_layers} layers, {config.num_attention_heads} heads "
        f"(Dh={config.head_dim}), SwiGLU F={config.ffn_size}, fp32, {params:.1f}M encoder parameters"
    )


# ---------------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------------


def lognormal_lengths(
    total_tokens: int, median: float, sigma: float, max_length: int, min_length: int, generator: torch.Generator
) -> list[int]:
    """Document lengths drawn from a lognormal (clipped to `[min_length, max_length]`) until they hold exactly
    `total_tokens` tokens; the last document is cut to fit."""
    lengths: list[int] = []
    remaining = total_tokens
    while remaining > 0:
        draw = math.exp(math.log(median) + sigma * torch.randn((), generator=generator).item())
        length = min(max(round(draw), min_length), max_length, remaining)
        lengths.append(length)
        remaining -= length
    return lengths


def random_documents(lengths: Sequence[int], vocab_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    return [torch.randint(5, vocab_size, (length,), generator=generator) for length in lengths]


def packed_batch(documents: Sequence[torch.Tensor]) -> dict:
    """transformers' `DataCollatorWithFlattening` format: `(1, T)` ids, restarting positions, int32 cu_seq_lens."""
    lengths = torch.tensor([len(d) for d in documents])
    cu = torch.nn.functional.pad(torch.cumsum(lengths, 0), (1, 0)).to(torch.int32)
    longest = int(lengths.max())
    return {
        "input_ids": torch.cat(list(documents))[None],  # (1, T)
        "position_ids": torch.cat([torch.arange(len(d)) for d in documents])[None],  # (1, T)
        "cu_seq_lens_q": cu,
        "cu_seq_lens_k": cu,
        "max_length_q": longest,
        "max_length_k": longest,
    }


def padded_batch(documents: Sequence[torch.Tensor], pad_id: int = 0) -> dict:
    """Right-padded to the longest document: `(B, S)` ids and a 0/1 attention mask."""
    longest = max(len(d) for d in documents)
    ids = torch.full((len(documents), longest), pad_id, dtype=torch.long)
    mask = torch.zeros(len(documents), longest, dtype=torch.long)
    for i, document in enumerate(documents):
        ids[i, : len(document)] = document
        mask[i, : len(document)] = 1
    return {"input_ids": ids, "attention_mask": mask}


# ---------------------------------------------------------------------------------------------------------------------
# Timing and reporting
# ---------------------------------------------------------------------------------------------------------------------


def time_interleaved(
    functions: dict[str, Callable[[], None]], warmup: int, repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall-clock and process CPU seconds per call of each function.

    Warm-up calls are not recorded; the timed repeats are interleaved (`a b c a b c ...`) so that a slow spell of a
    shared machine hits every variant alike. CPU time (all threads of this process) is the steadier clock when other
    processes compete for the cores: it does not count the time this process waits to be scheduled.
    """
    for _ in range(warmup):
        for function in functions.values():
            function()
    wall: dict[str, list[float]] = {name: [] for name in functions}
    cpu: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            function()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    import transformers

    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    info["thread_env"] = {
        k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS") if k in os.environ
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    return info


def describe_machine(info: dict) -> str:
    load = f", 1-min load {info['load_average_1m']}" if "load_average_1m" in info else ""
    load += "".join(f", {k}={v}" for k, v in info.get("thread_env", {}).items())
    return (
        f"{info['cpu']}, {info['cpu_count']} CPUs, {info['torch_threads']} torch threads, torch {info['torch']}, "
        f"transformers {info['transformers']}{load}"
    )


def format_table(headers: Sequence[str], rows: Sequence[Sequence], align: str | None = None) -> str:
    """A GitHub-markdown table (readable as plain text too). `align`: one `l`/`r` per column (default: first left)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(row):
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])


def write_json(path: str | None, payload: dict):
    if not path:
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
    print(f"wrote {path}")
