"""The benchmark scripts keep running (their figures come from real runs, not from here)."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
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
