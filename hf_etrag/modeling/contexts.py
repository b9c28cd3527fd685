"""Joining a query with each retrieved passage into generator inputs, and scoring targets under them.

Works on token ids throughout: the passages were tokenised once when the corpus was indexed.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from transformers import PreTrainedModel

from .lm_head import LinearHead, chunked_target_logprobs, linear_head

__all__ = [
    "unpad_rows",
    "join_contexts",
    "length_buckets",
    "append_targets",
    "left_padding_order",
    "target_logprobs",
    "IGNORE_INDEX",
]

IGNORE_INDEX = -100


def unpad_rows(ids: torch.Tensor, mask: torch.Tensor) -> list[np.ndarray]:
    """Right-padded `(B, T)` ids to a list of unpadded numpy rows."""
    lengths = mask.sum(-1).tolist()
    array = ids.cpu().numpy()
    return [array[row, :length] for row, length in enumerate(lengths)]


def join_contexts(
    queries: list[np.ndarray],
    passages: list[np.ndarray],
    n_docs: int,
    max_length: int,
    pad_id: int,
    passage_first: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Build the `B*K` generator contexts, query `b` joined with each of its `K` passages.

    The passage is truncated first so that the query always fits (up to `max_length`). Encoder-decoder
    generators read query then passage; decoder-only generators read passage then query, so that the
    question stands right before the answer it prompts.
    """
    rows = []
    for row, passage in enumerate(passages):
        query = queries[row // n_docs][:max_length]
        passage = passage[: max(0, max_length - len(query))]
        rows.append(np.concatenate([passage, query] if passage_first else [query, passage]))
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


# Each generator call beyond the first must save this share of the padded area to be worth its fixed cost.
_MIN_SAVING_PER_CALL = 0.1


def length_buckets(lengths: np.ndarray, max_buckets: int, pad_multiple: int = 1) -> list[np.ndarray]:
    """Split rows into at most `max_buckets` groups of similar length, each to be padded to its own width.

    Rows are sorted by length and cut into contiguous runs that minimise the padded area (rows x width, widths
    rounded up to `pad_multiple`): an exact dynamic programme over the cut points for each number of groups, then
    the fewest groups whose area is within 10% per extra call of the best. Returns each group's row indices,
    longest group first; one group holds every row when `max_buckets <= 1`.
    """
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    if max_buckets <= 1 or len(order) <= 1:
        return [order]
    widths = -(-lengths[order] // pad_multiple) * pad_multiple  # descending
    n = len(order)
    starts = np.arange(n)
    best = np.full(n + 1, np.inf)
    # best[j]: least area of the first j sorted rows in g groups; rows i..j-1 cost (j - i) * widths[i]
    best[0] = 0.0
    cuts: list[np.ndarray] = []
    areas: list[float] = []
    for _ in range(min(max_buckets, n)):
        new, arg = np.full(n + 1, np.inf), np.zeros(n + 1, dtype=np.int64)
        for end in range(1, n + 1):
            candidates = best[:end] + (end - starts[:end]) * widths[:end]
            arg[end] = int(np.argmin(candidates))
            new[end] = candidates[arg[end]]
        cuts.append(arg)
        areas.append(float(new[n]))
        best = new
    n_groups = min(
        range(1, len(areas) + 1), key=lambda g: areas[g - 1] * (1 + _MIN_SAVING_PER_CALL * (g - 1))
    )
    groups, end = [], n
    for arg in reversed(cuts[:n_groups]):
        start = int(arg[end])
        groups.append(order[start:end])
        end = start
    return groups[::-1]


def _gather_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # log_softmax(x)[y] = x[y] - logsumexp(x): avoids materialising a second (N, T, V) tensor.
    logits = logits.float()
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def target_logprobs(
    generator: PreTrainedModel,
    context_ids: torch.Tensor,
    context_mask: torch.Tensor,
    labels: torch.Tensor,
    pad_id: int,
    return_logits: bool = False,
    chunked_head: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`(N, T)` log p(y_t | context, y_<t) for `labels` (`-100` marks padding), one row per context.

    For decoder-only generators the target is appended to each context and read back at its positions.
    `chunked_head`: for generators with a plain linear LM head, apply it a chunk of target positions at a time
    from the last hidden states ([`hf_etrag.modeling.lm_head`]); padding positions then hold 0.
    """
    targets = labels.masked_fill(labels == IGNORE_INDEX, pad_id)
    head = linear_head(generator) if chunked_head and not return_logits else None
    if head is not None:
        return _chunked_logprobs(generator, head, context_ids, context_mask, labels, targets, pad_id), None
    if generator.config.is_encoder_decoder:
        decoder_input_ids = generator.prepare_decoder_input_ids_from_labels(labels=labels)
        logits = generator(
            input_ids=context_ids, attention_mask=context_mask, decoder_input_ids=decoder_input_ids
        ).logits
        return _gather_logprobs(logits, targets), logits if return_logits else None

    input_ids, attention_mask, read_positions = append_targets(context_ids, context_mask, labels, pad_id)
    if _accepts_logits_to_keep(generator):
        # Right-aligned rows put every target in the last T columns, so the LM head (a (T_total, V) matmul and
        # a (N, T_total, V) tensor) runs on T + 1 positions per row instead of all of them.
        input_ids, attention_mask, read_positions, keep = _right_align(
            input_ids, attention_mask, read_positions
        )
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        logits = generator(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=keep
        ).logits
    else:
        logits = generator(input_ids=input_ids, attention_mask=attention_mask).logits
    target_logits = logits.gather(1, read_positions.unsqueeze(-1).expand(-1, -1, logits.size(-1)))
    return _gather_logprobs(target_logits, targets), target_logits if return_logits else None


def _chunked_logprobs(
    generator: PreTrainedModel,
    head: LinearHead,
    context_ids: torch.Tensor,
    context_mask: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor,
    pad_id: int,
) -> torch.Tensor:
    valid = labels != IGNORE_INDEX
    if generator.config.is_encoder_decoder:
        decoder_input_ids = generator.prepare_decoder_input_ids_from_labels(labels=labels)
        hidden = head.body(
            input_ids=context_ids,
            attention_mask=context_mask,
            decoder_input_ids=decoder_input_ids,
            use_cache=False,
        ).last_hidden_state
        return chunked_target_logprobs(hidden, head, targets, valid)
    input_ids, attention_mask, read_positions = append_targets(context_ids, context_mask, labels, pad_id)
    hidden = head.body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    read = hidden.gather(1, read_positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    return chunked_target_logprobs(read, head, targets, valid)


def _accepts_logits_to_keep(generator: PreTrainedModel) -> bool:
    base = generator.get_base_model() if hasattr(generator, "get_base_model") else generator  # peft wrappers
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def _right_align(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, read_positions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Left-pad the packed rows of [`append_targets`] and index `read_positions` into the last `keep` columns."""
    order = left_padding_order(attention_mask)
    width = attention_mask.shape[1]
    shift = (width - attention_mask.sum(-1)).unsqueeze(1)
    keep = min(read_positions.shape[1] + 1, width)
    kept_positions = (read_positions + shift - (width - keep)).clamp(0, keep - 1)
    return input_ids.gather(1, order), attention_mask.gather(1, order), kept_positions, keep


def append_targets(
    context_ids: torch.Tensor, context_mask: torch.Tensor, labels: torch.Tensor, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoder-only teacher forcing: each row's context immediately followed by its target, right-padded.

    Returns `(input_ids, attention_mask, read_positions)`; the logits at `read_positions[:, t]` predict
    target token `t` (for `-100` label slots the position is clamped into range and must be masked out).
    Packing each row contiguously (instead of context padding then target) keeps position ids dense.
    """
    context_lengths = context_mask.sum(-1)
    target_lengths = (labels != IGNORE_INDEX).sum(-1)
    width = int((context_lengths + target_lengths).max())
    n_rows, n_targets = labels.shape
    input_ids = torch.full((n_rows, width), pad_id, dtype=torch.long, device=context_ids.device)
    attention_mask = torch.zeros_like(input_ids)
    positions = torch.arange(width, device=context_ids.device).unsqueeze(0)
    in_context = positions < context_lengths.unsqueeze(1)
    input_ids[in_context] = context_ids[context_mask.bool()]
    target_positions = context_lengths.unsqueeze(1) + torch.arange(n_targets, device=labels.device)
    target_valid = labels != IGNORE_INDEX
    input_ids[target_valid.nonzero(as_tuple=True)[0], target_positions[target_valid]] = labels[target_valid]
    attention_mask[positions < (context_lengths + target_lengths).unsqueeze(1)] = 1
    # The logit at position p predicts token p + 1.
    read_positions = (target_positions - 1).clamp(max=width - 1)
    return input_ids, attention_mask, read_positions


def left_padding_order(mask: torch.Tensor) -> torch.Tensor:
    """`(B, T)` gather index that turns right-padded rows into left-padded ones (`x.gather(1, index)`), as
    decoder-only `generate` needs: every row's prompt then ends at the last column."""
    width = mask.shape[1]
    shift = (width - mask.sum(-1)).unsqueeze(1)
    return (torch.arange(width, device=mask.device).unsqueeze(0) - shift) % width
