"""Contrastive training with sentence-transformers: every accepted option changes something, and
`neobert-hf contrastive` runs end to end on the tiny local data with both evaluators."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from helpers.modeling import save_tiny_checkpoint


pytest.importorskip("sentence_transformers")

from datasets import Dataset  # noqa: E402
from sentence_transformers.sentence_transformer.losses import (  # noqa: E402
    CachedMultipleNegativesRankingLoss,
    MultipleNegativesRankingLoss,
)

from neobert_hf.cli.contrastive import parse_args  # noqa: E402
from neobert_hf.integrations.contrastive import (  # noqa: E402
    LOSS_TYPES,
    CachedWeightedHardNegativesLoss,
    ContrastiveArguments,
    ContrastiveTrainingArguments,
    SimCSEMixBatchSampler,
    WeightedHardNegativesLoss,
    build_contrastive_loss,
    prepare_contrastive,
    prepare_contrastive_dataset,
    simcse_pairs,
    weighted_info_nce,
)
from neobert_hf.integrations.sentence_transformers import build_sentence_transformer  # noqa: E402


REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "assets"
TRAIN = DATA / "contrastive" / "train.jsonl"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "mlm")


@pytest.fixture(scope="module")
def model(checkpoint):
    return build_sentence_transformer(checkpoint, device="cpu").eval()


def _features(model, columns):
    return [model.preprocess(texts) for texts in columns]


COLUMNS = [
    ["the cat sleeps", "a red car drives", "rain is coming", "she bakes bread"],
    ["a cat is sleeping", "the car is moving", "heavy rain today", "fresh bread"],
    ["the band plays music", "a book on the shelf", "the river flows", "a football match"],
]


def _loss_and_grad(loss_fn, model, columns=COLUMNS):
    model.zero_grad()
    loss = loss_fn(_features(model, columns), None)
    loss.backward()
    grad = model[0].auto_model.encoder.weight.grad.clone()
    model.zero_grad()
    return loss.detach(), grad


# ---------------------------------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------------------------------


def test_weighted_info_nce_formula():
    torch.manual_seed(0)
    anchors, positives, negatives = torch.randn(3, 4, 8).unbind(0)
    temperature, weight = 0.1, 1.1
    loss = weighted_info_nce(anchors, [positives, negatives], temperature, weight)
    q = F.normalize(anchors, dim=-1)
    docs = F.normalize(torch.cat([positives, negatives]), dim=-1)
    expected = 0.0
    for i in range(4):
        logits = q[i] @ docs.T / temperature
        logits[4 + i] += weight  # only the anchor's own hard negative, after the temperature (SimCSE)
        expected += -(logits[i] - torch.logsumexp(logits, 0))
    torch.testing.assert_close(loss, expected / 4)


def test_temperature_is_one_over_scale_and_changes_the_loss(model):
    losses = {}
    for temperature in (0.05, 0.2):
        loss_fn = build_contrastive_loss(model, "infonce", temperature=temperature)
        assert isinstance(loss_fn, MultipleNegativesRankingLoss)
        assert loss_fn.scale == pytest.approx(1 / temperature)
        with torch.no_grad():
            losses[temperature] = loss_fn(_features(model, COLUMNS), None)
            embeddings = [model(dict(f))["sentence_embedding"] for f in _features(model, COLUMNS)]
        torch.testing.assert_close(losses[temperature], weighted_info_nce(embeddings[0], embeddings[1:], temperature))
    assert not torch.isclose(losses[0.05], losses[0.2])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        build_contrastive_loss(model, temperature=0.0)


def test_hard_negative_weight_zero_is_multiple_negatives_ranking(model):
    # SimCSE's convention (and the original trainer's default): 0 is added to the hard negatives' logits, so they
    # count exactly like the other in-batch negatives.
    reference, reference_grad = _loss_and_grad(MultipleNegativesRankingLoss(model, scale=20.0), model)
    weighted = WeightedHardNegativesLoss(model, temperature=0.05, hard_negative_weight=0.0)
    mine, mine_grad = _loss_and_grad(weighted, model)
    torch.testing.assert_close(mine, reference)
    torch.testing.assert_close(mine_grad, reference_grad)
    assert isinstance(build_contrastive_loss(model, hard_negative_weight=0.0), MultipleNegativesRankingLoss)
    assert ContrastiveArguments(model_name_or_path="m", train_dataset="d").hard_negative_weight == 0.0


def test_hard_negative_weight_changes_loss_and_gradients(model):
    weights = (-2.0, 0.0, 2.0)
    results = {w: _loss_and_grad(build_contrastive_loss(model, hard_negative_weight=w), model) for w in weights}
    assert isinstance(build_contrastive_loss(model, hard_negative_weight=2.0), WeightedHardNegativesLoss)
    # A larger value on the hard negatives' logits: a larger denominator, a larger loss; below 0 they count less.
    assert results[-2.0][0] < results[0.0][0] < results[2.0][0]
    assert not torch.allclose(results[-2.0][1], results[0.0][1])
    assert not torch.allclose(results[2.0][1], results[0.0][1])
    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ValueError, match="hard_negative_weight must be a finite number"):
            build_contrastive_loss(model, hard_negative_weight=bad)
    # Without a negative column the weight has nothing to act on: plain InfoNCE.
    pairs = COLUMNS[:2]
    torch.testing.assert_close(
        _loss_and_grad(build_contrastive_loss(model, hard_negative_weight=2.0), model, pairs)[0],
        _loss_and_grad(build_contrastive_loss(model), model, pairs)[0],
    )


@pytest.mark.parametrize("weight", [0.0, 0.9])
def test_cached_loss_matches_uncached(model, weight):
    uncached = build_contrastive_loss(model, "infonce", hard_negative_weight=weight)
    cached = build_contrastive_loss(model, "cached_infonce", hard_negative_weight=weight, mini_batch_size=3)
    expected_type = CachedMultipleNegativesRankingLoss if weight == 0.0 else CachedWeightedHardNegativesLoss
    assert isinstance(cached, expected_type) and cached.mini_batch_size == 3
    loss, grad = _loss_and_grad(uncached, model)
    cached_loss, cached_grad = _loss_and_grad(cached, model)
    torch.testing.assert_close(cached_loss, loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached_grad, grad, atol=1e-5, rtol=1e-4)


def test_loss_options_are_validated(model):
    assert LOSS_TYPES == ("infonce", "cached_infonce", "supcon")
    for wrong in ("simcse", "mnrl", "InfoNCE"):
        with pytest.raises(ValueError, match="Valid loss types: infonce, cached_infonce, supcon"):
            build_contrastive_loss(model, wrong)
    for loss_type in ("infonce", "supcon"):
        with pytest.raises(ValueError, match="mini_batch_size only applies"):
            build_contrastive_loss(model, loss_type, mini_batch_size=8)
    with pytest.raises(ValueError, match="hard_negative_weight applies to the InfoNCE losses"):
        build_contrastive_loss(model, "supcon", hard_negative_weight=1.0)
    assert build_contrastive_loss(model, "cached_infonce").mini_batch_size == 32


# ---------------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------------


def test_legacy_schema_is_mapped_and_negative_lists_expanded():
    raw = Dataset.from_json(str(TRAIN))
    assert raw.column_names == ["query", "corpus", "negative", "id"]
    data = prepare_contrastive_dataset(raw)
    assert data.column_names == ["anchor", "positive", "negative_1", "negative_2"]
    assert data[0]["anchor"] == raw[0]["query"] and data[0]["positive"] == raw[0]["corpus"]
    assert [data[0]["negative_1"], data[0]["negative_2"]] == raw[0]["negative"]


def test_explicit_column_mapping():
    raw = Dataset.from_dict({"answer": ["a1", "a2"], "question": ["q1", "q2"], "other": [1, 2]})
    data = prepare_contrastive_dataset(raw, {"question": "anchor", "answer": "positive"})
    assert data.column_names == ["anchor", "positive"]
    assert data[0] == {"anchor": "q1", "positive": "a1"}
    with pytest.raises(ValueError, match="missing \\['anchor'\\]"):
        prepare_contrastive_dataset(raw, {"answer": "positive"})
    with pytest.raises(ValueError, match="do not exist"):
        prepare_contrastive_dataset(raw, {"nope": "anchor"})
    with pytest.raises(ValueError, match="must be anchor, positive"):
        prepare_contrastive_dataset(raw, {"question": "query"})
    ragged = Dataset.from_dict({"anchor": ["a", "b"], "positive": ["c", "d"], "negative": [["x"], ["y", "z"]]})
    with pytest.raises(ValueError, match="same, non-zero number of negatives"):
        prepare_contrastive_dataset(ragged)


def test_simcse_mix_sampler_draws_per_batch():
    from sentence_transformers.base.sampler import DefaultBatchSampler
    from torch.utils.data import ConcatDataset, SequentialSampler

    pairs = Dataset.from_dict({"anchor": [f"a{i}" for i in range(40)], "positive": [f"p{i}" for i in range(40)]})
    simcse = simcse_pairs([f"t{i}" for i in range(30)])
    concat = ConcatDataset([pairs, simcse])
    samplers = [DefaultBatchSampler(SequentialSampler(d), batch_size=4, drop_last=False) for d in (pairs, simcse)]

    def kinds(prob, seed=0, epoch=0):
        sampler = SimCSEMixBatchSampler(concat, samplers, prob, seed=seed)
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 10  # an epoch has as many batches as the supervised data
        for batch in batches:
            assert all(i < 40 for i in batch) or all(i >= 40 for i in batch)  # never mixed inside a batch
        return ["simcse" if batch[0] >= 40 else "pairs" for batch in batches]

    assert kinds(0.0) == ["pairs"] * 10
    assert kinds(1.0) == ["simcse"] * 10
    mixed = kinds(0.5)
    assert 0 < mixed.count("simcse") < 10
    assert kinds(0.5) == mixed  # seeded: a resumed run replays the same sequence
    assert kinds(0.5, epoch=1) != mixed or kinds(0.5, epoch=2) != mixed
    with pytest.raises(ValueError, match=r"pretraining_prob must be in \[0, 1\]"):
        SimCSEMixBatchSampler(concat, samplers, 1.5)


def _train_batches(checkpoint, tmp_path, **overrides):
    values = dict(model_name_or_path=checkpoint, train_dataset=str(TRAIN), dropout=0.1)
    values.update(overrides)
    args = ContrastiveArguments(**values)
    training_args = ContrastiveTrainingArguments(
        output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, report_to="none", use_cpu=True,
        dataloader_pin_memory=False,
    )
    trainer = prepare_contrastive(args, training_args).build_trainer()
    return list(trainer.get_train_dataloader())


def test_pretraining_prob_turns_batches_into_simcse_batches(checkpoint, tmp_path):
    supervised = _train_batches(checkpoint, tmp_path, pretraining_prob=0.0)
    simcse = _train_batches(checkpoint, tmp_path, pretraining_prob=1.0)
    # no_duplicates may split the 16 supervised rows into more than 16 / 4 batches; a mixed epoch has 16 / 4.
    assert len(supervised) >= 4 and len(simcse) == 4
    for batch in supervised:
        assert "negative_1_input_ids" in batch
        assert not torch.equal(batch["anchor_input_ids"], batch["positive_input_ids"])
    for batch in simcse:
        assert "negative_1_input_ids" not in batch
        torch.testing.assert_close(batch["anchor_input_ids"], batch["positive_input_ids"])  # the same text twice

    # simcse_dataset: the SimCSE texts come from that file instead of the training texts.
    def rows(batches):
        return {tuple(row[row != 0].tolist()) for batch in batches for row in batch["anchor_input_ids"]}

    simcse_file = DATA / "contrastive" / "simcse.jsonl"
    external = _train_batches(checkpoint, tmp_path, pretraining_prob=1.0, simcse_dataset=str(simcse_file))
    assert rows(external) - rows(simcse)  # texts that are only in the SimCSE file
    with pytest.raises(ValueError, match="has no column 'sentence'"):
        _train_batches(
            checkpoint, tmp_path, pretraining_prob=1.0, simcse_dataset=str(simcse_file), simcse_text_column="sentence"
        )


def test_simcse_needs_dropout_and_a_valid_probability(checkpoint, tmp_path):
    args = ContrastiveArguments(model_name_or_path=checkpoint, train_dataset=str(TRAIN), pretraining_prob=0.3)
    training_args = ContrastiveTrainingArguments(output_dir=str(tmp_path / "run"), report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="encoder's dropout is 0.0; set dropout"):
        prepare_contrastive(args, training_args)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="pretraining_prob must be in"):
        ContrastiveArguments(model_name_or_path=checkpoint, train_dataset=str(TRAIN), pretraining_prob=1.2)
    with pytest.raises(ValueError, match="simcse_dataset is only used when pretraining_prob > 0"):
        ContrastiveArguments(model_name_or_path=checkpoint, train_dataset=str(TRAIN), simcse_dataset=str(TRAIN))


def test_batches_hold_no_duplicated_text_by_default(checkpoint, tmp_path):
    # Half of the rows share one positive: the default sampler keeps them in separate batches.
    rows = [{"anchor": f"question number {i}", "positive": "the same answer" if i % 2 else f"answer {i}"}
            for i in range(16)]
    path = tmp_path / "dups.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert ContrastiveTrainingArguments(output_dir="unused").batch_sampler.value == "no_duplicates"

    def max_repeats(batch_sampler):
        args = ContrastiveArguments(model_name_or_path=checkpoint, train_dataset=str(path))
        training_args = ContrastiveTrainingArguments(
            output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, report_to="none", use_cpu=True,
            batch_sampler=batch_sampler, dataloader_pin_memory=False, seed=1,
        )
        trainer = prepare_contrastive(args, training_args).build_trainer()
        repeats = 0
        for batch in trainer.get_train_dataloader():
            ids = [tuple(row[row != 0].tolist()) for row in batch["positive_input_ids"]]
            repeats = max(repeats, len(ids) - len(set(ids)))
        return repeats

    assert max_repeats("no_duplicates") == 0
    assert max_repeats("batch_sampler") > 0


@pytest.mark.integration
def test_checkpoint_tree_and_resume_from_latest(checkpoint, tmp_path):
    from neobert_hf.training.checkpointing import CheckpointError

    def trainer(max_steps, **overrides):
        args = ContrastiveArguments(model_name_or_path=checkpoint, train_dataset=str(TRAIN))
        training_args = ContrastiveTrainingArguments(
            output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, max_steps=max_steps, save_steps=2,
            logging_steps=1, report_to="none", use_cpu=True, dataloader_pin_memory=False, seed=3, **overrides,
        )
        return prepare_contrastive(args, training_args).build_trainer()

    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        trainer(2).train(resume_from_checkpoint="latest")
    first = trainer(3)
    first.train()
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["2", "3"]  # the last step too
    from transformers import TrainerCallback

    class CountSteps(TrainerCallback):
        steps = []

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append(state.global_step)

    resumed = trainer(5, resume_from_checkpoint="latest")
    resumed.add_callback(CountSteps())
    resumed.train()
    assert CountSteps.steps == [4, 5]  # continued from step 3, not from scratch
    assert [e["step"] for e in resumed.state.log_history if "loss" in e] == [1, 2, 3, 4, 5]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["2", "3", "4", "5"]


def test_contrastive_arguments_are_validated(checkpoint):
    base = dict(model_name_or_path=checkpoint, train_dataset=str(TRAIN))
    with pytest.raises(ValueError, match="Missing required argument\\(s\\): --train_dataset"):
        ContrastiveArguments(model_name_or_path=checkpoint)
    with pytest.raises(ValueError, match="Valid pooling modes"):
        ContrastiveArguments(**base, pooling="average")
    assert ContrastiveArguments(**base, pooling="avg").pooling == "mean"  # the original trainer's spelling
    with pytest.raises(ValueError, match="Valid loss types"):
        ContrastiveArguments(**base, loss_type="simcse")
    with pytest.raises(ValueError, match="mini_batch_size only applies"):
        ContrastiveArguments(**base, mini_batch_size=4)
    with pytest.raises(ValueError, match="column_mapping must be a JSON object"):
        ContrastiveArguments(**base, column_mapping="{not json")


RECIPES = ["recipes/neobert/contrastive.yaml", "recipes/tiny/contrastive.yaml"]


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipes_parse(recipe):
    # --use_cpu: the NeoBERT recipe asks for bf16, which transformers only accepts on a CPU-only machine with it.
    args, training_args = parse_args(["--config", str(REPO / recipe), "--use_cpu", "true"])
    assert args.model_name_or_path and args.train_dataset
    assert training_args.batch_sampler.value == "no_duplicates"


def test_cli_bad_input_fails_before_writing(checkpoint, tmp_path):
    from neobert_hf.cli.main import main

    out = tmp_path / "run"
    # loss_type supcon on this (anchor, positive) data: no label column.
    bad = (["--pooling", "average"], ["--loss_type", "simcse"], ["--loss_type", "supcon"], ["--no_such_key", "1"])
    for extra in bad:
        code = main(["contrastive", "--model_name_or_path", checkpoint, "--train_dataset", str(TRAIN),
                     "--output_dir", str(out), *extra])
        assert code == 2
    assert not out.exists()


@pytest.mark.integration
def test_cli_trains_end_to_end_with_evaluators(checkpoint, tmp_path):
    """`neobert-hf contrastive` with the tiny recipe: SimCSE mixing, weighted hard negatives, both evaluators,
    the checkpoint tree, and a final model that sentence-transformers loads."""
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "neobert_hf", "contrastive",
        "--config", str(REPO / "recipes" / "tiny" / "contrastive.yaml"),
        "--model_name_or_path", checkpoint, "--output_dir", str(out), "--max_steps", "4", "--save_total_limit", "1",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "loss: WeightedHardNegativesLoss (temperature=0.05, hard_negative_weight=0.69)" in completed.stdout
    assert "SimCSE batches: probability 0.5 per batch" in completed.stdout

    final = out / "checkpoints" / "4"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["4"]  # save_total_limit=1, no .tmp left
    for name in ("modules.json", "model.safetensors", "config.json", "modeling_neobert.py", "tokenizer.json",
                 "optimizer.pt", "scheduler.pt", "trainer_state.json", "1_Pooling", "2_Normalize"):
        assert (final / name).exists(), name
    state = json.loads((final / "trainer_state.json").read_text())
    logged = [entry for entry in state["log_history"] if "loss" in entry]
    assert len(logged) == 4 and all(math.isfinite(entry["loss"]) for entry in logged)
    evaluated = [entry for entry in state["log_history"] if "eval_sts_spearman_cosine" in entry]
    assert [entry["step"] for entry in evaluated] == [2, 4]
    assert all("eval_retrieval_cosine_ndcg@10" in entry for entry in evaluated)
    metrics = json.loads((out / "eval_results.json").read_text())
    assert -1 <= metrics["eval_sts_spearman_cosine"] <= 1 and 0 <= metrics["eval_retrieval_cosine_ndcg@10"] <= 1

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    from neobert_hf.integrations.eval_data import read_sts_jsonl

    trained = SentenceTransformer(str(final), device="cpu")
    assert [type(m).__name__ for m in trained] == ["Transformer", "Pooling", "Normalize"]
    assert trained.max_seq_length == 64
    # The weights moved, and the reported metric is the one of the saved model.
    assert not torch.allclose(
        trained[0].auto_model.encoder.weight, build_sentence_transformer(checkpoint)[0].auto_model.encoder.weight
    )
    sts = read_sts_jsonl(DATA / "sts.jsonl")
    again = EmbeddingSimilarityEvaluator(sts.sentences1, sts.sentences2, sts.scores, name="sts")(trained)
    assert again["sts_spearman_cosine"] == pytest.approx(metrics["eval_sts_spearman_cosine"], abs=1e-6)
