"""Distributed pretraining on 2 CPU processes (gloo), launched with `accelerate launch` and the configs of
`recipes/accelerate/`: DDP and FSDP2 give, at every step, the loss and gradient norm of one process that sees the same
global batch, with the masked tokens counted over all ranks (`average_tokens_across_devices`); FSDP1 is refused."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from helpers.distributed import ACCELERATE, ROOT, SMALL, TINY_RECIPE, accelerate_launch, step_logs

from neobert_hf.cli.main import main
from neobert_hf.training import NeoBERTTrainingArguments


STEPS = 4
FIXTURES = str(ROOT / "tests" / "helpers" / "distributed.py")


def pretrain_argv(output_dir, *extra: str) -> list[str]:
    return ["pretrain", "--config", str(TINY_RECIPE), *SMALL, "--max_steps", str(STEPS),
            "--output_dir", str(output_dir), *extra]  # fmt: skip


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    """One process, 2 accumulated microbatches per step: the global batch of 2 ranks x 1 microbatch. Returns its run
    folder and the masked tokens of every microbatch (in the order the loader yields them: rank 0 takes the even
    ones)."""
    output = tmp_path_factory.mktemp("single")
    assert main(pretrain_argv(output, "--gradient_accumulation_steps", "2")) == 0

    from neobert_hf.cli.pretrain import parse_args
    from neobert_hf.training.pretrain import prepare_pretraining

    setup = prepare_pretraining(*parse_args(pretrain_argv(tmp_path_factory.mktemp("count"))[1:]))
    masked = []
    for batch in setup.train_dataset:
        masked.append(int((batch["labels"] != -100).sum()))
        if len(masked) == 2 * STEPS:
            break
    return output, masked


def assert_same_training(distributed: Path, single: Path, grad_norm_rel: float) -> None:
    """Same loss at every step (1e-5), same gradient norm and the same final weights (to float32 rounding)."""
    logs_a, logs_b = step_logs(distributed), step_logs(single)
    assert [e["step"] for e in logs_a] == [e["step"] for e in logs_b] == list(range(1, STEPS + 1))
    for a, b in zip(logs_a, logs_b):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-5), (a, b)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=grad_norm_rel), (a, b)
    weights_a = load_file(distributed / "checkpoints" / str(STEPS) / "model.safetensors")
    weights_b = load_file(single / "checkpoints" / str(STEPS) / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    for name, value in weights_b.items():
        assert torch.allclose(weights_a[name], value, rtol=0, atol=1e-6), name


def test_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    ddp = load_config_from_file(str(ACCELERATE / "ddp.yaml"))
    assert ddp.distributed_type == "MULTI_GPU" and ddp.mixed_precision == "no"
    fsdp = load_config_from_file(str(ACCELERATE / "fsdp2.yaml"))
    assert fsdp.distributed_type == "FSDP" and fsdp.fsdp_config["fsdp_version"] == 2
    assert fsdp.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "NeoBERTEncoderBlock"
    assert fsdp.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # checkpoints hold a plain model
    nodes = load_config_from_file(str(ACCELERATE / "multi-node.yaml"))
    assert nodes.num_machines > 1 and nodes.num_processes % nodes.num_machines == 0
    for path in ACCELERATE.glob("*.yaml"):
        assert yaml.safe_load(path.read_text()).get("mixed_precision") == "no", path  # precision is the recipe's


@pytest.mark.integration
def test_ddp_matches_one_process_with_the_same_global_batch(tmp_path, single_process):
    """`accelerate launch --config_file recipes/accelerate/ddp.yaml -m neobert_hf.cli.main pretrain` on 2 CPU
    processes: each rank takes every other packed microbatch, with its own number of masked tokens."""
    single, masked = single_process
    per_rank = [(masked[2 * i], masked[2 * i + 1]) for i in range(STEPS)]
    assert any(a != b for a, b in per_rank), per_rank  # uneven token counts: exact weighting matters

    output = tmp_path / "ddp"
    completed = accelerate_launch("ddp.yaml", ["-m", "neobert_hf.cli.main", *pretrain_argv(output)])
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "2 devices" in completed.stdout  # the run summary counts both processes in the step
    assert_same_training(output, single, grad_norm_rel=1e-5)


@pytest.mark.integration
def test_fsdp2_matches_one_process_with_the_decoder_sharded(tmp_path, single_process):
    """FSDP2 through accelerate (fsdp_version 2, each encoder block its own unit, the root holding the decoder) with the
    masked-logits-only loss: the decoder weight is a sharded DTensor, and the training matches one process."""
    single, _ = single_process
    output = tmp_path / "fsdp2"
    probe = tmp_path / "probe"
    completed = accelerate_launch(
        "fsdp2.yaml", [FIXTURES, *pretrain_argv(output)], env={"NEOBERT_TEST_PROBE": str(probe)}
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    for rank in (0, 1):
        info = json.loads((tmp_path / f"probe.{rank}.json").read_text())
        assert info["wrapper"].startswith("FSDP") and info["type"] == "DTensor", info
        assert info["local_shape"][0] * 2 == info["shape"][0], info  # each rank holds half of the vocabulary rows
    # Gradients are averaged by a reduce-scatter instead of an all-reduce: the same values up to float32 rounding,
    # which AdamW's division by sqrt(v) lifts to ~1e-5 in the gradient norm of later steps.
    assert_same_training(output, single, grad_norm_rel=1e-4)

    # The checkpoint holds the full, plain model: it loads without FSDP and gives the weights of the last step.
    from transformers import AutoModelForMaskedLM

    final = output / "checkpoints" / str(STEPS)
    model = AutoModelForMaskedLM.from_pretrained(final)
    assert tuple(model.decoder.weight.shape) == tuple(info["shape"])
    assert torch.isfinite(model.decoder.weight).all()


def test_fsdp1_is_refused_with_the_reason(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="FSDP2") as error:
        NeoBERTTrainingArguments(
            output_dir=str(tmp_path), use_cpu=True, report_to="none", fsdp=True, fsdp_config={"version": 1}
        )
    assert "summon_full_params" in str(error.value) and "recipes/accelerate/fsdp2.yaml" in str(error.value)
    # accelerate launch with an FSDP config that does not say fsdp_version: accelerate's default is 1
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "1")
    with pytest.raises(ValueError, match="FSDP_VERSION=1"):
        NeoBERTTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    monkeypatch.setenv("FSDP_VERSION", "2")
    NeoBERTTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")


@pytest.mark.slow
def test_fsdp1_accelerate_config_fails_before_training(tmp_path):
    """The whole path: an accelerate FSDP config without fsdp_version stops `neobert-hf pretrain` with the reason and
    writes no checkpoint."""
    config = tmp_path / "fsdp1.yaml"
    values = yaml.safe_load((ACCELERATE / "fsdp2.yaml").read_text())
    del values["fsdp_config"]["fsdp_version"]
    config.write_text(yaml.safe_dump(values))
    output = tmp_path / "run"
    completed = accelerate_launch(str(config), [FIXTURES, *pretrain_argv(output)], num_processes=1)
    assert completed.returncode != 0
    assert "supports FSDP2 (fully_shard) only" in completed.stderr + completed.stdout
    assert not (output / "checkpoints").exists()


def test_fsdp_config_on_cpu_processes_is_an_error_not_silent_ddp(tmp_path, monkeypatch):
    """accelerate enables FSDP only for GPU process groups; on CPU the trainer refuses instead of training with DDP."""
    from helpers.training import make_args, make_trainer

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    with pytest.raises(ValueError, match="enables FSDP only for GPU processes"):
        make_trainer(make_args(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("config", ["ddp.yaml", "fsdp2.yaml"])
def test_compiled_distributed_training_matches_one_process(tmp_path, single_process, config):
    """torch_compile under accelerate launch (whose dynamo_use_dynamic is False unless set: the trainer compiles with
    dynamic shapes anyway): DDP and FSDP2 match the eager single-process run."""
    single, _ = single_process
    output = tmp_path / "run"
    script = ["-m", "neobert_hf.cli.main"] if config == "ddp.yaml" else [FIXTURES]
    argv = pretrain_argv(output, "--torch_compile", "true", "--torch_compile_backend", "aot_eager")
    completed = accelerate_launch(config, [*script, *argv], timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "recompil" not in completed.stderr.lower()
    assert_same_training(output, single, grad_norm_rel=1e-4)


@pytest.mark.slow
def test_fsdp2_resume_is_exact(tmp_path):
    """An FSDP2 run resumed from its step-2 checkpoint (sharded optimizer state, data position, RNG) continues exactly
    as the uninterrupted run."""
    import shutil

    def run(output, *extra):
        argv = pretrain_argv(output, "--save_strategy", "steps", "--save_steps", "2", *extra)
        completed = accelerate_launch("fsdp2.yaml", [FIXTURES, *argv])
        assert completed.returncode == 0, completed.stderr[-4000:]

    run(tmp_path / "straight")
    shutil.copytree(tmp_path / "straight" / "checkpoints" / "2", tmp_path / "resumed" / "checkpoints" / "2")
    run(tmp_path / "resumed", "--resume_from_checkpoint", "latest")
    straight, resumed = step_logs(tmp_path / "straight"), step_logs(tmp_path / "resumed")
    assert [(e["step"], e["loss"]) for e in resumed[-2:]] == [(e["step"], e["loss"]) for e in straight[-2:]]
    final = str(STEPS)
    a = load_file(tmp_path / "straight" / "checkpoints" / final / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "checkpoints" / final / "model.safetensors")
    for name, value in a.items():
        assert torch.equal(value, b[name]), name
