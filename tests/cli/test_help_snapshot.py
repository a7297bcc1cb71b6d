"""The recipe subcommands' help shipped with the package: it prints exactly what the real parser prints, and is used
only while it still describes the installed parser."""

import argparse
import importlib
import json
import shutil

import pytest

from neobert_hf.cli import help_snapshot
from neobert_hf.cli.help_snapshot import RECIPE_COMMANDS, describe, replica


_WIDTHS = ("40", "80", "132", "250")


def _roundtrip(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    # Through JSON, as the shipped file is read back.
    return replica(json.loads(json.dumps(describe(parser))))


@pytest.mark.parametrize("command", RECIPE_COMMANDS)
def test_replica_prints_what_the_real_parser_prints(command, monkeypatch):
    parser = importlib.import_module(f"neobert_hf.cli.{command}").build_argument_parser()
    copy = _roundtrip(parser)
    for width in _WIDTHS:
        monkeypatch.setenv("COLUMNS", width)
        assert copy.format_help() == parser.format_help(), f"{command} at {width} columns"
        assert copy.format_usage() == parser.format_usage()


def _kitchen_sink(formatter_class) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tool sub",
        description="Description with 100% of the   spacing\n\nand a second paragraph.",
        epilog="Epilog %(prog)s.",
        formatter_class=formatter_class,
    )
    parser.add_argument("source", help="a positional, default %(default)s")
    parser.add_argument("targets", nargs="*", default=["a"], help="zero or more")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="where (%(prog)s writes 50%%)")
    parser.add_argument("--mode", choices=["fast", "slow", None], default="fast", help="one of %(choices)s")
    parser.add_argument("--pair", nargs=2, metavar=("KEY", "VALUE"), help="two values")
    parser.add_argument("--flag", action="store_true", help="on")
    parser.add_argument("--no_flag", dest="flag", action="store_false", help="off")
    parser.add_argument("--level", action="store_const", const=3, help="const")
    parser.add_argument("--tag", action="append", help="repeatable")
    parser.add_argument("--maybe", nargs="?", const=True, type=int, default=None, help="optional value")
    parser.add_argument("--hidden", help=argparse.SUPPRESS)
    parser.add_argument("--bare")
    group = parser.add_argument_group("extra", "A group of its own.")
    group.add_argument("--width", type=float, default=1.5, help="in %% of the page")
    parser.add_argument("--after", nargs="+", help="an option added after the group")
    return parser


@pytest.mark.parametrize(
    "formatter_class",
    [argparse.HelpFormatter, argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter,
     argparse.RawTextHelpFormatter],
)
def test_replica_of_every_plain_argparse_feature(formatter_class, monkeypatch):
    parser = _kitchen_sink(formatter_class)
    copy = _roundtrip(parser)
    for width in _WIDTHS:
        monkeypatch.setenv("COLUMNS", width)
        assert copy.format_help() == parser.format_help(), f"{formatter_class.__name__} at {width} columns"


def test_describe_refuses_what_it_cannot_reproduce():
    class Custom(argparse.Action):
        def __call__(self, *args, **kwargs):
            pass

    parser = argparse.ArgumentParser()
    parser.add_argument("--x", action=Custom)
    with pytest.raises(ValueError, match="Custom"):
        describe(parser)
    parser = argparse.ArgumentParser()
    parser.add_mutually_exclusive_group().add_argument("--y")
    with pytest.raises(ValueError, match="mutually exclusive"):
        describe(parser)
    parser = argparse.ArgumentParser(formatter_class=argparse.MetavarTypeHelpFormatter)
    with pytest.raises(ValueError, match="formatter"):
        describe(parser)


@pytest.mark.parametrize("command", RECIPE_COMMANDS)
def test_shipped_snapshot_is_current(command):
    shipped = help_snapshot.load(command)
    assert shipped is not None, f"src/neobert_hf/cli/help/{command}.json is missing"
    current = help_snapshot.snapshot(command)
    if shipped["transformers"] != current["transformers"]:
        pytest.skip(
            f"the shipped snapshot is for transformers {shipped['transformers']}, {current['transformers']} is "
            "installed: `--help` builds the parser once and caches it; `python -m neobert_hf.cli.help_snapshot "
            "--write` makes a snapshot for this version"
        )
    assert shipped == current, (
        f"The shipped help of `neobert-hf {command}` is stale: run `python -m neobert_hf.cli.help_snapshot --write`."
    )
    assert help_snapshot.stale_reason(shipped) is None


def _copy_of_package(tmp_path, monkeypatch):
    root = tmp_path / "neobert_hf"
    shutil.copytree(help_snapshot._PACKAGE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(help_snapshot, "_PACKAGE_ROOT", root)
    monkeypatch.setattr(help_snapshot, "SNAPSHOT_DIR", root / "cli" / "help")
    return root


def test_snapshot_is_not_used_once_a_defining_source_changes(tmp_path, monkeypatch):
    root = _copy_of_package(tmp_path, monkeypatch)
    entry = help_snapshot.load("pretrain")
    monkeypatch.setattr(help_snapshot, "_transformers_version", lambda: entry["transformers"])
    assert help_snapshot.shipped_help("pretrain") is not None
    assert "training/pretrain_arguments.py" in entry["sources"]
    source = root / "training" / "pretrain_arguments.py"
    source.write_text(source.read_text() + "\n# edited\n")
    assert help_snapshot.stale_reason(entry) == (
        "neobert_hf/training/pretrain_arguments.py changed since the snapshot was generated"
    )
    assert help_snapshot.shipped_help("pretrain") is None


def test_snapshot_is_not_used_with_another_transformers(tmp_path, monkeypatch):
    _copy_of_package(tmp_path, monkeypatch)
    monkeypatch.setattr(help_snapshot, "_transformers_version", lambda: "0.0.1")
    assert "installed 0.0.1" in help_snapshot.stale_reason(help_snapshot.load("glue"))
    assert help_snapshot.shipped_help("glue") is None


def test_unreadable_or_missing_snapshot_is_not_used(tmp_path, monkeypatch):
    root = _copy_of_package(tmp_path, monkeypatch)
    (root / "cli" / "help" / "mteb.json").write_text("{not json")
    (root / "cli" / "help" / "glue.json").unlink()
    assert help_snapshot.shipped_help("mteb") is None
    assert help_snapshot.shipped_help("glue") is None
    assert help_snapshot.stale_reason(help_snapshot.load("glue")) == "no snapshot is shipped"


def test_check_reports_stale_snapshots(tmp_path, monkeypatch, capsys):
    _copy_of_package(tmp_path, monkeypatch)
    monkeypatch.setattr(help_snapshot, "_transformers_version", lambda: "0.0.1")
    assert help_snapshot.main(["--check"]) == 1
    output = capsys.readouterr().out
    assert "python -m neobert_hf.cli.help_snapshot --write" in output
    for command in RECIPE_COMMANDS:
        assert f"{command}: generated with transformers" in output


def test_write_fails_with_one_message_and_keeps_the_shipped_file(tmp_path, monkeypatch, capsys):
    root = _copy_of_package(tmp_path, monkeypatch)
    shipped = (root / "cli" / "help" / "pretrain.json").read_bytes()
    monkeypatch.setattr(help_snapshot, "snapshot", lambda command: (_ for _ in ()).throw(ValueError("custom action")))
    assert help_snapshot.main(["--write"]) == 1
    assert "cannot write the help snapshot of pretrain: custom action" in capsys.readouterr().err
    assert (root / "cli" / "help" / "pretrain.json").read_bytes() == shipped
    assert not list((root / "cli" / "help").glob("*.tmp"))


def test_write_to_an_unwritable_place_fails_with_one_message(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setattr(help_snapshot, "SNAPSHOT_DIR", blocker / "help")
    monkeypatch.setattr(help_snapshot, "snapshot", lambda command: {"command": command})
    assert help_snapshot.main(["--write"]) == 1
    assert "error: cannot write the help snapshot of pretrain" in capsys.readouterr().err
    assert blocker.read_text() == "x"
