"""`neobert-hf glue` end to end on tiny local data: the checkpoint tree, best-model selection and early stopping, MNLI
on both evaluation sets, transfer from an MNLI run, LoRA, and bad input that fails before anything is written."""

import json

import pytest
import torch
from safetensors.torch import load_file
from helpers.glue import (
    RECIPES,
    glue_args,
    make_tokenizer,
    rows,
    run_cli,
    save_pretrained_model,
    task_files,
    write_rows,
)
from transformers import AutoModelForSequenceClassification, AutoTokenizer, EarlyStoppingCallback

from neobert_hf import NeoBERTForMaskedLM, NeoBERTForSequenceClassification
from neobert_hf.cli.main import main
from neobert_hf.integrations.checkpoints import CheckpointLoadError, load_pretrained_strict
from neobert_hf.integrations.glue import build_trainer, prepare_glue, run_glue


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue")
    tok = make_tokenizer(root / "tok")
    return {"root": root, "tok": tok, "pretrained": save_pretrained_model(root / "pretrained", tok, seed=0)}


@pytest.fixture(scope="module")
def mnli_run(env):
    """A 4-step MNLI run on local jsonl files, with both test sets."""
    root = env["root"] / "mnli"
    files = task_files(root, "mnli", n_train=24, n_eval=10, fmt="jsonl")
    unlabeled = [{k: v for k, v in r.items() if k != "label"} for r in rows("mnli", 5, seed=9)]
    files["test_file"] = str(write_rows(root / "test_m.jsonl", unlabeled))
    files["test_mismatched_file"] = str(write_rows(root / "test_mm.jsonl", unlabeled[:4]))
    setup = prepare_glue(glue_args(root / "out", "mnli", env["pretrained"], files))
    return {"dir": root / "out", "setup": setup, "results": run_glue(setup)}


def complete_checkpoints(run_dir):
    root = run_dir / "checkpoints"
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / "trainer_state.json").is_file())


@pytest.mark.integration
def test_cli_end_to_end_from_the_recipe(env, tmp_path, capsys):
    files = task_files(tmp_path, "mrpc", n_train=24, n_eval=10)
    test_rows = [{k: v for k, v in r.items() if k != "label"} for r in rows("mrpc", 7, seed=5)]
    out = tmp_path / "out"
    completed = run_cli(
        "glue", "--config", str(RECIPES / "mrpc.yaml"),
        "--model_name_or_path", str(env["pretrained"]),
        "--train_file", files["train_file"], "--validation_file", files["validation_file"],
        "--test_file", str(write_rows(tmp_path / "test.csv", test_rows)),
        "--output_dir", str(out), "--max_steps", "4", "--eval_steps", "2", "--save_steps", "2",
        "--logging_steps", "2", "--per_device_train_batch_size", "8", "--max_seq_length", "32",
        "--learning_rate", "1e-3", "--bf16", "false", "--dataloader_pin_memory", "false", "--disable_tqdm", "true",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "GLUE mrpc: accuracy" in completed.stdout

    results = json.loads((out / "glue_results.json").read_text())
    assert results["task"] == "mrpc" and set(results["scores"]) == {"accuracy", "f1"}
    assert results["task_score"] == pytest.approx(sum(results["scores"].values()) / 2)
    assert results["metric_for_best_model"] == "f1" and results["global_step"] == 4
    # The checkpoint tree of pretraining: complete folders only, each a loadable model with its tokenizer and card.
    assert complete_checkpoints(out) == [2, 4]
    best = out / results["best_checkpoint"]
    for name in ("model.safetensors", "config.json", "modeling_neobert.py", "tokenizer.json", "README.md",
                 "optimizer.pt", "scheduler.pt", "trainer_state.json"):  # fmt: skip
        assert (best / name).is_file(), name
    model = AutoModelForSequenceClassification.from_pretrained(best)
    assert model.config.finetuning_task == "mrpc" and model.config.id2label == {0: "not_equivalent", 1: "equivalent"}
    tokenizer = AutoTokenizer.from_pretrained(best)
    assert model(**tokenizer("the cat sat", "a dog ran", return_tensors="pt")).logits.shape == (1, 2)
    assert "GLUE MRPC" in (best / "README.md").read_text()
    lines = (out / "predictions_test.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 8
    assert {line.split("\t")[1] for line in lines[1:]} <= {"not_equivalent", "equivalent"}
    assert json.loads((out / "run_args.json").read_text())["task_name"] == "mrpc"

    # glue-summary reads the run: MRPC's row, the eight other tasks named as missing.
    assert main(["glue-summary", str(out)]) == 0
    summary = capsys.readouterr().out
    accuracy, f1 = (100 * results["scores"][k] for k in ("accuracy", "f1"))
    assert f"| MRPC | accuracy {accuracy:.2f} / f1 {f1:.2f} | {100 * results['task_score']:.2f} |" in summary
    assert "GLUE score: n/a (missing: cola, sst2, stsb, qqp, mnli, qnli, rte, wnli)" in summary

    # The same output folder again, without resuming: refused before anything is touched.
    again = ["glue", "--config", str(RECIPES / "mrpc.yaml"), "--output_dir", str(out),
             "--model_name_or_path", str(env["pretrained"]), "--train_file", files["train_file"],
             "--validation_file", files["validation_file"]]  # fmt: skip
    assert main(again) == 2


@pytest.mark.integration
def test_cli_fine_tunes_local_data_without_a_task_name(env, tmp_path, capsys):
    """`neobert-hf glue` without --task_name, as transformers' run_glue.py: a custom label set read from train_file,
    single-sentence text from the only text column, predictions named by the data's labels."""
    names = ["meh", "good", "bad"]

    def table(n, seed):
        return [{"idx": r["idx"], "review": r["sentence"], "label": names[r["idx"] % 3]} for r in rows("sst2", n, seed)]

    test_rows = [{"review": r["review"]} for r in table(5, seed=3)]
    out = tmp_path / "out"
    code = main([
        "glue", "--model_name_or_path", str(env["pretrained"]),
        "--train_file", str(write_rows(tmp_path / "train.csv", table(16, seed=1))),
        "--validation_file", str(write_rows(tmp_path / "dev.jsonl", table(6, seed=2))),
        "--test_file", str(write_rows(tmp_path / "test.csv", test_rows)),
        "--output_dir", str(out), "--max_steps", "2", "--eval_strategy", "steps", "--save_strategy", "steps",
        "--eval_steps", "2", "--save_steps", "2", "--per_device_train_batch_size", "8", "--max_seq_length", "32",
        "--learning_rate", "1e-3", "--report_to", "none", "--dataloader_pin_memory", "false", "--disable_tqdm", "true",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err[-3000:]
    results = json.loads((out / "glue_results.json").read_text())
    assert results["task"] == "custom" and set(results["scores"]) == {"accuracy"}
    assert results["metric_for_best_model"] == "accuracy" and results["global_step"] == 2
    model = AutoModelForSequenceClassification.from_pretrained(out / results["best_checkpoint"])
    assert model.config.id2label == {0: "bad", 1: "good", 2: "meh"}
    lines = (out / "predictions_test.tsv").read_text().splitlines()
    assert len(lines) == 6 and {line.split("\t")[1] for line in lines[1:]} <= set(names)
    assert json.loads((out / "run_args.json").read_text())["task_name"] is None
    capsys.readouterr()
    assert main(["glue-summary", str(out)]) == 0  # not a GLUE task: skipped, with the reason
    assert "a run on local data without a GLUE task name" in capsys.readouterr().out


@pytest.mark.integration
def test_mnli_is_evaluated_on_matched_and_mismatched(mnli_run):
    results = mnli_run["results"]
    assert set(results["scores"]) == {"matched_accuracy", "mismatched_accuracy"}
    assert {"eval_matched_accuracy", "eval_mismatched_accuracy"} <= set(results["eval_metrics"])
    assert results["num_eval_examples"] == {"matched": 10, "mismatched": 12}
    assert results["metric_for_best_model"] == "matched_accuracy"
    assert results["task_score"] == pytest.approx(sum(results["scores"].values()) / 2)
    # Every evaluation during training covered both sets.
    state = json.loads((mnli_run["dir"] / results["best_checkpoint"] / "trainer_state.json").read_text())
    evals = [e for e in state["log_history"] if "eval_matched_accuracy" in e or "eval_mismatched_accuracy" in e]
    assert {e["step"] for e in evals if "eval_matched_accuracy" in e} == {
        e["step"] for e in evals if "eval_mismatched_accuracy" in e
    }
    assert results["predictions"] == {"test_matched": "predictions_test_matched.tsv",
                                                  "test_mismatched": "predictions_test_mismatched.tsv"}  # fmt: skip
    lines = (mnli_run["dir"] / "predictions_test_mismatched.tsv").read_text().splitlines()
    assert len(lines) == 5 and lines[1].split("\t")[1] in ("entailment", "neutral", "contradiction")


@pytest.mark.integration
def test_early_stopping_and_best_model_selection(env, tmp_path):
    files = task_files(tmp_path, "sst2", n_train=24, n_eval=12)
    args = glue_args(
        tmp_path / "out", "sst2", env["pretrained"], files,
        max_steps=40, eval_steps=1, save_steps=1, learning_rate=5e-3, early_stopping_patience=2, save_total_limit=2,
        metric_for_best_model="loss",
    )  # fmt: skip
    results = run_glue(prepare_glue(args))
    state = json.loads((tmp_path / "out" / results["best_checkpoint"] / "trainer_state.json").read_text())
    final_state = json.loads(
        (tmp_path / "out" / "checkpoints" / str(results["global_step"]) / "trainer_state.json").read_text()
    )
    losses = [(e["step"], e["eval_loss"]) for e in final_state["log_history"] if "eval_loss" in e]
    best_step, best_loss = min(losses, key=lambda x: x[1])
    # Early stopping: training stopped exactly `patience` evaluations after the best one.
    assert results["stopped_early"] and results["global_step"] < 40
    assert [s for s, _ in losses].index(results["global_step"]) - [s for s, _ in losses].index(best_step) == 2
    # Best-model selection: the best step's checkpoint is kept and reloaded; the final evaluation is of its weights.
    assert results["best_checkpoint"] == f"checkpoints/{best_step}" and state["global_step"] == best_step
    assert results["best_metric"] == pytest.approx(best_loss)
    assert results["eval_metrics"]["eval_loss"] == pytest.approx(best_loss, rel=1e-6)
    # save_total_limit=2 keeps the best and the latest.
    assert complete_checkpoints(tmp_path / "out") == sorted({best_step, results["global_step"]})


def test_model_data_and_trainer_options_take_effect(env, tmp_path):
    files = task_files(tmp_path, "qnli", n_train=12, n_eval=8)
    other = make_tokenizer(tmp_path / "other_tok")
    other.save_pretrained(tmp_path / "other_tok")
    args = glue_args(
        tmp_path / "out", "qnli", env["pretrained"], files,
        classifier_dropout=0.3, classifier_init_range=0.5, classifier_pooling="mean", attn_implementation="eager",
        max_train_samples=5, max_eval_samples=3, tokenizer_name=other.name_or_path, pad_to_multiple_of=16,
        early_stopping_patience=3, early_stopping_threshold=0.01, max_seq_length=12,
    )  # fmt: skip
    setup = prepare_glue(args)
    config, head = setup.model.config, setup.model.classifier
    assert config.classifier_dropout == 0.3 and head.dropout.p == 0.3
    assert config.classifier_pooling == "mean" and config._attn_implementation == "eager"
    assert 0.4 < head.dense.weight.std().item() < 0.6  # normal(0, classifier_init_range)
    assert len(setup.train_dataset) == 5 and len(setup.eval_datasets["validation"]) == 3
    assert max(len(ids) for ids in setup.train_dataset["input_ids"]) <= 12
    assert setup.tokenizer.name_or_path == other.name_or_path
    trainer = build_trainer(setup)
    batch = trainer.data_collator([setup.train_dataset[i] for i in range(3)])
    assert batch["input_ids"].shape[1] % 16 == 0 and "labels" in batch
    (stopper,) = [c for c in trainer.callback_handler.callbacks if isinstance(c, EarlyStoppingCallback)]
    assert (stopper.early_stopping_patience, stopper.early_stopping_threshold) == (3, 0.01)


@pytest.mark.integration
def test_resume_from_the_latest_checkpoint(env, tmp_path):
    files = task_files(tmp_path, "cola", n_train=16, n_eval=8)
    out = tmp_path / "out"
    first = run_glue(prepare_glue(glue_args(out, "cola", env["pretrained"], files, max_steps=2)))
    assert first["global_step"] == 2 and complete_checkpoints(out) == [2]
    resumed = run_glue(
        prepare_glue(glue_args(out, "cola", env["pretrained"], files, max_steps=4, resume_from_checkpoint="latest"))
    )
    assert resumed["global_step"] == 4 and complete_checkpoints(out) == [2, 4]
    state = json.loads((out / "checkpoints" / "4" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "eval_matthews_correlation" in e] == [2, 4]
    with pytest.raises(ValueError, match="no checkpoint for step 3"):
        prepare_glue(glue_args(out, "cola", env["pretrained"], files, resume_from_checkpoint="3"))


def test_transfer_from_an_mnli_run(env, mnli_run, tmp_path):
    best = mnli_run["dir"] / mnli_run["results"]["best_checkpoint"]
    mnli_model = NeoBERTForSequenceClassification.from_pretrained(best)
    files = task_files(tmp_path, "rte", n_train=8, n_eval=4)
    # New head on the MNLI encoder (RTE has 2 labels, MNLI 3): the run folder resolves to its best checkpoint.
    setup = prepare_glue(glue_args(tmp_path / "rte", "rte", mnli_run["dir"], files))
    assert setup.source == str(best) and setup.source_task == "mnli"
    for key, value in mnli_model.model.state_dict().items():
        torch.testing.assert_close(setup.model.model.state_dict()[key], value, rtol=0, atol=0)
    assert setup.model.config.num_labels == 2 and setup.model.config.id2label[1] == "not_entailment"
    # The head too, when the label counts agree (MNLI -> MNLI) ...
    mnli_files = task_files(tmp_path, "mnli", n_train=6, n_eval=4)
    again = prepare_glue(glue_args(tmp_path / "mnli2", "mnli", mnli_run["dir"], mnli_files, transfer_head=True))
    for key, value in mnli_model.state_dict().items():
        torch.testing.assert_close(again.model.state_dict()[key], value, rtol=0, atol=0)
    # ... and a clear error when they do not.
    with pytest.raises(CheckpointLoadError, match=r"\(3 labels, task mnli\) to a model with 2 labels"):
        prepare_glue(glue_args(tmp_path / "rte2", "rte", mnli_run["dir"], files, transfer_head=True))
    assert not (tmp_path / "rte2").exists()


@pytest.mark.integration
def test_lora_run_keeps_the_head_trainable_and_checkpoints_loadable(env, tmp_path):
    files = task_files(tmp_path, "mrpc", n_train=16, n_eval=8)
    args = glue_args(tmp_path / "out", "mrpc", env["pretrained"], files, use_peft=True, lora_r=4, lora_alpha=8)
    setup = prepare_glue(args)
    trainable = {n for n, p in setup.model.named_parameters() if p.requires_grad}
    assert any("classifier" in n and "out_proj" in n for n in trainable)  # the whole head trains
    assert any("classifier" in n and "dense" in n for n in trainable)
    for target in ("qkv", "wo", "w12", "w3"):
        assert any(f"{target}.lora_A" in n for n in trainable), target
    assert not any("base_layer" in n or n.endswith("encoder.weight") for n in trainable)  # the encoder is frozen

    results = run_glue(setup)
    best = tmp_path / "out" / results["best_checkpoint"]
    assert (best / "adapter" / "adapter_config.json").is_file()
    assert (best / "adapter" / "adapter_model.safetensors").is_file()
    # The folder itself holds the merged model: it loads strictly like any fine-tuned checkpoint ...
    merged = load_pretrained_strict(best, NeoBERTForSequenceClassification, task_head="load").eval()
    pretrained = NeoBERTForMaskedLM.from_pretrained(env["pretrained"]).model.state_dict()
    merged_state = merged.model.state_dict()
    assert torch.equal(merged_state["encoder.weight"], pretrained["encoder.weight"])  # not adapted
    assert not torch.equal(
        merged_state["transformer_encoder.0.qkv.weight"], pretrained["transformer_encoder.0.qkv.weight"]
    )
    # ... and equals the adapted model that training ended with (the best adapter, reloaded).
    batch = env["tok"](
        ["the cat sat on the mat", "good"], ["a dog ran", "bad movie"], padding=True, return_tensors="pt"
    )
    setup.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, setup.model(**batch).logits, atol=1e-5, rtol=1e-4)
    adapter = load_file(best / "adapter" / "adapter_model.safetensors")
    assert any("classifier" in k for k in adapter)

    with pytest.raises(ValueError, match=r"lora_target_modules \['query'\] match no Linear layer"):
        prepare_glue(glue_args(tmp_path / "bad", "mrpc", env["pretrained"], files, use_peft=True,
                               lora_target_modules=["query"]))  # fmt: skip


def _bad_checkpoint(env, tmp_path):
    folder = save_pretrained_model(tmp_path / "broken", env["tok"], seed=3)
    state = load_file(folder / "model.safetensors")
    state.pop("model.transformer_encoder.0.qkv.weight")
    from safetensors.torch import save_file

    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown_task", "unknown GLUE task 'mrcp'; choose one of"),
        ("missing_columns", "needs the columns ['sentence1', 'sentence2', 'label']"),
        ("label_count", "label ids [2] outside 0..1"),
        ("num_labels", "num_labels=2 disagrees with GLUE task 'mnli'"),
        (
            "missing_encoder_keys",
            "missing keys (in the model, not in the checkpoint): model.transformer_encoder.0.qkv.weight",
        ),
    ],
)
def test_bad_input_is_a_clear_error_that_writes_nothing(env, tmp_path, capsys, case, message):
    task = "mnli" if case == "num_labels" else "mrpc"
    files = task_files(tmp_path, task, n_train=6, n_eval=4)
    model = env["pretrained"]
    extra = []
    if case == "unknown_task":
        task = "mrcp"
    elif case == "missing_columns":
        bad = [{"s1": r["sentence1"], "s2": r["sentence2"], "label": r["label"]} for r in rows("mrpc", 4)]
        files["validation_file"] = str(write_rows(tmp_path / "bad.csv", bad))
    elif case == "label_count":
        data = rows("mrpc", 6)
        data[2]["label"] = 2
        files["train_file"] = str(write_rows(tmp_path / "bad.csv", data))
    elif case == "num_labels":
        extra = ["--num_labels", "2"]
    elif case == "missing_encoder_keys":
        model = _bad_checkpoint(env, tmp_path)
    out = tmp_path / "out"
    argv = ["glue", "--task_name", task, "--model_name_or_path", str(model), "--output_dir", str(out),
            "--max_steps", "2", "--report_to", "none", *extra]  # fmt: skip
    for key, value in files.items():
        argv += [f"--{key}", value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "neobert-hf glue: error:" in err and message in err, err
    assert not out.exists()
