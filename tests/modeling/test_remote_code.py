"""`save_pretrained` writes a self-contained folder, and its remote code equals the in-package model.

The remote-code check runs in a subprocess that cannot import `neobert_hf` (the package's folder is taken off
`sys.path`, `python -I`, a clean environment, a working directory outside the repository), so the model there is
built only from the files in the exported folder.
"""

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers.export import FULL_AUTO_MAP
from helpers.modeling import make_sequences, pack, pad, tiny_config
from safetensors import safe_open

from neobert_hf import (
    NeoBERTConfig,
    NeoBERTForMaskedLM,
    NeoBERTForSequenceClassification,
)
from neobert_hf.modeling import modeling_neobert

REMOTE_FILES = ("modeling_neobert.py", "configuration_neobert.py")
LENGTHS = [9, 4, 13, 1, 6]


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Weights far from their init (norm weights off 1, larger matrices) so any difference shows up."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=g)
            if name.endswith("norm.weight"):
                param.copy_(1 + 0.2 * noise)
            else:
                param.copy_(0.2 * noise)
    return model.eval()


def test_save_pretrained_writes_a_self_contained_folder(tmp_path):
    # Starting from a released-style config whose auto_map points at the old `model.py`.
    config = tiny_config(auto_map={"AutoConfig": "model.NeoBERTConfig", "AutoModel": "model.NeoBERT"})
    model = NeoBERTForMaskedLM(config)
    model.save_pretrained(tmp_path)
    for name in ("config.json", "model.safetensors", *REMOTE_FILES):
        assert (tmp_path / name).is_file(), name
    with open(tmp_path / "config.json") as f:
        stored = json.load(f)
    assert stored["model_type"] == "neobert"
    assert stored["auto_map"] == FULL_AUTO_MAP
    assert stored["architectures"] == ["NeoBERTForMaskedLM"]
    package_dir = Path(modeling_neobert.__file__).parent
    for name in REMOTE_FILES:
        assert (tmp_path / name).read_bytes() == (package_dir / name).read_bytes(), name
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert set(model.state_dict()) == keys


@pytest.mark.parametrize("name", REMOTE_FILES)
def test_remote_code_imports_only_torch_transformers_and_siblings(name):
    source = (Path(modeling_neobert.__file__).parent / name).read_text()
    allowed = {"torch", "transformers", *sys.stdlib_module_names}
    siblings = {Path(n).stem for n in REMOTE_FILES}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] in allowed, f"{name} imports {alias.name}"
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                assert node.level == 1 and node.module in siblings, f"{name} imports .{node.module}"
            else:
                assert node.module.split(".")[0] in allowed, f"{name} imports {node.module}"


REMOTE_SCRIPT = textwrap.dedent(
    """
    import os
    import sys

    # Nothing that could provide the package stays importable: drop every path entry that holds `neobert_hf`.
    sys.path[:] = [p for p in sys.path if p and not os.path.isdir(os.path.join(p, "neobert_hf"))]
    try:
        import neobert_hf  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("neobert_hf is importable in the remote-code subprocess")

    import torch
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    root = sys.argv[1]
    data = torch.load(os.path.join(root, "inputs.pt"))
    out = {}
    with torch.no_grad():
        mlm = AutoModelForMaskedLM.from_pretrained(os.path.join(root, "mlm"), trust_remote_code=True).eval()
        out["mlm_module"] = type(mlm).__module__
        out["mlm_padded"] = mlm(input_ids=data["ids"], attention_mask=data["mask"]).logits
        out["mlm_packed_cu"] = mlm(**data["packed"]).logits
        out["mlm_packed_positions"] = mlm(
            input_ids=data["packed"]["input_ids"], position_ids=data["packed"]["position_ids"]
        ).logits
        cls = AutoModelForSequenceClassification.from_pretrained(
            os.path.join(root, "cls"), trust_remote_code=True
        ).eval()
        out["cls_module"] = type(cls).__module__
        out["cls_pair"] = cls(**data["pair"]).logits
        out["cls_padded"] = cls(input_ids=data["ids"], attention_mask=data["mask"]).logits
    torch.save(out, os.path.join(root, "outputs.pt"))
    """
)


@pytest.fixture(scope="module")
def remote_outputs(tmp_path_factory):
    """Exports an MLM and a classifier, runs them from the folder in a clean subprocess, returns both sides."""
    root = tmp_path_factory.mktemp("export")
    mlm = randomize(NeoBERTForMaskedLM(tiny_config()), seed=0)
    cls = randomize(NeoBERTForSequenceClassification(tiny_config(num_labels=3)), seed=1)
    mlm.save_pretrained(root / "mlm")
    cls.save_pretrained(root / "cls")

    sequences = make_sequences(LENGTHS, seed=4)
    ids, mask = pad(sequences)
    pair = {  # what a tokenizer returns for a sentence pair, token_type_ids included
        "input_ids": ids[:2],
        "attention_mask": mask[:2],
        "token_type_ids": (torch.arange(ids.shape[1]) >= 3).long().expand(2, -1) * mask[:2],
    }
    data = {"ids": ids, "mask": mask, "packed": pack(sequences), "pair": pair}
    torch.save(data, root / "inputs.pt")
    (root / "remote_check.py").write_text(REMOTE_SCRIPT)

    cwd = root / "cwd"
    cwd.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root / "home"),
        "HF_HOME": str(root / "hf_home"),
        "HF_MODULES_CACHE": str(root / "modules"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    result = subprocess.run(
        [sys.executable, "-I", str(root / "remote_check.py"), str(root)],
        cwd=cwd,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    remote = torch.load(root / "outputs.pt")
    assert any((root / "modules").rglob("modeling_neobert.py")), "remote code was not loaded from the folder"
    with torch.no_grad():
        local = {
            "mlm_padded": mlm(input_ids=ids, attention_mask=mask).logits,
            "mlm_single": [mlm(input_ids=s[None]).logits[0] for s in sequences],
            "cls_pair": cls(**pair).logits,
            "cls_padded": cls(input_ids=ids, attention_mask=mask).logits,
        }
    return {"remote": remote, "local": local, "mask": mask}


@pytest.mark.integration
def test_remote_mlm_equals_in_package_model(remote_outputs):
    remote, local, mask = (
        remote_outputs["remote"],
        remote_outputs["local"],
        remote_outputs["mask"],
    )
    assert remote["mlm_module"].startswith("transformers_modules"), remote["mlm_module"]
    keep = mask.bool()
    torch.testing.assert_close(remote["mlm_padded"][keep], local["mlm_padded"][keep], atol=1e-6, rtol=1e-5)


def test_remote_sequence_classifier_equals_in_package_model(remote_outputs):
    remote, local = remote_outputs["remote"], remote_outputs["local"]
    assert remote["cls_module"].startswith("transformers_modules"), remote["cls_module"]
    torch.testing.assert_close(remote["cls_pair"], local["cls_pair"], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(remote["cls_padded"], local["cls_padded"], atol=1e-6, rtol=1e-5)
    # The classes differ between rows: the comparison is not between constants.
    assert not torch.allclose(local["cls_padded"][0], local["cls_padded"][1], atol=1e-3)


@pytest.mark.parametrize("form", ["mlm_packed_cu", "mlm_packed_positions"])
def test_remote_packed_equals_per_sequence(remote_outputs, form):
    """Packed documents never attend to each other in the exported model: each equals its own padded run."""
    packed = remote_outputs["remote"][form][0]  # (T, V)
    singles = remote_outputs["local"]["mlm_single"]
    assert packed.shape[0] == sum(LENGTHS)
    torch.testing.assert_close(packed, torch.cat(singles), atol=1e-5, rtol=1e-5)
    # And the padded batch agrees with the single runs too.
    padded, mask = remote_outputs["remote"]["mlm_padded"], remote_outputs["mask"]
    torch.testing.assert_close(padded[mask.bool()], torch.cat(singles), atol=1e-5, rtol=1e-5)


def test_exported_config_reads_back_in_package(tmp_path):
    model = NeoBERTForSequenceClassification(tiny_config(num_labels=4, classifier_pooling="mean"))
    model.save_pretrained(tmp_path)
    config = NeoBERTConfig.from_pretrained(tmp_path)
    assert config.num_labels == 4 and config.classifier_pooling == "mean"
    assert config.max_position_embeddings == model.config.max_position_embeddings


# Names of training-loss machinery: it lives in neobert_hf.training.losses and never ships as remote code.
TRAINING_LOSS_NAMES = (
    "cross_entropy",
    "mse_loss",
    "binary_cross_entropy",
    "autograd.Function",
    "chunked",
    "loss_chunk_size",
    "DTensor",
    "fsdp",
    "liger",
    "masked_correct",
    "divide_loss",
    "num_items_in_batch /",
)


def test_exported_remote_code_holds_no_training_loss_and_loads(tmp_path):
    """`neobert-hf export` ships the model file as remote code: no loss machinery in it (every head's loss is
    transformers' `self.loss_function`), and the folder loads with `trust_remote_code` and computes the same loss."""
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    from neobert_hf.export import export_model

    def config_json(folder):
        return json.loads((folder / "config.json").read_text())

    model = randomize(NeoBERTForMaskedLM(tiny_config()), seed=2)
    model.save_pretrained(tmp_path / "trained")
    export_model(tmp_path / "trained", tmp_path / "export", require_tokenizer=False, model_card=False)

    source = (tmp_path / "export" / "modeling_neobert.py").read_text()
    assert source == Path(modeling_neobert.__file__).read_text()
    tree = ast.parse(source)
    for node in ast.walk(tree):  # comments and docstrings may mention the loss; the code may not
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            node.body = body[1:] or [ast.Pass()]
    code = ast.unparse(tree)
    for name in TRAINING_LOSS_NAMES:
        assert name.lower() not in code.lower(), f"exported remote code contains {name!r}"
    tree = ast.parse(source)
    bases = {ast.unparse(b) for node in ast.walk(tree) if isinstance(node, ast.ClassDef) for b in node.bases}
    assert not {b for b in bases if "Function" in b or "Loss" in b}, bases
    loss_calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("loss_function")
    ]
    assert len(loss_calls) == 4  # MLM, sequence, token and span heads, through transformers' loss utilities

    # What AutoModelForMaskedLM.from_pretrained(..., trust_remote_code=True) does when neobert_hf is not installed
    # (in this process the installed package's registration would win; the clean-subprocess check is above).
    remote_class = get_class_from_dynamic_module(
        config_json(tmp_path / "export")["auto_map"]["AutoModelForMaskedLM"], str(tmp_path / "export")
    )
    assert remote_class.__module__.startswith("transformers_modules")
    remote = remote_class.from_pretrained(tmp_path / "export").eval()
    ids = torch.randint(5, 128, (2, 12), generator=torch.Generator().manual_seed(0))
    labels = torch.where(torch.arange(12) % 3 == 0, ids, -100)
    with torch.no_grad():
        ours = model(input_ids=ids, labels=labels, sparse_prediction=True)
        theirs = remote(input_ids=ids, labels=labels, sparse_prediction=True)
    torch.testing.assert_close(theirs.loss, ours.loss)
    torch.testing.assert_close(theirs.logits, ours.logits)
