"""The benchmark scripts keep running (their figures come from real runs, not from here)."""

import importlib.util
import json
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
