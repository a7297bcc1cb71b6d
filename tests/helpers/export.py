"""Shared helpers of the export, model-card, Hub and pseudo-perplexity tests (no tests here): a tiny tokenizer, a real
`checkpoints/<step>/` folder written by `NeoBERTTrainer`, and a recorder that replaces only the network calls of
`huggingface_hub.HfApi`."""

import json
import os
import types
from concurrent.futures import Future

from helpers.training import make_args, make_trainer, mlm_samples, tiny_tokenizer


# The auto_map of every saved or exported NeoBERT config.json: each Auto class to the shipped remote code.
FULL_AUTO_MAP = {
    "AutoConfig": "configuration_neobert.NeoBERTConfig",
    "AutoModel": "modeling_neobert.NeoBERTModel",
    "AutoModelForMaskedLM": "modeling_neobert.NeoBERTForMaskedLM",
    "AutoModelForSequenceClassification": "modeling_neobert.NeoBERTForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_neobert.NeoBERTForTokenClassification",
    "AutoModelForQuestionAnswering": "modeling_neobert.NeoBERTForQuestionAnswering",
}

# What a clean export of an MLM checkpoint holds, and what a checkpoint holds in addition.
CLEAN_FILES = [
    "README.md",
    "config.json",
    "configuration_neobert.py",
    "model.safetensors",
    "modeling_neobert.py",
    "tokenizer.json",
    "tokenizer_config.json",
]
RESUME_FILES = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin"}
DATASET = "wikimedia/wikipedia"


def write_checkpoint(run_dir, steps: int = 2, **arg_overrides) -> str:
    """Train the tiny MLM for `steps` steps with evaluation and token counting; returns `checkpoints/<steps>/`.

    The run folder also gets a `run_args.json` naming the data, as a pretraining run records it."""
    args = make_args(
        run_dir,
        max_steps=steps,
        save_strategy="steps",
        save_steps=steps,
        eval_strategy="steps",
        eval_steps=steps,
        include_num_input_tokens_seen=True,
        **arg_overrides,
    )
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "run_args.json"), "w") as f:
        json.dump({"dataset_name": DATASET, "learning_rate": args.learning_rate, "seed": args.seed}, f)
    trainer = make_trainer(args, processing_class=tiny_tokenizer(), eval_dataset=mlm_samples(8, seed=1))
    trainer.train()
    return os.path.join(run_dir, "checkpoints", str(steps))


def list_files(folder) -> list[str]:
    found = []
    for root, _, files in os.walk(folder):
        for name in files:
            found.append(os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/"))
    return sorted(found)


class HubRecorder:
    """Replaces `HfApi.create_repo`, `create_branch` and `upload_folder` (the calls that reach the network) with
    recorders. `upload_folder` snapshots the files it would upload at call time, with the same filters as
    huggingface_hub (its default ignore patterns plus the call's allow/ignore patterns)."""

    def __init__(self, monkeypatch):
        from huggingface_hub import HfApi

        self.repos: list[dict] = []
        self.branches: list[dict] = []
        self.uploads: list[dict] = []
        recorder = self

        def create_repo(api, repo_id, *, token=None, private=None, repo_type=None, exist_ok=False, **kwargs):
            recorder.repos.append({"repo_id": repo_id, "private": private, "exist_ok": exist_ok})
            return types.SimpleNamespace(repo_id=repo_id, url=f"https://huggingface.co/{repo_id}")

        def create_branch(api, repo_id, *, branch, exist_ok=False, **kwargs):
            recorder.branches.append({"repo_id": repo_id, "branch": branch})

        def upload_folder(api, *, repo_id, folder_path, path_in_repo=None, allow_patterns=None, ignore_patterns=None,
                          run_as_future=False, revision=None, commit_message=None, delete_patterns=None, **kwargs):
            from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
            from huggingface_hub.utils import filter_repo_objects

            files = list(filter_repo_objects(
                list_files(folder_path),
                allow_patterns=allow_patterns,
                ignore_patterns=list(ignore_patterns or []) + list(DEFAULT_IGNORE_PATTERNS),
            ))
            recorder.uploads.append({
                "repo_id": repo_id,
                "folder_path": os.fspath(folder_path),
                "path_in_repo": path_in_repo,
                "files": sorted(files),
                "revision": revision,
                "commit_message": commit_message,
                "delete_patterns": delete_patterns,
                "readme": _read(os.path.join(folder_path, "README.md")),
            })
            info = types.SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0")
            if run_as_future:
                future = Future()
                future.set_result(info)
                return future
            return info

        def no_network(*args, **kwargs):
            raise AssertionError("a Hub network call was not replaced by the test")

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_branch", create_branch)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
        for name in ("create_commit", "preupload_lfs_files", "upload_file", "upload_large_folder"):
            if hasattr(HfApi, name):
                monkeypatch.setattr(HfApi, name, no_network)



def _read(path) -> str | None:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return f.read()
