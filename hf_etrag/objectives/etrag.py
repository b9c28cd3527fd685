"""ETRAG: end-to-end trainable retrieval of training instances with a differentiable top-k
(Makino et al. 2024), fused into the generator as soft prompts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..modeling.contexts import IGNORE_INDEX, append_targets
from .base import ModelDrivenObjective, RetrieverGenerator
from .etrag_prompts import (
    etrag_span_token_ids,
    generate_from_embeddings,
    generator_query,
    pool_spans,
    span_masks,
)
from .ops.soft_topk import soft_select, soft_topk
from .registry import register_objective

__all__ = ["EtragLoss", "etrag_span_token_ids", "pool_spans", "span_masks"]

logger = logging.getLogger(__name__)

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

    The model's index is the *instance memory*: one row per training example, `query [SEP] label words`
    (see `hf_etrag.data.build_instance_memory`). Each query searches the stored index for its `candidates`
    nearest rows (its own row excluded in training), and those rows are encoded afresh, `instances_with_grad`
    of them with gradient (every query's best-ranked rows first), the rest without. For scores
    $s_j = \mathrm{sim}(q, e_j)/T$ over the candidates the iterated softmax gives, for $i = 1..k$,
    $D_i = \mathrm{softmax}(s/\tau)$, $s \leftarrow s + \log(1 - D_i)$.

    As in the reference implementation, an instance is read through three span vectors of the retriever's
    token states (mean over the head entity, the tail entity and the label words), so that the retrieved label
    stays visible; the query contributes its head, tail and whole-sentence vectors. The $3 + 3k$ vectors
    (query, then $r_i = \sum_j D_{ij} m_j$ per span) are projected into the generator's embedding space and
    rescaled to a learned norm that starts at the generator's mean token-embedding norm.

    Encoder-decoder generators read `[query tokens; prompts]` in the encoder: the prompts follow the query's
    last token, so the query keeps its absolute positions for every k (a BERT encoder's [CLS] stays at 0), and
    the decoder scores the target. Decoder-only generators read `[prompts; query; target]` as one sequence and
    the loss covers the target positions only. The soft selection runs over the same candidate set in
    training and test. With `k=0` no instance is retrieved (the no-retrieval baseline: only the query's
    vectors are read).

    Logged each step: `prompt_shuffle_gain`, the NLL with the retrieved prompts of another query of the batch
    minus the NLL with the query's own (positive: the generator reads what was retrieved), and
    `selection_max_weight`, the mean largest weight of each soft slot (1: hard top-k).

    Args:
        k: instances selected per query.
        tau: temperature of the iterated softmax on the retrieval scores (themselves sim / `temperature`).
        instances_with_grad: candidate rows encoded with gradient per step (the rest without).
        retriever_warmup_steps: first training steps in which only the retriever and the prompt projection
            train (the generator gets no gradient), as in the reference; 0 for a generator that must first
            learn to read (a warm-started bert2bert).
        candidates: rows per query that the soft top-k chooses from (default `2k`).
        span_token_ids: `[head marker, tail marker, separator]` retriever token ids
            (see [`etrag_span_token_ids`]); `None` reads whole rows.
        candidates_from_memory: in training, read the candidates without gradient from the memory as of the
            last index refresh (their stored vectors, and span vectors computed in the same refresh pass) instead
            of encoding them again each step; the candidates with gradient are always encoded fresh. As in the
            reference, which searches stored vectors and re-encodes only the instances it trains through; it
            removes most of a step's encoder passes. `False` encodes every candidate fresh.
    """

    citation: ClassVar[str] = _ETRAG_CITATION
    decoding = "soft_prompt"
    decodes_itself: ClassVar[bool] = True
    reads_instance_memory: ClassVar[bool] = True
    generator_reads_passages: ClassVar[bool] = False  # the memory reaches the generator as soft prompts only
    n_docs_option: ClassVar[str | None] = "k"

    def __init__(
        self,
        k: int = 5,
        tau: float = 1.0,
        instances_with_grad: int = 16,
        retriever_warmup_steps: int = 0,
        candidates: int | None = None,
        span_token_ids: list[int] | None = None,
        candidates_from_memory: bool = True,
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
        if candidates is not None and candidates < k:
            raise ValueError(f"`candidates` must be >= k ({k}); got {candidates}.")
        if span_token_ids is not None and len(span_token_ids) != 3:
            raise ValueError(
                f"`span_token_ids` must be [head marker, tail marker, separator]; got {span_token_ids}."
            )
        self.k, self.tau = k, tau
        self.instances_with_grad = instances_with_grad
        self.retriever_warmup_steps = retriever_warmup_steps
        self.candidates = candidates if candidates is not None else 2 * k
        self.span_token_ids = list(span_token_ids) if span_token_ids is not None else None
        self.candidates_from_memory = candidates_from_memory
        self.register_buffer("training_steps_seen", torch.zeros((), dtype=torch.long))
        self.prompt_projection: nn.Linear | None = None
        self.prompt_norm: nn.Parameter | None = None
        # Memory rows encoded in evaluation (see `_encode_candidates_frozen`), valid for one index and step.
        self._frozen_rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._frozen_owner: Any = None
        self._frozen_step = -1
        # Span vectors of every memory row from the last index refresh (`set_row_features`), valid while the
        # index holds that refresh's embeddings.
        self._stored_spans: torch.Tensor | None = None
        self._stored_owner: Any = None
        self._stored_step = -1

    @classmethod
    def options_from_tokenizer(cls, retriever_tokenizer: Any) -> dict[str, Any]:
        return {"span_token_ids": etrag_span_token_ids(retriever_tokenizer)}

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "tau": self.tau,
            "instances_with_grad": self.instances_with_grad,
            "retriever_warmup_steps": self.retriever_warmup_steps,
            "candidates": self.candidates,
            "span_token_ids": self.span_token_ids,
            "candidates_from_memory": self.candidates_from_memory,
        }

    def setup(self, model: RetrieverGenerator) -> None:
        """Create the projection from retriever span vectors to generator input embeddings (the soft prompts)
        and the prompts' norm, initialised to the generator's mean token-embedding norm."""
        retriever_dim = model.query_encoder.config.hidden_size
        embeddings = model.generator.get_input_embeddings().weight
        self.prompt_projection = nn.Linear(retriever_dim, embeddings.shape[1])
        self.prompt_projection.etrag_owned = True
        with torch.no_grad():
            mean_norm = embeddings.float().norm(dim=-1).mean()
        self.prompt_norm = nn.Parameter(mean_norm.reshape(()).clone())

    # ---- retrieval over the instance memory --------------------------------------------------------
    def _in_warmup(self) -> bool:
        return self.training and int(self.training_steps_seen) < self.retriever_warmup_steps

    def candidate_rows(
        self, model: RetrieverGenerator, query_vectors: torch.Tensor, own_rows: torch.Tensor | None
    ):
        """`(B, M)` memory rows each query chooses from: its nearest stored rows, its own row left out."""
        memory_size = len(model.index)
        wanted = min(self.candidates, memory_size - (1 if own_rows is not None else 0))
        if wanted < max(self.k, 1):
            raise ValueError(
                f"ETRAG selects k = {self.k} of {wanted} candidate instances: the memory has {memory_size} rows. "
                "Use more training examples or a smaller `n_docs`."
            )
        search = min(memory_size, wanted + (1 if own_rows is not None else 0))
        _, found = model.index.search(query_vectors.detach().float().cpu().numpy(), search)
        found = torch.from_numpy(found.astype(np.int64))
        if bool((found < 0).any()):
            raise RuntimeError(
                "The instance memory search returned no row for some query (id -1): rebuild the index."
            )
        if own_rows is not None:
            own = own_rows.cpu().unsqueeze(1)
            keep = found != own
            # Drop the query's own row where found; otherwise drop the last (lowest-ranked) candidate.
            keep[:, -1] &= ~keep.all(-1) | (found[:, -1] == own[:, 0])
            keep[keep.all(-1), -1] = False
            found = found[keep].view(found.shape[0], -1)
        return found[:, :wanted].to(query_vectors.device)

    @staticmethod
    def rows_by_rank(rows: torch.Tensor) -> np.ndarray:
        """The distinct rows of `(B, M)` candidates, rank by rank: every query's first candidate, then every
        query's second, ...; the first `instances_with_grad` of them are encoded with gradient."""
        by_rank = rows.T.reshape(-1).cpu().numpy()
        unique, first = np.unique(by_rank, return_index=True)
        return unique[np.argsort(first)]

    def encode_candidates(
        self, model: RetrieverGenerator, rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode the candidate rows afresh: `(B, M, H)` retrieval vectors and `(B, M, 3, H)` span vectors
        (head, tail, label). Up to `instances_with_grad` distinct rows carry gradient, taken rank by rank
        (every query's first candidate, then every second, ...)."""
        if not self.training:
            return self._encode_candidates_frozen(model, rows)
        order = self.rows_by_rank(rows)
        grad_budget = self.instances_with_grad if torch.is_grad_enabled() else 0
        with_grad, without_grad = order[:grad_budget], order[grad_budget:]
        device = rows.device
        vectors, spans, encoded_rows = [], [], []
        stored = None
        if self.candidates_from_memory and len(without_grad):
            stored = self._stored_rows(model, without_grad, device, fresh_only=False)
        for chunk, grad in ((with_grad, True), (without_grad, False)):
            if len(chunk) == 0:
                continue
            if not grad and stored is not None:
                vectors.append(stored[0])
                spans.append(stored[1])
                encoded_rows.append(torch.from_numpy(chunk))
                continue
            ids, mask = model.memory_tokens(chunk)
            ids, mask = ids.to(device), mask.to(device)
            with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
                hidden = model.encode_token_states(ids, mask, side="document")
                vectors.append(model.pool_vectors(hidden, mask))
                spans.append(pool_spans(hidden, span_masks(ids, mask, self.span_token_ids)))
            encoded_rows.append(torch.from_numpy(chunk))
        position = torch.empty(int(rows.max()) + 1, dtype=torch.long)
        position[torch.cat(encoded_rows)] = torch.arange(sum(len(r) for r in encoded_rows))
        lookup = position.to(device)[rows]
        dtype = vectors[0].dtype
        vectors = torch.cat([v.to(dtype) for v in vectors])
        spans = torch.cat([v.to(dtype) for v in spans])
        return vectors[lookup], spans[lookup]

    # ---- span vectors kept from the index refresh -------------------------------------------------------
    def row_features_dim(self, model: RetrieverGenerator) -> int:
        return 3 * model.document_encoder.config.hidden_size if self.k > 0 else 0

    def row_features(
        self,
        model: RetrieverGenerator,
        token_states: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        return pool_spans(token_states, span_masks(input_ids, attention_mask, self.span_token_ids)).flatten(1)

    def set_row_features(self, model: RetrieverGenerator, features: np.ndarray) -> None:
        self._stored_spans = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        self._stored_spans = self._stored_spans.view(len(features), 3, -1)
        self._stored_owner = model.index.embeddings
        self._stored_step = int(self.training_steps_seen)

    def _stored_rows(
        self, model: RetrieverGenerator, rows: np.ndarray, device: torch.device, fresh_only: bool
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """`(vectors, spans)` of `rows` as of the last refresh, or `None` when the index holds other vectors
        (or, with `fresh_only`, when the objective has trained since that refresh)."""
        embeddings = getattr(model.index, "embeddings", None)
        if self._stored_spans is None or embeddings is None or self._stored_owner is not embeddings:
            return None
        if fresh_only and self._stored_step != int(self.training_steps_seen):
            return None
        vectors = torch.from_numpy(embeddings[rows]).to(device)
        return vectors, self._stored_spans[torch.from_numpy(rows)].to(device)

    def _encode_candidates_frozen(
        self, model: RetrieverGenerator, rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`encode_candidates` in evaluation (no dropout, no gradient): the encoders do not change between
        batches, so each memory row is encoded once and kept until the weights can have changed (a training step,
        a switch to `train()`) or the index is refreshed. A test set's queries share most of their candidates: on SemEval this turns
        ~10 encodings per test sentence into ~1 per memory row."""
        stored = self._stored_rows(model, rows.reshape(-1).cpu().numpy(), rows.device, fresh_only=True)
        if stored is not None:  # the refresh ran with the current weights: its span vectors are exact
            return stored[0].view(*rows.shape, -1), stored[1].view(*rows.shape, *stored[1].shape[1:])
        embeddings = getattr(model.index, "embeddings", None)
        if self._frozen_owner is not embeddings or self._frozen_step != int(self.training_steps_seen):
            self._frozen_rows, self._frozen_owner = {}, embeddings
            self._frozen_step = int(self.training_steps_seen)
        distinct = np.unique(rows.cpu().numpy())
        missing = [int(row) for row in distinct if int(row) not in self._frozen_rows]
        if missing:
            ids, mask = model.memory_tokens(np.asarray(missing))
            ids, mask = ids.to(rows.device), mask.to(rows.device)
            with torch.no_grad():
                hidden = model.encode_token_states(ids, mask, side="document")
                vectors = model.pool_vectors(hidden, mask)
                spans = pool_spans(hidden, span_masks(ids, mask, self.span_token_ids))
            for position, row in enumerate(missing):
                self._frozen_rows[row] = (vectors[position], spans[position])
        flat = rows.reshape(-1).tolist()
        vectors = torch.stack([self._frozen_rows[row][0] for row in flat]).view(*rows.shape, -1)
        spans = torch.stack([self._frozen_rows[row][1] for row in flat])
        return vectors, spans.view(*rows.shape, *spans.shape[1:])

    def train(self, mode: bool = True) -> EtragLoss:
        self._frozen_rows = {}
        return super().train(mode)

    def query_spans(
        self, model: RetrieverGenerator, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(B, H)` query vectors and `(B, 3, H)` query span vectors (head, tail, whole sentence)."""
        ids, mask = batch["input_ids"], batch["attention_mask"]
        hidden = model.encode_token_states(ids, mask, side="query")
        spans = pool_spans(hidden, span_masks(ids, mask, self.span_token_ids))
        whole = pool_spans(hidden, mask.bool().unsqueeze(1))
        return model.pool_vectors(hidden, mask), torch.cat([spans[:, :2], whole], dim=1)

    def select(
        self, model: RetrieverGenerator, query_vectors: torch.Tensor, own_rows: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Soft-select k instances: `(r (B, 3k, H), D (B, k, M), scores (B, M), candidate rows (B, M))`."""
        rows = self.candidate_rows(model, query_vectors, own_rows)
        vectors, spans = self.encode_candidates(model, rows)
        scores = (query_vectors.unsqueeze(1) * vectors.to(query_vectors.dtype)).sum(
            -1
        ) / model.config.temperature
        selection = soft_topk(scores, self.k, self.tau)
        batch, n_candidates = rows.shape
        retrieved = soft_select(selection, spans.reshape(batch, n_candidates, -1).to(scores.dtype))
        return retrieved.reshape(batch, 3 * self.k, -1), selection, scores, rows

    def soft_prompts(
        self, model: RetrieverGenerator, batch: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor | None]:
        """`prompts (B, 3 + 3k, D)`: the projected query spans, then the k soft-selected instances' spans; with
        the selection `D`, the scores and the candidate rows (`None` when `k == 0`)."""
        query_vectors, prompts_from = self.query_spans(model, batch)
        out: dict[str, torch.Tensor | None] = {"selection": None, "scores": None, "rows": None}
        if self.k > 0:
            own_rows = batch.get("memory_index")
            if own_rows is not None and not bool((own_rows >= 0).all()):
                own_rows = None
            retrieved, out["selection"], out["scores"], out["rows"] = self.select(
                model, query_vectors, own_rows
            )
            prompts_from = torch.cat([prompts_from, retrieved.to(prompts_from.dtype)], dim=1)
        projected = self.prompt_projection(prompts_from)
        out["prompts"] = nn.functional.normalize(projected, dim=-1) * self.prompt_norm
        return out

    def prompted_inputs(
        self, model: RetrieverGenerator, ids: torch.Tensor, mask: torch.Tensor, prompts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder `inputs_embeds` and attention mask: each right-padded query row followed by its prompts."""
        embeds = model.generator.get_input_embeddings()(ids)
        batch, n_prompts, dim = prompts.shape
        lengths = mask.sum(-1)
        width = ids.shape[1] + n_prompts
        inputs_embeds = torch.cat([embeds, embeds.new_zeros(batch, n_prompts, dim)], dim=1)
        slots = (lengths.unsqueeze(1) + torch.arange(n_prompts, device=ids.device)).unsqueeze(-1)
        inputs_embeds = inputs_embeds.scatter(1, slots.expand(-1, -1, dim), prompts.to(embeds.dtype))
        attention = torch.arange(width, device=ids.device).unsqueeze(0) < (lengths + n_prompts).unsqueeze(1)
        return inputs_embeds, attention.to(mask.dtype)

    def generator_logits(
        self, model: RetrieverGenerator, batch: dict[str, torch.Tensor], prompts: torch.Tensor
    ) -> torch.Tensor:
        """`(B, T, V)` teacher-forced logits of `batch["labels"]` given the query and `prompts`."""
        labels = batch["labels"]
        ids, mask = generator_query(batch)
        if model.config.is_seq2seq_generator:
            inputs_embeds, attention = self.prompted_inputs(model, ids, mask, prompts)
            decoder_input_ids = model.generator.prepare_decoder_input_ids_from_labels(labels=labels)
            return model.generator(
                inputs_embeds=inputs_embeds, attention_mask=attention, decoder_input_ids=decoder_input_ids
            ).logits
        input_ids, attention, read_positions = append_targets(ids, mask, labels, model.generator_pad_id)
        embeds = model.generator.get_input_embeddings()(input_ids)
        logits = model.generator(
            inputs_embeds=torch.cat([prompts.to(embeds.dtype), embeds], dim=1),
            attention_mask=torch.cat([attention.new_ones(prompts.shape[:2]), attention], dim=1),
        ).logits
        # The prompts occupy the first positions, so every read position moves right by their number.
        read = (read_positions + prompts.shape[1]).unsqueeze(-1).expand(-1, -1, logits.size(-1))
        return logits.gather(1, read)

    def _nll(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        token_nll = nn.functional.cross_entropy(
            logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none"
        )
        return token_nll.sum(-1).mean()

    def model_loss(
        self, model: RetrieverGenerator, query_vectors: torch.Tensor, batch: dict[str, torch.Tensor]
    ):
        labels = batch["labels"]
        warmup = self._in_warmup()
        generator_parameters = [p for p in model.generator.parameters() if p.requires_grad] if warmup else []
        if warmup:
            # The reference's warm-up trains the retriever and the projection alone: the generator still passes
            # gradient to its inputs but takes none itself.
            for parameter in generator_parameters:
                parameter.requires_grad_(False)
        try:
            parts = self.soft_prompts(model, batch)
            nll = self._nll(self.generator_logits(model, batch, parts["prompts"]), labels)
        finally:
            if warmup:
                for parameter in generator_parameters:
                    parameter.requires_grad_(True)
        terms = {"loss": nll, "generator_nll": nll.detach()}
        if self.training:
            self.training_steps_seen += 1
        selection = parts["selection"]
        if selection is None:
            empty = torch.zeros((labels.shape[0], 0), device=labels.device)
            return terms, empty, empty.long()
        terms.update(self.diagnostics(model, batch, parts, nll.detach()))
        picked = selection.argmax(-1)  # (B, k): the candidate each soft slot mostly reads
        return terms, parts["scores"].gather(1, picked), parts["rows"].gather(1, picked)

    @torch.no_grad()
    def diagnostics(
        self, model: RetrieverGenerator, batch: dict[str, torch.Tensor], parts: dict, nll: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Does the generator read the retrieved prompts? NLL with another query's retrieved prompts (the
        batch rolled by one) minus the NLL with its own; and how hard the soft selection is."""
        terms = {"selection_max_weight": parts["selection"].max(-1).values.mean()}
        prompts = parts["prompts"]
        if prompts.shape[0] > 1:
            swapped = torch.cat([prompts[:, :3], prompts[:, 3:].roll(1, dims=0)], dim=1)
            terms["prompt_shuffle_gain"] = (
                self._nll(self.generator_logits(model, batch, swapped), batch["labels"]) - nll
            )
        return terms

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
        prompts = self.soft_prompts(model, batch)["prompts"]
        ids, mask = generator_query(batch)
        generation_config = model.generator.generation_config
        if not model.config.is_seq2seq_generator:
            embeds = model.generator.get_input_embeddings()(ids)
            inputs_embeds = torch.cat([prompts.to(embeds.dtype), embeds], dim=1)
            attention = torch.cat([mask.new_ones(prompts.shape[:2]), mask], dim=1)
            return generate_from_embeddings(
                model, inputs_embeds, attention, max_new_tokens, num_beams, prefix_allowed_tokens_fn
            )
        inputs_embeds, attention = self.prompted_inputs(model, ids, mask, prompts)
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
