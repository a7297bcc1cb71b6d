# Copyright 2026 the neobert-hf authors. Licensed under the Apache License, Version 2.0.
"""Encoder forward+backward throughput in real tokens/s: packed (padding-free) vs padded, same documents.

Documents have long-tailed lengths (lognormal, median ~120, clipped to 512, seeded). Every step holds the same real
tokens in both layouts:

- packed: one `(1, T)` row in `DataCollatorWithFlattening` format (restarting `position_ids`, `cu_seq_lens_q/k`,
  `max_length_q/k`); attention is the model's exact packed CPU kernel, one unmasked call per sequence
  (`per_sequence_attention_forward`; GPUs and compiled graphs use the single padded view instead);
- padded: the stock `(B, S)` batch padded to its longest document, with a 0/1 `attention_mask`.

Both use the same weights and the same attention implementation (`sdpa`, and `eager` unless `--implementations`
says otherwise). The loss is the sum of `last_hidden_state` over real tokens, which drives a full backward. Pad tokens
never count as throughput. Variants are timed interleaved after warm-up; the table gives the median of the repeats.

    python benchmarks/bench_packed_attention.py
    python benchmarks/bench_packed_attention.py --tokens-per-step 8192 --repeats 5 --json results/attention.json
    python benchmarks/bench_packed_attention.py --profile   # where the time goes, per variant
"""

import argparse
import copy
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    add_model_arguments,
    build_config,
    describe_config,
    describe_machine,
    format_table,
    lognormal_lengths,
    machine_info,
    median,
    packed_batch,
    padded_batch,
    random_documents,
    time_interleaved,
    write_json,
)

# Self-time buckets for `--profile`. Linear layers lower to `aten::mm`; attention matmuls (eager) to `aten::bmm`.
PROFILE_CATEGORIES = {
    "linear matmuls (mm)": ("aten::mm", "aten::addmm"),
    "attention kernel": ("scaled_dot_product", "flash_attention", "aten::bmm", "softmax"),
    "packed gather/scatter": (
        "aten::index",
        "aten::_index_put_impl_",
        "aten::index_put",
        "aten::fill_",
        "aten::zero_",
    ),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    data = parser.add_argument_group("data")
    data.add_argument("--tokens-per-step", type=int, default=4096, help="real tokens per step (both layouts)")
    data.add_argument("--num-batches", type=int, default=2, help="distinct steps (document sets) per timed repeat")
    data.add_argument("--median-length", type=float, default=120.0, help="median document length (lognormal)")
    data.add_argument("--sigma", type=float, default=0.8, help="lognormal sigma of the document lengths")
    data.add_argument("--max-length", type=int, default=512, help="documents are clipped to this length")
    data.add_argument("--min-length", type=int, default=8, help="documents are at least this long")
    run = parser.add_argument_group("run")
    run.add_argument(
        "--implementations", nargs="+", default=["sdpa", "eager"], choices=["sdpa", "eager"], help="attention"
    )
    run.add_argument("--warmup", type=int, default=1, help="untimed repeats before timing")
    run.add_argument("--repeats", type=int, default=3, help="timed repeats (the table shows their median)")
    run.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    run.add_argument("--seed", type=int, default=0, help="seeds the weights and the documents")
    run.add_argument("--goal", type=float, default=1.5, help="target speed-up of packed over padded (sdpa)")
    run.add_argument("--profile", action="store_true", help="profile one step per variant and break down self time")
    run.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    return parser.parse_args(argv)


def train_step(model: torch.nn.Module, batch: dict):
    """Forward + backward with loss = sum of the real tokens' final hidden states (pad rows excluded)."""
    model.zero_grad(set_to_none=True)
    hidden = model(**batch).last_hidden_state  # (1, T, H) packed, (B, S, H) padded
    mask = batch.get("attention_mask")
    loss = hidden.sum() if mask is None else (hidden * mask[..., None]).sum()
    loss.backward()


def max_output_difference(model: torch.nn.Module, packed: dict, padded: dict) -> float:
    """Largest |packed - padded| over the real tokens' final hidden states: the two layouts compute the same thing."""
    with torch.no_grad():
        packed_out = model(**packed).last_hidden_state[0]  # (T, H)
        padded_out = model(**padded).last_hidden_state[padded["attention_mask"].bool()]  # (T, H)
    return float((packed_out - padded_out).abs().max())


def profile_step(model: torch.nn.Module, batch: dict) -> dict[str, float]:
    """Milliseconds of self CPU time of one step, bucketed by `PROFILE_CATEGORIES` (the rest is "other")."""
    from torch.profiler import ProfilerActivity, profile

    train_step(model, batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step(model, batch)
    totals = {name: 0.0 for name in PROFILE_CATEGORIES}
    totals["other (norms, RoPE, SwiGLU, copies)"] = 0.0
    for event in prof.key_averages():
        category = next(
            (name for name, keys in PROFILE_CATEGORIES.items() if any(k in event.key for k in keys)),
            "other (norms, RoPE, SwiGLU, copies)",
        )
        totals[category] += event.self_cpu_time_total / 1e3
    return totals


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    from neobert_hf import NeoBERTModel

    config = build_config(
        args.hidden_size, args.num_layers, args.num_heads, args.ffn_size, args.vocab_size, args.max_length
    )
    reference = NeoBERTModel(config)
    models = {}
    for implementation in args.implementations:
        model = NeoBERTModel(copy.deepcopy(config))
        model.set_attn_implementation(implementation)
        model.load_state_dict(reference.state_dict())  # the same weights for every variant
        models[implementation] = model.train()

    generator = torch.Generator().manual_seed(args.seed)
    steps = []
    for _ in range(args.num_batches):
        lengths = lognormal_lengths(
            args.tokens_per_step, args.median_length, args.sigma, args.max_length, args.min_length, generator
        )
        documents = random_documents(lengths, args.vocab_size, generator)
        steps.append({"lengths": lengths, "packed": packed_batch(documents), "padded": padded_batch(documents)})
    real_tokens = sum(sum(s["lengths"]) for s in steps)
    padded_tokens = sum(s["padded"]["input_ids"].numel() for s in steps)
    all_lengths = sorted(length for s in steps for length in s["lengths"])

    machine = machine_info()
    print(f"machine: {describe_machine(machine)}")
    print(f"model:   {describe_config(config)}")
    print(
        f"data:    {args.num_batches} steps x {args.tokens_per_step} real tokens; {len(all_lengths)} documents, "
        f"lognormal(median {args.median_length:g}, sigma {args.sigma:g}) clipped to [{args.min_length}, "
        f"{args.max_length}]: median {all_lengths[len(all_lengths) // 2]}, "
        f"p90 {all_lengths[int(0.9 * (len(all_lengths) - 1))]}, max {all_lengths[-1]}"
    )
    for i, s in enumerate(steps):
        batch, longest = s["padded"]["input_ids"].shape
        print(
            f"         step {i}: {len(s['lengths'])} documents, padded [{batch}, {longest}] = {batch * longest} slots, "
            f"padding {1 - sum(s['lengths']) / (batch * longest):.1%}"
        )
    differences = {
        name: max_output_difference(model, steps[0]["packed"], steps[0]["padded"]) for name, model in models.items()
    }
    print(
        "check:   max |packed - padded| of last_hidden_state: "
        + ", ".join(f"{k} {v:.1e}" for k, v in differences.items())
    )

    def run(model, layout):
        def function():
            for s in steps:
                train_step(model, s[layout])

        return function

    variants = {
        f"{layout} {name}": run(model, layout) for name, model in models.items() for layout in ("packed", "padded")
    }
    print(f"timing:  {args.warmup} warm-up + {args.repeats} timed repeats per variant, interleaved ...", flush=True)
    seconds, cpu_seconds = time_interleaved(variants, args.warmup, args.repeats)

    results = {}
    for variant, values in seconds.items():
        layout, implementation = variant.split()
        results[variant] = {
            "layout": layout,
            "attention": implementation,
            "wall_seconds_per_repeat": values,
            "cpu_seconds_per_repeat": cpu_seconds[variant],
            "median_seconds_per_step": median(values) / args.num_batches,
            "median_cpu_seconds_per_step": median(cpu_seconds[variant]) / args.num_batches,
            "real_tokens_per_second": real_tokens / median(values),
            "computed_tokens_per_step": (real_tokens if layout == "packed" else padded_tokens) / args.num_batches,
        }
    rows = []
    for variant, r in results.items():
        padded_twin = results[f"padded {r['attention']}"]
        r["speedup_vs_padded"] = r["real_tokens_per_second"] / padded_twin["real_tokens_per_second"]
        r["cpu_speedup_vs_padded"] = padded_twin["median_cpu_seconds_per_step"] / r["median_cpu_seconds_per_step"]
        spread = [v / args.num_batches for v in r["wall_seconds_per_repeat"]]
        rows.append(
            [
                variant,
                f"{real_tokens // args.num_batches}",
                f"{r['computed_tokens_per_step']:.0f}",
                f"{1 - real_tokens / padded_tokens:.1%}" if r["layout"] == "padded" else "0.0%",
                f"{r['median_seconds_per_step']:.2f} ({min(spread):.2f}-{max(spread):.2f})",
                f"{r['real_tokens_per_second']:.0f}",
                f"{r['speedup_vs_padded']:.2f}x",
                f"{r['median_cpu_seconds_per_step']:.2f}",
                f"{r['cpu_speedup_vs_padded']:.2f}x",
            ]
        )
    print()
    print(
        format_table(
            [
                "variant",
                "real tok/step",
                "computed tok/step",
                "padding",
                "wall s/step median (min-max)",
                "real tok/s",
                "vs padded",
                "CPU s/step",
                "vs padded (CPU)",
            ],
            rows,
        )
    )
    print(
        f"load:    1-min load average {os.getloadavg()[0]:.2f} after timing ({machine.get('load_average_1m')} before)"
    )

    goal = None
    if "sdpa" in models:
        speedup = results["packed sdpa"]["speedup_vs_padded"]
        cpu_speedup = results["packed sdpa"]["cpu_speedup_vs_padded"]
        goal = {"target": args.goal, "speedup": speedup, "cpu_speedup": cpu_speedup, "met": speedup >= args.goal}
        verdict = "MET" if goal["met"] else "NOT met"
        print(
            f"\ngoal: packed >= {args.goal:g}x padded real tokens/s (sdpa): {verdict} ({speedup:.2f}x wall clock; "
            f"{cpu_speedup:.2f}x in CPU time)"
        )

    profiles = {}
    if args.profile:
        print("\nprofile: self CPU ms of one step (step 0), by category")
        profiles = {
            variant: profile_step(models[variant.split()[1]], steps[0][variant.split()[0]]) for variant in variants
        }
        categories = list(next(iter(profiles.values())))
        rows = [[c] + [f"{profiles[v][c]:.0f}" for v in variants] for c in categories]
        rows.append(["total"] + [f"{sum(profiles[v].values()):.0f}" for v in variants])
        print(format_table(["category"] + list(variants), rows))

    payload = {
        "benchmark": "packed_attention",
        "args": vars(args),
        "machine": machine,
        "model": describe_config(config),
        "steps": [
            {
                "documents": len(s["lengths"]),
                "real_tokens": sum(s["lengths"]),
                "padded_shape": list(s["padded"]["input_ids"].shape),
                "padding_fraction": 1 - sum(s["lengths"]) / s["padded"]["input_ids"].numel(),
                "max_length": max(s["lengths"]),
            }
            for s in steps
        ],
        "padding_fraction": 1 - real_tokens / padded_tokens,
        "max_abs_difference_packed_vs_padded": differences,
        "results": results,
        "goal": goal,
        "profile_ms": profiles,
    }
    write_json(args.json, payload)
    return payload


if __name__ == "__main__":
    main()
