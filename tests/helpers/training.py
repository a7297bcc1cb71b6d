"""Shared helpers of the `test_training_*` files (no tests here): synthetic MLM data built in memory, padded and packed
collators, a stateful stream, a gradient-capturing callback, an argument factory and a word-level tokenizer. Everything
is offline and tiny."""

import torch
from helpers.modeling import tiny_config
from tokenizers import Tokenizer, models, pre_tokenizers
from torch.utils.data import IterableDataset
from transformers import PreTrainedTokenizerFast, TrainerCallback

from neobert_hf import NeoBERTForMaskedLM
from neobert_hf.training import NeoBERTTrainer, NeoBERTTrainingArguments


VOCAB = 128
MASK_ID = 4


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer over `w5 .. w127` matching the 128-token tiny config (pad 0, cls 2, sep 3, mask 4)."""
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    vocab.update({f"w{i}": i for i in range(5, VOCAB)})
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def mlm_samples(n: int, seed: int = 0, min_len: int = 3, max_len: int = 40, mask_rates=None) -> list[dict]:
    """`n` samples `{"input_ids": [...], "labels": [...]}` with masks already applied (mask_all style).

    `mask_rates[i % len(mask_rates)]` is the masking rate of sample `i` (default: a spread from 0 to 0.5, so that
    microbatches have very different numbers of masked tokens, some none)."""
    mask_rates = mask_rates if mask_rates is not None else [0.05, 0.5, 0.0, 0.3, 0.15, 0.4, 0.02, 0.25]
    g = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(n):
        length = int(torch.randint(min_len, max_len + 1, (1,), generator=g))
        ids = torch.randint(5, VOCAB, (length,), generator=g)
        selected = torch.rand(length, generator=g) < mask_rates[i % len(mask_rates)]
        labels = torch.where(selected, ids, torch.full_like(ids, -100))
        samples.append({"input_ids": torch.where(selected, MASK_ID, ids).tolist(), "labels": labels.tolist()})
    return samples


def pad_collate(features: list[dict]) -> dict:
    longest = max(len(f["input_ids"]) for f in features)
    ids = torch.zeros(len(features), longest, dtype=torch.long)
    labels = torch.full((len(features), longest), -100, dtype=torch.long)
    mask = torch.zeros(len(features), longest, dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = torch.tensor(f["input_ids"])
        labels[i, :n] = torch.tensor(f["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def pack_collate(features: list[dict]) -> dict:
    """The `DataCollatorWithFlattening` format."""
    lengths = torch.tensor([len(f["input_ids"]) for f in features])
    cu = torch.nn.functional.pad(torch.cumsum(lengths, 0), (1, 0)).to(torch.int32)
    return {
        "input_ids": torch.cat([torch.tensor(f["input_ids"]) for f in features])[None],
        "labels": torch.cat([torch.tensor(f["labels"]) for f in features])[None],
        "position_ids": torch.cat([torch.arange(len(f["input_ids"])) for f in features])[None],
        "cu_seq_lens_q": cu,
        "cu_seq_lens_k": cu,
        "max_length_q": int(lengths.max()),
        "max_length_k": int(lengths.max()),
    }


class StatefulStream(IterableDataset):
    """An endless deterministic stream of masked samples with `state_dict()`/`load_state_dict()`."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.index = 0

    def _sample(self, index: int) -> dict:
        return mlm_samples(1, seed=self.seed * 100003 + index)[0]

    def __iter__(self):
        while True:
            sample = self._sample(self.index)
            self.index += 1
            yield sample

    def state_dict(self) -> dict:
        return {"index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.index = int(state["index"])


class PlainStream(IterableDataset):
    """A stream without state: its position cannot be restored."""

    def __iter__(self):
        index = 0
        while True:
            yield mlm_samples(1, seed=index)[0]
            index += 1


class GradCapture(TrainerCallback):
    """Copies every gradient right before each optimizer step."""

    def __init__(self):
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.steps.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None})


def make_args(output_dir, **overrides) -> NeoBERTTrainingArguments:
    values = {
        "output_dir": str(output_dir),
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "logging_steps": 1,
        "save_strategy": "no",
        "seed": 0,
        "learning_rate": 1e-3,
        "max_steps": 4,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        "dataloader_num_workers": 0,
        "train_sampling_strategy": "sequential",
    }
    values.update(overrides)
    return NeoBERTTrainingArguments(**values)


def make_model(seed: int = 0, **config_overrides) -> NeoBERTForMaskedLM:
    torch.manual_seed(seed)
    return NeoBERTForMaskedLM(tiny_config(**config_overrides))


def make_trainer(args, model=None, train_dataset=None, collator=pad_collate, trainer_cls=NeoBERTTrainer, **kwargs):
    return trainer_cls(
        model=model if model is not None else make_model(),
        args=args,
        train_dataset=train_dataset if train_dataset is not None else mlm_samples(64),
        data_collator=collator,
        **kwargs,
    )


def losses(trainer) -> dict[int, float]:
    return {entry["step"]: entry["loss"] for entry in trainer.state.log_history if "loss" in entry}


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))
