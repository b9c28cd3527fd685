"""The command line's help: fast (no torch, transformers or datasets), grouped, with defaults; `--help-all` lists
the Trainer's keys. And the lazy package exports that keep `hf-etrag --help` fast."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

import hf_etrag
from hf_etrag.cli import main
from hf_etrag.recipes.arguments import DEFAULT_RELATION_TEMPLATE, make_recipe_parser, project_argument_classes
from hf_etrag.recipes.help import KEY_GROUPS, format_train_help, grouped_keys

HEAVY = ("torch", "transformers", "datasets", "peft", "faiss")


def _modules_loaded_by(argv: list[str]) -> list[str]:
    """Run `hf-etrag ARGV` in a fresh interpreter; the heavy libraries it imported."""
    script = (
        "import json, sys\n"
        "from hf_etrag.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "80"},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"], ["train", "--help"], ["demo", "--help"], ["evaluate", "--help"]],
    ids=" ".join,
)
def test_help_imports_no_torch_transformers_or_datasets(argv):
    assert _modules_loaded_by(argv) == []


def test_import_hf_etrag_is_lazy_and_every_export_resolves():
    done = subprocess.run(
        [sys.executable, "-c", f"import sys, hf_etrag; print([m for m in {HEAVY!r} if m in sys.modules])"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"
    assert set(hf_etrag.__all__) == {*hf_etrag._EXPORTS, "__version__"}
    for name in hf_etrag.__all__:
        assert getattr(hf_etrag, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        hf_etrag.nope  # noqa: B018


def test_train_help_groups_the_projects_keys_with_defaults_in_at_most_150_lines(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")  # what `hf-etrag train --help | wc -l` gets: a pipe has no width
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) <= 150, len(out.splitlines())
    for title in ("model:", "objective:", "retrieval and index:", "data:", "PEFT:"):
        assert f"\n{title}\n" in out
    assert "--n_docs INT" in out and "(default: 5)" in out
    assert "--reader_warmup_steps" in out and "--use_peft" in out and "--refresh_steps" in out
    # The Trainer's keys are named in one closing sentence, listed only by --help-all.
    assert "--gradient_accumulation_steps" not in out and "--max_steps" not in out
    assert "--help-all" in out


def test_train_help_all_lists_every_key_the_recipe_parser_reads(capsys):
    assert main(["train", "--help-all"]) == 0
    out = capsys.readouterr().out
    assert "Trainer (TrainingArguments):" in out
    assert "--gradient_accumulation_steps INT" in out and "--max_steps" in out and "--report_to" in out
    parser = make_recipe_parser()
    for cls in parser.dataclass_types:
        for field in dataclasses.fields(cls):
            if field.init:
                assert f"--{field.name} " in out or f"--{field.name}\n" in out, field.name
    # --help-all gives the full help text; --help its first sentence.
    assert "K x K generator passes" in out
    assert "K x K generator passes" not in format_train_help()


def test_every_project_key_is_in_exactly_one_help_group():
    keys = [f.name for cls in project_argument_classes() for f in dataclasses.fields(cls) if f.init]
    grouped = [name for names in KEY_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(
        keys
    )  # none missing (it would land under "other"), none unknown, no repeats
    assert "other" not in grouped_keys()


def test_train_help_parses_the_same_keys_as_before(tmp_path):
    # The help is a description only: the recipe parser still takes every project key as a flag.
    recipe_args = [
        "--task",
        "open_qa",
        "--train_source",
        "t",
        "--corpus_source",
        "c",
        "--output_dir",
        str(tmp_path),
    ]
    parser = make_recipe_parser()
    model, data, training, peft = parser.parse_args_into_dataclasses(
        args=[*recipe_args, "--refresh_steps", "4", "--lora_r", "8", "--gradient_accumulation_steps", "2"],
        look_for_args_file=False,
    )
    assert (training.refresh_steps, peft.lora_r, training.gradient_accumulation_steps) == (4, 8, 2)


def test_relation_template_default_matches_the_data_layers():
    from hf_etrag.data.relation import DEFAULT_RELATION_TEMPLATE as data_default

    assert DEFAULT_RELATION_TEMPLATE == data_default


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("demo", ["(default: 60)", "(default: 100)"]),
        ("diagnose-gradients", ["(default: 16)", "(default: query_encoder)"]),
        ("evaluate", ["(default: the recipe's"]),
    ],
)
def test_every_subcommand_shows_its_defaults(command, shown, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    for text in shown:
        assert text in out
    assert "(default: None)" not in out  # a None default is explained in the help text instead
