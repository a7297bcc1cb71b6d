"""Invariants of the padding-free (packed) forward: every token of a packed row equals the padded forward of its own
sequence, for the outputs and for the gradients, on every attention implementation that runs on this machine."""

import pytest
import torch

from helpers.modeling import make_sequences, pack, pad, random_lengths, tiny_config
from neobert_hf import NeoBERTForMaskedLM, NeoBERTModel
from neobert_hf.modeling.modeling_neobert import (
    PackedMetadata,
    cu_seq_lens_from_position_ids,
    packed_attention_forward,
    padded_view_attention_forward,
    per_sequence_attention_forward,
    position_ids_from_cu_seq_lens,
)


ATOL = 1e-5


def build(implementation: str, cls=NeoBERTModel, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return cls._from_config(tiny_config(**overrides), attn_implementation=implementation)


def per_sequence_reference(model, sequences):
    """Padded forward, then the rows of each sequence concatenated in packed order."""
    ids, mask = pad(sequences)
    out = model(ids, attention_mask=mask).last_hidden_state
    return torch.cat([out[i, : len(s)] for i, s in enumerate(sequences)])


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("with_cu_seq_lens", [True, False])
def test_packed_forward_equals_padded(implementation, seed, with_cu_seq_lens):
    model = build(implementation).eval()
    sequences = make_sequences(random_lengths(7, 1, 48, seed=seed), seed=seed)
    batch = pack(sequences)
    if not with_cu_seq_lens:  # DataCollatorWithFlattening without return_flash_attn_kwargs: positions alone
        batch = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"]}
    packed = model(**batch).last_hidden_state[0]
    reference = per_sequence_reference(model, sequences)
    torch.testing.assert_close(packed, reference, atol=ATOL, rtol=0)


def test_packed_differs_from_leaky_attention():
    """Guards the test above: attending across documents would change the outputs."""
    model = build("sdpa").eval()
    sequences = make_sequences([12, 20, 7])
    batch = pack(sequences)
    packed = model(**batch).last_hidden_state
    leaky = model(batch["input_ids"], position_ids=batch["position_ids"], attention_mask=torch.ones(1, 39)).last_hidden_state
    assert (packed - leaky).abs().max() > 1e-3


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_packed_gradients_equal_padded(implementation):
    sequences = make_sequences(random_lengths(6, 2, 40, seed=3), seed=3)
    weights = torch.randn(sum(len(s) for s in sequences), 64, generator=torch.Generator().manual_seed(0))

    packed_model = build(implementation).train()
    out = packed_model(**pack(sequences)).last_hidden_state[0]
    (out * weights).sum().backward()

    padded_model = build(implementation).train()
    reference = per_sequence_reference(padded_model, sequences)
    (reference * weights).sum().backward()

    torch.testing.assert_close(out, reference, atol=ATOL, rtol=0)
    for (name, p), (_, q) in zip(packed_model.named_parameters(), padded_model.named_parameters()):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_packed_flex_attention_forward_equals_padded(fresh_flex_compile):
    """flex_attention uses a block-sparse document mask; torch has no flex backward on CPU, so forward only."""
    model = build("flex_attention").eval()
    sequences = make_sequences([9, 30, 1, 17], seed=5)
    with torch.no_grad():
        packed = model(**pack(sequences)).last_hidden_state[0]
        reference = per_sequence_reference(build("eager").eval(), sequences)
    torch.testing.assert_close(packed, reference, atol=ATOL, rtol=0)


def test_packed_masked_lm_loss_equals_padded():
    sequences = make_sequences([10, 25, 4, 31], seed=7)
    labels = [torch.where(torch.rand(len(s), generator=torch.Generator().manual_seed(i)) < 0.3, s, -100) for i, s in enumerate(sequences)]
    model = build("sdpa", cls=NeoBERTForMaskedLM).eval()
    batch = pack(sequences)
    packed = model(**batch, labels=torch.cat(labels)[None], sparse_prediction=True)
    ids, mask = pad(sequences)
    padded_labels = torch.full_like(ids, -100)
    for i, lab in enumerate(labels):
        padded_labels[i, : len(lab)] = lab
    padded = model(ids, attention_mask=mask, labels=padded_labels)
    torch.testing.assert_close(packed.loss, padded.loss, atol=1e-5, rtol=0)
    assert packed.logits.shape == (int(sum((lab != -100).sum() for lab in labels)), 128)


def test_packed_rope_false_uses_restarting_positions():
    model = build("sdpa", rope=False).eval()
    sequences = make_sequences([5, 11, 8], seed=2)
    packed = model(**pack(sequences)).last_hidden_state[0]
    torch.testing.assert_close(packed, per_sequence_reference(model, sequences), atol=ATOL, rtol=0)


def test_fixed_size_cu_seq_lens_with_empty_sequences():
    """cu_seq_lens padded to a fixed length by repeating T (zero-length sequences) is valid."""
    model = build("sdpa").eval()
    sequences = make_sequences([6, 13, 9], seed=4)
    batch = pack(sequences)
    total = batch["input_ids"].shape[1]
    batch["cu_seq_lens_q"] = batch["cu_seq_lens_k"] = torch.cat(
        [batch["cu_seq_lens_q"], torch.full((3,), total, dtype=torch.int32)]
    )
    packed = model(**batch).last_hidden_state[0]
    torch.testing.assert_close(packed, per_sequence_reference(model, sequences), atol=ATOL, rtol=0)


def test_metadata_helpers_round_trip():
    lengths = [3, 1, 7, 2]
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    cu = cu_seq_lens_from_position_ids(positions)
    assert cu.dtype == torch.int32 and cu.tolist() == [0, 3, 4, 11, 13]
    assert torch.equal(position_ids_from_cu_seq_lens(cu, 13), positions)
    meta = PackedMetadata(cu, 7, 13)
    assert meta.segment_ids.tolist() == [0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 3, 3]
    assert meta.offsets.tolist() == [0, 1, 2, 0, 0, 1, 2, 3, 4, 5, 6, 0, 1]


def test_padded_view_kernel_never_builds_total_square_mask(monkeypatch):
    """The CPU packed kernel attends over (n, L, L) blocks; no tensor of T x T elements appears."""
    lengths = [64] * 16
    total = sum(lengths)
    cu = torch.nn.functional.pad(torch.cumsum(torch.tensor(lengths), 0), (1, 0)).to(torch.int32)
    meta = PackedMetadata(cu, 64, total)
    q, k, v = (torch.randn(1, 2, total, 8) for _ in range(3))
    seen = []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.extend(t.numel() for t in list(args) + [kwargs.get("attn_mask")] if torch.is_tensor(t))
        return real_sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    module = torch.nn.Module()
    out = padded_view_attention_forward(module, q, k, v, meta, scaling=8**-0.5)
    assert out.shape == (1, total, 2, 8)
    assert seen and max(seen) < total * total


@pytest.mark.parametrize("use_sdpa", [True, False])
def test_per_sequence_kernel_equals_padded_view_kernel(use_sdpa):
    """The two exact packed kernels (per-sequence calls on CPU, one padded view on GPU / under compile) agree on
    outputs and on the gradients of q, k and v, including zero-length entries of a fixed-size `cu_seq_lens`."""
    torch.manual_seed(0)
    lengths = [5, 1, 17, 0, 9, 30, 0]
    total = sum(lengths)
    cu = torch.nn.functional.pad(torch.cumsum(torch.tensor(lengths), 0), (1, 0)).to(torch.int32)
    meta = PackedMetadata(cu, max(lengths), total)
    assert meta.lengths == lengths
    module = torch.nn.Module().eval()
    inputs = [torch.randn(1, 2, total, 8, dtype=torch.float64) for _ in range(3)]
    results = []
    for kernel in (per_sequence_attention_forward, padded_view_attention_forward):
        q, k, v = (x.clone().requires_grad_() for x in inputs)
        out = kernel(module, q, k, v, meta, scaling=8**-0.5, use_sdpa=use_sdpa)
        assert out.shape == (1, total, 2, 8)
        (out * torch.arange(out.numel(), dtype=out.dtype).view_as(out).sin()).sum().backward()
        results.append((out.detach(), q.grad, k.grad, v.grad))
    # The eager reference takes its softmax in fp32 (as the released model), so it agrees to fp32 rounding only.
    tolerance = 1e-12 if use_sdpa else 1e-6
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=tolerance, atol=tolerance)
    # Every token attends within its own sequence only: perturbing one sequence leaves the others unchanged.
    q, k, v = (x.clone() for x in inputs)
    v[:, :, cu[2] : cu[3]] += 1.0
    changed = per_sequence_attention_forward(module, q, k, v, meta, scaling=8**-0.5, use_sdpa=use_sdpa)
    differs = (changed != results[0][0]).flatten(2).any(-1)[0]  # (T,)
    assert differs.tolist() == [cu[2] <= t < cu[3] for t in range(total)]


def test_cpu_packed_forward_uses_per_sequence_kernel(monkeypatch):
    """Eager CPU execution runs one attention call per non-empty sequence and never builds a padded view."""
    model = build("sdpa").eval()
    sequences = make_sequences([3, 11, 7, 2])
    calls = []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(query, *args, **kwargs):
        calls.append((query.shape[0], query.shape[2], kwargs.get("attn_mask")))
        return real_sdpa(query, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    with torch.no_grad():
        model(**pack(sequences))
    layers = model.config.num_hidden_layers
    assert [length for _, length, _ in calls] == [3, 11, 7, 2] * layers
    assert all(batch == 1 and mask is None for batch, _, mask in calls)
    assert packed_attention_forward.__module__ == per_sequence_attention_forward.__module__


def test_packed_input_errors():
    model = build("sdpa").eval()
    batch = pack(make_sequences([4, 6]))
    with pytest.raises(ValueError, match="no attention_mask"):
        model(**batch, attention_mask=torch.ones(1, 10))
    two_rows = dict(batch, input_ids=batch["input_ids"].repeat(2, 1))
    with pytest.raises(ValueError, match="batch size 1"):
        model(**two_rows)
    long_doc = pack(make_sequences([600]))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(**long_doc)
