"""MuonClip: the Muon/AdamW parameter split, one-optimizer behaviour (schedulers, state round trip), training, and
QK-clip: the per-head maximum attention logit lands exactly on the threshold and other heads are untouched."""

import pytest
import torch
from helpers.modeling import make_sequences, pack, random_lengths
from helpers.training import losses, make_args, make_model, make_trainer, mlm_samples

from neobert_hf.modeling.modeling_neobert import apply_rotary_pos_emb
from neobert_hf.training import QKClip, build_muonclip, muon_parameter_names


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest(tmp_path):
    model = make_model()
    names = muon_parameter_names(model)
    expected = {
        f"model.transformer_encoder.{i}.{m}.weight" for i in range(2) for m in ("qkv", "wo", "ffn.w12", "ffn.w3")
    }
    assert set(names) == expected
    args = make_args(tmp_path, optimizer="muonclip", weight_decay=0.01, muon_weight_decay=0.02, muon_lr=0.05)
    trainer = make_trainer(args, model=model)
    optimizer = build_muonclip(model, args, trainer.get_decay_parameter_names(model))
    by_id = {id(p): n for n, p in model.named_parameters()}
    groups = [
        (g["muon"], g["weight_decay"], g["lr"], {by_id[id(p)] for p in g["params"]}) for g in optimizer.param_groups
    ]
    assert groups[0][:3] == (False, 0.01, 1e-3)  # AdamW, decayed: embeddings, decoder weight
    assert groups[0][3] == {"model.encoder.weight", "decoder.weight"}
    assert groups[1][0] is False and groups[1][1] == 0.0  # AdamW, no decay: norms and the decoder bias
    assert all("norm" in n or n == "decoder.bias" for n in groups[1][3])
    assert groups[2][:3] == (True, 0.02, 0.05) and groups[2][3] == expected


def test_muonclip_is_one_optimizer_for_schedulers_and_checkpoints(tmp_path):
    model = make_model()
    args = make_args(tmp_path, optimizer="muonclip")
    optimizer = build_muonclip(model, args, [n for n, _ in model.named_parameters()])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    assert optimizer.adamw.param_groups[0]["lr"] == 0.5e-3 and optimizer.muon.param_groups[0]["lr"] == 0.5e-3

    batch = {"input_ids": torch.randint(5, 128, (2, 9)), "labels": torch.randint(5, 128, (2, 9))}
    model(**batch).loss.backward()
    optimizer.step()
    state = optimizer.state_dict()
    assert set(state) == {"adamw", "muon"}

    clone = make_model()
    clone.load_state_dict(model.state_dict())
    other = build_muonclip(clone, args, [n for n, _ in clone.named_parameters()])
    other.load_state_dict(state)
    # the group dicts are relinked after loading: a scheduler still reaches the inner optimisers
    for group in other.param_groups:
        group["lr"] = 0.123
    assert other.adamw.param_groups[0]["lr"] == 0.123 and other.muon.param_groups[0]["lr"] == 0.123
    muon_param = dict(clone.named_parameters())["model.transformer_encoder.0.qkv.weight"]
    assert torch.equal(
        other.state[muon_param]["momentum_buffer"],
        optimizer.state[dict(model.named_parameters())["model.transformer_encoder.0.qkv.weight"]]["momentum_buffer"],
    )
    del scheduler


def test_muonclip_trains(tmp_path):
    data = mlm_samples(8, mask_rates=[0.3])
    args = make_args(
        tmp_path,
        optimizer="muonclip",
        max_steps=12,
        learning_rate=1e-2,
        per_device_train_batch_size=8,
        qk_clip_threshold=100.0,
    )
    trainer = make_trainer(args, train_dataset=data)
    trainer.train()
    logged = losses(trainer)
    first, last = sum(logged[s] for s in (1, 2, 3)) / 3, sum(logged[s] for s in (10, 11, 12)) / 3
    assert last < first - 1.0, (first, last)


def _capture_block_inputs(model, inputs):
    """The normalised hidden states entering every block's `qkv`, and RoPE's (cos, sin)."""
    captured, cos_sin = [], []
    handles = [
        block.qkv.register_forward_hook(lambda m, args, out: captured.append(args[0].detach()))
        for block in model.model.transformer_encoder
    ]
    handles.append(model.model.rotary_emb.register_forward_hook(lambda m, a, out: cos_sin.append(out)))
    with torch.no_grad():
        model(**inputs)
    for handle in handles:
        handle.remove()
    return captured, cos_sin[0]


def _max_logits_reference(model, block_inputs, rope, segments):
    """Per layer and head, the maximum of q.k / sqrt(Dh) over pairs inside each sequence, by hand, for the current
    `qkv` weights applied to fixed block inputs (clipping one layer changes the inputs of the next; the clip's
    guarantee is per layer, for the batch it was measured on)."""
    config = model.config
    heads, dim = config.num_attention_heads, config.head_dim
    result = torch.full((len(block_inputs), heads), float("-inf"))
    for layer, (x, block) in enumerate(zip(block_inputs, model.model.transformer_encoder)):
        with torch.no_grad():
            qkv = block.qkv(x)
        b, s, _ = qkv.shape
        q, k, _ = qkv.view(b, s, heads, 3 * dim).chunk(3, dim=-1)
        q, k = apply_rotary_pos_emb(q, *rope), apply_rotary_pos_emb(k, *rope)
        for row, start, end in segments:
            scores = torch.einsum("qhd,khd->hqk", q[row, start:end].float(), k[row, start:end].float()) * dim**-0.5
            result[layer] = torch.maximum(result[layer], scores.amax(dim=(1, 2)))
    return result


def _sharpen(model, factor=12.0):
    """Scales up the query and key rows so that some heads have large attention logits."""
    with torch.no_grad():
        for block in model.model.transformer_encoder:
            rows = block.qkv.weight.view(model.config.num_attention_heads, 3, model.config.head_dim, -1)
            scale = torch.linspace(1.0, factor, model.config.num_attention_heads)[:, None, None]
            rows[:, 0] *= scale
            rows[:, 1] *= scale


@pytest.mark.parametrize("layout", ["padded", "packed"])
@pytest.mark.parametrize("alpha", [0.5, 0.0, 1.0])
def test_qk_clip_puts_the_max_logit_on_the_threshold(layout, alpha):
    model = make_model()
    model.eval()
    _sharpen(model)
    if layout == "packed":
        lengths = random_lengths(5, low=4, high=30, seed=1)
        inputs = pack(make_sequences(lengths, seed=1))
        starts = [0, *torch.cumsum(torch.tensor(lengths), 0).tolist()]
        segments = [(0, starts[i], starts[i + 1]) for i in range(len(lengths))]
    else:
        ids = torch.randint(5, 128, (3, 20), generator=torch.Generator().manual_seed(1))
        mask = torch.ones(3, 20, dtype=torch.long)
        mask[1, 12:] = 0
        mask[2, 5:] = 0
        inputs = {"input_ids": ids, "attention_mask": mask}
        segments = [(0, 0, 20), (1, 0, 12), (2, 0, 5)]

    block_inputs, rope = _capture_block_inputs(model, inputs)
    before = _max_logits_reference(model, block_inputs, rope, segments)
    threshold = float(before.median())
    clip = QKClip(model, threshold=threshold, alpha=alpha)
    clip.capturing = True
    with torch.no_grad():
        model(**inputs)
    clip.capturing = False
    torch.testing.assert_close(clip.max_logits, before, rtol=1e-5, atol=1e-6)

    weights = [block.qkv.weight.detach().clone() for block in model.model.transformer_encoder]
    clipped = clip.apply()
    over = before > threshold
    assert clipped == int(over.sum()) > 0 and (~over).any()
    after = _max_logits_reference(model, block_inputs, rope, segments)
    torch.testing.assert_close(after[over], torch.full_like(after[over], threshold), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(after[~over], before[~over], rtol=0, atol=0)

    heads, dim = model.config.num_attention_heads, model.config.head_dim
    for layer, block in enumerate(model.model.transformer_encoder):
        old = weights[layer].view(heads, 3, dim, -1)
        new = block.qkv.weight.detach().view(heads, 3, dim, -1)
        assert torch.equal(new[:, 2], old[:, 2])  # value rows never change
        for head in range(heads):
            if not over[layer, head]:
                assert torch.equal(new[head], old[head])
            else:
                eta = threshold / before[layer, head]
                torch.testing.assert_close(new[head, 0], old[head, 0] * eta**alpha)
                torch.testing.assert_close(new[head, 1], old[head, 1] * eta ** (1 - alpha))
    clip.remove()


def test_qk_clip_runs_inside_the_trainer_on_its_schedule(tmp_path):
    model = make_model()
    _sharpen(model, factor=30.0)
    args = make_args(
        tmp_path,
        optimizer="muonclip",
        max_steps=4,
        learning_rate=0.0,
        lr_scheduler_type="constant",
        qk_clip_threshold=0.5,
        qk_clip_interval=2,
        qk_clip_warmup_steps=1,
        muon_weight_decay=0.0,
        weight_decay=0.0,
    )
    trainer = make_trainer(args, model=model)
    applied = []
    original = trainer._qk_clip.apply
    trainer._qk_clip.apply = lambda: applied.append(trainer.state.global_step + 1) or original()
    trainer.train()
    assert applied == [2, 4]
    logs = [e for e in trainer.state.log_history if "qk_max_logit" in e]
    assert logs and logs[0]["qk_clipped_heads"] > 0
    assert logs[-1]["qk_max_logit"] <= logs[0]["qk_max_logit"]
