"""Checks of the `TrainingArguments` values that every package trainer shares (pretraining, GLUE, contrastive).

`transformers.TrainingArguments` accepts values that cannot train: a negative or NaN learning rate, a batch size of
0, `save_steps: 0` (a division by zero at the first step), `eval_steps: 0` (silently replaced by `logging_steps`).
[`check_training_values`] refuses them with a message that names the option, from the argument classes'
`__post_init__`, so that a recipe fails when it is parsed, before anything is written.
"""

from __future__ import annotations

import math
from typing import Any


__all__ = ["check_training_values"]


def _name(value: Any) -> str:
    return str(getattr(value, "value", value))


def _check_interval(args: Any, strategy_field: str, steps_field: str, allow_none: bool = False) -> None:
    if _name(getattr(args, strategy_field)) != "steps":
        return
    steps = getattr(args, steps_field)
    if steps is None and allow_none:
        return
    if steps is None or not math.isfinite(steps) or steps <= 0 or (steps > 1 and steps != int(steps)):
        raise ValueError(
            f"{steps_field} must be a whole number >= 1, or a fraction in (0, 1) of the total steps, with "
            f"{strategy_field}=steps (got {steps}). Set {steps_field}, or {strategy_field} to 'epoch' or 'no'."
        )


def check_training_values(args: Any) -> None:
    """Refuse the `TrainingArguments` values that cannot train. Call it at the start of `__post_init__`, before
    `TrainingArguments.__post_init__` (which replaces an `eval_steps` of 0 by `logging_steps`).

    Raises:
        `ValueError`: naming the option, the value given and what is accepted.
    """
    if not isinstance(args.learning_rate, (int, float)) or not math.isfinite(args.learning_rate) or (
        args.learning_rate < 0
    ):
        raise ValueError(f"learning_rate must be a finite number >= 0 (got {args.learning_rate}).")
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        value = getattr(args, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1 (got {value}).")
    if args.max_steps == 0 or args.max_steps < -1:
        raise ValueError(
            f"max_steps must be >= 1, or -1 to train for num_train_epochs (got {args.max_steps})."
        )
    if args.max_steps == -1 and not (math.isfinite(args.num_train_epochs) and args.num_train_epochs > 0):
        raise ValueError(f"num_train_epochs must be a finite number > 0 (got {args.num_train_epochs}).")
    _check_interval(args, "save_strategy", "save_steps")
    _check_interval(args, "eval_strategy", "eval_steps", allow_none=True)  # None: every logging_steps
    _check_interval(args, "logging_strategy", "logging_steps")
    if args.save_total_limit is not None and args.save_total_limit < 1:
        raise ValueError(
            f"save_total_limit must be >= 1, or none to keep every checkpoint (got {args.save_total_limit})."
        )
    for name in ("weight_decay", "max_grad_norm"):
        value = getattr(args, name)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0 (got {value}); 0 turns it off.")
    for name in ("adam_beta1", "adam_beta2"):
        value = getattr(args, name)
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1) (got {value}).")
    if not args.adam_epsilon > 0:
        raise ValueError(f"adam_epsilon must be > 0 (got {args.adam_epsilon}).")
