"""Recipes: every shipped YAML parses into the arguments classes (no model loading), unknown keys and bad
combinations fail with messages that name the problem, and command-line flags override the file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from hf_etrag.cli import main
from hf_etrag.recipes.arguments import (
    DataArguments,
    ModelArguments,
    load_recipe_yaml,
    make_recipe_parser,
    parse_recipe,
)

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
SHIPPED = sorted(RECIPES.glob("*.yaml"))
EXPECTED = {
    "semeval_etrag",
    "semeval_no_retrieval",
    "squad_open_rag_sequence",
    "squad_open_rag_token",
    "squad_open_jsa",
    "squad_open_vrag",
    "squad_open_frozen_retriever",
    "wow_jsa",
    "wow_frozen_retriever",
}


def test_all_expected_recipes_are_shipped():
    assert EXPECTED <= {path.stem for path in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_recipe_parses_with_a_header_and_data_under_shared(path, monkeypatch):
    text = path.read_text()
    assert text.startswith("#"), "each recipe opens with a comment saying what it runs and its CPU wall time"
    assert "wall time" in text.split("\n\n")[0]
    # Paths are relative to the project root, where the lead runs `hf-etrag train recipes/...`.
    monkeypatch.chdir(RECIPES.parent)
    recipe = parse_recipe(path)
    assert recipe.training.output_dir
    nothing_trains = recipe.model.freeze_retriever and recipe.model.freeze_generator
    assert (recipe.training.max_steps > 0) != nothing_trains
    assert recipe.training.do_predict and recipe.data.test_source
    for source in (recipe.data.train_source, recipe.data.test_source, recipe.data.corpus_source):
        if source:
            assert Path(source).exists(), f"{path.name}: {source} is missing"
            assert "shared/data" in source


def test_frozen_and_end_to_end_squad_recipes_differ_only_in_the_retriever():
    frozen = load_recipe_yaml(RECIPES / "squad_open_frozen_retriever.yaml")
    for name in ("rag_sequence", "rag_token", "jsa", "vrag"):
        end_to_end = load_recipe_yaml(RECIPES / f"squad_open_{name}.yaml")
        for key in (
            "generator_name_or_path",
            "freeze_generator",
            "use_peft",
            "lora_r",
            "lora_alpha",
            "lora_target_modules",
            "generator_prompt_template",
            "reader_warmup_steps",
            "learning_rate",
            "lr_scheduler_type",
            "max_steps",
            "per_device_train_batch_size",
            "test_limit",
            "test_generation_limit",
            "decoding",
            "max_new_tokens",
            "seed",
            "n_docs",
            "max_passage_length",
            "max_context_length",
        ):
            assert end_to_end.get(key) == frozen.get(key), (name, key)
        assert not end_to_end.get("freeze_retriever") and end_to_end["train_doc_encoder"] is True
    # Every SQuAD recipe trains the reader's LoRA adapter; the baseline keeps only the retriever frozen.
    assert (
        frozen["freeze_retriever"] is True
        and frozen["freeze_generator"] is False
        and frozen["use_peft"] is True
    )
    assert frozen["max_steps"] > 0 and frozen["reader_warmup_steps"] > 0
    assert frozen["test_generation_limit"] >= 200


def test_etrag_and_its_no_retrieval_baseline_run_the_same_steps():
    etrag = load_recipe_yaml(RECIPES / "semeval_etrag.yaml")
    baseline = load_recipe_yaml(RECIPES / "semeval_no_retrieval.yaml")
    assert baseline["n_docs"] == 0 and etrag["n_docs"] > 0
    for key in ("max_steps", "per_device_train_batch_size", "learning_rate", "train_limit", "test_limit"):
        assert etrag[key] == baseline[key], key


def test_unknown_key_names_the_key_the_file_and_a_suggestion(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("task: open_qa\nlerning_rate: 1.0e-4\n")
    with pytest.raises(
        ValueError, match=r"typo\.yaml: unknown key 'lerning_rate'\. Did you mean 'learning_rate'\?"
    ):
        parse_recipe(path)


def test_command_line_flags_override_the_file_and_strings_are_converted(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "task: open_qa\ntrain_source: t.jsonl\ncorpus_source: c.jsonl\noutput_dir: out\n"
        "learning_rate: 1e-4\nmax_steps: 50\nobjective: etrag\nn_docs: 5\nobjective_kwargs: {tau: 0.5}\n"
    )
    recipe = parse_recipe(path, ["--max_steps", "3", "--n_docs", "0"])
    assert recipe.training.max_steps == 3
    assert recipe.training.learning_rate == pytest.approx(1e-4)  # YAML reads 1e-4 as a string
    assert recipe.model.n_docs == 0
    assert recipe.model.etrag_objective_kwargs() == {"tau": 0.5, "k": 0}
    assert recipe.data.reader_warmup_steps == 0


def test_dict_fields_take_json_on_the_command_line(tmp_path):
    recipe = parse_recipe(
        None,
        ["--task", "open_qa", "--train_source", "t", "--corpus_source", "c", "--output_dir", str(tmp_path)]
        + ["--objective", "jsa", "--objective_kwargs", '{"mis_steps": 4}'],
    )
    assert recipe.model.objective_kwargs == {"mis_steps": 4}
    with pytest.raises(ValueError, match="`objective_kwargs` must be a JSON object"):
        ModelArguments(objective_kwargs="{mis_steps: 4")


@pytest.mark.parametrize(
    ("model", "data", "message"),
    [
        ({"objective": "rag_sequence"}, {"task": "relation_extraction"}, "only `objective: etrag`"),
        ({"objective": "etrag"}, {"reader_warmup_steps": 5}, "reads no passages"),
    ],
)
def test_inconsistent_combinations_are_refused(tmp_path, model, data, message):
    data = {"task": "open_qa", "train_source": "t", "corpus_source": "c", **data}
    flags = [f"--{k}={v}" for k, v in {**model, **data, "output_dir": tmp_path}.items()]
    with pytest.raises(ValueError, match=message):
        parse_recipe(None, flags)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_docs": 0}, "only with `objective: etrag`"),
        ({"objective": "nope"}, "`objective` 'nope' is unknown"),
        ({"objective": "etrag", "n_docs": 5, "objective_kwargs": {"k": 2}}, "disagree"),
        ({"dropout": 1.5}, "`dropout` must be in"),
        ({"generator_prompt_template": "Q: {query}"}, "must contain {question}"),
        ({"generator_prompt_template": "Q: {question} A:"}, "need a generator with its own tokenizer"),
        ({"generator_answer_prefix": " "}, "need a generator with its own tokenizer"),
    ],
)
def test_model_arguments_validate(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelArguments(**kwargs)


def test_data_arguments_validate_and_pin_local_paths(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="`task` must be set"):
        DataArguments(train_source="x")
    with pytest.raises(ValueError, match="set `corpus_source`"):
        DataArguments(task="open_qa", train_source="x")
    with pytest.raises(ValueError, match="`test_limit` must be >= 1"):
        DataArguments(task="relation_extraction", train_source="x", test_limit=0)
    (tmp_path / "train.json").write_text("[]")
    monkeypatch.chdir(tmp_path)
    args = DataArguments(task="relation_extraction", train_source="train.json", test_source="org/hub-id")
    assert args.train_source == str(
        tmp_path / "train.json"
    )  # relative to the working directory, made absolute
    assert args.test_source == "org/hub-id"  # not a local path: a Hub id stays as written


def test_no_field_name_is_shared_between_argument_classes():
    parser = make_recipe_parser()
    names = [f.name for cls in parser.dataclass_types for f in dataclasses.fields(cls) if f.init]
    assert len(names) == len(set(names))


def test_train_cli_reports_a_bad_recipe_with_status_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("task: open_qa\nn_doc: 3\n")
    assert main(["train", str(path)]) == 2
    assert "unknown key 'n_doc'. Did you mean 'n_docs'?" in capsys.readouterr().err


def test_train_cli_help_lists_the_recipe_flags(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--reader_warmup_steps" in out and "--use_peft" in out
    assert main(["train", "--help-all"]) == 0  # the Trainer's keys too (tests/test_cli.py has more)
    assert "--max_steps" in capsys.readouterr().out


def test_version_flag_prints_the_installed_version(capsys):
    import hf_etrag
    from hf_etrag.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"hf-etrag {hf_etrag.__version__}"
