# Copyright 2026 the neobert-hf authors. Licensed under the Apache License, Version 2.0.
"""Startup time of the `neobert-hf` command: `--help`, every `<command> --help`, `import neobert_hf`, and the
first line a pretraining run prints.

```bash
python benchmarks/bench_startup.py                       # this checkout (the installed package)
python benchmarks/bench_startup.py --src /tmp/old/src    # another checkout's source, for a before/after
```

Every measurement is a fresh process, timed from start to exit (or to its first stdout line for the pretraining
run), repeated `--repeats` times; the table gives the median and the spread. Recipe subcommands (whose help lists
transformers' `TrainingArguments`) are timed three ways: `first`, with an empty help cache (the first `--help` after
an install: printed from the snapshot shipped with the package); `first, no snapshot`, with an empty cache and the
snapshot unused (as with a transformers version other than the snapshot's: the parser is built, then cached); and
`cached`, the calls after that one. The machine load is printed, since other processes inflate the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SUBCOMMANDS = ("env", "pretrain", "preprocess", "contrastive", "mteb", "glue", "glue-summary", "export", "push", "pppl")
RECIPE_SUBCOMMANDS = {"pretrain", "preprocess", "contrastive", "mteb", "glue"}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _command() -> list[str]:
    script = shutil.which("neobert-hf")
    if script is None:
        sys.exit("neobert-hf is not on PATH: pip install -e . first")
    return [script]


def _environment(src: str | None, cache: str) -> dict:
    env = {**os.environ, "NEOBERT_HF_CACHE": cache, "HF_HUB_OFFLINE": "1"}
    env.pop("WANDB_MODE", None)
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


# The command with its shipped help snapshots unused, as when the installed transformers differs from theirs. The
# file name starts with "neobert-hf" so that the process behaves as the console script does.
_WITHOUT_SNAPSHOT = """import sys
try:
    import neobert_hf.cli.help_snapshot as snapshot
    snapshot.shipped_help = lambda command: None
except ImportError:  # a checkout from before the snapshots (--src)
    pass
from neobert_hf.cli.main import main
sys.exit(main())
"""


def _time(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    completed = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=REPO, timeout=600)
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({completed.returncode}): {completed.stderr[-2000:]}")
    return elapsed


def _first_line(argv: list[str], env: dict) -> tuple[float, str, list[str]]:
    """Seconds until the first stdout line, that line, and the stderr lines printed before it."""
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO
    )
    line = process.stdout.readline()
    elapsed = time.perf_counter() - start
    process.kill()
    _, stderr = process.communicate()
    return elapsed, line.rstrip("\n"), [text for text in stderr.splitlines() if text.strip()]


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", help="put this source folder first on PYTHONPATH (e.g. an older checkout's src/)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-pretrain", action="store_true", help="skip the first-line-of-pretrain measurement")
    args = parser.parse_args()

    command = _command()
    cache = tempfile.mkdtemp(prefix="neobert_hf_bench_startup_")
    env = _environment(args.src, cache)
    rows: list[tuple[str, str]] = []
    script = os.path.join(cache, "neobert-hf-without-snapshot")
    with open(script, "w", encoding="utf-8") as handle:
        handle.write(_WITHOUT_SNAPSHOT)
    without_snapshot = [sys.executable, script]
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores); source: {args.src or 'installed'}")

    rows.append(("neobert-hf --help", _summary([_time([*command, "--help"], env) for _ in range(args.repeats)])))
    for name in SUBCOMMANDS:
        if name in RECIPE_SUBCOMMANDS:
            first, built = [], []
            for _ in range(args.repeats):
                shutil.rmtree(os.path.join(cache, "help"), ignore_errors=True)
                first.append(_time([*command, name, "--help"], env))
            for _ in range(args.repeats):
                shutil.rmtree(os.path.join(cache, "help"), ignore_errors=True)
                built.append(_time([*without_snapshot, name, "--help"], env))
            cached = [_time([*without_snapshot, name, "--help"], env) for _ in range(args.repeats)]
            rows.append((f"neobert-hf {name} --help (first)", _summary(first)))
            rows.append((f"neobert-hf {name} --help (first, no snapshot)", _summary(built)))
            rows.append((f"neobert-hf {name} --help (cached)", _summary(cached)))
        else:
            rows.append((f"neobert-hf {name} --help", _summary([_time([*command, name, "--help"], env) for _ in
                                                                range(args.repeats)])))
    python = [sys.executable, "-c", "import neobert_hf"]
    rows.append(("python -c 'import neobert_hf' (registers the model)", _summary(
        [_time(python, env) for _ in range(args.repeats)]
    )))
    if not args.skip_pretrain:
        output = tempfile.mkdtemp(prefix="neobert_hf_bench_pretrain_")
        argv = [*command, "pretrain", "--config", "recipes/tiny/pretrain.yaml", "--max_steps", "1",
                "--save_strategy", "no", "--report_to", "none", "--output_dir", os.path.join(output, "run")]
        times, first, noise = [], "", []
        for _ in range(args.repeats):
            elapsed, first, noise = _first_line(argv, env)
            times.append(elapsed)
        rows.append(("neobert-hf pretrain (tiny): first stdout line", _summary(times)))
        shutil.rmtree(output, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)

    width = max(len(name) for name, _ in rows)
    print(f"| {'measurement'.ljust(width)} | median (min-max) over {args.repeats} |")
    print(f"| {'-' * width} | --- |")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    if not args.skip_pretrain:
        print(f"\npretrain's first stdout line: {first!r}")
        print(f"stderr lines printed before it ({len(noise)}):" + "".join(f"\n  {text[:160]}" for text in noise))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
