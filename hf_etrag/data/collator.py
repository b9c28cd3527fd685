"""Padding a list of tokenised examples into a batch for [`EtragModel`]."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..modeling.contexts import IGNORE_INDEX

__all__ = ["EtragDataCollator"]


def _pad(rows: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def _check_targets(features: list[dict[str, Any]]) -> None:
    """An example whose `labels` are empty or all -100 has no target: its log-likelihood is an empty sum, which
    the objectives turn into a zero or NaN loss without saying why. Name the record instead."""
    for position, feature in enumerate(features):
        if not any(token != IGNORE_INDEX for token in feature["labels"]):
            record = f"Record {feature['id']!r}" if "id" in feature else f"Example {position} of the batch"
            raise ValueError(
                f"{record} has no target tokens: its `labels` are empty or all {IGNORE_INDEX} (padding), so there "
                "is nothing to train on. Give it a non-empty answer/target, or drop it from the dataset "
                "(e.g. `dataset.filter(lambda r: any(t != -100 for t in r['labels']))`)."
            )


@dataclass
class EtragDataCollator:
    """Pads `input_ids` (retriever), optional `generator_input_ids` and `posterior_input_ids` (query + answer
    for jsa/vrag's posterior retriever when the generator has its own tokenizer), `labels` (with -100) and carries
    `gold_passage_index` (corpus row, -1 when unknown) for retrieval statistics, and `doc_indices` (fixed
    passages per example, bypassing the search) when the dataset has them."""

    retriever_pad_id: int
    generator_pad_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        batch["input_ids"], batch["attention_mask"] = _pad(
            [f["input_ids"] for f in features], self.retriever_pad_id
        )
        if "generator_input_ids" in features[0]:
            ids, mask = _pad([f["generator_input_ids"] for f in features], self.generator_pad_id)
            batch["generator_input_ids"], batch["generator_attention_mask"] = ids, mask
        if "posterior_input_ids" in features[0]:
            ids, mask = _pad([f["posterior_input_ids"] for f in features], self.retriever_pad_id)
            batch["posterior_input_ids"], batch["posterior_attention_mask"] = ids, mask
        if "labels" in features[0]:
            _check_targets(features)
            batch["labels"], _ = _pad([f["labels"] for f in features], IGNORE_INDEX)
        if "doc_indices" in features[0]:
            batch["doc_indices"] = torch.tensor([f["doc_indices"] for f in features], dtype=torch.long)
        if "memory_index" in features[0]:
            batch["memory_index"] = torch.tensor([f["memory_index"] for f in features], dtype=torch.long)
        if "gold_passage_index" in features[0]:
            batch["gold_passage_index"] = torch.tensor([f["gold_passage_index"] for f in features])
        return batch
