"""Evaluating a trained model on tokenised QA examples: retrieval recall@k and SQuAD EM/F1 of its answers."""

from __future__ import annotations

import numpy as np
import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from ..data.collator import EtragDataCollator
from ..metrics.qa import squad_scores
from ..metrics.retrieval import retrieval_scores
from ..modeling.model import EtragModel

__all__ = ["evaluate_qa"]


@torch.no_grad()
def evaluate_qa(
    model: EtragModel,
    dataset: Dataset,
    generator_tokenizer: PreTrainedTokenizerBase,
    ks: tuple[int, ...] = (1, 5),
    batch_size: int = 32,
    max_new_tokens: int = 16,
    show_progress: bool = True,
) -> dict[str, float]:
    """Retrieve `max(ks)` passages and generate an answer for every example of a dataset made by
    [`tokenize_qa_dataset`] (it must keep `answers`; `gold_passage_index` enables recall@k)."""
    collator = EtragDataCollator(model.retriever_pad_id, model.generator_pad_id)
    device = next(model.parameters()).device
    retrieved, golds, predictions = [], [], []
    for start in tqdm(
        range(0, len(dataset), batch_size), desc="Evaluating", disable=not show_progress, leave=False
    ):
        rows = dataset.select(range(start, min(start + batch_size, len(dataset))))
        batch = collator([{k: r[k] for k in r if k not in ("answers", "question", "id")} for r in rows])
        batch = {k: v.to(device) for k, v in batch.items()}
        query_vectors = model.encode_queries(batch["input_ids"], batch["attention_mask"])
        retrieved.extend(model.retrieve(query_vectors, max(ks)).cpu().tolist())
        golds.extend(batch.get("gold_passage_index", torch.full((len(rows),), -1)).cpu().tolist())
        sequences = model.generate(
            batch["input_ids"],
            batch["attention_mask"],
            generator_input_ids=batch.get("generator_input_ids"),
            generator_attention_mask=batch.get("generator_attention_mask"),
            max_new_tokens=max_new_tokens,
        )
        predictions.extend(generator_tokenizer.batch_decode(sequences, skip_special_tokens=True))
    scores = squad_scores(predictions, list(dataset["answers"]))
    has_gold = np.asarray(golds) >= 0
    if has_gold.any():
        scores.update(
            retrieval_scores(
                [r for r, g in zip(retrieved, has_gold, strict=True) if g],
                [g for g in golds if g >= 0],
                ks=ks,
            )
        )
    return scores
