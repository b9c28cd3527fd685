"""Recipes log to TensorBoard by default: a tiny `hf-etrag train` run leaves event files under its `output_dir`
holding every value the trainer logged (loss terms, retrieval statistics, per-group learning rates, index
refreshes), and `report_to: none` (in the recipe or as a flag) still turns it off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hf_etrag.cli import main
from hf_etrag.recipes.arguments import parse_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.fixture(scope="module")
def tiny_recipe(tiny_open_qa_files) -> dict:
    """An open-QA recipe on the synthetic knowledge base with a tiny BERT retriever (and the bert2bert generator
    warm-started from it): two steps, a log, an index refresh and an evaluation every step."""
    data = tiny_open_qa_files["qa"]
    return {
        "task": "open_qa",
        "train_source": data,
        "corpus_source": data,
        "eval_source": data,
        "eval_split": "train",
        "eval_limit": 4,
        "train_limit": 16,
        "retriever_name_or_path": tiny_open_qa_files["bert"],
        "objective": "rag_sequence",
        "n_docs": 2,
        "max_passage_length": 32,
        "max_context_length": 48,
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        "learning_rate": 1.0e-3,
        "retriever_learning_rate": 1.0e-4,
        "refresh_steps": 1,
        "logging_steps": 1,
        "eval_strategy": "steps",
        "eval_steps": 2,
        "save_strategy": "no",
        "disable_tqdm": True,
        "use_cpu": True,
    }


def _event_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("events.out.tfevents.*"))


def test_a_recipe_run_writes_every_logged_value_to_tensorboard(tmp_path, tiny_recipe):
    output_dir = tmp_path / "run"
    path = tmp_path / "recipe.yaml"
    path.write_text(
        yaml.safe_dump({**tiny_recipe, "output_dir": str(output_dir)})
    )  # no report_to: the default
    assert main(["train", str(path)]) == 0

    files = _event_files(output_dir / "runs")
    assert len(files) == 1, files
    events = EventAccumulator(str(files[0].parent))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in (
        "train/loss",
        "train/generator_nll",
        "train/retriever_entropy",
        "train/retriever_top1_prob",
        "train/gold_in_top_k",
        "train/learning_rate",
        "train/learning_rate_retriever",
        "train/refresh_seconds",
        "eval/loss",
        "eval/retriever_entropy",
    ):
        assert tag in tags, (tag, sorted(tags))
    assert [event.step for event in events.Scalars("train/retriever_entropy")] == [1, 2]

    # Everything the trainer logged (trainer_state.json) is in the event file, under TensorBoard's names.
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    logged = {key for entry in history for key, value in entry.items() if isinstance(value, (int, float))}
    logged.discard("step")  # the x axis, not a value
    expected = {f"eval/{key[5:]}" if key.startswith("eval_") else f"train/{key}" for key in logged}
    assert expected <= tags, sorted(expected - tags)


def test_report_to_none_in_the_recipe_or_as_a_flag_writes_no_event_files(tmp_path, tiny_recipe):
    recipe = {**tiny_recipe, "output_dir": str(tmp_path / "run")}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert parse_recipe(path).training.report_to == ["tensorboard"]
    assert parse_recipe(path, ["--report_to", "none"]).training.report_to == []
    path.write_text(yaml.safe_dump({**recipe, "report_to": "none"}))
    assert parse_recipe(path).training.report_to == []
    # A short run with the flag: no `runs/` folder at all.
    quick = {**recipe, "max_steps": 1, "eval_strategy": "no", "refresh_steps": 0}
    path.write_text(yaml.safe_dump(quick))
    assert main(["train", str(path), "--report_to", "none"]) == 0
    assert _event_files(tmp_path / "run") == []


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_recipes_log_to_tensorboard(path, monkeypatch):
    monkeypatch.chdir(RECIPES.parent)
    assert parse_recipe(path).training.report_to == ["tensorboard"]
