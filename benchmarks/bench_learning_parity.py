# Copyright 2026 the neobert-hf authors. Licensed under the Apache License, Version 2.0.
"""Learning parity: `neobert-hf pretrain` vs the stock transformers MLM pipeline at an equal budget, scored alike.

For each corpus (a folder with `train` and `validation` jsonl splits of whole documents, e.g. from
`benchmarks/corpora/build_corpora.py`), two pipelines train the same model from the same recipe
(`recipes/tiny/pretrain.yaml` by default: model size, tokenizer, max_seq_length, steps, tokens per step, learning
rate, warmup, schedule, AdamW betas, weight decay, masking rate and seed), each in its own process:

- `ours`: `neobert-hf pretrain --config RECIPE --dataset_name CORPUS` (packed microbatches of `tokens_per_batch`,
  chunks shuffled over the epoch, masked-logits-only loss);
- `stock`: what `transformers/examples/pytorch/language-modeling/run_mlm.py` does: tokenize, concatenate every
  document and cut the stream into `max_seq_length` blocks (`group_texts`), `DataCollatorForLanguageModeling` (same
  masking rate; every selected token becomes [MASK], as the recipe's `mask_all`), the stock `Trainer` with
  `tokens_per_batch / max_seq_length` blocks per step, the same `NeoBERTForMaskedLM` config and initialisation.

Both final models are then scored by `mlm_eval.py` (not either trainer's loop): the first documents of the held-out
split, fixed masks, masked-token loss and top-1 accuracy. Wall time is the whole command of each pipeline (loading,
tokenization, training, saving) on the same machine, one after the other.

    python benchmarks/bench_learning_parity.py --corpus ~/.cache/neobert_hf_bench/corpora/long \
        ~/.cache/neobert_hf_bench/corpora/short --json benchmarks/results/learning_parity.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import describe_machine, format_table, machine_info, write_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "tiny", "pretrain.yaml")


def _env(threads: int) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_ours(recipe: str, corpus: str, out: str, steps: int | None, threads: int, extra: list[str]) -> tuple[str, float]:
    cmd = [sys.executable, "-m", "neobert_hf", "pretrain", "--config", recipe, "--dataset_name", corpus,
           "--output_dir", out, "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "200", *extra]
    if steps is not None:
        cmd += ["--max_steps", str(steps)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=_env(threads))
    elapsed = time.perf_counter() - start
    checkpoints = os.path.join(out, "checkpoints")
    final = max((d for d in os.listdir(checkpoints) if d.isdigit()), key=int)
    return os.path.join(checkpoints, final), elapsed


def run_stock(recipe: str, corpus: str, out: str, steps: int | None, threads: int, config_dir: str) -> tuple[str, float]:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker-stock", "--recipe", recipe, "--worker-corpus", corpus,
           "--worker-out", out, "--worker-config", config_dir, "--threads", str(threads)]
    if steps is not None:
        cmd += ["--steps", str(steps)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=_env(threads))
    return out, time.perf_counter() - start


def stock_worker(recipe: str, corpus: str, out: str, steps: int | None, config_dir: str, threads: int) -> None:
    """run_mlm.py's pipeline on the recipe's hyperparameters."""
    import datasets
    import torch
    import yaml
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling, Trainer, TrainingArguments, set_seed

    from neobert_hf import NeoBERTConfig, NeoBERTForMaskedLM

    torch.set_num_threads(threads)
    with open(recipe) as f:
        r = yaml.safe_load(f)
    block = int(r["max_seq_length"])
    rows = int(r["tokens_per_batch"]) // block * int(r.get("per_device_train_batch_size", 1))
    max_steps = steps if steps is not None else int(r["max_steps"])
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(ROOT, r["tokenizer_name"]))
    raw = datasets.load_dataset(corpus, split="train")
    tokenized = raw.map(
        lambda batch: tokenizer(batch["text"], add_special_tokens=True, truncation=False,
                                return_attention_mask=False),
        batched=True, num_proc=int(r.get("preprocessing_num_workers") or 1), remove_columns=raw.column_names,
    )

    def group_texts(examples):  # run_mlm.py
        concatenated = {k: [t for ids in examples[k] for t in ids] for k in examples}
        total = (len(concatenated["input_ids"]) // block) * block
        return {k: [v[i : i + block] for i in range(0, total, block)] for k, v in concatenated.items()}

    blocks = tokenized.map(group_texts, batched=True, batch_size=1000,
                           num_proc=int(r.get("preprocessing_num_workers") or 1))
    collator = DataCollatorForLanguageModeling(
        tokenizer, mlm_probability=float(r["mlm_probability"]),
        mask_replace_prob=1.0 if r.get("mask_all") else 0.8, random_replace_prob=0.0 if r.get("mask_all") else 0.1,
    )
    config = NeoBERTConfig.from_pretrained(config_dir)  # the very config `ours` trained
    set_seed(int(r.get("seed", 0)))
    model = NeoBERTForMaskedLM(config)
    scheduler = r.get("lr_scheduler_type", "linear")
    kwargs = {}
    if r.get("final_lr_ratio") is not None and scheduler == "cosine":
        scheduler, kwargs = "cosine_with_min_lr", {"min_lr_rate": float(r["final_lr_ratio"])}
    args = TrainingArguments(
        output_dir=out, max_steps=max_steps, per_device_train_batch_size=rows,
        learning_rate=float(r["learning_rate"]), warmup_steps=int(r.get("warmup_steps", 0)),
        lr_scheduler_type=scheduler, lr_scheduler_kwargs=kwargs, adam_beta2=float(r.get("adam_beta2", 0.999)),
        weight_decay=float(r.get("weight_decay", 0.0)), seed=int(r.get("seed", 0)), use_cpu=True,
        logging_steps=200, save_strategy="no", report_to="none", disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=blocks, data_collator=collator, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(out)
    tokenizer.save_pretrained(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", nargs="+", help="corpus folders (train/validation jsonl of whole documents)")
    parser.add_argument("--recipe", default=RECIPE)
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's max_steps (both pipelines)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-documents", type=int, default=3000)
    parser.add_argument("--eval-pieces", type=int, default=2000)
    parser.add_argument("--ours-args", nargs=argparse.REMAINDER, default=[],
                        help="extra flags for neobert-hf pretrain (last on the command line)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--keep", default=None, help="keep the trained models under this folder")
    parser.add_argument("--worker-stock", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-corpus", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    parser.add_argument("--worker-config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_stock:
        stock_worker(args.recipe, args.worker_corpus, args.worker_out, args.steps, args.worker_config, args.threads)
        return

    import yaml

    from mlm_eval import evaluate_folder

    with open(args.recipe) as f:
        recipe = yaml.safe_load(f)
    info = machine_info()
    print(describe_machine(info))
    results = []
    work = args.keep or tempfile.mkdtemp(prefix="learning_parity_")
    for corpus in args.corpus:
        name = os.path.basename(os.path.normpath(corpus))
        base = os.path.join(work, name)
        shutil.rmtree(base, ignore_errors=True)
        print(f"== {name}: ours", flush=True)
        ours_dir, ours_s = run_ours(args.recipe, corpus, os.path.join(base, "ours"), args.steps, args.threads,
                                    args.ours_args)
        print(f"== {name}: stock", flush=True)
        stock_dir, stock_s = run_stock(args.recipe, corpus, os.path.join(base, "stock"), args.steps, args.threads,
                                       ours_dir)
        scores = {}
        for label, folder in (("ours", ours_dir), ("stock", stock_dir)):
            scores[label] = evaluate_folder(
                folder, corpus, split="validation", max_documents=args.eval_documents, max_pieces=args.eval_pieces,
                max_seq_length=int(recipe["max_seq_length"]), mlm_probability=float(recipe["mlm_probability"]),
            )
        results.append({"corpus": name, "path": corpus, "ours_seconds": ours_s, "stock_seconds": stock_s,
                        "ours": asdict(scores["ours"]), "stock": asdict(scores["stock"])})
        print(format_table(
            ["corpus", "pipeline", "wall s", "held-out loss", "held-out acc", "most-frequent acc"],
            [[name, label, f"{s:.0f}", f"{scores[label].loss:.4f}", f"{scores[label].accuracy:.4f}",
              f"{scores[label].most_frequent_accuracy:.4f}"]
             for label, s in (("ours", ours_s), ("stock", stock_s))],
        ), flush=True)
    steps = args.steps if args.steps is not None else recipe["max_steps"]
    print(f"\nrecipe {os.path.relpath(args.recipe, ROOT)}, {steps} steps x {recipe['tokens_per_batch']} tokens; "
          f"held-out scores from mlm_eval.py ({results[0]['ours']['masked_tokens']} masked tokens on the first corpus)")
    rows = []
    for r in results:
        rows.append([r["corpus"], f"{r['ours']['accuracy']:.4f}", f"{r['stock']['accuracy']:.4f}",
                     f"{r['ours']['accuracy'] - r['stock']['accuracy']:+.4f}", f"{r['ours']['loss']:.4f}",
                     f"{r['stock']['loss']:.4f}", f"{r['ours_seconds']:.0f}", f"{r['stock_seconds']:.0f}",
                     f"{r['stock_seconds'] / r['ours_seconds']:.2f}x"])
    print(format_table(["corpus", "acc ours", "acc stock", "diff", "loss ours", "loss stock", "wall ours s",
                        "wall stock s", "speed-up"], rows))
    write_json(args.json, {"machine": info, "recipe": args.recipe, "steps": steps, "results": results})
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
