"""GPU-only attention paths: flash-attn varlen and torch's native varlen on packed batches (run with `-m gpu`)."""

import importlib.util

import pytest
import torch

from helpers.modeling import make_sequences, pack, pad, random_lengths, tiny_config
from neobert_hf import NeoBERTModel


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

IMPLEMENTATIONS = ["torch_varlen"]
if importlib.util.find_spec("flash_attn") is not None:
    IMPLEMENTATIONS.append("flash_attention_2")


def build(implementation: str):
    torch.manual_seed(0)
    config = tiny_config(hidden_size=128, num_attention_heads=2)  # head dim 64: supported by every varlen kernel
    return NeoBERTModel._from_config(config, attn_implementation=implementation, dtype=torch.bfloat16).cuda()


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_varlen_packed_equals_sdpa_padded(implementation):
    sequences = [s.cuda() for s in make_sequences(random_lengths(8, 1, 200, seed=1), seed=1)]
    model = build(implementation).train()
    batch = {k: v.cuda() if torch.is_tensor(v) else v for k, v in pack(sequences).items()}
    out = model(**batch).last_hidden_state[0]
    out.float().pow(2).sum().backward()
    grads = {n: p.grad.float().clone() for n, p in model.named_parameters()}

    reference_model = build("sdpa").train()
    ids, mask = pad(sequences)
    ref = reference_model(ids.cuda(), attention_mask=mask.cuda()).last_hidden_state
    ref = torch.cat([ref[i, : len(s)] for i, s in enumerate(sequences)])
    ref.float().pow(2).sum().backward()

    torch.testing.assert_close(out.float(), ref.float(), atol=3e-2, rtol=3e-2)
    for name, p in reference_model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad.float(), atol=5e-2, rtol=5e-2, msg=name)


def test_torch_varlen_unpads_padded_batches():
    sequences = [s.cuda() for s in make_sequences([30, 7, 64], seed=2)]
    ids, mask = pad(sequences)
    with torch.no_grad():
        out = build("torch_varlen")(ids.cuda(), attention_mask=mask.cuda()).last_hidden_state
        ref = build("sdpa")(ids.cuda(), attention_mask=mask.cuda()).last_hidden_state
    keep = mask.bool().cuda()
    torch.testing.assert_close(out[keep].float(), ref[keep].float(), atol=3e-2, rtol=3e-2)
    assert out[~keep].abs().max() == 0
