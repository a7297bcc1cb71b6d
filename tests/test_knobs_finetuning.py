"""The knobs users of the original NeoBERT trainer reach for first, on the fine-tuning side: SupCon loss, `avg`
pooling, `hard_negative_weight` in SimCSE's convention (the converter and the loss agree), MTEB `all` / benchmark
selectors, GLUE `allow_random_weights`, W&B settings for GLUE and contrastive runs."""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config
from neobert_hf import NeoBERTForMaskedLM


REPO = Path(__file__).resolve().parents[1]


def save_checkpoint(path, **overrides):
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    NeoBERTForMaskedLM(tiny_config(vocab_size=8192, **overrides)).save_pretrained(path)
    AutoTokenizer.from_pretrained(REPO / "data" / "tokenizer").save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "mlm")


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
