"""The model card of a tiny trained model: every section states what the run really was, and the example card in
`model_cards/` still matches what the packaged template renders."""

import json
import re
from pathlib import Path

import pytest
import transformers
from huggingface_hub import ModelCard

from hf_etrag.adapters.apply import PeftArguments, apply_peft
from hf_etrag.modeling.tokenization import EtragTokenizers
from hf_etrag.training.arguments import EtragTrainingArguments
from hf_etrag.training.trainer import EtragTrainer

from ..tiny_checkpoints import model_from_parts, save_tiny_parts

EXAMPLE = Path(__file__).resolve().parents[2] / "model_cards" / "example-tiny-lora-rag-sequence.md"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tokenizer, _base_index, qa_train):
    """A LoRA generator with a fully trained query encoder, trained 2 steps and evaluated once, with a
    `metrics.json` as `hf-etrag evaluate` leaves it."""
    root = tmp_path_factory.mktemp("card")
    parts = save_tiny_parts(root / "bases", tokenizer)
    model = model_from_parts(parts, "bart", _base_index)
    apply_peft(model, PeftArguments(use_peft=True, lora_r=4, lora_alpha=8))
    args = EtragTrainingArguments(
        output_dir=str(root / "run"),
        hub_model_id="someone/tiny-card",
        max_steps=2,
        learning_rate=3e-3,
        per_device_train_batch_size=4,
        hub_token="hf_secret_token",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
    )
    trainer = EtragTrainer(model, args, train_dataset=qa_train, processing_class=EtragTokenizers(tokenizer))
    trainer.train()
    trainer.evaluate(qa_train.select(range(4)))
    # as `hf-etrag evaluate` writes it: settings, scores, nested per-relation scores
    metrics = {"checkpoint": str(root / "run"), "split": "test", "exact_match": 0.25, "recall@5": 0.5,
               "per_relation": {"born_in": {"f1": 0.125}}}  # fmt: skip
    (root / "run" / "evaluation-test").mkdir()
    (root / "run" / "evaluation-test" / "metrics.json").write_text(json.dumps(metrics))
    trainer.create_model_card(dataset_name="synthetic-people", tags=["tiny"])
    return trainer, parts, (root / "run" / "README.md").read_text()


def _headings(card: str) -> list[str]:
    """Markdown headings outside code blocks (a bibtex or Python line never counts)."""
    text = re.sub(r"```.*?```", "", card, flags=re.S)
    return [line for line in text.splitlines() if line.startswith("#")]


def test_card_states_objective_bases_peft_data_hyperparameters_metrics_and_usage(trained):
    trainer, parts, card = trained
    metadata = ModelCard(card).data
    assert metadata.library_name == "hf-etrag" and metadata.model_name == "tiny-card"
    assert {"hf-etrag", "rag_sequence", "tiny"} <= set(metadata.tags)
    assert metadata.datasets == ["synthetic-people"]

    assert "with the\n`rag_sequence` objective" in card
    assert f"| query + document encoder (bert) | {parts['bert']} | full (`model.safetensors`) |" in card
    assert f"| generator (bart) | {parts['bart']} | LORA adapters (`generator_adapter/`) only |" in card
    assert "Trained in this run: generator, query_encoder." in card
    assert (
        "- `generator`: LORA, r=4, lora_alpha=8, lora_dropout=0.05, target_modules=['q_proj', 'v_proj']"
        in card
    )
    assert "Retrieval: 3 passages per query, mean pooling, dot" in card
    assert "- synthetic-people" in card

    assert "| learning_rate | 0.003 |" in card and "| max_steps | 2 |" in card
    assert "| per_device_train_batch_size | 4 |" in card
    assert "hf_secret_token" not in card and "hub_token" not in card

    last_eval = [entry for entry in trainer.state.log_history if "eval_loss" in entry][-1]
    assert f"From the Trainer's last evaluation (step {last_eval['step']}):" in card
    assert f"| eval_loss | {round(last_eval['eval_loss'], 4)} |" in card
    assert f"| eval_retriever_entropy | {round(last_eval['eval_retriever_entropy'], 4)} |" in card
    assert "eval_runtime" not in card
    assert "From `evaluation-test/metrics.json` (`hf-etrag evaluate`):" in card
    assert "| exact_match | 0.25 |" in card and "| recall@5 | 0.5 |" in card and "| split | test |" in card
    assert "| per_relation/born_in/f1 | 0.125 |" in card
    assert str(trainer.args.output_dir) not in card  # the evaluated checkpoint's local path stays out

    assert 'model = EtragModel.from_pretrained("someone/tiny-card")' in card
    assert 'EtragTokenizers.from_pretrained("someone/tiny-card")' in card
    assert "PassageIndex.from_pretrained" not in card.split("```python")[1]  # the index was not pushed
    assert f"- transformers: {transformers.__version__}" in card
    assert "@inproceedings{lewis2020rag" in card  # the objective's citation


def test_example_card_matches_the_template(trained):
    """`model_cards/` holds a rendered example (`python model_cards/generate_example.py`); if the template changes,
    the example must be regenerated."""
    _, _, card = trained
    assert _headings(EXAMPLE.read_text()) == [
        h.replace("tiny-card", "tiny-lora-rag-sequence") for h in _headings(card)
    ]


def test_card_replaces_an_earlier_card_but_not_someone_elses_readme(trained, tmp_path):
    from hf_etrag.hub.model_card import card_data_from_model, write_model_card

    trainer, _, card = trained
    data = card_data_from_model(trainer.etrag_model, model_name="tiny-card")
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "README.md").write_text("# My project\n\nNotes that are not a model card.\n")
    with pytest.raises(
        FileExistsError,
        match=r"Refusing to write the model card to .*README.md: that README.md is not "
        r"an hf-etrag model card \(no `library_name: hf-etrag`",
    ):
        write_model_card(data, folder)
    assert (folder / "README.md").read_text().startswith("# My project")
    (folder / "README.md").write_text(card)  # an earlier hf-etrag card: replaced
    write_model_card(data, folder)
    assert "library_name: hf-etrag" in (folder / "README.md").read_text()
    assert sorted(p.name for p in folder.iterdir()) == ["README.md"]
