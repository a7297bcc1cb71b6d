"""The README's documented commands and example must stay true."""

import re
from pathlib import Path


README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_python_example_runs_offline():
    (example,) = _blocks("python")
    # The Hub download is the one line that needs network access; everything else must run as written.
    offline = "\n".join(line for line in example.splitlines() if "from_pretrained(" not in line)
    namespace: dict = {}
    exec(compile(offline, str(README), "exec"), namespace)
    assert tuple(namespace["logits"].shape) == (2, 16, 1000)


def test_ci_runs_the_readme_test_command():
    test_commands = [block.strip() for block in _blocks("bash") if "pytest" in block]
    assert len(test_commands) == 1
    # .ci/run spells the interpreter "$PYTHON" (python3 unless overridden).
    ci_script = (README.parent / ".ci" / "run").read_text().replace('"$PYTHON"', "python")
    assert test_commands[0] in ci_script
