"""The attention implementations agree on padded inputs, and every documented mask format works."""

import pytest
import torch

from helpers.modeling import make_sequences, pad, tiny_config
from neobert_hf import NeoBERTModel


def build(implementation: str):
    torch.manual_seed(0)
    return NeoBERTModel._from_config(tiny_config(), attn_implementation=implementation).eval()


@pytest.fixture(scope="module")
def padded_batch():
    return pad(make_sequences([17, 5, 30, 12], seed=11))


@pytest.mark.integration
@pytest.mark.parametrize("implementation", ["sdpa", "flex_attention"])
def test_implementations_match_eager(implementation, padded_batch, fresh_flex_compile):
    ids, mask = padded_batch
    keep = mask.bool()
    with torch.no_grad():
        reference = build("eager")(ids, attention_mask=mask).last_hidden_state
        out = build(implementation)(ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(out[keep], reference[keep], atol=1e-5, rtol=0)


def additive(mask: torch.Tensor, value: float) -> torch.Tensor:
    return torch.where(mask.bool(), 0.0, value)


@pytest.mark.parametrize(
    "convert",
    [
        lambda m: m,  # 0/1 int64
        lambda m: m.int(),
        lambda m: m.bool(),
        lambda m: m.float(),  # 0/1 float
        lambda m: additive(m, torch.finfo(torch.float32).min),
        lambda m: additive(m, float("-inf")),
        lambda m: additive(m, -10000.0),
    ],
    ids=["int64", "int32", "bool", "float01", "additive-min", "additive-inf", "additive-1e4"],
)
@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_mask_formats(convert, implementation, padded_batch):
    ids, mask = padded_batch
    model = build(implementation)
    keep = mask.bool()
    with torch.no_grad():
        reference = model(ids, attention_mask=mask).last_hidden_state
        out = model(ids, attention_mask=convert(mask)).last_hidden_state
    torch.testing.assert_close(out[keep], reference[keep], atol=1e-6, rtol=0)


def test_no_mask_equals_all_ones_mask(padded_batch):
    ids, _ = padded_batch
    model = build("sdpa")
    with torch.no_grad():
        a = model(ids).last_hidden_state
        b = model(ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        c = model(ids, attention_mask=torch.zeros(ids.shape)).last_hidden_state  # all-zero additive = keep all
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    torch.testing.assert_close(a, c, atol=1e-6, rtol=0)


def test_padding_does_not_change_real_tokens():
    """A sequence alone equals the same sequence inside a padded batch."""
    model = build("sdpa")
    sequences = make_sequences([9, 25], seed=1)
    ids, mask = pad(sequences)
    with torch.no_grad():
        alone = model(sequences[0][None]).last_hidden_state[0]
        batched = model(ids, attention_mask=mask).last_hidden_state[0, :9]
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=0)


def test_left_padding_equals_right_padding():
    """RoPE is relative: left-padded inputs with default positions give the same states for real tokens."""
    model = build("sdpa")
    seq = make_sequences([11], seed=3)[0]
    right = torch.cat([seq, torch.zeros(4, dtype=torch.long)])[None]
    left = torch.cat([torch.zeros(4, dtype=torch.long), seq])[None]
    ones = torch.ones(11, dtype=torch.long)
    zeros = torch.zeros(4, dtype=torch.long)
    with torch.no_grad():
        r = model(right, attention_mask=torch.cat([ones, zeros])[None]).last_hidden_state[0, :11]
        l_ = model(left, attention_mask=torch.cat([zeros, ones])[None]).last_hidden_state[0, 4:]
    torch.testing.assert_close(r, l_, atol=1e-5, rtol=0)


def test_bad_mask_shape_is_clear_error(padded_batch):
    ids, mask = padded_batch
    with pytest.raises(ValueError, match="2-D"):
        build("sdpa")(ids, attention_mask=mask[:, None, None, :])


def test_output_attentions_eager(padded_batch):
    ids, mask = padded_batch
    out = build("eager")(ids, attention_mask=mask, output_attentions=True, output_hidden_states=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (4, 4, 30, 30)
    # masked keys get no probability mass
    assert out.attentions[0][1, :, :, 5:].abs().max() == 0
    assert len(out.hidden_states) == 3


def test_max_positions_boundary():
    model = NeoBERTModel(tiny_config(max_position_embeddings=32)).eval()
    with torch.no_grad():
        model(torch.randint(5, 128, (1, 32)))
        with pytest.raises(ValueError, match="max_position_embeddings=32"):
            model(torch.randint(5, 128, (1, 33)))
        with pytest.raises(ValueError, match="position_ids reach 40"):
            model(torch.randint(5, 128, (1, 8)), position_ids=torch.arange(33, 41)[None])
