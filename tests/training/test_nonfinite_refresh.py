"""A refresh that produces NaN/inf passage vectors is never swapped in: `refresh_index` raises and keeps the index;
during training the old index is kept, the step is named in a warning, `nonfinite_refreshes` is logged, and more
than `max_nonfinite_steps` such refreshes in a row stop training (issue 14)."""

import logging

import numpy as np
import pytest
import torch

from hf_etrag import PassageIndex
from hf_etrag.retrieval import NonFiniteVectorsError
from hf_etrag.training import callbacks
from hf_etrag.training.callbacks import refresh_index
from hf_etrag.training.trainer import EtragTrainer

from ..conftest import make_training_args


def test_refresh_with_nan_weights_raises_and_keeps_the_index(model_and_index):
    model, index = model_and_index
    before = index.embeddings.copy()
    with torch.no_grad():
        next(model.document_encoder.parameters()).fill_(float("nan"))  # the word embeddings
    with pytest.raises(
        NonFiniteVectorsError, match=r"Refusing to index non-finite passage vectors: .*unchanged"
    ):
        refresh_index(model, step=7)
    np.testing.assert_array_equal(index.embeddings, before)
    assert index.built_at_step is None


def _nan_on_calls(monkeypatch, bad_calls: set[int]) -> None:
    """Make the refresh's corpus encoding NaN on the given calls (1-based), as a broken document encoder would."""
    real = callbacks.encode_corpus_sharded
    calls = []

    def encode(*args, **kwargs):
        vectors, encoded = real(*args, **kwargs)
        calls.append(1)
        if len(calls) in bad_calls:
            vectors = np.full_like(vectors, np.nan)
        return vectors, encoded

    monkeypatch.setattr(callbacks, "encode_corpus_sharded", encode)


def test_a_nonfinite_refresh_keeps_the_old_index_and_is_logged(
    tmp_path, monkeypatch, model_and_index, qa_train, caplog
):
    model, index = model_and_index
    _nan_on_calls(monkeypatch, {2, 3})  # the refreshes after steps 2 and 3
    args = make_training_args(tmp_path, max_steps=4, refresh_steps=1, max_nonfinite_steps=2)
    trainer = EtragTrainer(model, args, index=index, train_dataset=qa_train)
    with caplog.at_level(logging.WARNING, logger=callbacks.__name__):
        trainer.train()
    warnings = [r.getMessage() for r in caplog.records if "not applied" in r.getMessage()]
    assert len(warnings) == 2 and warnings[0].startswith(
        "Index refresh at step 2 not applied: Refusing to index non-finite passage vectors"
    )
    assert "it keeps the embeddings built at step 1" in warnings[0]
    assert index.built_at_step == 4 and np.isfinite(index.embeddings).all()
    logged = {h["step"]: h.get("nonfinite_refreshes") for h in trainer.state.log_history if "loss" in h}
    assert logged == {1: None, 2: 1, 3: 2, 4: 2}


def test_too_many_nonfinite_refreshes_in_a_row_stop_training(
    tmp_path, monkeypatch, model_and_index, qa_train
):
    model, index = model_and_index
    _nan_on_calls(monkeypatch, {1, 2, 3, 4})
    args = make_training_args(tmp_path, max_steps=4, refresh_steps=1, max_nonfinite_steps=1)
    trainer = EtragTrainer(model, args, index=index, train_dataset=qa_train)
    before = index.embeddings.copy()
    with pytest.raises(RuntimeError) as error:
        trainer.train()
    message = str(error.value)
    assert message.startswith(
        "Training stopped at step 2: the index refresh produced NaN/inf passage vectors in 2 refreshes in a row, "
        "more than `max_nonfinite_steps`=1. Refusing to index non-finite passage vectors"
    )
    np.testing.assert_array_equal(index.embeddings, before)


def test_a_first_build_with_nonfinite_vectors_stops_before_training(
    tmp_path, monkeypatch, model_and_index, qa_train
):
    """No earlier index to keep: the error is raised as it is."""
    model, _ = model_and_index
    empty = PassageIndex(model.index.corpus)
    _nan_on_calls(monkeypatch, {1})
    args = make_training_args(tmp_path, max_steps=2, refresh_steps=1, max_nonfinite_steps=5)
    trainer = EtragTrainer(model, args, index=empty, train_dataset=qa_train)
    with pytest.raises(NonFiniteVectorsError, match=r"unchanged \(it still has no embeddings\)"):
        trainer.train()
    assert trainer.state.global_step == 0
