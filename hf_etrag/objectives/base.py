"""The objective interface: what every objective receives and returns, and what it may call on the model.

Two kinds of objective, both chosen by name from the registry:

- [`RetrievalObjective`] (tensor-in): the model retrieves the top-K passages and scores the target under each;
  the objective turns those scores ([`ObjectiveInputs`]) into loss terms. `rag_sequence`, `rag_token`.
  [`AuxiliaryLoss`] is the same interface for the retriever co-training losses added to such an objective with a
  weight (`emdr2`, `pdist`, `lsr`, `contrastive`): same registry, same `forward(inputs)`, one term each.
- [`ModelDrivenObjective`]: the objective retrieves and scores its own candidates through the model's public
  [`RetrieverGenerator`] protocol (a posterior retriever's candidate set, an instance memory). `jsa`, `vrag`,
  `etrag`.

What the rest of the package needs to know about an objective are class attributes (capabilities), never its
name: `decoding`, `reads_instance_memory`, `generator_reads_passages`, `n_docs_option`, `decodes_itself`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import torch
from torch import nn

__all__ = [
    "AuxiliaryLoss",
    "ModelDrivenObjective",
    "Objective",
    "ObjectiveInputs",
    "RetrievalObjective",
    "RetrieverGenerator",
]


@dataclass
class ObjectiveInputs:
    """Scores of one batch after retrieval, and the vectors they came from.

    Attributes:
        doc_scores: `(B, K)` retrieval scores `sim(q, d_k) / temperature`, with gradient to the encoders.
        target_logprobs: `(B, K, T)` log p(y_t | x, z_k, y_<t) of each target token under each passage.
        target_mask: `(B, T)` 1 where `y_t` is a real target token, 0 for padding.
        query_vectors: `(B, H)` query vectors (pooled, normalised for cosine similarity).
        doc_vectors: `(B, K, H)` vectors of the retrieved passages.
        doc_indices: `(B, K)` corpus rows of the retrieved passages.
        gold_passage_index: `(B,)` corpus row of each example's gold passage, -1 where unknown.
        gold_vectors: `(G, H)` vectors of the known gold passages (the rows with `gold_passage_index >= 0`, in
            order); the model fills it only for an auxiliary loss with `reads_gold_passages`.
        temperature: the retrieval temperature of `doc_scores`.

    The model fills every field; the objectives' own tests may give the first three only.
    """

    doc_scores: torch.Tensor
    target_logprobs: torch.Tensor
    target_mask: torch.Tensor
    query_vectors: torch.Tensor | None = None
    doc_vectors: torch.Tensor | None = None
    doc_indices: torch.Tensor | None = None
    gold_passage_index: torch.Tensor | None = None
    gold_vectors: torch.Tensor | None = None
    temperature: float = 1.0


class RetrieverGenerator(Protocol):
    """What a model-driven objective may call on the model ([`EtragModel`] implements it); nothing else.

    Attributes:
        config: the model's `EtragConfig` (`n_docs`, `temperature`, `is_seq2seq_generator`, ...).
        query_encoder, generator: the prior query encoder and the generator (`PreTrainedModel`s).
        document_encoder: the encoder of passages and instance-memory rows.
        index: the attached `PassageIndex` (`retriever_tokens`, `embeddings`).
        retriever_pad_id, generator_pad_id: the pad token ids of the two vocabularies.
        training: whether the model is in training mode.
    """

    config: Any
    query_encoder: nn.Module
    generator: Any
    training: bool

    @property
    def document_encoder(self) -> nn.Module: ...

    @property
    def index(self) -> Any: ...

    @property
    def retriever_pad_id(self) -> int: ...

    @property
    def generator_pad_id(self) -> int: ...

    def encode_with(self, encoder: nn.Module, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`(B, H)` pooled (and, for cosine similarity, normalised) vectors of `encoder`."""
        ...

    def pool_vectors(self, token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`(B, T, H)` encoder token states to `(B, H)` retrieval vectors."""
        ...

    def encode_token_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, side: Literal["query", "document"]
    ) -> torch.Tensor:
        """`(B, T, H)` last-layer token states of the query or the document encoder."""
        ...

    def memory_tokens(self, rows: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded retriever `(input_ids, attention_mask)` of index rows `rows`."""
        ...

    def encode_queries(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor: ...

    def encode_passages(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor: ...

    def retrieve(self, query_vectors: torch.Tensor, n_docs: int | None = None) -> torch.Tensor: ...

    def document_vectors(
        self, doc_indices: torch.Tensor, device: torch.device, fresh_vectors: torch.Tensor | None = None
    ) -> torch.Tensor: ...

    def score_documents(self, query_vectors: torch.Tensor, doc_vectors: torch.Tensor) -> torch.Tensor: ...

    def target_logprobs_for(
        self, doc_indices: torch.Tensor, batch: dict[str, torch.Tensor], return_logits: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...


class Objective(nn.Module, ABC):
    """Common base: a name (set by the registry), a citation, options for the model card and capabilities."""

    name: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    #: How `EtragModel.generate` decodes for models trained with this objective.
    decoding: ClassVar[Literal["sequence", "token", "soft_prompt"]] = "sequence"
    #: The objective decodes itself (`generate(model, batch, ...)`) instead of RAG-Sequence/RAG-Token decoding.
    decodes_itself: ClassVar[bool] = False
    #: Retrieves from an instance memory (one row per training example, with its target) instead of a passage
    #: corpus: the pipeline builds that memory and examples that are memory rows never retrieve themselves.
    reads_instance_memory: ClassVar[bool] = False
    #: The generator reads the retrieved passages' tokens (False: they reach it some other way, as soft prompts).
    generator_reads_passages: ClassVar[bool] = True
    #: The option that takes the recipe's `n_docs` (then `n_docs: 0`, no retrieval, is allowed), if any.
    n_docs_option: ClassVar[str | None] = None
    #: An auxiliary loss, added to a training objective with a weight (`EtragConfig.auxiliary_losses`), rather
    #: than a training objective of its own (`EtragConfig.objective`).
    auxiliary: ClassVar[bool] = False

    def get_config_dict(self) -> dict[str, Any]:
        """Options shown on the model card."""
        return {}

    @classmethod
    def options_from_tokenizer(cls, retriever_tokenizer: Any) -> dict[str, Any]:
        """Options that a recipe derives from the retriever tokenizer (token ids the objective looks for); the
        recipe's own `objective_kwargs` override them."""
        return {}

    def row_features_dim(self, model: RetrieverGenerator) -> int:
        """Width of the per-row features this objective keeps from each index refresh (0: none). An index
        refresh then computes [`row_features`] from the same document-encoder token states as the passage
        vectors (no second pass over the corpus) and hands them to [`set_row_features`]."""
        return 0

    def row_features(
        self,
        model: RetrieverGenerator,
        token_states: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """`(N, row_features_dim)` features of `N` corpus rows from their `(N, T, H)` document token states."""
        raise NotImplementedError(f"{type(self).__name__} keeps no row features (`row_features_dim` is 0).")

    def set_row_features(self, model: RetrieverGenerator, features: np.ndarray) -> None:
        """Receive the `(corpus size, row_features_dim)` features of a refresh, in corpus order, right after the
        refreshed vectors were swapped into `model.index`."""
        raise NotImplementedError(f"{type(self).__name__} keeps no row features (`row_features_dim` is 0).")


class RetrievalObjective(Objective):
    """Tensor-in objective: `forward(inputs) -> dict` of named loss terms, `"loss"` being their weighted sum."""

    @abstractmethod
    def forward(self, inputs: ObjectiveInputs) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class AuxiliaryLoss(RetrievalObjective):
    """A retriever co-training loss: the tensor-in interface of [`RetrievalObjective`], returning ONE named term
    `{"<name>_loss": tensor}` (averaged over the batch), which the model adds to the training objective's loss with
    its weight."""

    auxiliary: ClassVar[bool] = True
    #: Reads `ObjectiveInputs.gold_vectors` (the model then encodes the batch's known gold passages).
    reads_gold_passages: ClassVar[bool] = False


class ModelDrivenObjective(Objective):
    """Objective that retrieves and scores its own candidates through the model's [`RetrieverGenerator`]
    protocol. It cannot be combined with auxiliary losses (they need the top-K [`ObjectiveInputs`])."""

    @abstractmethod
    def setup(self, model: RetrieverGenerator) -> None:
        """Create the objective's own modules (a posterior encoder, a projection) for `model`; called once,
        when the objective is attached to a model."""

    @abstractmethod
    def model_loss(
        self, model: RetrieverGenerator, query_vectors: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """`(terms, doc_scores, doc_indices)`: the named loss terms (`"loss"` their sum) and the scores and corpus
        rows of the passages the objective read."""

    def generate(
        self, model: RetrieverGenerator, batch: dict[str, torch.Tensor], max_new_tokens: int, **kwargs: Any
    ) -> torch.Tensor:
        """`(B, L)` answers, for objectives with `decodes_itself`; `kwargs`: `num_beams`,
        `prefix_allowed_tokens_fn` (a `LabelConstraint`'s, seeing the decoder start token first)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not decode itself (`decodes_itself` is False)."
        )
