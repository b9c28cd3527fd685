"""Knowledge-grounded dialogue: the response to the recent turns; unigram F1 and ROUGE-L, recall@k of the gold
knowledge sentence."""

from __future__ import annotations

from typing import Any

from datasets import Dataset

from ...metrics.dialogue import dialogue_scores
from ...retrieval.index import PassageIndex
from ..adapters import load_dialogue
from .base import Predictions, Task, TaskScores, TaskSettings, register_task
from .scoring import score_passage_task

__all__ = ["Dialogue"]


@register_task("dialogue")
class Dialogue(Task):
    index_kind = "passages"

    def load(self, source: str, split: str | None, limit: int | None, settings: TaskSettings) -> Dataset:
        return load_dialogue(source, split, max_history_turns=settings.max_history_turns, limit=limit)

    def answer_scores(self, predictions: list[str], answers: list[Any]) -> dict[str, float]:
        return dialogue_scores(predictions, answers)

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
