"""`EtragModel`: a retriever (query and document encoders) and a generator trained as one model.

One forward pass is `batch -> retrieve -> score -> loss`: the current query encoder searches the passage
index, the retrieved passages are scored with gradient, the generator scores the target under each
passage, and the configured objective turns those scores into a loss.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, PreTrainedModel
from transformers.utils import ModelOutput

from ..adapters.checkpoint import EtragAdapterMixin
from ..atomic import atomic_directory
from ..files import MODEL_OUTPUT
from ..hub.push import EtragHubMixin
from ..objectives import ModelDrivenObjective, Objective, ObjectiveInputs, build_objective
from ..objectives.cotraining import build_auxiliary_loss, combine_losses
from ..retrieval.encoding import normalize_if_cosine, pool, to_device
from ..retrieval.index import PassageIndex
from ..retrieval.rerank import rerank_candidates
from .answering import EtragAnsweringMixin, EtragGenerateOutput
from .configuration import EtragConfig
from .contexts import IGNORE_INDEX, join_contexts, length_buckets, target_logprobs, unpad_rows
from .generation import rag_generate
from .loading import load_generator, safetensors_only
from .vocabulary import VocabularyChecksMixin

__all__ = ["EtragOutput", "EtragPreTrainedModel", "EtragModel"]


@dataclass
class EtragOutput(ModelOutput):
    """Output of [`EtragModel.forward`].

    Attributes:
        loss: scalar training loss (the objective's weighted sum), when `labels` were given.
        doc_scores: `(B, K)` retrieval scores `sim(q, d_k) / temperature` of the retrieved passages.
        retrieved_doc_indices: `(B, K)` row numbers of the retrieved passages in the index's corpus.
        target_logprobs: `(B, K, T)` log-probability of each target token under each passage.
        logits: `(B*K, T, V)` generator logits at the target positions, only with `return_logits=True`.
        loss_terms: the objective's named terms (detached), for logging.
    """

    loss: torch.Tensor | None = None
    doc_scores: torch.Tensor | None = None
    retrieved_doc_indices: torch.Tensor | None = None
    target_logprobs: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    loss_terms: dict[str, torch.Tensor] | None = None


class EtragPreTrainedModel(PreTrainedModel):
    config_class = EtragConfig
    config: EtragConfig
    base_model_prefix = "etrag"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def _init_weights(self, module: torch.nn.Module) -> None:
        # Sub-models initialise their own weights; only the objective's extra layers (if any) need it here.
        if isinstance(module, torch.nn.Linear) and getattr(module, "etrag_owned", False):
            torch.nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)


class EtragModel(
    EtragAnsweringMixin, EtragHubMixin, EtragAdapterMixin, VocabularyChecksMixin, EtragPreTrainedModel
):
    """Retriever plus generator. Attach a [`PassageIndex`] with [`set_index`] before calling `forward`.

    Parts can carry PEFT adapters ([`hf_etrag.apply_peft`]); such a model saves only the adapters and reloads its
    bases by name (`hf_etrag.adapters.checkpoint`). `push_to_hub` uploads config, weights, tokenizers, the model
    card and optionally the index (`hf_etrag.hub.push`)."""

    # The loss is already a per-example mean; the Trainer must scale it for gradient accumulation itself.
    accepts_loss_kwargs = False

    def __init__(
        self,
        config: EtragConfig,
        query_encoder: PreTrainedModel | None = None,
        doc_encoder: PreTrainedModel | None = None,
        generator: PreTrainedModel | None = None,
    ) -> None:
        if config.query_encoder is None or config.generator is None:
            raise ValueError("`EtragConfig` needs both `query_encoder` and `generator` sub-configs.")
        super().__init__(config)
        self.query_encoder = query_encoder or AutoModel.from_config(config.query_encoder)
        if not config.shared_encoders:
            self.doc_encoder = doc_encoder or AutoModel.from_config(config.doc_encoder)
        for encoder in (self.query_encoder, getattr(self, "doc_encoder", None)):
            # We pool token states ourselves; the encoder's own pooler (BERT's) would be dead weight.
            if encoder is not None and isinstance(getattr(encoder, "pooler", None), torch.nn.Module):
                encoder.pooler = None
        generator_class = AutoModelForSeq2SeqLM if config.is_seq2seq_generator else AutoModelForCausalLM
        self.generator = generator or generator_class.from_config(config.generator)
        self.set_objective(
            config.objective,
            auxiliary_losses={
                name: build_auxiliary_loss(name, **config.auxiliary_loss_kwargs.get(name, {}))
                for name in config.auxiliary_losses
            },
            **config.objective_kwargs,
        )
        self._index: PassageIndex | None = None
        self.post_init()

    def set_objective(
        self,
        objective: str | Objective,
        auxiliary_losses: dict[str, nn.Module] | nn.ModuleDict | None = None,
        **objective_kwargs: Any,
    ) -> None:
        """Install the training objective and the auxiliary losses added to it (none by default).

        A name builds the registered objective with `objective_kwargs` and, for a [`ModelDrivenObjective`],
        sets it up for this model (a fresh posterior encoder, projection...); an objective instance is installed
        as it is (already set up, e.g. one taken from this model before). `config` is not changed."""
        fresh = isinstance(objective, str)
        if fresh:
            objective = build_objective(objective, **objective_kwargs)
        elif objective_kwargs:
            raise ValueError("`objective_kwargs` apply to an objective given by name, not to an instance.")
        if isinstance(objective, ModelDrivenObjective):
            if auxiliary_losses:
                raise ValueError(
                    f"`auxiliary_losses` combine with the top-K objectives (rag_sequence, rag_token), not with "
                    f"{objective.name!r}, which scores its own candidate set; remove them or change `objective`."
                )
            if fresh:
                objective.setup(self)
        self.objective = objective
        self.auxiliary_losses = nn.ModuleDict(auxiliary_losses or {})

    # ---- construction -------------------------------------------------------------------------------
    @classmethod
    def from_pretrained_retriever_generator(
        cls,
        query_encoder_name_or_path: str,
        generator_name_or_path: str,
        doc_encoder_name_or_path: str | None = None,
        generator_kwargs: dict[str, Any] | None = None,
        **config_kwargs: Any,
    ) -> EtragModel:
        """Assemble from two (or three) pretrained checkpoints, Hub ids or local folders.

        Like `RagModel.from_pretrained_question_encoder_generator`; `config_kwargs` go to [`EtragConfig`].
        """
        query_encoder = AutoModel.from_pretrained(query_encoder_name_or_path, use_safetensors=True)
        doc_encoder = (
            AutoModel.from_pretrained(doc_encoder_name_or_path, use_safetensors=True)
            if doc_encoder_name_or_path
            else None
        )
        generator_kwargs = safetensors_only(dict(generator_kwargs or {}), generator_name_or_path)
        generator = load_generator(generator_name_or_path, **generator_kwargs)
        config = EtragConfig(
            query_encoder=query_encoder.config,
            doc_encoder=doc_encoder.config if doc_encoder is not None else None,
            generator=generator.config,
            **config_kwargs,
        )
        return cls(config, query_encoder=query_encoder, doc_encoder=doc_encoder, generator=generator)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any, **kwargs: Any
    ) -> EtragModel:
        """`PreTrainedModel.from_pretrained`, safetensors only: pickle weights (`pytorch_model.bin`) are never
        unpickled, and `trust_remote_code` is refused (an `EtragModel` needs no code from the checkpoint)."""
        kwargs = safetensors_only(kwargs, pretrained_model_name_or_path)
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    # ---- saving -------------------------------------------------------------------------------------
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        is_main_process: bool = True,
        push_to_hub: bool = False,
        **kwargs: Any,
    ) -> None:
        """`PreTrainedModel.save_pretrained`, written atomically: into a temporary sibling folder, then renamed
        into place, so an error or a kill mid-save leaves the previous save loadable. Other entries already in
        `save_directory` (a Trainer's `checkpoint-*` folders) are kept; files of the same name as the model's are
        replaced only when they belong to an earlier hf-etrag model (`hf_etrag.files.MODEL_OUTPUT`), else the
        save is refused."""
        if not is_main_process:
            super().save_pretrained(save_directory, is_main_process=False, **kwargs)
            return
        with atomic_directory(save_directory, MODEL_OUTPUT) as tmp:
            super().save_pretrained(tmp, is_main_process=True, **kwargs)
        if push_to_hub:
            hub_kwargs = {
                k: kwargs[k] for k in ("commit_message", "private", "token", "create_pr") if k in kwargs
            }
            self.push_to_hub(kwargs.get("repo_id", Path(save_directory).name), **hub_kwargs)

    # ---- index --------------------------------------------------------------------------------------
    def set_index(self, index: PassageIndex | None) -> None:
        """Attach (or swap) the passage index; it is not part of the module graph or the state dict.

        Its token ids are checked against the encoders' (and generator's) vocabularies first: a corpus tokenised
        with another tokenizer would otherwise fail inside `nn.Embedding` at the first step, or silently read
        the wrong rows."""
        if index is not None:
            stores = [("retriever_input_ids", index.retriever_tokens, "doc_encoder")]
            if (
                self.objective.generator_reads_passages
            ):  # ETRAG's memory reaches the generator as prompts only
                shared = index.generator_tokens is index.retriever_tokens
                column = "retriever_input_ids" if shared else "generator_input_ids"
                stores.append((column, index.generator_tokens, "generator"))
            for column, store, part in stores:
                if len(store.values):
                    self.check_token_range(part, int(store.values.max()), f"Corpus column `{column}`")
        self._index = index

    @property
    def attached_index(self) -> PassageIndex | None:
        """The attached index, or `None` (where [`index`] would raise)."""
        return self._index

    @property
    def index(self) -> PassageIndex:
        if self._index is None:
            raise RuntimeError("No passage index attached: call `model.set_index(PassageIndex(...))` first.")
        return self._index

    @property
    def document_encoder(self) -> PreTrainedModel:
        return self.query_encoder if self.config.shared_encoders else self.doc_encoder

    # ---- retrieval ----------------------------------------------------------------------------------
    def encode_with(self, encoder: nn.Module, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`(B, H)` pooled (and, for cosine similarity, normalised) vectors of `encoder` (a query encoder)."""
        hidden = encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return self.pool_vectors(hidden, mask)

    def pool_vectors(self, token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`(B, T, H)` encoder token states to the `(B, H)` retrieval vectors (the config's pooling and
        similarity)."""
        return normalize_if_cosine(
            pool(token_states, attention_mask, self.config.pooling), self.config.similarity
        )

    def encode_token_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, side: Literal["query", "document"]
    ) -> torch.Tensor:
        """`(B, T, H)` last-layer token states of the query or the document encoder (for objectives that read
        more than the pooled vector, such as ETRAG's span vectors)."""
        encoder = self.query_encoder if side == "query" else self.document_encoder
        return encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def memory_tokens(self, rows: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded retriever `(input_ids, attention_mask)` of index rows `rows` (on the CPU)."""
        rows = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
        return self.index.retriever_tokens.batch(rows, self.retriever_pad_id)

    def encode_queries(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`(B, H)` query vectors."""
        return self.encode_with(self.query_encoder, input_ids, attention_mask)

    def encode_passages(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`(B, H)` passage vectors from the document encoder."""
        return self.encode_with(self.document_encoder, input_ids, attention_mask)

    def retrieve(self, query_vectors: torch.Tensor, n_docs: int | None = None) -> torch.Tensor:
        """`(B, K)` corpus row numbers of the top-K passages (no gradient: search is discrete). With
        `config.rerank_top_l`, the index's top-L are re-ranked with the current document encoder first."""
        return self.retrieve_with_vectors(query_vectors, n_docs)[0]

    def retrieve_with_vectors(
        self, query_vectors: torch.Tensor, n_docs: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[`retrieve`], plus the `(B, K, H)` current-encoder vectors of the kept passages (no gradient) when
        re-ranking computed them, else `None`; pass them on to [`document_vectors`] to avoid encoding twice."""
        n_docs = n_docs or self.config.n_docs
        search_k = n_docs
        if self.config.rerank_top_l:  # an L past the corpus size re-ranks the whole corpus
            search_k = max(n_docs, min(self.config.rerank_top_l, len(self.index)))
        if self._searches_on_device(query_vectors.device):
            indices = self.index.search_on_device(query_vectors.detach(), search_k)
        else:
            _, indices = self.index.search(query_vectors.detach().float().cpu().numpy(), search_k)
            indices = torch.from_numpy(indices.astype(np.int64)).to(query_vectors.device)
        if not self.config.rerank_top_l:
            return indices, None
        return rerank_candidates(
            self._encode_for_ranking,
            self.index.retriever_tokens,
            self.retriever_pad_id,
            query_vectors,
            indices,
            n_docs,
        )

    def _searches_on_device(self, device: torch.device) -> bool:
        mode, index = self.config.device_search, self.index
        if mode == "never" or index.index_factory != "Flat" or index.embeddings is None:
            return False
        if mode == "always":
            return True
        if device.type != "cuda":
            return False
        return index.embeddings.nbytes <= torch.cuda.get_device_properties(device).total_memory // 4

    def _encode_for_ranking(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # Ranking vectors come from the current document encoder as a refresh makes them: no dropout, no grad.
        encoder = self.document_encoder
        was_training = encoder.training
        encoder.eval()
        try:
            with torch.no_grad():
                return self.encode_passages(input_ids, attention_mask)
        finally:
            encoder.train(was_training)

    def document_vectors(
        self, doc_indices: torch.Tensor, device: torch.device, fresh_vectors: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`(*doc_indices.shape, H)` passage vectors: re-encoded with gradient when `train_doc_encoder` (so
        the document encoder learns); else, when re-ranking (`rerank_top_l`), the current encoder's vectors
        without gradient (`fresh_vectors` from [`retrieve_with_vectors`], or encoded here); else the index's
        stored embeddings."""
        flat = doc_indices.flatten().cpu().numpy()
        encode = self.config.train_doc_encoder and self.training and self._document_encoder_trainable()
        if encode or self.index.embeddings is None:
            ids, mask = self.index.retriever_tokens.batch(flat, self.retriever_pad_id)
            vectors = self.encode_passages(ids.to(device), mask.to(device))
        elif fresh_vectors is not None:
            vectors = fresh_vectors.to(device)
        elif self.config.rerank_top_l:
            ids, mask = self.index.retriever_tokens.batch(flat, self.retriever_pad_id)
            vectors = self._encode_for_ranking(ids.to(device), mask.to(device))
        elif (on_device := self.index.device_embeddings(device)) is not None:
            vectors = on_device[doc_indices.flatten().to(device)]
        else:
            vectors = to_device(torch.from_numpy(self.index.embeddings[flat]), device)
        return vectors.view(*doc_indices.shape, -1)

    def _document_encoder_trainable(self) -> bool:
        # A frozen document encoder would re-encode only to reproduce the stored embeddings: skip the work.
        return any(p.requires_grad for p in self.document_encoder.parameters())

    def score_documents(self, query_vectors: torch.Tensor, doc_vectors: torch.Tensor) -> torch.Tensor:
        """`(B, K)` scores `sim(q, d) / temperature` of `(B, K, H)` passage vectors."""
        doc_vectors = doc_vectors.to(query_vectors.dtype)
        return torch.einsum("bh,bkh->bk", query_vectors, doc_vectors) / self.config.temperature

    @property
    def retriever_pad_id(self) -> int:
        return self.config.query_encoder.pad_token_id or 0

    @property
    def generator_pad_id(self) -> int:
        pad = self.config.generator.pad_token_id
        if pad is None:
            pad = self.generator.generation_config.pad_token_id
        return 0 if pad is None else int(pad)

    def build_contexts(
        self,
        generator_input_ids: torch.Tensor,
        generator_attention_mask: torch.Tensor,
        doc_indices: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(B*K, L)` generator inputs: each query joined with each of its retrieved passages."""
        ids, mask = self._host_contexts(generator_input_ids, generator_attention_mask, doc_indices)
        return to_device(ids, generator_input_ids.device), to_device(mask, generator_input_ids.device)

    def _host_contexts(
        self,
        generator_input_ids: torch.Tensor,
        generator_attention_mask: torch.Tensor,
        doc_indices: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # Built on the host from the stored token ids (the passages never live on the accelerator).
        passages = self.index.generator_tokens
        rows = [passages[i] for i in doc_indices.flatten().tolist()]
        ids, mask = join_contexts(
            unpad_rows(generator_input_ids, generator_attention_mask),
            rows,
            n_docs=doc_indices.shape[1],
            max_length=self.config.max_context_length,
            pad_id=self.generator_pad_id,
            passage_first=not self.config.is_seq2seq_generator,
        )
        extra = -ids.shape[1] % self.config.context_pad_multiple  # a few distinct widths for torch.compile
        if extra:
            ids = torch.nn.functional.pad(ids, (0, extra), value=self.generator_pad_id)
            mask = torch.nn.functional.pad(mask, (0, extra), value=0)
        return ids, mask

    # ---- forward ------------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        generator_input_ids: torch.Tensor | None = None,
        generator_attention_mask: torch.Tensor | None = None,
        doc_indices: torch.Tensor | None = None,
        gold_passage_index: torch.Tensor | None = None,
        return_logits: bool = False,
        **kwargs: Any,
    ) -> EtragOutput:
        """Retrieve with the current query encoder, score the passages and (with `labels`) the loss.

        Args:
            input_ids, attention_mask: `(B, Tq)` query tokens for the query encoder.
            labels: `(B, T)` target tokens for the generator, `-100` for padding.
            generator_input_ids, generator_attention_mask: the query in the generator's vocabulary, when
                the generator's tokenizer differs from the retriever's (defaults to `input_ids`).
            doc_indices: `(B, K)` precomputed corpus rows to use instead of searching the index.
            gold_passage_index: `(B,)` corpus row of each example's gold passage (-1: unknown); used by the
                `contrastive` auxiliary loss.
        """
        query_vectors = self.encode_queries(input_ids, attention_mask)
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "generator_input_ids": generator_input_ids,
            "generator_attention_mask": generator_attention_mask,
            **kwargs,
        }
        if labels is not None and isinstance(self.objective, ModelDrivenObjective):
            # jsa, vrag and etrag retrieve and score in their own way (candidate sets, instance memory).
            terms, doc_scores, doc_indices = self.objective.model_loss(self, query_vectors, batch)
            return EtragOutput(
                loss=terms["loss"],
                doc_scores=doc_scores,
                retrieved_doc_indices=doc_indices,
                loss_terms={name: value.detach() for name, value in terms.items() if name != "loss"},
            )
        reranked_vectors = None
        if doc_indices is None:
            doc_indices, reranked_vectors = self.retrieve_with_vectors(query_vectors)
        doc_vectors = self.document_vectors(doc_indices, query_vectors.device, reranked_vectors)
        doc_scores = self.score_documents(query_vectors, doc_vectors)
        output = EtragOutput(doc_scores=doc_scores, retrieved_doc_indices=doc_indices)
        if labels is None:
            return output

        logprobs, logits = self.target_logprobs_for(doc_indices, batch, return_logits=return_logits)
        inputs = ObjectiveInputs(
            doc_scores,
            logprobs,
            (labels != IGNORE_INDEX).long(),
            query_vectors=query_vectors,
            doc_vectors=doc_vectors,
            doc_indices=doc_indices,
            gold_passage_index=gold_passage_index,
            gold_vectors=self._gold_vectors(gold_passage_index, query_vectors.device),
            temperature=self.config.temperature,
        )
        terms = self.objective(inputs)
        if len(self.auxiliary_losses):
            auxiliary = {name: loss(inputs) for name, loss in self.auxiliary_losses.items()}
            terms = combine_losses(terms, auxiliary, self.config.auxiliary_losses)
        output.loss = terms["loss"]
        output.loss_terms = {name: value.detach() for name, value in terms.items() if name != "loss"}
        output.target_logprobs = logprobs
        output.logits = logits
        return output

    def target_logprobs_for(
        self, doc_indices: torch.Tensor, batch: dict[str, torch.Tensor], return_logits: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(B, K, T)` log p(y_t | x, z_k, y_<t) of `batch["labels"]` under each of the `(B, K)` passages,
        and the `(B*K, T, V)` logits when `return_logits` (else `None`)."""
        labels = batch["labels"]
        query_ids = batch.get("generator_input_ids")
        query_mask = batch.get("generator_attention_mask")
        if query_ids is None:
            query_ids, query_mask = batch["input_ids"], batch["attention_mask"]
        context_ids, context_mask = self._host_contexts(query_ids, query_mask, doc_indices)
        n_docs = doc_indices.shape[1]
        targets = labels.repeat_interleave(n_docs, dim=0)
        device = labels.device
        # Rows of similar length share a generator call, each call padded to its own longest row: the rows'
        # log-probabilities are those of one call padded to the batch's longest (attention masks the padding).
        lengths = context_mask.sum(-1).numpy()
        groups = length_buckets(
            lengths, self.config.generator_length_buckets, self.config.context_pad_multiple
        )
        if len(groups) == 1:  # one call, in the rows' own order
            groups = [np.arange(context_ids.shape[0])]
        multiple = self.config.context_pad_multiple
        pieces, logit_pieces = [], []
        for rows in groups:
            rows_index = torch.from_numpy(rows)
            longest = int(lengths[rows].max())
            width = min(-(-longest // multiple) * multiple, context_ids.shape[1])
            logprobs, logits = target_logprobs(
                self.generator,
                to_device(context_ids[rows_index, :width], device),
                to_device(context_mask[rows_index, :width], device),
                targets[rows_index.to(device)],
                pad_id=self.generator_pad_id,
                return_logits=return_logits,
                chunked_head=self.config.chunked_lm_head,
            )
            pieces.append(logprobs)
            logit_pieces.append(logits)
        if len(groups) == 1:
            logprobs, logits = pieces[0], logit_pieces[0]
        else:
            inverse = torch.from_numpy(np.argsort(np.concatenate(groups))).to(device)
            logprobs = torch.cat(pieces)[inverse]
            logits = torch.cat(logit_pieces)[inverse] if return_logits else None
        return logprobs.view(labels.shape[0], n_docs, -1), logits

    def _gold_vectors(
        self, gold_passage_index: torch.Tensor | None, device: torch.device
    ) -> torch.Tensor | None:
        """`(G, H)` vectors of the batch's known gold passages, for an auxiliary loss that reads them (`contrastive`)."""
        if not any(loss.reads_gold_passages for loss in self.auxiliary_losses.values()):
            return None
        if gold_passage_index is None or not bool((gold_passage_index >= 0).any()):
            return None
        return self.document_vectors(gold_passage_index[gold_passage_index >= 0], device)

    @torch.no_grad()
    def generate(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor | EtragGenerateOutput:
        """Retrieve, then decode with the objective's marginalisation; see [`hf_etrag.modeling.generation.rag_generate`]
        (`return_dict_in_generate=True`: an `EtragGenerateOutput` with the passages generated from)."""
        return rag_generate(self, input_ids, attention_mask, **kwargs)
