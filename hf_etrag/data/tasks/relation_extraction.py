"""Relation extraction (TACRED/SemEval layout): the relation label of a sentence's entity pair, read from
retrieved training instances; micro P/R/F1 without the negative label."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datasets import Dataset

from ...retrieval.index import PassageIndex
from ..adapters import SEMEVAL_NEGATIVE_LABEL, TACRED_NEGATIVE_LABEL, load_relation_extraction
from .base import Predictions, Task, TaskScores, TaskSettings, register_task
from .scoring import score_relation_extraction

__all__ = ["RelationExtraction"]


@register_task("relation_extraction")
class RelationExtraction(Task):
    index_kind = "instances"
    constrains_to_labels = True

    def load(self, source: str, split: str | None, limit: int | None, settings: TaskSettings) -> Dataset:
        return load_relation_extraction(source, split, template=settings.relation_template, limit=limit)

    def negative_label(self, labels: Sequence[str], settings: TaskSettings) -> str | None:
        """The recipe's, else SemEval's `Other` or TACRED's `no_relation`."""
        if settings.negative_label is not None:
            return settings.negative_label
        return SEMEVAL_NEGATIVE_LABEL if SEMEVAL_NEGATIVE_LABEL in labels else TACRED_NEGATIVE_LABEL

    def score(
        self, test: Dataset, predictions: Predictions, index: PassageIndex, **options: Any
    ) -> TaskScores:
        return score_relation_extraction(
            test, predictions, index, options["negative_label"], options.get("shown", 5)
        )
