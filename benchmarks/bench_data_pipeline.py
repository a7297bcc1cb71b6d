# Copyright 2026 the neobert-hf authors. Licensed under the Apache License, Version 2.0.
"""Tokens per second of the pretraining data pipeline on real text: stream -> tokenize -> pack -> mask.

Side by side, in one run, over the same documents:

- `main process`: the stream tokenized lazily by the reading process (`datasets.IterableDataset.map`, what
  `neobert-hf pretrain --streaming true` does without `preprocessing_num_workers`), with the tokenizer's own
  thread pool on (its default) and off;
- `workers=N`: the stream tokenized by `N` worker processes (`ParallelTokenizedStream`, i.e.
  `preprocessing_num_workers: N`), for 1, 2 and `--workers` N;
- `stock datasets.map(num_proc=N)`: the map-style pre-pass of transformers' `run_mlm.py` (tokenize everything first
  with `datasets` multiprocessing; its time is counted in the row), then packed.

Every row packs and masks the same way (`MicrobatchDataset`, 512-token chunks, 8192-token batches, shuffle buffer)
and counts the real tokens of the batches it yields. Worker start-up (spawning, importing the tokenizer) is shown
apart: it is paid once per run.

```bash
python benchmarks/bench_data_pipeline.py                                  # /tmp/bench/corpora/short if built
python benchmarks/bench_data_pipeline.py --corpus data/corpus/train.jsonl.gz --documents 20000 --workers 4
```
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CORPORA = ("/tmp/bench/corpora/short/train.jsonl.gz", os.path.join(REPO, "data/corpus/train.jsonl.gz"))


def _files(corpus: str | None) -> list[str]:
    if corpus:
        return sorted(glob.glob(os.path.join(corpus, "*train*.jsonl*"))) if os.path.isdir(corpus) else [corpus]
    return [next(path for path in DEFAULT_CORPORA if os.path.exists(path))]


def _stream(files: list[str], documents: int):
    from datasets import load_dataset

    return load_dataset("json", data_files=files, split="train", streaming=True).select_columns(["text"]).take(
        documents
    )


def _packer(source, masker, seed: int = 0):
    from neobert_hf.data import MicrobatchDataset

    return MicrobatchDataset(
        source, tokens_per_batch=8192, max_seq_length=512, masker=masker, shuffle_buffer_size=4096, seed=seed
    )


def _consume(dataset, pad_token_id: int) -> tuple[int, int, float, float]:
    """(batches, real tokens, seconds to the first batch, seconds in all)."""
    start = time.perf_counter()
    first = None
    batches = tokens = 0
    for batch in dataset:
        if first is None:
            first = time.perf_counter() - start
        batches += 1
        tokens += int((batch["input_ids"] != pad_token_id).sum())  # [PAD] never comes out of text
    return batches, tokens, first or 0.0, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", help="a .jsonl(.gz) file with a `text` column, or a folder of *train*.jsonl*")
    parser.add_argument("--documents", type=int, default=30000, help="documents read in every row")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="N of the `workers=N` row")
    parser.add_argument("--batch-size", type=int, default=1000, help="documents per tokenizer call / worker task")
    parser.add_argument("--rounds", type=int, default=2, help="repeat every row; the table keeps each row's best")
    args = parser.parse_args()

    from neobert_hf.data import MLMMasker, TokenizeFunction, load_tokenizer, tokenize_dataset
    from neobert_hf.data.tokenization import ParallelTokenizedStream

    files = _files(args.corpus)
    tokenizer = load_tokenizer(os.path.join(REPO, "data/tokenizer")).tokenizer
    masker = MLMMasker.from_tokenizer(tokenizer, mlm_probability=0.3)
    print(f"corpus: {files} (first {args.documents:,} documents); {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.2f}; python {sys.version.split()[0]}")

    rows: dict[str, list] = {}

    def run(name: str, source, startup: float | None = None, prepass: float = 0.0) -> None:
        batches, tokens, first, seconds = _consume(_packer(source, masker), tokenizer.pad_token_id)
        rows.setdefault(name, []).append((batches, tokens, seconds + prepass, first, startup, prepass))
        print(f"  {name}: {batches} batches, {tokens:,} tokens in {seconds + prepass:.1f} s", flush=True)

    from datasets import Dataset

    texts = Dataset.from_list(list(_stream(files, args.documents)))
    for round_index in range(args.rounds):
        print(f"round {round_index + 1}/{args.rounds} (load average {os.getloadavg()[0]:.2f})", flush=True)
        # Stream tokenized by the reading process (tokenizer threads on, then off).
        for threads in ("on", "off"):
            os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads == "on" else "false"
            stream = tokenize_dataset(_stream(files, args.documents), tokenizer)
            run(f"main process, tokenizer threads {threads}", stream)
        os.environ.pop("TOKENIZERS_PARALLELISM", None)

        # Stream tokenized by N worker processes.
        for workers in sorted({1, 2, args.workers}):
            source = ParallelTokenizedStream(
                _stream(files, args.documents), TokenizeFunction(tokenizer, "text"), num_workers=workers,
                batch_size=args.batch_size,
            )
            # Start the pool before the clock (its cost, paid once per run, is shown apart): every worker has
            # started and imported its modules once it has answered.
            start = time.perf_counter()
            source._workers().map(abs, range(4 * workers), chunksize=1)
            startup = time.perf_counter() - start
            run(f"workers={workers} (ParallelTokenizedStream)", source, startup=startup)
            source.close()

        # Stock map-style pre-pass: datasets.map with num_proc, then packing of the tokenized table.
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            tokenized = texts.map(
                TokenizeFunction(tokenizer, "text"), batched=True, batch_size=args.batch_size, num_proc=args.workers,
                remove_columns=["text"], cache_file_name=os.path.join(cache, "tokenized.arrow"),
            )
            prepass = time.perf_counter() - start
            run(f"stock datasets.map(num_proc={args.workers}) pre-pass, then packing", tokenized, prepass=prepass)

    print()
    print(f"best of {args.rounds} round(s) per row (the machine's other load only slows a run down):")
    print("| pipeline | batches | real tokens | seconds | real tokens/s | first batch after | worker start-up |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, runs in rows.items():
        batches, tokens, seconds, first, startup, prepass = min(runs, key=lambda run: run[2])
        note = f" (pre-pass {prepass:.1f})" if prepass else ""
        print(
            f"| {name} | {batches} | {tokens:,} | {seconds:.1f}{note} | {tokens / seconds:,.0f} | {first:.2f} s | "
            + (f"{startup:.1f} s |" if startup is not None else "- |")
        )
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
