"""[`RULES`]: every key of the original trainer's format and what it becomes in each subcommand. The converter, the
table it prints and `docs/migrating.md` are generated from it.
"""

from __future__ import annotations

from .base import CONTRASTIVE, GLUE, MTEB, PRETRAIN, TRAINING, Rule
from .converters import (
    _attn_backend,
    _betas,
    _checkpoint_selector,
    _contrastive_checkpoint,
    _contrastive_loss,
    _dataset_name,
    _dataset_path,
    _debug,
    _detect_anomalies,
    _decay_end,
    _early_stopping,
    _enable_clipping,
    _enabled_section,
    _final_lr_ratio,
    _flag,
    _gradient_clipping,
    _hard_negative_weight,
    _in_section,
    _layers_mapping,
    _legacy_attention,
    _mixed_precision,
    _model_source,
    _mteb_task_type,
    _muon,
    _must_equal,
    _norm_factor,
    _optimizer_name,
    _orthogonalization,
    _polar_express,
    _pooling,
    _qk_clip,
    _random_init_config,
    _quartet_recipe,
    _report_to,
    _run_name,
    _save_model,
    _scheduler_name,
    _tf32,
    _tokenizer_name,
    _torchao_recipe,
    _wandb_env,
    _wandb_field,
    _warmup_percent,
    _warmup_steps,
    _with_workers,
    _workers,
)


P, G, C, M, T = (PRETRAIN,), (GLUE,), (CONTRASTIVE,), (MTEB,), TRAINING
CHECKPOINT_FIXED = "fixed by the checkpoint that is fine-tuned or evaluated (its config.json)"
R = Rule

RULES: tuple[Rule, ...] = (
    # --- top level ---
    R("task", structural=True, note="Chooses the subcommand: pretraining -> pretrain, glue, contrastive, mteb."),
    R("variables", structural=True, note="`$variables.x`, `${variables.x}` and `{$variables.x}` are resolved first."),
    R("seed", ("seed",), T, carry=0),
    R("debug", ("log_level",), T, _debug, "true: log_level debug."),
    R("mixed_precision", alias_of="trainer.mixed_precision"),
    R("use_deepspeed", note="FSDP2 and DDP are chosen by the `accelerate launch` config (recipes/accelerate/), "
      "not by the recipe; pretraining refuses DeepSpeed: ZeRO-2 is FSDP2 with fsdp_reshard_after_forward: false "
      "(docs/distributed.md)."),
    R("accelerate_config_file", note="Give it to `accelerate launch --config_file FILE neobert-hf ...`."),
    R("pretraining_metadata", note="Metadata only; checkpoints carry their own config.json."),
    R("config_path", note="Metadata only."),
    R("pretrained_checkpoint", ("checkpoint",), G, _checkpoint_selector, "`best`, `latest` or a step number."),
    R("pretrained_checkpoint", (), C, _contrastive_checkpoint,
      "`latest` is what a run folder given as model_name_or_path means; otherwise give the checkpoint folder."),
    R("pretrained_checkpoint", (), P + M, note="Give the checkpoint folder itself (model_name_or_path / model)."),
    R("mteb_task_type", ("task_types", "benchmark"), M, _mteb_task_type, "Task type names in mteb's spelling (STS, "
      "Retrieval, ...); `all` -> task_types [all] (every text task); any other name is taken as an MTEB benchmark "
      "(e.g. `MTEB(eng, v2)`), checked when the run starts."),
    R("mteb_batch_size", ("batch_size",), M),
    R("mteb_pooling", ("pooling",), M),
    R("mteb_overwrite_results", ("overwrite_results",), M),
    # --- model ---
    R("model.name", (), P, note="Metadata in the original's pretraining; to continue from weights set "
      "model_name_or_path."),
    R("model.name", ("model_name_or_path",), G + C, _model_source("model_name_or_path",
      "glue.pretrained_checkpoint_dir", "contrastive.pretrained_checkpoint_dir"),
      "The model to fine-tune, unless a pretrained_checkpoint_dir is given."),
    R("model.name", ("model",), M, _model_source("model"), "The model to evaluate."),
    R("model.name_or_path", alias_of="model.name"),
    R("model.hidden_size", ("hidden_size",), P, carry=768),
    R("model.num_hidden_layers", ("num_hidden_layers",), P, carry=12),
    R("model.num_attention_heads", ("num_attention_heads",), P, carry=12),
    R("model.intermediate_size", ("intermediate_size",), P, carry=3072,
      note="Same meaning: SwiGLU uses 8 * ceil(int(2 * I / 3) / 8)."),
    R("model.max_position_embeddings", ("max_position_embeddings",), P, carry=512),
    R("model.hidden_act", ("hidden_act",), P),
    R("model.rope", ("rope",), P),
    R("model.rms_norm", ("rms_norm",), P),
    R("model.norm_eps", ("norm_eps",), P),
    R("model.dropout_prob", ("dropout",), P + C, note="Attention probabilities and both residual branches."),
    R("model.embedding_init_range", ("embedding_init_range",), P),
    R("model.decoder_init_range", ("decoder_init_range",), P),
    R("model.classifier_init_range", ("classifier_init_range",), G),
    R("model.hidden_size", (), G + C + M, note=CHECKPOINT_FIXED),
    R("model.num_hidden_layers", (), G + C + M, note=CHECKPOINT_FIXED),
    R("model.num_attention_heads", (), G + C + M, note=CHECKPOINT_FIXED),
    R("model.intermediate_size", (), G + C + M, note=CHECKPOINT_FIXED),
    R("model.max_position_embeddings", (), G + C + M, note=CHECKPOINT_FIXED),
    R("model.hidden_act", (), G + C + M, note=CHECKPOINT_FIXED),
    R("model.rope", (), G + C + M, note=CHECKPOINT_FIXED),
    R("model.rms_norm", (), G + C + M, note=CHECKPOINT_FIXED),
    R("model.norm_eps", (), G + C + M, note=CHECKPOINT_FIXED),
    R("model.dropout_prob", (), G + M, note="GLUE sets classifier_dropout only; the encoder keeps its config."),
    R("model.embedding_init_range", (), G + C + M, note="Initialization applies to new models (pretraining) only."),
    R("model.decoder_init_range", (), G + C + M, note="Initialization applies to new models (pretraining) only."),
    R("model.classifier_init_range", (), P + C + M, note="There is no classifier head here."),
    R("model.vocab_size", note="Set from the tokenizer, padded to pad_vocab_to_multiple_of (the original synced it "
      "from the tokenizer too)."),
    R("model.pad_token_id", note="Taken from the tokenizer (the original synced it too)."),
    R("model.attn_backend", ("attn_implementation",), P + G, _attn_backend,
      "sdpa -> sdpa; flash_attn_varlen -> flash_attention_2 (packed batches run varlen kernels)."),
    R("model.attn_backend", (), C + M, note="sentence-transformers loads the model with its default attention."),
    R("model.flash_attention", alias_of="model.attn_backend", convert=_legacy_attention,
      note="true -> flash_attention_2, false -> sdpa."),
    R("model.use_flash_attention", alias_of="model.attn_backend", convert=_legacy_attention,
      note="true -> flash_attention_2, false -> sdpa."),
    R("model.xformers_attention", alias_of="model.attn_backend", convert=_legacy_attention,
      note="true -> flash_attention_2, false -> sdpa."),
    R("model.kernel_backend", ("kernel_backend",), P, note="auto, liger or torch."),
    R("model.kernel_backend", (), G + C + M, note="Kernels are chosen for pretraining only."),
    R("model.ngpt", note="nGPT (normalized transformer) is not supported."),
    R("model.base_scale", note="nGPT only; nGPT is not supported."),
    R("model.from_hub", note="model_name_or_path takes a folder or a Hub id alike."),
    R("model.pretrained_config_path", alias_of="glue.pretrained_model_path"),
    R("model.pretrained_checkpoint_dir",
      alias_of={CONTRASTIVE: "contrastive.pretrained_checkpoint_dir", "*": "glue.pretrained_checkpoint_dir"}),
    R("model.pretrained_checkpoint",
      alias_of={CONTRASTIVE: "contrastive.pretrained_checkpoint", "*": "glue.pretrained_checkpoint"}),
    R("model.allow_random_weights",
      alias_of={CONTRASTIVE: "contrastive.allow_random_weights", "*": "glue.allow_random_weights"}),
    R("model.classifier_dropout", alias_of="glue.classifier_dropout"),
    R("model.transfer_from_task", alias_of="glue.transfer_from_task"),
    # --- tokenizer ---
    R("tokenizer.name", ("tokenizer_name",), P + G, _tokenizer_name("tokenizer_name"),
      "tokenizer.path wins when both are set.", carry="bert-base-uncased"),
    R("tokenizer.name", ("tokenizer_name_or_path",), C + M, _tokenizer_name("tokenizer_name_or_path"),
      "tokenizer.path wins when both are set."),
    R("tokenizer.path", ("tokenizer_name",), P + G),
    R("tokenizer.path", ("tokenizer_name_or_path",), C + M),
    R("tokenizer.tokenizer_name_or_path", alias_of="tokenizer.name"),
    R("tokenizer.max_length", (), P + C, note="Sequences are cut at max_seq_length (dataset.max_seq_length), to "
      "which the original synced this key."),
    R("tokenizer.max_length", (), G, note="Sequences are cut at max_seq_length (glue.max_seq_length), to which the "
      "original synced this key."),
    R("tokenizer.max_length", ("max_seq_length",), M),
    R("tokenizer.padding", note="Batches are packed or padded per batch (to pad_to_multiple_of); padding every "
      "sequence to max_length has no use."),
    R("tokenizer.truncation", note="Always on: sequences longer than max_seq_length are cut (pretraining splits "
      "documents into max_seq_length pieces)."),
    R("tokenizer.vocab_size", note="Set from the tokenizer (the original synced it too)."),
    R("tokenizer.trust_remote_code", note="Tokenizers are loaded without remote code."),
    R("tokenizer.revision", note="Give a local folder (or a Hub id at its default revision)."),
    R("tokenizer.allow_special_token_rewrite", note="Special tokens are never rewritten; "
      "add_missing_special_tokens (pretraining) adds missing [PAD]/[MASK] tokens."),
    # --- dataset ---
    R("dataset.name", ("dataset_name",), P, _dataset_name("dataset_name"), "dataset.path wins when both are set."),
    R("dataset.name", ("train_dataset",), C, _dataset_name("train_dataset"), "dataset.path wins when both are set."),
    R("dataset.name", (), G, note="GLUE data comes from dataset_name (nyu-mll/glue by default) or "
      "train_file/validation_file."),
    R("dataset.path", ("dataset_name",), P, _dataset_path("dataset_name"),
      "A save_to_disk folder (or any local data) is read by dataset_name."),
    R("dataset.path", ("train_dataset",), C, _dataset_path("train_dataset")),
    R("dataset.path", (), G, note="Give local GLUE files as train_file/validation_file."),
    R("dataset.path_to_disk", alias_of="dataset.path"),
    R("dataset.tokenizer_name", alias_of="tokenizer.name"),
    R("dataset.config", ("dataset_config_name",), P),
    R("dataset.config", ("train_dataset_config",), C),
    R("dataset.streaming", ("streaming",), P, note="Not carried when absent (the original streamed by default): "
      "local and preprocessed data load faster as map-style datasets. Resuming a stream is exact here (the original "
      "refused it)."),
    R("dataset.max_seq_length", ("max_seq_length",), P + C),
    R("dataset.text_column", ("text_column",), P),
    R("dataset.column", alias_of="dataset.text_column"),
    R("dataset.train_split", ("train_split",), P + C),
    R("dataset.eval_split", ("eval_split",), P + C),
    R("dataset.validation_split", ("eval_fraction",), P, note="A fraction of train held out (map-style data)."),
    R("dataset.eval_samples", ("eval_samples",), P),
    R("dataset.num_workers", ("dataloader_num_workers",), P + C, _workers),
    R("dataset.pin_memory", ("dataloader_pin_memory",), T),
    R("dataset.persistent_workers", ("dataloader_persistent_workers",), P + C,
      _with_workers("dataloader_persistent_workers"), "Only with DataLoader workers."),
    R("dataset.prefetch_factor", ("dataloader_prefetch_factor",), P + C, _with_workers("dataloader_prefetch_factor"),
      "Only with DataLoader workers."),
    R("dataset.num_proc", ("preprocessing_num_workers",), P, note="Processes that tokenize map-style data."),
    R("dataset.shuffle_buffer_size", ("shuffle_buffer_size",), P),
    R("dataset.cache_dir", ("cache_dir",), P),
    R("dataset.pre_tokenize", note="Run `neobert-hf preprocess` first and give its folder as dataset_name."),
    R("dataset.pre_tokenize_output", note="The output_dir of `neobert-hf preprocess`."),
    R("dataset.trust_remote_code", note="Dataset loading scripts are not run."),
    R("dataset.load_all_from_disk", note="Local data is memory-mapped by `datasets`."),
    R("dataset.force_redownload", note="Use `datasets`' cache tools (or delete the cache folder)."),
    R("dataset.min_length", note="No length filter; filter the data beforehand."),
    R("dataset.alpha", note="No dataset mixing weights; mix the data beforehand."),
    R("dataset.pretraining_prob", alias_of="contrastive.pretraining_prob"),
    R("dataset.streaming_read_retries", note="`datasets` retries streamed reads itself (HF_DATASETS_* settings)."),
    R("dataset.streaming_read_retry_backoff_seconds", note="`datasets` retries streamed reads itself."),
    R("dataset.streaming_read_retry_max_backoff_seconds", note="`datasets` retries streamed reads itself."),
    R("dataset.num_workers", (), G + M, note="GLUE: glue.num_workers; MTEB reads no training data."),
    R("dataset.num_proc", (), G + C + M, note="GLUE: glue.preprocessing_num_proc."),
    # --- trainer ---
    R("trainer.per_device_train_batch_size", ("per_device_train_batch_size",), T, carry=16,
      note="Pretraining: sequences per microbatch, or set tokens_per_batch for token-budget batches."),
    R("trainer.per_device_eval_batch_size", ("per_device_eval_batch_size",), T, carry=32),
    R("trainer.train_batch_size", alias_of="trainer.per_device_train_batch_size"),
    R("trainer.eval_batch_size", alias_of="trainer.per_device_eval_batch_size"),
    R("trainer.gradient_accumulation_steps", ("gradient_accumulation_steps",), T),
    R("trainer.max_steps", ("max_steps",), T, carry=1_000_000),
    R("trainer.num_train_epochs", ("num_train_epochs",), T),
    R("trainer.save_steps", ("save_steps",), T, carry=10_000),
    R("trainer.eval_steps", ("eval_steps",), T, carry=10_000),
    R("trainer.logging_steps", ("logging_steps",), T, carry=100),
    R("trainer.output_dir", ("output_dir",), T, carry="./output", note="Checkpoints go to "
      "<output_dir>/checkpoints/<step>/ (model, tokenizer and training state in one folder)."),
    R("trainer.output_dir", ("output_folder",), M),
    R("trainer.dir", alias_of="trainer.output_dir"),
    R("trainer.mixed_precision", ("bf16",), T, _mixed_precision, "bf16 -> bf16: true; no / fp32 -> bf16: false.",
      carry="bf16"),
    R("trainer.bf16", alias_of="trainer.mixed_precision", note="true -> bf16, false -> no."),
    R("trainer.gradient_checkpointing", ("activation_checkpointing",), T, note="transformers 5 name."),
    R("trainer.gradient_clipping", ("max_grad_norm",), T, _gradient_clipping,
      "null (no clipping, the original's default) -> 0.0; transformers would clip at 1.0.", carry=None),
    R("trainer.max_grad_norm", alias_of="trainer.gradient_clipping"),
    R("trainer.torch_compile", ("torch_compile",), T),
    R("trainer.torch_compile_backend", ("torch_compile_backend",), T),
    R("trainer.torch_compile_dynamic", note="transformers compiles with torch's default dynamic-shape handling; "
      "torch_compile_mode sets the mode."),
    R("trainer.enforce_full_packed_batches", note="Packed batches are always filled to their token budget "
      "(tokens_per_batch)."),
    R("trainer.eval_max_batches", ("eval_max_batches",), P),
    R("trainer.log_train_accuracy", ("log_train_accuracy",), P),
    R("trainer.log_grad_norm", note="transformers logs grad_norm at every logging step."),
    R("trainer.log_weight_norms", ("log_weight_norms",), P),
    R("trainer.log_weight_norms", (), G + C, note="Pretraining only."),
    R("trainer.tf32", ("tf32",), T, _tf32, "false -> tf32: false; true has no portable equivalent (see the printed "
      "reason)."),
    R("trainer.masked_logits_only_loss", ("masked_logits_only_loss",), P),
    R("trainer.resume_from_checkpoint", ("resume_from_checkpoint",), T, note="`latest` or a checkpoint folder."),
    R("trainer.overwrite_output_dir", ("overwrite_output_dir",), P, note="Not carried over when absent: here it "
      "deletes the earlier run's checkpoints when training begins."),
    R("trainer.overwrite_output_dir", (), G + C, note="An output folder with checkpoints is refused; use another "
      "output_dir or resume_from_checkpoint."),
    R("trainer.eval_strategy", ("eval_strategy",), T, note="Not carried when absent: the original evaluated every "
      "eval_steps only when it found eval data; set eval_strategy: steps with an eval split."),
    R("trainer.save_strategy", ("save_strategy",), T),
    R("trainer.save_total_limit", ("save_total_limit",), T, carry=3),
    R("trainer.max_ckpt", alias_of="trainer.save_total_limit"),
    R("trainer.disable_tqdm", ("disable_tqdm",), T),
    R("trainer.dataloader_num_workers", alias_of="dataset.num_workers"),
    R("trainer.use_cpu", ("use_cpu",), T),
    R("trainer.report_to", note="Ignored by the original too; wandb.enabled decides (-> report_to)."),
    R("trainer.early_stopping", ("early_stopping_patience",), G, _early_stopping, "0 (off) writes nothing."),
    R("trainer.early_stopping", (), P + C, note="Reserved (unused) in the original."),
    R("trainer.metric_for_best_model", ("metric_for_best_model",), G + C),
    R("trainer.greater_is_better", ("greater_is_better",), G + C),
    R("trainer.load_best_model_at_end", ("load_best_model_at_end",), G + C),
    R("trainer.metric_for_best_model", (), P, note="Reserved (unused) in the original's pretraining."),
    R("trainer.greater_is_better", (), P, note="Reserved (unused) in the original's pretraining."),
    R("trainer.load_best_model_at_end", (), P, note="Reserved (unused) in the original's pretraining."),
    R("trainer.save_model", ("save_final_checkpoint",), P, _save_model),
    R("trainer.save_model", (), G + C, note="The final checkpoint is always written."),
    R("trainer.seed", alias_of="seed"),
    R("trainer.run_name", alias_of="wandb.name"),
    R("trainer.learning_rate", alias_of="optimizer.lr"),
    R("trainer.warmup_steps", alias_of="scheduler.warmup_steps"),
    R("trainer.remove_unused_columns", note="Ignored by the original too."),
    # --- scheduler ---
    R("scheduler.name", ("lr_scheduler_type",), T, _scheduler_name, "constant -> constant_with_warmup.",
      carry="cosine"),
    R("scheduler.warmup_steps", ("warmup_steps",), T, _warmup_steps, "scheduler.warmup_percent wins when both are "
      "set.", carry=10_000),
    R("scheduler.warmup_percent", ("warmup_steps",), T, _warmup_percent,
      "A percent of the schedule (scheduler.total_steps, else max_steps) -> warmup_steps as a fraction (1.0 % -> "
      "0.01; below 1 transformers reads a fraction of the schedule: decay_steps when set, else max_steps), or a "
      "step count when the two bases differ."),
    R("scheduler.decay_percent", ("decay_steps",), P, _decay_end("decay_percent"),
      "A percent of scheduler.total_steps (else max_steps) -> decay_steps. Wins over decay_steps, as it did."),
    R("scheduler.decay_steps", ("decay_steps",), P, _decay_end("decay_steps"),
      "Where the decay ends; the final rate is held after it."),
    R("scheduler.total_steps", ("decay_steps",), P, _decay_end("total_steps"),
      "The schedule's length, when neither decay key is given."),
    R("scheduler.decay_percent", (), G + C, _decay_end("decay_percent"),
      "Decay ends at max_steps: nothing to write when it is 100 % of max_steps, otherwise no equivalent."),
    R("scheduler.decay_steps", (), G + C, _decay_end("decay_steps"),
      "Decay ends at max_steps: nothing to write when it equals max_steps, otherwise no equivalent."),
    R("scheduler.total_steps", (), G + C, _decay_end("total_steps"),
      "The schedule spans max_steps: nothing to write when it equals max_steps, otherwise no equivalent."),
    R("scheduler.final_lr_ratio", ("final_lr_ratio",), T, _final_lr_ratio,
      "Decay to learning_rate * final_lr_ratio (cosine or linear), then hold it (GLUE and contrastive too: the "
      "original builds one scheduler for every task).", carry=0.1),
    R("scheduler.num_cycles", note="Ignored by the original too."),
    # --- optimizer ---
    R("optimizer.name", ("optimizer",), P, _optimizer_name, "adamw, adam (coupled L2 decay) or muonclip."),
    R("optimizer.name", ("optim",), G + C, _optimizer_name, "adamw -> optim adamw_torch; adam and muonclip have no "
      "equivalent."),
    R("optimizer.lr", ("learning_rate",), T, carry=1e-4),
    R("optimizer.weight_decay", ("weight_decay",), T, carry=0.01),
    R("optimizer.betas", ("adam_beta1", "adam_beta2"), T, _betas, "[b1, b2] -> adam_beta1, adam_beta2."),
    R("optimizer.eps", ("adam_epsilon",), T),
    R("optimizer.hparams", structural=True, note="Legacy block: its keys are read as optimizer.* keys."),
    R("optimizer.muon_config.muon_beta", ("muon_momentum",), P, _muon("muon_momentum")),
    R("optimizer.muon_config.nesterov", (), P, _must_equal(True, "torch.optim.Muon here always uses Nesterov "
      "momentum", _flag), "true is what neobert-hf does; false has no equivalent."),
    R("optimizer.muon_config.muon_decay", ("muon_weight_decay",), P, _muon("muon_weight_decay")),
    R("optimizer.muon_config.ns_steps", ("muon_ns_steps",), P, _muon("muon_ns_steps")),
    R("optimizer.muon_config.enable_clipping", ("qk_clip_threshold",), P, _enable_clipping,
      "false -> qk_clip_threshold: null (QK-clip off)."),
    R("optimizer.muon_config.clipping_threshold", ("qk_clip_threshold",), P, _qk_clip("qk_clip_threshold")),
    R("optimizer.muon_config.clipping_alpha", ("qk_clip_alpha",), P, _qk_clip("qk_clip_alpha")),
    R("optimizer.muon_config.clipping_warmup_steps", ("qk_clip_warmup_steps",), P, _qk_clip("qk_clip_warmup_steps")),
    R("optimizer.muon_config.clipping_interval", ("qk_clip_interval",), P, _qk_clip("qk_clip_interval")),
    R("optimizer.muon_config.clipping_qk_chunk_size", ("qk_clip_chunk_size",), P, _qk_clip("qk_clip_chunk_size")),
    R("optimizer.muon_config.capture_last_microbatch_only", note="QK-clip reads the attention logits of the "
      "optimizer step's microbatches as neobert-hf captures them; no option."),
    R("optimizer.muon_config.detect_anomalies", ("detect_anomalies",), P, _detect_anomalies,
      "Non-finite gradients are named and the update skipped."),
    R("optimizer.muon_config.orthogonalization", ("muon_orthogonalization",), P, _orthogonalization,
      "polar_express or newton_schulz."),
    R("optimizer.muon_config.algorithm", alias_of="optimizer.muon_config.orthogonalization"),
    R("optimizer.muon_config.polar_express", ("muon_orthogonalization",), P, _polar_express,
      "true -> polar_express, false -> newton_schulz; orthogonalization wins when both are set."),
    R("optimizer.muon_config.norm_factor", ("muon_adjust_lr",), P, _norm_factor,
      "match_rms_adamw -> match_rms_adamw; muon_reference/original -> original; neobert and spectral have no "
      "equivalent."),
    R("optimizer.muon_config.param_policy", (), P, _must_equal("hidden_2d", "Muon updates the encoder blocks' 2-D "
      "matrices only", lambda v: {"transformer_only": "hidden_2d"}.get(str(v).lower(), str(v).lower())),
      "hidden_2d is what neobert-hf does; all_2d has no equivalent."),
    R("optimizer.muon_config.clipping_layers_mapping", ("qk_clip_layers_mapping",), P, _layers_mapping,
      "The original reads these q_proj/k_proj names only for encoder blocks without a fused qkv projection; every "
      "NeoBERT block has one, so the mapping never took effect and nothing is written. For a model whose blocks or "
      "fused projection have other names, set qk_clip_layers_mapping ({blocks, qkv})."),
    # --- data collator ---
    R("datacollator.mlm_probability", ("mlm_probability",), P, carry=0.15),
    R("datacollator.mask_all", ("mask_all",), P),
    R("datacollator.pack_sequences", ("packing",), P, carry=False),
    R("datacollator.max_length", (), P, note="Packed rows are max_seq_length tokens; the batch's token budget is "
      "tokens_per_batch."),
    R("datacollator.pad_to_multiple_of", ("pad_to_multiple_of",), P),
    # --- W&B ---
    R("wandb.enabled", ("report_to",), T, _report_to, "true -> report_to: wandb, false -> none."),
    R("wandb.name", ("run_name",), T, _run_name),
    R("wandb.project", ("wandb_project",), T, _wandb_field("project")),
    R("wandb.entity", ("wandb_entity",), T, _wandb_field("entity")),
    R("wandb.tags", ("wandb_tags",), T, _wandb_field("tags")),
    R("wandb.mode", ("wandb_mode",), T, _wandb_field("mode")),
    R("wandb.dir", ("wandb_dir",), T, _wandb_field("dir")),
    R("wandb.resume", (), T, _wandb_env("resume"), "No recipe key: export WANDB_RESUME."),
    R("wandb.watch", (), T, _wandb_env("watch"), "No recipe key: export WANDB_WATCH."),
    R("wandb.log_interval", alias_of="trainer.logging_steps"),
    # --- GLUE ---
    R("glue.task_name", ("task_name",), G),
    R("glue.num_labels", ("num_labels",), G),
    R("glue.max_seq_length", ("max_seq_length",), G),
    R("glue.pretrained_model_path", ("config_name",), G, _random_init_config, "With glue.allow_random_weights: the "
      "config of the randomly initialised model (config_name). Otherwise the model's config comes with its "
      "checkpoint: give the checkpoint or run folder as model_name_or_path (glue.pretrained_checkpoint_dir)."),
    R("glue.pretrained_checkpoint_dir", ("model_name_or_path",), G, note="A run folder; `checkpoint` picks the step."),
    R("glue.pretrained_checkpoint", ("checkpoint",), G, _checkpoint_selector),
    R("glue.allow_random_weights", ("allow_random_weights",), G, note="Fine-tune a randomly initialised model on "
      "purpose, shaped by config_name (glue.pretrained_model_path) or the model folder's config.json; needs a tokenizer "
      "(tokenizer.name)."),
    R("glue.classifier_dropout", ("classifier_dropout",), G),
    R("glue.classifier_init_range", ("classifier_init_range",), G),
    R("glue.transfer_from_task", ("transfer_head",), G),
    R("glue.num_workers", ("dataloader_num_workers",), G),
    R("glue.preprocessing_num_proc", ("preprocessing_num_workers",), G),
    # --- contrastive ---
    R("contrastive.temperature", ("temperature",), C),
    R("contrastive.pooling", ("pooling",), C, _pooling, "avg -> mean (`avg` is also accepted and stored as mean); "
      "cls and max unchanged."),
    R("contrastive.loss_type", ("loss_type",), C, _contrastive_loss, "simcse -> infonce; supcon -> supcon (supervised "
      "contrastive loss on anchor + label columns: same-label examples of a batch are positives)."),
    R("contrastive.hard_negative_weight", ("hard_negative_weight",), C, _hard_negative_weight,
      "Same meaning (SimCSE's): the value is added to the logits of each anchor's own hard negatives, a log-space "
      "weight; 0 = weighted like in-batch negatives (plain InfoNCE)."),
    R("contrastive.pretraining_prob", ("pretraining_prob",), C,
      note="Share of unsupervised SimCSE batches (text from simcse_dataset, default: the training pairs' texts)."),
    R("contrastive.pretrained_checkpoint_dir", ("model_name_or_path",), C,
      note="A run folder (its latest checkpoint) or a checkpoint folder."),
    R("contrastive.pretrained_checkpoint", (), C, _contrastive_checkpoint,
      "`latest` matches a run folder; another step: give that checkpoint folder as model_name_or_path."),
    R("contrastive.allow_random_weights", note="Not available: training starts from a pretrained checkpoint."),
    # --- low precision (pretraining) ---
    R("torchao.enable", ("precision_backend",), P, _enabled_section("torchao", "torchao"),
      "true -> precision_backend: torchao."),
    R("torchao.recipe", ("torchao_recipe",), P, _in_section("torchao", "torchao_recipe", _torchao_recipe),
      "float8_<x> -> <x> (tensorwise, rowwise, rowwise_with_gw_hp); MX and QAT names unchanged."),
    R("torchao.filter_fqns", ("filter_fqns",), P, _in_section("torchao", "filter_fqns")),
    R("torchao.skip_first_last_linear", ("skip_first_last_linear",), P,
      _in_section("torchao", "skip_first_last_linear")),
    R("torchao.require_compile", ("require_compile",), P, _in_section("torchao", "require_compile")),
    R("torchao.auto_filter_small_kn", ("auto_filter_small_kn",), P, _in_section("torchao", "auto_filter_small_kn")),
    R("torchao.enable_fsdp_float8_all_gather", ("enable_fsdp_float8_all_gather",), P,
      _in_section("torchao", "enable_fsdp_float8_all_gather")),
    R("torchao.precompute_float8_dynamic_scale_for_fsdp", ("precompute_float8_dynamic_scale_for_fsdp",), P,
      _in_section("torchao", "precompute_float8_dynamic_scale_for_fsdp")),
    R("transformer_engine.enable", ("precision_backend",), P,
      _enabled_section("transformer_engine", "transformer_engine"), "true -> precision_backend: transformer_engine."),
    R("transformer_engine.recipe", ("te_recipe",), P, _in_section("transformer_engine", "te_recipe")),
    R("transformer_engine.fp8_format", ("fp8_format",), P, _in_section("transformer_engine", "fp8_format")),
    R("transformer_engine.filter_fqns", ("filter_fqns",), P, _in_section("transformer_engine", "filter_fqns")),
    R("transformer_engine.skip_first_last_linear", ("skip_first_last_linear",), P,
      _in_section("transformer_engine", "skip_first_last_linear")),
    R("transformer_engine.require_compile", ("require_compile",), P,
      _in_section("transformer_engine", "require_compile")),
    R("transformer_engine.disable_2d_quantization", ("disable_2d_quantization",), P,
      _in_section("transformer_engine", "disable_2d_quantization")),
    R("transformer_engine.disable_rht", ("disable_rht",), P, _in_section("transformer_engine", "disable_rht")),
    R("transformer_engine.disable_stochastic_rounding", ("disable_stochastic_rounding",), P,
      _in_section("transformer_engine", "disable_stochastic_rounding")),
    R("quartet2.enable", ("precision_backend",), P, _enabled_section("quartet2", "quartet2"),
      "true -> precision_backend: quartet2."),
    R("quartet2.recipe", (), P, _quartet_recipe, "quartet_ii is the only recipe."),
    R("quartet2.filter_fqns", ("filter_fqns",), P, _in_section("quartet2", "filter_fqns")),
    R("quartet2.skip_first_last_linear", ("skip_first_last_linear",), P,
      _in_section("quartet2", "skip_first_last_linear")),
    R("quartet2.require_compile", ("require_compile",), P, _in_section("quartet2", "require_compile")),
    R("quartet2.required_dim_multiple", ("quartet_required_dim_multiple",), P,
      _in_section("quartet2", "quartet_required_dim_multiple")),
    R("quartet2.four_over_six", ("quartet_four_over_six",), P, _in_section("quartet2", "quartet_four_over_six")),
)
del R

_PRECISION_SECTIONS = ("torchao", "transformer_engine", "quartet2")
_TASK_SECTIONS = {"glue": GLUE, "contrastive": CONTRASTIVE}


def _rules_by_key() -> dict[str, list[Rule]]:
    table: dict[str, list[Rule]] = {}
    for rule in RULES:
        table.setdefault(rule.old, []).append(rule)
    return table


def _rule_for(key: str, subcommand: str) -> Rule | None:
    """The row of `key` that applies to `subcommand`; None when the key is in the table for other subcommands only."""
    for rule in _rules_by_key().get(key, ()):
        if rule.alias_of is not None or rule.structural or subcommand in rule.where:
            return rule
    return None


def _default_reason(key: str, subcommand: str) -> str:
    section = key.split(".", 1)[0]
    owners = sorted({s for rule in _rules_by_key().get(key, ()) for s in rule.where if rule.new})
    if section in _TASK_SECTIONS or section in _PRECISION_SECTIONS:
        return f"the {section} section has no effect in `neobert-hf {subcommand}`"
    if owners:
        return f"used by `neobert-hf {', '.join(owners)}`, not by `neobert-hf {subcommand}`"
    return f"no equivalent in `neobert-hf {subcommand}`"
