"""An exported NeoBERT works with transformers' own `examples/pytorch/text-classification/run_glue.py` flow
(`--model_name_or_path <export> --trust_remote_code`) on local files.

The script below follows run_glue.py step by step for a local-file MRPC run (AutoConfig with num_labels and
finetuning_task, AutoTokenizer, AutoModelForSequenceClassification with trust_remote_code=True, run_glue's label
mapping and `padding="max_length"` preprocessing, the GLUE metric, `Trainer` train/evaluate/save/predict). It runs in
a subprocess that cannot import `neobert_hf` (its folder is taken off `sys.path`, `python -I`, a clean environment),
so the model is built only from the exported folder's remote code. The metric is the `glue` module shipped with
neobert-hf, loaded by path (run_glue loads the same module from the Hub as `evaluate.load("glue", task)`).
"""

import pytest
import json
import os
import subprocess
import sys
import textwrap

from helpers.glue import make_tokenizer, save_pretrained_model, task_files

from neobert_hf.integrations.glue_metrics import GLUE_METRIC_PATH


RUN_GLUE_FLOW = textwrap.dedent(
    """
    import json
    import os
    import sys

    sys.path[:] = [p for p in sys.path if p and not os.path.isdir(os.path.join(p, "neobert_hf"))]
    sys.meta_path[:] = [f for f in sys.meta_path if "neobert" not in repr(f).lower()]
    try:
        import neobert_hf  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("neobert_hf is importable in the run_glue subprocess")

    import evaluate
    import numpy as np
    import torch
    from datasets import load_dataset
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
        default_data_collator,
        set_seed,
    )

    model_name_or_path, train_file, validation_file, output_dir, metric_path = sys.argv[1:]
    task_name = "mrpc"
    set_seed(42)

    # run_glue: local csv files, one builder for both splits.
    raw_datasets = load_dataset("csv", data_files={"train": train_file, "validation": validation_file})
    is_regression = raw_datasets["train"].features["label"].dtype in ["float32", "float64"]
    label_list = raw_datasets["train"].unique("label")
    label_list.sort()
    num_labels = len(label_list)

    config = AutoConfig.from_pretrained(
        model_name_or_path, num_labels=num_labels, finetuning_task=task_name, trust_remote_code=True
    )
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, use_fast=True, trust_remote_code=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_name_or_path, config=config, trust_remote_code=True, ignore_mismatched_sizes=False
    )

    sentence1_key, sentence2_key = "sentence1", "sentence2"  # run_glue's task_to_keys["mrpc"]
    label_to_id = {v: i for i, v in enumerate(label_list)}
    model.config.label2id = label_to_id
    model.config.id2label = {id: label for label, id in config.label2id.items()}
    padding = "max_length"  # run_glue's default (--pad_to_max_length)
    max_seq_length = min(32, tokenizer.model_max_length)

    def preprocess_function(examples):
        args = (examples[sentence1_key], examples[sentence2_key])
        result = tokenizer(*args, padding=padding, max_length=max_seq_length, truncation=True)
        if label_to_id is not None and "label" in examples:
            result["label"] = [(label_to_id[l] if l != -1 else -1) for l in examples["label"]]
        return result

    raw_datasets = raw_datasets.map(preprocess_function, batched=True, desc="Running tokenizer on dataset")
    train_dataset, eval_dataset = raw_datasets["train"], raw_datasets["validation"]
    assert "token_type_ids" in train_dataset.column_names  # what the tokenizer emits reaches the Trainer

    metric = evaluate.load(metric_path, task_name)  # run_glue: evaluate.load("glue", data_args.task_name)

    def compute_metrics(p):
        preds = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
        preds = np.squeeze(preds) if is_regression else np.argmax(preds, axis=1)
        result = metric.compute(predictions=preds, references=p.label_ids)
        if len(result) > 1:
            result["combined_score"] = np.mean(list(result.values())).item()
        return result

    training_args = TrainingArguments(
        output_dir=output_dir,
        do_train=True,
        do_eval=True,
        max_steps=3,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=False,
        seed=42,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        compute_metrics=compute_metrics,
        processing_class=tokenizer,
        data_collator=default_data_collator,
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_result = trainer.train()
    trainer.save_model()
    metrics = trainer.evaluate(eval_dataset=eval_dataset)
    predictions = trainer.predict(eval_dataset.remove_columns("label"), metric_key_prefix="predict").predictions

    # The model the script saved reloads from its own folder (remote code again) and predicts the same.
    reloaded = AutoModelForSequenceClassification.from_pretrained(output_dir, trust_remote_code=True).eval()
    batch = tokenizer(["the cat sat on the mat"], ["a dog ran"], return_tensors="pt")  # with token_type_ids
    with torch.no_grad():
        logits = reloaded(**batch).logits
        same = trainer.model.eval()(**batch).logits
    out = {
        "module": type(model).__module__,
        "train_loss": train_result.training_loss,
        "global_step": trainer.state.global_step,
        "metrics": metrics,
        "changed": sum(not torch.equal(before[k], v) for k, v in model.state_dict().items()),
        "n_predictions": len(predictions),
        "reloaded_equal": bool(torch.allclose(logits, same, atol=1e-5)),
        "token_type_ids": "token_type_ids" in batch,
        "saved_files": sorted(os.listdir(output_dir)),
    }
    print("RESULT " + json.dumps(out))
    """
)


@pytest.mark.integration
def test_exported_model_runs_the_run_glue_flow_with_remote_code(tmp_path):
    tok = make_tokenizer(tmp_path / "tok")
    export = save_pretrained_model(tmp_path / "export", tok, seed=0)
    files = task_files(tmp_path / "data", "mrpc", n_train=12, n_eval=6)
    (tmp_path / "run_glue_flow.py").write_text(RUN_GLUE_FLOW)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    script = tmp_path / "run_glue_flow.py"
    argv = [str(export), files["train_file"], files["validation_file"], str(tmp_path / "out"), GLUE_METRIC_PATH]
    result = subprocess.run(
        [sys.executable, "-I", str(script), *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    out = json.loads(line[len("RESULT ") :])
    assert out["module"].startswith("transformers_modules"), out["module"]  # the exported remote code ran
    assert out["global_step"] == 3 and out["changed"] > 0
    assert {"eval_accuracy", "eval_f1", "eval_combined_score"} <= set(out["metrics"])
    assert out["n_predictions"] == 6 and out["reloaded_equal"] and out["token_type_ids"]
    assert {"config.json", "model.safetensors", "modeling_neobert.py", "tokenizer.json"} <= set(out["saved_files"])
