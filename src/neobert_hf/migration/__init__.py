"""Convert the original NeoBERT trainer's nested YAML config into a flat `neobert-hf` recipe.

The original trainer reads one nested file (`model:`, `dataset:`, `trainer:`, `optimizer:`, ... sections, plus
`--section.key value` overrides); `neobert-hf` reads flat recipes whose keys are the fields of each subcommand's
argument dataclasses. [`RULES`] is the single table between the two: the converter
([`convert_config`]), the table it prints and `docs/migrating.md` ([`render_markdown`]) are all generated from it.

Each row names one key of the original format and what it becomes in the subcommands where it applies: one or more
recipe keys (with the unit change its converter applies) or nothing, with the reason. A key of the input that is
not in the table is an error, as it was for the original loader, so nothing is ever dropped silently.

```bash
neobert-hf convert-config old.yaml -o recipe.yaml --trainer.max_steps 1000
python -m neobert_hf.migration --markdown > docs/migrating.md
```

Nothing heavy is imported here: values are typed against the subcommand's parser only in
[`coerce_to_fields`], which imports it.
"""

from __future__ import annotations

from .base import SECTIONS, SUBCOMMAND_OF_TASK, SUBCOMMANDS, MigrationError, Rule
from .convert import Conversion, ReportRow, coerce_to_fields, convert_config, subcommand_fields, subcommand_parser
from .reading import apply_overrides, converted_path, is_original_config, load_original_config, refusal_message
from .render import counts, main, render_markdown, render_report
from .table import RULES


__all__ = [
    "RULES",
    "SECTIONS",
    "SUBCOMMANDS",
    "SUBCOMMAND_OF_TASK",
    "Conversion",
    "MigrationError",
    "ReportRow",
    "Rule",
    "apply_overrides",
    "coerce_to_fields",
    "convert_config",
    "converted_path",
    "counts",
    "is_original_config",
    "load_original_config",
    "main",
    "refusal_message",
    "render_markdown",
    "render_report",
    "subcommand_fields",
    "subcommand_parser",
]
