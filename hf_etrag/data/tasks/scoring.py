"""Scoring a test split from what the model retrieved and generated: one function per task, each returning the
scalar metrics, the figures' data and one record per example (for `predictions.jsonl` and the report).

- open QA: SQuAD EM/F1 of the generated answers, recall@k / MRR of the gold passage;
- dialogue: unigram F1 and ROUGE-L of the generated responses, recall@k of the gold knowledge sentence;
- relation extraction: micro precision/recall/F1 without the negative label, per-relation F1, and (ETRAG's
  analysis) how often the retrieved training instances share the query's label or one of its entities.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

from datasets import Dataset

from ...metrics.relation_extraction import per_relation_f1, re_micro_prf
from ...metrics.retrieval import gold_rank, retrieval_scores
from ...retrieval.index import PassageIndex
from .base import Predictions, TaskScores, get_task

__all__ = ["Predictions", "TaskScores", "score_passage_task", "score_relation_extraction"]

_SNIPPET = 160  # characters of a retrieved passage shown per example


class _Rows:
    """Columns of the index's corpus read once as lists (row access into a `Dataset` is slow per call)."""

    def __init__(self, index: PassageIndex, columns: tuple[str, ...] = ()) -> None:
        corpus = index.corpus
        wanted = ("id", "text", "title", *columns)
        self.columns = {name: corpus[name] for name in wanted if name in corpus.column_names}

    def has(self, *names: str) -> bool:
        return all(name in self.columns for name in names)

    def get(self, name: str, row: int) -> Any:
        return self.columns[name][row]

    def shown(self, rows: list[int], gold: int | None = None) -> list[dict[str, Any]]:
        out = []
        for row in rows:
            record = {"row": row, "id": str(self.get("id", row)), "text": self.get("text", row)[:_SNIPPET]}
            if self.has("title") and self.get("title", row):
                record["title"] = self.get("title", row)
            if gold is not None:
                record["gold"] = row == gold
            out.append(record)
        return out


def score_passage_task(
    task: str,
    test: Dataset,
    predictions: Predictions,
    index: PassageIndex,
    ks: tuple[int, ...],
    shown: int = 5,
) -> TaskScores:
    """Open QA or dialogue: answer quality on the generated subset, retrieval on every example with a gold."""
    n_generated = len(predictions.texts)
    answers = list(test["answers"])[:n_generated]
    metrics: dict[str, float | None] = dict(get_task(task).answer_scores(predictions.texts, answers))
    golds = list(test["gold_passage_index"])
    with_gold = [i for i, g in enumerate(golds) if g >= 0]
    curve: dict[int, float] = {}
    if with_gold and predictions.retrieved and predictions.retrieved[0]:
        depth = len(predictions.retrieved[0])
        ks = tuple(k for k in ks if k <= depth)
        scores = retrieval_scores(
            [predictions.retrieved[i] for i in with_gold], [golds[i] for i in with_gold], ks
        )
        metrics.update(scores)
        metrics["n_with_gold_passage"] = len(with_gold)
        curve = {k: float(scores[f"recall@{k}"]) for k in ks}
    records = []
    lookup = _Rows(index)
    for i, row in enumerate(test):
        retrieved = predictions.retrieved[i] if predictions.retrieved else []
        gold = golds[i] if golds[i] >= 0 else None
        records.append(
            {
                "id": row["id"],
                "question": row["question"],
                "answers": row["answers"],
                "prediction": predictions.texts[i] if i < n_generated else None,
                "gold_rank": gold_rank(retrieved, gold) if gold is not None else None,
                "retrieved": lookup.shown(retrieved[:shown], gold),
            }
        )
    return TaskScores(metrics, records, recall_at_k=curve)


def _shares_entity(query: dict[str, Any], instance: dict[str, Any]) -> bool:
    mine = {query["subject"].lower(), query["object"].lower()}
    return bool(mine & {instance["subject"].lower(), instance["object"].lower()})


def score_relation_extraction(
    test: Dataset, predictions: Predictions, index: PassageIndex, negative_label: str, shown: int = 5
) -> TaskScores:
    """Micro P/R/F1 without `negative_label`, per-relation F1, and the retrieved-instance analysis."""
    n_generated = len(predictions.texts)
    gold_labels = list(test["label"])[:n_generated]
    micro = re_micro_prf(predictions.texts, gold_labels, negative_label=negative_label)
    metrics: dict[str, float | None] = {f"micro_{name}": value for name, value in micro.items()}
    metrics["accuracy"] = (
        fmean(p == g for p, g in zip(predictions.texts, gold_labels, strict=True)) if n_generated else 0.0
    )
    per_relation = per_relation_f1(predictions.texts, gold_labels, negative_label=negative_label)
    lookup = _Rows(index, ("label", "subject", "object"))
    analysable = bool(predictions.retrieved and predictions.retrieved[0]) and lookup.has(
        "label", "subject", "object"
    )
    share_by_rank: dict[str, list[float]] = {}
    records = []
    same_label: list[list[bool]] = []
    same_entity: list[list[bool]] = []
    for i, query in enumerate(test):
        rows = predictions.retrieved[i] if analysable else []
        instances = [{name: lookup.get(name, r) for name in ("label", "subject", "object")} for r in rows]
        same_label.append([inst["label"] == query["label"] for inst in instances])
        same_entity.append([_shares_entity(query, inst) for inst in instances])
        retrieved = lookup.shown(rows[:shown])
        for item, inst, label_hit, entity_hit in zip(
            retrieved, instances, same_label[-1], same_entity[-1], strict=False
        ):
            item.update(label=inst["label"], same_label=label_hit, shares_entity=entity_hit)
        records.append(
            {
                "id": query["id"],
                "question": query["question"],
                "label": query["label"],
                "prediction": predictions.texts[i] if i < n_generated else None,
                "retrieved": retrieved,
            }
        )
    if analysable:
        flat_label = [hit for hits in same_label for hit in hits]
        flat_entity = [hit for hits in same_entity for hit in hits]
        metrics["retrieved_same_label"] = fmean(flat_label)
        metrics["retrieved_shares_entity"] = fmean(flat_entity)
        metrics["queries_with_same_label_retrieved"] = fmean(any(hits) for hits in same_label)
        k = len(same_label[0])
        share_by_rank = {
            "same label": [fmean(hits[r] for hits in same_label) for r in range(k)],
            "shares an entity": [fmean(hits[r] for hits in same_entity) for r in range(k)],
        }
    return TaskScores(metrics, records, per_relation=per_relation, share_by_rank=share_by_rank)
