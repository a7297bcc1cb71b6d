"""Readers for the two local evaluation formats shared by the contrastive evaluators and the local MTEB tasks.

- **STS jsonl**: one JSON object per line with `sentence1`, `sentence2` and a numeric `score`.
- **BEIR folder**: `corpus.jsonl` (`_id`, `text`, optional `title`), `queries.jsonl` (`_id`, `text`) and
  `qrels/<split>.tsv` (tab-separated `query-id`, `corpus-id`, `score`, with a header line), the layout of the BEIR
  benchmark (https://github.com/beir-cellar/beir).

Only the standard library is used: these readers run before any optional package is imported, so that a broken file
is reported before a model is loaded.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass


__all__ = ["EvalDataError", "RetrievalData", "STSData", "read_beir_folder", "read_sts_jsonl"]


class EvalDataError(ValueError):
    """A local evaluation file that is missing, empty or malformed."""


@dataclass
class STSData:
    """Sentence pairs with a gold similarity score."""

    sentences1: list[str]
    sentences2: list[str]
    scores: list[float]

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class RetrievalData:
    """A BEIR-style split: `corpus` id -> `{"title", "text"}`, `queries` id -> text, `qrels` query id -> {doc id:
    relevance}. Only queries with at least one relevant document are kept."""

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def _read_jsonl(path: str) -> list[dict]:
    if not os.path.isfile(path):
        raise EvalDataError(f"{path} does not exist.")
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise EvalDataError(f"{path}, line {number}: not valid JSON ({error}).") from error
            if not isinstance(row, dict):
                raise EvalDataError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}.")
            rows.append((number, row))
    if not rows:
        raise EvalDataError(f"{path} is empty.")
    return rows


def read_sts_jsonl(path: str | os.PathLike) -> STSData:
    """Read an STS jsonl file (`sentence1`, `sentence2`, `score` on every line).

    Args:
        path (`str` or `os.PathLike`): the `.jsonl` file.

    Returns:
        [`STSData`]: the pairs and their scores, in file order.

    Raises:
        [`EvalDataError`]: a missing or empty file, a line that is not a JSON object, a missing key or a score that is
            not a number.
    """
    path = os.fspath(path)
    data = STSData([], [], [])
    for number, row in _read_jsonl(path):
        missing = [key for key in ("sentence1", "sentence2", "score") if key not in row]
        if missing:
            raise EvalDataError(
                f"{path}, line {number}: missing key(s) {missing}; an STS line needs sentence1, sentence2 and score "
                f"(found {sorted(row)})."
            )
        score = row["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise EvalDataError(f"{path}, line {number}: score must be a number, got {score!r}.")
        data.sentences1.append(str(row["sentence1"]))
        data.sentences2.append(str(row["sentence2"]))
        data.scores.append(float(score))
    if len(set(data.scores)) < 2:
        raise EvalDataError(f"{path}: every score is the same, so no correlation can be computed.")
    return data


def read_beir_folder(folder: str | os.PathLike, split: str = "test") -> RetrievalData:
    """Read a BEIR-style retrieval folder.

    Args:
        folder (`str` or `os.PathLike`): holds `corpus.jsonl`, `queries.jsonl` and `qrels/<split>.tsv`.
        split (`str`, *optional*, defaults to `"test"`): which qrels file to read.

    Returns:
        [`RetrievalData`]: corpus, queries that have a relevant document, and their relevance judgements.

    Raises:
        [`EvalDataError`]: a missing file, a malformed line, a duplicated id, or a judgement that names a query or
            document that does not exist.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise EvalDataError(f"{folder} is not a folder; a BEIR folder holds corpus.jsonl, queries.jsonl, qrels/.")
    corpus: dict[str, dict[str, str]] = {}
    corpus_path = os.path.join(folder, "corpus.jsonl")
    for number, row in _read_jsonl(corpus_path):
        if "_id" not in row or "text" not in row:
            raise EvalDataError(
                f"{corpus_path}, line {number}: a corpus line needs _id and text (found {sorted(row)})."
            )
        doc_id = str(row["_id"])
        if doc_id in corpus:
            raise EvalDataError(f"{corpus_path}, line {number}: duplicated document id {doc_id!r}.")
        corpus[doc_id] = {"title": str(row.get("title") or ""), "text": str(row["text"])}
    queries: dict[str, str] = {}
    queries_path = os.path.join(folder, "queries.jsonl")
    for number, row in _read_jsonl(queries_path):
        if "_id" not in row or "text" not in row:
            raise EvalDataError(
                f"{queries_path}, line {number}: a query line needs _id and text (found {sorted(row)})."
            )
        query_id = str(row["_id"])
        if query_id in queries:
            raise EvalDataError(f"{queries_path}, line {number}: duplicated query id {query_id!r}.")
        queries[query_id] = str(row["text"])

    qrels_path = os.path.join(folder, "qrels", f"{split}.tsv")
    if not os.path.isfile(qrels_path):
        qrels_dir = os.path.join(folder, "qrels")
        found = sorted(os.listdir(qrels_dir)) if os.path.isdir(qrels_dir) else []
        raise EvalDataError(f"{qrels_path} does not exist (qrels files found: {found or 'none'}).")
    qrels: dict[str, dict[str, int]] = {}
    with open(qrels_path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        for number, fields in enumerate(reader, start=1):
            if not fields or not "".join(fields).strip():
                continue
            if number == 1 and fields[0].strip().lower() in ("query-id", "query_id", "qid"):
                continue
            if len(fields) != 3:
                raise EvalDataError(f"{qrels_path}, line {number}: expected query-id, corpus-id, score; got {fields}.")
            query_id, doc_id, score = (field.strip() for field in fields)
            try:
                relevance = int(float(score))
            except ValueError as error:
                raise EvalDataError(f"{qrels_path}, line {number}: score {score!r} is not a number.") from error
            if query_id not in queries:
                raise EvalDataError(f"{qrels_path}, line {number}: query {query_id!r} is not in queries.jsonl.")
            if doc_id not in corpus:
                raise EvalDataError(f"{qrels_path}, line {number}: document {doc_id!r} is not in corpus.jsonl.")
            if relevance > 0:
                qrels.setdefault(query_id, {})[doc_id] = relevance
    if not qrels:
        raise EvalDataError(f"{qrels_path} has no judgement with a positive score.")
    return RetrievalData(corpus=corpus, queries={q: queries[q] for q in queries if q in qrels}, qrels=qrels)
