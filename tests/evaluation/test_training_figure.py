"""The report's training curves: whole-number step ticks and the statistics logged in nats."""

import json

from matplotlib.ticker import MaxNLocator

from hf_etrag.evaluation.report import training_figure


def test_training_figure_plots_entropy_and_uses_integer_step_ticks(tmp_path):
    history = [
        {
            "step": step,
            "loss": 3.0 - step,
            "gold_in_top_k": 0.5,
            "retriever_entropy": 1.2,
            "prompt_shuffle_gain": 0.1,
        }
        for step in (1, 2, 3)
    ]
    state = tmp_path / "trainer_state.json"
    state.write_text(json.dumps({"log_history": history}))
    figure = training_figure({"training": state})
    labels = {line.get_label() for axes in figure.axes for line in axes.get_lines()}
    assert {"loss", "gold_in_top_k", "retriever_entropy", "prompt_shuffle_gain"} <= labels
    loss_axes = figure.axes[0]
    assert isinstance(loss_axes.xaxis.get_major_locator(), MaxNLocator)
    figure.canvas.draw()
    ticks = [t for t in loss_axes.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_no_loss_logged_gives_no_figure(tmp_path):
    state = tmp_path / "trainer_state.json"
    state.write_text(json.dumps({"log_history": [{"step": 1, "learning_rate": 0.1}]}))
    assert training_figure({"training": state}) is None
