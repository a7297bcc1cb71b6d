"""NeoBERTConfig: released defaults, reading the released config.json, validation, round trip."""

import json

import pytest
from transformers import AutoConfig, GenerationConfig

from helpers.modeling import released_config_json
from neobert_hf import NeoBERTConfig


def comparable(config) -> dict:
    values = config.to_dict()
    values.pop("_name_or_path", None)  # where it was read from
    return values


def write_config(folder, values: dict) -> None:
    with open(folder / "config.json", "w") as f:
        json.dump(values, f)


def test_defaults_are_the_released_model():
    config = NeoBERTConfig()
    assert config.model_type == "neobert"
    assert config.num_hidden_layers == 28
    assert config.hidden_size == 768
    assert config.num_attention_heads == 12
    assert config.head_dim == 64
    assert config.intermediate_size == 3072
    assert config.ffn_size == 2048
    assert config.vocab_size == 30522
    assert config.pad_token_id == 0
    assert config.norm_eps == 1e-5
    assert config.max_position_embeddings == 4096
    assert config.rope is True and config.rope_theta == 10000.0
    assert config.rms_norm is True
    assert config.hidden_act == "swiglu"
    assert config.dropout == 0.0
    assert config.tie_word_embeddings is False
    assert config.decoder_bias is True
    assert config.embedding_init_range == config.decoder_init_range == 0.02


@pytest.mark.parametrize(
    ("intermediate_size", "ffn_size"),
    [(3072, 2048), (4096, 2736), (100, 72), (12, 8), (192, 128)],
)
def test_swiglu_width_formula(intermediate_size, ffn_size):
    # F = 8 * ceil(int(2 * I / 3) / 8)
    assert NeoBERTConfig(intermediate_size=intermediate_size).ffn_size == ffn_size
    # The GELU MLP uses intermediate_size as is.
    assert NeoBERTConfig(intermediate_size=intermediate_size, hidden_act="gelu").ffn_size == intermediate_size


def test_released_config_json_reads_without_remote_code(tmp_path):
    write_config(tmp_path, released_config_json())
    config = AutoConfig.from_pretrained(tmp_path)  # no trust_remote_code: the registered class is used
    assert type(config) is NeoBERTConfig
    assert config.max_position_embeddings == 4096
    # `max_length` is the context length in the released file: mapped, and not kept as a generation setting.
    assert "max_length" not in config.__dict__
    assert "max_length" not in config.to_dict()
    assert "max_length" not in config.to_diff_dict()
    assert GenerationConfig.from_model_config(config).max_length != 4096
    assert config.hidden_act == "swiglu"
    assert config.ffn_size == 2048
    assert config.head_dim == 64
    assert config.norm_eps == 1e-5
    assert config.vocab_size == 30522 and config.pad_token_id == 0
    assert config.rms_norm is True and config.rope is True
    assert config.tie_word_embeddings is False and config.decoder_bias is True
    # Legacy keys that the config derives or replaces are not kept around to drift.
    assert "dim_head" not in config.to_dict()
    assert "flash_attention" not in config.to_dict()
    # The stray `kwargs` dict of the released file is not applied: its classifier_dropout stays unset.
    assert config.classifier_dropout is None
    assert "kwargs" not in config.to_dict()


def test_released_max_length_does_not_override_an_explicit_value(tmp_path):
    values = released_config_json()
    values["max_position_embeddings"] = 1024
    write_config(tmp_path, values)
    assert AutoConfig.from_pretrained(tmp_path).max_position_embeddings == 1024
    assert NeoBERTConfig(max_position_embeddings=1024, max_length=4096).max_position_embeddings == 1024
    # And the mapping works in the constructor too.
    assert NeoBERTConfig(max_length=2048).max_position_embeddings == 2048


def test_inconsistent_dim_head_is_a_clear_error(tmp_path):
    values = released_config_json()
    values["dim_head"] = 32  # 768 / 12 = 64
    write_config(tmp_path, values)
    with pytest.raises(ValueError, match="dim_head"):
        AutoConfig.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="dim_head"):
        NeoBERTConfig(hidden_size=64, num_attention_heads=4, dim_head=8)
    assert NeoBERTConfig(hidden_size=64, num_attention_heads=4, dim_head=16).head_dim == 16


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"hidden_act": "relu"}, "hidden_act"),
        ({"hidden_size": 100, "num_attention_heads": 12}, "num_attention_heads"),
        (
            {"hidden_size": 36, "num_attention_heads": 4},
            "head dim",
        ),  # head dim 9: RoPE needs an even one
        ({"classifier_pooling": "avg"}, "classifier_pooling"),
    ],
)
def test_invalid_architecture_is_a_clear_error(overrides, match):
    with pytest.raises(ValueError, match=match):
        NeoBERTConfig(**overrides)


def test_bad_hidden_act_in_a_file_is_a_clear_error(tmp_path):
    values = released_config_json()
    values["hidden_act"] = "GeGLU"
    write_config(tmp_path, values)
    with pytest.raises(ValueError, match="hidden_act"):
        AutoConfig.from_pretrained(tmp_path)


def test_hidden_act_spelling_is_case_insensitive():
    assert NeoBERTConfig(hidden_act="SwiGLU").hidden_act == "swiglu"
    assert NeoBERTConfig(hidden_act="GELU").hidden_act == "gelu"


def test_decoder_bias_follows_tying_unless_set():
    assert NeoBERTConfig(tie_word_embeddings=True).decoder_bias is False
    assert NeoBERTConfig(tie_word_embeddings=False).decoder_bias is True
    assert NeoBERTConfig(tie_word_embeddings=True, decoder_bias=True).decoder_bias is True


def test_save_load_round_trip(tmp_path):
    config = NeoBERTConfig(
        vocab_size=1000,
        hidden_size=96,
        num_hidden_layers=3,
        num_attention_heads=6,
        intermediate_size=300,
        max_position_embeddings=777,
        norm_eps=1e-6,
        rms_norm=False,
        rope=False,
        hidden_act="gelu",
        dropout=0.1,
        classifier_pooling="mean",
        tie_word_embeddings=True,
        sparse_prediction=True,
        num_labels=5,
    )
    config.save_pretrained(tmp_path)
    with open(tmp_path / "config.json") as f:
        stored = json.load(f)
    assert stored["model_type"] == "neobert"
    assert "max_length" not in stored
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert type(reloaded) is NeoBERTConfig
    assert comparable(reloaded) == comparable(config)
    for name in (
        "max_position_embeddings",
        "rms_norm",
        "rope",
        "hidden_act",
        "decoder_bias",
        "num_labels",
    ):
        assert getattr(reloaded, name) == getattr(config, name), name


def test_released_config_round_trips_through_save(tmp_path):
    write_config(tmp_path, released_config_json())
    config = AutoConfig.from_pretrained(tmp_path)
    out = tmp_path / "saved"
    config.save_pretrained(out)
    with open(out / "config.json") as f:
        stored = json.load(f)
    assert stored["max_position_embeddings"] == 4096
    assert "max_length" not in stored
    again = AutoConfig.from_pretrained(out)
    assert comparable(again) == comparable(config)
