"""`neobert-hf pppl`: batched pseudo-perplexity equals a direct one-token-at-a-time computation, long documents are
scored in windows with each token scored exactly once, and the CSV resumes after an interruption."""

import csv
import itertools
import json
import math

import pytest
import torch
from helpers.modeling import tiny_config
from helpers.export import tiny_tokenizer

from neobert_hf import NeoBERTForMaskedLM
from neobert_hf.cli.main import main
from neobert_hf.evaluation import pppl
from neobert_hf.evaluation.pppl import (
    CSV_COLUMNS,
    PPPLError,
    assign_windows,
    pseudo_perplexity,
    read_documents,
    score_document,
    window_starts,
)


CLS, SEP, MASK = 2, 3, 4
MAX_LENGTH = 16  # 14 document tokens per window: documents of 30-60 tokens need several windows


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = NeoBERTForMaskedLM(tiny_config())
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # weights far from their init, so that predictions depend on the context
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=g)
            param.copy_(1 + 0.2 * noise if name.endswith("norm.weight") else 0.3 * noise)
    folder = tmp_path_factory.mktemp("mlm")
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model(model_dir):
    return NeoBERTForMaskedLM.from_pretrained(model_dir).eval()


def words(n: int, seed: int) -> str:
    g = torch.Generator().manual_seed(seed)
    return " ".join(f"w{i}" for i in torch.randint(5, 128, (n,), generator=g).tolist())


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "docs.jsonl"
    docs = [
        {"id": "short", "text": words(5, 0)},
        {"id": "long", "text": words(47, 1)},
        {"id": "empty", "text": ""},
        {"id": "longer", "text": words(60, 2)},
    ]
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


# ---------------------------------------------------------------------------------------------------------------------


def best_window_by_brute_force(t: int, starts: list[int], length: int) -> int:
    """The window where token t has the most context on its shorter side; ties to the earlier one."""
    best, best_context = None, -1
    for index, start in enumerate(starts):
        if start <= t < start + length:
            context = min(t - start, start + length - 1 - t)
            if context > best_context:
                best, best_context = index, context
    return best


def test_windows_cover_every_token_once_where_it_is_most_central():
    for n, window in itertools.product([1, 2, 5, 13, 14, 15, 29, 64], [1, 2, 7, 14]):
        for stride in sorted({1, max(window // 2, 1), window}):
            starts = window_starts(n, window, stride)
            length = min(window, n)
            assert starts[0] == 0 and starts[-1] + length == n  # the windows span the document
            assert all(b - a <= stride for a, b in itertools.pairwise(starts))
            owner = assign_windows(n, starts, window).tolist()
            assert owner == [best_window_by_brute_force(t, starts, length) for t in range(n)], (n, window, stride)
    with pytest.raises(PPPLError, match="stride"):
        window_starts(10, 4, 5)
    with pytest.raises(PPPLError, match="stride"):
        window_starts(10, 4, 0)


def direct_pll(model, ids: list[int], window: int, stride: int) -> float:
    """One forward per token, full logits, the window chosen by brute force: the definition, unbatched."""
    starts = window_starts(len(ids), window, stride)
    length = min(window, len(ids))
    total = 0.0
    for t in range(len(ids)):
        start = starts[best_window_by_brute_force(t, starts, length)]
        tokens = [CLS, *ids[start : start + length], SEP]
        position = 1 + t - start
        tokens[position] = MASK
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([tokens])).logits[0, position]
        total += torch.log_softmax(logits.double(), -1)[ids[t]].item()
    return total


@pytest.mark.parametrize(("n", "stride"), [(9, None), (47, None), (47, 14), (47, 3)])
def test_batched_scoring_equals_the_direct_computation(model, n, stride, monkeypatch):
    ids = tiny_tokenizer()(words(n, n), add_special_tokens=False)["input_ids"]
    window = MAX_LENGTH - 2
    expected = direct_pll(model, ids, window, stride or window // 2)
    got, windows = score_document(
        model, ids, mask_token_id=MASK, window=window, stride=stride, prefix=[CLS], suffix=[SEP], batch_size=5
    )
    assert windows == len(window_starts(n, window, stride or window // 2))
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-4)
    # The generic path (full logits, any MLM) gives the same as NeoBERT's masked-rows-only projection.
    monkeypatch.setattr(pppl, "_supports_sparse_prediction", lambda model: False)
    generic, _ = score_document(
        model, ids, mask_token_id=MASK, window=window, stride=stride, prefix=[CLS], suffix=[SEP], batch_size=7
    )
    assert generic == pytest.approx(expected, rel=1e-5, abs=1e-4)


def read_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        return list(reader)


def test_cli_end_to_end_with_resume_after_an_interruption(model_dir, model, data, tmp_path, monkeypatch, capsys):
    argv = ["pppl", "--model", str(model_dir), "--data", str(data), "--max-length", str(MAX_LENGTH),
            "--batch-size", "8"]
    reference = tmp_path / "reference.csv"
    assert main([*argv, "--output", str(reference)]) == 0
    assert "corpus pseudo-perplexity" in capsys.readouterr().out
    rows = read_rows(reference)
    assert [r["doc_id"] for r in rows] == ["short", "long", "empty", "longer"]
    assert [int(r["tokens"]) for r in rows] == [5, 47, 0, 60]
    assert [int(r["windows"]) for r in rows] == [1, 6, 0, 8]
    for row in rows:
        if int(row["tokens"]):
            assert float(row["pppl"]) == pytest.approx(math.exp(-float(row["log_likelihood"]) / int(row["tokens"])))
        else:
            assert math.isnan(float(row["pppl"]))
    ids = tiny_tokenizer()(words(47, 1), add_special_tokens=False)["input_ids"]
    assert float(rows[1]["log_likelihood"]) == pytest.approx(direct_pll(model, ids, 14, 7), rel=1e-5, abs=1e-4)

    # Interrupted while scoring the second document: the first one is on disk, the second is not.
    output = tmp_path / "results.csv"
    real_score = pppl.score_document
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(len(args[1]))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_score(*args, **kwargs)

    monkeypatch.setattr(pppl, "score_document", interrupted)
    capsys.readouterr()
    assert main([*argv, "--output", str(output)]) == 130  # Ctrl-C: one line, no traceback
    assert capsys.readouterr().err.strip().endswith("neobert-hf pppl: interrupted.")
    assert [r["doc_id"] for r in read_rows(output)] == ["short"]
    with open(output, "a") as f:
        f.write("long,47,6,-12")  # a torn line, as a kill in the middle of a write would leave

    calls.clear()
    monkeypatch.setattr(pppl, "score_document", lambda *a, **k: (calls.append(len(a[1])), real_score(*a, **k))[1])
    assert main([*argv, "--output", str(output)]) == 0
    assert "skipped 1 already" in capsys.readouterr().out
    assert calls == [47, 0, 60]  # only the documents that were missing
    assert read_rows(output) == rows  # identical to the uninterrupted run

    calls.clear()
    assert main([*argv, "--output", str(output)]) == 0  # nothing left to do
    assert calls == [] and read_rows(output) == rows


def test_limit_and_text_files(model_dir, tmp_path):
    text = tmp_path / "docs.txt"
    text.write_text(f"{words(6, 3)}\n\n{words(20, 4)}\n{words(3, 5)}\n")
    summary = pseudo_perplexity(model_dir, text, tmp_path / "out.csv", max_length=MAX_LENGTH, limit=2)
    rows = read_rows(tmp_path / "out.csv")
    assert [r["doc_id"] for r in rows] == ["0", "2"]  # ids are line numbers; the blank line is no document
    assert summary.scored == 2 and summary.tokens == 26
    total = sum(float(r["log_likelihood"]) for r in rows)
    assert summary.pppl == pytest.approx(math.exp(-total / 26))


def test_bad_input_is_an_error_that_writes_nothing(model_dir, data, tmp_path, capsys):
    output = tmp_path / "out.csv"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "body": "w5 w6"}\n')
    with pytest.raises(PPPLError, match="'text'.*--text-field"):
        pseudo_perplexity(model_dir, bad, output)
    bad.write_text('{"id": 1, "text": "w5"}\n{"id": 1, "text": "w6"}\n')
    with pytest.raises(PPPLError, match="Duplicate document ids"):
        pseudo_perplexity(model_dir, bad, output)
    with pytest.raises(PPPLError, match="exceeds the model's context"):
        pseudo_perplexity(model_dir, data, output, max_length=4096)
    with pytest.raises(PPPLError, match="stride"):
        pseudo_perplexity(model_dir, data, output, max_length=MAX_LENGTH, stride=15)
    with pytest.raises(PPPLError, match="not a model folder"):
        pseudo_perplexity(tmp_path, data, output)
    assert not output.exists()
    assert main(["pppl", "--model", str(model_dir), "--data", str(tmp_path / "none.jsonl"), "--output",
                 str(output)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not output.exists()

    # A resume with other settings would mix results.
    assert main(["pppl", "--model", str(model_dir), "--data", str(data), "--output", str(output), "--max-length",
                 str(MAX_LENGTH), "--limit", "1"]) == 0
    with pytest.raises(PPPLError, match="other settings"):
        pseudo_perplexity(model_dir, data, output, max_length=MAX_LENGTH + 2)
    assert len(read_rows(output)) == 1


def test_read_documents_ids(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a"}\n\n{"text": "b", "doc": "x"}\n')
    assert read_documents(path) == [("0", "a"), ("1", "b")]
    assert read_documents(path, id_field="doc") == [("0", "a"), ("x", "b")]
