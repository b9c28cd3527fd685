"""Logged statistics stay on the device until a logging step: `compute_loss` reads no value on the host except the
non-finite check's one flag, and the logged means equal the per-step values averaged on the host."""

import math

import pytest
import torch

from hf_etrag.training.trainer import EtragTrainer, mean_of_logged, retrieval_statistics

from ..conftest import first_batch, make_training_args


def test_compute_loss_reads_one_value_on_the_host(tmp_path, model_and_index, qa_train, monkeypatch):
    model, index = model_and_index
    trainer = EtragTrainer(model, make_training_args(tmp_path), index=index, train_dataset=qa_train)
    model.train()
    batch = first_batch(qa_train, n=4)
    reads = []
    for name in ("item", "__float__", "__bool__", "tolist"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            if self.device.type != "cpu" or self.requires_grad or self.grad_fn is not None or self.numel() == 1:
                reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    trainer.compute_loss(model, batch)
    monkeypatch.undo()
    # the finite check before the backward (every rank must agree to skip) is the only read of a statistic
    assert reads.count("item") == 1 and "__float__" not in reads, reads
    logged = trainer._metrics["train"]
    assert logged and all(isinstance(v, torch.Tensor) for values in logged.values() for v in values)


def test_logged_means_match_host_means_and_skip_missing_values():
    values = [torch.tensor(0.5), torch.tensor(float("nan")), 1.5, torch.tensor(2.0)]
    assert mean_of_logged(values) == pytest.approx((0.5 + 1.5 + 2.0) / 3)
    assert mean_of_logged([torch.tensor(float("nan"))]) is None
    assert mean_of_logged([]) is None


def test_gold_in_top_k_is_missing_when_no_gold_is_known(model_and_index, qa_train):
    model, _ = model_and_index
    batch = first_batch(qa_train, n=4)
    output = model(**batch)
    unknown = torch.full_like(batch["gold_passage_index"], -1)
    assert math.isnan(float(retrieval_statistics(output, unknown)["gold_in_top_k"]))
    known = retrieval_statistics(output, batch["gold_passage_index"])["gold_in_top_k"]
    hits = (output.retrieved_doc_indices == batch["gold_passage_index"].unsqueeze(-1)).any(-1)
    assert float(known) == pytest.approx(float(hits.float().mean()))
