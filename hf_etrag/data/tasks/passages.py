"""Tasks that retrieve corpus passages and generate free text: open-domain QA (SQuAD EM/F1) and knowledge-grounded
dialogue (unigram F1, ROUGE-L), both with recall@k of the gold passage."""

from __future__ import annotations

from typing import Any

from datasets import Dataset

from ...metrics.dialogue import dialogue_scores
from ...metrics.qa import squad_scores
from ...retrieval.index import PassageIndex
from ..adapters import load_dialogue, load_open_qa
from .base import Predictions, Task, TaskScores, TaskSettings, register_task
from .scoring import score_passage_task

__all__ = ["Dialogue", "OpenQa", "PassageTask"]


class PassageTask(Task):
    """A task over a passage corpus: answers scored by [`answer_scores`], retrieval by recall@k / MRR."""

    index_kind = "passages"

    def score(
        self, test: Dataset, predictions: Predictions, index: PassageIndex, **options: Any
    ) -> TaskScores:
        return score_passage_task(
            self.name, test, predictions, index, options.get("ks", ()), options.get("shown", 5)
        )


@register_task("open_qa")
class OpenQa(PassageTask):
    def load(self, source: str, split: str | None, limit: int | None, settings: TaskSettings) -> Dataset:
        return load_open_qa(source, split, limit=limit)

    def answer_scores(self, predictions: list[str], answers: list[Any]) -> dict[str, float]:
        return squad_scores(predictions, answers)


@register_task("dialogue")
class Dialogue(PassageTask):
    def load(self, source: str, split: str | None, limit: int | None, settings: TaskSettings) -> Dataset:
        return load_dialogue(source, split, max_history_turns=settings.max_history_turns, limit=limit)

    def answer_scores(self, predictions: list[str], answers: list[Any]) -> dict[str, float]:
        return dialogue_scores(predictions, answers)
