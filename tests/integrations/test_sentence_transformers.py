"""A NeoBERT checkpoint as a sentence-transformers model: strict loading, pooling, normalisation, max length, prompts,
and a saved folder that a fresh interpreter loads and encodes identically."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers.modeling import TOKENIZER, save_tiny_checkpoint
from neobert_hf import NeoBERTForMaskedLM, NeoBERTForSequenceClassification, NeoBERTModel


pytest.importorskip("sentence_transformers")

from neobert_hf.integrations.checkpoints import CheckpointLoadError  # noqa: E402
from neobert_hf.integrations.sentence_transformers import (  # noqa: E402
    POOLING_MODES,
    build_sentence_transformer,
    load_encoder,
    validate_pooling,
)


SENTENCES = ["the cat sleeps on the warm sofa", "a car", "heavy rain is expected this afternoon in the valley"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "mlm")


def _token_states(model, sentences):
    """The encoder's last hidden states and attention mask, as the Transformer module computes them."""
    features = model.preprocess(sentences)
    with torch.no_grad():
        out = model[0]({k: v for k, v in features.items()})
    return out["token_embeddings"], features["attention_mask"]


def test_pooling_names_are_validated_with_one_spelling_each():
    assert POOLING_MODES == ("mean", "cls", "max")
    for name in POOLING_MODES:
        assert validate_pooling(name) == name
    assert validate_pooling("avg") == "mean"  # the original trainer's spelling, normalised
    for wrong in ("average", "CLS", "mean_tokens", ""):
        with pytest.raises(ValueError, match="Valid pooling modes: mean, cls, max, avg \\(= mean\\)"):
            validate_pooling(wrong)


def test_unknown_pooling_fails_before_loading(tmp_path):
    with pytest.raises(ValueError, match="Unknown pooling 'average'"):
        build_sentence_transformer(tmp_path / "does-not-matter", pooling="average")


def test_pooling_modes_compute_what_they_say(checkpoint):
    embeddings = {}
    for pooling in POOLING_MODES:
        model = build_sentence_transformer(checkpoint, pooling=pooling, device="cpu")
        embeddings[pooling] = model.encode(SENTENCES, convert_to_tensor=True)
    states, mask = _token_states(model, SENTENCES)
    keep = mask.unsqueeze(-1).bool()
    expected = {
        "mean": (states * keep).sum(1) / keep.sum(1),
        "cls": states[:, 0],
        "max": states.masked_fill(~keep, float("-inf")).max(1).values,
    }
    for pooling in POOLING_MODES:
        torch.testing.assert_close(embeddings[pooling], expected[pooling], atol=1e-5, rtol=1e-5)
    # The option has an effect: every pair of modes gives different embeddings.
    assert not torch.allclose(embeddings["mean"], embeddings["cls"])
    assert not torch.allclose(embeddings["mean"], embeddings["max"])
    assert not torch.allclose(embeddings["cls"], embeddings["max"])


def test_normalize_gives_unit_norms(checkpoint):
    plain = build_sentence_transformer(checkpoint, normalize=False, device="cpu").encode(SENTENCES)
    normed = build_sentence_transformer(checkpoint, normalize=True, device="cpu").encode(SENTENCES)
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(np.linalg.norm(plain, axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(normed, plain / np.linalg.norm(plain, axis=1, keepdims=True), atol=1e-5)


def test_max_seq_length_truncates_and_is_checked(checkpoint):
    short = build_sentence_transformer(checkpoint, max_seq_length=4, device="cpu")
    full = build_sentence_transformer(checkpoint, device="cpu")
    assert short.max_seq_length == 4
    assert full.max_seq_length == 512  # min(tokenizer 4096, max_position_embeddings 512)
    assert short.preprocess([SENTENCES[2]])["input_ids"].shape[1] == 4
    assert not np.allclose(short.encode(SENTENCES[2:]), full.encode(SENTENCES[2:]))
    with pytest.raises(ValueError, match=r"max_seq_length must be in \[1, 512\]"):
        build_sentence_transformer(checkpoint, max_seq_length=513)


def test_prompts_are_prepended(checkpoint):
    model = build_sentence_transformer(checkpoint, prompts={"query": "query: "}, device="cpu")
    with_prompt = model.encode(SENTENCES, prompt_name="query")
    assert not np.allclose(with_prompt, model.encode(SENTENCES))
    np.testing.assert_allclose(with_prompt, model.encode(["query: " + s for s in SENTENCES]), atol=1e-5)
    with pytest.raises(ValueError, match="default_prompt_name"):
        build_sentence_transformer(checkpoint, prompts={"query": "q: "}, default_prompt_name="document")


def test_dropout_override_reaches_the_encoder(checkpoint):
    model = build_sentence_transformer(checkpoint, dropout=0.3, device="cpu")
    encoder = model[0].auto_model
    assert encoder.config.dropout == 0.3
    features = model.preprocess(SENTENCES)
    model.train()
    first = model(dict(features))["sentence_embedding"]
    second = model(dict(features))["sentence_embedding"]
    assert not torch.allclose(first, second)  # dropout noise: what SimCSE relies on
    model.eval()
    assert build_sentence_transformer(checkpoint, device="cpu")[0].auto_model.config.dropout == 0.0


def test_encoder_of_an_mlm_checkpoint_is_loaded_exactly(checkpoint):
    mlm = NeoBERTForMaskedLM.from_pretrained(checkpoint)
    model = build_sentence_transformer(checkpoint, device="cpu")
    encoder = model[0].auto_model
    assert isinstance(encoder, NeoBERTModel)
    reference = mlm.model.state_dict()
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=0)


def test_classifier_checkpoint_gives_its_encoder(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "cls", NeoBERTForSequenceClassification, num_labels=3)
    encoder = load_encoder(path)
    reference = NeoBERTForSequenceClassification.from_pretrained(path).model.state_dict()
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=0)


def _rewrite_weights(source, target, rename):
    os.makedirs(target)
    for name in os.listdir(source):
        if name != "model.safetensors":
            with open(os.path.join(source, name), "rb") as src, open(os.path.join(target, name), "wb") as dst:
                dst.write(src.read())
    state = load_file(os.path.join(source, "model.safetensors"))
    renamed = {rename(key): value for key, value in state.items()}
    save_file(renamed, os.path.join(target, "model.safetensors"), metadata={"format": "pt"})
    return str(target)


def test_prefixed_checkpoint_is_an_error_naming_the_keys(checkpoint, tmp_path):
    # The failure this guards against: a DDP-prefixed state dict loaded with strict=False trains from random weights.
    prefixed = _rewrite_weights(checkpoint, tmp_path / "prefixed", lambda key: f"module.{key}")
    with pytest.raises(CheckpointLoadError) as excinfo:
        build_sentence_transformer(prefixed)
    message = str(excinfo.value)
    assert "missing keys" in message and "transformer_encoder.0.qkv.weight" in message
    assert "unexpected keys" in message and "module.model.encoder.weight" in message


def test_mismatched_checkpoint_is_an_error(checkpoint, tmp_path):
    # A checkpoint that lost a layer's weights (config says 2 layers).
    broken = tmp_path / "broken"
    _rewrite_weights(checkpoint, broken, lambda key: key)
    state = load_file(broken / "model.safetensors")
    state = {k: v for k, v in state.items() if ".1." not in k}
    save_file(state, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointLoadError, match=r"missing keys .*transformer_encoder\.1\."):
        load_encoder(broken)


def test_checkpoint_without_tokenizer_needs_one(tmp_path):
    path = save_tiny_checkpoint(tmp_path / "no-tok", tokenizer=False)
    with pytest.raises(ValueError, match="has no tokenizer files"):
        build_sentence_transformer(path)
    model = build_sentence_transformer(path, tokenizer_name_or_path=TOKENIZER, device="cpu")
    assert model.encode(SENTENCES).shape == (3, 64)


@pytest.mark.integration
def test_saved_model_loads_in_a_fresh_process_and_encodes_identically(checkpoint, tmp_path):
    model = build_sentence_transformer(
        checkpoint, pooling="cls", normalize=True, max_seq_length=16, prompts={"query": "query: "}, device="cpu"
    )
    expected = model.encode(SENTENCES)
    expected_query = model.encode(SENTENCES, prompt_name="query")
    saved = tmp_path / "st"
    model.save(str(saved))
    assert json.loads((saved / "config.json").read_text())["auto_map"]["AutoModel"].endswith("NeoBERTModel")
    assert (saved / "modeling_neobert.py").is_file()
    np.save(tmp_path / "expected.npy", expected)
    np.save(tmp_path / "expected_query.npy", expected_query)
    probe = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        from sentence_transformers import SentenceTransformer

        result = {{}}
        # 1. Without neobert_hf: the folder's own modeling code (trust_remote_code), offline.
        remote = SentenceTransformer({str(saved)!r}, trust_remote_code=True, device="cpu")
        result["neobert_hf_imported"] = "neobert_hf" in sys.modules
        result["remote_class"] = type(remote[0].auto_model).__module__
        expected = np.load({str(tmp_path / 'expected.npy')!r})
        result["remote_diff"] = float(np.abs(remote.encode({SENTENCES!r}) - expected).max())
        # 2. With neobert_hf imported: the registered classes, no remote code needed.
        import neobert_hf
        plain = SentenceTransformer({str(saved)!r}, device="cpu")
        result["plain_class"] = type(plain[0].auto_model).__module__
        result["plain_diff"] = float(np.abs(plain.encode({SENTENCES!r}) - expected).max())
        query = plain.encode({SENTENCES!r}, prompt_name="query")
        result["query_diff"] = float(np.abs(query - np.load({str(tmp_path / 'expected_query.npy')!r})).max())
        result["modules"] = [type(m).__name__ for m in plain]
        result["pooling"] = plain[1].pooling_mode
        result["max_seq_length"] = plain.max_seq_length
        print(json.dumps(result))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["neobert_hf_imported"] is False
    assert result["remote_class"].startswith("transformers_modules")
    assert result["plain_class"].startswith("neobert_hf")
    assert result["remote_diff"] == 0.0
    assert result["plain_diff"] == 0.0
    assert result["query_diff"] == 0.0
    assert result["modules"] == ["Transformer", "Pooling", "Normalize"]
    assert result["pooling"] == "cls"
    assert result["max_seq_length"] == 16


def test_rebuilding_a_saved_model_with_another_pooling_says_so(checkpoint, tmp_path, caplog):
    from neobert_hf.integrations.sentence_transformers import saved_pooling

    saved = tmp_path / "st"
    build_sentence_transformer(checkpoint, pooling="max", device="cpu").save(str(saved))
    assert saved_pooling(str(saved)) == "max" and saved_pooling(checkpoint) is None
    with caplog.at_level("WARNING", logger="neobert_hf.integrations.sentence_transformers"):
        model = build_sentence_transformer(str(saved), pooling="cls", device="cpu")
    assert model[1].pooling_mode == "cls"
    assert "was saved with pooling 'max'; building the model with pooling 'cls'" in caplog.text
