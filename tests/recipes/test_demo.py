import re

import pytest

from hf_etrag.cli import main

SUMMARY = re.compile(
    r"^frozen recall@5=(\d\.\d\d) EM=(\d\.\d\d) \| end-to-end recall@5=(\d\.\d\d) EM=(\d\.\d\d)$"
)


@pytest.mark.slow
def test_short_demo_run_prints_both_runs_and_the_summary_line(capsys):
    code = main(
        ["demo", "--random-models", "--people", "6", "--steps", "3", "--warmup-steps", "2", "--no-progress"]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    match = SUMMARY.match(lines[-1])
    assert match, f"last line is not the summary: {lines[-1]!r}"
    assert all(0.0 <= float(value) <= 1.0 for value in match.groups())
    assert any(line.startswith("frozen ") for line in lines[:-1])
    assert any(line.startswith("end-to-end ") for line in lines[:-1])
    assert any("generator warm-up" in line for line in lines)


def test_demo_rejects_a_knowledge_base_too_small(capsys):
    assert main(["demo", "--random-models", "--people", "1", "--no-progress"]) == 2
    assert "`n_people` must be at least 2" in capsys.readouterr().err
