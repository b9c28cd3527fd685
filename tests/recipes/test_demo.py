import json
import re
from types import SimpleNamespace

import pytest
from datasets import Dataset

from hf_etrag.cli import main
from hf_etrag.recipes.demo_settings import DemoSettings

SUMMARY = re.compile(
    r"^frozen recall@5=(\d\.\d\d) EM=(\d\.\d\d) \| end-to-end recall@5=(\d\.\d\d) EM=(\d\.\d\d)$"
)


@pytest.mark.slow
def test_short_demo_run_goes_through_the_recipe_pipeline(tmp_path, capsys):
    """The demo prints a time estimate, both runs and the summary line; with `--output-dir` it leaves what every
    recipe leaves: the data files, and per run the saved recipe, model, index and evaluation report."""
    out = tmp_path / "demo"
    code = main(
        ["demo", "--random-models", "--people", "6", "--steps", "3", "--warmup-steps", "2", "--no-progress",
         "--output-dir", str(out)]
    )  # fmt: skip
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    match = SUMMARY.match(lines[-1])
    assert match, f"last line is not the summary: {lines[-1]!r}"
    assert all(0.0 <= float(value) <= 1.0 for value in match.groups())
    assert any(line.startswith("frozen ") for line in lines[:-1])
    assert any(line.startswith("end-to-end ") for line in lines[:-1])
    assert any("generator warm-up" in line for line in lines)
    assert any(line.startswith("Estimated total time: about ") for line in lines)

    assert sorted(p.name for p in (out / "data").iterdir()) == ["corpus.jsonl", "test.jsonl", "train.jsonl"]
    recipes = {}
    for run, (recall, em) in (("frozen", match.group(1, 2)), ("end-to-end", match.group(3, 4))):
        recipes[run] = json.loads((out / run / "etrag_recipe.json").read_text())
        metrics = json.loads((out / run / "evaluation-test" / "metrics.json").read_text())
        assert (f"{metrics['recall@5']:.2f}", f"{metrics['exact_match']:.2f}") == (recall, em)
        assert (out / run / "passage_index").is_dir() and (out / run / "config.json").is_file()
    frozen, e2e = recipes["frozen"], recipes["end-to-end"]
    assert (frozen["model"]["freeze_retriever"], e2e["model"]["freeze_retriever"]) == (True, False)
    assert {**frozen["model"], "freeze_retriever": False} == e2e["model"]
    assert frozen["data"] == e2e["data"] and frozen["data"]["reader_warmup_steps"] == 2
    assert (frozen["training"]["refresh_steps"], e2e["training"]["refresh_steps"]) == (0, 25)
    assert (out / "end-to-end" / "reader_warmup" / "trainer_state.json").is_file()  # one warm-up, shared


def test_demo_rejects_a_knowledge_base_too_small(capsys):
    assert main(["demo", "--random-models", "--people", "1", "--no-progress"]) == 2
    assert "`n_people` must be at least 2" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], DemoSettings()),
        (["--quick"], DemoSettings.quick()),
        (["--quick", "--steps", "7"], DemoSettings.quick(max_steps=7)),
        (["--steps", "7", "--quick"], DemoSettings.quick(max_steps=7)),
        (["--people", "9"], DemoSettings(n_people=9)),
    ],
)
def test_quick_changes_only_the_sizes_not_given(argv, expected, monkeypatch):
    seen = []
    monkeypatch.setattr("hf_etrag.recipes.demo.run_demo", seen.append)
    assert main(["demo", *argv]) == 0
    assert seen == [expected]


def test_quick_is_smaller_than_the_full_demo():
    full, quick = DemoSettings(), DemoSettings.quick()
    assert quick.n_people < full.n_people and quick.max_steps < full.max_steps
    assert quick.reader_warmup_steps <= full.reader_warmup_steps


def test_time_estimate_adds_up_the_calibrated_units(monkeypatch):
    """Warm-up steps, both runs' training steps, both runs' answer batches and the end-to-end refreshes."""
    import hf_etrag.recipes.demo_timing as timing

    # first (uncounted) step, warm-up step, end-to-end and frozen steps, answer batch, 32 passages encoded
    units = iter([9.0, 1.0, 2.0, 1.5, 3.0, 0.5])
    monkeypatch.setattr(timing, "_seconds", lambda work: next(units))
    train = Dataset.from_list(
        [{"input_ids": [1, 2], "labels": [3], "gold_passage_index": i} for i in range(20)]
    )
    model = SimpleNamespace(retriever_pad_id=0, generator_pad_id=0, index=list(range(64)), training=False)
    model.train = lambda mode=True: None
    settings = DemoSettings(max_steps=10, reader_warmup_steps=4, batch_size=8, refresh_steps=4)
    estimate = timing.estimate_seconds(SimpleNamespace(model=model, train=train), settings, n_test=20)
    refresh = 0.5 * 64 / 32
    assert estimate.refresh == refresh
    # 4 warm-up steps, 10 end-to-end and 10 frozen steps, 2 x ceil(20 / 8) answer batches, ceil(10 / 4) refreshes
    assert estimate.total == 4 * 1.0 + 10 * 2.0 + 10 * 1.5 + 6 * 3.0 + 3 * refresh
    assert "Estimated total time: about 60 s" in estimate.line(elapsed=0.0)
