"""Helpers of the `test_distributed_*` files (no tests here): the shrunk tiny recipe, `accelerate launch` of
`neobert-hf pretrain` on CPU processes, reading a run's per-step logs, and a launcher that lets accelerate's FSDP2 path
run on CPU.

Run as a script (`accelerate launch ... tests/helpers/distributed.py pretrain --config ...`) it is
`neobert-hf` with two changes for the tests: accelerate's FSDP path is enabled on CPU processes (accelerate turns FSDP
on only for GPU process groups, although torch's `fully_shard` runs on CPU with gloo), and, when
`NEOBERT_TEST_PROBE` names a file prefix, each rank writes there how the decoder weight is held during training.
"""

import json
import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
TINY_RECIPE = ROOT / "recipes" / "tiny" / "pretrain.yaml"
ACCELERATE = ROOT / "recipes" / "accelerate"

# The tiny recipe shrunk to seconds: a one-layer model, 300 documents, 256-token packed microbatches, no evaluation.
SMALL = [
    "--dataset_name", str(ROOT / "data" / "corpus"), "--tokenizer_name", str(ROOT / "data" / "tokenizer"),
    "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "64",
    "--train_split", "train[:300]", "--max_seq_length", "64", "--tokens_per_batch", "256",
    "--warmup_steps", "1", "--logging_steps", "1", "--eval_strategy", "no", "--save_strategy", "no",
    "--preprocessing_num_workers", "1", "--report_to", "none", "--disable_tqdm", "true",
    "--average_tokens_across_devices", "true",
]  # fmt: skip


def subprocess_env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.update({"TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "offline"})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    for key in [k for k in env if k.startswith(("ACCELERATE_", "FSDP_"))]:
        del env[key]  # the launcher sets what the config says
    return env


def accelerate_launch(config: str, script: list[str], *, num_processes: int = 2, timeout: int = 300, env=None):
    """`accelerate launch --config_file recipes/accelerate/<config> --num_processes N <script...>` from the repository
    root (extra environment variables in `env`); returns the completed process (stdout and stderr as text)."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE / config),
        "--num_processes", str(num_processes), "--main_process_port", "0", *script,
    ]  # fmt: skip
    env = {**subprocess_env(), **(env or {})}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def torchrun(script: str | os.PathLike, *, nproc: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node N script` on CPU processes (one thread each, offline); returns the
    completed process (stdout and stderr as text)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), str(script)]
    return subprocess.run(command, env=env, capture_output=True, check=False, text=True, timeout=timeout)


def step_logs(output_dir: Path) -> list[dict]:
    """The per-step training logs (`loss`, `grad_norm`, ...) of a finished run, from its last checkpoint."""
    checkpoints = sorted((output_dir / "checkpoints").iterdir(), key=lambda p: int(p.name))
    state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
    return [e for e in state["log_history"] if "loss" in e and "train_runtime" not in e]


def _enable_fsdp_on_cpu() -> None:
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    original = AcceleratorState.__init__

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            # Both shared states: later AcceleratorState() calls copy PartialState's distributed_type back.
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin

    AcceleratorState.__init__ = init


def _probe_decoder(prefix: str) -> None:
    from neobert_hf.training import NeoBERTTrainer

    original = NeoBERTTrainer.compute_loss

    def compute_loss(self, model, inputs, *args, **kwargs):
        path = f"{prefix}.{self.accelerator.process_index}.json"
        if not os.path.exists(path):
            weight = model.decoder.weight
            local = weight.to_local() if hasattr(weight, "to_local") else weight
            info = {
                "wrapper": type(model).__name__,
                "type": type(weight).__name__,
                "shape": list(weight.shape),
                "local_shape": list(local.shape),
            }
            Path(path).write_text(json.dumps(info))
        return original(self, model, inputs, *args, **kwargs)

    NeoBERTTrainer.compute_loss = compute_loss


if __name__ == "__main__":
    _enable_fsdp_on_cpu()
    if os.environ.get("NEOBERT_TEST_PROBE"):
        _probe_decoder(os.environ["NEOBERT_TEST_PROBE"])
    from neobert_hf.cli.main import main

    sys.exit(main())
