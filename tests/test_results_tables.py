"""docs/results.md's generated tables agree with the committed run records, and claims follow the spread."""

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _tables():
    spec = importlib.util.spec_from_file_location("results_tables", ROOT / "benchmarks" / "results_tables.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _record(root: Path, run: str, seed: int, **metrics) -> None:
    folder = root / run
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "metrics": {"task": "open_qa", "n_examples": 10, "n_generated": 5, **metrics},
        "steps": 3,
        "wall_seconds": 60.0,
        "load_average": [0.5, 1.0],
    }
    (folder / f"seed{seed}.json").write_text(json.dumps(record))


def test_docs_results_match_the_committed_records():
    tables = _tables()
    assert tables.main(["--check"]) == 0, "run `python benchmarks/results_tables.py --write`"


def test_claims_need_a_difference_beyond_the_spread(tmp_path):
    tables = _tables()
    _record(tmp_path, "squad_open_rag_sequence", 1, **{"recall@5": 0.86, "exact_match": 0.31})
    _record(tmp_path, "squad_open_rag_sequence", 2, **{"recall@5": 0.87, "exact_match": 0.25})
    _record(tmp_path, "squad_open_frozen_retriever", 1, **{"recall@5": 0.84, "exact_match": 0.27})
    _record(tmp_path, "squad_open_frozen_retriever", 2, **{"recall@5": 0.84, "exact_match": 0.28})
    runs = tables.load_records(tmp_path)
    recall = tables.judge(
        tables.Comparison("recall@5", "squad_open_rag_sequence", "squad_open_frozen_retriever"), runs
    )
    assert "higher by more than the spread" in recall and "spread 0.010" in recall
    em = tables.judge(
        tables.Comparison("exact_match", "squad_open_rag_sequence", "squad_open_frozen_retriever"), runs
    )
    assert "within the spread: no claim" in em  # +0.005 against a 0.06 spread
    target = tables.check_target(tables.Target("squad_open_rag_sequence", "exact_match", 0.30), runs)
    assert "missed by 0.020" in target
    section = tables.render(runs)
    assert "0.865 ± 0.007 (0.860-0.870)" in section


def test_a_single_seed_supports_no_claim(tmp_path):
    tables = _tables()
    _record(tmp_path, "semeval_k5", 42, micro_f1=0.8, task="relation_extraction")
    _record(tmp_path, "semeval_k0", 42, micro_f1=0.5, task="relation_extraction")
    line = tables.judge(
        tables.Comparison("micro_f1", "semeval_k5", "semeval_k0"), tables.load_records(tmp_path)
    )
    assert "no spread, no claim" in line
