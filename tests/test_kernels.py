"""`kernel_backend`: dispatch (auto / liger / torch, with the choice logged and explicit requests that cannot run
refused), exactness of the torch path, and the plumbing of the fused masked-rows loss and the Liger modules (checked
with a stand-in for liger-kernel's functional API, since Liger runs on CUDA only)."""

import importlib.machinery
import logging
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from helpers.modeling import tiny_config

from neobert_hf import NeoBERTForMaskedLM
from neobert_hf import kernels as kernels_module
from neobert_hf.converters import PrecisionArguments, PrecisionCallback, build_converter
from neobert_hf.import_utils import is_available
from neobert_hf.kernels import LigerRMSNorm, LigerSwiGLU, apply_kernel_backend, resolve_kernel_backend
from neobert_hf.modeling.modeling_neobert import NeoBERTRMSNorm, NeoBERTSwiGLU
from neobert_hf.training.losses import MaskedLMLoss, install_masked_lm_loss, masked_lm_loss


@pytest.fixture
def run_log(caplog):
    """The INFO messages of the `neobert_hf.pretrain` loggers, also after the CLI has stopped their propagation."""
    logger = logging.getLogger("neobert_hf.pretrain")
    level = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)


def model_and_batch(seed=0):
    torch.manual_seed(seed)
    model = NeoBERTForMaskedLM(tiny_config())
    ids = torch.randint(5, 128, (3, 16))
    labels = torch.where(torch.rand(3, 16) < 0.3, ids, -100)
    return model, ids, labels


# ---------------------------------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------------------------------


def test_torch_is_used_as_asked():
    assert resolve_kernel_backend("torch", "cpu") == "torch"
    assert resolve_kernel_backend("torch", "cuda") == "torch"


def test_auto_picks_torch_on_cpu_and_says_why(run_log):
    assert resolve_kernel_backend("auto", "cpu") == "torch"
    assert "kernel_backend=auto: using torch (no CUDA device (training on cpu))" in run_log.text


def test_auto_picks_liger_on_cuda_only_when_installed(monkeypatch, run_log):
    monkeypatch.setattr(kernels_module, "is_available", lambda name: False)
    assert resolve_kernel_backend("auto", "cuda") == "torch"
    assert 'liger-kernel is not installed (pip install "neobert-hf[liger]")' in run_log.text
    monkeypatch.setattr(kernels_module, "is_available", lambda name: name == "liger_kernel")
    assert resolve_kernel_backend("auto", "cuda") == "liger"
    assert "kernel_backend=auto: using liger" in run_log.text


@pytest.mark.skipif(is_available("liger_kernel"), reason="liger-kernel is installed")
def test_liger_without_the_package_is_an_error():
    with pytest.raises(ImportError, match=r'kernel_backend=liger.*pip install "neobert-hf\[liger\]"'):
        resolve_kernel_backend("liger", "cuda")


def test_liger_on_cpu_is_an_error(monkeypatch):
    monkeypatch.setattr(kernels_module, "require", lambda feature, purpose: None)
    with pytest.raises(RuntimeError, match="Triton kernels on CUDA GPUs, but this run is on cpu"):
        resolve_kernel_backend("liger", "cpu")


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="kernel_backend"):
        resolve_kernel_backend("triton", "cpu")
    with pytest.raises(ValueError, match="kernel_backend"):
        PrecisionArguments(kernel_backend="triton")


def test_torch_backend_leaves_the_model_untouched():
    model, _, _ = model_and_batch()
    assert apply_kernel_backend(model, "torch", "cpu") == "torch"
    assert "forward" not in vars(model)  # the class's forward, no wrapper
    assert sum(isinstance(m, NeoBERTRMSNorm) for m in model.modules()) == 5
    assert sum(isinstance(m, NeoBERTSwiGLU) for m in model.modules()) == 2


def test_callback_on_cpu_resolves_auto_to_torch(tmp_path):
    from helpers.training import make_args, make_trainer

    callback = PrecisionCallback(PrecisionArguments(), make_args(tmp_path))
    trainer = make_trainer(make_args(tmp_path), callbacks=[callback])
    assert callback.kernel_backend == "torch" and callback.converter is None
    assert "forward" not in vars(trainer.model)


# ---------------------------------------------------------------------------------------------------------------------
# The torch path is exact
# ---------------------------------------------------------------------------------------------------------------------


def test_masked_lm_loss_matches_the_model_bitwise():
    model, ids, labels = model_and_batch()
    outputs = model(input_ids=ids, labels=labels, sparse_prediction=True, num_items_in_batch=17)
    expected = torch.autograd.grad(outputs.loss, model.decoder.weight)[0]
    hidden = model.model(input_ids=ids).last_hidden_state.reshape(-1, 64)
    rows = hidden[labels.reshape(-1) != -100]
    loss = masked_lm_loss(rows, labels[labels != -100], model.decoder, num_items_in_batch=17).loss
    assert torch.equal(loss, outputs.loss)
    assert torch.equal(torch.autograd.grad(loss, model.decoder.weight)[0], expected)
    # without num_items_in_batch: the mean over this batch's masked tokens; an empty batch gives 0, graph connected
    logits = F.linear(rows, model.decoder.weight, model.decoder.bias)
    assert torch.equal(
        masked_lm_loss(rows, labels[labels != -100], model.decoder).loss,
        F.cross_entropy(logits, labels[labels != -100]),
    )
    empty = masked_lm_loss(rows[:0], labels[:0], model.decoder).loss
    assert empty.item() == 0.0 and empty.requires_grad


@pytest.mark.parametrize("packed", [False, True])
def test_masked_rows_forward_gives_the_models_loss_and_gradients_bitwise(packed):
    """The training forward that the fused loss plugs into, run with the torch loss: identical to the model's own."""
    reference, ids, labels = model_and_batch()
    model, _, _ = model_and_batch()
    assert install_masked_lm_loss(model) == "torch"
    inputs = {"input_ids": ids, "labels": labels}
    if packed:
        lengths = [16, 16, 16]
        inputs = {
            "input_ids": ids.reshape(1, -1),
            "labels": labels.reshape(1, -1),
            "position_ids": torch.cat([torch.arange(n) for n in lengths])[None],
        }
    ours = model(**inputs, sparse_prediction=True, num_items_in_batch=11, training_loss=MaskedLMLoss())
    theirs = reference(**inputs, sparse_prediction=True, num_items_in_batch=11)
    assert torch.equal(ours.logits, theirs.logits)
    assert torch.equal(ours.loss, theirs.loss)
    ours.loss.backward()
    theirs.loss.backward()
    for (name, a), (_, b) in zip(model.named_parameters(), reference.named_parameters()):
        assert torch.equal(a.grad, b.grad), name
    # without training_loss the model's own forward runs, in either mode
    assert torch.equal(model(**inputs, sparse_prediction=True).logits, theirs.logits)
    import inspect

    assert "sparse_prediction" in inspect.signature(model.forward).parameters  # the model's signature, for the Trainer


# ---------------------------------------------------------------------------------------------------------------------
# Liger plumbing, with a stand-in for liger_kernel.transformers.functional
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def fake_liger(monkeypatch):
    """Reference implementations under Liger's names and signatures; records each call."""
    calls = []

    def liger_rms_norm(X, W, eps, offset=0.0, casting_mode="llama", in_place=True):
        calls.append(("rms_norm", casting_mode, offset))
        assert casting_mode == "llama" and offset == 0.0
        normed = X.float() * torch.rsqrt(X.float().pow(2).mean(-1, keepdim=True) + eps)
        return normed.to(X.dtype) * (W + offset)

    def liger_swiglu(a, b):
        calls.append(("swiglu", a.is_contiguous(), b.is_contiguous()))
        return F.silu(a) * b

    def liger_fused_linear_cross_entropy(input, weight, target, bias=None, ignore_index=-100, reduction="mean", **kw):
        calls.append(("flce", reduction, tuple(input.shape)))
        logits = F.linear(input, weight, bias).float()
        return F.cross_entropy(logits, target, ignore_index=ignore_index, reduction=reduction)

    functional = types.ModuleType("liger_kernel.transformers.functional")
    functional.liger_rms_norm = liger_rms_norm
    functional.liger_swiglu = liger_swiglu
    functional.liger_fused_linear_cross_entropy = liger_fused_linear_cross_entropy
    root = types.ModuleType("liger_kernel")
    root.__spec__ = importlib.machinery.ModuleSpec("liger_kernel", None)
    transformers_pkg = types.ModuleType("liger_kernel.transformers")
    for name, module in {
        "liger_kernel": root,
        "liger_kernel.transformers": transformers_pkg,
        "liger_kernel.transformers.functional": functional,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    return calls


def test_liger_backend_swaps_modules_and_fuses_the_masked_rows_loss(fake_liger):
    reference, ids, labels = model_and_batch()
    model, _, _ = model_and_batch()
    keys = model.state_dict().keys()
    assert apply_kernel_backend(model, "liger", "cuda") == "liger"  # the device only decides availability
    assert sum(isinstance(m, LigerRMSNorm) for m in model.modules()) == 5
    assert sum(isinstance(m, LigerSwiGLU) for m in model.modules()) == 2
    assert model.state_dict().keys() == keys  # same parameters under the same names: checkpoints unchanged
    assert install_masked_lm_loss(model) == "liger"  # the backend the trainer's training loss will use
    out = model(
        input_ids=ids, labels=labels, sparse_prediction=True, num_items_in_batch=13, training_loss=MaskedLMLoss("liger")
    )
    ref = reference(input_ids=ids, labels=labels, sparse_prediction=True, num_items_in_batch=13)
    assert out.logits is None
    torch.testing.assert_close(out.loss, ref.loss)
    out.loss.backward()
    ref.loss.backward()
    for (name, a), (_, b) in zip(model.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    kinds = {call[0] for call in fake_liger}
    assert kinds == {"rms_norm", "swiglu", "flce"}
    assert ("flce", "sum", (int((labels != -100).sum()), 64)) in fake_liger  # only the masked rows, summed
    assert all(call[1] and call[2] for call in fake_liger if call[0] == "swiglu")  # contiguous gate/up


def test_liger_refuses_a_converted_decoder(fake_liger):
    model, _, _ = model_and_batch()
    build_converter(
        PrecisionArguments(precision_backend="torchao", torchao_recipe="rowwise", filter_fqns=[], require_compile=False)
    ).convert(model)
    with pytest.raises(ValueError, match="decoder was converted to Float8Linear"):
        apply_kernel_backend(model, "liger", "cuda")


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"log_train_accuracy": True}, "log_train_accuracy needs the logits"),
        ({"masked_logits_only_loss": False}, "masked_logits_only_loss=false"),
    ],
)
def test_auto_keeps_torch_kernels_when_the_run_needs_logits(fake_liger, monkeypatch, run_log, tmp_path, overrides, reason):
    from helpers.training import make_args, make_trainer

    monkeypatch.setattr(kernels_module, "is_available", lambda name: name == "liger_kernel")
    callback = PrecisionCallback(PrecisionArguments())
    callback._build(torch.device("cuda"))  # as on a GPU with liger-kernel installed
    trainer = make_trainer(make_args(tmp_path, **overrides), callbacks=[callback])
    assert callback.kernel_backend == "torch" and "forward" not in vars(trainer.model)
    assert f"kernel_backend=auto: using torch instead of liger ({reason}" in run_log.text
    liger = PrecisionCallback(PrecisionArguments())
    liger._build(torch.device("cuda"))
    trainer = make_trainer(make_args(tmp_path / "liger"), callbacks=[liger])
    assert liger.kernel_backend == "liger" and "forward" in vars(trainer.model)  # the same run without the blocker
