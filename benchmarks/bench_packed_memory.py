# Copyright 2026 the neobert-hf authors. Licensed under the Apache License, Version 2.0.
"""Peak memory of a packed forward+backward at growing packed lengths T: linear in T, no `T x T` mask.

For each model preset and each T, a fresh subprocess builds the model, runs one small warm-up step (so parameter
gradients, kernels and thread pools exist before the baseline is read), reads its resident set size (RSS), then runs
one forward+backward on a packed row of T tokens made of `--document-length`-token documents, and reports the peak RSS
increase (the high-water mark `VmHWM`, reset just before the step through `/proc/self/clear_refs`, minus the
baseline; `ru_maxrss` where it cannot be reset). Bytes/token staying flat shows linear growth
(peak(T=65536) / peak(T=4096) ~ 16; a dense mask would make it ~256). For contrast the table gives, analytically,
what a dense `T x T` fp32 score matrix would take for one head and for all heads of one layer (never allocated), next
to the `n x L x L` scores of the model's padded view (`n` documents of at most `L` tokens), which only the eager
kernel materialises and which grow linearly in T.

Linux only (reads `/proc/self/statm` and `/proc/self/status`).

    python benchmarks/bench_packed_memory.py
    python benchmarks/bench_packed_memory.py --presets small --tokens 4096 16384 65536 --json results/memory.json
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    build_config,
    describe_config,
    describe_machine,
    format_table,
    machine_info,
    packed_batch,
    random_documents,
    write_json,
)

# name: (hidden size, layers, heads, SwiGLU width). `small` matches bench_packed_attention.py's default model.
PRESETS = {
    "small": (256, 4, 4, 1024),
    "tiny": (64, 2, 4, 256),
}
MiB = 2**20


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--presets", nargs="+", default=["small"], choices=sorted(PRESETS), help="model sizes to measure"
    )
    parser.add_argument("--tokens", nargs="+", type=int, default=[4096, 16384, 65536], help="packed lengths T")
    parser.add_argument("--document-length", type=int, default=512, help="tokens per packed document")
    parser.add_argument("--implementation", default="sdpa", choices=["sdpa", "eager"], help="attention")
    parser.add_argument("--vocab-size", type=int, default=1024, help="small on purpose: the embedding is not measured")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0, help="seeds the weights and the documents")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed to each subprocess")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    parser.add_argument("--worker", metavar="PRESET:T", help=argparse.SUPPRESS)  # internal: one measurement
    return parser.parse_args(argv)


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """This process's RSS high-water mark: `VmHWM` (resettable, see `reset_peak_rss`), else `ru_maxrss`."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))  # kB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def reset_peak_rss() -> bool:
    """Resets `VmHWM` to the current RSS, so that an earlier peak (imports, warm-up) cannot hide the measured one."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def packed_documents(total: int, document_length: int, vocab_size: int, generator: torch.Generator) -> dict:
    lengths = [document_length] * (total // document_length)
    if total % document_length:
        lengths.append(total % document_length)
    return packed_batch(random_documents(lengths, vocab_size, generator))


def train_step(model: torch.nn.Module, batch: dict):
    model.zero_grad(set_to_none=False)  # keep the gradient buffers allocated: they belong to the baseline
    model(**batch).last_hidden_state.sum().backward()


def worker(args: argparse.Namespace) -> dict:
    """One measurement in this (fresh) process; prints a `RESULT {json}` line."""
    preset, total = args.worker.split(":")
    total = int(total)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    from neobert_hf import NeoBERTModel

    config = build_config(*PRESETS[preset], args.vocab_size, max(args.document_length, 8))
    config._attn_implementation = args.implementation
    model = NeoBERTModel(config).train()
    generator = torch.Generator().manual_seed(args.seed)
    warmup = packed_documents(
        2 * min(args.document_length, 64), min(args.document_length, 64), args.vocab_size, generator
    )
    batch = packed_documents(total, args.document_length, args.vocab_size, generator)
    train_step(model, warmup)

    reset = reset_peak_rss()
    baseline = current_rss()
    peak_before = peak_rss()
    if peak_before > baseline + 16 * MiB:
        print(
            f"warning: the RSS high-water mark ({peak_before / MiB:.0f} MiB) is above the baseline "
            f"({baseline / MiB:.0f} MiB) and could not be reset; a smaller peak than that would be missed",
            file=sys.stderr,
        )
    start = time.perf_counter()
    train_step(model, batch)
    seconds = time.perf_counter() - start
    peak = peak_rss()
    result = {
        "preset": preset,
        "model": describe_config(config),
        "tokens": total,
        "documents": batch["cu_seq_lens_q"].numel() - 1,
        "baseline_rss_bytes": baseline,
        "peak_rss_before_bytes": peak_before,
        "peak_reset": reset,
        "peak_rss_bytes": peak,
        "peak_increase_bytes": peak - baseline,
        "seconds": seconds,
        "num_heads": config.num_attention_heads,
    }
    print("RESULT " + json.dumps(result), flush=True)
    return result


def measure(args: argparse.Namespace, preset: str, total: int) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", f"{preset}:{total}"]
    command += ["--document-length", str(args.document_length), "--implementation", args.implementation]
    command += ["--vocab-size", str(args.vocab_size), "--threads", str(args.threads), "--seed", str(args.seed)]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=args.timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"worker {preset}:{total} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def human(nbytes: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", MiB), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes:.0f} B"


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    torch.set_num_threads(args.threads)
    machine = machine_info()
    print(f"machine: {describe_machine(machine)}")
    print(
        f"data:    packed rows of T tokens = T / {args.document_length} documents of {args.document_length} tokens; "
        f"attention {args.implementation}; one forward+backward per fresh subprocess"
    )
    results, summaries = [], {}
    for preset in args.presets:
        config = build_config(*PRESETS[preset], args.vocab_size, args.document_length)
        print(f"model {preset}: {describe_config(config)}", flush=True)
        rows = []
        for total in sorted(args.tokens):
            r = measure(args, preset, total)
            results.append(r)
            first = next(x for x in results if x["preset"] == preset)
            dense_head = 4 * total**2  # fp32 scores of one head
            rows.append(
                [
                    f"{total}",
                    f"{r['documents']}",
                    f"{r['peak_increase_bytes'] / MiB:.0f}",
                    f"{r['peak_increase_bytes'] / total / 1024:.1f}",
                    f"{r['peak_increase_bytes'] / first['peak_increase_bytes']:.1f}x ({total / first['tokens']:.0f}x)",
                    f"{r['seconds']:.1f}",
                    human(4 * total * min(total, args.document_length)),
                    human(dense_head),
                    human(dense_head * config.num_attention_heads),
                ]
            )
            print(f"  T={total}: +{r['peak_increase_bytes'] / MiB:.0f} MiB in {r['seconds']:.1f}s", flush=True)
        print()
        print(
            format_table(
                [
                    "T tokens",
                    "docs",
                    "peak RSS +MiB",
                    "KiB/token",
                    "vs smallest T (T ratio)",
                    "fwd+bwd s (1st call)",
                    "padded-view n*L*L fp32, 1 head",
                    "dense TxT fp32, 1 head",
                    f"dense, {config.num_attention_heads} heads",
                ],
                rows,
            )
        )
        mine = [x for x in results if x["preset"] == preset]
        if len(mine) > 1:
            growth = mine[-1]["peak_increase_bytes"] / mine[0]["peak_increase_bytes"]
            ratio = mine[-1]["tokens"] / mine[0]["tokens"]
            linear = growth <= 1.5 * ratio
            summaries[preset] = {"growth": growth, "token_ratio": ratio, "linear": linear}
            print(
                f"\n{preset}: peak(T={mine[-1]['tokens']}) / peak(T={mine[0]['tokens']}) = {growth:.1f} "
                f"(linear: {ratio:.0f}, quadratic: {ratio**2:.0f}) -> {'linear' if linear else 'NOT linear'}\n"
            )
    payload = {
        "benchmark": "packed_memory",
        "args": vars(args),
        "machine": machine,
        "results": results,
        "summary": summaries,
    }
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
