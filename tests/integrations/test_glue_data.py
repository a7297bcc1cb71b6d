"""GLUE tasks, data loading and preprocessing on tiny local files (and a stand-in for the Hub dataset), and the
argument checks that fail before anything is written."""

import dataclasses

import datasets
import pytest
from helpers.glue import COLUMNS, NUM_LABELS, make_tokenizer, rows, task_files, write_rows

from neobert_hf.integrations.glue import (
    GLUE_TASKS,
    GlueDataError,
    GlueArguments,
    GlueDataArguments,
    GlueModelArguments,
    GlueTrainingArguments,
    get_glue_task,
    load_glue_data,
    tokenize_glue,
)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


def args_for(tmp_path, task, **kw):
    return GlueArguments.from_flat(output_dir=str(tmp_path / "out"), task_name=task, model_name_or_path="unused", **kw)


def test_task_specs_match_the_glue_columns_and_labels():
    assert set(GLUE_TASKS) == set(COLUMNS)
    for name, task in GLUE_TASKS.items():
        assert task.text_columns == COLUMNS[name]
        assert task.num_labels == NUM_LABELS.get(name, 2)
    assert GLUE_TASKS["mnli"].label_names == ("entailment", "neutral", "contradiction")
    assert [s for s, _ in GLUE_TASKS["mnli"].eval_splits] == ["matched", "mismatched"]
    assert get_glue_task("STS-B").name == "stsb"


@pytest.mark.parametrize("task", list(GLUE_TASKS))
def test_every_task_loads_and_tokenizes_local_files(tmp_path, tokenizer, task):
    fmt = "jsonl" if task in ("mnli", "stsb", "qqp") else "csv"
    args = args_for(tmp_path, task, **task_files(tmp_path, task, n_train=10, n_eval=6, fmt=fmt))
    data = load_glue_data(args)
    spec = GLUE_TASKS[task]
    assert list(data["eval"]) == [name for name, _ in spec.eval_splits]
    train = tokenize_glue(data["train"], tokenizer, spec, max_seq_length=16)
    assert set(train.column_names) == {"input_ids", "attention_mask", "label"}  # no token_type_ids, no text
    assert len(train) == 10 and max(len(ids) for ids in train["input_ids"]) <= 16
    sep = tokenizer.sep_token_id
    assert all(ids.count(sep) == len(spec.text_columns) for ids in train["input_ids"])  # single or pair encoding
    expected = [r["label"] for r in rows(task, 10, seed=1)]
    if spec.is_regression:
        assert train["label"] == pytest.approx(expected)
        assert train.features["label"].dtype == "float32"
    else:
        assert train["label"] == expected and train.features["label"].dtype == "int64"


def test_mnli_has_matched_and_mismatched_evaluation_sets(tmp_path):
    files = task_files(tmp_path, "mnli", n_train=9, n_eval=6, fmt="jsonl")
    test_rows = [{k: v for k, v in r.items() if k != "label"} for r in rows("mnli", 5, seed=7)]
    files["test_file"] = str(write_rows(tmp_path / "test_m.jsonl", test_rows))
    files["test_mismatched_file"] = str(write_rows(tmp_path / "test_mm.jsonl", test_rows[:3]))
    data = load_glue_data(args_for(tmp_path, "mnli", **files))
    assert {k: len(v) for k, v in data["eval"].items()} == {"matched": 6, "mismatched": 8}
    assert {k: len(v) for k, v in data["test"].items()} == {"test_matched": 5, "test_mismatched": 3}
    assert "label" not in data["test"]["test_matched"].column_names


def test_label_names_are_mapped_to_the_task_ids(tmp_path):
    files = task_files(tmp_path, "rte", n_train=6, n_eval=4, label_style="name")
    data = load_glue_data(args_for(tmp_path, "rte", **files))
    assert data["train"]["label"] == [i % 2 for i in range(6)]  # entailment = 0, not_entailment = 1


def test_hub_dataset_splits_and_class_labels(tmp_path, monkeypatch):
    """The Hub path, with `datasets.load_dataset` replaced by an in-memory copy of nyu-mll/glue's MNLI layout."""
    features = datasets.Features(
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
            "idx": datasets.Value("int32"),
        }
    )

    def split(n, hidden=False):
        data = rows("mnli", n)
        if hidden:
            for r in data:
                r["label"] = -1
        return datasets.Dataset.from_list(data, features=features)

    calls = []

    def fake_load_dataset(name, config=None, **kw):
        calls.append((name, config))
        return datasets.DatasetDict(
            train=split(9),
            validation_matched=split(4),
            validation_mismatched=split(5),
            test_matched=split(3, hidden=True),
            test_mismatched=split(2, hidden=True),
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = load_glue_data(args_for(tmp_path, "mnli"))
    assert calls == [("nyu-mll/glue", "mnli")]
    assert {k: len(v) for k, v in data["eval"].items()} == {"matched": 4, "mismatched": 5}
    assert set(data["test"]) == {"test_matched", "test_mismatched"}
    assert "label" not in data["test"]["test_mismatched"].column_names  # hidden labels (-1) dropped

    # A ClassLabel with another number of classes is a label-count disagreement.
    def two_classes(name, config=None, **kw):
        ds = datasets.Dataset.from_list(
            [{"premise": "a", "hypothesis": "b", "label": 0}],
            features=datasets.Features(
                {
                    "premise": datasets.Value("string"),
                    "hypothesis": datasets.Value("string"),
                    "label": datasets.ClassLabel(names=["yes", "no"]),
                }
            ),
        )
        return datasets.DatasetDict(train=ds, validation_matched=ds, validation_mismatched=ds)

    monkeypatch.setattr(datasets, "load_dataset", two_classes)
    with pytest.raises(GlueDataError, match="has 2 label classes.*label count disagrees"):
        load_glue_data(args_for(tmp_path, "mnli"))

    def offline(*a, **kw):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(GlueDataError, match="train_file and validation_file"):
        load_glue_data(args_for(tmp_path, "mnli"))


# --- bad input: a clear error, raised while checking (nothing is written) ---


def test_unknown_task_names_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown GLUE task 'colaa'; choose one of: cola, sst2"):
        args_for(tmp_path, "colaa")
    with pytest.raises(ValueError, match="no task_name"):
        GlueArguments.from_flat(output_dir=str(tmp_path), model_name_or_path="m")


def test_num_labels_that_disagree_with_the_task(tmp_path):
    with pytest.raises(ValueError, match="num_labels=2 disagrees with GLUE task 'mnli', which has 3 labels"):
        args_for(tmp_path, "mnli", num_labels=2)
    assert args_for(tmp_path, "stsb", num_labels=1).model.num_labels == 1


def test_missing_columns_are_named(tmp_path):
    files = task_files(tmp_path, "mrpc", n_train=4, n_eval=4)
    bad = [{"text_a": r["sentence1"], "text_b": r["sentence2"], "label": r["label"]} for r in rows("mrpc", 4)]
    files["train_file"] = str(write_rows(tmp_path / "bad.csv", bad))
    with pytest.raises(GlueDataError, match=r"needs the columns \['sentence1', 'sentence2', 'label'\].*missing"):
        load_glue_data(args_for(tmp_path, "mrpc", **files))
    no_label = [{k: v for k, v in r.items() if k != "label"} for r in rows("mrpc", 4)]
    files = task_files(tmp_path, "mrpc", n_train=4, n_eval=4)
    files["validation_file"] = str(write_rows(tmp_path / "nolabel.csv", no_label))
    with pytest.raises(GlueDataError, match=r"missing \['label'\]"):
        load_glue_data(args_for(tmp_path, "mrpc", **files))


def test_labels_outside_the_task_are_a_count_disagreement(tmp_path):
    data = rows("rte", 6)
    data[3]["label"] = 2  # a third class in a two-class task
    files = task_files(tmp_path, "rte", n_train=4, n_eval=4)
    files["train_file"] = str(write_rows(tmp_path / "three.csv", data))
    with pytest.raises(GlueDataError, match=r"label ids \[2\] outside 0..1.*label count disagrees"):
        load_glue_data(args_for(tmp_path, "rte", **files))
    data[3]["label"] = "maybe"
    files["train_file"] = str(write_rows(tmp_path / "named.csv", data))
    with pytest.raises(GlueDataError, match="'maybe'.*not labels of GLUE task 'rte'"):
        load_glue_data(args_for(tmp_path, "rte", **files))


def test_local_data_needs_its_evaluation_sets(tmp_path):
    files = task_files(tmp_path, "mnli", n_train=4, n_eval=4)
    files.pop("validation_mismatched_file")
    with pytest.raises(ValueError, match="validation_mismatched_file"):
        args_for(tmp_path, "mnli", **files)
    with pytest.raises(ValueError, match="only apply to mnli"):
        args_for(tmp_path, "rte", validation_mismatched_file="x.csv", **task_files(tmp_path, "rte"))
    with pytest.raises(ValueError, match="both train_file and validation_file"):
        args_for(tmp_path, "rte", train_file=files["train_file"])
    with pytest.raises(GlueDataError, match="does not exist"):
        load_glue_data(args_for(tmp_path, "rte", train_file="nope.csv", validation_file="nope.csv"))
    (tmp_path / "data.parquet").write_text("x")
    with pytest.raises(GlueDataError, match=".csv, .tsv, .json or .jsonl"):
        load_glue_data(args_for(tmp_path, "rte", train_file=str(tmp_path / "data.parquet"), validation_file="x"))


def test_metric_for_best_model_must_be_reported_by_the_task(tmp_path):
    assert args_for(tmp_path, "cola").training.metric_for_best_model == "matthews_correlation"
    assert args_for(tmp_path, "mnli").training.metric_for_best_model == "matched_accuracy"
    assert args_for(tmp_path, "stsb", metric_for_best_model="eval_spearmanr").training.greater_is_better is True
    assert args_for(tmp_path, "rte", metric_for_best_model="loss").training.greater_is_better is False
    with pytest.raises(ValueError, match="'accuracy' is not reported for mnli; choose one of: matched_loss"):
        args_for(tmp_path, "mnli", metric_for_best_model="accuracy")
    with pytest.raises(ValueError, match="early_stopping_patience needs"):
        args_for(tmp_path, "rte", early_stopping_patience=3, load_best_model_at_end=False)


def test_arguments_are_split_by_concern_and_stay_flat_on_the_command_line(tmp_path):
    """Model, data and training fields live in their own dataclass; `from_flat` (like the recipe parser) takes them
    as one flat mapping, and `to_dict` gives `run_args.json` every one of them back."""
    args = args_for(tmp_path, "rte", use_peft=False, max_seq_length=64, learning_rate=1e-4)
    model_fields = {f.name for f in dataclasses.fields(GlueModelArguments)}
    data_fields = {f.name for f in dataclasses.fields(GlueDataArguments)}
    training_fields = {f.name for f in dataclasses.fields(GlueTrainingArguments)}
    assert not (model_fields & data_fields) and not ((model_fields | data_fields) & training_fields)
    assert {"model_name_or_path", "use_peft", "lora_r", "classifier_pooling"} <= model_fields
    assert {"task_name", "train_file", "max_seq_length", "dataset_name"} <= data_fields
    assert (args.data.max_seq_length, args.training.learning_rate) == (64, 1e-4)
    flat = args.to_dict()
    assert flat["task_name"] == "rte" and flat["model_name_or_path"] == "unused" and flat["learning_rate"] == 1e-4
    with pytest.raises(TypeError, match="learnig_rate"):
        args_for(tmp_path, "rte", learnig_rate=1e-4)


# --- local data without a GLUE task name (the run_glue.py way) ---


def test_local_data_without_a_task_name_is_read_the_run_glue_way(tmp_path):
    """Custom label sets, single-sentence or pair inputs and regression, inferred from train_file."""
    names = ["meh", "good", "bad"]
    single = [{"idx": r["idx"], "review": r["sentence"], "label": names[i % 3]} for i, r in enumerate(rows("sst2", 12))]
    files = {
        "train_file": str(write_rows(tmp_path / "reviews.csv", single)),
        "validation_file": str(write_rows(tmp_path / "reviews_dev.jsonl", single[:6])),
    }
    args = args_for(tmp_path, None, **files)
    data = load_glue_data(args)
    task = data["task"]
    assert (task.name, task.text_columns, task.label_names) == ("custom", ("review",), ("bad", "good", "meh"))
    assert data["train"]["label"][:3] == [2, 1, 0] and data["eval"]["validation"]["label"][:3] == [2, 1, 0]
    args.use_task(task)
    assert (args.training.metric_for_best_model, args.training.greater_is_better) == ("accuracy", True)

    pairs = [{**r, "label": 7 if r["label"] else 3} for r in rows("mrpc", 8)]  # any integer label set
    files = {
        "train_file": str(write_rows(tmp_path / "pairs.jsonl", pairs)),
        "validation_file": str(write_rows(tmp_path / "pairs_dev.jsonl", pairs[:4])),
    }
    data = load_glue_data(args_for(tmp_path, None, **files))
    assert data["task"].text_columns == ("sentence1", "sentence2") and data["task"].label_names == ("3", "7")
    assert data["train"]["label"][:2] == [0, 1]

    scores = [{"a": r["sentence1"], "b": r["sentence2"], "label": float(r["label"])} for r in rows("stsb", 8)]
    files = {
        "train_file": str(write_rows(tmp_path / "scores.csv", scores)),
        "validation_file": str(write_rows(tmp_path / "scores_dev.csv", scores[:4])),
    }
    args = args_for(tmp_path, None, **files)
    data = load_glue_data(args)
    assert data["task"].is_regression and data["task"].text_columns == ("a", "b")
    assert data["train"].features["label"].dtype == "float32"
    args.use_task(data["task"])
    assert args.training.metric_for_best_model == "pearson"


def test_local_data_without_a_task_name_fails_clearly(tmp_path):
    train = [{"text": r["sentence"], "label": ["x", "y"][r["label"]]} for r in rows("sst2", 6)]
    dev = [{**row, "label": "z"} for row in train[:2]]
    files = {
        "train_file": str(write_rows(tmp_path / "train.csv", train)),
        "validation_file": str(write_rows(tmp_path / "dev.csv", dev)),
    }
    with pytest.raises(GlueDataError, match=r"labels \['z'\] do not occur in train_file, whose labels are \['x', 'y'\]"):
        load_glue_data(args_for(tmp_path, None, **files))
    args = args_for(tmp_path, None, num_labels=3, **files)
    task = load_glue_data(args_for(tmp_path, None, train_file=files["train_file"], validation_file=files["train_file"]))
    with pytest.raises(ValueError, match="num_labels=3 disagrees with the labels of train_file, which has 2 labels"):
        args.use_task(task["task"])
    with pytest.raises(ValueError, match="no task_name was given.*or give train_file and validation_file"):
        args_for(tmp_path, None)
    with pytest.raises(ValueError, match="both train_file and validation_file"):
        args_for(tmp_path, None, train_file=files["train_file"])
