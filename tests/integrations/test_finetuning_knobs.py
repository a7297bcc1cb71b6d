"""The knobs users of the original NeoBERT trainer reach for first, on the fine-tuning side: SupCon loss, `avg`
pooling, `hard_negative_weight` in SimCSE's convention (the converter and the loss agree), MTEB `all` / benchmark
selectors, GLUE `allow_random_weights`, W&B settings for GLUE and contrastive runs."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers.modeling import save_tiny_checkpoint


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "mlm")


# ---------------------------------------------------------------------------------------------------------------------
# Contrastive: supervised contrastive loss
# ---------------------------------------------------------------------------------------------------------------------

SEPARABLE = {
    "anchor": ["the cat sleeps", "a kitten purrs", "my cat eats fish", "cats chase mice",
               "the car drives fast", "a red truck parks", "the bus is late", "trains run on rails"],
    "label": [0, 0, 0, 0, 1, 1, 1, 1],
}  # fmt: skip


def _reference_supcon(embeddings, labels, temperature):
    """Khosla et al. (2020), eq. 2 (L_out), written out anchor by anchor."""
    z = F.normalize(embeddings, dim=-1)
    total, anchors = 0.0, 0
    for i in range(len(z)):
        others = [a for a in range(len(z)) if a != i]
        positives = [p for p in others if labels[p] == labels[i]]
        if not positives:
            continue
        denominator = torch.logsumexp(torch.stack([z[i] @ z[a] / temperature for a in others]), 0)
        total = total - sum(z[i] @ z[p] / temperature - denominator for p in positives) / len(positives)
        anchors += 1
    return total / anchors


def test_supcon_matches_the_reference_formula():
    pytest.importorskip("sentence_transformers")
    from neobert_hf.integrations.contrastive import supervised_contrastive_loss

    torch.manual_seed(0)
    embeddings = torch.randn(7, 16, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 3])  # label 2 and 3 have no positive: not anchors, still negatives
    loss = supervised_contrastive_loss(embeddings, labels, 0.1)
    torch.testing.assert_close(loss, _reference_supcon(embeddings, labels.tolist(), 0.1))
    loss.backward()
    assert torch.isfinite(embeddings.grad).all()
    # No label twice in the batch: no positive pair, a zero loss that still back-propagates.
    lonely = supervised_contrastive_loss(embeddings, torch.arange(7), 0.1)
    assert lonely.item() == 0.0 and lonely.requires_grad
    with pytest.raises(ValueError, match="one label per embedding"):
        supervised_contrastive_loss(embeddings, labels[:3], 0.1)


def test_supcon_loss_on_a_tiny_model_matches_reference_and_decreases(checkpoint):
    pytest.importorskip("sentence_transformers")
    from neobert_hf.integrations.contrastive import SupervisedContrastiveLoss, build_contrastive_loss
    from neobert_hf.integrations.sentence_transformers import build_sentence_transformer

    model = build_sentence_transformer(checkpoint, device="cpu", pooling="avg")  # avg: the alias of mean
    assert model[1].get_config_dict()["pooling_mode"] == "mean"
    loss_fn = build_contrastive_loss(model, "supcon", temperature=0.1)
    assert isinstance(loss_fn, SupervisedContrastiveLoss)
    labels = torch.tensor(SEPARABLE["label"])
    features = [model.preprocess(SEPARABLE["anchor"])]
    model.eval()
    with torch.no_grad():
        embeddings = model(dict(features[0]))["sentence_embedding"]
        torch.testing.assert_close(loss_fn(features, labels), _reference_supcon(embeddings, labels.tolist(), 0.1))

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(8):
        loss = loss_fn([model.preprocess(SEPARABLE["anchor"])], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    model.eval()
    with torch.no_grad():
        z = F.normalize(model.encode(SEPARABLE["anchor"], convert_to_tensor=True), dim=-1)
    same = (labels[:, None] == labels[None, :]) & ~torch.eye(8, dtype=torch.bool)
    different = labels[:, None] != labels[None, :]
    sims = z @ z.T
    assert sims[same].mean() > sims[different].mean()


def test_supcon_trains_end_to_end_on_labelled_data(checkpoint, tmp_path):
    pytest.importorskip("sentence_transformers")
    from neobert_hf.cli.main import main

    data = tmp_path / "labelled.jsonl"
    names = {0: "animal", 1: "vehicle"}
    data.write_text("".join(json.dumps({"sentence": text, "topic": names[label]}) + "\n"
                            for text, label in zip(SEPARABLE["anchor"], SEPARABLE["label"])))  # fmt: skip
    out = tmp_path / "run"
    code = main(["contrastive", "--model_name_or_path", checkpoint, "--train_dataset", str(data),
                 "--loss_type", "supcon", "--column_mapping", '{"sentence": "anchor", "topic": "label"}',
                 "--pooling", "avg", "--output_dir", str(out), "--max_steps", "1", "--per_device_train_batch_size",
                 "8", "--report_to", "none", "--use_cpu", "true", "--eval_strategy", "no",
                 "--disable_tqdm", "true"])  # fmt: skip
    assert code == 0
    assert (out / "checkpoints" / "1").is_dir()
    pooling = json.loads((out / "checkpoints" / "1" / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode"] == "mean"


def test_supcon_data_and_options_are_checked(checkpoint):
    pytest.importorskip("sentence_transformers")
    from datasets import Dataset

    from neobert_hf.integrations.contrastive import ContrastiveArguments, prepare_supcon_dataset

    table = prepare_supcon_dataset(Dataset.from_dict({"text": ["a", "b", "c"], "label": ["y", "x", "y"]}))
    assert table.column_names == ["anchor", "label"] and table["label"] == [1, 0, 1]
    with pytest.raises(ValueError, match="needs anchor and label columns"):
        prepare_supcon_dataset(Dataset.from_dict({"anchor": ["a"], "positive": ["b"]}))
    base = dict(model_name_or_path=checkpoint, train_dataset="x.jsonl", loss_type="supcon")
    with pytest.raises(ValueError, match="hard_negative_weight applies to the InfoNCE losses"):
        ContrastiveArguments(**base, hard_negative_weight=0.5)
    with pytest.raises(ValueError, match="pretraining_prob mixes in unlabelled SimCSE batches"):
        ContrastiveArguments(**base, pretraining_prob=0.3)


# ---------------------------------------------------------------------------------------------------------------------
# Contrastive: hard_negative_weight, the converter and the loss agree
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("old_value", [0.0, 0.7, -1.5])
def test_converted_hard_negative_weight_gives_simcse_loss(tmp_path, old_value):
    """The original trainer (after SimCSE) adds `hard_negative_weight` to the own hard negatives' logits after the
    temperature: the converted recipe's value, given to our loss, gives exactly that loss."""
    pytest.importorskip("sentence_transformers")
    from neobert_hf.integrations.contrastive import weighted_info_nce
    from neobert_hf.migration.convert import convert_config

    recipe = convert_config({"task": "contrastive", "contrastive": {"hard_negative_weight": old_value}})
    value = recipe.recipe["hard_negative_weight"]

    torch.manual_seed(0)
    anchors, positives, negatives = torch.randn(3, 5, 8).unbind(0)
    temperature = 0.05
    # SimCSE's models.py (cl_forward): cos_sim = cat([z1 . z2, z1 . z3]) / temp; cos_sim += weights with
    # z3_weight on the diagonal of the z1 . z3 block; loss = cross_entropy(cos_sim, arange).
    z1, z2, z3 = (F.normalize(t, dim=-1) for t in (anchors, positives, negatives))
    cos_sim = torch.cat([z1 @ z2.T, z1 @ z3.T], 1) / temperature
    weights = torch.cat([torch.zeros(5, 5), torch.eye(5) * old_value], 1)
    simcse = F.cross_entropy(cos_sim + weights, torch.arange(5))
    torch.testing.assert_close(weighted_info_nce(anchors, [positives, negatives], temperature, value), simcse)


# ---------------------------------------------------------------------------------------------------------------------
# GLUE: allow_random_weights
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def glue_env(tmp_path_factory):
    from helpers.glue import make_tokenizer, save_pretrained_model, task_files

    root = tmp_path_factory.mktemp("glue-knobs")
    tok = make_tokenizer(root / "tok")
    pretrained = save_pretrained_model(root / "pretrained", tok, seed=0)
    config_file = root / "shape" / "config.json"
    config_file.parent.mkdir()
    config_file.write_text((pretrained / "config.json").read_text())
    return {"root": root, "tok": pretrained, "pretrained": pretrained, "config": config_file,
            "files": task_files(root / "data", "sst2", n_train=16, n_eval=8)}  # fmt: skip


def _one_step(glue_env, out, **overrides):
    from helpers.glue import glue_args

    values = dict(max_steps=1, eval_steps=1, save_steps=1, logging_steps=1)
    values.update(overrides)
    return glue_args(out, "sst2", glue_env["pretrained"], glue_env["files"], **values)


def test_glue_random_weights_are_refused_without_the_flag(glue_env, tmp_path):
    with pytest.raises(ValueError, match="model_name_or_path is required.*allow_random_weights=true"):
        _one_step(glue_env, tmp_path / "a", model_name_or_path=None, tokenizer_name=str(glue_env["tok"]))
    with pytest.raises(ValueError, match="config_name builds a randomly initialised model: set allow_random_weights"):
        _one_step(glue_env, tmp_path / "b", model_name_or_path=None, config_name=str(glue_env["config"]))
    with pytest.raises(ValueError, match="without model_name_or_path needs tokenizer_name"):
        _one_step(glue_env, tmp_path / "c", model_name_or_path=None, config_name=str(glue_env["config"]),
                  allow_random_weights=True)  # fmt: skip
    with pytest.raises(ValueError, match="transfer_head .* cannot go with allow_random_weights"):
        _one_step(glue_env, tmp_path / "d", allow_random_weights=True, transfer_head=True)
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_glue_fine_tunes_a_random_init_model_on_purpose(glue_env, tmp_path):
    from safetensors.torch import load_file

    from neobert_hf.integrations.glue import prepare_glue, run_glue

    # From a config file and a tokenizer, no weights at all: a 1-step run.
    args = _one_step(glue_env, tmp_path / "cfg", model_name_or_path=None, config_name=str(glue_env["config"]),
                     tokenizer_name=str(glue_env["tok"]), allow_random_weights=True)  # fmt: skip
    setup = prepare_glue(args)
    results = run_glue(setup)
    assert results["global_step"] == 1 and results["model_name_or_path"] is None and results["source"] is None
    assert (tmp_path / "cfg" / "checkpoints" / "1" / "model.safetensors").is_file()

    # From a model folder: its config is used, its weights are not loaded (seed 1: the folder's weights were drawn
    # with seed 0, which would draw the same numbers again).
    setup = prepare_glue(_one_step(glue_env, tmp_path / "folder", allow_random_weights=True, seed=1))
    pretrained = load_file(glue_env["pretrained"] / "model.safetensors")
    encoder = setup.model.state_dict()
    name = next(key for key in pretrained if key.endswith("qkv.weight"))
    mine = next(value for key, value in encoder.items() if key.endswith(name.split("model.", 1)[-1]))
    assert mine.shape == pretrained[name].shape and not torch.equal(mine, pretrained[name])
    assert setup.model.config.hidden_size == json.loads(glue_env["config"].read_text())["hidden_size"]
    assert setup.model.config.num_labels == 2


# ---------------------------------------------------------------------------------------------------------------------
# W&B for GLUE and contrastive runs
# ---------------------------------------------------------------------------------------------------------------------


def test_wandb_settings_reach_a_glue_run(glue_env, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from helpers.wandb_runs import offline_run

    from neobert_hf.integrations.glue import prepare_glue, run_glue

    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_PROJECT", "WANDB_ENTITY", "WANDB_TAGS", "WANDB_MODE", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    args = _one_step(glue_env, tmp_path / "out", report_to="wandb", run_name="glue-knobs", wandb_project="neobert-glue",
                     wandb_entity="my-team", wandb_tags=["glue", "sst2"], wandb_mode="offline",
                     wandb_dir=str(tmp_path / "wb"))  # fmt: skip
    run = offline_run(lambda: run_glue(prepare_glue(args)), tmp_path / "wb")
    assert (run.project, run.entity, list(run.tags), run.display_name) == (
        "neobert-glue", "my-team", ["glue", "sst2"], "glue-knobs"
    )  # fmt: skip


def test_wandb_fields_are_shared_and_checked_by_every_trainer_arguments(tmp_path):
    pytest.importorskip("sentence_transformers")
    from neobert_hf.integrations.contrastive import ContrastiveTrainer, ContrastiveTrainingArguments
    from neobert_hf.integrations.glue import GlueTrainingArguments
    from neobert_hf.training.arguments import NeoBERTTrainingArguments, WandbArguments
    from neobert_hf.training.callbacks import WandbInitCallback

    for cls in (NeoBERTTrainingArguments, GlueTrainingArguments, ContrastiveTrainingArguments):
        assert issubclass(cls, WandbArguments)
        with pytest.raises(ValueError, match="wandb_project set but report_to"):
            cls(output_dir=str(tmp_path / cls.__name__), wandb_project="p", report_to="none")
    args = ContrastiveTrainingArguments(output_dir=str(tmp_path / "st"), report_to="wandb", wandb_project="p",
                                        wandb_mode="offline", run_name="r", use_cpu=True)  # fmt: skip
    assert args.wandb_init_kwargs() == {"project": "p", "mode": "offline", "name": "r"}
    # The contrastive trainer places the callback just before transformers' WandbCallback.
    from datasets import Dataset

    from neobert_hf.integrations.sentence_transformers import build_sentence_transformer

    checkpoint = save_tiny_checkpoint(tmp_path / "ckpt")
    model = build_sentence_transformer(checkpoint, device="cpu")
    trainer = ContrastiveTrainer(model=model, args=args,
                                 train_dataset=Dataset.from_dict({"anchor": ["a b", "c d"], "positive": ["a", "c"]}))  # fmt: skip
    names = [type(c).__name__ for c in trainer.callback_handler.callbacks]
    assert names.index("WandbInitCallback") + 1 == names.index("WandbCallback")
    assert isinstance(trainer.callback_handler.callbacks[names.index("WandbInitCallback")], WandbInitCallback)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_final_lr_ratio_is_shared_by_every_trainer_arguments(tmp_path, schedule):
    # GLUE and contrastive runs decay to the same floor as pretraining (the original trainer used one scheduler).
    pytest.importorskip("sentence_transformers")
    from transformers import get_scheduler

    from neobert_hf.integrations.contrastive import ContrastiveTrainingArguments
    from neobert_hf.integrations.glue import GlueTrainingArguments
    from neobert_hf.training.arguments import FinalLRRatioArguments, NeoBERTTrainingArguments

    for cls in (NeoBERTTrainingArguments, GlueTrainingArguments, ContrastiveTrainingArguments):
        assert issubclass(cls, FinalLRRatioArguments)
        args = cls(output_dir=str(tmp_path / cls.__name__), lr_scheduler_type=schedule, final_lr_ratio=0.1,
                   learning_rate=1e-3, warmup_steps=2, max_steps=10, report_to="none", use_cpu=True)  # fmt: skip
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=args.learning_rate)
        scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=2, num_training_steps=10,
                                  scheduler_specific_kwargs=args.lr_scheduler_kwargs)  # fmt: skip
        rates = []
        for _ in range(11):
            rates.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
        assert rates[2] == pytest.approx(1e-3) and rates[10] == pytest.approx(1e-4), cls.__name__
        with pytest.raises(ValueError, match="final_lr_ratio applies to lr_scheduler_type"):
            cls(output_dir=str(tmp_path / "bad"), lr_scheduler_type="constant", final_lr_ratio=0.1, use_cpu=True)


def test_contrastive_refuses_the_trainer_sampler_it_would_ignore(tmp_path):
    pytest.importorskip("sentence_transformers")
    from neobert_hf.integrations.contrastive import ContrastiveTrainingArguments

    with pytest.raises(ValueError, match="train_sampling_strategy=group_by_length has no effect here"):
        ContrastiveTrainingArguments(output_dir=str(tmp_path), train_sampling_strategy="group_by_length", use_cpu=True)
    assert ContrastiveTrainingArguments(output_dir=str(tmp_path), use_cpu=True).train_sampling_strategy == "random"


# ---------------------------------------------------------------------------------------------------------------------
# MTEB: `all` task types and named benchmarks (selection only: mteb's registry, no download)
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_mteb_benchmark_resolves_to_its_tasks():
    mteb = pytest.importorskip("mteb")
    from neobert_hf.integrations.mteb import resolve_tasks

    names = [task.metadata.name for task in resolve_tasks(benchmark="MTEB(eng, v2)")]
    assert names == [task.metadata.name for task in mteb.get_benchmark("MTEB(eng, v2)").tasks]
    assert len(names) == 41 and {"STSBenchmark", "ArguAna", "BIOSSES"} <= set(names)
    # A benchmark plus local tasks: the benchmark's first.
    mixed = resolve_tasks(benchmark="MTEB(eng, v2)", local_tasks=["my-sts=" + str(REPO / "tests" / "assets" / "sts.jsonl")])
    assert [task.metadata.name for task in mixed] == [*names, "my-sts"]


@pytest.mark.integration
def test_mteb_all_task_types_selects_every_text_task():
    mteb = pytest.importorskip("mteb")
    from typing import get_args

    from mteb.abstasks.task_metadata import TaskType

    from neobert_hf.integrations.mteb import resolve_tasks

    every = resolve_tasks(task_types=["all"])
    names = {task.metadata.name for task in every}
    # Every task of every type, minus the tasks that need images, audio or video.
    by_type = mteb.get_tasks(task_types=list(get_args(TaskType)))
    text_only = {t.metadata.name for t in by_type if set(t.metadata.modalities) == {"text"}}
    assert names == text_only and len(names) > 1000
    for task_type in ("STS", "Retrieval", "Classification", "Clustering", "PairClassification", "Reranking"):
        assert names >= {t.metadata.name for t in resolve_tasks(task_types=[task_type]) if
                         set(t.metadata.modalities) == {"text"}}  # fmt: skip
    english = {task.metadata.name for task in resolve_tasks(task_types=["all"], languages=["eng"])}
    assert english < names and "STS12" in english


def test_mteb_cli_parses_the_new_selectors():
    pytest.importorskip("mteb")
    from neobert_hf.cli.mteb import parse_args

    args = parse_args(["--model", "m", "--benchmark", "MTEB(eng, v2)"])
    assert args.benchmark == "MTEB(eng, v2)"
    args = parse_args(["--model", "m", "--task_types", "all", "--languages", "eng", "--pooling", "avg"])
    assert args.task_types == ["all"] and args.languages == ["eng"] and args.pooling == "mean"


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation that finds no eval data: skipped with a warning unless it was asked for by name
# ---------------------------------------------------------------------------------------------------------------------


def test_contrastive_eval_without_eval_data_is_skipped_with_a_warning(checkpoint, tmp_path):
    pytest.importorskip("sentence_transformers")
    from neobert_hf.integrations.contrastive import (
        ContrastiveArguments,
        ContrastiveTrainingArguments,
        prepare_contrastive,
    )

    train = str(REPO / "tests" / "assets" / "contrastive" / "train.jsonl")
    args = ContrastiveArguments(model_name_or_path=checkpoint, train_dataset=train)
    training_args = ContrastiveTrainingArguments(output_dir=str(tmp_path / "a"), eval_strategy="steps", eval_steps=1,
                                                 report_to="none", use_cpu=True)  # fmt: skip
    import logging

    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # a CLI run earlier in the session may stop propagation to caplog's root handler
    logger = logging.getLogger("neobert_hf.integrations.contrastive")
    logger.addHandler(handler)
    try:
        prepare_contrastive(args, training_args)
    finally:
        logger.removeHandler(handler)
    assert any("evaluation is skipped (eval_strategy set to no)" in r.getMessage() for r in records)
    assert training_args.eval_strategy == "no" and not training_args.do_eval
    # Named eval data that is not there is an error; so is best-model selection without eval data.
    with pytest.raises((ValueError, FileNotFoundError), match="missing.jsonl"):
        prepare_contrastive(ContrastiveArguments(model_name_or_path=checkpoint, train_dataset=train,
                                                 eval_dataset=str(tmp_path / "missing.jsonl")),
                            ContrastiveTrainingArguments(output_dir=str(tmp_path / "b"), report_to="none",
                                                         use_cpu=True))  # fmt: skip
    best = ContrastiveTrainingArguments(output_dir=str(tmp_path / "c"), eval_strategy="steps", save_strategy="steps",
                                        load_best_model_at_end=True, report_to="none", use_cpu=True)  # fmt: skip
    with pytest.raises(ValueError, match="load_best_model_at_end needs something to evaluate"):
        prepare_contrastive(args, best)
    assert not any((tmp_path / name).exists() for name in "abc")
