# Copyright 2026 the neobert-hf authors. Licensed under the Apache License, Version 2.0.
"""Does pretraining pay off downstream? A pretrained NeoBERT export against a random init of the same config.

For each `--pretrained` checkpoint (a `checkpoints/<step>/` folder written by `neobert-hf pretrain`, or an exported
folder) the script first exports it with the package's exporter (`neobert_hf.export.export_model`, what
`neobert-hf export CHECKPOINT OUT` runs) into a work folder, and everything below uses that export, so the run also
checks that an export is a usable model. The baseline is `NeoBERTConfig.from_pretrained(export)` turned into a fresh,
seeded model with the same tokenizer (checkpoints with the same config and tokenizer share one baseline). Both sides
get IDENTICAL fine-tuning: same data subset, learning rate, epochs, schedule, batch order seed.

Each pretrained model is labelled `<run>@<step>` with the pretraining tokens seen: `global_step` (from
`trainer_state.json`) x the token slots of one optimizer step (`tokens_per_batch` x `per_device_train_batch_size` x
`gradient_accumulation_steps` from `<run>/run_args.json`, two levels above the checkpoint, x `--pretrain-world-size`,
which run_args.json does not record; padded rows count `max_seq_length` each). Token slots are an upper bound on
real tokens (a packed row may end with a few padding slots). Without run_args.json only the step is shown.

**Classification** (`--task-dir`: `train`, `validation`, `test` .jsonl[.gz] of {"text", "label": int}, optional
`labels.json` with the label names; `topic/` of `benchmarks/corpora/build_corpora.py`):

- for every size in `--sizes`, seed in `--seeds`: a seeded, stratified subsample of `train` (per-class quotas
  proportional to the class counts, largest remainders; the subset depends on the seed, and is the same for the
  pretrained and the random model);
- for every learning rate in `--lrs`: `AutoModelForSequenceClassification` (the export with a new head, checked: only
  `classifier.*` may be missing and only the MLM `decoder.*` unexpected; or `from_config` for the baseline, after
  `set_seed(seed)`), plain `transformers.Trainer`, `DataCollatorWithPadding`, batch `--batch-size 32`,
  `--max-length 128`, AdamW, weight decay 0.01, linear decay after 10% warm-up, no checkpoint saved;
- epochs: `--epochs` if given, else `clamp(ceil(--target-examples / n), --min-epochs, --max-epochs)`
  = `clamp(ceil(10000 / n), 3, 20)` by default: 250 examples -> 20 epochs (160 steps), 1,000 -> 10 (320 steps),
  10,000 -> 3 (939 steps), so that small sets still get a few hundred optimizer steps;
- accuracy and macro-F1 of the final model on `validation` and `test`. Nothing is chosen on test: the grid table shows
  every (size, lr, seed); the *validation-selected* table picks, per model, init and size, the learning rate with the
  best mean validation accuracy over seeds, and reports the test scores at that learning rate.

**Embeddings** (`--pairs-dir`: `train.jsonl[.gz]` of {"anchor", "positive"} and a BEIR folder, `test/` inside it or
`--retrieval-dir`: `corpus.jsonl`, `queries.jsonl`, `qrels/test.tsv`; `pairs/` of build_corpora.py): a
sentence-transformers model (`neobert_hf.integrations.sentence_transformers.build_sentence_transformer`, mean pooling)
of the export and of the random init (saved to the work folder first), scored BEFORE and AFTER
`SentenceTransformerTrainer` + `MultipleNegativesRankingLoss` (in-batch negatives, batches without duplicate texts,
`--contrastive-batch-size 64`, `--contrastive-steps`, `--contrastive-lrs`, 10% warm-up, linear decay, per seed):

- anisotropy: mean off-diagonal cosine similarity of the embeddings of `--anisotropy-texts 1000` corpus texts (a
  fixed, seed-independent sample): near 1 means every text lands in the same narrow cone;
- retrieval: cosine top-10 over the whole test corpus (plain torch), nDCG@10, MRR@10 and recall@10 averaged over the
  queries that have qrels.

**The rule for "wins"**: for one comparison cell (pretrained model x size x lr, or pretrained model x contrastive lr),
with `m` the mean and `s` the sample standard deviation over seeds of the metric (test accuracy, or nDCG@10 after
training), the pretrained model *wins* when `m_pre - m_rand > s_pre + s_rand` (the gap is larger than the two
seed-to-seed spreads added), *loses* when `m_rand - m_pre > s_pre + s_rand`, and it is a *tie* otherwise. With one
seed the spread is 0 and any gap counts: use several seeds for a verdict. Anisotropy has no better direction and gets
no verdict.

Outputs: markdown tables on stdout and, with `--json PATH`, every run, the summaries, the arguments and the machine.

Commands (from the repository root; corpora from `python benchmarks/corpora/build_corpora.py`, default output
`~/.cache/neobert_hf_bench/corpora`):

    # smoke test, a minute or two on 2 CPU cores (sizes 50, one lr, one seed, a few steps, capped eval sets)
    python benchmarks/bench_downstream.py --quick --pretrained runs/tiny/pretrain/checkpoints/1600 \
        --task-dir ~/.cache/neobert_hf_bench/corpora/topic --pairs-dir ~/.cache/neobert_hf_bench/corpora/pairs

    # the real CPU run for the tiny 2x128 recipe (several checkpoints of one run share one random baseline)
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_downstream.py \
        --pretrained runs/tiny/pretrain/checkpoints/800 runs/tiny/pretrain/checkpoints/1600 \
        --task-dir ~/.cache/neobert_hf_bench/corpora/topic --pairs-dir ~/.cache/neobert_hf_bench/corpora/pairs \
        --sizes 250 1000 10000 --lrs 3e-4 1e-3 --seeds 0 1 2 --contrastive-steps 300 \
        --threads 2 --json benchmarks/results/downstream_tiny.json

    # GPU, a base-size run: same script, --device cuda (bf16 autocast optional), base-size learning rates
    python benchmarks/bench_downstream.py --device cuda --bf16 \
        --pretrained runs/base/pretrain/checkpoints/100000 runs/base/pretrain/checkpoints/200000 \
        --task-dir ~/.cache/neobert_hf_bench/corpora/topic --pairs-dir ~/.cache/neobert_hf_bench/corpora/pairs \
        --sizes 250 1000 10000 15000 --lrs 2e-5 5e-5 1e-4 --seeds 0 1 2 \
        --contrastive-lrs 2e-5 5e-5 --contrastive-steps 1000 --json benchmarks/results/downstream_base.json

`--reuse EARLIER.json ...` takes grid cells already measured by an earlier run with the same settings (the same
pretrained model, or for a random baseline the same config and tokenizer) from its `--json` file instead of rerunning
them: a new pretraining budget is then compared against the random baseline measured before, and an interrupted grid
can be completed. `--skip-classification` / `--skip-embeddings` run one half; `--keep-work` keeps the exports and the saved random
inits (`--work-dir`, a temporary folder by default).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import describe_machine, format_table, machine_info, write_json  # noqa: E402

PRE, RAND = "pretrained", "random"


# ---------------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------------


def find_split(folder: str, name: str) -> str | None:
    for candidate in (f"{name}.jsonl", f"{name}.jsonl.gz", f"{name}.json", f"{name}.json.gz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def read_jsonl(path: str) -> list[dict]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_classification(folder: str) -> tuple[dict[str, list[dict]], list[str]]:
    splits = {}
    for name in ("train", "validation", "test"):
        path = find_split(folder, name)
        if path is None:
            raise SystemExit(f"--task-dir {folder}: no {name}.jsonl[.gz]")
        rows = read_jsonl(path)
        for row in rows:
            if not isinstance(row.get("text"), str) or not isinstance(row.get("label"), int):
                raise SystemExit(f"{path}: every row needs a string 'text' and an int 'label', got {row!r:.200}")
        splits[name] = rows
    labels_file = os.path.join(folder, "labels.json")
    num_labels = 1 + max(r["label"] for rows in splits.values() for r in rows)
    names = [str(i) for i in range(num_labels)]
    if os.path.isfile(labels_file):
        with open(labels_file, encoding="utf-8") as handle:
            loaded = json.load(handle)
        if isinstance(loaded, dict):  # {"0": "name"} or {"name": 0}
            if all(isinstance(v, int) for v in loaded.values()):
                loaded = [k for k, _ in sorted(loaded.items(), key=lambda kv: kv[1])]
            else:
                loaded = [loaded[k] for k in sorted(loaded, key=int)]
        if len(loaded) < num_labels:
            raise SystemExit(f"{labels_file} names {len(loaded)} labels, the data uses {num_labels}")
        names = [str(n) for n in loaded]
    return splits, names


def read_retrieval(folder: str) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, int]]]:
    """A BEIR folder: corpus.jsonl {"_id", "text", ["title"]}, queries.jsonl {"_id", "text"}, qrels/test.tsv."""
    corpus_path, queries_path = find_split(folder, "corpus"), find_split(folder, "queries")
    qrels_path = next((p for p in (os.path.join(folder, "qrels", "test.tsv"), os.path.join(folder, "qrels.tsv"))
                       if os.path.isfile(p)), None)
    if corpus_path is None or queries_path is None or qrels_path is None:
        raise SystemExit(f"{folder} is not a BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    corpus = {}
    for row in read_jsonl(corpus_path):
        title = (row.get("title") or "").strip()
        corpus[str(row["_id"])] = f"{title} {row['text']}".strip() if title else row["text"]
    queries = {str(row["_id"]): row["text"] for row in read_jsonl(queries_path)}
    qrels: dict[str, dict[str, int]] = {}
    with open(qrels_path, encoding="utf-8") as handle:
        for k, line in enumerate(handle):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or (k == 0 and not parts[2].strip().lstrip("-").isdigit()):
                continue  # header or blank
            qid, did, score = parts[0], parts[1], int(parts[2])
            if score > 0 and qid in queries and did in corpus:
                qrels.setdefault(qid, {})[did] = score
    return queries, corpus, qrels


# ---------------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------------


def pretraining_label(checkpoint: str, world_size: int) -> dict:
    """`<run>@<step>` and the pretraining token slots seen (global_step x token slots per optimizer step)."""
    checkpoint = os.path.abspath(checkpoint)
    state_file = os.path.join(checkpoint, "trainer_state.json")
    step = None
    if os.path.isfile(state_file):
        with open(state_file, encoding="utf-8") as handle:
            step = json.load(handle).get("global_step")
    parent = os.path.dirname(checkpoint)
    run = os.path.dirname(parent) if os.path.basename(parent) == "checkpoints" else parent
    name = f"{os.path.basename(run)}@{step}" if step is not None else os.path.basename(checkpoint)
    info = {"name": name, "checkpoint": checkpoint, "global_step": step, "tokens": None, "tokens_per_step": None}
    run_args_file = os.path.join(run, "run_args.json")
    if step is not None and os.path.isfile(run_args_file):
        with open(run_args_file, encoding="utf-8") as handle:
            run_args = json.load(handle)
        rows = int(run_args.get("per_device_train_batch_size") or 1) * int(run_args.get("gradient_accumulation_steps")
                                                                            or 1)
        if run_args.get("packing", True) and run_args.get("tokens_per_batch"):
            per_row = int(run_args["tokens_per_batch"])
        else:
            per_row = int(run_args.get("max_seq_length") or 0)
        if per_row:
            info["tokens_per_step"] = rows * per_row * world_size
            info["tokens"] = step * info["tokens_per_step"]
    return info


def human(n: float | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"


def config_key(export_dir: str) -> str:
    """Two exports with this key get the same random baseline: same config (names aside) and tokenizer files."""
    with open(os.path.join(export_dir, "config.json"), encoding="utf-8") as handle:
        config = json.load(handle)
    for name in ("_name_or_path", "architectures", "transformers_version", "auto_map", "dtype", "torch_dtype"):
        config.pop(name, None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name in sorted(os.listdir(export_dir)):
        if name.startswith(("tokenizer", "vocab", "special_tokens", "added_tokens", "merges")):
            with open(os.path.join(export_dir, name), "rb") as handle:
                digest.update(name.encode() + handle.read())
    return digest.hexdigest()[:12]


def export_checkpoint(checkpoint: str, out: str) -> dict:
    from neobert_hf.export import export_model

    start = time.perf_counter()
    result = export_model(checkpoint, out, overwrite=True, card_facts={"model_name": os.path.basename(out)})
    return {"export_dir": result.output_dir, "task": result.task, "num_parameters": result.num_parameters,
            "files": result.files, "export_s": round(time.perf_counter() - start, 2)}


def load_classifier(export_dir: str | None, config, num_labels: int, names: list[str], pooling: str, seed: int):
    """The pretrained export with a new head (only the head may be missing) or, without `export_dir`, a fresh model
    of `config`; both after `set_seed(seed)` so the new heads start alike."""
    import copy

    from transformers import AutoModelForSequenceClassification, set_seed

    import neobert_hf  # noqa: F401 - registers model_type "neobert"

    id2label = dict(enumerate(names[:num_labels]))
    label2id = {v: k for k, v in id2label.items()}
    overrides = {"num_labels": num_labels, "id2label": id2label, "label2id": label2id,
                 "problem_type": "single_label_classification"}
    if pooling != "config":
        overrides["classifier_pooling"] = pooling
    set_seed(seed)
    if export_dir is None:
        config = copy.deepcopy(config)
        for key, value in overrides.items():
            setattr(config, key, value)
        return AutoModelForSequenceClassification.from_config(config)
    model, info = AutoModelForSequenceClassification.from_pretrained(export_dir, output_loading_info=True, **overrides)
    missing = [k for k in info.get("missing_keys") or () if not k.startswith("classifier.")]
    unexpected = [k for k in info.get("unexpected_keys") or () if not k.startswith("decoder.")]
    mismatched = list(info.get("mismatched_keys") or ())
    if missing or unexpected or mismatched:
        raise SystemExit(f"{export_dir} does not load as a classifier: missing {missing}, unexpected {unexpected}, "
                         f"mismatched {mismatched}")
    return model


def save_random_encoder(config, tokenizer_dir: str, out: str, seed: int) -> str:
    """A seeded random `NeoBERTModel` of `config`, saved with the tokenizer of `tokenizer_dir` (for
    sentence-transformers)."""
    from transformers import AutoTokenizer, set_seed

    from neobert_hf.modeling import NeoBERTModel

    set_seed(seed)
    model = NeoBERTModel(config)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------------------------


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def verdict(pre: list[float], rand: list[float]) -> dict:
    (m_pre, s_pre), (m_rand, s_rand) = mean_std(pre), mean_std(rand)
    diff, spread = m_pre - m_rand, s_pre + s_rand
    flag = "WIN" if diff > spread else "loss" if -diff > spread else "tie"
    return {"pretrained_mean": m_pre, "pretrained_std": s_pre, "random_mean": m_rand, "random_std": s_rand,
            "difference": diff, "spread": spread, "verdict": flag, "seeds": len(pre)}


def pm(mean: float, std: float, scale: float = 100.0, digits: int = 1) -> str:
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


def accuracy_f1(predictions: list[int], labels: list[int], num_labels: int) -> tuple[float, float]:
    correct = sum(p == y for p, y in zip(predictions, labels))
    f1s = []
    for c in range(num_labels):
        tp = sum(p == c and y == c for p, y in zip(predictions, labels))
        fp = sum(p == c and y != c for p, y in zip(predictions, labels))
        fn = sum(p != c and y == c for p, y in zip(predictions, labels))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return correct / max(len(labels), 1), (statistics.fmean(f1s) if f1s else 0.0)


def stratified_subsample(labels: list[int], n: int, seed: int) -> list[int]:
    """`n` indices, per-class quotas proportional to the class counts (largest remainders), seeded."""
    if n >= len(labels):
        indices = list(range(len(labels)))
        random.Random(seed).shuffle(indices)
        return indices
    rng = random.Random(f"subsample:{seed}")
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    exact = {c: n * len(ix) / len(labels) for c, ix in by_class.items()}
    quota = {c: int(v) for c, v in exact.items()}
    for c in sorted(exact, key=lambda c: (quota[c] - exact[c], c))[: n - sum(quota.values())]:
        quota[c] += 1
    chosen = []
    for c in sorted(by_class):
        members = list(by_class[c])
        rng.shuffle(members)
        chosen.extend(members[: quota[c]])
    rng.shuffle(chosen)
    return chosen


def epochs_for(n: int, args) -> int:
    if args.epochs is not None:
        return args.epochs
    return max(args.min_epochs, min(args.max_epochs, math.ceil(args.target_examples / n)))


# ---------------------------------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------------------------------


def training_arguments(args, out: str, lr: float, seed: int, total_steps: int, **extra):
    return dict(
        output_dir=out,
        learning_rate=lr,
        weight_decay=0.01,
        lr_scheduler_type="linear",
        warmup_steps=math.ceil(0.1 * total_steps),
        optim="adamw_torch",
        seed=seed,
        data_seed=seed,
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=args.device == "cpu",
        bf16=args.bf16,
        dataloader_num_workers=0,
        **extra,
    )


def tokenize_splits(tokenizer, splits: dict[str, list[dict]], max_length: int):
    from datasets import Dataset

    out = {}
    for name, rows in splits.items():
        ds = Dataset.from_dict({"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]})
        out[name] = ds.map(lambda b: tokenizer(b["text"], truncation=True, max_length=max_length), batched=True,
                           remove_columns=["text"], keep_in_memory=True)
    return out


def finetune_once(model, tokenizer, train_ds, eval_sets, num_labels, lr, seed, epochs, args, scratch) -> dict:
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    steps_per_epoch = math.ceil(len(train_ds) / args.batch_size)
    total = steps_per_epoch * epochs
    targs = TrainingArguments(**training_arguments(
        args, scratch, lr, seed, total, per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size, num_train_epochs=epochs))
    trainer = Trainer(model=model, args=targs, train_dataset=train_ds, processing_class=tokenizer,
                      data_collator=DataCollatorWithPadding(tokenizer))
    trainer.remove_callback(PrinterCallback)  # the per-run line below says it
    start = time.perf_counter()
    output = trainer.train()
    record = {"steps": output.global_step, "train_loss": output.training_loss,
              "train_s": round(time.perf_counter() - start, 1)}
    for name, ds in eval_sets.items():
        prediction = trainer.predict(ds)
        predicted = prediction.predictions.argmax(-1).tolist()
        record[f"{name}_accuracy"], record[f"{name}_macro_f1"] = accuracy_f1(
            predicted, prediction.label_ids.tolist(), num_labels)
    return record


CLASSIFICATION_SETTINGS = ("task_dir", "epochs", "target_examples", "min_epochs", "max_epochs", "batch_size",
                           "max_length", "max_eval", "classifier_pooling", "device", "bf16")
EMBEDDING_SETTINGS = ("pairs_dir", "retrieval_dir", "contrastive_steps", "contrastive_batch_size", "max_pairs",
                      "max_queries", "max_corpus", "anisotropy_texts", "max_length", "device", "bf16")


def settings_of(args, names: tuple[str, ...]) -> dict:
    """The arguments that decide a run's result (paths by their folder name, so a moved corpus still matches)."""
    out = {}
    for name in names:
        value = getattr(args, name)
        out[name] = os.path.basename(os.path.normpath(value)) if name.endswith("_dir") and value else value
    return out


def load_reusable(paths: list[str] | None) -> dict[str, list[dict]]:
    """Runs recorded by earlier invocations (`--json` files), by section, to skip what was already measured."""
    found = {"classification": [], "embeddings": []}
    for path in paths or []:
        with open(path, encoding="utf-8") as f:
            payload = json.load(f)
        for section in found:
            found[section].extend(r for r in payload.get(section, {}).get("runs", []) if "settings" in r)
    return found


def reusable(records: list[dict], settings: dict, init: str, label: str, key: str, **match) -> dict | None:
    """An earlier run with the same settings, init, model (random baselines: the same config) and grid cell."""
    for r in records:
        if (r["settings"] == settings and r["init"] == init and r["config_key"] == key
                and (init == RAND or r["model"] == label) and all(r.get(k) == v for k, v in match.items())):
            return {**r, "model": label, "reused": True}
    return None


def run_classification(args, models: list[dict], baselines: dict[str, dict]) -> list[dict]:
    from transformers import AutoConfig, AutoTokenizer

    splits, names = read_classification(args.task_dir)
    for name, cap in (("validation", args.max_eval), ("test", args.max_eval)):
        if cap and len(splits[name]) > cap:
            splits[name] = [splits[name][i] for i in sorted(random.Random(f"eval:{name}").sample(
                range(len(splits[name])), cap))]
    num_labels = len(names)
    train_labels = [r["label"] for r in splits["train"]]
    print(f"\nclassification: {args.task_dir}: {len(splits['train'])} train, {len(splits['validation'])} validation, "
          f"{len(splits['test'])} test examples, {num_labels} labels ({', '.join(names)})", flush=True)
    records = []
    settings = settings_of(args, CLASSIFICATION_SETTINGS)
    # the work list: each pretrained model, and each distinct random baseline once
    sides = [(m["name"], PRE, m["export_dir"], m) for m in models]
    sides += [(b["name"], RAND, None, b) for b in baselines.values()]
    tokenized_cache: dict[str, dict] = {}
    for label, init, export_dir, spec in sides:
        source = spec["export_dir"]
        tokenizer = AutoTokenizer.from_pretrained(source)
        config = AutoConfig.from_pretrained(source)
        key = spec["config_key"]
        if key not in tokenized_cache:
            tokenized_cache[key] = tokenize_splits(tokenizer, splits, args.max_length)
        data = tokenized_cache[key]
        eval_sets = {"validation": data["validation"], "test": data["test"]}
        for size in args.sizes:
            for seed in args.seeds:
                indices = stratified_subsample(train_labels, size, seed)
                train_ds = data["train"].select(indices)
                epochs = epochs_for(len(indices), args)
                for lr in args.lrs:
                    record = reusable(args.reused["classification"], settings, init, label, key,
                                      requested_size=size, lr=lr, seed=seed)
                    if record is None:
                        model = load_classifier(export_dir, config, num_labels, names, args.classifier_pooling, seed)
                        with tempfile.TemporaryDirectory(dir=args.work_dir) as scratch:
                            record = finetune_once(model, tokenizer, train_ds, eval_sets, num_labels, lr, seed,
                                                   epochs, args, scratch)
                        del model
                        record.update(model=label, init=init, config_key=key, size=len(indices),
                                      requested_size=size, lr=lr, seed=seed, epochs=epochs, settings=settings)
                    records.append(record)
                    print(f"  [{init} {label}] n={len(indices)} lr={lr:g} seed={seed} epochs={epochs} "
                          f"steps={record['steps']} loss={record['train_loss']:.3f} "
                          f"val acc={record['validation_accuracy']:.3f} test acc={record['test_accuracy']:.3f} "
                          f"({record['train_s']}s{', reused' if record.get('reused') else ''})", flush=True)
    return records


def classification_tables(args, models: list[dict], records: list[dict]) -> dict:
    def select(init, key, size, lr=None, model=None):
        return [r for r in records if r["init"] == init and r["config_key"] == key and r["requested_size"] == size
                and (lr is None or r["lr"] == lr) and (model is None or r["model"] == model)]

    grid_rows = [[r["model"], r["init"], r["size"], f"{r['lr']:g}", r["seed"], r["epochs"], r["steps"],
                  f"{r['train_loss']:.3f}", f"{100 * r['validation_accuracy']:.1f}", f"{100 * r['test_accuracy']:.1f}",
                  f"{100 * r['test_macro_f1']:.1f}", r["train_s"]] for r in records]
    print("\n### Classification: every run (accuracy and macro-F1 in %)\n")
    print(format_table(["model", "init", "n", "lr", "seed", "epochs", "steps", "train loss", "val acc", "test acc",
                        "test F1", "s"], grid_rows, align="llrrrrrrrrrr"))

    summary, summary_rows = [], []
    for m in models:
        for size in args.sizes:
            for lr in args.lrs:
                pre = select(PRE, m["config_key"], size, lr, model=m["name"])
                rand = select(RAND, m["config_key"], size, lr)
                if not pre or not rand:
                    continue
                acc = verdict([r["test_accuracy"] for r in pre], [r["test_accuracy"] for r in rand])
                f1 = verdict([r["test_macro_f1"] for r in pre], [r["test_macro_f1"] for r in rand])
                summary.append({"model": m["name"], "size": pre[0]["size"], "lr": lr, "test_accuracy": acc,
                                "test_macro_f1": f1})
                summary_rows.append([m["name"], pre[0]["size"], f"{lr:g}", acc["seeds"],
                                     pm(acc["pretrained_mean"], acc["pretrained_std"]),
                                     pm(acc["random_mean"], acc["random_std"]), f"{100 * acc['difference']:+.1f}",
                                     f"{100 * acc['spread']:.1f}", acc["verdict"],
                                     pm(f1["pretrained_mean"], f1["pretrained_std"]),
                                     pm(f1["random_mean"], f1["random_std"]), f"{100 * f1['difference']:+.1f}"])
    print("\n### Classification: pretrained vs random init, test accuracy, mean ± std over seeds (%)\n")
    print("verdict: WIN when mean(pre) - mean(rand) > std(pre) + std(rand), loss when the reverse, else tie\n")
    print(format_table(["model", "n", "lr", "seeds", "pretrained acc", "random acc", "diff", "spread", "verdict",
                        "pretrained F1", "random F1", "F1 diff"], summary_rows, align="lrrrrrrrlrrr"))

    selected, selected_rows = [], []
    for m in models:
        for size in args.sizes:
            chosen = {}
            for init in (PRE, RAND):
                best = None
                for lr in args.lrs:
                    runs = select(init, m["config_key"], size, lr, model=m["name"] if init == PRE else None)
                    if runs:
                        val = statistics.fmean(r["validation_accuracy"] for r in runs)
                        if best is None or val > best[0]:
                            best = (val, lr, runs)
                chosen[init] = best
            if chosen[PRE] is None or chosen[RAND] is None:
                continue
            acc = verdict([r["test_accuracy"] for r in chosen[PRE][2]], [r["test_accuracy"] for r in chosen[RAND][2]])
            f1 = verdict([r["test_macro_f1"] for r in chosen[PRE][2]], [r["test_macro_f1"] for r in chosen[RAND][2]])
            selected.append({"model": m["name"], "size": chosen[PRE][2][0]["size"], "pretrained_lr": chosen[PRE][1],
                             "random_lr": chosen[RAND][1], "pretrained_validation_accuracy": chosen[PRE][0],
                             "random_validation_accuracy": chosen[RAND][0], "test_accuracy": acc,
                             "test_macro_f1": f1})
            selected_rows.append([m["name"], chosen[PRE][2][0]["size"], f"{chosen[PRE][1]:g}", f"{chosen[RAND][1]:g}",
                                  f"{100 * chosen[PRE][0]:.1f}", f"{100 * chosen[RAND][0]:.1f}",
                                  pm(acc["pretrained_mean"], acc["pretrained_std"]),
                                  pm(acc["random_mean"], acc["random_std"]), f"{100 * acc['difference']:+.1f}",
                                  acc["verdict"], pm(f1["pretrained_mean"], f1["pretrained_std"]),
                                  pm(f1["random_mean"], f1["random_std"])])
    print("\n### Classification: learning rate selected on validation (per model, init and size), test at that lr\n")
    print(format_table(["model", "n", "pre lr", "rand lr", "pre val acc", "rand val acc", "pretrained test acc",
                        "random test acc", "diff", "verdict", "pretrained F1", "random F1"], selected_rows,
                       align="lrrrrrrrrlrr"))
    return {"summary": summary, "validation_selected": selected}


# ---------------------------------------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------------------------------------


def encode(model, texts: list[str], batch_size: int):
    import torch

    with torch.no_grad():
        emb = model.encode(texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=False)
    return torch.nn.functional.normalize(emb.float().cpu(), dim=-1)


def anisotropy(model, texts: list[str], batch_size: int) -> float:
    emb = encode(model, texts, batch_size)
    n = emb.shape[0]
    sims = emb @ emb.T
    return float((sims.sum() - sims.diagonal().sum()) / (n * (n - 1)))


def retrieval_scores(model, eval_data: dict, batch_size: int, k: int = 10) -> dict:
    import torch

    qids = eval_data["qids"]
    q = encode(model, [eval_data["queries"][qid] for qid in qids], batch_size)
    c = encode(model, eval_data["corpus_texts"], batch_size)
    doc_ids = eval_data["corpus_ids"]
    top = torch.topk(q @ c.T, k=min(k, c.shape[0]), dim=-1).indices.tolist()
    ndcg, mrr, recall = [], [], []
    for qid, ranked in zip(qids, top):
        relevant = eval_data["qrels"][qid]
        gains = [relevant.get(doc_ids[j], 0) for j in ranked]
        dcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(gains))
        ideal = sorted(relevant.values(), reverse=True)[:k]
        idcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
        ndcg.append(dcg / idcg)
        mrr.append(next((1 / (i + 1) for i, g in enumerate(gains) if g > 0), 0.0))
        recall.append(sum(g > 0 for g in gains) / len(relevant))
    return {"ndcg@10": statistics.fmean(ndcg), "mrr@10": statistics.fmean(mrr), "recall@10": statistics.fmean(recall)}


def embedding_eval(model, eval_data: dict, args) -> dict:
    start = time.perf_counter()
    scores = retrieval_scores(model, eval_data, args.eval_batch_size)
    scores["anisotropy"] = anisotropy(model, eval_data["anisotropy_texts"], args.eval_batch_size)
    scores["eval_s"] = round(time.perf_counter() - start, 1)
    return scores


def load_pairs(args) -> tuple[list[dict], dict]:
    path = find_split(args.pairs_dir, "train")
    if path is None:
        raise SystemExit(f"--pairs-dir {args.pairs_dir}: no train.jsonl[.gz]")
    pairs = [r for r in read_jsonl(path) if r.get("anchor") and r.get("positive")]
    retrieval_dir = args.retrieval_dir or next(
        (d for d in (os.path.join(args.pairs_dir, "test"), args.pairs_dir) if find_split(d, "corpus")), None)
    if retrieval_dir is None:
        raise SystemExit(f"no BEIR folder in {args.pairs_dir}/test or {args.pairs_dir}; pass --retrieval-dir")
    queries, corpus, qrels = read_retrieval(retrieval_dir)
    qids = sorted(qrels)
    if args.max_queries and len(qids) > args.max_queries:
        qids = sorted(random.Random("queries").sample(qids, args.max_queries))
    corpus_ids = sorted(corpus)
    if args.max_corpus and len(corpus_ids) > args.max_corpus:  # keep every relevant document, then distractors
        needed = {d for qid in qids for d in qrels[qid]}
        others = [d for d in corpus_ids if d not in needed]
        extra = random.Random("corpus").sample(others, max(0, min(len(others), args.max_corpus - len(needed))))
        corpus_ids = sorted(needed | set(extra))
    sample = random.Random("anisotropy").sample(corpus_ids, min(args.anisotropy_texts, len(corpus_ids)))
    eval_data = {"queries": queries, "qrels": {q: qrels[q] for q in qids}, "qids": qids, "corpus_ids": corpus_ids,
                 "corpus_texts": [corpus[d] for d in corpus_ids], "anisotropy_texts": [corpus[d] for d in sample],
                 "folder": retrieval_dir}
    return pairs, eval_data


def contrastive_train(model, pairs: list[dict], lr: float, seed: int, args, scratch: str) -> dict:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from transformers.trainer_callback import PrinterCallback

    try:
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.losses import MultipleNegativesRankingLoss
    try:
        from sentence_transformers.base.sampler import BatchSamplers
    except ImportError:
        from sentence_transformers.training_args import BatchSamplers

    dataset = Dataset.from_dict({"anchor": [p["anchor"] for p in pairs], "positive": [p["positive"] for p in pairs]})
    steps = args.contrastive_steps
    targs = SentenceTransformerTrainingArguments(**training_arguments(
        args, scratch, lr, seed, steps, max_steps=steps, per_device_train_batch_size=args.contrastive_batch_size,
        batch_sampler=BatchSamplers.NO_DUPLICATES))
    class Trainer(SentenceTransformerTrainer):
        def add_model_card_callback(self, default_args_dict):  # no model card is written: skip its bookkeeping
            pass

    trainer = Trainer(model=model, args=targs, train_dataset=dataset, loss=MultipleNegativesRankingLoss(model))
    trainer.remove_callback(PrinterCallback)
    start = time.perf_counter()
    output = trainer.train()
    return {"steps": output.global_step, "train_loss": output.training_loss,
            "train_s": round(time.perf_counter() - start, 1)}


def run_embeddings(args, models: list[dict], baselines: dict[str, dict]) -> list[dict]:
    from transformers import AutoConfig, set_seed

    from neobert_hf.integrations.sentence_transformers import build_sentence_transformer

    pairs, eval_data = load_pairs(args)
    if args.max_pairs and len(pairs) > args.max_pairs:
        pairs = random.Random("pairs").sample(pairs, args.max_pairs)
    print(f"\nembeddings: {len(pairs)} training pairs from {args.pairs_dir}; retrieval {eval_data['folder']}: "
          f"{len(eval_data['qids'])} queries over {len(eval_data['corpus_ids'])} documents; anisotropy over "
          f"{len(eval_data['anisotropy_texts'])} corpus texts", flush=True)

    def build(folder):
        return build_sentence_transformer(folder, pooling="mean", max_seq_length=args.max_length, device=args.device)

    records = []
    settings = settings_of(args, EMBEDDING_SETTINGS)
    sides = [(m["name"], PRE, m) for m in models] + [(b["name"], RAND, b) for b in baselines.values()]
    for label, init, spec in sides:
        before_cache = None
        for seed in args.seeds:
            if init == PRE:
                folder = spec["export_dir"]
            else:
                folder = os.path.join(args.work_dir, f"random-{spec['config_key']}-seed{seed}")
                if not os.path.isdir(folder):
                    save_random_encoder(AutoConfig.from_pretrained(spec["export_dir"]), spec["export_dir"], folder,
                                        seed)
            for lr in args.contrastive_lrs:
                record = reusable(args.reused["embeddings"], settings, init, label, spec["config_key"], seed=seed,
                                  lr=lr)
                if record is None:
                    if init == RAND or before_cache is None:  # the export is the same for every seed
                        before_cache = embedding_eval(build(folder), eval_data, args)
                    set_seed(seed)
                    model = build(folder)
                    with tempfile.TemporaryDirectory(dir=args.work_dir) as scratch:
                        train = contrastive_train(model, pairs, lr, seed, args, scratch)
                    after = embedding_eval(model, eval_data, args)
                    del model
                    record = {"model": label, "init": init, "config_key": spec["config_key"], "seed": seed, "lr": lr,
                              **train, "before": before_cache, "after": after, "settings": settings}
                records.append(record)
                before, after = record["before"], record["after"]
                print(f"  [{init} {label}] lr={lr:g} seed={seed} steps={record['steps']} "
                      f"loss={record['train_loss']:.3f} anisotropy {before['anisotropy']:.3f} -> "
                      f"{after['anisotropy']:.3f}, nDCG@10 {before['ndcg@10']:.3f} -> {after['ndcg@10']:.3f} "
                      f"({record['train_s']}s{', reused' if record.get('reused') else ''})", flush=True)
    return records


def embedding_tables(args, models: list[dict], records: list[dict]) -> dict:
    rows = [[r["model"], r["init"], f"{r['lr']:g}", r["seed"], r["steps"], f"{r['train_loss']:.3f}",
             f"{r['before']['anisotropy']:.3f}", f"{r['after']['anisotropy']:.3f}",
             f"{100 * r['before']['ndcg@10']:.1f}", f"{100 * r['after']['ndcg@10']:.1f}",
             f"{100 * r['after']['mrr@10']:.1f}", f"{100 * r['after']['recall@10']:.1f}", r["train_s"]]
            for r in records]
    print("\n### Embeddings: every run (anisotropy = mean off-diagonal cosine; retrieval metrics in %)\n")
    print(format_table(["model", "init", "lr", "seed", "steps", "train loss", "aniso before", "aniso after",
                        "nDCG@10 before", "nDCG@10 after", "MRR@10 after", "R@10 after", "s"], rows,
                       align="llrrrrrrrrrrr"))
    summary, summary_rows = [], []
    for m in models:
        for lr in args.contrastive_lrs:
            pre = [r for r in records if r["init"] == PRE and r["model"] == m["name"] and r["lr"] == lr]
            rand = [r for r in records if r["init"] == RAND and r["config_key"] == m["config_key"] and r["lr"] == lr]
            if not pre or not rand:
                continue
            entry = {"model": m["name"], "lr": lr}
            for when in ("before", "after"):
                for metric in ("ndcg@10", "mrr@10", "recall@10", "anisotropy"):
                    entry[f"{metric}_{when}"] = verdict([r[when][metric] for r in pre], [r[when][metric] for r in rand])
            summary.append(entry)
            nb, na, aa = entry["ndcg@10_before"], entry["ndcg@10_after"], entry["anisotropy_after"]
            ab = entry["anisotropy_before"]
            summary_rows.append([m["name"], f"{lr:g}", na["seeds"], pm(nb["pretrained_mean"], nb["pretrained_std"]),
                                 pm(nb["random_mean"], nb["random_std"]),
                                 pm(na["pretrained_mean"], na["pretrained_std"]),
                                 pm(na["random_mean"], na["random_std"]),
                                 f"{100 * na['difference']:+.1f}", f"{100 * na['spread']:.1f}", na["verdict"],
                                 f"{ab['pretrained_mean']:.3f} / {ab['random_mean']:.3f}",
                                 f"{aa['pretrained_mean']:.3f} / {aa['random_mean']:.3f}"])
    print("\n### Embeddings: pretrained vs random init, nDCG@10 mean ± std over seeds (%), anisotropy pre / rand\n")
    print("verdict on nDCG@10 after training: WIN when mean(pre) - mean(rand) > std(pre) + std(rand), loss when the "
          "reverse, else tie\n")
    print(format_table(["model", "lr", "seeds", "pre nDCG before", "rand nDCG before", "pre nDCG after",
                        "rand nDCG after", "diff after", "spread", "verdict", "aniso before", "aniso after"],
                       summary_rows, align="lrrrrrrrrlrr"))
    return {"summary": summary}


# ---------------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--pretrained", nargs="+", required=True, help="checkpoints/<step>/ folders (or exports)")
    parser.add_argument("--pretrain-world-size", type=int, default=1,
                        help="processes of the pretraining run (run_args.json does not record it), for token counts")
    parser.add_argument("--task-dir", help="classification folder (train/validation/test.jsonl[.gz], labels.json)")
    parser.add_argument("--pairs-dir", help="pairs folder (train.jsonl[.gz] of anchor/positive, test/ BEIR folder)")
    parser.add_argument("--retrieval-dir", help="BEIR folder, when it is not <pairs-dir>/test")
    parser.add_argument("--skip-classification", action="store_true")
    parser.add_argument("--skip-embeddings", action="store_true")
    group = parser.add_argument_group("classification")
    group.add_argument("--sizes", type=int, nargs="+", default=[250, 1000, 10000], help="training examples")
    group.add_argument("--lrs", type=float, nargs="+", default=[3e-4, 1e-3], help="peak learning rates")
    group.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    group.add_argument("--epochs", type=int, help="fixed epochs (default: the rule below)")
    group.add_argument("--target-examples", type=int, default=10000, help="epochs = ceil(target / n), clamped")
    group.add_argument("--min-epochs", type=int, default=3)
    group.add_argument("--max-epochs", type=int, default=20)
    group.add_argument("--batch-size", type=int, default=32)
    group.add_argument("--eval-batch-size", type=int, default=128)
    group.add_argument("--max-length", type=int, default=128)
    group.add_argument("--max-eval", type=int, default=0, help="cap validation and test examples (0: all)")
    group.add_argument("--classifier-pooling", choices=("config", "cls", "mean"), default="config",
                       help="classifier pooling for both inits (config: what the checkpoint's config says)")
    group = parser.add_argument_group("embeddings")
    group.add_argument("--contrastive-steps", type=int, default=300)
    group.add_argument("--contrastive-lrs", type=float, nargs="+", default=[3e-4])
    group.add_argument("--contrastive-batch-size", type=int, default=64)
    group.add_argument("--max-pairs", type=int, default=0, help="cap training pairs (0: all)")
    group.add_argument("--max-queries", type=int, default=0, help="cap test queries (0: all)")
    group.add_argument("--max-corpus", type=int, default=0, 
                       help="cap the test corpus, relevant documents kept (0: all)")
    group.add_argument("--anisotropy-texts", type=int, default=1000)
    group = parser.add_argument_group("run")
    group.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (Trainer's use_cpu only for cpu)")
    group.add_argument("--bf16", action="store_true", help="bf16 mixed precision in the Trainers (GPU)")
    group.add_argument("--threads", type=int, default=2, help="torch threads")
    group.add_argument("--work-dir", help="exports, random inits and scratch (default: a temporary folder)")
    group.add_argument("--keep-work", action="store_true", help="keep --work-dir")
    group.add_argument("--json", help="write every run and the summaries here")
    group.add_argument("--reuse", nargs="+", metavar="JSON",
                       help="--json files of earlier runs: grid cells measured there with the same settings (same "
                            "pretrained model, or the same config for random baselines) are reused, not rerun")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: sizes 50, one lr, one seed, 2 epochs, 5 contrastive steps, capped eval sets")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.lrs, args.seeds, args.epochs = [50], args.lrs[-1:], args.seeds[:1], 2
        args.contrastive_steps, args.contrastive_batch_size = 5, 16
        args.contrastive_lrs = args.contrastive_lrs[:1]
        args.max_eval = args.max_eval or 64
        args.max_pairs, args.max_queries = args.max_pairs or 500, args.max_queries or 50
        args.max_corpus, args.anisotropy_texts = args.max_corpus or 300, min(args.anisotropy_texts, 100)
    if not args.skip_classification and not args.task_dir:
        parser.error("--task-dir is required (or --skip-classification)")
    if not args.skip_embeddings and not args.pairs_dir:
        parser.error("--pairs-dir is required (or --skip-embeddings)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()  # the loading check is done here, not by warnings
    transformers.utils.logging.disable_progress_bar()
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:
        pass
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no CUDA device is visible")

    own_work = args.work_dir is None
    args.work_dir = args.work_dir or tempfile.mkdtemp(prefix="neobert-downstream-")
    os.makedirs(args.work_dir, exist_ok=True)
    info = machine_info()
    if args.device != "cpu":
        info["device"] = torch.cuda.get_device_name(torch.device(args.device))
    print(f"machine: {describe_machine(info)}; device {args.device}" + (f" ({info['device']})" if "device" in info
                                                                         else ""))
    started = time.perf_counter()
    args.reused = load_reusable(args.reuse)
    models, baselines = [], {}
    try:
        for k, checkpoint in enumerate(args.pretrained):
            spec = pretraining_label(checkpoint, args.pretrain_world_size)
            if any(m["name"] == spec["name"] for m in models):
                spec["name"] = f"{spec['name']}#{k}"
            out = os.path.join(args.work_dir, f"export-{k}-{spec['name'].replace('/', '_').replace('@', '-')}")
            spec.update(export_checkpoint(checkpoint, out))
            spec["config_key"] = config_key(spec["export_dir"])
            models.append(spec)
            baselines.setdefault(spec["config_key"], {"name": f"random ({spec['name']} config)",
                                                      "export_dir": spec["export_dir"],
                                                      "config_key": spec["config_key"]})
        print("\n### Models\n")
        print(format_table(
            ["model", "step", "pretraining tokens", "tokens/step", "parameters", "export", "random baseline"],
            [[m["name"], m["global_step"], human(m["tokens"]), human(m["tokens_per_step"]),
              f"{m['num_parameters'] / 1e6:.2f}M", f"{m['task']}, {len(m['files'])} files, {m['export_s']}s",
              baselines[m["config_key"]]["name"]] for m in models], align="lrrrrll"))
        print("(pretraining tokens = global_step x token slots per optimizer step from run_args.json, "
              f"x {args.pretrain_world_size} process(es))")

        payload = {"benchmark": "downstream", "args": {k: v for k, v in vars(args).items() if k != "reused"},
                   "machine": info, "models": [{k: v for k, v in m.items() if k != "files"} for m in models]}
        if not args.skip_classification:
            records = run_classification(args, models, baselines)
            payload["classification"] = {"task_dir": args.task_dir, "runs": records,
                                         **classification_tables(args, models, records)}
        if not args.skip_embeddings:
            records = run_embeddings(args, models, baselines)
            payload["embeddings"] = {"pairs_dir": args.pairs_dir, "runs": records,
                                     **embedding_tables(args, models, records)}
        payload["wall_s"] = round(time.perf_counter() - started, 1)
        print(f"\ntotal {payload['wall_s']}s")
        write_json(args.json, payload)
    finally:
        if own_work and not args.keep_work:
            shutil.rmtree(args.work_dir, ignore_errors=True)
        elif args.keep_work:
            print(f"work folder kept: {args.work_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
