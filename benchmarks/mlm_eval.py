# Copyright 2026 the neobert-hf authors. Licensed under the Apache License, Version 2.0.
"""A held-out MLM evaluator that is not any trainer's own loop: fixed documents, fixed masks, one padded forward.

It scores any saved masked-LM folder (`AutoModelForMaskedLM.from_pretrained`) on the same tokens with the same masks,
so that models trained by different pipelines are compared on equal terms:

- documents: the first `max_documents` rows of a held-out split (whole documents, never seen in training), each
  tokenized as `[CLS] text [SEP]` and cut into pieces of `max_seq_length` tokens along document boundaries (at most
  8 pieces per document, evenly spaced, so that one book does not make the score);
- masks: `mlm_probability` of the non-special tokens, drawn once from `seed`, every selected token replaced by
  `[MASK]`;
- metrics: mean cross-entropy and top-1 accuracy over the masked tokens, and the accuracy of always answering the
  most frequent masked token (the floor a model must beat).

    python benchmarks/mlm_eval.py runs/tiny/pretrain/checkpoints/1600 --data data/corpus --split validation
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

import torch


@dataclass
class MLMScore:
    loss: float
    accuracy: float
    most_frequent_accuracy: float
    masked_tokens: int
    documents: int
    pieces: int


@dataclass
class HeldOutSet:
    input_ids: list[torch.Tensor]  # one masked piece per entry, int64 [L]
    labels: list[torch.Tensor]  # original ids at masked positions, -100 elsewhere
    documents: int


def build_held_out_set(
    texts: list[str],
    tokenizer,
    *,
    max_seq_length: int = 128,
    mlm_probability: float = 0.2,
    max_pieces: int = 2000,
    max_pieces_per_document: int = 8,
    seed: int = 1234,
) -> HeldOutSet:
    """Tokenize whole documents, cut them into pieces (at most `max_pieces_per_document`, evenly spaced through a
    long document, so that no single book dominates the score), and draw the fixed masks."""
    generator = torch.Generator().manual_seed(seed)
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    pieces, labels, documents = [], [], 0
    for text in texts:
        if not text or not text.strip():
            continue
        ids = tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"]
        documents += 1
        starts = list(range(0, len(ids), max_seq_length))
        if len(starts) > max_pieces_per_document:
            step = len(starts) / max_pieces_per_document
            starts = [starts[int(k * step)] for k in range(max_pieces_per_document)]
        for start in starts:
            piece = torch.tensor(ids[start : start + max_seq_length], dtype=torch.long)
            candidates = ~torch.isin(piece, special)
            chosen = (torch.rand(piece.shape, generator=generator) < mlm_probability) & candidates
            if not chosen.any():
                continue
            target = torch.where(chosen, piece, torch.full_like(piece, -100))
            pieces.append(torch.where(chosen, torch.full_like(piece, tokenizer.mask_token_id), piece))
            labels.append(target)
            if len(pieces) >= max_pieces:
                return HeldOutSet(pieces, labels, documents)
    return HeldOutSet(pieces, labels, documents)


@torch.no_grad()
def score(model, held_out: HeldOutSet, pad_token_id: int, batch_size: int = 64) -> MLMScore:
    """Mean masked-token cross-entropy and top-1 accuracy of `model` on `held_out` (padded batches, eval mode)."""
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    targets = torch.cat([t[t != -100] for t in held_out.labels])
    most_frequent = torch.bincount(targets).max().item() / targets.numel()
    for start in range(0, len(held_out.input_ids), batch_size):
        ids = torch.nn.utils.rnn.pad_sequence(
            held_out.input_ids[start : start + batch_size], batch_first=True, padding_value=pad_token_id
        )
        labels = torch.nn.utils.rnn.pad_sequence(
            held_out.labels[start : start + batch_size], batch_first=True, padding_value=-100
        )
        lengths = torch.tensor([len(x) for x in held_out.input_ids[start : start + batch_size]])
        attention_mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
        logits = model(input_ids=ids, attention_mask=attention_mask).logits.float()
        selected = labels != -100
        masked_logits, masked_labels = logits[selected], labels[selected]
        total_loss += torch.nn.functional.cross_entropy(masked_logits, masked_labels, reduction="sum").item()
        correct += (masked_logits.argmax(-1) == masked_labels).sum().item()
        count += masked_labels.numel()
    return MLMScore(
        loss=total_loss / count,
        accuracy=correct / count,
        most_frequent_accuracy=most_frequent,
        masked_tokens=count,
        documents=held_out.documents,
        pieces=len(held_out.input_ids),
    )


def load_texts(data: str, split: str, max_documents: int, text_column: str = "text") -> list[str]:
    import datasets

    dataset = datasets.load_dataset(data, split=split)
    return dataset.select(range(min(max_documents, len(dataset))))[text_column]


def evaluate_folder(
    model_dir: str,
    data: str,
    *,
    split: str = "validation",
    tokenizer_dir: str | None = None,
    max_documents: int = 3000,
    max_pieces: int = 2000,
    max_seq_length: int = 128,
    mlm_probability: float = 0.2,
    seed: int = 1234,
) -> MLMScore:
    import neobert_hf  # noqa: F401  (registers NeoBERT with the Auto classes)
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or model_dir)
    held_out = build_held_out_set(
        load_texts(data, split, max_documents),
        tokenizer,
        max_seq_length=max_seq_length,
        mlm_probability=mlm_probability,
        max_pieces=max_pieces,
        seed=seed,
    )
    model = AutoModelForMaskedLM.from_pretrained(model_dir, attn_implementation="sdpa")
    return score(model, held_out, tokenizer.pad_token_id)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("--data", required=True, help="dataset folder or name with a held-out split")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--tokenizer", default=None)
    parser.add_argument("--max-documents", type=int, default=3000)
    parser.add_argument("--max-pieces", type=int, default=2000)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--mlm-probability", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    result = evaluate_folder(
        args.model_dir,
        args.data,
        split=args.split,
        tokenizer_dir=args.tokenizer,
        max_documents=args.max_documents,
        max_pieces=args.max_pieces,
        max_seq_length=args.max_seq_length,
        mlm_probability=args.mlm_probability,
        seed=args.seed,
    )
    print(json.dumps(asdict(result), indent=2))


if __name__ == "__main__":
    main()
