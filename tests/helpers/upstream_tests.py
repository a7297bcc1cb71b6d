"""transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`) for the installed transformers.

transformers tests each of its models by mixing these into a per-model test class
(`tests/models/<model>/test_modeling_<model>.py`); `test_modeling_neobert_common.py` does the same for NeoBERT.
The mixins are not in the transformers wheel. They are in its source distribution on PyPI (`tests/*.py`), which
lacks three modules they import (`tests/exporters/test_export.py`, `tests/generation/test_utils.py`,
`tests/utils/test_configuration_utils.py`; see [`STAND_INS`]).

How the files get here, and why this way: `python tests/helpers/upstream_tests.py` (run by `.ci/run`) downloads the
sdist of the *installed* transformers version with pip and unpacks its `tests/*.py` into a cache folder keyed by that
version (`~/.cache/neobert-hf/transformers-tests/<version>/transformers_tests/`, or
`$NEOBERT_HF_UPSTREAM_TESTS_CACHE`). The mixins exercise private transformers APIs that change between releases
(5.23 -> 5.25 in two weeks), so they must match the installed version exactly: a copy vendored into this repository
would go stale at the next upgrade and fail for reasons that are not NeoBERT's, while the versioned cache follows every
upgrade by itself. The tests themselves never touch the network (tests run offline): without the cache they skip and
say how to fetch it, and under `NEOBERT_HF_REQUIRE_UPSTREAM_TESTS=1` (set by `.ci/run`) a missing cache is an error,
so CI cannot pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest


PACKAGE = "transformers_tests"
REQUIRE_ENV = "NEOBERT_HF_REQUIRE_UPSTREAM_TESTS"
CACHE_ENV = "NEOBERT_HF_UPSTREAM_TESTS_CACHE"

# Modules the mixins import that the sdist does not ship, each replaced by the smallest stand-in that keeps the mixins'
# own tests meaningful for an encoder. ExportTesterMixin (tests/exporters) adds the torch.export/ONNX/OpenVINO export
# tests, which therefore do not run here. GenerationTesterMixin is only used in `issubclass` checks (NeoBERT cannot
# generate, so its test class must not inherit it anyway). `config_common_kwargs` are PretrainedConfig arguments
# given non-default values, which `ConfigTester.check_config_arguments_init` checks are stored as given.
STAND_INS = {
    "exporters/test_export.py": '''
class ExportTesterMixin:
    """Stand-in: tests/exporters is not in the transformers sdist; the export tests do not run."""
''',
    "generation/test_utils.py": '''
class GenerationTesterMixin:
    """Stand-in: tests/generation is not in the transformers sdist; only used in issubclass checks."""
''',
    "utils/test_configuration_utils.py": '''
config_common_kwargs = {
    "output_hidden_states": True,
    "output_attentions": True,
    "return_dict": False,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["NeoBERTForMaskedLM"],
    "finetuning_task": "mnli",
    "id2label": {0: "entailment", 1: "neutral", 2: "contradiction"},
    "label2id": {"entailment": 0, "neutral": 1, "contradiction": 2},
    "problem_type": "single_label_classification",
    "tokenizer_class": "BertTokenizerFast",
    "bos_token_id": 101,
    "eos_token_id": 102,
    "sep_token_id": 102,
}
''',
}


def installed_version() -> str:
    import transformers

    return transformers.__version__


def cache_root(version: str | None = None) -> Path:
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "neobert-hf", "transformers-tests"
    )
    return Path(base) / (version or installed_version())


def fetch(version: str | None = None) -> Path:
    """Download the transformers sdist of `version` (default: installed) and unpack its `tests/*.py` with the
    stand-ins into the cache; returns the folder to put on `sys.path`. Does nothing when already there."""
    version = version or installed_version()
    root = cache_root(version)
    if (root / PACKAGE / "test_modeling_common.py").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as scratch:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"transformers=={version}", "--no-deps", "--no-binary", ":all:",
             "--quiet", "-d", scratch],
            check=True,
        )
        (sdist,) = Path(scratch).glob("transformers-*.tar.gz")
        staged = Path(scratch) / "staged"
        package = staged / PACKAGE
        package.mkdir(parents=True)
        prefix = f"{sdist.name[: -len('.tar.gz')]}/tests/"
        with tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                rel = member.name[len(prefix) :] if member.name.startswith(prefix) else None
                if member.isfile() and rel and "/" not in rel and rel.endswith(".py"):
                    (package / rel).write_bytes(archive.extractfile(member).read())
        if not (package / "test_modeling_common.py").is_file():
            raise RuntimeError(f"{sdist.name} holds no tests/test_modeling_common.py")
        (package / "__init__.py").write_text("")
        for rel, text in STAND_INS.items():
            target = package / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            (target.parent / "__init__.py").touch()
            target.write_text(text.lstrip())
        try:
            os.replace(staged, root)  # complete or absent, also with several processes fetching at once
        except OSError:
            if not (root / PACKAGE / "test_modeling_common.py").is_file():
                raise
    return root


def import_upstream():
    """Put the cached upstream tests on `sys.path` and return the `transformers_tests` package; skip the calling test
    module when they are not there (an error under `NEOBERT_HF_REQUIRE_UPSTREAM_TESTS=1`)."""
    root = cache_root()
    missing = None
    if not (root / PACKAGE / "test_modeling_common.py").is_file():
        missing = f"transformers' common model tests for transformers {installed_version()} are not in {root}"
    else:
        try:
            import parameterized  # noqa: F401  (the mixins' test dependency)
        except ImportError:
            missing = "the mixins need the `parameterized` package (pip install parameterized)"
    if missing is not None:
        message = f"{missing}; fetch them with `python tests/helpers/upstream_tests.py`."
        if os.environ.get(REQUIRE_ENV) == "1":
            raise RuntimeError(f"{REQUIRE_ENV}=1 but {message}")
        pytest.skip(message, allow_module_level=True)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import importlib

    return importlib.import_module(PACKAGE)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        raise SystemExit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "--refresh":
        shutil.rmtree(cache_root(), ignore_errors=True)
    print(fetch())
