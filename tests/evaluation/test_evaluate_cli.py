"""`hf-etrag train` + `hf-etrag evaluate` end to end, one run per task, with tiny random models saved as local
folders (a tiny BERT retriever, the default `bert2bert` generator warm-started from it, or a tiny BART) and tiny
data files: the saved folder reloads, scores the same as in memory, and the report and figures are written."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from datasets import Dataset
from transformers import BartForConditionalGeneration, BertModel

from hf_etrag import PassageIndex
from hf_etrag.cli import main
from hf_etrag.data.tasks.scoring import Predictions, score_passage_task, score_relation_extraction
from hf_etrag.tiny_models import tiny_bart_config, tiny_bert_config, train_wordpiece_tokenizer

ROLES = {"Cause-Effect(e1,e2)": "{} caused the {}", "Component-Whole(e1,e2)": "{} is a part of the {}"}
NOUNS = ["storm", "flood", "wheel", "engine", "door", "house", "virus", "fever", "leaf", "tree"]


def _relation_records(n: int, seed: int) -> list[dict]:
    """TACRED-layout sentences: `the A <verb> the B .` with the two nouns as subject and object."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        label = rng.choice([*ROLES, "Other"])
        a, b = rng.sample(NOUNS, 2)
        middle = (ROLES.get(label) or "{} was seen near the {}").format(a, b).split()
        words = ["the", *middle, "."]
        records.append(
            {
                "id": f"re-{seed}-{i}",
                "relation": label,
                "token": words,
                "subj_start": 1,
                "subj_end": 1,
                "obj_start": len(words) - 2,
                "obj_end": len(words) - 2,
            }
        )
    return records


@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory, knowledge_base):
    """A tiny BERT retriever folder and a tiny BART generator folder sharing one tokenizer trained on the fly."""
    root = tmp_path_factory.mktemp("tiny_models")
    texts = list(knowledge_base.corpus["text"]) + list(knowledge_base.train["question"])
    texts += [" ".join(r["token"]) for r in _relation_records(40, 0)]
    texts += ["cause effect component whole other the relation between and is hello answer"]
    tokenizer = train_wordpiece_tokenizer(texts, vocab_size=500)
    retriever = BertModel(tiny_bert_config(len(tokenizer), hidden_size=32, layers=1))
    retriever.save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    config = tiny_bart_config(
        len(tokenizer),
        tokenizer.pad_token_id,
        tokenizer.cls_token_id,
        tokenizer.sep_token_id,
        d_model=32,
        layers=1,
    )
    BartForConditionalGeneration(config).save_pretrained(root / "bart")
    tokenizer.save_pretrained(root / "bart")
    return {"bert": str(root / "bert"), "bart": str(root / "bart")}


@pytest.fixture(scope="session")
def data_folder(tmp_path_factory, knowledge_base):
    """The synthetic knowledge base as open-QA and dialogue files, plus TACRED-layout relation files."""
    root = tmp_path_factory.mktemp("data")

    def write_jsonl(path: Path, rows) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))

    for task in ("qa", "dialogue"):
        write_jsonl(root / task / "corpus.jsonl", knowledge_base.corpus)
    write_jsonl(root / "qa" / "train.jsonl", knowledge_base.train)
    write_jsonl(root / "qa" / "test.jsonl", knowledge_base.test)
    for split, rows in (("train", knowledge_base.train), ("test", knowledge_base.test)):
        turns = [
            {
                "id": row["id"],
                "history": ["hello", row["question"]],
                "response": f"the answer is {row['answers'][0]}",
                "gold_passage_id": row["gold_passage_id"],
            }
            for row in rows
        ]
        write_jsonl(root / "dialogue" / f"{split}.jsonl", turns)
    (root / "re").mkdir()
    (root / "re" / "train.json").write_text(json.dumps(_relation_records(40, 1)))
    (root / "re" / "test.json").write_text(json.dumps(_relation_records(12, 2)))
    return root


def _train(tmp_path: Path, recipe: dict, *overrides: str) -> Path:
    output_dir = tmp_path / "run"
    common = {
        "output_dir": str(output_dir),
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 4,
        "learning_rate": 1.0e-3,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "do_predict": True,
        "use_cpu": True,
        "temperature": 0.1,
        "max_passage_length": 32,
        "max_context_length": 48,
        "max_new_tokens": 4,
        "test_limit": 8,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({**common, **recipe}))
    assert main(["train", str(path), *overrides]) == 0
    return output_dir


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def _check_report(folder: Path, figures: set[str]) -> None:
    report = (folder / "report.md").read_text()
    for figure in figures:
        assert (folder / figure).stat().st_size > 1000, figure
        assert f"]({figure})" in report
    assert "## Examples" in report
    assert len((folder / "predictions.jsonl").read_text().splitlines()) == _metrics(folder)["n_examples"]


@pytest.mark.parametrize("k", [2, 0])
def test_relation_extraction_with_etrag(tmp_path, tiny_folders, data_folder, k, capsys):
    out = _train(
        tmp_path,
        {
            "task": "relation_extraction",
            "train_source": str(data_folder / "re" / "train.json"),
            "test_source": str(data_folder / "re" / "test.json"),
            "retriever_name_or_path": tiny_folders["bert"],
            "objective": "etrag",
            "objective_kwargs": {"tau": 0.5, "instances_with_grad": 4},
            "refresh_steps": 2 if k else 0,
        },
        "--n_docs",
        str(k),
    )
    assert "relation_extraction on test (8 examples): micro_f1=" in capsys.readouterr().out
    metrics = _metrics(out / "evaluation-test")
    assert metrics["n_docs"] == k and metrics["n_generated"] == 8
    for name in ("micro_precision", "micro_recall", "micro_f1", "accuracy"):
        assert 0.0 <= metrics[name] <= 1.0
    assert "Other" not in metrics["per_relation"]
    assert set(metrics["per_relation"]) <= set(ROLES)
    figures = {"per_relation_f1.png", "training_curves.png"}
    if k:
        for name in ("retrieved_same_label", "retrieved_shares_entity", "queries_with_same_label_retrieved"):
            assert 0.0 <= metrics[name] <= 1.0
        figures.add("retrieved_instances.png")
        first = json.loads((out / "evaluation-test" / "predictions.jsonl").read_text().splitlines()[0])
        assert len(first["retrieved"]) == k and {"label", "same_label", "shares_entity"} <= set(
            first["retrieved"][0]
        )
    else:
        assert "retrieved_same_label" not in metrics
    _check_report(out / "evaluation-test", figures)


def test_open_qa_jsa_trains_saves_and_reloads_to_the_same_scores(tmp_path, tiny_folders, data_folder):
    qa = data_folder / "qa"
    out = _train(
        tmp_path,
        {
            "task": "open_qa",
            "train_source": str(qa),
            "test_source": str(qa),
            "corpus_source": str(qa),
            "retriever_name_or_path": tiny_folders["bert"],
            "objective": "jsa",
            "objective_kwargs": {"mis_steps": 2},
            "n_docs": 2,
            "train_doc_encoder": False,
            "reader_warmup_steps": 2,
            "test_generation_limit": 4,
        },
    )
    saved = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "passage_index",
        "retriever_tokenizer",
        "etrag_recipe.json",
    } <= saved
    assert (out / "reader_warmup" / "trainer_state.json").is_file()
    in_memory = _metrics(out / "evaluation-test")
    assert in_memory["n_examples"] == 8 and in_memory["n_generated"] == 4
    for name in ("exact_match", "f1", "recall@1", "recall@2", "recall@5", "recall@10", "recall@20", "mrr"):
        assert 0.0 <= in_memory[name] <= 1.0, name
    assert in_memory["recall@1"] <= in_memory["recall@5"] <= in_memory["recall@20"]
    _check_report(out / "evaluation-test", {"recall_at_k.png", "training_curves.png"})

    reloaded_dir = tmp_path / "reloaded"
    args = [
        "evaluate",
        str(out),
        "--output_dir",
        str(reloaded_dir),
        "--limit",
        "8",
        "--generation_limit",
        "4",
    ]
    assert main([*args, "--no-progress"]) == 0
    reloaded = _metrics(reloaded_dir)
    for name in ("exact_match", "f1", "recall@1", "recall@5", "recall@20", "mrr"):
        assert reloaded[name] == pytest.approx(in_memory[name]), name


def test_dialogue_with_a_bart_generator_and_a_frozen_retriever(tmp_path, tiny_folders, data_folder):
    dialogue = data_folder / "dialogue"
    out = _train(
        tmp_path,
        {
            "task": "dialogue",
            "train_source": str(dialogue),
            "test_source": str(dialogue),
            "corpus_source": str(dialogue),
            "retriever_name_or_path": tiny_folders["bert"],
            "generator_name_or_path": tiny_folders["bart"],
            "objective": "rag_token",
            "n_docs": 2,
            "freeze_retriever": True,
        },
    )
    assert (out / "generator_tokenizer").is_dir(), "a generator with its own tokenizer saves it separately"
    metrics = _metrics(out / "evaluation-test")
    for name in ("unigram_f1", "rouge_l", "recall@1", "recall@5"):
        assert 0.0 <= metrics[name] <= 1.0, name
    _check_report(out / "evaluation-test", {"recall_at_k.png", "training_curves.png"})


def test_evaluate_cli_names_a_folder_that_was_not_trained_by_the_recipe_command(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "has no etrag_recipe.json" in capsys.readouterr().err


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_evaluate_never_replaces_a_folder_it_did_not_write(tmp_path, tiny_folders, data_folder, capsys):
    """`hf-etrag evaluate RUN --output_dir RUN` replaced the whole run with the report (exit 0): refused now, as is
    any other folder that holds something else; an earlier report is replaced, files put next to it stay."""
    qa = data_folder / "qa"
    recipe = {"task": "open_qa", "train_source": str(qa), "test_source": str(qa), "corpus_source": str(qa),
              "retriever_name_or_path": tiny_folders["bert"], "objective": "rag_token", "n_docs": 2,
              "train_doc_encoder": False, "test_generation_limit": 2}  # fmt: skip
    run = _train(tmp_path, recipe)
    evaluate = ["evaluate", str(run), "--limit", "4", "--generation_limit", "2", "--no-progress"]
    before = _tree(run)
    assert main([*evaluate, "--output_dir", str(run)]) == 2
    message = capsys.readouterr().err
    assert f"Refusing to write the evaluation report into {run}: it holds other files (" in message
    assert "Nothing was written. Pass a new or empty `--output_dir`" in message
    assert _tree(run) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.")], "no temporary folder is left"

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine")
    assert main([*evaluate, "--output_dir", str(notes)]) == 2
    assert _tree(notes) == {"todo.txt": b"mine"}

    report = run / "evaluation-test"  # written by the training run's do_predict
    (report / "todo.txt").write_text("mine")
    assert main(evaluate) == 0
    assert (report / "todo.txt").read_text() == "mine"
    assert _metrics(report)["n_examples"] == 4


def _index(rows: list[dict]) -> PassageIndex:
    corpus = Dataset.from_list([{**row, "retriever_input_ids": [1, 2]} for row in rows])
    return PassageIndex(corpus)


def test_relation_scores_count_label_and_entity_sharing_per_retrieved_instance():
    memory = _index(
        [
            {"id": "m0", "text": "a", "label": "Cause-Effect(e1,e2)", "subject": "storm", "object": "flood"},
            {"id": "m1", "text": "b", "label": "Other", "subject": "door", "object": "house"},
            {"id": "m2", "text": "c", "label": "Cause-Effect(e1,e2)", "subject": "virus", "object": "fever"},
        ]
    )
    test = Dataset.from_list(
        [
            {
                "id": "q0",
                "question": "?",
                "label": "Cause-Effect(e1,e2)",
                "subject": "Storm",
                "object": "wind",
            },
            {"id": "q1", "question": "?", "label": "Other", "subject": "car", "object": "road"},
        ]
    )
    predictions = Predictions(
        retrieved=[[0, 1], [2, 1]], texts=["Cause-Effect(e1,e2)", "Cause-Effect(e1,e2)"]
    )
    scores = score_relation_extraction(test, predictions, memory, negative_label="Other")
    # q0 retrieves m0 (same label, shares "storm" case-insensitively) and m1; q1 retrieves m2 and m1 (same label).
    assert scores.metrics["retrieved_same_label"] == pytest.approx(2 / 4)
    assert scores.metrics["retrieved_shares_entity"] == pytest.approx(1 / 4)
    assert scores.metrics["queries_with_same_label_retrieved"] == 1.0
    assert scores.share_by_rank == {"same label": [0.5, 0.5], "shares an entity": [0.5, 0.0]}
    # One correct positive, one false positive on a negative example: P = 1/2, R = 1/1.
    assert scores.metrics["micro_precision"] == 0.5 and scores.metrics["micro_recall"] == 1.0
    assert scores.records[0]["retrieved"][0] | {"text": None} == {
        "row": 0, "id": "m0", "text": None, "label": "Cause-Effect(e1,e2)", "same_label": True, "shares_entity": True
    }  # fmt: skip


def test_passage_scores_use_every_example_for_recall_and_the_generated_ones_for_answers():
    corpus = _index([{"id": f"p{i}", "title": "", "text": f"passage {i}"} for i in range(6)])
    test = Dataset.from_list(
        [
            {"id": "a", "question": "?", "answers": ["x"], "gold_passage_index": 3},
            {"id": "b", "question": "?", "answers": ["y"], "gold_passage_index": 0},
            {"id": "c", "question": "?", "answers": ["z"], "gold_passage_index": -1},
        ]
    )
    predictions = Predictions(retrieved=[[3, 1, 2], [1, 2, 4], [0, 1, 2]], texts=["x"])
    scores = score_passage_task("open_qa", test, predictions, corpus, ks=(1, 2, 5))
    assert scores.metrics["exact_match"] == 1.0  # only the first example was generated
    assert scores.metrics["n_with_gold_passage"] == 2
    assert scores.recall_at_k == {1: 0.5, 2: 0.5}  # k = 5 is deeper than the 3 rows retrieved
    assert [r["gold_rank"] for r in scores.records] == [1, None, None]
    assert scores.records[2]["prediction"] is None


@pytest.mark.parametrize("refresh_steps, pipeline_refreshes", [(2, 1), (0, 2)])
def test_the_saved_index_matches_the_trained_encoder_with_one_refresh_per_step(
    tmp_path, tiny_folders, data_folder, monkeypatch, refresh_steps, pipeline_refreshes
):
    """Training both retriever sides ends with an index encoded at the last step: by the refresh callback when
    the last step is a refresh step (then the pipeline does not encode the corpus again), else by the pipeline."""
    import hf_etrag.recipes.pipeline as pipeline

    calls = []
    original = pipeline.refresh_index

    def counting_refresh(model, **kwargs):
        calls.append(kwargs["step"])
        return original(model, **kwargs)

    monkeypatch.setattr(pipeline, "refresh_index", counting_refresh)
    qa = data_folder / "qa"
    out = _train(
        tmp_path,
        {
            "task": "open_qa",
            "train_source": str(qa),
            "corpus_source": str(qa),
            "retriever_name_or_path": tiny_folders["bert"],
            "generator_name_or_path": tiny_folders["bart"],
            "n_docs": 2,
            "train_doc_encoder": True,
            "refresh_steps": refresh_steps,
            "do_predict": False,
        },
    )
    assert len(calls) == pipeline_refreshes and calls[0] == 0
    state = json.loads((out / "trainer_state.json").read_text())
    callback_refreshes = [entry["step"] for entry in state["log_history"] if "refresh_seconds" in entry]
    assert callback_refreshes == ([2] if refresh_steps else [])
    assert PassageIndex.load(out / "passage_index").built_at_step == 2


def test_evaluate_refuses_an_index_that_does_not_belong_to_the_checkpoint(
    tmp_path, tiny_folders, data_folder, capsys
):
    """Issue 14, item 3: a `passage_index/` built by another encoder gave recall near 0 without a word, one over a
    subset of the corpus inflated recall; both are refused (exit 2) with the cause and the fix."""
    import torch

    from hf_etrag import EtragModel
    from hf_etrag.training.callbacks import refresh_index

    qa = data_folder / "qa"
    recipe = {"task": "open_qa", "train_source": str(qa), "test_source": str(qa), "corpus_source": str(qa),
              "retriever_name_or_path": tiny_folders["bert"], "objective": "rag_token", "n_docs": 2,
              "train_doc_encoder": False, "do_predict": False}  # fmt: skip
    run = _train(tmp_path, recipe)
    evaluate = ["evaluate", str(run), "--limit", "4", "--generation_limit", "1", "--no-progress"]
    saved = PassageIndex.load(run / "passage_index")

    torch.manual_seed(5)
    stranger = EtragModel.from_pretrained(run)  # the same architecture with other encoder weights
    for module in stranger.document_encoder.modules():
        if isinstance(module, torch.nn.Linear | torch.nn.Embedding):
            torch.nn.init.normal_(module.weight, std=0.5)
    foreign = PassageIndex(saved.corpus)
    stranger.set_index(foreign)
    refresh_index(stranger)
    foreign.save(run / "passage_index")
    assert main(evaluate) == 2
    message = capsys.readouterr().err
    assert f"Refusing to evaluate {run}: the attached passage index does not belong to the model" in message
    assert (
        "its vectors were built by another document encoder" in message and "refresh_index(model)" in message
    )

    model = EtragModel.from_pretrained(run)
    subset = PassageIndex(saved.corpus.select(range(len(saved) - 10)))  # built by the model itself
    model.set_index(subset)
    refresh_index(model)
    subset.save(run / "passage_index")
    assert main(evaluate) == 2
    message = capsys.readouterr().err
    assert (
        "its passage_index/ is not the index the model was trained with: its corpus (62 passages" in message
    )
    assert "is not the one the model was saved with (72 passages" in message

    saved.save(run / "passage_index")  # put back: evaluates
    assert main(evaluate) == 0


def test_evaluate_uses_the_models_n_docs_and_says_so_when_the_recipe_disagrees(
    tmp_path, tiny_folders, data_folder, caplog, capsys
):
    """The training run held a lock in its output_dir (released at the end, never saved into the model);
    `hf-etrag evaluate` retrieves the model's own `n_docs` and names the recipe file whose `n_docs` it ignores; a
    corrupt model.safetensors is one line, exit 2."""
    qa = data_folder / "qa"
    recipe = {"task": "open_qa", "train_source": str(qa), "test_source": str(qa), "corpus_source": str(qa),
              "retriever_name_or_path": tiny_folders["bert"], "objective": "rag_token", "n_docs": 2,
              "train_doc_encoder": False, "test_generation_limit": 2, "do_predict": False}  # fmt: skip
    run = _train(tmp_path, recipe)
    assert not (run / "_etrag_train.lock").exists()
    saved = run / "etrag_recipe.json"
    edited = json.loads(saved.read_text())
    edited["model"]["n_docs"] = 3
    saved.write_text(json.dumps(edited))
    evaluate = ["evaluate", str(run), "--limit", "4", "--generation_limit", "2", "--no-progress"]
    assert main(evaluate) == 0
    assert (
        f"Evaluating with n_docs=2, the model's own (its config.json), not n_docs=3 from {saved}"
        in caplog.text
    )
    assert _metrics(run / "evaluation-test")["n_docs"] == 2
    capsys.readouterr()

    weights = run / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert main([*evaluate, "--output_dir", str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert (
        f"A weights file of {run} (model.safetensors, or a base model it loads) is corrupt or truncated"
        in err
    )
