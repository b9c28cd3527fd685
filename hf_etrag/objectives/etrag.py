"""ETRAG: end-to-end trainable retrieval of training instances with a differentiable top-k
(Makino et al. 2024), fused into the generator as soft prompts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..modeling.contexts import IGNORE_INDEX, append_targets, left_padding_order
from .base import ModelDrivenObjective, RetrieverGenerator
from .ops.soft_topk import soft_select, soft_topk
from .registry import register_objective

__all__ = ["EtragLoss"]

_ETRAG_CITATION = """@inproceedings{makino2024etrag,
  title         = {End-to-End Trainable Retrieval-Augmented Generation for Relation Extraction},
  author        = {Makino, Kohei and Miwa, Makoto and Sasaki, Yutaka},
  year          = {2024},
  eprint        = {2406.03790},
  archivePrefix = {arXiv}
}"""


@register_objective("etrag")
class EtragLoss(ModelDrivenObjective):
    r"""ETRAG: select the k nearest training instances differentiably and read them as soft prompts.

    The model's index is the *instance memory*: one row per training example, encoded together with its
    target verbalisation (see `hf_etrag.data.build_instance_memory`). For scores
    $s_j = \mathrm{sim}(q, e_j)/T$ (the query's own instance excluded) the iterated softmax gives, for
    $i = 1..k$, $D_i = \mathrm{softmax}(s/\tau)$, $s \leftarrow s + \log(1 - D_i)$, and
    $r_i = \sum_j D_{ij} e_j$. The query vector and $r_1..r_k$ are projected into the generator's embedding
    space and prepended to its input; the loss is the generator's negative log-likelihood of the target.

    Each step a subset of memory rows (each query's current top-k plus random rows, up to
    `instances_with_grad`) is re-encoded with gradient; the rest use the stored embeddings, refreshed
    without gradient by `IndexRefreshCallback`. Gradient reaches the query encoder, the re-encoded memory
    rows, the projection and the generator. With `k=0` no instance is retrieved (the no-retrieval
    baseline: only the query vector is prepended).

    Encoder-decoder generators read `[prompts; query]` in the encoder and score the target in the decoder.
    Decoder-only generators (`AutoModelForCausalLM`) read `[prompts; query; target]` as one sequence (the
    prompts take the first positions, each row packed without inner padding) and the loss covers the
    target positions only; generation continues from the left-padded `[prompts; query]` embeddings.

    Args:
        k: instances selected per query.
        tau: temperature of the iterated softmax (-> 0: hard top-k).
        instances_with_grad: memory rows re-encoded with gradient per step.
        retriever_warmup_steps: training steps during which no gradient reaches the retriever.
    """

    citation: ClassVar[str] = _ETRAG_CITATION
    decoding = "soft_prompt"
    decodes_itself: ClassVar[bool] = True
    reads_instance_memory: ClassVar[bool] = True
    generator_reads_passages: ClassVar[bool] = False  # the memory reaches the generator as soft prompts only
    n_docs_option: ClassVar[str | None] = "k"

    def __init__(
        self, k: int = 5, tau: float = 0.1, instances_with_grad: int = 64, retriever_warmup_steps: int = 0
    ) -> None:
        super().__init__()
        if k < 0:
            raise ValueError(f"`k` must be >= 0 (0: no retrieval); got {k}.")
        if not tau > 0:
            raise ValueError(f"`tau` must be > 0; got {tau}.")
        if instances_with_grad < 0 or retriever_warmup_steps < 0:
            raise ValueError(
                "`instances_with_grad` and `retriever_warmup_steps` must be >= 0; "
                f"got {instances_with_grad} and {retriever_warmup_steps}."
            )
        self.k, self.tau = k, tau
        self.instances_with_grad = instances_with_grad
        self.retriever_warmup_steps = retriever_warmup_steps
        self.register_buffer("training_steps_seen", torch.zeros((), dtype=torch.long))
        self.prompt_projection: nn.Linear | None = None

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "tau": self.tau,
            "instances_with_grad": self.instances_with_grad,
            "retriever_warmup_steps": self.retriever_warmup_steps,
        }

    def setup(self, model: RetrieverGenerator) -> None:
        """Create the projection from retriever vectors to generator input embeddings (the soft prompts)."""
        retriever_dim = model.query_encoder.config.hidden_size
        generator_dim = model.generator.get_input_embeddings().embedding_dim
        self.prompt_projection = nn.Linear(retriever_dim, generator_dim)
        self.prompt_projection.etrag_owned = True

    # ---- retrieval over the instance memory --------------------------------------------------------
    def _memory_with_grad(
        self, model: RetrieverGenerator, memory: torch.Tensor, scores_stored: torch.Tensor
    ) -> torch.Tensor:
        """`memory` with the selected rows replaced by fresh encodings that carry gradient."""
        device = memory.device
        if self.instances_with_grad == 0 or not model.document_encoder.training:
            return memory
        top = scores_stored.topk(min(self.k, memory.shape[0]), dim=-1).indices.flatten()
        rows = torch.unique(top)[: self.instances_with_grad]
        extra = self.instances_with_grad - len(rows)
        if extra > 0:
            rest = torch.from_numpy(np.setdiff1d(np.arange(memory.shape[0]), rows.cpu().numpy()))
            rows = torch.cat([rows.cpu(), rest[torch.randperm(len(rest))[:extra]]]).to(device)
        ids, mask = model.index.retriever_tokens.batch(rows.cpu().numpy(), model.retriever_pad_id)
        fresh = model.encode_passages(ids.to(device), mask.to(device))
        return memory.index_put((rows.to(device),), fresh.to(memory.dtype))

    def select(
        self, model: RetrieverGenerator, query_vectors: torch.Tensor, memory_index: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Soft-select k instances: returns `(r (B, k, H), D (B, k, N), scores (B, N))`."""
        device = query_vectors.device
        retriever_frozen = self.training and int(self.training_steps_seen) < self.retriever_warmup_steps
        if retriever_frozen:
            query_vectors = query_vectors.detach()
        with torch.no_grad():
            stored = torch.from_numpy(model.index.embeddings).to(device)
            scores_stored = query_vectors.detach() @ stored.T
        # One transfer of the stored memory per step, shared by the search scores and the soft selection.
        memory = stored if retriever_frozen else self._memory_with_grad(model, stored, scores_stored)
        scores = query_vectors @ memory.T.to(query_vectors.dtype) / model.config.temperature
        exclude = None
        if memory_index is not None and bool((memory_index >= 0).any()):
            exclude = torch.zeros_like(scores, dtype=torch.bool)
            rows = (memory_index >= 0).nonzero(as_tuple=True)[0]
            exclude[rows, memory_index[rows]] = True
        selection = soft_topk(scores, self.k, self.tau, exclude_mask=exclude)
        return soft_select(selection, memory.to(scores.dtype)), selection, scores

    def soft_prompts(
        self, model: RetrieverGenerator, batch: dict[str, torch.Tensor], query_vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """`(B, 1 + k, D)` soft prompts (projected query vector, then the k soft-selected instances), with
        the selection `D` and the scores (`None` when `k == 0`)."""
        prompts_from = query_vectors.unsqueeze(1)
        selection = scores = None
        if self.k > 0:
            retrieved, selection, scores = self.select(model, query_vectors, batch.get("memory_index"))
            prompts_from = torch.cat([prompts_from, retrieved], dim=1)
        return self.prompt_projection(prompts_from), selection, scores

    def soft_prompted_inputs(
        self, model: RetrieverGenerator, batch: dict[str, torch.Tensor], query_vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Generator `inputs_embeds` and attention mask with the soft prompts in front of the query (rows
        stay right-padded, so `[prompts; query]` is contiguous)."""
        prompts, selection, scores = self.soft_prompts(model, batch, query_vectors)
        ids, mask = _generator_query(batch)
        embeds = model.generator.get_input_embeddings()(ids)
        inputs_embeds = torch.cat([prompts.to(embeds.dtype), embeds], dim=1)
        attention = torch.cat([mask.new_ones(prompts.shape[:2]), mask], dim=1)
        return inputs_embeds, attention, selection, scores

    def causal_target_logits(
        self, model: RetrieverGenerator, batch: dict[str, torch.Tensor], query_vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Decoder-only teacher forcing: `(B, T, V)` logits predicting each target token after
        `[prompts; query]`, with the selection and scores of [`soft_prompts`]."""
        prompts, selection, scores = self.soft_prompts(model, batch, query_vectors)
        ids, mask = _generator_query(batch)
        input_ids, attention, read_positions = append_targets(
            ids, mask, batch["labels"], model.generator_pad_id
        )
        embeds = model.generator.get_input_embeddings()(input_ids)
        n_prompts = prompts.shape[1]
        logits = model.generator(
            inputs_embeds=torch.cat([prompts.to(embeds.dtype), embeds], dim=1),
            attention_mask=torch.cat([attention.new_ones(prompts.shape[:2]), attention], dim=1),
        ).logits
        # The prompts occupy the first positions, so every read position moves right by their number.
        read = (read_positions + n_prompts).unsqueeze(-1).expand(-1, -1, logits.size(-1))
        return logits.gather(1, read), selection, scores

    def model_loss(
        self, model: RetrieverGenerator, query_vectors: torch.Tensor, batch: dict[str, torch.Tensor]
    ):
        labels = batch["labels"]
        if model.config.is_seq2seq_generator:
            inputs_embeds, attention, selection, scores = self.soft_prompted_inputs(
                model, batch, query_vectors
            )
            decoder_input_ids = model.generator.prepare_decoder_input_ids_from_labels(labels=labels)
            logits = model.generator(
                inputs_embeds=inputs_embeds, attention_mask=attention, decoder_input_ids=decoder_input_ids
            ).logits.float()
        else:
            logits, selection, scores = self.causal_target_logits(model, batch, query_vectors)
            logits = logits.float()
        token_nll = nn.functional.cross_entropy(
            logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none"
        )
        nll = token_nll.sum(-1).mean()
        if self.training:
            self.training_steps_seen += 1
        terms = {"loss": nll, "generator_nll": nll.detach()}
        if selection is None:
            empty = torch.zeros((labels.shape[0], 0), device=labels.device)
            return terms, empty, empty.long()
        picked = selection.argmax(-1)  # (B, k): the instance each soft slot mostly reads
        return terms, scores.gather(1, picked), picked

    @torch.no_grad()
    def generate(
        self,
        model: RetrieverGenerator,
        batch: dict[str, torch.Tensor],
        max_new_tokens: int,
        num_beams: int = 1,
        prefix_allowed_tokens_fn: Callable[[int, torch.Tensor], list[int]] | None = None,
    ) -> torch.Tensor:
        """Decode from the soft-prompted input; `prefix_allowed_tokens_fn` (e.g. a `LabelConstraint`'s) sees
        the decoder's sequence, whose first token is the decoder start token."""
        query_vectors = model.encode_queries(batch["input_ids"], batch["attention_mask"])
        inputs_embeds, attention, _, _ = self.soft_prompted_inputs(model, batch, query_vectors)
        generation_config = model.generator.generation_config
        if not model.config.is_seq2seq_generator:
            return _causal_generate(
                model, inputs_embeds, attention, max_new_tokens, num_beams, prefix_allowed_tokens_fn
            )
        out = model.generator.generate(
            inputs_embeds=inputs_embeds,
            attention_mask=attention,
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            decoder_start_token_id=model.generator.config.decoder_start_token_id
            or generation_config.decoder_start_token_id,
            pad_token_id=model.generator_pad_id,
            eos_token_id=generation_config.eos_token_id,
            prefix_allowed_tokens_fn=prefix_allowed_tokens_fn,
        )
        return out[:, 1:]


def _causal_generate(
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


def _generator_query(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The query in the generator's vocabulary (the retriever's ids when the tokenizers are shared)."""
    ids = batch.get("generator_input_ids")
    if ids is None:
        return batch["input_ids"], batch["attention_mask"]
    return ids, batch["generator_attention_mask"]
