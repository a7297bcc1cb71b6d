"""`torch_compile` on the CPU through the real pretraining pipeline (the shipped corpus and tiny recipes, packed and
padded): training gives the eager losses, and compiles once, with no recompilation however the batches vary.

What is counted: the graphs dynamo compiles (`torch._dynamo.utils.counters["stats"]["unique_graphs"]`, one per
compiled forward graph, first compilations and recompilations alike) after each optimizer step. The trainer compiles
with dynamic shapes from the start (`NeoBERTTrainer._build_accelerator_args`): the number of packed sequences, the
longest one and the number of masked rows change with every fixed-budget packed batch. The model has one graph break
(the data-dependent selection of the masked rows), so a packed step runs two graphs; with the tiny recipe's
`loss_chunk_size` the chunked loss runs eagerly between them (`torch.compiler.disable`: its loop over the masked rows
would otherwise recompile for every count), a third graph holds the division by the token count; the padded recipe's
full-logits loss has no break.
"""

import pytest
import torch
from helpers.distributed import ROOT
from transformers import TrainerCallback

from neobert_hf.cli.pretrain import parse_args
from neobert_hf.training.pretrain import prepare_pretraining


TINY = ROOT / "recipes" / "tiny"
SMALL = [
    "--dataset_name", str(ROOT / "data" / "corpus"), "--tokenizer_name", str(ROOT / "data" / "tokenizer"),
    "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "64",
    "--train_split", "train[:400]", "--max_seq_length", "64", "--warmup_steps", "1", "--logging_steps", "1",
    "--eval_strategy", "no", "--save_strategy", "no", "--save_final_checkpoint", "false",
    "--preprocessing_num_workers", "1", "--report_to", "none", "--disable_tqdm", "true",
]  # fmt: skip
PACKED = ["--tokens_per_batch", "256"]
PADDED = ["--per_device_train_batch_size", "8"]


def compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


class GraphsPerStep(TrainerCallback):
    def __init__(self):
        self.after_step: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.after_step.append(compiled_graphs())


@pytest.fixture
def fresh_dynamo(tmp_path, monkeypatch):
    """An empty dynamo cache and counters, and an empty inductor cache (a warm cache would hide compile time; torch
    2.13's CPU inductor also miscompiles some kernels when it reuses one across shapes, see test_modeling_attention)."""
    from torch._dynamo.utils import counters

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def train(tmp_path, recipe: str, shape: list[str], steps: int, backend: str | None):
    argv = ["--config", str(TINY / recipe), *SMALL, *shape, "--max_steps", str(steps)]
    argv += ["--output_dir", str(tmp_path / f"run-{backend}")]
    if backend is not None:
        argv += ["--torch_compile", "true", "--torch_compile_backend", backend]
    setup = prepare_pretraining(*parse_args(argv))
    trainer = setup.build_trainer()
    graphs = GraphsPerStep()
    trainer.add_callback(graphs)
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e and "train_runtime" not in e]
    return losses, graphs.after_step


@pytest.mark.integration
@pytest.mark.parametrize(
    "recipe, shape, graphs_per_step",
    [
        ("pretrain.yaml", PACKED, 3),
        ("pretrain.yaml", [*PACKED, "--loss_chunk_size", "none"], 2),
        ("pretrain-padded.yaml", PADDED, 1),
    ],
    ids=["packed-chunked-loss", "packed-logits-loss", "padded-full-logits"],
)
def test_compiled_training_never_recompiles_and_matches_eager(tmp_path, fresh_dynamo, recipe, shape, graphs_per_step):
    """8 steps of the real pipeline through dynamo (aot_eager: the graphs and guards of inductor without its code
    generation, which the slow inductor tests and benchmarks/bench_compile_cpu.py cover): every graph is compiled at
    step 1, none after."""
    eager, _ = train(tmp_path, recipe, shape, steps=8, backend=None)
    compiled, graphs = train(tmp_path, recipe, shape, steps=8, backend="aot_eager")
    assert compiled == pytest.approx(eager, rel=1e-5)
    assert graphs == [graphs_per_step] * 8, graphs


@pytest.mark.slow  # ~70 s of CPU, nearly all of it inductor's C++ compilation
def test_inductor_compiles_packed_training(tmp_path, fresh_dynamo):
    """inductor (C++ code generation with the system compiler) on packed batches: 4 steps give the eager losses, with
    the three graphs compiled at step 1 (the chunked loss runs eagerly between two of them) and nothing after."""
    with torch._inductor.config.patch(compile_threads=1):  # no worker pool: faster on a 2-core machine
        compiled, graphs = train(tmp_path, "pretrain.yaml", PACKED, steps=4, backend="inductor")
    eager, _ = train(tmp_path, "pretrain.yaml", PACKED, steps=4, backend=None)
    assert compiled == pytest.approx(eager, rel=1e-4)
    assert graphs == [3] * 4, graphs


@pytest.mark.slow  # ~60 s of CPU
def test_inductor_compiles_padded_training(tmp_path, fresh_dynamo):
    with torch._inductor.config.patch(compile_threads=1):
        compiled, graphs = train(tmp_path, "pretrain-padded.yaml", PADDED, steps=4, backend="inductor")
    eager, _ = train(tmp_path, "pretrain-padded.yaml", PADDED, steps=4, backend=None)
    assert compiled == pytest.approx(eager, rel=1e-4)
    assert graphs == [1] * 4, graphs
