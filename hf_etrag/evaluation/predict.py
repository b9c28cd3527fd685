"""Predicting on a test split: retrieve for every example, generate for the first `n_generate`.

The two passes get a progress bar each, counting examples: retrieval costs milliseconds per example, generation
(RAG-Sequence thorough decoding on a CPU) seconds, so one bar over both would estimate the time left from the
wrong mix. With `test_generation_limit: 200` of 2,000 examples, a single bar over the batches timed the first
(generating) batches and projected that rate over all of them: hours for a run that ends in minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from ..data.collator import EtragDataCollator
from ..data.labels import LabelConstraint
from ..data.tasks import Predictions
from ..modeling.model import EtragModel

__all__ = ["predict"]


def _batches(
    model: EtragModel, dataset: Dataset, n_examples: int, batch_size: int, bar: Any
) -> Iterator[dict[str, torch.Tensor]]:
    """Collated batches of the model columns of the first `n_examples` rows, on the model's device; `bar` advances
    by each batch's examples once the caller is done with it."""
    collator = EtragDataCollator(model.retriever_pad_id, model.generator_pad_id)
    device = next(model.parameters()).device
    columns = [c for c in ("input_ids", "generator_input_ids") if c in dataset.column_names]
    model_inputs = dataset.select_columns(columns)
    for start in range(0, n_examples, batch_size):
        rows = model_inputs[start : min(start + batch_size, n_examples)]
        features = [{c: rows[c][i] for c in columns} for i in range(len(rows["input_ids"]))]
        yield {k: v.to(device) for k, v in collator(features).items()}
        bar.update(len(features))


@torch.no_grad()
def predict(
    model: EtragModel,
    dataset: Dataset,
    generator_tokenizer: Any,
    depth: int,
    n_generate: int,
    max_new_tokens: int,
    label_constraint: LabelConstraint | None = None,
    batch_size: int = 16,
    show_progress: bool = False,
    decoding: str | None = None,
) -> Predictions:
    """Retrieve `depth` rows for every example of a tokenised dataset and generate for the first `n_generate`
    (with `label_constraint`: decode restricted to its labels and return raw labels; `decoding`: see
    [`hf_etrag.modeling.generation.rag_generate`], default the objective's)."""
    model.eval()
    n_generate = min(n_generate, len(dataset))
    retrieved: list[list[int]] = []
    texts: list[str] = []
    if depth:
        with tqdm(
            total=len(dataset), desc="Retrieving", unit="example", disable=not show_progress, leave=False
        ) as bar:
            for batch in _batches(model, dataset, len(dataset), batch_size, bar):
                query_vectors = model.encode_queries(batch["input_ids"], batch["attention_mask"])
                retrieved += model.retrieve(query_vectors, depth).cpu().tolist()
    max_new_tokens = label_constraint.max_new_tokens if label_constraint else max_new_tokens
    with tqdm(
        total=n_generate,
        desc="Generating",
        unit="example",
        disable=not show_progress or not n_generate,
        leave=False,
    ) as bar:
        for batch in _batches(model, dataset, n_generate, batch_size, bar):
            sequences = model.generate(
                batch["input_ids"],
                batch["attention_mask"],
                generator_input_ids=batch.get("generator_input_ids"),
                generator_attention_mask=batch.get("generator_attention_mask"),
                max_new_tokens=max_new_tokens,
                label_constraint=label_constraint,
                **({"decoding": decoding} if decoding else {}),
            )
            if label_constraint is not None:
                texts += label_constraint.batch_decode(sequences)
            else:
                texts += generator_tokenizer.batch_decode(sequences, skip_special_tokens=True)
    return Predictions(retrieved, texts)
