"""Decoding with retrieval: RAG-Sequence (generate per passage, rescore under all passages: "thorough"; or
sum each proposal's own likelihood over the passages that proposed it: "fast") and RAG-Token (marginalise the
next-token distribution over passages at every step)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch

from .answering import EtragGenerateOutput, retrieved_passages
from .contexts import IGNORE_INDEX, target_logprobs

if TYPE_CHECKING:
    from ..data.labels import LabelConstraint
    from ..objectives import Objective

__all__ = ["DECODING_MODES", "answers_to_labels", "generate_per_passage", "rag_generate"]

# "sequence" is RAG-Sequence's thorough decoding; "sequence_fast" its fast decoding (Lewis et al. 2020, sec. 2.4).
DECODING_MODES: tuple[str, ...] = ("sequence", "sequence_fast", "token")


class EtragModel(Protocol):
    """What decoding uses of [`hf_etrag.EtragModel`] (a protocol, so that this module needs no import of it)."""

    objective: Objective
    generator: Any
    training: bool
    index: Any

    @property
    def generator_pad_id(self) -> int: ...

    def eval(self) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def encode_queries(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor: ...

    def retrieve_with_vectors(
        self, query_vectors: torch.Tensor, n_docs: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...

    def document_vectors(
        self, doc_indices: torch.Tensor, device: torch.device, fresh_vectors: torch.Tensor | None = None
    ) -> torch.Tensor: ...

    def score_documents(self, query_vectors: torch.Tensor, doc_vectors: torch.Tensor) -> torch.Tensor: ...

    def build_contexts(
        self,
        generator_input_ids: torch.Tensor,
        generator_attention_mask: torch.Tensor,
        doc_indices: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def _special_ids(model: EtragModel) -> tuple[int, int | None, int | None]:
    generation_config = model.generator.generation_config
    eos = generation_config.eos_token_id
    if isinstance(eos, list):
        eos = eos[0]
    start = getattr(model.generator.config, "decoder_start_token_id", None)  # absent on decoder-only configs
    if start is None:
        start = generation_config.decoder_start_token_id
    return model.generator_pad_id, eos, start


@torch.no_grad()
def rag_generate(
    model: EtragModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    generator_input_ids: torch.Tensor | None = None,
    generator_attention_mask: torch.Tensor | None = None,
    n_docs: int | None = None,
    max_new_tokens: int = 16,
    num_beams: int = 1,
    decoding: Literal["sequence", "sequence_fast", "token"] | None = None,
    return_doc_indices: bool = False,
    label_constraint: LabelConstraint | None = None,
    return_dict_in_generate: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor] | EtragGenerateOutput:
    """Generate answers `(B, L)` (right-padded with the pad id, no start token).

    With `return_dict_in_generate=True` (transformers' name) it returns an
    [`hf_etrag.modeling.answering.EtragGenerateOutput`] instead: the same `sequences` plus the evidence, i.e. the
    retrieved corpus rows, their scores and the passages (id, title, text, score) per example.

    `decoding` defaults to the objective's: `"token"` for RAG-Token (greedy), `"sequence"` otherwise
    (RAG-Sequence thorough decoding: every passage's proposal is rescored under all K passages, K x K generator
    passes). `"sequence_fast"` is RAG-Sequence fast decoding: a proposal's likelihood counts only under the
    passages that proposed it, so no rescoring pass runs (about K times cheaper). Objectives with their own
    `generate` (ETRAG's soft prompts) decode themselves. `label_constraint`
    ([`hf_etrag.data.labels.LabelConstraint`]) restricts every path to its labels.
    """
    if label_constraint is not None:
        _check_constraint(model, label_constraint, max_new_tokens)
    was_training = model.training
    model.eval()
    try:
        if model.objective.decodes_itself:
            batch = {
                "input_ids": input_ids,
                "attention_mask": attention_mask,
                "generator_input_ids": generator_input_ids,
                "generator_attention_mask": generator_attention_mask,
            }
            # The objective's decoder sequence starts with the decoder start token: 1 token before the answer.
            constrained = _constraint_kwargs(label_constraint, prompt_length=1)
            sequences = model.objective.generate(model, batch, max_new_tokens, num_beams, **constrained)
            if return_dict_in_generate:
                return EtragGenerateOutput(sequences=sequences)
            return (sequences, None) if return_doc_indices else sequences
        query_vectors = model.encode_queries(input_ids, attention_mask)
        doc_indices, reranked_vectors = model.retrieve_with_vectors(query_vectors, n_docs)
        doc_vectors = model.document_vectors(doc_indices, query_vectors.device, reranked_vectors)
        doc_scores = model.score_documents(query_vectors, doc_vectors)
        doc_logprobs = torch.log_softmax(doc_scores, dim=-1)
        if generator_input_ids is None:
            generator_input_ids, generator_attention_mask = input_ids, attention_mask
        contexts = model.build_contexts(generator_input_ids, generator_attention_mask, doc_indices)
        decoding = decoding or model.objective.decoding
        if decoding not in DECODING_MODES:
            raise ValueError(f"`decoding={decoding!r}`: use one of {', '.join(DECODING_MODES)}.")
        if decoding == "token":
            sequences = _rag_token_greedy(model, *contexts, doc_logprobs, max_new_tokens, label_constraint)
        elif decoding == "sequence_fast":
            sequences = _rag_sequence_fast(
                model, *contexts, doc_logprobs, max_new_tokens, num_beams, label_constraint
            )
        else:
            sequences = _rag_sequence_thorough(
                model, *contexts, doc_logprobs, max_new_tokens, num_beams, label_constraint
            )
    finally:
        model.train(was_training)
    if return_dict_in_generate:
        return EtragGenerateOutput(
            sequences=sequences,
            retrieved_doc_indices=doc_indices,
            doc_scores=doc_scores,
            passages=retrieved_passages(model.index, doc_indices, doc_scores),
        )
    return (sequences, doc_indices) if return_doc_indices else sequences


def _check_constraint(model: EtragModel, constraint: LabelConstraint, max_new_tokens: int) -> None:
    _, eos, _ = _special_ids(model)
    if constraint.eos_token_id != eos:
        raise ValueError(
            f"The label constraint ends labels with token {constraint.eos_token_id}, but the generator's eos is "
            f"{eos}; build it with the generator's tokenizer."
        )
    if max_new_tokens < constraint.max_new_tokens:
        raise ValueError(
            f"`max_new_tokens={max_new_tokens}` cannot finish the longest label; "
            f"use `max_new_tokens={constraint.max_new_tokens}` (`constraint.max_new_tokens`)."
        )


def _constraint_kwargs(constraint: LabelConstraint | None, prompt_length: int) -> dict[str, Any]:
    """`generate` keyword arguments restricting decoding to the constraint's labels (none without one)."""
    if constraint is None:
        return {}
    return {"prefix_allowed_tokens_fn": constraint.with_prompt_length(prompt_length).prefix_allowed_tokens_fn}


def generate_per_passage(
    model: EtragModel,
    context_ids: torch.Tensor,
    context_mask: torch.Tensor,
    max_new_tokens: int,
    num_beams: int,
    label_constraint: LabelConstraint | None = None,
    with_scores: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """One proposal per context row `(N, L)`; with `with_scores`, also each proposal's log-likelihood `(N,)`
    under its own context (tokens up to and including the first eos)."""
    pad, eos, start = _special_ids(model)
    generator = model.generator
    if generator.config.is_encoder_decoder:
        inputs = {"input_ids": context_ids, "attention_mask": context_mask, "decoder_start_token_id": start}
        prompt_width = 1  # the decoder start token
    else:
        # Decoder-only generation needs left padding so that every row continues right after its prompt.
        width = context_ids.shape[1]
        shift = (width - context_mask.sum(-1)).unsqueeze(1)
        positions = (torch.arange(width, device=context_ids.device).unsqueeze(0) - shift) % width
        inputs = {
            "input_ids": context_ids.gather(1, positions),
            "attention_mask": context_mask.gather(1, positions),
        }
        prompt_width = width
    out = generator.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        pad_token_id=pad,
        eos_token_id=eos,
        **_constraint_kwargs(label_constraint, prompt_length=prompt_width),
        **({"output_scores": True, "return_dict_in_generate": True} if with_scores else {}),
    )
    if not with_scores:
        return out[:, prompt_width:]
    return _with_sequence_scores(generator, out, prompt_width, pad, eos)


def _with_sequence_scores(
    generator: Any, out: Any, prompt_width: int, pad: int, eos: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split `generate`'s dict output into the new tokens and their summed log-probabilities (normalised over
    the tokens each step allowed)."""
    sequences = out.sequences[:, prompt_width:]
    transition = generator.compute_transition_scores(
        out.sequences, out.scores, beam_indices=getattr(out, "beam_indices", None), normalize_logits=True
    )
    transition = transition[:, -sequences.shape[1] :] if sequences.shape[1] else transition[:, :0]
    counted = answers_to_labels(sequences, pad, eos) != IGNORE_INDEX
    scores = transition.float().masked_fill(~counted, 0.0).masked_fill(~torch.isfinite(transition), 0.0)
    return sequences, scores.sum(-1)


def answers_to_labels(sequences: torch.Tensor, pad: int, eos: int | None) -> torch.Tensor:
    """Generated ids to loss labels: keep tokens up to and including the first eos, mask the rest."""
    labels = sequences.clone()
    is_end = sequences == eos if eos is not None else torch.zeros_like(sequences, dtype=torch.bool)
    after_end = (is_end.long().cumsum(-1) - is_end.long()) > 0
    labels[after_end] = IGNORE_INDEX
    if eos != pad:
        labels[labels == pad] = IGNORE_INDEX
    return labels


def _rag_sequence_thorough(
    model: EtragModel,
    context_ids: torch.Tensor,
    context_mask: torch.Tensor,
    doc_logprobs: torch.Tensor,
    max_new_tokens: int,
    num_beams: int,
    label_constraint: LabelConstraint | None = None,
) -> torch.Tensor:
    """Each passage proposes one answer; every proposal is scored under all K passages (RAG's "thorough
    decoding") and the one with the highest marginal likelihood wins."""
    batch, n_docs = doc_logprobs.shape
    pad, eos, _ = _special_ids(model)
    candidates = generate_per_passage(
        model, context_ids, context_mask, max_new_tokens, num_beams, label_constraint
    )
    labels = answers_to_labels(candidates, pad, eos)  # (B*K, T): candidate c of example b is row b*K + c
    # Pair candidate c with passage k for every (b, c, k): contexts repeat per candidate.
    candidate_labels = (
        labels.view(batch, n_docs, 1, -1).expand(-1, -1, n_docs, -1).reshape(-1, labels.shape[1])
    )
    paired_ids = (
        context_ids.view(batch, 1, n_docs, -1).expand(-1, n_docs, -1, -1).reshape(-1, context_ids.shape[1])
    )
    paired_mask = context_mask.view(batch, 1, n_docs, -1).expand(-1, n_docs, -1, -1).reshape(paired_ids.shape)
    logprobs, _ = target_logprobs(model.generator, paired_ids, paired_mask, candidate_labels, pad_id=pad)
    mask = (candidate_labels != IGNORE_INDEX).to(logprobs.dtype)
    sequence_logprobs = (logprobs * mask).sum(-1).view(batch, n_docs, n_docs)
    marginal = torch.logsumexp(sequence_logprobs + doc_logprobs.unsqueeze(1), dim=-1)  # (B, candidates)
    best = marginal.argmax(-1)
    chosen = candidates.view(batch, n_docs, -1)[torch.arange(batch), best]
    return chosen.masked_fill(labels.view(batch, n_docs, -1)[torch.arange(batch), best] == IGNORE_INDEX, pad)


def _rag_sequence_fast(
    model: EtragModel,
    context_ids: torch.Tensor,
    context_mask: torch.Tensor,
    doc_logprobs: torch.Tensor,
    max_new_tokens: int,
    num_beams: int,
    label_constraint: LabelConstraint | None = None,
) -> torch.Tensor:
    """RAG-Sequence fast decoding: p(y|x) ~ sum over the passages k whose proposal is y of p(z_k|x) p(y|x,z_k);
    a passage that did not propose y counts as p(y|x,z_k) = 0, so no K x K rescoring pass is needed."""
    batch, n_docs = doc_logprobs.shape
    pad, eos, _ = _special_ids(model)
    candidates, own_logprobs = generate_per_passage(
        model, context_ids, context_mask, max_new_tokens, num_beams, label_constraint, with_scores=True
    )
    labels = answers_to_labels(candidates, pad, eos).view(batch, n_docs, -1)
    proposals = labels.masked_fill(labels == IGNORE_INDEX, pad)  # equal answers compare equal after masking
    joint = own_logprobs.view(batch, n_docs) + doc_logprobs  # log p(z_k|x) + log p(y_k|x, z_k)
    same = (proposals.unsqueeze(2) == proposals.unsqueeze(1)).all(-1)  # (B, K, K): proposal j equals i
    marginal = torch.logsumexp(joint.unsqueeze(1).masked_fill(~same, float("-inf")), dim=-1)  # (B, K)
    best = marginal.argmax(-1)
    return proposals[torch.arange(batch), best]


def _rag_token_greedy(
    model: EtragModel,
    context_ids: torch.Tensor,
    context_mask: torch.Tensor,
    doc_logprobs: torch.Tensor,
    max_new_tokens: int,
    label_constraint: LabelConstraint | None = None,
) -> torch.Tensor:
    """Greedy RAG-Token decoding: next token = argmax_y log sum_k p(z_k|x) p(y | x, z_k, y_<t), the argmax
    taken over the tokens `label_constraint` allows (this path does not call `generate`)."""
    batch, n_docs = doc_logprobs.shape
    pad, eos, start = _special_ids(model)
    generator = model.generator
    device = context_ids.device
    generated = torch.empty((batch, 0), dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    encoder_outputs = None
    if generator.config.is_encoder_decoder:
        encoder_outputs = generator.get_encoder()(input_ids=context_ids, attention_mask=context_mask)
    for _ in range(max_new_tokens):
        prefix = generated.repeat_interleave(n_docs, dim=0)
        if encoder_outputs is not None:
            decoder_input = torch.cat([prefix.new_full((prefix.shape[0], 1), start), prefix], dim=1)
            logits = generator(
                encoder_outputs=encoder_outputs, attention_mask=context_mask, decoder_input_ids=decoder_input
            ).logits[:, -1]
        else:
            labels = torch.cat([prefix, prefix.new_full((prefix.shape[0], 1), pad)], dim=1)
            _, step_logits = target_logprobs(
                generator, context_ids, context_mask, labels, pad_id=pad, return_logits=True
            )
            logits = step_logits[:, -1]
        step = torch.log_softmax(logits.float(), dim=-1).view(batch, n_docs, -1)
        scores = torch.logsumexp(step + doc_logprobs.unsqueeze(-1), dim=1)
        if label_constraint is not None:
            allowed = torch.full_like(scores, float("-inf"))
            for row, prefix in enumerate(generated.tolist()):
                allowed[row, label_constraint.allowed_next(prefix)] = 0.0
            scores = scores + allowed
        next_token = scores.argmax(-1)
        next_token = next_token.masked_fill(finished, pad)
        generated = torch.cat([generated, next_token.unsqueeze(1)], dim=1)
        if eos is not None:
            finished |= next_token == eos
        if bool(finished.all()):
            break
    return generated
