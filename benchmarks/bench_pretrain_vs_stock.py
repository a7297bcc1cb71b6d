# Copyright 2026 the neobert-hf authors. Licensed under the Apache License, Version 2.0.
"""MLM pretraining throughput and peak RSS: `neobert-hf pretrain` vs the stock HF ways, plus MFU of ours.

Contenders, each in its own long-lived subprocess (so its `ru_maxrss` is its own), all on the shipped corpus
(`data/corpus`, tokenized with `data/tokenizer`; WordNet glosses + Python docs: median ~29 tokens, p99 ~340, long
documents cut at 512), same model size (H=256, 4 layers, 4 heads, intermediate_size 1024, fp32, CPU):

- `ours`: exactly the code of `neobert-hf pretrain` (`cli.pretrain.parse_args` on `recipes/tiny/pretrain.yaml` with
  size/batch overrides -> `prepare_pretraining` -> `build_trainer` -> `train`): `NeoBERTTrainer`, packed
  `MicrobatchDataset` of `tokens_per_batch` 4096, masked-logits-only loss.
- `stock`: `BertForMaskedLM` + `Trainer` + `DataCollatorForLanguageModeling` (padded to the longest row of the
  batch), rows per batch chosen so that a batch holds ~4096 real tokens on average.
- `modernbert`: `ModernBertForMaskedLM(sparse_prediction=True)` + `Trainer`, same batches as `stock`.
- `matmul`: an fp32 `n x n @ n x n` loop at the same thread count: the machine's matmul peak for the MFU.

The driver runs warm-up steps in every worker, then `--rounds` rounds; in each round every worker in turn trains
`--steps-per-round` optimizer steps (data loading and optimizer included) while the others wait, blocked on a pipe:
timings are interleaved, so a slow spell of a shared machine hits every contender alike. Reported: median real
(non-pad) tokens/s over the rounds, peak RSS, and the ratios against the goals of issue #3.

    python benchmarks/bench_pretrain_vs_stock.py                       # all contenders, ~5-10 min on 2 loaded cores
    python benchmarks/bench_pretrain_vs_stock.py --contenders ours matmul   # MFU only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import describe_machine, format_table, machine_info, median  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "@@BENCH "
CONTENDERS = ("ours", "stock", "modernbert", "matmul")


# ---------------------------------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------------------------------


def _send(kind: str, **payload):
    sys.__stdout__.write(PREFIX + json.dumps({"kind": kind, **payload}) + "\n")
    sys.__stdout__.flush()


def _wait() -> str:
    line = sys.stdin.readline().strip()
    return line or "STOP"


def _rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _current_rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


class _Meter:
    """Counts the real/masked tokens and the FLOPs of every collated batch (the dataloader runs in this process)."""

    def __init__(self, collator, pad_token_id: int, flops_fn=None):
        self.collator, self.pad_token_id, self.flops_fn = collator, pad_token_id, flops_fn
        self.reset()

    def reset(self):
        self.real = self.masked = self.slots = 0
        self.flops = 0.0

    def __call__(self, features):
        batch = self.collator(features)
        ids = batch["input_ids"]
        real = int((ids != self.pad_token_id).sum()) if "attention_mask" not in batch else int(batch["attention_mask"].sum())
        masked = int((batch["labels"] != -100).sum())
        self.real += real
        self.masked += masked
        self.slots += ids.numel()
        if self.flops_fn is not None:
            self.flops += self.flops_fn(batch, real, masked)
        return batch


def _chunk_callback(meter: _Meter, warmup: int, steps_per_round: int, rounds: int):
    from transformers import TrainerCallback

    class Chunks(TrainerCallback):
        def __init__(self):
            self.step = 0
            self.start = self.start_cpu = None

        def _go(self, control):
            if _wait() == "STOP":
                control.should_training_stop = True
            meter.reset()
            self.start, self.start_cpu = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            self.step += 1
            if self.step == warmup:
                _send("warm", rss_kib=_current_rss_kib(), maxrss_kib=_rss_kib())
                self._go(control)
            elif self.step > warmup and (self.step - warmup) % steps_per_round == 0:
                _send(
                    "chunk",
                    seconds=time.perf_counter() - self.start,
                    cpu_seconds=time.process_time() - self.start_cpu,
                    steps=steps_per_round,
                    real=meter.real,
                    masked=meter.masked,
                    slots=meter.slots,
                    flops=meter.flops,
                )
                if self.step < warmup + steps_per_round * rounds:
                    self._go(control)

    return Chunks()


def _hf_documents(tokenizer, max_length: int, num_documents: int, seed: int):
    """Tokenized documents of the shipped corpus (a seeded random subset), cut at `max_length` like a stock script."""
    import gzip
    import random

    with gzip.open(os.path.join(ROOT, "data/corpus/train.jsonl.gz"), "rt") as f:
        texts = [json.loads(line)["text"] for line in f]
    random.Random(seed).shuffle(texts)
    encoded = tokenizer(texts[:num_documents], truncation=True, max_length=max_length)["input_ids"]
    return [{"input_ids": ids} for ids in encoded if len(ids) > 2]


def _training_args(output_dir: str, batch_size: int, max_steps: int, seed: int):
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=batch_size,
        max_steps=max_steps,
        learning_rate=5e-4,
        use_cpu=True,
        save_strategy="no",
        eval_strategy="no",
        logging_steps=10_000,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        seed=seed,
    )


def _nonembedding_params(model, names=("embed", "decoder", "lm_head", "predictions", "head")) -> int:
    """Parameters without the token embedding (NeoBERT's is `model.encoder`, a lookup, not a matmul) and the head."""
    embedding = model.get_input_embeddings().weight
    return sum(
        p.numel() for n, p in model.named_parameters() if p is not embedding and not any(k in n for k in names)
    )


def worker(opts) -> None:
    import torch

    torch.set_num_threads(opts.threads)
    max_steps = opts.warmup_steps + opts.steps_per_round * opts.rounds
    output_dir = tempfile.mkdtemp(prefix=f"bench-{opts.worker}-")

    if opts.worker == "matmul":
        n = opts.matmul_size
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        _send("warm", rss_kib=_current_rss_kib(), maxrss_kib=_rss_kib())
        for _ in range(opts.rounds):
            if _wait() == "STOP":
                break
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(opts.matmul_repeats):
                torch.mm(a, b)
            seconds = time.perf_counter() - start
            _send("chunk", seconds=seconds, cpu_seconds=time.process_time() - start_cpu,
                  flops=2.0 * n**3 * opts.matmul_repeats, real=0, masked=0, slots=0, steps=0)
        _send("done", maxrss_kib=_rss_kib())
        return

    if opts.worker == "ours":
        from neobert_hf.cli.pretrain import parse_args
        from neobert_hf.training.pretrain import prepare_pretraining

        argv = [
            "--config", os.path.join(ROOT, "recipes/tiny/pretrain.yaml"),
            "--hidden_size", str(opts.hidden_size), "--num_hidden_layers", str(opts.num_layers),
            "--num_attention_heads", str(opts.num_heads), "--intermediate_size", str(opts.intermediate_size),
            "--max_seq_length", str(opts.max_length), "--max_position_embeddings", str(opts.max_length),
            "--tokens_per_batch", str(opts.tokens_per_step), "--mlm_probability", str(opts.mlm_probability),
            "--dataset_name", os.path.join(ROOT, "data/corpus"), "--tokenizer_name", os.path.join(ROOT, "data/tokenizer"),
            "--max_steps", str(max_steps), "--output_dir", output_dir, "--save_strategy", "no",
            "--eval_strategy", "no", "--logging_steps", "10000", "--warmup_steps", "1", "--seed", str(opts.seed),
        ]
        model_args, data_args, training_args, precision_args = parse_args(argv)
        setup = prepare_pretraining(model_args, data_args, training_args, precision_args)
        config = setup.model.config
        layers, hidden = config.num_hidden_layers, config.hidden_size
        n_linear = _nonembedding_params(setup.model)

        def flops(batch, real, masked):
            cu = batch.get("cu_seq_lens_q")
            lengths = (cu[1:] - cu[:-1]).tolist() if cu is not None else [real]
            return 6.0 * n_linear * real + 12.0 * layers * hidden * sum(l * l for l in lengths) + 6.0 * hidden * config.vocab_size * masked

        meter = _Meter(setup.collator, setup.tokenizer.pad_token_id, flops)
        setup.collator = meter
        trainer = setup.build_trainer()
        info = dict(model=f"NeoBERTForMaskedLM {setup.model.config._attn_implementation}",
                    params=sum(p.numel() for p in setup.model.parameters()), nonembedding_params=n_linear,
                    batch=f"packed 1 x {data_args.microbatch_tokens}", vocab=config.vocab_size,
                    ffn=config.ffn_size)
    else:
        from transformers import AutoTokenizer, DataCollatorForLanguageModeling, Trainer, set_seed

        tokenizer = AutoTokenizer.from_pretrained(os.path.join(ROOT, "data/tokenizer"))
        documents = _hf_documents(tokenizer, opts.max_length, opts.num_documents, opts.seed)
        mean_length = sum(len(d["input_ids"]) for d in documents) / len(documents)
        batch_size = max(1, round(opts.tokens_per_step / mean_length))
        set_seed(opts.seed)
        if opts.worker == "stock":
            from transformers import BertConfig, BertForMaskedLM

            config = BertConfig(
                vocab_size=len(tokenizer), hidden_size=opts.hidden_size, num_hidden_layers=opts.num_layers,
                num_attention_heads=opts.num_heads, intermediate_size=opts.intermediate_size,
                max_position_embeddings=opts.max_length, pad_token_id=tokenizer.pad_token_id,
            )
            model = BertForMaskedLM(config)
        else:
            from transformers import ModernBertConfig, ModernBertForMaskedLM

            config = ModernBertConfig(
                vocab_size=len(tokenizer), hidden_size=opts.hidden_size, num_hidden_layers=opts.num_layers,
                num_attention_heads=opts.num_heads, intermediate_size=opts.intermediate_size,
                max_position_embeddings=opts.max_length, pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
                sparse_prediction=True, reference_compile=False,
            )
            model = ModernBertForMaskedLM(config)
        collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=opts.mlm_probability)
        meter = _Meter(collator, tokenizer.pad_token_id)
        trainer = Trainer(
            model=model, args=_training_args(output_dir, batch_size, max_steps, opts.seed),
            train_dataset=documents, data_collator=meter,
        )
        info = dict(model=f"{type(model).__name__} {model.config._attn_implementation}",
                    params=sum(p.numel() for p in model.parameters()), nonembedding_params=_nonembedding_params(model),
                    batch=f"padded {batch_size} rows (mean doc {mean_length:.1f} tokens)", vocab=len(tokenizer),
                    ffn=opts.intermediate_size)

    _send("info", **info)
    trainer.add_callback(_chunk_callback(meter, opts.warmup_steps, opts.steps_per_round, opts.rounds))
    trainer.train()
    _send("done", maxrss_kib=_rss_kib())


# ---------------------------------------------------------------------------------------------------------------------
# Driver side
# ---------------------------------------------------------------------------------------------------------------------


class _Worker:
    def __init__(self, name: str, opts, log_dir: str):
        argv = [sys.executable, os.path.abspath(__file__), "--worker", name]
        for key in ("threads", "warmup_steps", "steps_per_round", "rounds", "tokens_per_step", "max_length",
                    "hidden_size", "num_layers", "num_heads", "intermediate_size", "mlm_probability",
                    "num_documents", "matmul_size", "matmul_repeats", "seed"):
            argv += ["--" + key.replace("_", "-"), str(getattr(opts, key))]
        env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.name = name
        self.log = open(os.path.join(log_dir, f"{name}.log"), "w")
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                        text=True, env=env, cwd=ROOT)
        self.messages: dict[str, list] = {}

    def receive(self, kind: str) -> dict:
        for line in self.process.stdout:
            if line.startswith(PREFIX):
                message = json.loads(line[len(PREFIX):])
                self.messages.setdefault(message["kind"], []).append(message)
                if message["kind"] == kind:
                    return message
                if message["kind"] == "info":
                    continue
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
    log_dir = tempfile.mkdtemp(prefix="bench-pretrain-logs-")
    print(f"machine: {describe_machine(info)}")
    print(f"worker logs: {log_dir}")
    workers = {}
    # Setup (tokenization, model build) and warm-up one worker at a time, so they do not compete with each other.
    for name in opts.contenders:
        start = time.perf_counter()
        workers[name] = _Worker(name, opts, log_dir)
        workers[name].receive("warm")
        print(f"  {name}: set up and warmed up in {time.perf_counter() - start:.0f} s", flush=True)
    load_before = os.getloadavg()[0]
    for round_index in range(opts.rounds):
        for name, w in workers.items():
            w.send("GO")
            chunk = w.receive("chunk")
            rate = chunk["real"] / chunk["seconds"] if chunk["real"] else chunk["flops"] / chunk["seconds"] / 1e9
            print(f"  round {round_index + 1}/{opts.rounds} {name}: {chunk['seconds']:.1f} s, "
                  f"{rate:,.0f} {'tok/s' if chunk['real'] else 'GFLOP/s'}", flush=True)
    load_after = os.getloadavg()[0]
    results = {}
    for name, w in workers.items():
        done = w.receive("done")
        w.process.wait()
        chunks = w.messages["chunk"]
        warm = w.messages["warm"][0]
        entry = {"peak_rss_mib": done["maxrss_kib"] / 1024, "rss_after_warmup_mib": warm["rss_kib"] / 1024,
                 "chunks": chunks, **(w.messages.get("info", [{}])[0])}
        entry.pop("kind", None)
        if name == "matmul":
            entry["gflops"] = [c["flops"] / c["seconds"] / 1e9 for c in chunks]
            entry["gflops_cpu"] = [c["flops"] / c["cpu_seconds"] / 1e9 * opts.threads for c in chunks]
        else:
            entry["tokens_per_second"] = [c["real"] / c["seconds"] for c in chunks]
            entry["tokens_per_cpu_second"] = [c["real"] / c["cpu_seconds"] for c in chunks]
            entry["real_tokens_per_step"] = sum(c["real"] for c in chunks) / sum(c["steps"] for c in chunks)
            entry["slots_per_step"] = sum(c["slots"] for c in chunks) / sum(c["steps"] for c in chunks)
            entry["masked_per_step"] = sum(c["masked"] for c in chunks) / sum(c["steps"] for c in chunks)
            entry["gflops_achieved"] = [c["flops"] / c["seconds"] / 1e9 for c in chunks]
        results[name] = entry
    return {"machine": info, "load_1m_before_timing": load_before, "load_1m_after_timing": load_after,
            "options": {k: v for k, v in vars(opts).items() if k != "json"}, "results": results}


def report(payload: dict, opts) -> None:
    results = payload["results"]
    print(f"\n1-min load average: {payload['load_1m_before_timing']:.1f} before timing, "
          f"{payload['load_1m_after_timing']:.1f} after")
    rows = []
    stock = results.get("stock")
    for name in ("ours", "stock", "modernbert"):
        if name not in results:
            continue
        r = results[name]
        tps = median(r["tokens_per_second"])
        row = [name, r["model"], r["batch"], f"{r['nonembedding_params'] / 1e6:.2f}M",
               f"{r['real_tokens_per_step']:,.0f} / {r['slots_per_step']:,.0f}",
               f"{tps:,.0f} ({min(r['tokens_per_second']):,.0f}-{max(r['tokens_per_second']):,.0f})",
               f"{median(r['tokens_per_cpu_second']):,.0f}", f"{r['peak_rss_mib']:,.0f}"]
        if stock:
            row += [f"{tps / median(stock['tokens_per_second']):.2f}x", f"{stock['peak_rss_mib'] / r['peak_rss_mib']:.2f}x"]
        rows.append(row)
    headers = ["contender", "model", "batch", "non-emb params", "real / slots per step", "real tok/s median (min-max)",
               "real tok/CPU-s", "peak RSS MiB"] + (["tok/s vs stock", "stock RSS / RSS"] if stock else [])
    print(format_table(headers, rows, align="lllrrrrr" + "rr" * bool(stock)))
    ours = results.get("ours")
    if ours and stock:
        speed = median(ours["tokens_per_second"]) / median(stock["tokens_per_second"])
        rss = ours["peak_rss_mib"] / stock["peak_rss_mib"]
        print(f"goal ours >= 8x stock tok/s: {speed:.2f}x -> {'met' if speed >= 8 else 'NOT met'}")
        print(f"goal ours peak RSS <= 1/4 stock: {rss:.3f} of stock -> {'met' if rss <= 0.25 else 'NOT met'}")
    if ours and "modernbert" in results:
        speed = median(ours["tokens_per_second"]) / median(results["modernbert"]["tokens_per_second"])
        print(f"goal ours >= 2x ModernBERT-sparse tok/s: {speed:.2f}x -> {'met' if speed >= 2 else 'NOT met'}")
    if ours and "matmul" in results:
        peak = median(results["matmul"]["gflops"])
        achieved = median(ours["gflops_achieved"])
        print(f"\nMFU (FLOPs = 6*N_nonemb*real + 12*L*H*sum(len^2) + 6*H*V*masked; N_nonemb = "
              f"{ours['nonembedding_params']:,}):")
        rows = [[f"{opts.matmul_size}^3 fp32 matmul, {opts.threads} threads", f"{peak:,.1f}",
                 f"{min(results['matmul']['gflops']):,.1f}-{max(results['matmul']['gflops']):,.1f}", ""],
                ["ours (pretraining step)", f"{achieved:,.1f}",
                 f"{min(ours['gflops_achieved']):,.1f}-{max(ours['gflops_achieved']):,.1f}", f"{achieved / peak:.1%}"]]
        print(format_table(["", "GFLOP/s median", "min-max", "MFU"], rows))
        # per-round MFU, the matmul probe of the same round as the reference
        per_round = [o / m for o, m in zip(ours["gflops_achieved"], results["matmul"]["gflops"])]
        payload["mfu"] = {"median": achieved / peak, "per_round": per_round, "peak_gflops": peak,
                          "achieved_gflops": achieved}
        print(f"MFU per round (same-round matmul probe): {', '.join(f'{x:.1%}' for x in per_round)}; "
              f"goal >= 55% -> {'met' if achieved / peak >= 0.55 else 'NOT met'}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--steps-per-round", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--tokens-per-step", type=int, default=4096)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--intermediate-size", type=int, default=1024,
                        help="the config's intermediate_size for every model (NeoBERT's SwiGLU derives F=688 from it)")
    parser.add_argument("--mlm-probability", type=float, default=0.2)
    parser.add_argument("--num-documents", type=int, default=20000, help="documents tokenized for the stock workers")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--matmul-repeats", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.worker:
        return worker(opts)
    payload = driver(opts)
    report(payload, opts)
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(payload, f, indent=1)
        print(f"wrote {opts.json}")


if __name__ == "__main__":
    main()
