"""Each optimiser parameter group's learning rate is logged: `learning_rate` is the main group's (generator and
objective layers, at `learning_rate`), `learning_rate_retriever` the encoders' (at `retriever_learning_rate`), equal
to the rates the scheduler set for those groups in the optimiser step just taken (transformers logs `learning_rate`
the same way: read before `lr_scheduler.step()`). The logged `learning_rate` used to be the first group's, which is
the retriever's."""

from __future__ import annotations

import pytest
from transformers import TrainerCallback

from hf_etrag.training.trainer import EtragTrainer

from ..conftest import make_training_args


class _RecordLogs(TrainerCallback):
    """Each training log, with the scheduler's learning rates of the generator's and the encoder's groups in the
    optimiser step just taken."""

    def __init__(self, model) -> None:
        self.generator = {id(p) for p in model.generator.parameters()}
        self.encoder = {id(p) for p in model.query_encoder.parameters()}
        self.applied: dict[str, float] = {}
        self.records: list[tuple[dict, dict[str, float]]] = []

    def on_optimizer_step(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        # after `optimizer.step()`, before `lr_scheduler.step()`: the rates this step used
        self.applied = {}
        for group, rate in zip(optimizer.param_groups, lr_scheduler.get_last_lr(), strict=True):
            params = {id(p) for p in group["params"]}
            for part, ids in (("generator", self.generator), ("retriever", self.encoder)):
                if params & ids:
                    assert (
                        self.applied.setdefault(part, rate) == rate
                    )  # decay and no-decay groups move together

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" in (logs or {}):
            self.records.append((dict(logs), dict(self.applied)))


def _train(tmp_path, model, qa_train, **overrides):
    args = make_training_args(tmp_path, max_steps=5, lr_scheduler_type="linear", warmup_steps=2, **overrides)
    trainer = EtragTrainer(model, args, train_dataset=qa_train)
    recorder = _RecordLogs(model)
    trainer.add_callback(recorder)
    trainer.train()
    return trainer, recorder.records


def test_each_parameter_group_learning_rate_is_logged(tmp_path, model_and_index, qa_train):
    model, _ = model_and_index
    trainer, records = _train(tmp_path, model, qa_train, learning_rate=1e-2, retriever_learning_rate=4e-3)
    assert len(records) == 5
    # linear warm-up over 2 steps: 0, then half, then each group's configured rate at step 3
    peak = records[2][0]
    assert peak["learning_rate"] == pytest.approx(1e-2)  # the generator's, not the retriever's 4e-3
    assert peak["learning_rate_retriever"] == pytest.approx(4e-3)
    assert [logs["learning_rate"] for logs, _ in records[:3]] == pytest.approx([0.0, 5e-3, 1e-2])
    for logs, applied in records:
        assert logs["learning_rate"] == pytest.approx(applied["generator"], rel=1e-12, abs=0)
        assert logs["learning_rate_retriever"] == pytest.approx(applied["retriever"], rel=1e-12, abs=0)
        # the two schedules keep the ratio of their base rates
        assert logs["learning_rate_retriever"] == pytest.approx(0.4 * logs["learning_rate"])
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["learning_rate_retriever"] for entry in history] == [
        logs["learning_rate_retriever"] for logs, _ in records
    ]


def test_one_learning_rate_logs_as_before(tmp_path, model_and_index, qa_train):
    """Without `retriever_learning_rate` every group trains at `learning_rate`: one value, no extra key."""
    model, _ = model_and_index
    _, records = _train(tmp_path, model, qa_train, learning_rate=1e-2)
    for logs, applied in records:
        assert logs["learning_rate"] == pytest.approx(applied["generator"], rel=1e-12, abs=0)
        assert not [key for key in logs if key.startswith("learning_rate_")]
