import pytest

from hf_etrag.cli import main, parse_objective_spec


def test_objective_specs_parse_options():
    assert parse_objective_spec("vrag:estimator=sampled,beta=0.5") == (
        "vrag",
        {"estimator": "sampled", "beta": 0.5},
    )
    assert parse_objective_spec("rag_token") == ("rag_token", {})
    with pytest.raises(ValueError, match="must look like KEY=VALUE"):
        parse_objective_spec("jsa:mis_steps")


@pytest.mark.slow
def test_diagnose_gradients_separates_deterministic_and_sampled_estimators(capsys):
    code = main(
        ["diagnose-gradients", "--random-models", "--people", "6", "--batch-size", "4", "--repeats", "4",
         "--objective", "rag_sequence", "--objective", "jsa:mis_steps=3", "--objective", "vrag:estimator=sampled"]
    )  # fmt: skip
    assert code == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert set(rows) == {"rag_sequence", "jsa:mis_steps=3", "vrag:estimator=sampled"}
    # top-K marginalisation is deterministic for a fixed batch: no variance, only (unmeasured) bias
    assert float(rows["rag_sequence"][3]) == 0.0 and float(rows["rag_sequence"][2]) > 0
    assert float(rows["jsa:mis_steps=3"][3]) > 0
    assert float(rows["vrag:estimator=sampled"][3]) > 0


@pytest.mark.slow
def test_posterior_encoder_gradient_can_be_measured(capsys):
    code = main(
        ["diagnose-gradients", "--random-models", "--people", "6", "--batch-size", "2", "--repeats", "3",
         "--part", "posterior_encoder", "--objective", "vrag:estimator=sampled"]
    )  # fmt: skip
    assert code == 0
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row[0] == "vrag:estimator=sampled" and float(row[2]) > 0 and float(row[3]) > 0


def test_posterior_part_needs_a_posterior_objective(capsys):
    code = main(
        ["diagnose-gradients", "--random-models", "--people", "4", "--batch-size", "2", "--repeats", "2",
         "--part", "posterior_encoder", "--objective", "rag_sequence"]
    )  # fmt: skip
    assert code == 2
    assert "`part` must be 'query_encoder' or, for jsa/vrag, 'posterior_encoder'" in capsys.readouterr().err
