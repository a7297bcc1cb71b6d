"""`neobert-hf convert-config`: configs of the original NeoBERT trainer (nested YAML) become flat recipes that the
subcommands run; every key is mapped or reported; docs/migrating.md is generated from the same table."""

import json
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from neobert_hf import migration
from neobert_hf.cli.main import main
from neobert_hf.migration import RULES, MigrationError, convert_config, subcommand_fields


ROOT = Path(__file__).resolve().parents[2]
CORPUS = str(ROOT / "data" / "corpus")
TOKENIZER = str(ROOT / "data" / "tokenizer")
REFERENCE = ROOT.parent / "shared" / "reference" / "configuration-reference.md"

# Preset 2 of the original configuration reference ("Memory-Constrained Single GPU"), as written there.
PRETRAINING = """\
task: pretraining
model:
  hidden_size: 512
  num_hidden_layers: 8
  num_attention_heads: 8
  intermediate_size: 2048
  max_position_embeddings: 512
  attn_backend: sdpa

trainer:
  per_device_train_batch_size: 4
  gradient_accumulation_steps: 8
  gradient_checkpointing: true
  mixed_precision: bf16
  masked_logits_only_loss: true
  torch_compile: false
  max_steps: 300000

optimizer:
  name: adamw
  lr: 8e-5

scheduler:
  name: cosine
  warmup_percent: 1.0

dataset:
  streaming: true
  num_workers: 4
"""

# The other presets of the original configuration reference, as written there.
PRESETS = {
    "base_pretraining": """\
task: pretraining
model:
  hidden_size: 768
  num_hidden_layers: 12
  num_attention_heads: 12
  intermediate_size: 3072
  max_position_embeddings: 512
  attn_backend: flash_attn_varlen
  kernel_backend: auto

dataset:
  name: refinedweb
  streaming: true
  max_seq_length: 512
  num_workers: 16

tokenizer:
  name: bert-base-uncased
  max_length: 512

trainer:
  per_device_train_batch_size: 16
  gradient_accumulation_steps: 1
  max_steps: 1000000
  save_steps: 10000
  eval_steps: 10000
  mixed_precision: bf16
  masked_logits_only_loss: true

optimizer:
  name: adamw
  lr: 1e-4
  weight_decay: 0.01

scheduler:
  name: cosine
  warmup_steps: 10000

datacollator:
  mlm_probability: 0.15
  mask_all: false
  pack_sequences: false
""",
    "memory_constrained": PRETRAINING,
    "resumable_local_data": """\
task: pretraining
dataset:
  path: /data/neobert_tokenized
  streaming: false
  max_seq_length: 512

trainer:
  output_dir: outputs/neobert_run
  resume_from_checkpoint: latest
  save_steps: 5000
  save_total_limit: 5
  per_device_train_batch_size: 8
  gradient_accumulation_steps: 4

use_deepspeed: true
""",
    "full_logging": """\
task: pretraining
wandb:
  enabled: true
  project: neo-bert
  mode: online
  name: neobert-full-logging

trainer:
  logging_steps: 20
  eval_steps: 1000
  eval_max_batches: 200
  log_train_accuracy: true
  log_grad_norm: true
  log_weight_norms: true

scheduler:
  name: cosine
  warmup_steps: 5000
""",
}

# The same run shrunk to the repo's tiny tokenizer and corpus, with the original trainer's dotted overrides.
TINY_OVERRIDES = [
    "--model.hidden_size", "32", "--model.num_hidden_layers", "1", "--model.num_attention_heads", "2",
    "--model.intermediate_size", "64", "--model.max_position_embeddings", "128",
    "--tokenizer.path", TOKENIZER, "--dataset.path", CORPUS, "--dataset.streaming", "false",
    "--dataset.train_split", "train[:200]", "--dataset.eval_split", "validation[:20]", "--dataset.max_seq_length", "64",
    "--trainer.per_device_train_batch_size", "2", "--trainer.gradient_accumulation_steps", "1",
    "--trainer.gradient_checkpointing", "false", "--trainer.mixed_precision", "no", "--trainer.max_steps", "2",
    "--trainer.logging_steps", "1", "--trainer.use_cpu", "true", "--trainer.disable_tqdm", "true",
    "--optimizer.lr=1e-3",
]  # fmt: skip


def typed(config: dict, *overrides: str) -> dict:
    """The recipe of an original config, typed by its target fields as `convert-config` writes it."""
    conversion = convert_config(config, overrides)
    return migration.coerce_to_fields(conversion.recipe, conversion.subcommand)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def convert(tmp_path: Path, text: str, *overrides: str, name: str = "old.yaml") -> tuple[int, dict, str]:
    """Runs `neobert-hf convert-config`; returns the exit status, the written recipe and its path."""
    source = write(tmp_path, name, text)
    output = str(tmp_path / (Path(name).stem + ".recipe.yaml"))
    status = main(["convert-config", source, "-o", output, *overrides])
    recipe = yaml.safe_load(Path(output).read_text()) if Path(output).exists() else {}
    return status, recipe, output


# ---------------------------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("subcommand", migration.SUBCOMMANDS)
def test_every_target_is_a_field_of_its_subcommand(subcommand):
    # Field names are read from the subcommand's own parser: a field renamed elsewhere breaks this test, not users.
    fields = subcommand_fields(subcommand)
    targets = {(rule.old, new) for rule in RULES if subcommand in rule.where for new in rule.new}
    missing = sorted(f"{old} -> {new}" for old, new in targets if new not in fields)
    assert not missing, missing


def test_table_is_consistent():
    by_key = {}
    for rule in RULES:
        by_key.setdefault(rule.old, []).append(rule)
        assert rule.status == "refused" or rule.status == "structural" or rule.new or rule.alias_of or rule.convert
        if rule.status == "refused" or (rule.alias_of is None and not rule.new and not rule.structural):
            assert rule.note, f"{rule.old}: a key without an equivalent needs its reason"
        if rule.alias_of is not None:
            targets = rule.alias_of.values() if isinstance(rule.alias_of, dict) else [rule.alias_of]
            assert all(target in by_key or any(r.old == target for r in RULES) for target in targets), rule.old
    for key, rules in by_key.items():
        # One row per subcommand at most, so the converter never has to choose.
        seen = [s for rule in rules if rule.alias_of is None and not rule.structural for s in rule.where]
        assert len(seen) == len(set(seen)), key


@pytest.mark.skipif(not REFERENCE.exists(), reason="the original trainer's configuration reference is not here")
def test_every_key_of_the_original_reference_has_a_row():
    text = REFERENCE.read_text()
    before, rest = text.split("### MuonClip", 1)
    muon, after = rest.split("## Data Collator", 1)
    pattern = r"^\| (?:top-level )?`([A-Za-z_.*]+)`"
    keys = set(re.findall(pattern, before + after, flags=re.M))
    keys |= {f"optimizer.muon_config.{key}" for key in re.findall(pattern, muon, flags=re.M)}
    keys = {key.removesuffix(".*") for key in keys}
    assert len(keys) > 150
    known = {rule.old for rule in RULES} | set(migration.SECTIONS)
    assert sorted(keys - known) == []


def test_docs_are_generated_from_the_table(capsys):
    assert (ROOT / "docs" / "migrating.md").read_text() == migration.render_markdown(), (
        "docs/migrating.md is stale: python -m neobert_hf.migration --markdown > docs/migrating.md"
    )
    assert migration.main(["--markdown"]) == 0
    assert capsys.readouterr().out == migration.render_markdown()


# ---------------------------------------------------------------------------------------------------------------------
# One example per subcommand, converted and run
# ---------------------------------------------------------------------------------------------------------------------


def test_pretraining_preset_converts_and_trains(tmp_path, capsys):
    out = tmp_path / "run"
    status, recipe, path = convert(tmp_path, PRETRAINING, *TINY_OVERRIDES, "--trainer.output_dir", str(out))
    assert status == 0
    printed = capsys.readouterr().out
    # Every key of the file is in the printed table; the one without an equivalent says why.
    assert re.search(r"dataset\.num_workers\s+4\s+refused\s+pretraining reads data in the main process", printed)
    assert "warmup_steps: 0.01" in printed
    assert recipe["learning_rate"] == 1e-3 and recipe["warmup_steps"] == 0.01
    assert recipe["attn_implementation"] == "sdpa" and recipe["bf16"] is False
    # Absent keys took the original trainer's defaults where ours differ.
    assert recipe["mlm_probability"] == 0.15 and recipe["packing"] is False and recipe["weight_decay"] == 0.01
    assert recipe["max_grad_norm"] == 0.0 and recipe["final_lr_ratio"] == 0.1 and recipe["seed"] == 0
    assert f"neobert-hf pretrain --config {path}" in Path(path).read_text()
    status = main(["pretrain", "--config", path, "--report_to", "none", "--save_strategy", "no"])
    assert status == 0
    assert (out / "checkpoints" / "2" / "model.safetensors").exists()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_of_the_reference_converts_and_parses(preset, tmp_path):
    from neobert_hf.cli.pretrain import parse_args

    status, recipe, path = convert(tmp_path, PRESETS[preset])
    assert status == 0
    model_args, data_args, training_args, _ = parse_args(["--config", path, "--use_cpu", "true",
                                                          "--output_dir", str(tmp_path / "out")])
    assert training_args.learning_rate == recipe["learning_rate"]
    assert data_args.mlm_probability == 0.15 and model_args.hidden_size == recipe["hidden_size"]


def test_glue_config_converts_and_runs_a_step(tmp_path, shared):  # noqa: F811
    old = f"""\
    task: glue
    model:
      pretrained_checkpoint_dir: {shared["glue_model"]}    # legacy spelling of glue.pretrained_checkpoint_dir
    tokenizer:
      max_length: 32
    glue:
      task_name: sst2
      num_labels: 2
      max_seq_length: 32
      classifier_dropout: 0.1
      num_workers: 0
    trainer:
      per_device_train_batch_size: 4
      per_device_eval_batch_size: 8
      max_steps: 1
      output_dir: {tmp_path / "glue"}
      mixed_precision: "no"
      use_cpu: true
      early_stopping: 0
      report_to: []
    optimizer:
      name: adamw
      lr: 2e-5
      weight_decay: 0.01
      betas: [0.9, 0.999]
      eps: 1e-8
    scheduler:
      name: linear
      warmup_percent: 10
    wandb:
      enabled: false
    seed: 0
    """
    status, recipe, path = convert(tmp_path, old)
    assert status == 0
    assert recipe["model_name_or_path"] == shared["glue_model"] and recipe["task_name"] == "sst2"
    assert recipe["learning_rate"] == 2e-5 and recipe["adam_epsilon"] == 1e-8 and recipe["warmup_steps"] == 0.1
    assert recipe["report_to"] == "none" and recipe["optim"] == "adamw_torch"
    files = shared["glue_files"]
    status = main(["glue", "--config", path, "--train_file", files["train_file"],
                   "--validation_file", files["validation_file"], "--disable_tqdm", "true"])  # fmt: skip
    assert status == 0
    assert (tmp_path / "glue" / "glue_results.json").exists()


def test_contrastive_config_converts_and_runs_a_step(tmp_path, shared):  # noqa: F811
    old = f"""\
    task: contrastive
    contrastive:
      temperature: "0.05"
      pooling: avg
      loss_type: simcse
      hard_negative_weight: 0.0
      pretrained_checkpoint_dir: {shared["st_model"]}
    dataset:
      path: {shared["st_train"]}
      max_seq_length: 32
      pretraining_prob: 0.0      # legacy spelling of contrastive.pretraining_prob
    trainer:
      per_device_train_batch_size: 2
      max_steps: 1
      output_dir: {tmp_path / "st"}
      use_cpu: true
      mixed_precision: fp32
    optimizer:
      lr: 1e-4
    """
    status, recipe, path = convert(tmp_path, old)
    assert status == 0
    assert recipe["pooling"] == "mean" and recipe["loss_type"] == "infonce"
    # SimCSE's convention on both sides: the value is added to the hard negatives' logits, 0 = plain InfoNCE.
    assert recipe["hard_negative_weight"] == 0.0 and recipe["temperature"] == 0.05
    assert recipe["train_dataset"] == shared["st_train"] and recipe["model_name_or_path"] == shared["st_model"]
    status = main(["contrastive", "--config", path, "--report_to", "none", "--eval_strategy", "no"])
    assert status == 0
    assert any((tmp_path / "st" / "checkpoints").iterdir())


def test_mteb_config_converts_and_parses(tmp_path):
    old = """\
    task: mteb
    model:
      name: runs/contrastive/checkpoints/1000
    tokenizer:
      max_length: 256
    mteb_task_type: sts
    mteb_batch_size: "16"
    mteb_pooling: mean
    mteb_overwrite_results: true
    trainer:
      output_dir: mteb_out
    """
    status, recipe, path = convert(tmp_path, old)
    assert status == 0
    assert recipe == {"model": "runs/contrastive/checkpoints/1000", "max_seq_length": 256, "task_types": ["STS"],
                      "batch_size": 16, "pooling": "mean", "overwrite_results": True, "output_folder": "mteb_out"}
    from neobert_hf.cli.mteb import parse_args

    args = parse_args(["--config", path])
    assert args.task_types == ["STS"] and args.batch_size == 16 and args.max_seq_length == 256


@pytest.mark.integration
def test_a_converted_mteb_recipe_evaluates(tmp_path, shared, monkeypatch):
    """The converted recipe runs: offline, its registry task selection is swapped for a local STS task."""
    from neobert_hf.cli.main import main

    monkeypatch.chdir(tmp_path)
    old = """\
    task: mteb
    tokenizer:
      max_length: 32
    mteb_task_type: sts
    mteb_batch_size: "4"
    mteb_pooling: avg
    """
    status, recipe, path = convert(tmp_path, old)
    assert status == 0 and recipe["task_types"] == ["STS"]  # pooling avg is kept: the mteb command reads it as mean
    sts = ROOT / "tests" / "assets" / "sts.jsonl"
    argv = ["mteb", "--config", path, "--task_types", "none", "--model", shared["st_model"],
            "--local_tasks", f"tiny-sts={sts}", "--output_folder", str(tmp_path / "results")]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert summary["complete"] and "tiny-sts" in summary["tasks"]


# ---------------------------------------------------------------------------------------------------------------------
# Values, aliases, overrides, errors
# ---------------------------------------------------------------------------------------------------------------------


def test_numbers_read_as_strings_take_their_field_type(tmp_path):
    old = """\
    trainer: {max_steps: 1e3, per_device_train_batch_size: "8", save_total_limit: null}
    optimizer: {lr: 1e-4, eps: 1e-8, weight_decay: "0.1"}
    model: {norm_eps: 1e-5}
    datacollator: {mlm_probability: "0.3"}
    """
    status, recipe, path = convert(tmp_path, old)
    assert status == 0
    assert recipe["max_steps"] == 1000 and isinstance(recipe["max_steps"], int)
    assert recipe["per_device_train_batch_size"] == 8
    assert recipe["learning_rate"] == 1e-4 and isinstance(recipe["learning_rate"], float)
    assert recipe["adam_epsilon"] == 1e-8 and recipe["weight_decay"] == 0.1 and recipe["norm_eps"] == 1e-5
    assert recipe["mlm_probability"] == 0.3
    assert "save_total_limit" not in recipe  # null: no limit, neobert-hf's default


def test_legacy_aliases(tmp_path, capsys):
    old = """\
    mixed_precision: bf16
    model: {flash_attention: false, name_or_path: some/metadata}
    tokenizer: {tokenizer_name_or_path: my/tok}
    dataset: {path_to_disk: /data/tok, column: body}
    trainer: {learning_rate: 3e-4, seed: 7, max_ckpt: 2, dir: out, max_grad_norm: 0.5, warmup_steps: 100,
              run_name: r, train_batch_size: null, per_device_train_batch_size: 4}
    optimizer:
      hparams: {weight_decay: 0.05, betas: [0.9, 0.95]}
    wandb: {log_interval: 25}
    """
    status, recipe, _ = convert(tmp_path, old)
    assert status == 0
    assert recipe["bf16"] is True and recipe["attn_implementation"] == "sdpa"
    assert recipe["tokenizer_name"] == "my/tok" and recipe["dataset_name"] == "/data/tok"
    assert recipe["text_column"] == "body" and recipe["learning_rate"] == 3e-4 and recipe["seed"] == 7
    assert recipe["save_total_limit"] == 2 and recipe["output_dir"] == "out" and recipe["max_grad_norm"] == 0.5
    assert recipe["warmup_steps"] == 100 and recipe["run_name"] == "r" and recipe["per_device_train_batch_size"] == 4
    assert recipe["weight_decay"] == 0.05 and recipe["adam_beta2"] == 0.95 and recipe["logging_steps"] == 25
    printed = capsys.readouterr().out
    assert re.search(r"model\.name_or_path\s+some/metadata\s+refused\s+Metadata", printed)


def test_a_legacy_key_and_its_canonical_key_must_agree(tmp_path):
    old = "trainer: {learning_rate: 3e-4}\noptimizer: {lr: 1e-4}\n"
    with pytest.raises(MigrationError, match=r"trainer.learning_rate .* and optimizer.lr .* set the same value"):
        convert_config(yaml.safe_load(old))
    assert typed(yaml.safe_load("trainer: {learning_rate: 1e-4}\noptimizer: {lr: 1.0e-4}\n"))["learning_rate"] == 1e-4


def test_dotted_overrides(tmp_path):
    base = "trainer: {max_steps: 100}\noptimizer: {lr: 1e-4}\n"
    recipe = typed(yaml.safe_load(base), "--trainer.max_steps", "10", "--optimizer.lr=3e-4", "scheduler.warmup_steps=5",
                   "--optimizer.betas", "[0.9, 0.98]")
    assert recipe["max_steps"] == 10 and recipe["learning_rate"] == 3e-4
    assert recipe["warmup_steps"] == 5 and recipe["adam_beta2"] == 0.98
    with pytest.raises(MigrationError, match="trainer.max_stepz"):
        convert_config(yaml.safe_load(base), ["--trainer.max_stepz", "10"])
    with pytest.raises(MigrationError, match="has no value"):
        convert_config(yaml.safe_load(base), ["--trainer.max_steps"])


def test_unknown_key_is_an_error_and_nothing_is_written(tmp_path, capsys):
    status, recipe, output = convert(tmp_path, "trainer: {max_steps: 10, warmup_step: 5}\nfoo: 1\n")
    assert status == 2 and not Path(output).exists()
    err = capsys.readouterr().err
    assert "trainer.warmup_step" in err and "foo" in err and "Traceback" not in err


def test_existing_output_is_refused(tmp_path, capsys):
    source = write(tmp_path, "old.yaml", "trainer: {max_steps: 10}\n")
    output = tmp_path / "recipe.yaml"
    output.write_text("keep me\n")
    assert main(["convert-config", source, "-o", str(output)]) == 2
    assert output.read_text() == "keep me\n" and "--force" in capsys.readouterr().err
    assert main(["convert-config", source, "-o", str(output), "--force"]) == 0


def test_warmup_percent_is_a_fraction_of_the_schedule():
    def warmup(scheduler, max_steps=1000):
        config = {"trainer": {"max_steps": max_steps}, "scheduler": scheduler}
        return convert_config(config).recipe["warmup_steps"]

    assert warmup({"warmup_percent": 5}) == 0.05
    assert warmup({"warmup_percent": "2.5", "warmup_steps": 10_000}) == 0.025  # the percent wins, as it did
    # The original's base is total_steps, which becomes decay_steps: the fraction then applies to it here too.
    assert warmup({"warmup_percent": 10, "total_steps": 2000}) == 0.1
    # Here the two bases differ (the original's is total_steps, decay_steps ends the decay): a step count.
    assert warmup({"warmup_percent": 10, "total_steps": 2000, "decay_steps": 1500}) == 200
    assert warmup({"warmup_percent": 100}) == 1000
    with pytest.raises(MigrationError, match="warmup_percent"):
        warmup({"warmup_percent": 150})
    glue = {"task": "glue", "trainer": {"max_steps": 1000}, "scheduler": {"warmup_percent": 10, "total_steps": 2000}}
    assert convert_config(glue).recipe["warmup_steps"] == 200


def test_schedule_length():
    def recipe(scheduler, task="pretraining"):
        return convert_config({"task": task, "trainer": {"max_steps": 1000}, "scheduler": scheduler})

    assert recipe({"decay_steps": 800}).recipe["decay_steps"] == 800
    assert recipe({"decay_percent": 50, "decay_steps": 800, "total_steps": 4000}).recipe["decay_steps"] == 2000
    assert recipe({"total_steps": 3000}).recipe["decay_steps"] == 3000
    # GLUE and contrastive decay over max_steps: another length is reported, the same one writes nothing.
    (row,) = [row for row in recipe({"decay_steps": 800}, "glue").report if row.old == "scheduler.decay_steps"]
    assert row.outcome == "refused" and "step 800" in row.reason and "max_steps (1000)" in row.reason
    (row,) = [row for row in recipe({"decay_percent": 100}, "glue").report if row.old == "scheduler.decay_percent"]
    assert row.outcome == "dropped"


def test_final_lr_ratio_for_every_training_subcommand():
    # The original's GLUE and contrastive trainers build the same scheduler as its pretraining. As for every key,
    # only pretraining writes the original's defaults of absent keys.
    assert typed({"task": "pretraining"})["final_lr_ratio"] == 0.1
    for task in ("pretraining", "glue", "contrastive"):
        assert typed({"task": task, "scheduler": {"final_lr_ratio": 0.05}})["final_lr_ratio"] == 0.05
        assert typed({"task": task, "scheduler": {"name": "linear", "final_lr_ratio": 0}})["final_lr_ratio"] == 0.0


def test_muonclip_settings():
    config = {
        "optimizer": {"name": "muonclip", "lr": "2e-4", "muon_config": {
            "muon_beta": 0.9, "muon_decay": 0.01, "ns_steps": 6, "clipping_threshold": 40, "clipping_alpha": 0.4,
            "clipping_warmup_steps": 5, "clipping_interval": 2, "clipping_qk_chunk_size": 256,
            "norm_factor": "match_rms_adamw", "orthogonalization": "polar_express", "detect_anomalies": True,
            "nesterov": False}},
    }  # fmt: skip
    conversion = convert_config(config)
    recipe = migration.coerce_to_fields(conversion.recipe, "pretrain")
    assert recipe["optimizer"] == "muonclip" and recipe["muon_momentum"] == 0.9 and recipe["muon_ns_steps"] == 6
    assert recipe["qk_clip_threshold"] == 40.0 and recipe["qk_clip_interval"] == 2 and recipe["qk_clip_alpha"] == 0.4
    assert recipe["muon_weight_decay"] == 0.01 and recipe["muon_adjust_lr"] == "match_rms_adamw"
    assert recipe["muon_orthogonalization"] == "polar_express" and recipe["detect_anomalies"] is True
    refused = {row.old: row.reason for row in conversion.refused}
    assert "Nesterov" in refused["optimizer.muon_config.nesterov"]
    off = convert_config({"optimizer": {"name": "muonclip", "muon_config": {"enable_clipping": False,
                                                                             "clipping_threshold": 9}}})
    assert off.recipe["qk_clip_threshold"] is None


def test_clipping_layers_mapping_is_what_the_original_did_on_neobert_blocks():
    # The original reads q_proj/k_proj names only for blocks without a fused qkv; NeoBERT blocks always have one.
    mapping = {"q_proj": "packed_proj", "k_proj": "packed_proj"}
    conversion = convert_config({"optimizer": {"name": "muonclip", "muon_config": {"clipping_layers_mapping": mapping}}})
    assert "qk_clip_layers_mapping" not in conversion.recipe
    (row,) = [row for row in conversion.report if row.old == "optimizer.muon_config.clipping_layers_mapping"]
    assert row.outcome == "dropped" and "fused qkv" in row.reason and "never took effect" in row.reason
    # with another optimizer the setting is reported as having no effect
    adamw = convert_config({"optimizer": {"name": "adamw", "muon_config": {"clipping_layers_mapping": mapping}}})
    assert {row.old for row in adamw.refused} >= {"optimizer.muon_config.clipping_layers_mapping"}
    with pytest.raises(migration.MigrationError, match="clipping_layers_mapping must be a mapping"):
        convert_config({"optimizer": {"name": "muonclip", "muon_config": {"clipping_layers_mapping": "qkv"}}})


def test_wandb_keys():
    wandb = {"enabled": True, "project": "p", "entity": "e", "tags": ["a", "b"], "name": "run", "mode": "offline"}
    recipe = typed({"task": "pretraining", "wandb": wandb})
    assert recipe["report_to"] == "wandb" and recipe["run_name"] == "run" and recipe["wandb_project"] == "p"
    assert recipe["wandb_entity"] == "e" and recipe["wandb_tags"] == ["a", "b"] and recipe["wandb_mode"] == "offline"
    # GLUE and contrastive take the same wandb_* keys (WandbArguments).
    for task in ("glue", "contrastive"):
        recipe = typed({"task": task, "wandb": wandb})
        assert recipe["report_to"] == "wandb" and recipe["run_name"] == "run" and recipe["wandb_project"] == "p"
        assert recipe["wandb_tags"] == ["a", "b"] and recipe["wandb_mode"] == "offline"
    # Keys with no recipe field: the reason names the environment variable.
    conversion = convert_config({"task": "glue", "wandb": {**wandb, "resume": "allow"}})
    reasons = {row.old: row.reason for row in conversion.refused}
    assert "WANDB_RESUME=allow" in reasons["wandb.resume"]


def test_finetuning_knobs_convert():
    # contrastive: avg pooling, supcon, hard_negative_weight copied (SimCSE's convention on both sides)
    recipe = typed({"task": "contrastive", "contrastive": {"pooling": "avg", "loss_type": "supcon",
                                                          "hard_negative_weight": 0.5}})  # fmt: skip
    assert (recipe["pooling"], recipe["loss_type"], recipe["hard_negative_weight"]) == ("mean", "supcon", 0.5)
    # MTEB: all and a benchmark name
    assert typed({"task": "mteb", "mteb_task_type": "all"})["task_types"] == ["all"]
    assert typed({"task": "mteb", "mteb_task_type": "MTEB(eng, v2)"})["benchmark"] == "MTEB(eng, v2)"
    assert typed({"task": "mteb", "mteb_task_type": ["sts", "retrieval"]})["task_types"] == ["STS", "Retrieval"]
    # GLUE: allow_random_weights, with the config of the random model
    recipe = typed({"task": "glue", "glue": {"allow_random_weights": True, "pretrained_model_path": "cfg/config.json"}})
    assert recipe["allow_random_weights"] is True and recipe["config_name"] == "cfg/config.json"
    refused = {row.old: row.reason for row in convert_config(
        {"task": "glue", "glue": {"pretrained_model_path": "cfg"}}).refused}  # fmt: skip
    assert "only used with glue.allow_random_weights" in refused["glue.pretrained_model_path"]


@pytest.mark.parametrize("subcommand", ["pretrain", "glue", "contrastive", "mteb"])
def test_subcommand_refuses_an_original_config_with_the_convert_command(subcommand, tmp_path, capsys):
    source = write(tmp_path, "old.yaml", PRETRAINING)
    assert main([subcommand, "--config", source]) == 2
    err = capsys.readouterr().err
    expected = f"neobert-hf convert-config {source} -o {tmp_path / 'old.recipe.yaml'}"
    assert expected in err and f"neobert-hf {subcommand} --config {tmp_path / 'old.recipe.yaml'}" in err
    assert "Traceback" not in err and not (tmp_path / "old.recipe.yaml").exists()
    if subcommand == "pretrain":  # the command it names works
        assert main(expected.split()[1:]) == 0


def test_pretraining_knobs_of_the_original():
    recipe = typed({"optimizer": {"name": "adam"}, "trainer": {"log_weight_norms": True}})
    assert recipe["optimizer"] == "adam" and recipe["log_weight_norms"] is True
    conversion = convert_config({"task": "glue", "optimizer": {"name": "adam"}})
    assert "optim" not in conversion.recipe and conversion.refused[0].old == "optimizer.name"
