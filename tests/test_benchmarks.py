"""The benchmark scripts keep running (their figures come from real runs, not from here)."""

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_index_refresh_benchmark_prints_the_ratio_last(tmp_path, knowledge_base, capsys):
    corpus = tmp_path / "corpus.jsonl"
    with corpus.open("w") as handle:
        for row in knowledge_base.corpus:
            handle.write(json.dumps({"id": row["id"], "title": "", "text": row["text"]}) + "\n")
    _load("index_refresh").main(
        ["--corpus", str(corpus), "--random-model", "--repeats", "1", "--batch-size", "16"]
    )
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("refresh / bare forward throughput ratio: ")
    assert float(last.rsplit(" ", 1)[1]) > 0


@pytest.mark.slow
def test_scale_benchmark_prints_the_headline_last(capsys):
    _load("scale").main(["--sizes", "2000", "--queries", "128", "--budget-s", "60"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("2k passages: ") and "recall@10=" in last


def test_scale_benchmark_rejects_too_few_queries(capsys):
    with pytest.raises(SystemExit):
        _load("scale").main(["--sizes", "2000", "--queries", "64"])
    assert "--queries must be greater than the search batch" in capsys.readouterr().err


@pytest.mark.slow
def test_soak_benchmark_reports_the_slope_last(capsys):
    import torch

    threads = torch.get_num_threads()
    try:
        code = _load("soak").main(
            [
                "--steps",
                "12",
                "--refresh-steps",
                "4",
                "--record-every",
                "4",
                "--warmup-steps",
                "4",
                "--people",
                "4",
            ]
        )
    finally:
        torch.set_num_threads(
            threads
        )  # the script runs on one thread; later tests keep this process's setting
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    table = lines.index(next(line for line in lines if line.split()[:1] == ["step"]))
    assert [line.split()[0] for line in lines[table + 1 : table + 5]] == ["0", "4", "8", "12"]
    assert lines[-1].startswith("RSS slope over steps >= 4: ") and "MB per 1,000 steps" in lines[-1]
    assert lines[-1].endswith("finished: yes (12/12 steps)")


@pytest.mark.slow
def test_train_step_benchmark_prints_the_ratio_last(tmp_path, knowledge_base, capsys):
    corpus, questions = tmp_path / "corpus.jsonl", tmp_path / "questions.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in knowledge_base.corpus)
    )
    questions.write_text(
        "".join(json.dumps({k: r[k] for k in ("question", "answers")}) + "\n" for r in knowledge_base.train)
    )
    _load("train_step_vs_hf_rag").main(
        ["--preset", "tiny", "--corpus", str(corpus), "--questions", str(questions), "--repeats", "1"]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    parameters = next(line for line in lines if line.startswith("trainable parameters: "))
    ours, theirs = re.match(
        r"trainable parameters: ours ([\d,]+), transformers RAG ([\d,]+)", parameters
    ).groups()
    assert ours == theirs  # the same trainable parts on both sides
    assert lines[-1].startswith("tiny train-step throughput ratio (ours / transformers RAG): ")
    assert float(lines[-1].rsplit(" ", 1)[1]) > 0


@pytest.mark.slow
def test_refresh_overhead_benchmark_prints_the_default_share_last(
    tmp_path, knowledge_base, tokenizer, capsys
):
    from .tiny_checkpoints import save_tiny_parts

    parts = save_tiny_parts(tmp_path / "parts", tokenizer)
    for name in ("bert", "gpt2"):
        tokenizer.save_pretrained(parts[name])
    corpus, questions = tmp_path / "corpus.jsonl", tmp_path / "train.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in knowledge_base.corpus)
    )
    questions.write_text(
        "".join(json.dumps({k: r[k] for k in ("question", "answers")}) + "\n" for r in knowledge_base.train)
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "\n".join(
            [
                "task: open_qa",
                f"train_source: {questions}",
                f"corpus_source: {corpus}",
                f"retriever_name_or_path: {parts['bert']}",
                f"generator_name_or_path: {parts['gpt2']}",
                "objective: rag_sequence",
                "n_docs: 2",
                "refresh_steps: 3",
                "max_passage_length: 32",
                "max_context_length: 48",
                f"output_dir: {tmp_path / 'unused'}",
                "per_device_train_batch_size: 2",
                "report_to: none",
                "save_strategy: 'no'",
                "dataloader_pin_memory: false",
            ]
        )
    )
    module = _load("refresh_overhead")
    module.main(["--recipe", str(recipe), "--steps", "4", "--refresh-steps", "2", "--rerank-top-l", "4"])
    lines = capsys.readouterr().out.strip().splitlines()
    rows = {
        line.split("|")[1].strip(): line.split("|")
        for line in lines
        if line.startswith("| ") and "---" not in line
    }
    assert int(rows["full"][4]) == 2  # refreshed at steps 2 and 4
    assert rows["rerank"][4].strip() == "0" and rows["query_side"][4].strip() == "0"
    assert float(rows["full"][6].strip().rstrip("%")) > 0
    # The recipe trains the document encoder with a refresh every 3 steps: its share follows from the measured
    # per-refresh and per-step times of the `full` run.
    prefix = "refresh share of wall time, recipe default (full refresh every 3 steps, derived): "
    assert lines[-1].startswith(prefix) and 0 < float(lines[-1][len(prefix) :].rstrip("%")) < 100


def test_decoder_scoring_benchmark_agrees_with_the_full_forward_and_prints_the_ratio_last(capsys):
    _load("decoder_scoring").main(["--layers", "1", "--rows", "3", "--context", "24", "--repeats", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    difference = next(line for line in lines if line.startswith("max |difference|"))
    assert float(difference.rsplit(" ", 1)[1]) < 1e-4
    assert lines[-1].startswith("scoring throughput ratio (target positions / all positions): ")
    assert float(lines[-1].rsplit(" ", 1)[1]) > 0


@pytest.mark.slow
def test_retriever_ceiling_benchmark_prints_recall_at_5_last(tmp_path, knowledge_base, capsys):
    for name, rows in (
        ("corpus", knowledge_base.corpus),
        ("train", knowledge_base.train),
        ("test", knowledge_base.test),
    ):
        with (tmp_path / f"{name}.jsonl").open("w") as handle:
            for row in rows:
                handle.write(json.dumps(dict(row)) + "\n")
    _load("squad_retriever_ceiling").main(["--data", str(tmp_path), "--steps", "2", "--batch-size", "4"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    values = re.fullmatch(r"test recall@5: frozen ([\d.]+), query_side ([\d.]+), both_sides ([\d.]+)", last)
    assert values and all(0.0 <= float(v) <= 1.0 for v in values.groups())


def test_run_recipes_reads_the_refresh_share_from_the_trainer_state():
    state = {
        "log_history": [
            {"step": 40, "loss": 1.0, "refresh_seconds": 30.0},
            {"step": 80, "loss": 1.0, "refresh_seconds": 20.0},
            {"step": 80, "train_runtime": 500.0},
        ]
    }
    share = _load("run_recipes").refresh_share(state)
    assert share == {"refreshes": 2, "refresh_seconds": 50.0, "train_runtime": 500.0, "refresh_share": 0.1}
    assert _load("run_recipes").refresh_share({"log_history": []})["refresh_share"] == 0.0


@pytest.mark.slow
def test_kill_resume_benchmark_ends_equal_to_the_uninterrupted_run(capsys):
    assert _load("kill_resume").main(["--kills", "1", "--steps", "4", "--refresh-steps", "2"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("kills: 1 (") and last.endswith("final weights equal: yes; final index equal: yes")
