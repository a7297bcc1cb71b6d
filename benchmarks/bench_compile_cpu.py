# Copyright 2026 the neobert-hf authors. Licensed under the Apache License, Version 2.0.
"""Training throughput with and without `torch_compile` (inductor) on the CPU, on the tiny pretraining recipe.

Two workers, each its own subprocess running exactly the code of `neobert-hf pretrain` (`cli.pretrain.parse_args` on
`recipes/tiny/pretrain.yaml` -> `prepare_pretraining` -> `build_trainer` -> `train`) on the same data (the shipped
corpus, packed 2,048-token microbatches, the same seed, so the same batches in the same order):

- `eager`: the recipe as it is;
- `compiled`: the recipe with `--torch_compile true --torch_compile_backend inductor`, from an empty inductor cache.

Each worker first trains `--warmup-steps` optimizer steps: the compiled worker compiles during them (its first
compilation and the one recompilation of the second step or so). Their wall time is reported as it is, and the
compile time is the compiled worker's warm-up time minus the eager worker's. Then `--rounds` rounds: in each round
every worker in turn trains `--steps-per-round` steps while the other waits, blocked on a pipe, so a slow spell of a
shared machine hits both alike. Throughput is real (non-pad) tokens per second over the timed rounds only (data
loading, forward, backward and optimizer step included; compilation excluded), median over rounds, and the same in
process CPU time. The compiled worker also reports the graphs dynamo compiled: after the warm-up, and any added
during the timed rounds (there should be none).

    python benchmarks/bench_compile_cpu.py                          # ~5 min on 2 idle cores
    python benchmarks/bench_compile_cpu.py --rounds 8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import describe_machine, format_table, machine_info, median, write_json  # noqa: E402


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "@@BENCH "
MODES = ("eager", "compiled")


# ---------------------------------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------------------------------


def _send(kind: str, **payload):
    sys.__stdout__.write(PREFIX + json.dumps({"kind": kind, **payload}) + "\n")
    sys.__stdout__.flush()


def _wait() -> str:
    return sys.stdin.readline().strip() or "STOP"


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


class _Meter:
    """Counts the real (non-pad) and slot tokens of every collated batch (the loader runs in this process)."""

    def __init__(self, collator, pad_token_id: int):
        self.collator, self.pad_token_id = collator, pad_token_id
        self.real = self.slots = 0

    def __call__(self, features):
        batch = self.collator(features)
        self.real += int((batch["input_ids"] != self.pad_token_id).sum())
        self.slots += batch["input_ids"].numel()
        return batch


def _callback(meter: _Meter, opts):
    from transformers import TrainerCallback

    class Rounds(TrainerCallback):
        def __init__(self):
            self.step = 0
            self.start = time.perf_counter()
            self.start_cpu = time.process_time()
            self.step_start = self.start

        def _go(self, control):
            if _wait() == "STOP":
                control.should_training_stop = True
            meter.real = meter.slots = 0
            self.start, self.start_cpu = time.perf_counter(), time.process_time()

        def on_step_begin(self, args, state, control, **kwargs):
            self.step_start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.step += 1
            if self.step == 1:
                _send("first_step", seconds=time.perf_counter() - self.step_start, graphs=_graphs())
            if self.step == opts.warmup_steps:
                _send("warm", seconds=time.perf_counter() - self.start, graphs=_graphs())
                self._go(control)
            elif self.step > opts.warmup_steps and (self.step - opts.warmup_steps) % opts.steps_per_round == 0:
                _send(
                    "round",
                    seconds=time.perf_counter() - self.start,
                    cpu_seconds=time.process_time() - self.start_cpu,
                    steps=opts.steps_per_round,
                    real=meter.real,
                    slots=meter.slots,
                    graphs=_graphs(),
                )
                if self.step < opts.warmup_steps + opts.steps_per_round * opts.rounds:
                    self._go(control)

    return Rounds()


def worker(opts) -> None:
    import torch

    torch.set_num_threads(opts.threads)
    output_dir = tempfile.mkdtemp(prefix=f"bench-compile-{opts.worker}-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(output_dir, "inductor-cache")  # cold: compile time counts

    from neobert_hf.cli.pretrain import parse_args
    from neobert_hf.training.pretrain import prepare_pretraining

    max_steps = opts.warmup_steps + opts.steps_per_round * opts.rounds
    argv = [
        "--config", os.path.join(ROOT, opts.recipe),
        "--dataset_name", os.path.join(ROOT, "data/corpus"), "--tokenizer_name", os.path.join(ROOT, "data/tokenizer"),
        "--train_split", opts.train_split, "--max_steps", str(max_steps), "--output_dir", output_dir,
        "--save_strategy", "no", "--save_final_checkpoint", "false", "--eval_strategy", "no",
        "--logging_steps", "100000", "--seed", str(opts.seed), "--preprocessing_num_workers", "1",
    ]  # fmt: skip
    if opts.worker == "compiled":
        argv += ["--torch_compile", "true", "--torch_compile_backend", opts.backend]
    setup = prepare_pretraining(*parse_args(argv))
    meter = _Meter(setup.collator, setup.tokenizer.pad_token_id)
    setup.collator = meter
    trainer = setup.build_trainer()
    config = setup.model.config
    _send(
        "info",
        model=f"{config.num_hidden_layers}x{config.hidden_size}, {config.num_attention_heads} heads, "
        f"{sum(p.numel() for p in setup.model.parameters()) / 1e6:.1f}M params, {config._attn_implementation}",
        batch=f"packed 1 x {setup.data_args.microbatch_tokens}, max_seq_length {setup.data_args.max_seq_length}",
        loss="masked-logits-only" if setup.training_args.masked_logits_only_loss else "full logits",
    )
    trainer.add_callback(_callback(meter, opts))
    trainer.train()
    _send("done", graphs=_graphs())


# ---------------------------------------------------------------------------------------------------------------------
# Driver side
# ---------------------------------------------------------------------------------------------------------------------


class _Worker:
    def __init__(self, name: str, opts, log_dir: str):
        argv = [sys.executable, os.path.abspath(__file__), "--worker", name]
        for key in ("recipe", "train_split", "backend", "threads", "warmup_steps", "steps_per_round", "rounds", "seed"):
            argv += ["--" + key.replace("_", "-"), str(getattr(opts, key))]
        env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.name = name
        self.log = open(os.path.join(log_dir, f"{name}.log"), "w")
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env, cwd=ROOT
        )
        self.messages: dict[str, list] = {}

    def receive(self, kind: str) -> dict:
        for line in self.process.stdout:
            if line.startswith(PREFIX):
                message = json.loads(line[len(PREFIX) :])
                self.messages.setdefault(message["kind"], []).append(message)
                if message["kind"] == kind:
                    return message
            else:
                self.log.write(line)
        self.log.flush()
        raise SystemExit(f"worker {self.name} exited (rc {self.process.wait()}) before '{kind}'; see {self.log.name}")

    def send(self, command: str):
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()


def driver(opts) -> dict:
    info = machine_info()
    info["torch_threads"] = opts.threads
    log_dir = tempfile.mkdtemp(prefix="bench-compile-logs-")
    print(f"machine: {describe_machine(info)}")
    print(f"worker logs: {log_dir}")
    workers = {}
    for name in MODES:  # set up and warm up one at a time, so that they do not compete
        start = time.perf_counter()
        workers[name] = w = _Worker(name, opts, log_dir)
        w.receive("warm")
        print(f"  {name}: set up and warmed up in {time.perf_counter() - start:.0f} s", flush=True)
    load_before = os.getloadavg()[0]
    for index in range(opts.rounds):
        for name, w in workers.items():
            w.send("GO")
            r = w.receive("round")
            print(f"  round {index + 1}/{opts.rounds} {name}: {r['seconds']:.1f} s, {r['real'] / r['seconds']:,.0f} "
                  "tok/s", flush=True)  # fmt: skip
    load_after = os.getloadavg()[0]
    results = {}
    for name, w in workers.items():
        done = w.receive("done")
        w.process.wait()
        rounds, warm, first = w.messages["round"], w.messages["warm"][0], w.messages["first_step"][0]
        results[name] = {
            **{k: v for k, v in w.messages["info"][0].items() if k != "kind"},
            "first_step_seconds": first["seconds"],
            "warmup_seconds": warm["seconds"],
            "graphs_after_first_step": first["graphs"],
            "graphs_after_warmup": warm["graphs"],
            "graphs_at_end": done["graphs"],
            "tokens_per_second": [r["real"] / r["seconds"] for r in rounds],
            "tokens_per_cpu_second": [r["real"] / r["cpu_seconds"] for r in rounds],
            "real_tokens_per_step": sum(r["real"] for r in rounds) / sum(r["steps"] for r in rounds),
            "slots_per_step": sum(r["slots"] for r in rounds) / sum(r["steps"] for r in rounds),
            "rounds": rounds,
        }
    return {
        "machine": info,
        "load_1m_before_timing": load_before,
        "load_1m_after_timing": load_after,
        "options": {k: v for k, v in vars(opts).items() if k not in ("json", "worker")},
        "results": results,
    }


def report(payload: dict, opts) -> None:
    eager, compiled = payload["results"]["eager"], payload["results"]["compiled"]
    print(f"\n{eager['model']}; {eager['batch']}; {eager['loss']}; {opts.threads} threads")
    print(f"1-min load average: {payload['load_1m_before_timing']:.1f} before timing, "
          f"{payload['load_1m_after_timing']:.1f} after")  # fmt: skip
    rows = []
    for name, r in (("eager", eager), (f"compiled ({opts.backend})", compiled)):
        tps = r["tokens_per_second"]
        rows.append([
            name,
            f"{median(tps):,.0f} ({min(tps):,.0f}-{max(tps):,.0f})",
            f"{median(r['tokens_per_cpu_second']):,.0f}",
            f"{median(tps) / median(eager['tokens_per_second']):.2f}x",
            f"{median(r['tokens_per_cpu_second']) / median(eager['tokens_per_cpu_second']):.2f}x",
            f"{r['first_step_seconds']:.1f}",
            f"{r['warmup_seconds']:.1f}",
        ])  # fmt: skip
    headers = ["mode", "real tok/s median (min-max)", "real tok/CPU-s", "vs eager (wall)", "vs eager (CPU)",
               "step 1 s", f"warm-up ({opts.warmup_steps} steps) s"]  # fmt: skip
    print(format_table(headers, rows))
    compile_seconds = compiled["warmup_seconds"] - eager["warmup_seconds"]
    payload["compile_seconds"] = compile_seconds
    payload["speedup"] = median(compiled["tokens_per_second"]) / median(eager["tokens_per_second"])
    print(f"compile time (compiled warm-up - eager warm-up, cold inductor cache): {compile_seconds:.1f} s")
    added = compiled["graphs_at_end"] - compiled["graphs_after_warmup"]
    print(f"graphs compiled: {compiled['graphs_after_first_step']} at step 1, {compiled['graphs_after_warmup']} after "
          f"the warm-up, {added} more during the timed rounds")  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="recipes/tiny/pretrain.yaml", help="a packed pretraining recipe")
    parser.add_argument("--train-split", default="train[:20000]", help="documents tokenized (enough for every step)")
    parser.add_argument("--backend", default="inductor", help="torch_compile_backend of the compiled worker")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--warmup-steps", type=int, default=10, help="untimed steps (compilation happens here)")
    parser.add_argument("--steps-per-round", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.worker:
        return worker(opts)
    payload = driver(opts)
    report(payload, opts)
    write_json(opts.json, payload)


if __name__ == "__main__":
    main()
