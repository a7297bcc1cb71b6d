"""Training knobs users of the original NeoBERT trainer reach for: Polar Express orthogonalization in Muon, the
QK-clip layer mapping, plain Adam, a schedule length independent of max_steps (decay_steps) and a warmup given as a
fraction, gradient anomaly detection, weight-norm logging, and the W&B run settings (read back from an offline run)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers.training import losses, make_args, make_model, make_trainer
from helpers.wandb_runs import offline_run

from neobert_hf.training.callbacks import NonFiniteGradientError, weight_norms
from neobert_hf.training.optim import Muon, QKClip, build_muonclip, polar_express, qk_clip_layers


# --- Muon: Polar Express -------------------------------------------------------------------------------------------


def _singular_values(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(x.float())


@pytest.mark.parametrize("shape", [(64, 64), (48, 96), (96, 32)])
def test_polar_express_brings_the_singular_values_closer_to_one_than_newton_schulz(shape):
    from torch.optim._muon import _zeropower_via_newtonschulz

    def spectrum(low: float) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        u, _ = torch.linalg.qr(torch.randn(shape[0], shape[0], generator=g))
        v, _ = torch.linalg.qr(torch.randn(shape[1], shape[1], generator=g))
        k = min(shape)
        grad = u[:, :k] @ torch.diag(torch.logspace(low, 0, k)) @ v[:, :k].T  # singular values 10^low .. 1
        ns = _zeropower_via_newtonschulz(grad, (3.4445, -4.775, 2.0315), 5, 1e-7)
        return _singular_values(polar_express(grad, steps=5)), _singular_values(ns)

    pe, ns = spectrum(-2)
    assert 0.8 < float(pe.min()) and float(pe.max()) < 1.2, pe  # bf16 iteration with a 2% safety margin
    assert float((pe - 1).abs().mean()) < 0.6 * float((ns - 1).abs().mean())
    pe, ns = spectrum(-3)  # a harder spectrum: the smallest values are lifted further than by Newton-Schulz
    assert float(pe.min()) > 1.5 * float(ns.min()) and float(pe.max()) < 1.2


def test_muon_update_loop_matches_torch_muon_when_given_newton_schulz():
    from torch.optim._muon import _zeropower_via_newtonschulz

    torch.manual_seed(0)
    weights = [torch.randn(16, 8), torch.randn(8, 24)]
    a = [torch.nn.Parameter(w.clone()) for w in weights]
    b = [torch.nn.Parameter(w.clone()) for w in weights]
    options = dict(lr=0.02, weight_decay=0.1, momentum=0.9, adjust_lr_fn="match_rms_adamw")
    reference = torch.optim.Muon(a, **options)
    ours = Muon(b, orthogonalization="polar_express", **options)

    def newton_schulz(update, group):
        return _zeropower_via_newtonschulz(update, group["ns_coefficients"], group["ns_steps"], group["eps"])

    for step in range(3):
        grads = [torch.randn_like(w) for w in weights]
        for p, q, grad in zip(a, b, grads):
            p.grad, q.grad = grad.clone(), grad.clone()
        reference.step()
        ours._step_with(newton_schulz)
        for p, q in zip(a, b):
            torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_muonclip_with_polar_express_trains(tmp_path):
    def run(orthogonalization: str):
        args = make_args(tmp_path, optimizer="muonclip", muon_orthogonalization=orthogonalization, max_steps=4)
        trainer = make_trainer(args)
        trainer.train()
        optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
        assert optimizer.muon.orthogonalization == orthogonalization
        assert all(math.isfinite(v) for v in losses(trainer).values())
        return dict(trainer.model.named_parameters())

    polar, newton = run("polar_express"), run("newton_schulz")
    qkv = "model.transformer_encoder.0.qkv.weight"
    assert torch.isfinite(polar[qkv]).all() and not torch.equal(polar[qkv], newton[qkv])
    norm = "model.transformer_encoder.0.attention_norm.weight"  # an AdamW parameter: the same in both runs
    torch.testing.assert_close(polar[norm], newton[norm], rtol=1e-3, atol=1e-4)


def test_orthogonalization_needs_muonclip(tmp_path):
    with pytest.raises(ValueError, match="muon_orthogonalization applies to optimizer=muonclip"):
        make_args(tmp_path, muon_orthogonalization="polar_express")


# --- QK-clip layer mapping -----------------------------------------------------------------------------------------


def test_qk_clip_layers_mapping_names_the_blocks_and_projection():
    assert qk_clip_layers(None) == {"blocks": "transformer_encoder", "qkv": "qkv"}
    assert qk_clip_layers('{"qkv": "attn.qkv"}') == {"blocks": "transformer_encoder", "qkv": "attn.qkv"}
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['q_proj'\].*fused"):
        qk_clip_layers({"q_proj": "q"})
    with pytest.raises(ValueError, match="not a JSON object"):
        qk_clip_layers("{qkv: x}")


def test_qk_clip_follows_a_renamed_block_list():
    model = make_model()
    base = model.model
    base.add_module("layers", base.transformer_encoder)  # the same blocks under another name
    default = QKClip(model, threshold=1.0)
    renamed = QKClip(model, threshold=1.0, layers_mapping={"blocks": "layers"})
    assert renamed.projections == default.projections
    with pytest.raises(ValueError, match="cannot find its layers"):
        QKClip(model, threshold=1.0, layers_mapping={"qkv": "attention.qkv"})


def test_muon_matrices_follow_the_mapping(tmp_path):
    model = make_model()
    args = make_args(tmp_path, optimizer="muonclip", qk_clip_layers_mapping={"blocks": "transformer_encoder"})
    optimizer = build_muonclip(model, args, [])
    assert sum(len(g["params"]) for g in optimizer.muon.param_groups) == 8  # 2 layers x qkv, wo, w12, w3
    with pytest.raises(ValueError, match="applies to optimizer=muonclip"):
        make_args(tmp_path, qk_clip_layers_mapping={"blocks": "x"})


# --- Adam ----------------------------------------------------------------------------------------------------------


def test_adam_is_torch_adam_with_decay_groups(tmp_path):
    args = make_args(tmp_path, optimizer="adam", weight_decay=0.01, adam_beta2=0.98, max_steps=3)
    trainer = make_trainer(args)
    trainer.train()
    optimizer = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    assert type(optimizer) is torch.optim.Adam
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.98)
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    assert all("norm" in names[id(p)] or names[id(p)].endswith("bias") for p in optimizer.param_groups[1]["params"])
    assert all(math.isfinite(v) for v in losses(trainer).values())


# --- Schedule: decay_steps and a warmup fraction -------------------------------------------------------------------


def _learning_rates(tmp_path, **overrides) -> list[float]:
    args = make_args(tmp_path, learning_rate=1e-2, **overrides)
    trainer = make_trainer(args)
    trainer.create_optimizer_and_scheduler(num_training_steps=args.max_steps)
    rates = []
    for _ in range(args.max_steps):
        rates.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    return rates


def test_decay_steps_sets_the_schedule_length_and_holds_the_floor(tmp_path):
    from transformers import get_scheduler

    rates = _learning_rates(
        tmp_path, max_steps=10, decay_steps=6, warmup_steps=2, lr_scheduler_type="cosine", final_lr_ratio=0.1
    )
    reference = get_scheduler(
        "cosine_with_min_lr",
        torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-2),
        num_warmup_steps=2,
        num_training_steps=6,
        scheduler_specific_kwargs={"min_lr_rate": 0.1},
    )
    expected = [1e-2 * reference.lr_lambdas[0](min(step, 6)) for step in range(10)]
    assert rates == pytest.approx(expected)
    assert rates[6:] == pytest.approx([1e-3] * 4)  # the floor is held after decay_steps
    # without decay_steps the schedule spans max_steps
    plain = _learning_rates(tmp_path, max_steps=10, warmup_steps=2, lr_scheduler_type="cosine", final_lr_ratio=0.1)
    assert plain[6] > 1e-3 * 1.5


def test_a_warmup_fraction_is_a_share_of_the_schedule(tmp_path):
    rates = _learning_rates(tmp_path, max_steps=8, warmup_steps=0.25, lr_scheduler_type="linear")
    assert rates[:3] == pytest.approx([0.0, 5e-3, 1e-2])  # 2 warmup steps = 25% of 8
    rates = _learning_rates(tmp_path, max_steps=20, decay_steps=8, warmup_steps=0.25, lr_scheduler_type="linear")
    assert rates[:3] == pytest.approx([0.0, 5e-3, 1e-2])  # 25% of decay_steps


def test_decay_steps_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="decay_steps must be >= 1"):
        make_args(tmp_path, decay_steps=0)


# --- Anomalies and weight norms ------------------------------------------------------------------------------------


def test_detect_anomalies_stops_before_a_nan_gradient_reaches_the_weights(tmp_path):
    args = make_args(tmp_path, detect_anomalies=True, max_steps=4, max_grad_norm=1.0)  # clipping would spread a NaN
    model = make_model()
    poisoned = dict(model.named_parameters())["model.transformer_encoder.1.wo.weight"]
    calls = {"n": 0}

    def poison(grad):
        calls["n"] += 1
        return grad * float("nan") if calls["n"] >= 3 else grad  # the third microbatch's backward

    poisoned.register_hook(poison)
    trainer = make_trainer(args, model=model, train_dataset=None)
    with pytest.raises(NonFiniteGradientError, match=r"optimizer step 3 in 1 parameter\(s\): model.transformer_encoder.1.wo"):
        trainer.train()
    assert trainer.state.global_step == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the NaN never reached the weights


def test_weight_norms_are_the_l2_norms_per_kind_and_overall(tmp_path):
    model = make_model()
    metrics = weight_norms(model)
    params = dict(model.named_parameters())
    total = math.sqrt(sum(float(p.detach().pow(2).sum()) for p in params.values()))
    assert metrics["weight_norm"] == pytest.approx(total, rel=1e-5)
    qkv = math.sqrt(
        sum(float(params[f"model.transformer_encoder.{i}.qkv.weight"].detach().pow(2).sum()) for i in range(2))
    )
    assert metrics["weight_norm/qkv.weight"] == pytest.approx(qkv, rel=1e-5)

    args = make_args(tmp_path, log_weight_norms=True, max_steps=2)
    trainer = make_trainer(args)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged and all("weight_norm" in entry and "weight_norm/qkv.weight" in entry for entry in logged)


# --- Weights & Biases ----------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_wandb_settings_reach_the_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_PROJECT", "WANDB_ENTITY", "WANDB_TAGS", "WANDB_MODE", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    args = make_args(
        tmp_path / "out",
        max_steps=1,
        report_to=["wandb"],
        run_name="knobs-run",
        wandb_project="neobert-knobs",
        wandb_entity="my-team",
        wandb_tags=["mlm", "tiny"],
        wandb_mode="offline",
        wandb_dir=str(tmp_path / "wb"),
    )
    run = offline_run(make_trainer(args).train, tmp_path / "wb")
    assert (run.project, run.entity, list(run.tags), run.display_name) == (
        "neobert-knobs", "my-team", ["mlm", "tiny"], "knobs-run"
    )  # fmt: skip


def test_wandb_settings_without_reporting_to_wandb_are_an_error(tmp_path):
    with pytest.raises(ValueError, match="wandb_project set but report_to"):
        make_args(tmp_path, wandb_project="p")


# --- DeepSpeed: refused with the FSDP2 equivalent ------------------------------------------------------------------


def test_deepspeed_is_refused_with_the_fsdp2_equivalent(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"does not run under DeepSpeed \(deepspeed='ds.json'\).*ZeRO-2.*FSDP2"):
        make_args(tmp_path, deepspeed="ds.json")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # what `accelerate launch` sets for a DeepSpeed config
    with pytest.raises(ValueError, match="accelerate launch with a DeepSpeed config.*recipes/accelerate/fsdp2.yaml"):
        make_args(tmp_path)


# --- num_train_epochs without max_steps (map-style data) -----------------------------------------------------------


def test_num_train_epochs_counts_the_packed_microbatches_of_each_pass(tmp_path):
    from helpers.cli import TINY, without

    from neobert_hf.cli.pretrain import parse_args
    from neobert_hf.training.pretrain import prepare_pretraining

    argv = [*without(TINY, "--max_steps"), "--num_train_epochs", "2.5", "--gradient_accumulation_steps", "3"]
    setup = prepare_pretraining(*parse_args([*argv, "--output_dir", str(tmp_path / "out")]))
    data = setup.train_dataset
    counts = [data.batches_in_epoch(epoch) for epoch in range(3)]
    assert setup.training_args.max_steps == math.ceil((counts[0] + counts[1] + 0.5 * counts[2]) / 3)

    stream = [*without(TINY, "--max_steps"), "--num_train_epochs", "1", "--streaming", "true"]
    with pytest.raises(ValueError, match="num_train_epochs without max_steps needs map-style data"):
        prepare_pretraining(*parse_args([*stream, "--output_dir", str(tmp_path / "out2")]))


@pytest.mark.parametrize("mode", ["packed", "padded"])
def test_batches_in_epoch_is_what_a_pass_yields(mode):
    from neobert_hf.data import MicrobatchDataset

    g = torch.Generator().manual_seed(0)
    docs = [{"input_ids": torch.randint(5, 100, (int(n),), generator=g).tolist()} for n in torch.randint(1, 300, (60,), generator=g)]
    options = dict(tokens_per_batch=512, batch_size=None) if mode == "packed" else dict(batch_size=4)
    dataset = MicrobatchDataset(docs, max_seq_length=128, mode=mode, buffer_size=8, seed=3, **options)
    for epoch in range(3):  # each epoch has its own chunk order
        dataset.set_epoch(epoch)
        assert dataset.batches_in_epoch(epoch) == sum(1 for _ in dataset)
