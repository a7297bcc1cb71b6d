"""Model cards: the template is package data, and a card states the facts stored with a checkpoint."""

import importlib.resources
import json
import os

import pytest
from huggingface_hub import ModelCard
from helpers.export import DATASET, write_checkpoint

from neobert_hf import NeoBERTForMaskedLM
from neobert_hf.model_card import ModelCardFacts, collect_facts, render_model_card, template_path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return write_checkpoint(tmp_path_factory.mktemp("run") / "tiny-run")


def test_template_is_package_data():
    resource = importlib.resources.files("neobert_hf").joinpath("model_cards", "neobert.md")
    assert resource.is_file()
    assert template_path().read_text() == resource.read_text()
    assert "{{ card_data }}" in resource.read_text()
    # pyproject ships model_cards/*.md as package data (so a wheel has it, not only this checkout).
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml")) as f:
        assert '"model_cards/*.md"' in f.read()
    with pytest.raises(FileNotFoundError, match="not installed"):
        template_path("missing.md")


@pytest.mark.integration
def test_card_states_the_facts_of_the_checkpoint(checkpoint):
    with open(os.path.join(checkpoint, "trainer_state.json")) as f:
        state = json.load(f)
    eval_entry = next(e for e in state["log_history"] if "eval_loss" in e)

    text = render_model_card(checkpoint, model_id="org/tiny")
    card = ModelCard(text)
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "fill-mask"
    assert {"neobert", "fill-mask"} <= set(card.data.tags)
    assert card.data.license == "apache-2.0"
    assert card.data.datasets == [DATASET]  # from the run's run_args.json

    parameters = NeoBERTForMaskedLM.from_pretrained(checkpoint).num_parameters()
    assert f"| parameters | {parameters:,} " in text
    assert "| layers | 2 |" in text and "| hidden size | 64 |" in text and "| vocabulary | 128 |" in text
    assert f"| data | {DATASET} |" in text
    assert "| optimizer steps | 2 of 2 |" in text
    assert f"| tokens seen | {state['num_input_tokens_seen']:,}" in text
    assert f"| eval loss | {eval_entry['eval_loss']:.4f} | 2 |" in text
    assert f"| eval perplexity | {eval_entry['eval_perplexity']:.4f} | 2 |" in text
    assert f"| eval MLM accuracy | {eval_entry['eval_mlm_accuracy']:.4f} | 2 |" in text
    assert "| learning rate | 0.001 |" in text
    assert 'AutoModelForMaskedLM.from_pretrained("org/tiny", trust_remote_code=True)' in text
    assert "from neobert_hf import NeoBERTForMaskedLM" in text
    assert "## Intended use and limitations" in text and "## Licence" in text
    assert "eprint        = {2502.19587}" in text
    assert "training checkpoint" in text  # a checkpoint's card says it also holds resume state


def test_pipeline_tag_and_snippet_follow_the_task():
    config = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 192}
    expected = {
        "mlm": ("fill-mask", "AutoModelForMaskedLM"),
        "base": ("feature-extraction", "AutoModel"),
        "sequence-classification": ("text-classification", "AutoModelForSequenceClassification"),
        "token-classification": ("token-classification", "AutoModelForTokenClassification"),
        "question-answering": ("question-answering", "AutoModelForQuestionAnswering"),
    }
    for task, (tag, auto_class) in expected.items():
        text = render_model_card({"task": task, "config": config, "base_model": "chandar-lab/NeoBERT"})
        card = ModelCard(text)
        assert card.data.pipeline_tag == tag, task
        assert card.data.base_model == "chandar-lab/NeoBERT"
        assert f"model = {auto_class}.from_pretrained(" in text
    text = render_model_card(
        ModelCardFacts(task="base", config=config, sentence_transformers={"pooling": "cls", "normalize": True})
    )
    assert ModelCard(text).data.pipeline_tag == "sentence-similarity"
    assert "SentenceTransformer(" in text and "cls pooling, L2-normalised" in text


def test_unknown_facts_are_said_to_be_unknown(checkpoint, tmp_path):
    model = NeoBERTForMaskedLM.from_pretrained(checkpoint)
    model.save_pretrained(tmp_path)  # weights and config only: no trainer state, no run arguments
    facts = collect_facts(tmp_path)
    assert facts.global_step is None and facts.dataset is None and not facts.checkpoint
    text = render_model_card(facts)
    assert "No training state was found" in text
    assert "base_model" not in text.split("---")[1]


def test_bad_facts_are_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown task"):
        render_model_card({"task": "fill-mask"})
    with pytest.raises(TypeError, match="Unknown model-card fact"):
        collect_facts(tmp_path, steps=3)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        collect_facts(tmp_path)


def test_cards_show_no_local_absolute_path(checkpoint, tmp_path, monkeypatch):
    # The run's arguments name local files, a local base model and an absolute output folder.
    data = tmp_path / "corpora" / "my-corpus"
    base = tmp_path / "models" / "my-base"
    run_args = {
        "data_files": [str(data / "part-0.jsonl"), str(data / "part-1.jsonl")],
        "model_name_or_path": str(base),
    }
    card = render_model_card(checkpoint, run_args=run_args, model_id=os.path.abspath(checkpoint))
    run_name = os.path.basename(os.path.dirname(os.path.dirname(checkpoint)))
    assert str(tmp_path) not in card and os.path.dirname(os.path.abspath(checkpoint)) not in card
    assert "part-0.jsonl, part-1.jsonl" in card and "| initialised from | my-base |" in card
    assert f'from_pretrained("{run_name}/checkpoints/2"' in card  # the checkpoint by its run's name
    assert DATASET not in card  # local files replace the dataset name of run_args.json

    # Under the current folder, a path is shown relative to it.
    monkeypatch.chdir(tmp_path)
    card = render_model_card(checkpoint, run_args=run_args, dataset=str(data))
    assert "corpora/my-corpus" in card and str(tmp_path) not in card
    # Hub ids and URLs are not paths.
    card = render_model_card(checkpoint, dataset="nyu-mll/glue (mrpc)", base_model="org/base")
    assert "nyu-mll/glue (mrpc)" in card and "base_model: org/base" in card


def test_paths_with_spaces_are_shown_whole(checkpoint, tmp_path):
    """A path holding spaces is one path: a card shows its last part, not a piece of its folder's name."""
    data = tmp_path / "my corpora" / "train data.jsonl"
    data.parent.mkdir()
    data.write_text("{}\n")
    card = render_model_card(checkpoint, dataset=str(data))
    assert "| data | train data.jsonl |" in card and str(tmp_path) not in card and "corpora" not in card
    card = render_model_card(checkpoint, base_model=f"continued from {data.parent} at step 3")
    assert "continued from my corpora at step 3" in card and str(tmp_path) not in card
