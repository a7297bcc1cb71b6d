"""Low-precision converters without training: argument rules, guardrails (backends, hardware, DeepSpeed, compile,
task, order), the linear-layer filters, Transformer Engine's recipe mapping and conversion behind a stand-in module,
Quartet-II's install errors and the plain-checkpoint hooks."""

import importlib.machinery
import sys
import types
from types import SimpleNamespace

import pytest
import torch
from helpers.modeling import tiny_config
from torch import nn

from neobert_hf import NeoBERTForMaskedLM, NeoBERTForSequenceClassification
from neobert_hf.converters import (
    PREPARATION_ORDER,
    ModelConverter,
    PrecisionArguments,
    PrecisionCallback,
    build_converter,
    check_precision_training_args,
    check_unprepared,
)
from neobert_hf.converters.arguments import check_precision_data_args
from neobert_hf.converters.base import replace_module
from neobert_hf.import_utils import is_available
from neobert_hf.training import NeoBERTTrainingArguments


ENCODER_LINEARS = [
    f"model.transformer_encoder.{i}.{name}" for i in range(2) for name in ("qkv", "wo", "ffn.w12", "ffn.w3")
]


def torchao(recipe, **options) -> PrecisionArguments:
    return PrecisionArguments(precision_backend="torchao", torchao_recipe=recipe, require_compile=False, **options)


def tiny_model() -> NeoBERTForMaskedLM:
    torch.manual_seed(0)
    return NeoBERTForMaskedLM(tiny_config())


def fake_gpu(monkeypatch, capability, name="NVIDIA test GPU") -> torch.device:
    """A CUDA device of the given compute capability, as far as the hardware checks can tell."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    return torch.device("cuda", 0)


# ---------------------------------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------------------------------


def test_default_is_no_conversion_with_the_decoder_filtered():
    args = PrecisionArguments()
    assert not args.enabled and args.recipe is None and args.filter_fqns == ["decoder"]
    assert build_converter(args) is None
    assert PREPARATION_ORDER == ("convert", "activation_checkpointing", "compile", "distributed_wrapping")


@pytest.mark.parametrize(
    "options, owner",
    [
        (dict(precision_backend="torchao", torchao_recipe="rowwise", te_recipe="fp8_current"), "transformer_engine"),
        (dict(precision_backend="torchao", torchao_recipe="rowwise", quartet_four_over_six=False), "quartet2"),
        (dict(precision_backend="transformer_engine", te_recipe="mxfp8", torchao_recipe="rowwise"), "torchao"),
        (dict(precision_backend="quartet2", enable_fsdp_float8_all_gather=True), "torchao"),
        (dict(precision_backend="none", te_recipe="nvfp4"), "transformer_engine"),
    ],
)
def test_more_than_one_backend_is_an_error(options, owner):
    with pytest.raises(ValueError, match=rf"Only one low-precision backend.*|precision_backend={owner}"):
        PrecisionArguments(**options)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(precision_backend="torchao"), "needs torchao_recipe"),
        (dict(precision_backend="transformer_engine"), "needs te_recipe"),
        (dict(skip_first_last_linear=True), "only apply to a low-precision conversion"),
        (dict(precision_backend="torchao", torchao_recipe="mxfp8_emulated", auto_filter_small_kn=True), "float8"),
        (
            dict(precision_backend="torchao", torchao_recipe="rowwise", enable_fsdp_float8_all_gather=True),
            "tensorwise",
        ),
        (
            dict(precision_backend="torchao", torchao_recipe="tensorwise", precompute_float8_dynamic_scale_for_fsdp=True),
            "enable_fsdp_float8_all_gather",
        ),
        (dict(precision_backend="transformer_engine", te_recipe="fp8_current", disable_rht=True), "nvfp4 only"),
        (dict(precision_backend="transformer_engine", te_recipe="nvfp4", fp8_format="E4M3"), "E2M1"),
    ],
)
def test_option_rules(options, message):
    with pytest.raises(ValueError, match=message):
        PrecisionArguments(**options)


def train_args(**overrides):
    values = dict(
        deepspeed=None, torch_compile=False, fsdp="", fsdp_config={}, bf16=False, log_train_accuracy=False,
        masked_logits_only_loss=True, use_cpu=True,
    )
    values.update(overrides)
    return SimpleNamespace(**values)


@pytest.mark.parametrize(
    "precision, overrides, message",
    [
        (torchao("rowwise"), dict(deepspeed="ds_config.json"), "DeepSpeed"),
        (
            PrecisionArguments(precision_backend="torchao", torchao_recipe="rowwise"),
            dict(torch_compile=False),
            "require_compile=true but torch_compile is false",
        ),
        (
            torchao("tensorwise", enable_fsdp_float8_all_gather=True, precompute_float8_dynamic_scale_for_fsdp=True),
            dict(),
            "FSDP2",
        ),
        (
            torchao("tensorwise", enable_fsdp_float8_all_gather=True, precompute_float8_dynamic_scale_for_fsdp=True),
            dict(fsdp="full_shard", fsdp_config={"version": 1}),
            "FSDP1",
        ),
        (torchao("mxfp8_emulated"), dict(torch_compile=True), "float8_e8m0fnu is missing"),
        (torchao("mxfp4_qat"), dict(torch_compile=True), "Train eagerly on the CPU"),
        (PrecisionArguments(precision_backend="quartet2", require_compile=False), dict(), "bf16"),
        (PrecisionArguments(kernel_backend="liger"), dict(log_train_accuracy=True), "log_train_accuracy"),
        (PrecisionArguments(kernel_backend="liger"), dict(masked_logits_only_loss=False), "masked_logits_only_loss"),
    ],
)
def test_training_argument_guards(precision, overrides, message):
    with pytest.raises(ValueError, match=message):
        check_precision_training_args(precision, train_args(**overrides))


def test_training_argument_guards_pass():
    check_precision_training_args(torchao("rowwise"), train_args())
    check_precision_training_args(
        PrecisionArguments(precision_backend="torchao", torchao_recipe="rowwise"), train_args(torch_compile=True)
    )  # float8 compiles on the CPU (see test_float8_compiles_on_cpu)
    check_precision_training_args(
        torchao("tensorwise", enable_fsdp_float8_all_gather=True, precompute_float8_dynamic_scale_for_fsdp=True),
        train_args(fsdp="full_shard", fsdp_config={"version": 2}),
    )


def test_require_compile_with_real_training_arguments(tmp_path):
    args = NeoBERTTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", torch_compile=False)
    with pytest.raises(ValueError, match="torch_compile"):
        PrecisionCallback(PrecisionArguments(precision_backend="torchao", torchao_recipe="rowwise"), args)


def test_mx_recipes_need_token_counts_in_blocks_of_32():
    mx = torchao("mxfp8_emulated")
    check_precision_data_args(mx, SimpleNamespace(packing=True, microbatch_tokens=4096))
    check_precision_data_args(mx, SimpleNamespace(packing=False, pad_to_multiple_of=64))
    check_precision_data_args(torchao("rowwise"), SimpleNamespace(packing=False, pad_to_multiple_of=None))
    with pytest.raises(ValueError, match="tokens_per_batch"):
        check_precision_data_args(mx, SimpleNamespace(packing=True, microbatch_tokens=1000))
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        check_precision_data_args(mx, SimpleNamespace(packing=False, pad_to_multiple_of=8))


# ---------------------------------------------------------------------------------------------------------------------
# Hardware
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", ["tensorwise", "rowwise", "rowwise_with_gw_hp", "mxfp8_emulated", "mxfp4_emulated", "mxfp4_qat"])
def test_cpu_recipes_build_on_cpu(recipe):
    converter = build_converter(torchao(recipe), "cpu")
    assert converter.backend == "torchao" and converter.recipe == recipe


@pytest.mark.parametrize("recipe", ["mxfp8_cublas", "mxfp8_cublas_rceil", "mxfp4_cutlass", "nvfp4_qat"])
def test_blackwell_recipes_refuse_the_cpu(recipe):
    with pytest.raises(RuntimeError, match=r"Blackwell \(sm100\+.*this run is on cpu"):
        build_converter(torchao(recipe), "cpu")


def test_float8_needs_ada_or_hopper(monkeypatch):
    device = fake_gpu(monkeypatch, (8, 0), "NVIDIA A100")
    with pytest.raises(RuntimeError, match=r"8\.9\+ \(Ada Lovelace or Hopper.*A100.*sm80"):
        build_converter(torchao("rowwise"), device)
    build_converter(torchao("mxfp8_emulated"), device)  # emulated MX runs anywhere


def test_mx_cublas_needs_blackwell(monkeypatch):
    with pytest.raises(RuntimeError, match=r"10\.0\+ \(Blackwell.*sm90"):
        build_converter(torchao("mxfp8_cublas"), fake_gpu(monkeypatch, (9, 0), "NVIDIA H100"))
    assert build_converter(torchao("mxfp8_cublas_rceil"), fake_gpu(monkeypatch, (10, 0), "NVIDIA B200")) is not None


# ---------------------------------------------------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------------------------------------------------


def test_default_filter_keeps_the_decoder():
    converted, skipped = build_converter(torchao("rowwise")).select(tiny_model())
    assert converted == ENCODER_LINEARS
    assert skipped == {"decoder": "filter_fqns ('decoder')"}


def test_skip_first_last_linear():
    converted, skipped = build_converter(torchao("tensorwise", skip_first_last_linear=True)).select(tiny_model())
    assert converted == ENCODER_LINEARS[1:]
    assert skipped == {
        "model.transformer_encoder.0.qkv": "skip_first_last_linear",
        "decoder": "filter_fqns ('decoder')",
    }
    converted, skipped = build_converter(
        torchao("tensorwise", skip_first_last_linear=True, filter_fqns=[])
    ).select(tiny_model())
    assert set(skipped) == {"model.transformer_encoder.0.qkv", "decoder"}
    assert set(skipped.values()) == {"skip_first_last_linear"}


def test_filter_fqns_match_substrings():
    converted, skipped = build_converter(torchao("rowwise", filter_fqns=["ffn", "decoder"])).select(tiny_model())
    assert converted == [n for n in ENCODER_LINEARS if "ffn" not in n]
    assert set(skipped) == {n for n in ENCODER_LINEARS if "ffn" in n} | {"decoder"}


class Shapes(nn.Module):
    """Linear layers of given (in, out) shapes, on the meta device: only their shapes matter to the filters."""

    def __init__(self, **shapes):
        super().__init__()
        with torch.device("meta"):
            for name, (k, n) in shapes.items():
                setattr(self, name, nn.Linear(k, n, bias=False))


def test_auto_filter_small_kn_uses_torchaos_thresholds():
    model = Shapes(big=(2048, 8192), wide=(768, 3072), narrow=(4096, 1024), first=(1024, 1024))
    rowwise, skipped = build_converter(torchao("rowwise", auto_filter_small_kn=True)).select(model)
    assert rowwise == ["big"]  # rowwise: N > 2048, K > 1024, not (N <= 4096 and K <= 2048)
    assert all(reason.startswith("auto_filter_small_kn") for reason in skipped.values())
    tensorwise, _ = build_converter(torchao("tensorwise", auto_filter_small_kn=True)).select(model)
    assert tensorwise == ["big", "wide"]  # tensorwise: filtered when K <= 4096 and N <= 1024
    gw_hp, _ = build_converter(torchao("rowwise_with_gw_hp", auto_filter_small_kn=True)).select(model)
    assert gw_hp == rowwise  # torchao has no table for it: rowwise shapes
    assert build_converter(torchao("rowwise")).select(model)[0] == ["big", "wide", "narrow", "first"]


def test_a_conversion_that_converts_nothing_is_an_error():
    with pytest.raises(ValueError, match=r"would convert no linear layer(.|\n)*auto_filter_small_kn \(N=192, K=64"):
        build_converter(torchao("rowwise", auto_filter_small_kn=True)).convert(tiny_model())


def test_kernel_shape_requirements_per_recipe():
    model = Shapes(ok=(64, 96), odd=(48, 64), ragged=(40, 64))
    assert build_converter(torchao("tensorwise")).select(model)[0] == ["ok", "odd"]
    converted, skipped = build_converter(torchao("mxfp8_emulated")).select(model)
    assert converted == ["ok"]
    assert "not multiples of 32" in skipped["odd"]


def test_qat_keeps_linears_with_a_bias():
    converted, skipped = build_converter(torchao("mxfp4_qat", filter_fqns=[])).select(tiny_model())
    assert converted == ENCODER_LINEARS
    assert "does not train (no bias gradient)" in skipped["decoder"]
    # float8 and MX handle the bias: the decoder is converted when it is not filtered
    assert build_converter(torchao("rowwise", filter_fqns=[])).select(tiny_model())[0] == ENCODER_LINEARS + ["decoder"]


def test_convert_swaps_exactly_the_selected_modules():
    model = tiny_model()
    weights = {name: model.get_submodule(name).weight for name in ENCODER_LINEARS}
    report = build_converter(torchao("mxfp8_emulated", skip_first_last_linear=True)).convert(model)
    assert report.converted == ENCODER_LINEARS[1:]
    for name in ENCODER_LINEARS[1:]:
        module = model.get_submodule(name)
        assert type(module).__name__ == "MXTrainingLinear"
        assert module.weight is weights[name]  # the same Parameter: nothing for the optimizer to miss
    assert type(model.get_submodule(ENCODER_LINEARS[0])) is nn.Linear and type(model.decoder) is nn.Linear


# ---------------------------------------------------------------------------------------------------------------------
# Order, task and callback guards
# ---------------------------------------------------------------------------------------------------------------------


def test_conversion_must_come_before_the_optimizer_compile_wrapping_and_checkpointing():
    model = tiny_model()
    check_unprepared(model)
    with pytest.raises(RuntimeError, match="before the optimizer"):
        check_unprepared(model, torch.optim.AdamW(model.parameters()))
    with pytest.raises(RuntimeError, match="already compiled"):
        check_unprepared(torch.compile(model))  # wrapping only: nothing is compiled until it runs
    with pytest.raises(RuntimeError, match="already wrapped in DataParallel"):
        check_unprepared(nn.DataParallel(model))
    model.gradient_checkpointing_enable()
    with pytest.raises(RuntimeError, match="Activation checkpointing is already enabled"):
        check_unprepared(model)


def test_trainer_with_an_existing_optimizer_is_refused(tmp_path):
    from helpers.training import make_args, make_trainer

    model = tiny_model()
    args = make_args(tmp_path)
    callback = PrecisionCallback(torchao("rowwise"), args)
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(RuntimeError, match="before the optimizer is created"):
        make_trainer(args, model=model, callbacks=[callback], optimizers=(optimizer, None))


def test_conversion_outside_pretraining_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="MLM pretraining only"):
        PrecisionCallback(torchao("rowwise"), task="glue")
    callback = PrecisionCallback(torchao("rowwise"))
    classifier = NeoBERTForSequenceClassification(tiny_config(num_labels=2))
    with pytest.raises(ValueError, match="MLM pretraining only.*NeoBERTForSequenceClassification"):
        callback.on_init_end(train_args(), None, None, model=classifier, optimizer=None)


def test_accelerate_fp8_on_top_is_an_error(monkeypatch):
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp8")
    with pytest.raises(ValueError, match="converts the model a second time"):
        PrecisionCallback(torchao("rowwise")).on_init_end(train_args(), None, None, model=tiny_model())


def test_optimizer_missing_a_replaced_parameter_is_detected():
    model = tiny_model()
    stale = torch.optim.AdamW(model.parameters())  # built before the conversion
    callback = PrecisionCallback(torchao("tensorwise", enable_fsdp_float8_all_gather=True))
    callback.on_init_end(train_args(), None, None, model=model)
    assert callback.converter.replaces_parameters
    with pytest.raises(RuntimeError, match="8 trainable parameters of the converted model are not in the optimizer"):
        callback.on_train_begin(train_args(), None, None, model=model, optimizer=stale)
    callback.on_train_begin(train_args(), None, None, model=model, optimizer=torch.optim.AdamW(model.parameters()))


# ---------------------------------------------------------------------------------------------------------------------
# Plain checkpoints
# ---------------------------------------------------------------------------------------------------------------------


class StatefulLinear(nn.Linear):
    """A converted linear with converter state, as Transformer Engine's (`_extra_state`) and Quartet-II's (buffers)."""

    def __init__(self, linear: nn.Linear):
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None)
        self.weight, self.bias = linear.weight, linear.bias
        self.register_buffer("had", torch.ones(4))

    def get_extra_state(self):
        return torch.tensor([1.0])

    def set_extra_state(self, state):
        pass


class StatefulConverter(ModelConverter):
    backend = "test"

    def _swap(self, model, names):
        for name in names:
            replace_module(model, name, StatefulLinear(model.get_submodule(name)))


def test_checkpoints_of_converted_models_hold_plain_weights_and_load_back():
    plain = tiny_model()
    expected = {k: (v.shape, v.dtype) for k, v in plain.state_dict().items()}
    model = tiny_model()
    StatefulConverter("stateful").convert(model)
    assert "model.transformer_encoder.0.qkv._extra_state" not in model.state_dict()
    state = model.state_dict()
    assert {k: (v.shape, v.dtype) for k, v in state.items()} == expected
    # back into an unconverted model, and into a converted one (strict: the dropped state is not missing)
    NeoBERTForMaskedLM(tiny_config()).load_state_dict(state, strict=True)
    reloaded = tiny_model()
    StatefulConverter("stateful").convert(reloaded)
    result = reloaded.load_state_dict(state, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []


def test_float8_all_gather_weights_are_saved_as_plain_tensors():
    model = tiny_model()
    build_converter(torchao("tensorwise", enable_fsdp_float8_all_gather=True)).convert(model)
    parameter = model.get_submodule(ENCODER_LINEARS[0]).weight
    assert type(parameter.data).__name__ == "WeightWithDynamicFloat8CastTensor"
    state = model.state_dict()
    assert all(type(v) is torch.Tensor for v in state.values())
    assert torch.equal(state[ENCODER_LINEARS[0] + ".weight"], parameter._tensor)


# ---------------------------------------------------------------------------------------------------------------------
# Transformer Engine (the import boundary replaced by a stand-in that records what it is given)
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(is_available("transformer_engine"), reason="Transformer Engine is installed")
def test_transformer_engine_missing_names_the_extra_and_the_gpu():
    args = PrecisionArguments(precision_backend="transformer_engine", te_recipe="fp8_current", require_compile=False)
    with pytest.raises(ImportError) as excinfo:
        build_converter(args, "cpu")
    message = str(excinfo.value)
    assert 'pip install "neobert-hf[transformer-engine]"' in message
    assert "NVIDIA GPUs (Ada/Hopper sm89+)" in message
    blackwell = PrecisionArguments(precision_backend="transformer_engine", te_recipe="nvfp4", require_compile=False)
    with pytest.raises(ImportError, match=r"Blackwell sm100\+"):
        build_converter(blackwell, "cpu")


class Recorded:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


@pytest.fixture
def fake_te(monkeypatch):
    """`transformer_engine` with the API surface the converter uses; records recipes, layers and autocast calls."""
    root = types.ModuleType("transformer_engine")
    root.__spec__ = importlib.machinery.ModuleSpec("transformer_engine", None)
    pytorch, common, recipe = (types.ModuleType(f"transformer_engine.{n}") for n in ("pytorch", "common", "common.recipe"))
    recipe.Format = SimpleNamespace(E4M3="Format.E4M3", HYBRID="Format.HYBRID", E2M1="Format.E2M1")
    for name in ("DelayedScaling", "Float8CurrentScaling", "MXFP8BlockScaling", "NVFP4BlockScaling"):
        setattr(recipe, name, type(name, (Recorded,), {}))
    support = {"fp8": (True, ""), "mxfp8": (True, ""), "nvfp4": (True, "")}
    for kind in support:
        setattr(pytorch, f"is_{kind}_available", lambda return_reason=False, kind=kind: support[kind])

    class Linear(StatefulLinear):
        def __init__(self, in_features, out_features, bias=True, params_dtype=None, device=None):
            nn.Linear.__init__(self, in_features, out_features, bias=bias, dtype=params_dtype, device=device)
            self.register_buffer("had", torch.ones(4))

    autocasts = []

    class autocast:
        def __init__(self, enabled=True, recipe=None):
            autocasts.append((enabled, recipe))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    pytorch.Linear, pytorch.autocast = Linear, autocast
    root.pytorch, root.common, common.recipe = pytorch, common, recipe
    for name, module in {
        "transformer_engine": root,
        "transformer_engine.pytorch": pytorch,
        "transformer_engine.common": common,
        "transformer_engine.common.recipe": recipe,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    return SimpleNamespace(recipe=recipe, Linear=Linear, autocasts=autocasts, support=support)


@pytest.mark.parametrize(
    "te_recipe, options, cls, kwargs",
    [
        ("fp8_delayed", {}, "DelayedScaling", {}),
        ("fp8_delayed", {"fp8_format": "E4M3"}, "DelayedScaling", {"fp8_format": "Format.E4M3"}),
        ("fp8_current", {"fp8_format": "HYBRID"}, "Float8CurrentScaling", {"fp8_format": "Format.HYBRID"}),
        ("mxfp8", {}, "MXFP8BlockScaling", {}),
        (
            "nvfp4",
            {"disable_2d_quantization": True, "disable_rht": True, "disable_stochastic_rounding": True},
            "NVFP4BlockScaling",
            {"disable_rht": True, "disable_stochastic_rounding": True, "disable_2d_quantization": True},
        ),
        (
            "nvfp4",
            {},
            "NVFP4BlockScaling",
            {"disable_rht": False, "disable_stochastic_rounding": False, "disable_2d_quantization": False},
        ),
    ],
)
def test_te_recipe_mapping(fake_te, te_recipe, options, cls, kwargs):
    from neobert_hf.converters.transformer_engine import build_te_recipe

    built = build_te_recipe(fake_te.recipe, te_recipe, **options)
    assert type(built).__name__ == cls and built.kwargs == kwargs


def test_te_converter_swaps_linears_and_wraps_the_forward_in_autocast(fake_te, monkeypatch):
    device = fake_gpu(monkeypatch, (9, 0), "NVIDIA H100")
    args = PrecisionArguments(
        precision_backend="transformer_engine", te_recipe="fp8_current", fp8_format="E4M3", require_compile=False
    )
    converter = build_converter(args, device)
    model = tiny_model()
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    report = converter.convert(model)
    converter.wrap_forward(model)
    assert report.converted == ENCODER_LINEARS
    assert all(isinstance(model.get_submodule(n), fake_te.Linear) for n in ENCODER_LINEARS)
    state = model.state_dict()  # te.Linear's weights copied; its own state not saved
    assert state.keys() == reference.keys() and all(torch.equal(state[k], reference[k]) for k in state)
    ids = torch.randint(5, 128, (2, 8))
    model.train()
    model(input_ids=ids)
    model.eval()
    model(input_ids=ids)
    assert [enabled for enabled, _ in fake_te.autocasts] == [True, False]
    assert fake_te.autocasts[0][1] is converter.te_recipe
    assert converter.te_recipe.kwargs == {"fp8_format": "Format.E4M3"}


def test_te_hardware_guards(fake_te, monkeypatch):
    mxfp8 = PrecisionArguments(precision_backend="transformer_engine", te_recipe="mxfp8", require_compile=False)
    with pytest.raises(RuntimeError, match="this run is on cpu"):
        build_converter(mxfp8, "cpu")
    with pytest.raises(RuntimeError, match=r"10\.0\+ \(Blackwell.*sm90"):
        build_converter(mxfp8, fake_gpu(monkeypatch, (9, 0), "NVIDIA H100"))
    fake_te.support["mxfp8"] = (False, "MXFP8 needs CUDA 12.8+")
    with pytest.raises(RuntimeError, match="cannot run te_recipe=mxfp8 on this machine: MXFP8 needs CUDA 12.8"):
        build_converter(mxfp8, fake_gpu(monkeypatch, (10, 0), "NVIDIA B200"))


# ---------------------------------------------------------------------------------------------------------------------
# Quartet-II
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(is_available("qutlass"), reason="qutlass is installed")
def test_quartet_missing_kernels_name_the_github_installs():
    args = PrecisionArguments(precision_backend="quartet2", require_compile=False)
    with pytest.raises(ImportError) as excinfo:
        build_converter(args, "cpu")
    message = str(excinfo.value)
    assert "qutlass @ git+https://github.com/IST-DASLab/qutlass.git" in message
    assert "quartet2 @ git+https://github.com/IST-DASLab/Quartet-II.git#subdirectory=kernels" in message
    assert "Blackwell sm120a" in message


def _fake_package(monkeypatch, name, **attributes):
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    for key, value in attributes.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)


def test_quartet_needs_blackwell_sm120_and_a_matching_qutlass(monkeypatch):
    _fake_package(monkeypatch, "qutlass")
    _fake_package(monkeypatch, "quartet2")
    args = PrecisionArguments(precision_backend="quartet2", require_compile=False)
    with pytest.raises(RuntimeError, match=r"12\.0\+ .*sm100"):
        build_converter(args, fake_gpu(monkeypatch, (10, 0), "NVIDIA B200"))
    with pytest.raises(ImportError, match="lacks the NVFP4 matmul"):
        build_converter(args, fake_gpu(monkeypatch, (12, 0), "NVIDIA RTX PRO 6000"))
    monkeypatch.setattr(sys.modules["qutlass"], "matmul_nvf4_bf16_tn", lambda *a, **k: None, raising=False)
    converter = build_converter(args, fake_gpu(monkeypatch, (12, 0), "NVIDIA RTX PRO 6000"))
    converted, skipped = converter.select(Shapes(a=(256, 128), b=(64, 128)))
    assert converted == ["a"] and "multiples of 128" in skipped["b"]
    assert "Quartet-II's linear ignores" in converter._skip_reason("decoder", nn.Linear(128, 128))


def test_precision_arguments_are_grouped_per_converter_and_stay_flat():
    """Each converter's options live in its own dataclass with its own checks; PrecisionArguments inherits them, so
    the command line and the recipes keep one flat key per option."""
    import dataclasses

    from transformers import HfArgumentParser

    from neobert_hf.converters.arguments import (
        ConversionArguments,
        KernelArguments,
        QuartetArguments,
        TorchAOArguments,
        TransformerEngineArguments,
    )

    groups = [ConversionArguments, TorchAOArguments, TransformerEngineArguments, QuartetArguments, KernelArguments]
    names = [f.name for group in groups for f in dataclasses.fields(group)]
    assert len(names) == len(set(names))  # every option belongs to exactly one group
    flat = [f.name for f in dataclasses.fields(PrecisionArguments)]
    assert flat[0] == "precision_backend" and set(flat) == {*names, "precision_backend"}
    (args,) = HfArgumentParser(PrecisionArguments).parse_args_into_dataclasses(
        ["--precision_backend", "torchao", "--torchao_recipe", "tensorwise", "--enable_fsdp_float8_all_gather", "true",
         "--filter_fqns", "decoder", "qkv"]  # fmt: skip
    )
    assert args.converter_options() == {
        "recipe": "tensorwise",
        "auto_filter_small_kn": False,
        "enable_fsdp_float8_all_gather": True,
        "precompute_float8_dynamic_scale_for_fsdp": False,
        "filter_fqns": ["decoder", "qkv"],
        "skip_first_last_linear": False,
    }
    assert PrecisionArguments().converter_options() == {}
    # A group alone checks its own combinations, as a converter built directly does.
    with pytest.raises(ValueError, match="apply to te_recipe=nvfp4 only"):
        TransformerEngineArguments(te_recipe="fp8_current", disable_rht=True)
    with pytest.raises(ValueError, match="needs torchao_recipe=tensorwise"):
        TorchAOArguments(torchao_recipe="rowwise", enable_fsdp_float8_all_gather=True)
