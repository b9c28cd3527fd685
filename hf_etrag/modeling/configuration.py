"""Configuration of an [`EtragModel`]: a retriever (query and document encoders) and a generator."""

from __future__ import annotations

import math
from typing import Any, get_args

from transformers import AutoConfig, PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from ..objectives.cotraining import AUXILIARY_LOSSES
from ..objectives.registry import available_objectives
from ..retrieval.encoding import PoolingMode, Similarity

__all__ = ["EtragConfig"]


def _as_config(value: PretrainedConfig | dict | None, field: str) -> PretrainedConfig | None:
    if value is None or isinstance(value, PretrainedConfig):
        return value
    if isinstance(value, dict):
        model_type = value.get("model_type")
        if model_type not in CONFIG_MAPPING:
            raise ValueError(
                f"`{field}` needs a `model_type` that transformers knows (e.g. 'bert', 'bart', 'llama'); "
                f"got {model_type!r}."
            )
        kwargs = {k: v for k, v in value.items() if k != "model_type"}
        return CONFIG_MAPPING[model_type](**kwargs)
    raise TypeError(f"`{field}` must be a PretrainedConfig, a dict or None; got {type(value).__name__}.")


class EtragConfig(PretrainedConfig):
    r"""
    Configuration of a jointly trained retriever and generator, in the spirit of transformers' `RagConfig`.

    Args:
        query_encoder (`PretrainedConfig | dict`):
            Config of the query encoder (any `AutoModel` encoder, e.g. BERT).
        doc_encoder (`PretrainedConfig | dict`, *optional*):
            Config of a separate document encoder. `None` shares the query encoder (one set of weights).
        generator (`PretrainedConfig | dict`):
            Config of the generator: an encoder-decoder (`AutoModelForSeq2SeqLM`) or a decoder-only model
            (`AutoModelForCausalLM`); which one is read from `generator.is_encoder_decoder`.
        pooling (`"cls" | "mean"`): how token states become one vector.
        similarity (`"dot" | "cosine"`): the retrieval score before division by `temperature`.
        temperature (`float`): retrieval scores are `sim(q, d) / temperature`; p(z|x) is their softmax.
        n_docs (`int`): passages retrieved per query (K).
        objective (`str`): name of the training objective (see `hf_etrag.objectives.available_objectives()`).
        train_doc_encoder (`bool`): re-encode the retrieved passages with gradient so the document encoder
            learns; `False` scores them against the stored index embeddings (query-side training only).
        max_context_length (`int`): generator input length (query plus one passage), in generator tokens.
        generator_length_buckets (`int`): the `B*K` contexts are scored in at most this many generator calls, rows
            of similar length together, each call padded to its own longest row (1: one call padded to the longest
            context of the batch). Same loss and gradients; less work on padding.
        context_pad_multiple (`int`): round each call's width up to a multiple of this (e.g. 64 with `torch_compile`,
            so that few distinct shapes are compiled; 8 suits tensor cores).
        device_search (`"auto" | "always" | "never"`): exact search of a Flat index by a matmul on the queries'
            device (`PassageIndex.search_on_device`) instead of FAISS on the host. `auto`: for queries on an
            accelerator when the embeddings take at most a quarter of its memory; `always`: on any device (CPU too);
            approximate indexes (IVF, PQ) always search with FAISS.
        chunked_lm_head (`bool`): in training, score targets from the generator's last hidden states with the LM
            head applied a chunk of target positions at a time (`hf_etrag.modeling.lm_head`): the `(B*K, T, V)`
            logits never exist whole, and padding positions cost nothing. For generators with a plain linear head
            (BART family, Llama-style and GPT-2 causal LMs); others take the plain path.
        rerank_top_l (`int`, *optional*): Atlas's re-ranking of a stale index: retrieve the top-L (L >= `n_docs`)
            from the index, re-encode those L passages with the current document encoder (no gradient) and keep
            the best `n_docs` by the fresh scores, so full refreshes can be rare. `None` or 0: off.
        objective_kwargs (`dict`): extra options passed to the objective's constructor.
        auxiliary_losses (`dict[str, float]`): retriever co-training losses added to the objective with these
            weights, e.g. `{"pdist": 0.5, "contrastive": 1.0}` (names: `emdr2`, `pdist`, `lsr`, `contrastive`).
        auxiliary_loss_kwargs (`dict[str, dict]`): options per auxiliary loss, e.g. `{"pdist": {"temperature": 0.1}}`.
        adapter_bases (`dict[str, str | dict]`): set by `save_pretrained` when parts carry PEFT adapters: part name
            (`generator`, `query_encoder`, `doc_encoder`) -> the base model's name or path, or
            `{"name_or_path": ..., "gguf_file": ...}` for a base loaded from a GGUF file. Such a checkpoint holds
            only the adapters of those parts (`<part>_adapter/`); `from_pretrained` reloads the bases from here.
    """

    model_type = "etrag"

    query_encoder: PretrainedConfig | dict | None = None
    doc_encoder: PretrainedConfig | dict | None = None
    generator: PretrainedConfig | dict | None = None
    pooling: str = "mean"
    similarity: str = "dot"
    temperature: float = 1.0
    n_docs: int = 5
    objective: str = "rag_sequence"
    train_doc_encoder: bool = True
    max_context_length: int = 256
    generator_length_buckets: int = 4
    context_pad_multiple: int = 1
    chunked_lm_head: bool = True
    device_search: str = "auto"
    rerank_top_l: int | None = None
    objective_kwargs: dict | None = None
    auxiliary_losses: dict | None = None
    auxiliary_loss_kwargs: dict | None = None
    adapter_bases: dict | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        self.query_encoder = _as_config(self.query_encoder, "query_encoder")
        self.doc_encoder = _as_config(self.doc_encoder, "doc_encoder")
        self.generator = _as_config(self.generator, "generator")
        if self.objective_kwargs is None:
            self.objective_kwargs = {}
        if self.auxiliary_losses is None:
            self.auxiliary_losses = {}
        if self.auxiliary_loss_kwargs is None:
            self.auxiliary_loss_kwargs = {}
        if self.adapter_bases is None:
            self.adapter_bases = {}
        super().__post_init__(**kwargs)
        self.validate_fields()

    def validate_fields(self) -> None:
        """Raise a `ValueError` that names the field, the value and the allowed values."""
        if self.pooling not in get_args(PoolingMode):
            raise ValueError(f"`pooling` must be one of {get_args(PoolingMode)}; got {self.pooling!r}.")
        if self.similarity not in get_args(Similarity):
            raise ValueError(f"`similarity` must be one of {get_args(Similarity)}; got {self.similarity!r}.")
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            raise ValueError(f"`temperature` must be a positive number; got {self.temperature!r}.")
        if not (isinstance(self.n_docs, int) and self.n_docs >= 1):
            raise ValueError(f"`n_docs` must be an integer >= 1; got {self.n_docs!r}.")
        if self.rerank_top_l and not (
            isinstance(self.rerank_top_l, int) and self.rerank_top_l >= self.n_docs
        ):
            raise ValueError(
                f"`rerank_top_l` must be an integer >= `n_docs` ({self.n_docs}), or None/0 to turn re-ranking off; "
                f"got {self.rerank_top_l!r}. Re-ranking keeps `n_docs` of the top-L candidates, so raise it to at "
                f"least {self.n_docs} (Atlas uses several times `n_docs`)."
            )
        if not (isinstance(self.max_context_length, int) and self.max_context_length >= 8):
            raise ValueError(
                f"`max_context_length` must be an integer >= 8; got {self.max_context_length!r}."
            )
        if self.device_search not in ("auto", "always", "never"):
            raise ValueError(
                f"`device_search` must be 'auto', 'always' or 'never'; got {self.device_search!r}."
            )
        for name in ("generator_length_buckets", "context_pad_multiple"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ValueError(f"`{name}` must be an integer >= 1; got {value!r}.")
        if self.objective not in available_objectives():
            raise ValueError(
                f"`objective` {self.objective!r} is unknown; choose one of {sorted(available_objectives())}."
            )

        for name, weight in self.auxiliary_losses.items():
            if name not in AUXILIARY_LOSSES:
                raise ValueError(
                    f"`auxiliary_losses` names {name!r}, which is unknown; choose from {sorted(AUXILIARY_LOSSES)}."
                )
            if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
                raise ValueError(
                    f"`auxiliary_losses[{name!r}]` must be a finite weight >= 0; got {weight!r}."
                )
        unused = set(self.auxiliary_loss_kwargs) - set(self.auxiliary_losses)
        if unused:
            raise ValueError(
                f"`auxiliary_loss_kwargs` has options for {sorted(unused)}, which `auxiliary_losses` does not use."
            )

    @property
    def shared_encoders(self) -> bool:
        return self.doc_encoder is None

    @property
    def is_seq2seq_generator(self) -> bool:
        return bool(self.generator is not None and self.generator.is_encoder_decoder)

    @classmethod
    def from_retriever_generator_configs(
        cls,
        query_encoder_config: PretrainedConfig,
        generator_config: PretrainedConfig,
        doc_encoder_config: PretrainedConfig | None = None,
        **kwargs: Any,
    ) -> EtragConfig:
        """Build from sub-configs (like `RagConfig.from_question_encoder_generator_configs`)."""
        return cls(
            query_encoder=query_encoder_config,
            doc_encoder=doc_encoder_config,
            generator=generator_config,
            **kwargs,
        )

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        for name in ("query_encoder", "doc_encoder", "generator"):
            value = getattr(self, name)
            output[name] = value.to_dict() if isinstance(value, PretrainedConfig) else value
        return output


AutoConfig.register("etrag", EtragConfig)
