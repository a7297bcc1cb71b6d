"""`neobert-hf mteb` on local STS and BEIR tasks: mteb's own result files, a summary that names every missing task and
never averages over a partial set without saying so, and bad input (unknown task or type) that writes nothing."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.modeling import save_tiny_checkpoint


pytest.importorskip("mteb")
pytest.importorskip("sentence_transformers")

from neobert_hf.cli.main import main  # noqa: E402
from neobert_hf.integrations.eval_data import EvalDataError, read_beir_folder, read_sts_jsonl  # noqa: E402
from neobert_hf.integrations.mteb import (  # noqa: E402
    MTEBArguments,
    UnknownTaskError,
    default_model_name,
    evaluate,
    load_model,
    resolve_tasks,
    summarize_results,
)


REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "assets"
LOCAL = [f"tiny-sts={DATA / 'sts.jsonl'}", f"tiny-beir={DATA / 'beir'}"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("run") / "checkpoints" / "7")


@pytest.fixture(scope="module")
def evaluated(checkpoint, tmp_path_factory):
    """One end-to-end `neobert-hf mteb` run in a fresh interpreter, shared by the tests that read its output."""
    out = tmp_path_factory.mktemp("mteb")
    command = [
        sys.executable, "-m", "neobert_hf", "mteb", "--model", checkpoint, "--pooling", "cls", "--normalize", "true",
        "--max_seq_length", "32", "--batch_size", "5", "--local_tasks", *LOCAL, "--output_folder", str(out),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)
    return completed, out


def test_local_data_readers():
    sts = read_sts_jsonl(DATA / "sts.jsonl")
    assert len(sts) == 16 and min(sts.scores) < max(sts.scores)
    beir = read_beir_folder(DATA / "beir")
    assert len(beir.corpus) == 24 and len(beir.queries) == 6
    assert beir.qrels["q-cat"] == {"cat0": 1, "cat1": 1}


def test_local_data_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sentence1": "a", "sentence2": "b"}\n')
    with pytest.raises(EvalDataError, match=r"line 1: missing key\(s\) \['score'\]"):
        read_sts_jsonl(bad)
    folder = tmp_path / "beir"
    shutil.copytree(DATA / "beir", folder)
    with open(folder / "qrels" / "test.tsv", "a") as handle:
        handle.write("q-cat\tno-such-doc\t1\n")
    with pytest.raises(EvalDataError, match="document 'no-such-doc' is not in corpus.jsonl"):
        read_beir_folder(folder)
    with pytest.raises(EvalDataError, match=r"qrels/dev.tsv does not exist \(qrels files found: \['test.tsv'\]\)"):
        read_beir_folder(DATA / "beir", split="dev")


@pytest.mark.integration
def test_cli_evaluates_local_tasks_end_to_end(evaluated, checkpoint):
    completed, out = evaluated
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "All requested tasks were evaluated." in completed.stdout

    # mteb's own format: results/<model name as path>/<revision>/<task>.json, readable by mteb's TaskResult.
    from mteb import TaskResult

    # <run>/checkpoints/<step> -> neobert-hf/<run>-step<step> (the run folder is run0, run1, ... in a full session)
    run_name = Path(checkpoint).parent.parent.name
    model_dir = out / "results" / f"neobert-hf__{run_name}-step7"
    (revision_dir,) = [p for p in model_dir.iterdir() if p.is_dir()]
    assert {p.name for p in revision_dir.glob("*.json")} >= {"tiny-sts.json", "tiny-beir.json"}
    sts_result = TaskResult.from_disk(revision_dir / "tiny-sts.json")
    beir_result = TaskResult.from_disk(revision_dir / "tiny-beir.json")
    assert sts_result.task_name == "tiny-sts" and list(sts_result.scores) == ["test"]
    assert "ndcg_at_10" in beir_result.scores["test"][0]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["missing_tasks"] == []
    assert summary["tasks"]["tiny-sts"]["main_score"] == "cosine_spearman"
    assert summary["tasks"]["tiny-sts"]["score"] == pytest.approx(sts_result.scores["test"][0]["main_score"])
    assert summary["categories"]["STS"]["average"] == summary["tasks"]["tiny-sts"]["score"]
    assert summary["categories"]["Retrieval"]["average"] == summary["tasks"]["tiny-beir"]["score"]
    assert summary["overall"]["average"] == pytest.approx(
        (summary["tasks"]["tiny-sts"]["score"] + summary["tasks"]["tiny-beir"]["score"]) / 2
    )
    assert (out / "summary.md").read_text().startswith("# MTEB results")

    # The options reached the model: the same cls / normalised / 32-token model scores the same in-process
    # with sentence-transformers' own evaluator.
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    model = load_model(MTEBArguments(model=checkpoint, pooling="cls", normalize=True, max_seq_length=32))
    assert [type(m).__name__ for m in model] == ["Transformer", "Pooling", "Normalize"]
    assert model[1].pooling_mode == "cls" and model.max_seq_length == 32
    sts = read_sts_jsonl(DATA / "sts.jsonl")
    metrics = EmbeddingSimilarityEvaluator(sts.sentences1, sts.sentences2, sts.scores, name="sts")(model)
    assert metrics["sts_spearman_cosine"] == pytest.approx(summary["tasks"]["tiny-sts"]["score"], abs=1e-5)


def test_batch_size_and_prompts_reach_the_encoder(evaluated, checkpoint, tmp_path):
    completed, out = evaluated
    assert completed.returncode == 0, completed.stderr[-4000:]
    (settings,) = (out / "results").glob("*/*/run_settings.jsonl")
    recorded = [json.loads(line) for line in settings.read_text().splitlines() if line.strip()]
    assert recorded and all(entry["encode_kwargs"]["batch_size"] == 5 for entry in recorded)

    sts = [f"tiny-sts={DATA / 'sts.jsonl'}"]
    plain = evaluate(MTEBArguments(model=checkpoint, local_tasks=sts, output_folder=str(tmp_path / "plain")))
    prompted = evaluate(
        MTEBArguments(model=checkpoint, local_tasks=sts, output_folder=str(tmp_path / "prompted"),
                      prompts='{"STS": "a prompt that changes every embedding: "}')
    )
    assert plain["complete"] and prompted["complete"]
    assert prompted["tasks"]["tiny-sts"]["score"] != plain["tasks"]["tiny-sts"]["score"]


@pytest.mark.integration
def test_rerun_only_fills_missing_tasks(evaluated, checkpoint, tmp_path):
    """A summary over result files lists every task whose file is absent or incomplete, and reports partial
    averages as partial (never dropped silently)."""
    completed, out = evaluated
    assert completed.returncode == 0, completed.stderr[-4000:]
    folder = tmp_path / "copy"
    shutil.copytree(out, folder)
    summary = json.loads((out / "summary.json").read_text())
    tasks = resolve_tasks(local_tasks=LOCAL)
    from mteb.models import ModelMeta

    meta = ModelMeta.create_empty(overwrites={"name": summary["model"], "revision": summary["revision"]})
    sts_file = Path(summary["tasks"]["tiny-sts"]["result_file"].replace(str(out), str(folder)))
    beir_file = Path(summary["tasks"]["tiny-beir"]["result_file"].replace(str(out), str(folder)))

    # 1. A result file that is gone.
    sts_file.unlink()
    partial = summarize_results(folder, meta, tasks)
    assert partial["missing_tasks"] == ["tiny-sts"] and not partial["complete"]
    assert "no result file" in partial["tasks"]["tiny-sts"]["reason"]
    assert partial["categories"]["STS"]["average"] is None
    assert partial["categories"]["Retrieval"]["average"] == summary["tasks"]["tiny-beir"]["score"]
    assert partial["overall"]["average"] is None  # never an average over a partial set...
    assert partial["overall"]["average_over_evaluated"] == summary["tasks"]["tiny-beir"]["score"]  # ...unless labelled
    markdown = (folder / "summary.md").read_text()
    assert "| tiny-sts | STS | cosine_spearman | MISSING |" in markdown
    assert "incomplete (missing: tiny-sts)" in markdown and "Missing tasks (1):" in markdown

    # 2. A result file whose split has another name (it must not be dropped silently).
    data = json.loads(beir_file.read_text())
    data["scores"] = {"dev": data["scores"]["test"]}
    beir_file.write_text(json.dumps(data))
    partial = summarize_results(folder, meta, tasks)
    assert partial["missing_tasks"] == ["tiny-sts", "tiny-beir"]
    assert "no scores for split 'test'" in partial["tasks"]["tiny-beir"]["reason"]
    assert partial["overall"]["average_over_evaluated"] is None

    # 3. The CLI re-run evaluates what is missing, exits 0 again, and the summary is complete.
    rerun = main(["mteb", "--model", checkpoint, "--pooling", "cls", "--normalize", "true", "--max_seq_length", "32",
                  "--local_tasks", *LOCAL, "--output_folder", str(folder), "--overwrite_results", "true"])
    assert rerun == 0
    assert json.loads((folder / "summary.json").read_text())["complete"]


@pytest.mark.integration
def test_unknown_task_is_an_error_that_writes_nothing(checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["mteb", "--model", checkpoint, "--tasks", "STSBenchmarkk", "--output_folder", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown task 'STSBenchmarkk'" in err and "did you mean STSBenchmark" in err
    assert not out.exists()
    code = main(["mteb", "--model", checkpoint, "--task_types", "Sts", "--output_folder", str(out)])
    assert code == 2 and "unknown task type 'Sts'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tasks": ["STSBenchmark"], "task_types": ["STS"]}, "either tasks or task_types"),
        ({}, "Nothing to evaluate"),
        ({"local_tasks": ["STSBenchmark=" + str(DATA / "sts.jsonl")]}, "is an MTEB task name"),
        ({"local_tasks": ["a=" + str(DATA / "sts.jsonl"), "a=" + str(DATA / "beir")]}, "requested twice"),
        ({"local_tasks": [str(DATA / "sts.jsonl")]}, "NAME=PATH"),
        ({"local_tasks": ["x=/no/such/path"]}, "does not exist"),
        ({"benchmark": "MTEB(eng, v2)", "tasks": ["STSBenchmark"]}, "selects its own tasks"),
        ({"benchmark": "MTEB(eng, v2)", "task_types": ["STS"]}, "selects its own tasks"),
        ({"benchmark": "MTEB(eng,v2)"}, r"unknown benchmark 'MTEB\(eng,v2\)' \(did you mean MTEB\(eng, v2\)"),
        ({"task_types": ["all", "STS"]}, "already selects every type"),
        ({"tasks": ["STSBenchmark"], "languages": ["eng"]}, "languages filters the task_types selection"),
    ],
)
def test_task_selection_errors(kwargs, message):
    with pytest.raises((UnknownTaskError, ValueError), match=message):
        resolve_tasks(**kwargs)


def test_registry_tasks_resolve_without_the_hub():
    (task,) = resolve_tasks(tasks=["STSBenchmark"])
    assert task.metadata.name == "STSBenchmark" and task.metadata.type == "STS"
    assert all(t.metadata.type == "STS" for t in resolve_tasks(task_types=["STS"]))


def test_options_that_would_be_ignored_are_errors(checkpoint, tmp_path):
    from neobert_hf.integrations.sentence_transformers import build_sentence_transformer

    saved = tmp_path / "st"
    build_sentence_transformer(checkpoint, pooling="max", device="cpu").save(str(saved))
    with pytest.raises(ValueError, match="own pooling"):
        load_model(MTEBArguments(model=str(saved), pooling="mean"))
    model = load_model(MTEBArguments(model=str(saved), max_seq_length=8))
    assert model[1].pooling_mode == "max" and model.max_seq_length == 8
    with pytest.raises(ValueError, match="Valid pooling modes"):
        MTEBArguments(model=checkpoint, pooling="average")
    assert MTEBArguments(model=checkpoint, pooling="avg").pooling == "mean"  # the original trainer's spelling
    with pytest.raises(ValueError, match="org/name"):
        MTEBArguments(model=checkpoint, model_name="plain")
    with pytest.raises(ValueError, match="prompts must be a JSON object"):
        MTEBArguments(model=checkpoint, prompts="query: ")
    out = tmp_path / "out"
    code = main(["mteb", "--model", checkpoint, "--local_tasks", *LOCAL, "--output_folder", str(out),
                 "--prompts", '{"NoSuchTask": "x: "}'])
    assert code == 2 and not out.exists()


def test_default_model_names(tmp_path):
    assert default_model_name("chandar-lab/NeoBERT") == "chandar-lab/NeoBERT"
    step = tmp_path / "myrun" / "checkpoints" / "12"
    step.mkdir(parents=True)
    assert default_model_name(str(step)) == "neobert-hf/myrun-step12"
    assert default_model_name(str(tmp_path / "myrun")) == "neobert-hf/myrun"
    assert os.path.basename(default_model_name(str(tmp_path))) == tmp_path.name
