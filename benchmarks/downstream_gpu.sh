#!/usr/bin/env bash
# The downstream benchmark (does pretraining pay off?) at a scale that needs a GPU, in one command:
#
#   bash benchmarks/downstream_gpu.sh                 # on a CUDA machine, from the repository root
#   DEVICE=cpu SMOKE=1 bash benchmarks/downstream_gpu.sh   # a few-minute check of the whole chain on CPU
#
# 1. builds the offline corpora (Debian packages; INSTALL=1 lets it apt-get what is missing),
# 2. pretrains an 8 x 512 NeoBERT (about 30M parameters with the 8,192-entry tokenizer of data/tokenizer) with
#    `neobert-hf pretrain` on the `long` and `short` corpora together (about 14M tokens; no text of the downstream
#    tasks is in them), saving a checkpoint halfway and at the end,
# 3. runs benchmarks/bench_downstream.py on both checkpoints against a random init of the same config: topic
#    classification at 250, 1,000 and all 6,445 training examples, three fine-tuning learning rates, five seeds,
#    mean pooling for both inits (POOLING=cls for the [CLS] token, which MLM pretraining never trains),
#    and contrastive embeddings (MultipleNegativesRankingLoss on GCIDE headword -> definition pairs, retrieval of
#    held-out headwords) at three learning rates.
#
# Everything is written under OUT (default runs/downstream-gpu): the pretraining run, downstream.json and
# downstream.md (the tables). Every knob below can be set from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=${DEVICE:-cuda}
CORPORA=${CORPORA:-$HOME/.cache/neobert_hf_bench/corpora}
OUT=${OUT:-runs/downstream-gpu}
HIDDEN=${HIDDEN:-512}
LAYERS=${LAYERS:-8}
HEADS=${HEADS:-8}
INTERMEDIATE=${INTERMEDIATE:-2048}
SEQ=${SEQ:-512}
TOKENS_PER_BATCH=${TOKENS_PER_BATCH:-32768}
STEPS=${STEPS:-10000}
LR=${LR:-1e-3}
SIZES=${SIZES:-250 1000 6445}
FT_LRS=${FT_LRS:-1e-4 3e-4 1e-3}
SEEDS=${SEEDS:-0 1 2 3 4}
CONTRASTIVE_LRS=${CONTRASTIVE_LRS:-1e-4 3e-4 1e-3}
CONTRASTIVE_STEPS=${CONTRASTIVE_STEPS:-1000}

if [[ "${SMOKE:-0}" == 1 ]]; then  # the whole chain, tiny: checks the script, not the question
  HIDDEN=64 LAYERS=2 HEADS=2 INTERMEDIATE=256 SEQ=128 TOKENS_PER_BATCH=1024 STEPS=20
  SIZES="50" FT_LRS="1e-3" SEEDS="0" CONTRASTIVE_LRS="1e-3" CONTRASTIVE_STEPS=5
  EXTRA_DOWNSTREAM=(--max-eval 100 --max-pairs 500 --max-queries 100 --max-corpus 500 --target-examples 100)
else
  EXTRA_DOWNSTREAM=()
fi

if [[ "$DEVICE" == cuda* ]]; then
  python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'DEVICE=$DEVICE but torch sees no CUDA device; use DEVICE=cpu SMOKE=1 for a CPU check')"
  DEVICE_ARGS=(--use_cpu false --bf16 true)
  DOWNSTREAM_DEVICE=(--device "$DEVICE" --bf16)
else
  DEVICE_ARGS=(--use_cpu true)
  DOWNSTREAM_DEVICE=(--device cpu)
fi

if [[ ! -f "$CORPORA/summary.json" ]]; then
  python benchmarks/corpora/build_corpora.py --out "$CORPORA" ${INSTALL:+--install}
fi

# One pretraining corpus from `long` and `short` (gzip members concatenate into one valid gzip file).
MIXED="$OUT/corpus"
if [[ ! -f "$MIXED/validation.jsonl.gz" ]]; then
  mkdir -p "$MIXED.tmp"
  for split in train validation; do
    cat "$CORPORA/long/$split.jsonl.gz" "$CORPORA/short/$split.jsonl.gz" > "$MIXED.tmp/$split.jsonl.gz"
  done
  rm -rf "$MIXED" && mv "$MIXED.tmp" "$MIXED"
fi

HALF=$((STEPS / 2))
RUN="$OUT/pretrain"
if [[ ! -d "$RUN/checkpoints/$STEPS" ]]; then
  resume=()
  [[ -d "$RUN/checkpoints" ]] && resume=(--resume_from_checkpoint latest)
  neobert-hf pretrain --config recipes/tiny/pretrain.yaml "${DEVICE_ARGS[@]}" "${resume[@]}" \
    --dataset_name "$MIXED" --output_dir "$RUN" \
    --hidden_size "$HIDDEN" --num_hidden_layers "$LAYERS" --num_attention_heads "$HEADS" \
    --intermediate_size "$INTERMEDIATE" --max_position_embeddings "$SEQ" --max_seq_length "$SEQ" \
    --tokens_per_batch "$TOKENS_PER_BATCH" --learning_rate "$LR" \
    --max_steps "$STEPS" --warmup_steps $((STEPS / 20)) \
    --save_steps "$HALF" --save_total_limit 4 --eval_steps "$HALF" --logging_steps $((STEPS / 50 > 0 ? STEPS / 50 : 1))
fi

# shellcheck disable=SC2086  # the lists are meant to split into words
python benchmarks/bench_downstream.py "${DOWNSTREAM_DEVICE[@]}" \
  --pretrained "$RUN/checkpoints/$HALF" "$RUN/checkpoints/$STEPS" \
  --task-dir "$CORPORA/topic" --pairs-dir "$CORPORA/pairs" --retrieval-dir "$CORPORA/pairs_retrieval" \
  --sizes $SIZES --lrs $FT_LRS --seeds $SEEDS --classifier-pooling "${POOLING:-mean}" \
  --contrastive-lrs $CONTRASTIVE_LRS --contrastive-steps "$CONTRASTIVE_STEPS" \
  "${EXTRA_DOWNSTREAM[@]}" --json "$OUT/downstream.json" | tee "$OUT/downstream.md"
