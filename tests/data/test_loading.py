"""Loading any datasets source (files of every format, globs, lists, save_to_disk folders, streams), split
slicing, text-column detection, eval resolution without leakage, and the error messages."""

import gzip
import json
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict, IterableDataset

from neobert_hf.data import (
    find_text_column,
    load_pretraining_data,
    load_splits,
    select_split,
)

REPO = Path(__file__).resolve().parents[2]
TEXTS = [f"document number {i} is about {'dogs' if i % 2 else 'cats'} and rivers" for i in range(50)]


def write_jsonl(path: Path, rows: list[dict], compress: bool = False) -> Path:
    lines = "".join(json.dumps(row) + "\n" for row in rows)
    if compress:
        with gzip.open(path, "wt") as f:
            f.write(lines)
    else:
        path.write_text(lines)
    return path


@pytest.fixture
def cache(tmp_path) -> str:
    return str(tmp_path / "hf_cache")


def texts_of(dataset, column="text") -> list[str]:
    return [row[column] for row in dataset]


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "json", "txt", "csv", "tsv", "parquet"])
def test_load_files_of_each_format(tmp_path, cache, fmt):
    path = tmp_path / f"corpus.{fmt}"
    if fmt.startswith("json"):
        write_jsonl(path, [{"text": t, "id": i} for i, t in enumerate(TEXTS)], compress=fmt.endswith(".gz"))
    elif fmt == "txt":
        path.write_text("\n".join(TEXTS) + "\n")
    elif fmt in ("csv", "tsv"):
        sep = "," if fmt == "csv" else "\t"
        path.write_text("id" + sep + "text\n" + "".join(f"{i}{sep}{t}\n" for i, t in enumerate(TEXTS)))
    else:
        Dataset.from_dict({"text": TEXTS, "id": list(range(50))}).to_parquet(str(path))
    data = load_pretraining_data(path, cache_dir=cache)
    assert isinstance(data.train, Dataset) and data.text_column == "text" and not data.tokenized
    assert texts_of(data.train) == TEXTS
    assert data.eval is None and data.eval_origin == "none"


def test_load_glob_list_and_split_mapping(tmp_path, cache):
    for k in range(3):
        write_jsonl(tmp_path / f"part-{k}.jsonl", [{"text": t} for t in TEXTS[k * 10 : (k + 1) * 10]])
    write_jsonl(tmp_path / "held_out.jsonl", [{"text": t} for t in TEXTS[40:]])
    assert texts_of(load_pretraining_data(str(tmp_path / "part-*.jsonl"), cache_dir=cache).train) == TEXTS[:30]
    listed = load_pretraining_data([tmp_path / "part-2.jsonl", tmp_path / "part-0.jsonl"], cache_dir=cache)
    assert texts_of(listed.train) == TEXTS[20:30] + TEXTS[:10]
    mapped = load_pretraining_data(
        {"train": str(tmp_path / "part-*.jsonl"), "dev": tmp_path / "held_out.jsonl"}, cache_dir=cache
    )
    assert mapped.eval_origin == "auto_split" and texts_of(mapped.eval) == TEXTS[40:]


def test_load_from_disk_folder_map_style_and_streaming(tmp_path):
    DatasetDict(
        {"train": Dataset.from_dict({"content": TEXTS[:40]}), "test": Dataset.from_dict({"content": TEXTS[40:]})}
    ).save_to_disk(str(tmp_path / "saved"))
    data = load_pretraining_data(tmp_path / "saved")
    assert data.text_column == "content" and len(data.train) == 40
    assert data.eval_origin == "auto_split" and len(data.eval) == 10
    streamed = load_pretraining_data(tmp_path / "saved", streaming=True)
    assert isinstance(streamed.train, IterableDataset) and streamed.streaming
    assert texts_of(streamed.train, "content") == TEXTS[:40]
    Dataset.from_dict({"text": TEXTS}).save_to_disk(str(tmp_path / "single"))
    assert len(load_pretraining_data(tmp_path / "single").train) == 50


def test_streaming_jsonl(tmp_path, cache):
    write_jsonl(tmp_path / "train.jsonl", [{"text": t} for t in TEXTS])
    data = load_pretraining_data(tmp_path / "train.jsonl", streaming=True, cache_dir=cache)
    assert isinstance(data.train, IterableDataset)
    assert texts_of(data.train) == TEXTS


def test_split_slicing(tmp_path, cache):
    write_jsonl(tmp_path / "train.jsonl", [{"text": t} for t in TEXTS])
    splits = load_splits(tmp_path / "train.jsonl", cache_dir=cache)
    assert texts_of(select_split(splits, "train[:10%]")) == TEXTS[:5]
    assert texts_of(select_split(splits, "train[5:15]")) == TEXTS[5:15]
    assert texts_of(select_split(splits, "train[-3:]")) == TEXTS[-3:]
    data = load_pretraining_data(tmp_path / "train.jsonl", train_split="train[10:]", eval_split="train[:10]",
                                 cache_dir=cache)
    assert texts_of(data.train) == TEXTS[10:] and texts_of(data.eval) == TEXTS[:10] and data.eval_origin == "split"
    streams = load_splits(tmp_path / "train.jsonl", streaming=True, cache_dir=cache)
    assert texts_of(select_split(streams, "train[5:15]")) == TEXTS[5:15]
    with pytest.raises(ValueError, match="percent slices need the dataset length"):
        select_split(streams, "train[:10%]")
    with pytest.raises(ValueError, match=r"Split 'validation' not found; the dataset has the splits \['train'\]"):
        select_split(splits, "validation")


def test_text_column_detection_and_errors():
    assert find_text_column(Dataset.from_dict({"id": [1], "sentence": ["a"]})) == "sentence"
    assert find_text_column(Dataset.from_dict({"id": [1], "body_html": ["a"]})) == "body_html"  # the only string
    assert find_text_column(Dataset.from_dict({"title": ["t"], "text": ["a"]})) == "text"  # preferred name
    with pytest.raises(ValueError, match=r"among the string columns \['title', 'abstract'\]; pass `text_column`"):
        find_text_column(Dataset.from_dict({"title": ["t"], "abstract": ["a"]}))
    with pytest.raises(ValueError, match=r"Text column 'txt' not found; the dataset has the columns \['id', 'text'\]"):
        find_text_column(Dataset.from_dict({"id": [1], "text": ["a"]}), "txt")
    with pytest.raises(ValueError, match="no string column"):
        find_text_column(Dataset.from_dict({"id": [1], "score": [0.5]}))
    streamed = Dataset.from_dict({"id": [1], "content": ["a"]}).to_iterable_dataset()
    assert find_text_column(streamed) == "content"


def test_eval_fraction_is_random_seeded_and_disjoint(tmp_path, cache):
    write_jsonl(tmp_path / "train.jsonl", [{"text": t} for t in TEXTS])
    data = load_pretraining_data(tmp_path / "train.jsonl", eval_fraction=0.2, seed=1, cache_dir=cache)
    assert data.eval_origin == "fraction" and len(data.eval) == 10 and len(data.train) == 40
    assert set(texts_of(data.eval)).isdisjoint(texts_of(data.train))
    assert texts_of(data.eval) != TEXTS[:10]  # random, not the head
    again = load_pretraining_data(tmp_path / "train.jsonl", eval_fraction=0.2, seed=1, cache_dir=cache)
    assert texts_of(again.eval) == texts_of(data.eval)
    # A stream cannot be split at random: skipped with a warning, as the original trainer did.
    streamed = load_pretraining_data(tmp_path / "train.jsonl", eval_fraction=0.2, streaming=True, cache_dir=cache)
    assert streamed.eval is None and streamed.eval_origin == "none" and "use eval_samples" in streamed.description


@pytest.mark.parametrize("streaming", [False, True])
def test_stream_head_eval_is_skipped_for_training(tmp_path, cache, streaming):
    write_jsonl(tmp_path / "train.jsonl", [{"text": t} for t in TEXTS])
    data = load_pretraining_data(tmp_path / "train.jsonl", eval_samples=8, streaming=streaming, cache_dir=cache)
    assert data.eval_origin == "head"
    assert texts_of(data.eval) == TEXTS[:8]
    assert texts_of(data.train) == TEXTS[8:]  # no leakage, nothing lost


def test_explicit_eval_split_wins_and_detection_order(tmp_path, cache):
    for name in ("train", "test", "validation"):
        write_jsonl(tmp_path / f"{name}.jsonl", [{"text": f"{name} {i}"} for i in range(3)])
    files = {name: tmp_path / f"{name}.jsonl" for name in ("train", "test", "validation")}
    assert texts_of(load_pretraining_data(files, cache_dir=cache).eval)[0] == "validation 0"
    explicit = load_pretraining_data(files, eval_split="test", cache_dir=cache)
    assert explicit.eval_origin == "split" and texts_of(explicit.eval)[0] == "test 0"


@pytest.mark.integration
def test_shipped_corpus_loads_with_its_validation_split(tmp_path):
    data = load_pretraining_data(REPO / "data" / "corpus", cache_dir=str(tmp_path))
    assert data.text_column == "text" and data.eval_origin == "auto_split"
    assert len(data.train) > 100_000 and 1000 < len(data.eval) < 2000
    assert set(data.train.unique("source")) == {"wordnet", "python-docs"}


def test_pretokenized_data_needs_no_text_column(tmp_path):
    Dataset.from_dict({"input_ids": [[2, 10, 3], [2, 11, 12, 3]]}).save_to_disk(str(tmp_path / "tok"))
    data = load_pretraining_data(tmp_path / "tok")
    assert data.tokenized and data.text_column is None and "pre-tokenized" in data.description


def test_errors_say_what_is_wrong(tmp_path, cache):
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    with pytest.raises(ValueError, match="is empty"):
        load_pretraining_data(empty, cache_dir=cache)
    write_jsonl(tmp_path / "rows.jsonl", [{"text": t} for t in TEXTS])
    with pytest.raises(ValueError, match="is empty"):
        load_pretraining_data(tmp_path / "rows.jsonl", train_split="train[50:]", cache_dir=cache)
    with pytest.raises(ValueError, match=r"Text column 'body' not found; the dataset has the columns \['text'\]"):
        load_pretraining_data(tmp_path / "rows.jsonl", text_column="body", cache_dir=cache)
    with pytest.raises(FileNotFoundError, match="does not exist. Pass an existing file"):
        load_pretraining_data(tmp_path / "missing.jsonl")
    with pytest.raises(FileNotFoundError, match="No file matches the pattern"):
        load_pretraining_data(str(tmp_path / "nothing-*.jsonl"))
    (tmp_path / "notes.docx").write_text("x")
    with pytest.raises(ValueError, match="Cannot tell the format"):
        load_pretraining_data(tmp_path / "notes.docx")
    with pytest.raises(ValueError, match="either eval_fraction or eval_samples"):
        load_pretraining_data(tmp_path / "rows.jsonl", eval_fraction=0.1, eval_samples=3)
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE=1"):
        load_pretraining_data("someone/not-a-cached-dataset", cache_dir=cache)


def test_load_split_is_the_one_path_for_files_folders_and_splits(tmp_path, cache):
    """GLUE and contrastive data go through `load_split`: a file is one split whatever the split name, a folder must
    have the split, extensions can be restricted, and a bad line is named with its file, line and column."""
    from neobert_hf.data.loading import FILE_FORMATS, load_split

    path = write_jsonl(tmp_path / "rows.jsonl", [{"text": t} for t in TEXTS])
    assert len(load_split(path, "validation", cache_dir=cache)) == 50  # a file is its own split
    assert len(load_split(path, "validation[:5]", cache_dir=cache)) == 5
    DatasetDict(train=Dataset.from_dict({"text": TEXTS[:4]})).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(ValueError, match=r"the pairs has no split 'validation'; its splits: \['train'\]"):
        load_split(tmp_path / "saved", "validation", what="the pairs")
    (tmp_path / "table.parquet").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"train_file .*table.parquet: use a .csv or .json file"):
        load_split(tmp_path / "table.parquet", what="train_file", extensions=(".csv", ".json"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": oops}\n')
    with pytest.raises(ValueError, match=r"Cannot read train_file: .*bad.jsonl, line 2: not valid JSON .*column 10"):
        load_split(bad, what="train_file", cache_dir=cache)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match="train_file is empty"):
        load_split(tmp_path / "empty.csv", what="train_file", cache_dir=cache)
    assert FILE_FORMATS[".tsv"] == ("csv", {"sep": "\t"}) and FILE_FORMATS[".jsonl"][0] == "json"
