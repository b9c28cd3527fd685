"""Padding a list of tokenised examples into a batch for [`EtragModel`]."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..generator_inputs import IGNORE_INDEX

__all__ = ["EtragDataCollator"]


def _pad(rows: list[list[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


@dataclass
class EtragDataCollator:
    """Pads `input_ids` (retriever), optional `generator_input_ids`, `labels` (with -100) and carries
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
        if "labels" in features[0]:
            batch["labels"], _ = _pad([f["labels"] for f in features], IGNORE_INDEX)
        if "doc_indices" in features[0]:
            batch["doc_indices"] = torch.tensor([f["doc_indices"] for f in features], dtype=torch.long)
        if "memory_index" in features[0]:
            batch["memory_index"] = torch.tensor([f["memory_index"] for f in features], dtype=torch.long)
        if "gold_passage_index" in features[0]:
            batch["gold_passage_index"] = torch.tensor([f["gold_passage_index"] for f in features])
        return batch
