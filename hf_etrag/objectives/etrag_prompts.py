"""How ETRAG's soft prompts are made and read: span vectors of the retriever's token states, the query in the
generator's vocabulary, and decoder-only generation from prompt embeddings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from ..modeling.contexts import left_padding_order
from .base import RetrieverGenerator

__all__ = ["etrag_span_token_ids", "generate_from_embeddings", "generator_query", "pool_spans", "span_masks"]

logger = logging.getLogger(__name__)


def etrag_span_token_ids(retriever_tokenizer: Any) -> list[int] | None:
    """`[head marker, tail marker, separator]` ids of the retriever tokenizer: the relation queries wrap the
    subject in `@ ... @` and the object in `# ... #`, and a memory row reads `query [SEP] label words`. `None`
    (whole rows are read, with a warning) when the tokenizer lacks one of them."""
    ids = [retriever_tokenizer.convert_tokens_to_ids(token) for token in ("@", "#")]
    ids.append(retriever_tokenizer.sep_token_id)
    unknown = retriever_tokenizer.unk_token_id
    if any(i is None or (unknown is not None and i == unknown) for i in ids):
        logger.warning(
            "The retriever tokenizer lacks '@', '#' or a sep token (ids %s): ETRAG reads whole rows instead of "
            "head/tail/label span vectors. Pass `span_token_ids` in objective_kwargs to name them.",
            ids,
        )
        return None
    return [int(i) for i in ids]


def span_masks(input_ids: torch.Tensor, attention_mask: torch.Tensor, span_token_ids: list[int] | None):
    """`(N, 3, T)` masks of the head span (inside `@ ... @`), the tail span (inside `# ... #`) and the label
    span (between the first and second separator). A span that is absent falls back to the whole row."""
    row = attention_mask.bool()
    if span_token_ids is None:
        return row.unsqueeze(1).expand(-1, 3, -1)
    masks = []
    for token in span_token_ids:
        is_marker = input_ids == token
        inside = (is_marker.long().cumsum(-1) == 1) & ~is_marker & row
        masks.append(inside)
    masks = torch.stack(masks, dim=1)
    empty = ~masks.any(-1, keepdim=True)
    return torch.where(empty, row.unsqueeze(1), masks)


def pool_spans(hidden: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean of `(N, T, H)` token states over each of the `(N, S, T)` masks: `(N, S, H)` raw span vectors."""
    weights = masks.to(hidden.dtype)
    return weights @ hidden / weights.sum(-1, keepdim=True).clamp(min=1.0)


def generate_from_embeddings(
    model: RetrieverGenerator,
    inputs_embeds: torch.Tensor,
    attention: torch.Tensor,
    max_new_tokens: int,
    num_beams: int,
    prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]] | None,
) -> torch.Tensor:
    """Continue decoder-only generation from right-padded `[prompts; query]` embeddings: rows are moved to
    left padding (`generate` derives position ids from the mask, so the prompts keep positions 0..k as in
    training) and only the new tokens come back."""
    order = left_padding_order(attention)
    inputs_embeds = inputs_embeds.gather(1, order.unsqueeze(-1).expand_as(inputs_embeds))
    attention = attention.gather(1, order)
    constrained = prefix_allowed_tokens_fn
    if prefix_allowed_tokens_fn is not None:
        # Generating from `inputs_embeds` alone, `generate` shows the function only the new tokens, while the
        # contract above (and encoder-decoder decoding) puts one start token first: keep the two alike.
        start = torch.tensor([model.generator_pad_id], device=inputs_embeds.device)

        def constrained(batch_id: int, ids: torch.Tensor) -> list[int]:
            return prefix_allowed_tokens_fn(batch_id, torch.cat([start, ids]))

    generation_config = model.generator.generation_config
    return model.generator.generate(
        inputs_embeds=inputs_embeds,
        attention_mask=attention,
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        pad_token_id=model.generator_pad_id,
        eos_token_id=generation_config.eos_token_id,
        prefix_allowed_tokens_fn=constrained,
    )


def generator_query(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The query in the generator's vocabulary (the retriever's ids when the tokenizers are shared)."""
    ids = batch.get("generator_input_ids")
    if ids is None:
        return batch["input_ids"], batch["attention_mask"]
    return ids, batch["generator_attention_mask"]
