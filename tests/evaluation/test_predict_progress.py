"""The evaluation's progress bars count what is done: one bar for retrieval over every example, one for generation
over the generated ones only (a single bar over both projected the generation rate onto every batch)."""

from __future__ import annotations

import pytest

import hf_etrag.evaluation.predict as predict_module
from hf_etrag.evaluation.predict import predict


class _RecordingBar:
    bars: list[_RecordingBar] = []

    def __init__(self, total: int, desc: str, disable: bool, **kwargs) -> None:
        self.total, self.desc, self.disable, self.done = total, desc, disable, 0
        _RecordingBar.bars.append(self)

    def __enter__(self) -> _RecordingBar:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def update(self, n: int) -> None:
        self.done += n


@pytest.mark.parametrize(("n_generate", "batch_size"), [(3, 4), (10, 4), (0, 8)])
def test_retrieval_and_generation_have_their_own_counts(
    model_and_index, qa_train, tokenizer, monkeypatch, n_generate, batch_size
):
    model, _ = model_and_index
    monkeypatch.setattr(predict_module, "tqdm", _RecordingBar)
    _RecordingBar.bars = []
    test = qa_train.select(range(10))
    predictions = predict(
        model, test, tokenizer, depth=5, n_generate=n_generate, max_new_tokens=3, batch_size=batch_size,
        show_progress=True,
    )  # fmt: skip
    retrieving, generating = _RecordingBar.bars
    assert (retrieving.desc, retrieving.total, retrieving.done) == ("Retrieving", 10, 10)
    assert (generating.desc, generating.total, generating.done) == ("Generating", n_generate, n_generate)
    assert generating.disable == (n_generate == 0)
    assert len(predictions.retrieved) == 10 and all(len(rows) == 5 for rows in predictions.retrieved)
    assert len(predictions.texts) == n_generate
