"""Recipe values are checked by their field's type, choices and range before anything loads, with the file, the
key and the fix in the message; `hf-etrag` prints one line and exits 2 for every failure a user can fix (a
traceback only for real bugs); one `hf-etrag train` per `output_dir` at a time. Rows of docs/errors.md."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hf_etrag.atomic import atomic_write_text
from hf_etrag.cli import main
from hf_etrag.data.sources import read_source
from hf_etrag.recipes import pipeline
from hf_etrag.recipes.arguments import ModelArguments, load_recipe_yaml, parse_recipe
from hf_etrag.recipes.lock import LOCK_FILE
from hf_etrag.training.arguments import EtragTrainingArguments

BASE = "task: open_qa\ntrain_source: t.jsonl\ncorpus_source: c.jsonl\nreport_to: none\n"


def _recipe(tmp_path: Path, body: str, base: str = BASE) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(base + f"output_dir: {tmp_path / 'run'}\n" + body)
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "max_steps: [1, 2]\n",
            r"recipe\.yaml: key 'max_steps' must be an integer; got list \[1, 2\]\. Fix: write a whole number\.",
        ),
        (
            "save_strategy: no\n",
            r"key 'save_strategy' must be one of 'no', 'steps', 'epoch', 'best'; got bool False\. Fix: quote it: "
            r'"no" \(YAML reads an unquoted no as a boolean\)',
        ),
        ("decoding: tokne\n", r"key 'decoding' must be one of .*; got 'tokne'\. Fix: did you mean 'token'\?"),
        ("learning_rate: fast\n", r"key 'learning_rate' must be a number; got 'fast'"),
        ("use_peft: maybe\n", r"key 'use_peft' must be true or false; got 'maybe'"),
        ("train_split: 2020\n", r"key 'train_split' must be a string or null; got int 2020\. Fix: quote it"),
        ("objective_kwargs: [1]\n", r"key 'objective_kwargs' must be a mapping or a string or null"),
    ],
)
def test_a_value_of_the_wrong_type_names_the_file_the_key_and_the_fix(tmp_path, body, message):
    with pytest.raises(ValueError, match=message):
        parse_recipe(_recipe(tmp_path, body))


def test_a_task_that_does_not_exist_is_refused_by_the_file_not_routed_to_a_loader(tmp_path):
    path = _recipe(tmp_path, "", base=BASE.replace("open_qa", "summarisation"))
    with pytest.raises(ValueError, match=r"recipe\.yaml: key 'task' must be one of 'relation_extraction', "):
        parse_recipe(path)


def test_values_that_argparse_would_convert_pass_and_a_single_list_item_becomes_a_list(tmp_path):
    body = "learning_rate: 1e-4\nmax_steps: '7'\nuse_peft: 'yes'\nlora_target_modules: q_proj\nsave_strategy: 'no'\n"
    recipe = parse_recipe(_recipe(tmp_path, body))
    assert recipe.training.learning_rate == pytest.approx(1e-4) and recipe.training.max_steps == 7
    assert recipe.peft.use_peft is True and recipe.peft.lora_target_modules == ["q_proj"]
    assert load_recipe_yaml(_recipe(tmp_path, "peft_on_retriever: true\n"))["peft_on_retriever"] is True


def test_a_key_set_twice_is_refused_with_both_lines(tmp_path):
    with pytest.raises(
        ValueError, match=r"recipe\.yaml, line 7: key 'max_steps' is set twice \(first on line 6\)"
    ):
        parse_recipe(_recipe(tmp_path, "max_steps: 3\nmax_steps: 4\n"))
    with pytest.raises(ValueError, match=r"key 'mis_steps' is set twice"):
        parse_recipe(_recipe(tmp_path, "objective: jsa\nobjective_kwargs: {mis_steps: 3, mis_steps: 4}\n"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("max_steps: -5\n", r"`max_steps` must be a positive number of optimiser steps, or -1 .*; got -5"),
        ("max_steps: 0\n", r"`max_steps` must be a positive number"),
        ("save_steps: -3\n", r"`save_steps` must be > 0 .*; got -3"),
        ("logging_steps: 0\n", r"`logging_steps` must be > 0"),
        ("per_device_train_batch_size: 0\n", r"`per_device_train_batch_size` must be >= 1; got 0"),
        ("gradient_accumulation_steps: 0\n", r"`gradient_accumulation_steps` must be >= 1"),
        ("warmup_steps: -1\n", r"`warmup_steps` must be >= 0; got -1"),
        ("learning_rate: -1.0e-4\n", r"`learning_rate` must be >= 0"),
        ("num_train_epochs: 0\n", r"`num_train_epochs` must be > 0"),
        ("refresh_steps: -2\n", r"`refresh_steps` must be >= 0"),
    ],
)
def test_out_of_range_training_values_are_refused_with_the_recipe_file_named(tmp_path, body, message):
    with pytest.raises(ValueError, match=r"recipe\.yaml: " + message):
        parse_recipe(_recipe(tmp_path, body))


def test_a_range_error_with_flags_says_it_may_come_from_a_flag(tmp_path):
    with pytest.raises(ValueError, match=r"recipe\.yaml \(or a command-line flag\): `max_steps` must be"):
        parse_recipe(_recipe(tmp_path, ""), ["--max_steps", "-3"])
    with pytest.raises(ValueError, match="`save_steps` must be > 0"):
        EtragTrainingArguments(output_dir=str(tmp_path), save_steps=-1)  # the Python API too


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"objective": "jsa", "objective_kwargs": {"mis_stepz": 3}},
            r"`objective_kwargs` has an option 'mis_stepz' that 'jsa' does not take; its options are "
            r"\['mis_steps', 'posterior_n_docs'\]\. Did you mean 'mis_steps'\?",
        ),
        ({"objective_kwargs": {"beta": 1.0}}, r"'rag_sequence' does not take; it takes no options"),
        ({"auxiliary_losses": {"pdst": 0.5}}, r"unknown loss 'pdst'\. Did you mean 'pdist'\?"),
        (
            {"auxiliary_losses": {"pdist": 0.5}, "auxiliary_loss_kwargs": {"pdist": {"temprature": 0.1}}},
            r"`auxiliary_loss_kwargs\.pdist` has an option 'temprature' that 'pdist' does not take",
        ),
    ],
)
def test_unknown_objective_options_are_refused_before_the_model_loads(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelArguments(**kwargs)


def _cli_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_cli_yaml_syntax_error_is_one_line_with_the_file_and_line(tmp_path, capsys):
    path = _recipe(tmp_path, "objective_kwargs: {mis_steps: 3\n")
    err = _cli_error(["train", str(path)], capsys)
    assert err.startswith(f"hf-etrag train: {path}, line ") and "not valid YAML" in err


def test_cli_non_utf8_recipe_names_the_file(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(BASE.encode() + "generator_prompt_template: 'Qu\xe9 {question}'\n".encode("latin-1"))
    err = _cli_error(["train", str(path)], capsys)
    assert f"{path}: not UTF-8 text (byte 0xe9" in err and "Fix: save the file as UTF-8" in err


def test_cli_recipe_that_is_a_folder_or_missing(tmp_path, capsys):
    assert "is a folder, not a file" in _cli_error(["train", str(tmp_path)], capsys)
    assert "does not exist" in _cli_error(["train", str(tmp_path / "nope.yaml")], capsys)


def test_cli_existing_file_as_output_dir_is_refused_up_front(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("mine")
    path = tmp_path / "recipe.yaml"
    path.write_text(BASE + f"output_dir: {taken}\n")
    err = _cli_error(["train", str(path)], capsys)
    assert f"`output_dir` '{taken}' is an existing file, not a folder" in err
    assert taken.read_text() == "mine"


def test_cli_missing_model_folder_names_the_key_before_anything_is_made(tmp_path, capsys):
    path = _recipe(tmp_path, f"retriever_name_or_path: {tmp_path / 'no-such-model'}\n")
    err = _cli_error(["train", str(path)], capsys)
    assert (
        f"`retriever_name_or_path` '{tmp_path / 'no-such-model'}' is a local path that does not exist" in err
    )
    assert not (tmp_path / "run").exists()


def test_cli_non_utf8_data_file_names_the_file_and_line(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_bytes(b'{"question": "a", "answers": ["b"]}\n{"question": "caf\xe9", "answers": ["x"]}\n')
    with pytest.raises(ValueError, match=r"train\.jsonl is not UTF-8 text: byte 0xe9 on line 2"):
        read_source(data)


def test_cli_corrupt_saved_recipe_on_evaluate_names_the_file(tmp_path, capsys):
    (tmp_path / "etrag_recipe.json").write_text('{"model": {')
    err = _cli_error(["evaluate", str(tmp_path)], capsys)
    assert f"{tmp_path / 'etrag_recipe.json'} is corrupt or not a recipe written by `hf-etrag train`" in err


def test_a_real_bug_keeps_its_traceback_and_the_env_var_shows_one_for_expected_failures(
    tmp_path, monkeypatch, capsys
):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(pipeline, "run_training", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["train", str(_recipe(tmp_path, ""))])
    assert not (tmp_path / "run" / LOCK_FILE).exists(), "the lock is released after a crash"
    monkeypatch.setenv("HF_ETRAG_TRACEBACK", "1")
    assert main(["train", str(_recipe(tmp_path, "max_steps: -5\n"))]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("hf-etrag train: ")


def test_a_second_train_into_a_locked_output_dir_is_refused(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(pipeline, "run_training", lambda *a, **k: calls.append(a))
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    err = _cli_error(["train", str(_recipe(tmp_path, ""))], capsys)
    assert f"Refusing to train into {run}: another `hf-etrag train` (pid {os.getpid()} on" in err
    assert "Fix: set another `output_dir`" in err
    assert calls == [] and (run / LOCK_FILE).exists(), "nothing ran; the other run's lock stays"


def test_a_stale_lock_is_taken_over_and_the_lock_is_released_at_the_end(tmp_path, monkeypatch, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    held = []
    monkeypatch.setattr(
        pipeline, "run_training", lambda *a, **k: held.append(json.loads((run / LOCK_FILE).read_text()))
    )
    assert main(["train", str(_recipe(tmp_path, ""))]) == 0
    assert held == [{"pid": os.getpid(), "host": socket.gethostname()}]
    assert "Taking over the stale lock" in caplog.text and f"pid {dead.pid}" in caplog.text
    assert not (run / LOCK_FILE).exists()


def test_only_the_main_process_takes_the_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    seen = []
    monkeypatch.setattr(
        pipeline, "run_training", lambda *a, **k: seen.append(list((tmp_path / "run").iterdir()))
    )
    (tmp_path / "run").mkdir()
    assert main(["train", str(_recipe(tmp_path, ""))]) == 0
    assert seen == [[]]


def test_atomic_write_text_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "etrag_recipe.json"
    path.write_text("old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["etrag_recipe.json"]


def test_tokenizer_saves_are_atomic_and_keep_what_they_did_not_write(tmp_path, tokenizer, monkeypatch):
    from hf_etrag.modeling.tokenization import EtragTokenizers

    tokenizers = EtragTokenizers(retriever=tokenizer)
    tokenizers.save_pretrained(tmp_path)
    folder = tmp_path / "retriever_tokenizer"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    (folder / "notes.txt").write_text("mine")

    def crash(self, save_directory, **kwargs):
        (Path(save_directory) / "tokenizer_config.json").write_text("{half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(tokenizer), "save_pretrained", crash)
    with pytest.raises(OSError, match="No space left"):
        tokenizers.save_pretrained(tmp_path)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name != "notes.txt"} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["retriever_tokenizer"], (
        "no temporary folder is left"
    )
    monkeypatch.undo()
    files = tokenizers.save_pretrained(tmp_path)
    assert (folder / "notes.txt").read_text() == "mine" and all(Path(f).parent == folder for f in files)


def test_errors_doc_lists_the_recipe_and_cli_rows():
    table = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text()
    for phrase in [
        "key 'max_steps' must be an integer; got list [1, 2]",
        "is set twice (first on line 6)",
        "not valid YAML",
        "not UTF-8 text",
        "got bool False. Fix: quote it",
        "`max_steps` must be a positive number of optimiser steps",
        "that 'jsa' does not take",
        "is an existing file, not a folder",
        "is a local path that does not exist",
        "Refusing to train into <output_dir>: another `hf-etrag train`",
        "Taking over the stale lock",
        "is corrupt or not a recipe written by `hf-etrag train`",
        "A weights file of <folder> (model.safetensors, or a base model it loads) is corrupt or truncated",
        "Evaluating with n_docs=2, the model's own",
        "HF_ETRAG_TRACEBACK=1",
    ]:
        assert phrase in table, phrase
