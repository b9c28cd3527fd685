"""One test per row of the bad-input table in `docs/errors.md`: each bad input fails at the boundary with a
message that names the field (or file), the bad value and the fix. Messages are matched on key phrases."""

import copy
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import TrainerCallback

from hf_etrag import EtragModel, PassageIndex, tokenize_corpus
from hf_etrag.data import EtragDataCollator, tokenize_qa_dataset
from hf_etrag.modeling.tokenization import EtragTokenizers
from hf_etrag.training.arguments import EtragTrainingArguments
from hf_etrag.training.trainer import EtragTrainer

from .conftest import make_config, make_training_args


def _args(tmp_path, **overrides) -> EtragTrainingArguments:
    return make_training_args(tmp_path, **overrides)


# ---- corpus ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rows", "phrases"),
    [
        ([], ["corpus is empty", "give at least one row"]),
        (
            [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}],
            ["Passage id 'a' appears more than once", "drop the duplicate rows or give them their own ids"],
        ),
        (
            [{"id": "a", "text": "x"}, {"id": "b", "text": "  "}],
            ["Passage 'b' (row 1) has no text", "drop it or fill its `text` field"],
        ),
        ([{"id": "a", "text": "x"}, {"id": "b", "text": None}], ["Passage 'b' (row 1) has no text"]),
    ],
    ids=["empty", "duplicate_id", "blank_text", "null_text"],
)
def test_bad_corpus(tokenizer, rows, phrases):
    corpus = Dataset.from_list(rows) if rows else Dataset.from_dict({"id": [], "text": []})
    with pytest.raises(ValueError) as error:
        tokenize_corpus(corpus, tokenizer)
    for phrase in phrases:
        assert phrase in str(error.value)


# ---- n_docs ---------------------------------------------------------------------------------------------
def test_n_docs_zero(tokenizer):
    with pytest.raises(ValueError, match=r"`n_docs` must be an integer >= 1; got 0"):
        make_config(tokenizer, n_docs=0)


def test_n_docs_larger_than_the_corpus(model_and_index, qa_train):
    model, index = model_and_index
    model.config.n_docs = len(index) + 1
    batch = EtragDataCollator(0, 0)([qa_train[i] for i in range(2)])
    with pytest.raises(ValueError) as error:
        model(**batch)
    message = str(error.value)
    assert f"`n_docs` must be between 1 and the corpus size ({len(index)}); got {len(index) + 1}" in message
    assert "Lower `n_docs`" in message


# ---- index vs encoder -----------------------------------------------------------------------------------
def test_index_built_with_another_embedding_size(model_and_index, qa_train):
    model, index = model_and_index
    model.set_index(PassageIndex(index.corpus, embeddings=np.ones((len(index), 7), np.float32)))
    batch = EtragDataCollator(0, 0)([qa_train[i] for i in range(2)])
    with pytest.raises(
        ValueError, match=r"Query vectors have size 32 but the index holds vectors of size 7: rebuild"
    ):
        model(**batch)


# ---- tokenizer / model vocabulary -----------------------------------------------------------------------
def test_tokenizer_larger_than_the_generator_vocabulary(tmp_path, _base_model, tokenizer):
    model = copy.deepcopy(_base_model)
    model.generator.resize_token_embeddings(100)
    with pytest.raises(ValueError) as error:
        EtragTrainer(model, _args(tmp_path), processing_class=EtragTokenizers(tokenizer))
    message = str(error.value)
    assert (
        f"The tokenizer shared by retriever and generator ({len(tokenizer)} tokens) has token ids up to"
        in message
    )
    assert "the generator has 100 token embeddings (vocab_size=100)" in message
    assert "`model.generator.resize_token_embeddings(len(tokenizer))`" in message


def test_corpus_tokenised_for_another_encoder(_base_model, _base_index):
    model = copy.deepcopy(_base_model)
    model.query_encoder.resize_token_embeddings(50)  # shared encoders: also the document encoder
    with pytest.raises(ValueError) as error:
        model.set_index(_base_index)
    message = str(error.value)
    assert "Corpus column `retriever_input_ids` has token ids up to" in message
    assert "the document encoder has 50 token embeddings" in message
    assert "`model.query_encoder.resize_token_embeddings(len(tokenizer))`" in message


def test_dataset_tokenised_for_another_model(tmp_path, model_and_index, qa_train):
    model, index = model_and_index
    vocab = model.query_encoder.get_input_embeddings().num_embeddings
    bad = Dataset.from_list([{**qa_train[0], "input_ids": [2, vocab + 5, 3]}])
    with pytest.raises(ValueError) as error:
        EtragTrainer(model, _args(tmp_path), index=index, train_dataset=bad)
    message = str(error.value)
    assert f"Column `input_ids` of the train_dataset has token ids up to {vocab + 5}" in message
    assert f"the query encoder has {vocab} token embeddings" in message


# ---- targets --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("labels", [[-100, -100], []], ids=["all_padding", "empty"])
def test_labels_all_padding(qa_train, labels):
    rows = [dict(qa_train[i]) for i in range(3)]
    rows[1]["labels"] = labels
    with pytest.raises(ValueError) as error:
        EtragDataCollator(0, 0)(rows)
    message = str(error.value)
    assert f"Record {rows[1]['id']!r} has no target tokens" in message
    assert "all -100 (padding)" in message and "drop it from the dataset" in message


# ---- config ---------------------------------------------------------------------------------------------
def test_unknown_objective(tokenizer):
    with pytest.raises(
        ValueError, match=r"`objective` 'rag_sequnce' is unknown; choose one of \[.*'rag_sequence'"
    ):
        make_config(tokenizer, objective="rag_sequnce")


def test_negative_max_nonfinite_steps(tmp_path):
    with pytest.raises(ValueError, match=r"`max_nonfinite_steps` must be >= 0 .* got -1"):
        _args(tmp_path, max_nonfinite_steps=-1)


# ---- datasets -------------------------------------------------------------------------------------------
def test_qa_dataset_missing_a_required_field(tokenizer):
    data = Dataset.from_list([{"question": "Who?", "answer": ["x"]}])
    with pytest.raises(ValueError, match=r"lacks field\(s\) \['answers'\]; each record needs `question`"):
        tokenize_qa_dataset(data, tokenizer)


def test_dataset_record_missing_a_required_field(tmp_path):
    from hf_etrag.data.adapters import load_open_qa

    path = tmp_path / "qa.jsonl"
    path.write_text('{"id": "q1", "question": "Who?", "answers": ["a"]}\n{"id": "q2", "answers": ["b"]}\n')
    with pytest.raises(ValueError) as error:
        load_open_qa(path)
    message = str(error.value)
    assert f"{path}, record 'q2' (line 2): field `question` is missing" in message
    assert "Add `question` (a non-empty string)" in message


def test_dialogue_with_empty_history(tmp_path):
    from hf_etrag.data.adapters import load_dialogue

    path = tmp_path / "dialogue.jsonl"
    path.write_text('{"id": "d1", "history": [], "response": "Hello."}\n')
    with pytest.raises(ValueError) as error:
        load_dialogue(path)
    message = str(error.value)
    assert "record 'd1' (line 1): field `history` is empty" in message
    assert "needs at least one earlier utterance" in message


def test_unknown_yaml_key(tmp_path):
    from hf_etrag.recipes.arguments import load_recipe_yaml

    path = tmp_path / "recipe.yaml"
    path.write_text("learning_rat: 1.0e-4\n")
    with pytest.raises(ValueError) as error:
        load_recipe_yaml(path)
    message = str(error.value)
    assert "unknown key 'learning_rat'. Did you mean 'learning_rate'?" in message
    assert "`hf-etrag train --help`" in message


# ---- corrupt or truncated index files -------------------------------------------------------------------
def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _corpus_file(folder):
    return next((folder / "corpus").glob("*.arrow"))


@pytest.mark.parametrize(
    ("damage", "file"),
    [
        (lambda f: _truncate(f / "index.faiss"), "index.faiss"),
        (lambda f: _truncate(f / "embeddings.npy"), "embeddings.npy"),
        (lambda f: (f / "index.faiss").unlink(), "index.faiss"),
        (lambda f: (f / "index_metadata.json").write_text('{"n_passages": 3,'), "index_metadata.json"),
        (lambda f: (f / "index_metadata.json").write_text('{"dim": 8}'), "index_metadata.json"),
        (lambda f: _truncate(_corpus_file(f)), "corpus"),
        (lambda f: np.save(f / "embeddings.npy", np.ones((2, 8), np.float32)), "embeddings.npy"),
    ],
    ids=["faiss_truncated", "npy_truncated", "faiss_missing", "json_broken", "json_key_missing",
         "arrow_truncated", "npy_wrong_shape"],
)  # fmt: skip
def test_corrupt_index_folder(tmp_path, tokenized_corpus, damage, file):
    embeddings = np.random.default_rng(0).standard_normal((len(tokenized_corpus), 8)).astype(np.float32)
    PassageIndex(tokenized_corpus, embeddings=embeddings).save(tmp_path / "index")
    damage(tmp_path / "index")
    with pytest.raises(ValueError) as error:
        PassageIndex.load(tmp_path / "index")
    message = str(error.value)
    assert f"{tmp_path / 'index' / file}" in message and "is corrupt or truncated" in message
    assert "Rebuild it: `PassageIndex(corpus)`" in message


# ---- safe loading ---------------------------------------------------------------------------------------
def test_pickle_only_weights_are_refused(tmp_path, _base_model):
    _base_model.save_pretrained(tmp_path / "model")
    state = load_file(str(tmp_path / "model" / "model.safetensors"))
    torch.save(state, tmp_path / "model" / "pytorch_model.bin")
    (tmp_path / "model" / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"holds only pickle weights .* `save_pretrained\(folder\)`"):
        EtragModel.from_pretrained(tmp_path / "model")
    with pytest.raises(
        ValueError, match=r"`use_safetensors=False` was passed .* loads safetensors weights only"
    ):
        EtragModel.from_pretrained(tmp_path / "model", use_safetensors=False)
    with pytest.raises(ValueError, match=r"`trust_remote_code=True` .* never runs code from a checkpoint"):
        EtragModel.from_pretrained(tmp_path / "model", trust_remote_code=True)


def test_index_folder_loads_without_pickle(tmp_path, tokenized_corpus, monkeypatch):
    index = PassageIndex(tokenized_corpus, embeddings=np.ones((len(tokenized_corpus), 4), np.float32))
    index.save(tmp_path / "index")
    calls = []
    original = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: calls.append(k) or original(*a, **k))
    PassageIndex.load(tmp_path / "index")
    assert calls and all(k.get("allow_pickle") is False for k in calls)


def test_package_never_runs_checkpoint_code_or_unpickles():
    """A grep guard: no `trust_remote_code=True`, no `torch.load`/`pickle.load`, no `allow_pickle=True`."""
    import hf_etrag

    package = Path(hf_etrag.__file__).parent
    forbidden = re.compile(
        r"(?<!`)trust_remote_code\s*=\s*True|torch\.load\(|pickle\.loads?\(|allow_pickle\s*=\s*True"
    )
    for path in package.rglob("*.py"):
        found = forbidden.search(path.read_text())
        assert found is None, f"{path.relative_to(package)} uses {found.group()}"


# ---- non-finite loss ------------------------------------------------------------------------------------
def _poison(model, bad_calls: set[int], where: str = "loss"):
    """Make the objective's loss (or one parameter's gradient) NaN on the given training calls (1-based)."""
    original = model.objective.forward
    calls = {"n": 0}

    def forward(inputs):
        calls["n"] += 1
        terms = original(inputs)
        if calls["n"] in bad_calls:
            if where == "loss":
                terms["loss"] = terms["loss"] * float(
                    "nan"
                )  # NaN *through the graph*: a backward would spread it
            else:  # a finite loss whose backward produces NaN gradients
                extra = inputs.doc_scores.sum() * 0.0
                extra.register_hook(lambda grad: grad * float("nan"))
                terms["loss"] = terms["loss"] + extra
        return terms

    model.objective.forward = forward


class _Snapshots(TrainerCallback):
    def __init__(self):
        self.params = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.params[state.global_step] = [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_nonfinite_step_is_skipped_with_a_warning(tmp_path, model_and_index, qa_train, caplog, where):
    model, index = model_and_index
    _poison(model, {2}, where)
    snapshots = _Snapshots()
    args = _args(tmp_path, max_steps=3)
    trainer = EtragTrainer(model, args, index=index, train_dataset=qa_train, callbacks=[snapshots])
    with caplog.at_level(logging.WARNING, logger="hf_etrag.training.trainer"):
        trainer.train()
    assert trainer.state.global_step == 3
    expected = "Non-finite loss (nan) at step 2" if where == "loss" else "Non-finite gradient at step 2"
    assert any(expected in record.getMessage() for record in caplog.records)
    unchanged = all(torch.equal(a, b) for a, b in zip(snapshots.params[1], snapshots.params[2], strict=True))
    assert unchanged, "the skipped step moved weights (a stale momentum update or a NaN gradient)"
    assert not all(torch.equal(a, b) for a, b in zip(snapshots.params[2], snapshots.params[3], strict=True))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert all(np.isfinite(entry["loss"]) for entry in logged)
    assert logged[-1]["nonfinite_steps"] == 1


def test_nonfinite_micro_batch_keeps_the_others_gradient(tmp_path, model_and_index, qa_train):
    model, index = model_and_index
    _poison(model, {3})  # the first micro-batch of optimiser step 2
    snapshots = _Snapshots()
    args = _args(tmp_path, max_steps=2, gradient_accumulation_steps=2)
    EtragTrainer(model, args, index=index, train_dataset=qa_train, callbacks=[snapshots]).train()
    assert not all(torch.equal(a, b) for a, b in zip(snapshots.params[1], snapshots.params[2], strict=True))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_too_many_nonfinite_steps_in_a_row_stop_training(tmp_path, model_and_index, qa_train):
    model, index = model_and_index
    _poison(model, set(range(1, 100)))
    trainer = EtragTrainer(model, _args(tmp_path, max_nonfinite_steps=2), index=index, train_dataset=qa_train)
    with pytest.raises(RuntimeError) as error:
        trainer.train()
    message = str(error.value)
    assert (
        "Training stopped at step 3: the loss or gradient was NaN/inf in 3 optimiser steps in a row"
        in message
    )
    assert "more than `max_nonfinite_steps`=2" in message and "Lower `learning_rate`" in message
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_errors_doc_lists_every_row():
    """docs/errors.md is the table these tests check; keep them in step."""
    table = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    for phrase in [
        "corpus is empty",
        "appears more than once",
        "has no text",
        "`n_docs` must be",
        "Query vectors have size",
        "token embeddings",
        "has no target tokens",
        "`objective`",
        "is corrupt or truncated",
        "Non-finite loss",
        "holds only pickle weights",
    ]:
        assert phrase in table, phrase
