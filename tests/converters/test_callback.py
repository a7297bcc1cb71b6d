"""Low-precision training on CPU through `NeoBERTTrainer` + `PrecisionCallback`: loss curves of the torchao recipes
that run on CPU against the unconverted run, every converted weight trained, and checkpoints that hold plain weights.

Loss-curve setup: the tiny NeoBERT (2 x 64, SwiGLU 128, every encoder linear a multiple of 32) memorises one fixed
padded batch of 4 x 32 tokens for 20 AdamW steps (lr 2e-3, 2 warmup steps); the unconverted loss falls smoothly from
4.87 to 2.68, and every step of a converted run stays within the stated tolerance of it.
"""

import json
import os

import pytest
import torch
from safetensors import safe_open
from converters.test_converters import ENCODER_LINEARS
from helpers.training import losses, make_args, make_model, make_trainer, mlm_samples
from torch import nn

from neobert_hf import NeoBERTForMaskedLM
from neobert_hf.converters import PrecisionArguments, PrecisionCallback


STEPS = 20
# Largest |loss(converted) - loss(unconverted)| allowed at any of the 20 steps (nats). Measured on this setup (CPU,
# torch 2.13, torchao 0.18): tensorwise 0.004, rowwise 0.004, rowwise_with_gw_hp 0.003, mxfp8_emulated 0.003,
# mxfp4_qat 0.014, mxfp4_emulated 0.027 (every matmul of forward and backward in 4 bits).
TOLERANCE = {
    "tensorwise": 0.02,
    "rowwise": 0.02,
    "rowwise_with_gw_hp": 0.02,
    "mxfp8_emulated": 0.02,
    "mxfp4_qat": 0.06,
    "mxfp4_emulated": 0.06,
}


def pad32(features: list[dict]) -> dict:
    """Right-pads every row to 32 tokens: 4 x 32 = 128 tokens per forward, a multiple of the MX block of 32."""
    ids = torch.zeros(len(features), 32, dtype=torch.long)
    labels = torch.full((len(features), 32), -100, dtype=torch.long)
    mask = torch.zeros(len(features), 32, dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(f["input_ids"]), torch.tensor(f["labels"]), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


FIXED_BATCH = mlm_samples(4, max_len=32, mask_rates=[0.3])


def torchao(recipe, **options) -> PrecisionArguments:
    return PrecisionArguments(precision_backend="torchao", torchao_recipe=recipe, require_compile=False, **options)


def train(output_dir, precision=None, steps=STEPS, **arg_overrides):
    values = dict(max_steps=steps, learning_rate=2e-3, warmup_steps=2, lr_scheduler_type="constant_with_warmup")
    values.update(arg_overrides)
    args = make_args(output_dir, **values)
    callbacks = [PrecisionCallback(precision, args)] if precision is not None else None
    trainer = make_trainer(
        args, model=make_model(0), train_dataset=FIXED_BATCH * steps, collator=pad32, callbacks=callbacks
    )
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    trainer = train(tmp_path_factory.mktemp("baseline"))
    curve = losses(trainer)
    assert curve[1] > 4.8 and curve[STEPS] < 2.8, curve  # it learns: the comparison below is not between flat lines
    return curve


@pytest.mark.integration
@pytest.mark.parametrize("recipe", list(TOLERANCE))
def test_cpu_recipes_follow_the_unconverted_loss_curve(recipe, baseline, tmp_path):
    trainer = train(tmp_path, torchao(recipe))
    callback = next(c for c in trainer.callback_handler.callbacks if isinstance(c, PrecisionCallback))
    assert callback.report.converted == ENCODER_LINEARS
    curve = losses(trainer)
    deltas = {step: abs(curve[step] - baseline[step]) for step in baseline}
    assert max(deltas.values()) <= TOLERANCE[recipe], (recipe, deltas)
    assert curve[STEPS] < curve[1] - 2.0, curve


@pytest.mark.integration
def test_every_converted_weight_trains_even_when_parameters_are_replaced(tmp_path):
    """tensorwise + FSDP float8 all-gather replaces every converted weight Parameter: the conversion runs before the
    optimizer exists, so the optimizer holds the new ones and all of them change in one step."""
    model = make_model(0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = make_args(tmp_path, max_steps=1, learning_rate=1e-2)
    precision = torchao("tensorwise", enable_fsdp_float8_all_gather=True)
    trainer = make_trainer(args, model=model, train_dataset=FIXED_BATCH, collator=pad32,
                           callbacks=[PrecisionCallback(precision, args)])
    replaced = {name: p for name, p in trainer.model.named_parameters() if type(p.data) is not torch.Tensor}
    assert sorted(replaced) == sorted(f"{n}.weight" for n in ENCODER_LINEARS)
    assert trainer.optimizer is None  # conversion happened first
    trainer.train()
    held = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    for name, parameter in trainer.model.named_parameters():
        assert id(parameter) in held, name
        after = parameter.detach()
        after = getattr(after, "_tensor", after)
        assert not torch.equal(after, before[name]), f"{name} did not change"


def _safetensors(path) -> dict[str, tuple[tuple[int, ...], str]]:
    with safe_open(os.path.join(path, "model.safetensors"), framework="pt") as handle:
        return {k: (tuple(handle.get_slice(k).get_shape()), handle.get_slice(k).get_dtype()) for k in handle.keys()}


@pytest.mark.integration
@pytest.mark.parametrize(
    "precision",
    [torchao("tensorwise", enable_fsdp_float8_all_gather=True), torchao("mxfp8_emulated")],
    ids=["tensorwise-all-gather", "mxfp8_emulated"],
)
def test_checkpoints_and_exports_hold_plain_weights(precision, tmp_path):
    trainer = train(tmp_path / "run", precision, steps=2, save_strategy="steps", save_steps=2)
    checkpoint = tmp_path / "run" / "checkpoints" / "2"
    plain = make_model(0)
    plain.save_pretrained(tmp_path / "plain")
    assert _safetensors(checkpoint) == _safetensors(tmp_path / "plain")
    trainer.model.save_pretrained(tmp_path / "export")  # an export of the in-memory converted model
    assert _safetensors(tmp_path / "export") == _safetensors(tmp_path / "plain")
    assert "quantization_config" not in json.loads((checkpoint / "config.json").read_text())

    from transformers import AutoModelForMaskedLM

    loaded = AutoModelForMaskedLM.from_pretrained(checkpoint)
    assert type(loaded) is NeoBERTForMaskedLM
    assert all(type(m) is nn.Linear for n, m in loaded.named_modules() if n in ENCODER_LINEARS)
    trained = trainer.model.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, trained[name]), name
    batch = pad32(FIXED_BATCH)
    trainer.model.eval()
    with torch.no_grad():
        converted_logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        plain_logits = loaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    error = (converted_logits - plain_logits).norm() / plain_logits.norm()
    assert error < 0.05, float(error)  # the same weights, run in low vs high precision


@pytest.mark.integration
def test_resume_a_converted_run_from_its_plain_checkpoint(tmp_path):
    """Resuming loads the plain checkpoint into the converted model (NeoBERTTrainer fails on any missing key) and
    continues exactly: step 3 of the resumed run has the loss of step 3 of an uninterrupted one."""
    precision = torchao("tensorwise", enable_fsdp_float8_all_gather=True)
    uninterrupted = losses(train(tmp_path / "straight", precision, steps=3))
    train(tmp_path / "run", precision, steps=2, save_strategy="steps", save_steps=2)
    args = make_args(tmp_path / "run", max_steps=3, learning_rate=2e-3, warmup_steps=2,
                     lr_scheduler_type="constant_with_warmup")
    trainer = make_trainer(args, model=make_model(1), train_dataset=FIXED_BATCH * 3, collator=pad32,
                           callbacks=[PrecisionCallback(precision, args)])
    trainer.train(resume_from_checkpoint="latest")
    assert trainer.state.global_step == 3
    assert losses(trainer)[3] == pytest.approx(uninterrupted[3], abs=1e-6)


@pytest.mark.slow
def test_float8_compiles_on_cpu(tmp_path):
    """The documented path: require_compile (the default) with torch_compile, inductor on the CPU. Minutes on 2 cores
    (the float8 casts compile slowly), hence slow. The compiled run follows the eager one."""
    precision = PrecisionArguments(precision_backend="torchao", torchao_recipe="rowwise")
    assert precision.require_compile
    compiled = losses(train(tmp_path / "compiled", precision, steps=3, torch_compile=True))
    eager = losses(train(tmp_path / "eager", torchao("rowwise"), steps=3))
    assert compiled == pytest.approx(eager, abs=1e-3)


FSDP2_SCRIPT = r'''
import json, os, sys
from types import SimpleNamespace
import torch
import torch.distributed as dist
sys.path.insert(0, sys.argv[2])
from helpers.modeling import tiny_config
from neobert_hf import NeoBERTForMaskedLM
from neobert_hf.converters import PrecisionArguments, PrecisionCallback

os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[1], RANK="0", WORLD_SIZE="1")
dist.init_process_group("gloo")
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

args = SimpleNamespace(fsdp="full_shard", fsdp_config={"version": 2}, deepspeed=None, torch_compile=False,
                       use_cpu=True, bf16=False, log_train_accuracy=False, masked_logits_only_loss=True)
ids = torch.randint(5, 128, (4, 32), generator=torch.Generator().manual_seed(0))
labels = torch.where(torch.rand(4, 32, generator=torch.Generator().manual_seed(1)) < 0.3, ids, -100)


def run(fsdp):
    torch.manual_seed(0)
    model = NeoBERTForMaskedLM(tiny_config())
    precision = PrecisionArguments(precision_backend="torchao", torchao_recipe="tensorwise", require_compile=False,
                                   enable_fsdp_float8_all_gather=True, precompute_float8_dynamic_scale_for_fsdp=fsdp)
    callback = PrecisionCallback(precision)
    callback.on_init_end(args if fsdp else SimpleNamespace(**{**vars(args), "fsdp": ""}), None, None, model=model)
    if fsdp:
        mesh = init_device_mesh("cpu", (1,))
        for block in model.model.transformer_encoder:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(3):
        loss = model(input_ids=ids, labels=labels, sparse_prediction=True).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        callback.on_optimizer_step(args, None, None, model=model)
        losses.append(loss.item())
    weight = model.model.transformer_encoder[0].qkv.weight
    local = getattr(weight, "_local_tensor", weight)
    scale = getattr(local, "_precomputed_scale", None)
    return losses, None if scale is None else float(scale), type(weight).__name__


sharded, plain = run(True), run(False)
print("RESULT " + json.dumps({"sharded": sharded, "plain": plain}))
dist.destroy_process_group()
'''


@pytest.mark.integration
def test_fsdp2_float8_all_gather_with_scale_precompute_on_cpu(tmp_path):
    """FSDP2 on the CPU (gloo, one process): the float8 all-gather weights shard, the callback runs torchao's scale
    precompute after every optimizer step, and the losses equal the unsharded float8 run's."""
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = tmp_path / "fsdp2.py"
    script.write_text(FSDP2_SCRIPT)
    tests_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    completed = subprocess.run(
        [sys.executable, str(script), str(port), tests_dir], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    (sharded_losses, scale, weight_type), (plain_losses, plain_scale, _) = result["sharded"], result["plain"]
    assert weight_type == "DTensor" and scale is not None and scale > 0 and plain_scale is None
    assert sharded_losses == pytest.approx(plain_losses, abs=1e-5)
