# Copyright 2026 the neobert-hf authors. Licensed under the Apache License, Version 2.0.
"""The MLM loss head alone: masked-logits-only vs full logits, forward+backward time and peak memory.

Hidden states `(B, S, H)` (B=8, S=512, H=768, fp32, requires grad) and labels with `--mask-fraction` 15% of the
positions set, the rest -100; the decoder is `nn.Linear(H, V=30522)`.

- `masked`: what `NeoBERTForMaskedLM` does with `sparse_prediction` (the `NeoBERTTrainer` default): `nonzero` of the
  labels, `index_select` of those rows, project only them, `neobert_hf.training.losses.masked_lm_loss` (the
  trainer's MLM loss: cross-entropy summed in fp32 / count).
- `chunked`: the same selection, then the loss `--chunk-size` rows at a time without ever holding the masked rows'
  logits (`MaskedLMLoss(chunk_size=N)`, the trainer's `loss_chunk_size`; gradients are formed chunk by
  chunk in the forward pass, so nothing is computed twice).
- `full`: project all `B*S` rows to `(B, S, V)` logits, the same `masked_lm_loss` (cross-entropy with
  `ignore_index=-100`): the stock `BertForMaskedLM` head.

Time: `--warmup` untimed then `--repeats` timed forward+backward calls, interleaved across variants in one process;
median. Memory: one fresh subprocess per variant and repeat: baseline RSS after building the inputs and the decoder
(and one warm-up call of a 1-row problem, for the thread pools) with the high-water mark reset
(`/proc/self/clear_refs`), then the high-water mark `VmHWM` after one forward+backward;
the table reports the peak minus baseline (the head's working memory: logits, their gradient, softmax buffers).

    python benchmarks/bench_loss_head.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import describe_machine, format_table, machine_info, median  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))


def build(opts):
    import torch

    torch.manual_seed(opts.seed)
    hidden = torch.randn(opts.batch, opts.length, opts.hidden_size, requires_grad=True)
    labels = torch.full((opts.batch, opts.length), -100, dtype=torch.long)
    n = opts.batch * opts.length
    chosen = torch.randperm(n)[: round(opts.mask_fraction * n)]
    labels.view(-1)[chosen] = torch.randint(0, opts.vocab_size, (len(chosen),))
    decoder = torch.nn.Linear(opts.hidden_size, opts.vocab_size)
    return hidden, labels, decoder


def step(variant, hidden, labels, decoder, chunk_size=256):
    from neobert_hf.training.losses import MaskedLMLoss, masked_lm_loss

    h, y = hidden, labels
    if variant in ("masked", "chunked"):  # the row selection of NeoBERTForMaskedLM.forward (sparse_prediction)
        y = labels.reshape(-1)
        selected = __import__("torch").nonzero(y != -100, as_tuple=False).reshape(-1)
        h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, selected)
        y = y.index_select(0, selected)
    if variant == "chunked":  # the trainer's loss with loss_chunk_size
        loss = masked_lm_loss(h, y, decoder, loss=MaskedLMLoss(chunk_size=chunk_size)).loss
    else:
        loss = masked_lm_loss(h, y, decoder).loss
    loss.backward()
    hidden.grad = None
    decoder.zero_grad(set_to_none=True)
    return loss


def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def vm_hwm_kib():
    """The process's RSS high-water mark (`VmHWM`), which `clear_refs` 5 resets. (`ru_maxrss` is not reset by it
    on every kernel: it also keeps the signal struct's maximum, so it can report the import-time peak.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status: the memory measurement needs Linux")


def memory_worker(opts):
    import torch

    torch.set_num_threads(opts.threads)
    hidden, labels, decoder = build(opts)
    small = torch.full_like(labels, -100)
    small.view(-1)[0] = 1
    step("masked", hidden, small, decoder)  # thread pools, allocator warm-up: a 1-row problem
    # The process peak so far (imports, building the inputs) can exceed the head's own working set: reset the
    # high-water mark (Linux clear_refs 5 resets VmHWM, which ru_maxrss reports) before the measured step.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = rss_kib()
    before = vm_hwm_kib()
    step(opts.memory_worker, hidden, labels, decoder, opts.chunk_size)
    peak = vm_hwm_kib()
    print(json.dumps({"baseline_kib": base, "peak_kib": peak, "peak_before_kib": before}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--hidden-size", type=int, default=768)
    parser.add_argument("--vocab-size", type=int, default=30522)
    parser.add_argument("--mask-fraction", type=float, default=0.15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--memory-repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-size", type=int, default=256, help="rows per chunk of the `chunked` variant")
    parser.add_argument("--json")
    parser.add_argument("--memory-worker", choices=("masked", "chunked", "full"), help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.memory_worker:
        return memory_worker(opts)

    import torch

    torch.set_num_threads(opts.threads)
    info = machine_info()
    print(f"machine: {describe_machine(info)}")
    n = opts.batch * opts.length
    print(f"head: {opts.batch} x {opts.length} = {n} rows, H={opts.hidden_size}, V={opts.vocab_size}, "
          f"{round(opts.mask_fraction * n)} masked ({opts.mask_fraction:.0%}), fp32, forward+backward")
    hidden, labels, decoder = build(opts)
    # same loss value: the masked path is exact
    variants = ("masked", "chunked", "full")
    losses = {v: step(v, hidden, labels, decoder, opts.chunk_size).item() for v in variants}
    for _ in range(opts.warmup):
        for v in variants:
            step(v, hidden, labels, decoder, opts.chunk_size)
    wall = {v: [] for v in variants}
    cpu = {v: [] for v in variants}
    load_before = os.getloadavg()[0]
    for _ in range(opts.repeats):
        for v in variants:
            start, start_cpu = time.perf_counter(), time.process_time()
            step(v, hidden, labels, decoder, opts.chunk_size)
            wall[v].append(time.perf_counter() - start)
            cpu[v].append(time.process_time() - start_cpu)
    memory = {v: [] for v in variants}
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for _ in range(opts.memory_repeats):
        for v in variants:
            argv_worker = [sys.executable, os.path.abspath(__file__), "--memory-worker", v]
            for key in ("batch", "length", "hidden_size", "vocab_size", "mask_fraction", "threads", "seed", "chunk_size"):
                argv_worker += ["--" + key.replace("_", "-"), str(getattr(opts, key))]
            out = subprocess.run(argv_worker, capture_output=True, text=True, env=env, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            memory[v].append((r["peak_kib"] - r["baseline_kib"]) / 1024)
    load_after = os.getloadavg()[0]
    print(f"1-min load average: {load_before:.1f} before timing, {load_after:.1f} after")
    rows = []
    for v in variants:
        rows.append([v, f"{median(wall[v]) * 1000:,.1f} ({min(wall[v]) * 1000:,.0f}-{max(wall[v]) * 1000:,.0f})",
                     f"{median(cpu[v]) * 1000:,.1f}", f"{median(memory[v]):,.1f}", f"{losses[v]:.5f}"])
    print(format_table(["variant", "fwd+bwd ms median (min-max)", "CPU ms", "peak - baseline MiB", "loss"], rows))
    analytic_full = n * opts.vocab_size * 4 / 2**20
    print(f"analytic fp32 (B*S, V) logits: {analytic_full:,.0f} MiB per copy (logits, log-softmax, gradient)")
    ratios = {}
    for v in ("masked", "chunked"):
        speed = median(wall["full"]) / median(wall[v])
        speed_cpu = median(cpu["full"]) / median(cpu[v])
        mem = median(memory["full"]) / max(median(memory[v]), 1e-9)
        ratios[v] = {"speedup": speed, "speedup_cpu": speed_cpu, "memory_ratio": mem}
        print(f"{v} vs full: {speed:.2f}x faster wall ({speed_cpu:.2f}x CPU) -> goal >= 5x "
              f"{'met' if speed >= 5 else 'NOT met'}; {mem:.2f}x less memory -> goal >= 8x "
              f"{'met' if mem >= 8 else 'NOT met'}")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump({"machine": info, "options": vars(opts), "wall_s": wall, "cpu_s": cpu, "memory_mib": memory,
                       "losses": losses, "ratios": ratios,
                       "load_1m": [load_before, load_after]}, f, indent=1)
        print(f"wrote {opts.json}")


if __name__ == "__main__":
    main()
