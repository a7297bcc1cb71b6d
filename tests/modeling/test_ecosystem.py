"""NeoBERT inside the transformers ecosystem: tokenizer outputs, pipelines, task losses, gradient checkpointing,
torch.compile, embedding resizing, peft LoRA, and clear errors for what cannot run here."""

import pytest
import torch
import torch.nn.functional as F
from helpers.modeling import make_sequences, pack, pad, tiny_config
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, BertTokenizerFast, pipeline

from neobert_hf import (
    NeoBERTForMaskedLM,
    NeoBERTForQuestionAnswering,
    NeoBERTForSequenceClassification,
    NeoBERTForTokenClassification,
    NeoBERTModel,
)

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "ran",
    "fast",
    "slow",
    "is",
    "was",
    "red",
    "blue",
    "big",
    "small",
    "house",
    "tree",
    "and",
    "it",
]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAIRS = (
    ["the cat sat on the mat", "a dog ran"],
    ["it was red", "the big blue house and a small tree"],
)
HEADS = [
    NeoBERTModel,
    NeoBERTForMaskedLM,
    NeoBERTForSequenceClassification,
    NeoBERTForTokenClassification,
    NeoBERTForQuestionAnswering,
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A WordPiece bert-style tokenizer over a 25-token vocabulary, [PAD] = 0."""
    folder = tmp_path_factory.mktemp("tokenizer")
    (folder / "vocab.txt").write_text("\n".join(SPECIAL + WORDS) + "\n")
    tok = BertTokenizerFast.from_pretrained(folder)
    assert tok.pad_token_id == 0 and tok.mask_token_id == 4 and len(tok) == len(SPECIAL) + len(WORDS)
    return tok


def small(**overrides):
    return tiny_config(vocab_size=len(SPECIAL) + len(WORDS), **overrides)


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=g)
            param.copy_(1 + 0.2 * noise if name.endswith("norm.weight") else 0.2 * noise)
    return model


def test_fill_mask_pipeline_returns_top_k(tokenizer):
    model = randomize(NeoBERTForMaskedLM(small())).eval()
    fill = pipeline("fill-mask", model=model, tokenizer=tokenizer, top_k=3)
    text = "the cat [MASK] on the mat"
    predictions = fill(text)
    assert len(predictions) == 3
    assert {"score", "token", "token_str", "sequence"} <= set(predictions[0])
    scores = [p["score"] for p in predictions]
    assert scores == sorted(scores, reverse=True)
    # The pipeline's scores are the model's own softmax at the mask position.
    enc = tokenizer(text, return_tensors="pt")
    position = int((enc["input_ids"][0] == tokenizer.mask_token_id).nonzero())
    with torch.no_grad():
        probs = model(**enc).logits[0, position].softmax(-1)
    top = probs.topk(3)
    assert [p["token"] for p in predictions] == top.indices.tolist()
    torch.testing.assert_close(torch.tensor(scores), top.values, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("head", HEADS, ids=lambda c: c.__name__)
def test_every_head_accepts_tokenizer_pairs_and_tuples(tokenizer, head):
    config = small(num_labels=3)
    model = randomize(head(config)).eval()
    enc = tokenizer(*PAIRS, padding=True, return_tensors="pt")
    assert "token_type_ids" in enc and enc["token_type_ids"].any()
    with torch.no_grad():
        out = model(**enc)
        as_tuple = model(**enc, return_dict=False)
        without_types = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    assert isinstance(as_tuple, tuple)
    first = out[0]
    torch.testing.assert_close(as_tuple[0], first)
    # NeoBERT has no segment embeddings: token_type_ids are accepted and do not change anything.
    torch.testing.assert_close(without_types[0], first)
    assert first.shape[0] == 2


@pytest.mark.parametrize(
    ("problem_type", "num_labels"),
    [
        ("single_label_classification", 3),
        ("regression", 1),
        ("multi_label_classification", 3),
        (None, 3),
    ],
)
def test_sequence_classification_losses(problem_type, num_labels):
    model = randomize(NeoBERTForSequenceClassification(small(num_labels=num_labels, problem_type=problem_type)))
    model.eval()
    ids, mask = pad(make_sequences([8, 5, 6, 3], vocab_size=25, seed=1))
    g = torch.Generator().manual_seed(0)
    if problem_type in ("single_label_classification", None):
        labels = torch.randint(0, num_labels, (4,), generator=g)
    elif problem_type == "regression":
        labels = torch.randn(4, generator=g)
    else:
        labels = torch.randint(0, 2, (4, num_labels), generator=g).float()
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    logits = out.logits
    assert logits.shape == (4, num_labels)
    if problem_type in ("single_label_classification", None):
        expected = F.cross_entropy(logits, labels)
        assert model.config.problem_type == "single_label_classification"
    elif problem_type == "regression":
        expected = F.mse_loss(logits.squeeze(-1), labels)
    else:
        expected = F.binary_cross_entropy_with_logits(logits, labels)
    torch.testing.assert_close(out.loss, expected)


def test_float_labels_infer_multi_label():
    model = NeoBERTForSequenceClassification(small(num_labels=2)).eval()
    ids, mask = pad(make_sequences([4, 6], vocab_size=25))
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    assert model.config.problem_type == "multi_label_classification"
    torch.testing.assert_close(out.loss, F.binary_cross_entropy_with_logits(out.logits, labels))


def test_token_classification_loss_ignores_minus_100():
    model = randomize(NeoBERTForTokenClassification(small(num_labels=5))).eval()
    ids, mask = pad(make_sequences([7, 4], vocab_size=25, seed=2))
    labels = torch.randint(0, 5, ids.shape, generator=torch.Generator().manual_seed(0))
    labels[mask == 0] = -100
    labels[0, 0] = -100
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    keep = labels != -100
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits[keep], labels[keep]))


def test_question_answering_loss():
    model = randomize(NeoBERTForQuestionAnswering(small())).eval()
    ids, mask = pad(make_sequences([9, 6], vocab_size=25, seed=3))
    start, end = torch.tensor([2, 1]), torch.tensor([5, 3])
    out = model(input_ids=ids, attention_mask=mask, start_positions=start, end_positions=end)
    assert out.start_logits.shape == out.end_logits.shape == ids.shape
    expected = (F.cross_entropy(out.start_logits, start) + F.cross_entropy(out.end_logits, end)) / 2
    torch.testing.assert_close(out.loss, expected)
    # Positions past the sequence are ignored, as in transformers' QA models.
    far = torch.tensor([2, 100])
    out = model(input_ids=ids, attention_mask=mask, start_positions=far, end_positions=far)
    expected = (F.cross_entropy(out.start_logits[:1], far[:1]) + F.cross_entropy(out.end_logits[:1], far[:1])) / 2
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.filterwarnings("ignore:.*gradient_checkpointing.*:FutureWarning")
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_gradient_checkpointing_gives_the_same_gradients(packed):
    torch.manual_seed(0)
    reference = randomize(NeoBERTForMaskedLM(small(dropout=0.0)))
    checkpointed = randomize(NeoBERTForMaskedLM(small(dropout=0.0)))
    checkpointed.gradient_checkpointing_enable()
    assert checkpointed.is_gradient_checkpointing
    sequences = make_sequences([7, 5, 9], vocab_size=25, seed=5)
    if packed:
        batch = pack(sequences)
    else:
        ids, mask = pad(sequences)
        batch = {"input_ids": ids, "attention_mask": mask}
    labels = batch["input_ids"].clone()
    labels[..., ::2] = -100
    calls = []
    checkpointed.model.transformer_encoder[0].qkv.register_forward_hook(lambda *args: calls.append(1))
    for model in (reference, checkpointed):
        model.train()
        model(**batch, labels=labels).loss.backward()
    assert len(calls) == 2, "the checkpointed block was not recomputed in backward"
    grads = dict(reference.named_parameters())
    for name, param in checkpointed.named_parameters():
        torch.testing.assert_close(param.grad, grads[name].grad, msg=name)


@pytest.mark.integration
@pytest.mark.parametrize("with_mask", [False, True], ids=["no_mask", "mask"])
def test_torch_compile_fullgraph_matches_eager(with_mask):
    torch._dynamo.reset()
    model = randomize(NeoBERTForMaskedLM(small())).eval()
    ids, mask = pad(make_sequences([9, 6, 3], vocab_size=25, seed=6))
    kwargs = {"input_ids": ids, "attention_mask": mask} if with_mask else {"input_ids": ids}
    with torch.no_grad():
        eager = model(**kwargs).logits
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")(**kwargs).logits
    keep = mask.bool() if with_mask else torch.ones_like(mask, dtype=torch.bool)
    torch.testing.assert_close(compiled[keep], eager[keep], atol=1e-5, rtol=1e-5)
    explanation = torch._dynamo.explain(model)(**kwargs)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    torch._dynamo.reset()


@pytest.mark.parametrize("tied", [False, True], ids=["untied_bias", "tied"])
def test_resize_token_embeddings_keeps_old_tokens(tied):
    model = randomize(NeoBERTForMaskedLM(small(tie_word_embeddings=tied))).eval()
    if tied:
        model.tie_weights()
    old = model.config.vocab_size
    ids, mask = pad(make_sequences([6, 4], vocab_size=old, seed=7))
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
    model.resize_token_embeddings(old + 7)
    new = old + 7
    assert model.config.vocab_size == new
    assert model.model.encoder.weight.shape == (new, 64)
    assert model.decoder.weight.shape == (new, 64)
    if tied:
        assert model.decoder.weight is model.model.encoder.weight
        assert model.decoder.bias is None
    else:
        assert model.decoder.bias.shape == (new,)
        assert model.decoder.weight.data_ptr() != model.model.encoder.weight.data_ptr()
    with torch.no_grad():
        after = model(input_ids=ids, attention_mask=mask).logits
        new_token = model(input_ids=torch.tensor([[2, new - 1, 3]])).logits
    assert after.shape[-1] == new
    keep = mask.bool()
    torch.testing.assert_close(after[keep][:, :old], before[keep], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(new_token).all()


LORA_TARGETS = ["qkv", "wo", "w12", "w3"]


def _lora_step(peft_model, batch, labels):
    peft_model.train()
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.5)
    out = peft_model(**batch, labels=labels)
    out.loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    peft_model.eval()


def test_peft_lora_mlm_merges_to_the_same_outputs():
    peft = pytest.importorskip("peft")
    model = randomize(NeoBERTForMaskedLM(small())).eval()
    ids, mask = pad(make_sequences([8, 5], vocab_size=25, seed=8))
    batch = {"input_ids": ids, "attention_mask": mask}
    with torch.no_grad():
        base = model(**batch).logits.clone()
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS))
    wrapped = {n.rsplit(".", 1)[-1] for n, m in lora.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == set(LORA_TARGETS)
    labels = ids.masked_fill(mask == 0, -100)
    _lora_step(lora, batch, labels)
    with torch.no_grad():
        adapted = lora(**batch).logits
    keep = mask.bool()
    assert not torch.allclose(adapted[keep], base[keep], atol=1e-4), "the LoRA step changed nothing"
    merged = lora.merge_and_unload()
    assert isinstance(merged, NeoBERTForMaskedLM)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        out = merged(**batch).logits
    torch.testing.assert_close(out[keep], adapted[keep], atol=1e-5, rtol=1e-5)


def test_peft_lora_sequence_classification():
    peft = pytest.importorskip("peft")
    model = randomize(NeoBERTForSequenceClassification(small(num_labels=3))).eval()
    ids, mask = pad(make_sequences([8, 5, 7], vocab_size=25, seed=9))
    batch = {"input_ids": ids, "attention_mask": mask}
    with torch.no_grad():
        base = model(**batch).logits.clone()
        classifier_before = {n: p.clone() for n, p in model.classifier.named_parameters()}
    config = peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, r=4, lora_alpha=8, target_modules=LORA_TARGETS)
    lora = peft.get_peft_model(model, config)
    trainable = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert any("classifier" in n and "modules_to_save" in n for n in trainable), trainable
    assert any("lora_A" in n for n in trainable)
    _lora_step(lora, batch, torch.tensor([0, 2, 1]))
    with torch.no_grad():
        adapted = lora(**batch).logits
    assert not torch.allclose(adapted, base, atol=1e-4)
    merged = lora.merge_and_unload()
    assert isinstance(merged, NeoBERTForSequenceClassification)
    for name, before in classifier_before.items():  # the whole head (dense and out_proj) was trained
        assert not torch.equal(merged.classifier.get_parameter(name), before), f"classifier.{name} was not trained"
    with torch.no_grad():
        out = merged(**batch).logits
    torch.testing.assert_close(out, adapted, atol=1e-5, rtol=1e-5)


def test_peft_sequence_classification_adapter_reloads_with_its_head(tmp_path):
    """The whole head (pooler `dense` and `out_proj`) is new, not in the pretrained checkpoint; it lives under
    `classifier`, so peft's SEQ_CLS default trains it and saves it in the adapter, and the adapter reloads exactly."""
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    NeoBERTModel(small()).save_pretrained(tmp_path / "base")
    ids, mask = pad(make_sequences([8, 5], vocab_size=25, seed=10))
    torch.manual_seed(1)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=3)
    config = peft.LoraConfig(
        task_type=peft.TaskType.SEQ_CLS,
        r=4,
        target_modules=LORA_TARGETS,
    )
    lora = peft.get_peft_model(model, config)
    _lora_step(lora, {"input_ids": ids, "attention_mask": mask}, torch.tensor([0, 2]))
    with torch.no_grad():
        expected = lora(input_ids=ids, attention_mask=mask).logits
    lora.save_pretrained(tmp_path / "adapter")

    torch.manual_seed(2)  # a different random head: only the adapter can restore it
    fresh = AutoModelForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=3)
    reloaded = peft.PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids, attention_mask=mask).logits, expected)


def test_flash_attention_request_is_a_clear_error_on_cpu(tmp_path):
    NeoBERTForMaskedLM(small()).save_pretrained(tmp_path)
    with pytest.raises((ImportError, ValueError), match="(?i)flash"):
        AutoModelForMaskedLM.from_pretrained(tmp_path, attn_implementation="flash_attention_2")


def test_torch_varlen_on_cpu_is_a_clear_error(tmp_path):
    NeoBERTForMaskedLM(small()).save_pretrained(tmp_path)
    model = AutoModelForMaskedLM.from_pretrained(tmp_path, attn_implementation="torch_varlen").eval()
    assert model.config._attn_implementation == "torch_varlen"
    sequences = make_sequences([5, 3], vocab_size=25)
    ids, mask = pad(sequences)
    with pytest.raises(RuntimeError, match="CUDA"):
        model(input_ids=ids, attention_mask=mask)
    with pytest.raises(RuntimeError, match="CUDA"):
        model(**pack(sequences))


def test_inputs_longer_than_the_context_are_a_clear_error():
    config = small(max_position_embeddings=16)
    model = NeoBERTForMaskedLM(config).eval()
    model(input_ids=torch.full((1, 16), 7))  # exactly the context: fine
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(input_ids=torch.full((1, 17), 7))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(**pack(make_sequences([5, 17, 3], vocab_size=25)))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(input_ids=torch.full((1, 8), 7), position_ids=torch.arange(10, 18)[None])


def test_sequence_classification_rejects_packed_rows():
    """One pooled vector per row: a packed row (several documents) is refused instead of giving one prediction."""
    model = NeoBERTForSequenceClassification(small(num_labels=3)).eval()
    sequences = make_sequences([5, 3, 4], vocab_size=25)
    batch = pack(sequences)
    with pytest.raises(ValueError, match="packed"):
        model(**batch)
    with pytest.raises(ValueError, match="packed"):
        model(input_ids=batch["input_ids"], position_ids=batch["position_ids"])
    # A single sequence in a batch of one is not packed.
    ids, mask = pad(sequences[:1])
    assert model(input_ids=ids, attention_mask=mask).logits.shape == (1, 3)
    assert model(input_ids=ids, position_ids=torch.arange(ids.shape[1])[None]).logits.shape == (1, 3)
