"""Open-domain QA: questions answered from retrieved corpus passages; SQuAD EM/F1, recall@k of the gold passage."""

from __future__ import annotations

from typing import Any

from datasets import Dataset

from ...metrics.qa import squad_scores
from ...retrieval.index import PassageIndex
from ..adapters import load_open_qa
from .base import Predictions, Task, TaskScores, TaskSettings, register_task
from .scoring import score_passage_task

__all__ = ["OpenQa"]


@register_task("open_qa")
class OpenQa(Task):
    index_kind = "passages"

    def load(self, source: str, split: str | None, limit: int | None, settings: TaskSettings) -> Dataset:
        return load_open_qa(source, split, limit=limit)

    def answer_scores(self, predictions: list[str], answers: list[Any]) -> dict[str, float]:
        return squad_scores(predictions, answers)

    def score(
        self,
        test: Dataset,
        predictions: Predictions,
        index: PassageIndex,
        ks: tuple[int, ...],
        shown: int = 5,
        negative_label: str | None = None,
    ) -> TaskScores:
        return score_passage_task(self.name, test, predictions, index, ks, shown)
