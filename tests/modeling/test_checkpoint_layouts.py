"""The released and fork checkpoint layouts load with no missing/unexpected keys and compute NeoBERT as the paper
defines it.

The checkpoints are written here from raw tensors, and the expected outputs come from `reference_forward`, a
pure-torch NeoBERT written from the paper's definition that shares no code with the package (interleaved per-head qkv
split, adjacent-pair RoPE in complex form, RMSNorm, gate-first SwiGLU, decoder). Equality with it is the proof that the
architecture and the weight mapping are right.
"""

import json
import math
import os

import pytest
import torch
import torch.nn.functional as F
from helpers.modeling import make_sequences, pad
from helpers.modeling import released_config_json as released_config  # full size; tiny below
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoModel, AutoModelForMaskedLM

from neobert_hf import NeoBERTConfig, NeoBERTForMaskedLM, NeoBERTModel

# Tiny released-shaped model. intermediate_size=100 gives F = 8 * ceil(int(200 / 3) / 8) = 72, exercising the rounding.
V, H, NH, L, I, MAXLEN = 96, 32, 4, 2, 100, 64
DH = H // NH
FFN = 72


def released_config_json(**overrides) -> dict:
    """A config.json shaped like the released `chandar-lab/NeoBERT` one, with this file's tiny sizes."""
    tiny = dict(dim_head=DH, hidden_size=H, intermediate_size=I, max_length=MAXLEN, num_attention_heads=NH,
                num_hidden_layers=L, vocab_size=V)  # fmt: skip
    return released_config(**{**tiny, **overrides})


def random_weights(seed: int = 0) -> dict[str, torch.Tensor]:
    """Raw NeoBERT weights (no prefix), large enough that a wrong mapping changes the outputs visibly."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=0.3):
        return torch.randn(*shape, generator=g) * scale

    weights = {
        "encoder.weight": rand(V, H, scale=1.0),
        "layer_norm.weight": 1 + rand(H, scale=0.2),
    }
    for i in range(L):
        p = f"transformer_encoder.{i}."
        weights[p + "attention_norm.weight"] = 1 + rand(H, scale=0.2)
        weights[p + "qkv.weight"] = rand(3 * H, H)
        weights[p + "wo.weight"] = rand(H, H)
        weights[p + "ffn_norm.weight"] = 1 + rand(H, scale=0.2)
        weights[p + "ffn.w12.weight"] = rand(2 * FFN, H)
        weights[p + "ffn.w3.weight"] = rand(H, FFN)
    weights["decoder.weight"] = rand(V, H)
    weights["decoder.bias"] = rand(V)
    return weights


def reference_forward(
    weights: dict[str, torch.Tensor],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    tied: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """NeoBERT from its definition in float64: returns the final hidden states `(B, S, H)` and the MLM logits `(B, S, V)`."""
    w = {k: v.double() for k, v in weights.items()}
    batch, seq = input_ids.shape

    def rms(x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * weight

    freqs = 1.0 / (10000.0 ** (torch.arange(0, DH, 2, dtype=torch.float64) / DH))  # (DH/2,)
    angles = torch.outer(torch.arange(seq, dtype=torch.float64), freqs)  # (S, DH/2)
    freqs_cis = torch.polar(torch.ones_like(angles), angles)[None, :, None, :]  # (1, S, 1, DH/2)

    def rope(
        x,
    ):  # (B, S, nH, DH): rotate the adjacent pairs (x[2i], x[2i+1]) as complex numbers
        xc = torch.view_as_complex(x.reshape(batch, seq, NH, DH // 2, 2).contiguous())
        return torch.view_as_real(xc * freqs_cis).flatten(3)

    keep = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, S): key padding
    x = w["encoder.weight"][input_ids]  # (B, S, H)
    for i in range(L):
        p = f"transformer_encoder.{i}."
        h = rms(x, w[p + "attention_norm.weight"])
        qkv = (h @ w[p + "qkv.weight"].T).view(batch, seq, NH, 3 * DH)
        q, k, v = (
            qkv[..., :DH],
            qkv[..., DH : 2 * DH],
            qkv[..., 2 * DH :],
        )  # interleaved per head
        q, k = rope(q), rope(k)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(DH)
        probs = scores.masked_fill(~keep, float("-inf")).softmax(-1)
        attn = torch.einsum("bhqk,bkhd->bqhd", probs, v).reshape(batch, seq, H)
        x = x + attn @ w[p + "wo.weight"].T
        h = rms(x, w[p + "ffn_norm.weight"])
        gate_up = h @ w[p + "ffn.w12.weight"].T
        gate, up = gate_up[..., :FFN], gate_up[..., FFN:]
        x = x + (F.silu(gate) * up) @ w[p + "ffn.w3.weight"].T
    x = rms(x, w["layer_norm.weight"])
    if tied:
        logits = x @ w["encoder.weight"].T
    else:
        logits = x @ w["decoder.weight"].T + w["decoder.bias"]
    return x, logits


def inputs():
    ids, mask = pad(make_sequences([11, 7, 3], vocab_size=V, seed=3))
    return ids, mask


def assert_close_on_tokens(actual, expected, mask, atol=1e-4):
    keep = mask.bool()
    torch.testing.assert_close(actual[keep].double(), expected[keep], atol=atol, rtol=1e-4)


def assert_clean(info):
    assert not info["missing_keys"], info
    assert not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    assert not info.get("error_msgs"), info


def write_released(folder, weights) -> None:
    """`NeoBERTLMHead` layout: `model.` prefix, fused w12, untied decoder with bias, released config.json."""
    os.makedirs(folder, exist_ok=True)
    state = {(k if k.startswith("decoder.") else "model." + k): v.contiguous() for k, v in weights.items()}
    save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(released_config_json(), f)


def write_fork(folder, weights, prefix: str = "model.", decoder_key: bool = False) -> None:
    """The fork's export: separate `ffn.w1` (gate) / `ffn.w2` (up), tied decoder without bias (the tied
    `decoder.weight` stored too when `decoder_key`)."""
    os.makedirs(folder, exist_ok=True)
    state = {}
    for k, v in weights.items():
        if k.startswith("decoder."):
            continue
        if k.endswith("ffn.w12.weight"):
            state[prefix + k.replace("w12", "w1")] = v[:FFN].contiguous()
            state[prefix + k.replace("w12", "w2")] = v[FFN:].contiguous()
        else:
            state[prefix + k] = v.contiguous()
    if decoder_key:
        state["decoder.weight"] = weights["encoder.weight"].clone()
    save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    config = released_config_json(tie_word_embeddings=True, architectures=["NeoBERTForMaskedLM"])
    config.pop("auto_map")
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)


def test_released_layout_loads_clean_and_matches_reference(tmp_path):
    weights = random_weights()
    write_released(tmp_path, weights)
    model, info = AutoModelForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert_clean(info)
    assert isinstance(model, NeoBERTForMaskedLM)
    assert model.config.ffn_size == FFN
    assert model.model.transformer_encoder[0].ffn.w12.weight.shape == (2 * FFN, H)
    # Untied decoder with bias, loaded from the file (not from the embedding).
    assert model.decoder.weight.data_ptr() != model.model.encoder.weight.data_ptr()
    torch.testing.assert_close(model.decoder.weight, weights["decoder.weight"])
    torch.testing.assert_close(model.decoder.bias, weights["decoder.bias"])

    ids, mask = inputs()
    hidden_ref, logits_ref = reference_forward(weights, ids, mask)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    assert_close_on_tokens(logits, logits_ref, mask)
    # Padding does not leak into the real tokens: each row alone gives the same result.
    with torch.no_grad():
        alone = model(input_ids=ids[2:, : int(mask[2].sum())]).logits[0]
    assert_close_on_tokens(
        alone,
        logits_ref[2, : int(mask[2].sum())],
        torch.ones(len(alone), dtype=torch.long),
    )

    # The base model reads the same folder with the `model.` prefix stripped and the head keys left aside.
    base, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(base, NeoBERTModel)
    assert not info["missing_keys"], info
    assert not info["mismatched_keys"], info
    assert set(info["unexpected_keys"]) <= {"decoder.weight", "decoder.bias"}, info
    with torch.no_grad():
        hidden = base(input_ids=ids, attention_mask=mask).last_hidden_state
    assert_close_on_tokens(hidden, hidden_ref, mask)


def _rotate_half_rope(x, cos, sin):
    """The other RoPE convention (pairs `(x[i], x[i + Dh/2])`), to show the reference tells them apart."""
    x1, x2 = x.float().chunk(2, dim=-1)
    cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).type_as(x)


@pytest.mark.parametrize("mutation", ["rotate_half_rope", "qkv_blocks", "w12_up_first"])
def test_reference_rejects_the_wrong_conventions(tmp_path, monkeypatch, mutation):
    """Each convention of the definition changes the outputs: the reference comparison above can fail."""
    from neobert_hf.modeling import modeling_neobert

    weights = random_weights()
    write_released(tmp_path, weights)
    model = AutoModelForMaskedLM.from_pretrained(tmp_path)
    if mutation == "rotate_half_rope":
        monkeypatch.setattr(modeling_neobert, "apply_rotary_pos_emb", _rotate_half_rope)
    with torch.no_grad():
        for block in model.model.transformer_encoder:
            if mutation == "qkv_blocks":  # what a model splitting [Q | K | V] blocks would read from these rows
                w = block.qkv.weight
                w.copy_(w.view(NH, 3, DH, H).transpose(0, 1).reshape(3 * H, H))
            if mutation == "w12_up_first":
                block.ffn.w12.weight.copy_(block.ffn.w12.weight.roll(FFN, dims=0))
    ids, mask = inputs()
    _, expected = reference_forward(weights, ids, mask)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    keep = mask.bool()
    assert not torch.allclose(logits[keep].double(), expected[keep], atol=1e-2)


def test_base_model_layout_without_prefix_loads_clean(tmp_path):
    weights = random_weights()
    state = {k: v for k, v in weights.items() if not k.startswith("decoder.")}
    save_file(state, os.path.join(tmp_path, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(tmp_path, "config.json"), "w") as f:
        json.dump(released_config_json(architectures=["NeoBERT"]), f)
    base, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert_clean(info)
    ids, mask = inputs()
    hidden_ref, _ = reference_forward(weights, ids, mask)
    with torch.no_grad():
        hidden = base(input_ids=ids, attention_mask=mask).last_hidden_state
    assert_close_on_tokens(hidden, hidden_ref, mask)


@pytest.mark.parametrize("decoder_key", [False, True], ids=["tied_key_dropped", "tied_key_stored"])
def test_fork_layout_loads_fused_and_tied_and_saves_canonical(tmp_path, decoder_key):
    weights = random_weights(seed=1)
    write_fork(tmp_path / "fork", weights, decoder_key=decoder_key)
    model, info = AutoModelForMaskedLM.from_pretrained(tmp_path / "fork", output_loading_info=True)
    assert_clean(info)
    assert model.config.tie_word_embeddings is True
    assert model.config.decoder_bias is False and model.decoder.bias is None
    for i in range(L):
        torch.testing.assert_close(
            model.model.transformer_encoder[i].ffn.w12.weight,
            weights[f"transformer_encoder.{i}.ffn.w12.weight"],
        )
    # Tied: the decoder *is* the embedding (same storage), so training one trains the other.
    assert model.decoder.weight.data_ptr() == model.model.encoder.weight.data_ptr()

    ids, mask = inputs()
    _, logits_ref = reference_forward(weights, ids, mask, tied=True)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    assert_close_on_tokens(logits, logits_ref, mask)

    # Saving writes the canonical fused layout, which loads again clean and gives the same outputs.
    model.save_pretrained(tmp_path / "canonical")
    with safe_open(str(tmp_path / "canonical" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "model.transformer_encoder.0.ffn.w12.weight" in keys
    assert not any(".ffn.w1." in k or ".ffn.w2." in k for k in keys)
    assert "decoder.bias" not in keys
    reloaded, info = AutoModelForMaskedLM.from_pretrained(tmp_path / "canonical", output_loading_info=True)
    assert_clean(info)
    assert reloaded.decoder.weight.data_ptr() == reloaded.model.encoder.weight.data_ptr()
    with torch.no_grad():
        again = reloaded(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(again[mask.bool()], logits[mask.bool()])


def test_fork_base_model_layout_loads_fused(tmp_path):
    weights = random_weights(seed=4)
    write_fork(tmp_path, weights, prefix="")
    base, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert_clean(info)
    ids, mask = inputs()
    hidden_ref, _ = reference_forward(weights, ids, mask)
    with torch.no_grad():
        hidden = base(input_ids=ids, attention_mask=mask).last_hidden_state
    assert_close_on_tokens(hidden, hidden_ref, mask)


@pytest.mark.parametrize("tie", [True, False])
def test_tying_follows_config_both_ways(tmp_path, tie):
    config = NeoBERTConfig(
        vocab_size=V,
        hidden_size=H,
        num_attention_heads=NH,
        num_hidden_layers=1,
        intermediate_size=I,
        tie_word_embeddings=tie,
    )
    model = NeoBERTForMaskedLM(config)
    assert (model.decoder.weight is model.model.encoder.weight) is tie
    assert (model.decoder.bias is None) is tie
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert ("decoder.weight" in keys) is not tie
    reloaded, info = NeoBERTForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert_clean(info)
    assert (reloaded.decoder.weight.data_ptr() == reloaded.model.encoder.weight.data_ptr()) is tie
    torch.testing.assert_close(reloaded.decoder.weight, model.decoder.weight)
    torch.testing.assert_close(reloaded.model.encoder.weight, model.model.encoder.weight)
    if not tie:
        # An untied decoder keeps its own values: changing the embedding leaves it alone.
        with torch.no_grad():
            reloaded.model.encoder.weight.add_(1.0)
        torch.testing.assert_close(reloaded.decoder.weight, model.decoder.weight)


def test_meta_device_load_rebuilds_inv_freq_and_loads_bf16(tmp_path):
    weights = random_weights(seed=2)
    write_released(tmp_path, weights)
    expected_inv_freq = 1.0 / (10000.0 ** (torch.arange(0, DH, 2, dtype=torch.float32) / DH))

    model = AutoModelForMaskedLM.from_pretrained(tmp_path)
    fresh = NeoBERTForMaskedLM(model.config)
    inv_freq = model.model.rotary_emb.inv_freq
    assert inv_freq.device.type == "cpu"
    torch.testing.assert_close(inv_freq, fresh.model.rotary_emb.inv_freq)
    torch.testing.assert_close(inv_freq.float(), expected_inv_freq)

    bf16 = AutoModelForMaskedLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert bf16.dtype == torch.bfloat16
    assert bf16.model.transformer_encoder[0].qkv.weight.dtype == torch.bfloat16
    # RoPE frequencies stay exact: the rotation is computed in fp32 from fp32 frequencies.
    assert bf16.model.rotary_emb.inv_freq.dtype == torch.float32
    torch.testing.assert_close(bf16.model.rotary_emb.inv_freq, expected_inv_freq)
    ids, mask = inputs()
    _, logits_ref = reference_forward(weights, ids, mask)
    with torch.no_grad():
        logits = bf16(input_ids=ids, attention_mask=mask).logits
    assert logits.dtype == torch.bfloat16
    keep = mask.bool()
    error = (logits[keep].double() - logits_ref[keep]).abs().max()
    assert error < 0.05 * logits_ref[keep].abs().max(), error
