"""PEFT adapters (LoRA or any `peft` tuner) on the generator and, optionally, on the retriever encoders.

`PeftArguments` (in `hf_etrag.adapters.arguments`, free of torch) holds the options in the shape of TRL's
`ModelConfig` (`use_peft`, `lora_r`, ...) so that the recipe parser (an `HfArgumentParser`) reads them from YAML or
flags; `apply_peft` wraps the chosen parts of an [`EtragModel`] with `peft.get_peft_model`, which freezes each
wrapped part's base and leaves its adapters trainable. Parts that are not wrapped keep their `requires_grad` as
they were (a LoRA generator with a fully trained query encoder is a valid set-up).

Checkpoints of such a model hold only the adapters of the wrapped parts (see `hf_etrag.adapters.checkpoint`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence

import torch
from peft import PeftConfig, PeftModel, get_peft_model
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULT_LORA_TARGETS
from transformers import PreTrainedModel

from .arguments import (  # re-exported: `from hf_etrag.adapters.apply import PeftArguments` keeps working
    ADAPTER_PARTS,
    ENCODER_PARTS,
    FROZEN_GENERATOR_WITH_PEFT,
    FROZEN_RETRIEVER_WITH_PEFT,
    PeftArguments,
    check_peft_arguments,
)

logger = logging.getLogger(__name__)

__all__ = [
    "PeftArguments",
    "apply_peft",
    "adapter_parts",
    "check_peft_arguments",
    "ENCODER_PARTS",
    "ADAPTER_PARTS",
]


def _fully_frozen(part: torch.nn.Module) -> bool:
    parameters = list(part.parameters())
    return bool(parameters) and not any(p.requires_grad for p in parameters)


def adapter_parts(model: PreTrainedModel) -> dict[str, PeftModel]:
    """The parts of `model` that carry PEFT adapters, by attribute name."""
    return {name: part for name in ADAPTER_PARTS if isinstance(part := getattr(model, name, None), PeftModel)}


def apply_peft(
    model: PreTrainedModel,
    config: PeftArguments | PeftConfig | None = None,
    retriever_config: PeftConfig | None = None,
    encoders: Sequence[str] | None = None,
) -> PreTrainedModel:
    """Wrap the generator and/or the retriever encoders of `model` with PEFT adapters, in place.

    Args:
        model: the model. A part loaded with `from_pretrained` is saved as adapters only (its `name_or_path`
            reloads the base); a part without one keeps its frozen base weights in checkpoints (a warning says so).
        config: [`PeftArguments`] (nothing happens unless `use_peft`), or the generator's `PeftConfig` (any
            peft method; `None` leaves the generator as it is).
        retriever_config: the encoders' `PeftConfig` when `config` is a `PeftConfig`.
        encoders: which encoders get `retriever_config`: `query_encoder`, `doc_encoder` (a separate document
            encoder); default: all of the model's encoders (a shared encoder is the `query_encoder`).

    Returns the same model. Each wrapped part's base is frozen, its adapters trainable.
    """
    if isinstance(config, PeftArguments):
        if not config.use_peft:
            return model
        generator_config = config.generator_config(model.config.is_seq2seq_generator)
        retriever_config = config.retriever_config() if config.retriever_parts else None
        # "encoders" means all of this model's encoders: just the query encoder when it is shared.
        encoders = None if config.peft_on_retriever == "encoders" else config.retriever_parts
    else:
        generator_config = config
    if encoders is None:
        encoders = ("query_encoder",) if model.config.shared_encoders else ENCODER_PARTS
    plan: dict[str, PeftConfig] = {}
    if generator_config is not None:
        plan["generator"] = generator_config
    if retriever_config is not None:
        for name in encoders:
            if name not in ENCODER_PARTS:
                raise ValueError(f"`encoders` names {name!r}; choose from {ENCODER_PARTS}.")
            if name == "doc_encoder" and model.config.shared_encoders:
                raise ValueError(
                    "Adapters for 'doc_encoder' were asked for, but this model shares one encoder for queries and "
                    "passages (`EtragConfig.doc_encoder=None`): name 'query_encoder', which encodes both."
                )
            plan[name] = retriever_config
    if isinstance(config, PeftArguments):
        # A recipe froze the part (`freeze_generator` / `freeze_retriever`, applied by `set_trainable_parts`)
        # that its PEFT arguments would now give a trainable adapter.
        if "generator" in plan and _fully_frozen(model.generator):
            raise ValueError(
                FROZEN_GENERATOR_WITH_PEFT + " (From Python: leave the generator's weights trainable before "
                "`apply_peft`; it freezes the base and trains only the adapter.)"
            )
        if "query_encoder" in plan and _fully_frozen(model.query_encoder):
            raise ValueError(FROZEN_RETRIEVER_WITH_PEFT.format(parts=config.peft_on_retriever))
    for name, peft_config in plan.items():  # every check before the first part changes
        _check(getattr(model, name), peft_config, name)
    for name, peft_config in plan.items():
        # get_peft_model writes the base's name into the config it is given: one copy per part.
        setattr(model, name, get_peft_model(getattr(model, name), copy.deepcopy(peft_config)))
    return model


def _check(part: PreTrainedModel, peft_config: PeftConfig, name: str) -> None:
    if isinstance(part, PeftModel):
        raise ValueError(
            f"`{name}` already carries PEFT adapters; merge them (`model.merge_adapters()`) first."
        )
    if peft_config.is_prompt_learning:
        raise ValueError(
            f"{peft_config.peft_type} on `{name}` adds virtual tokens, which shift the target positions hf-etrag "
            "scores; use a tuner that adapts weights (LoRA, IA3, LoHa, ...)."
        )
    model_type = part.config.model_type
    if getattr(peft_config, "target_modules", "given") is None and model_type not in DEFAULT_LORA_TARGETS:
        field_name = "lora_target_modules" if name == "generator" else "retriever_lora_target_modules"
        raise ValueError(
            f"peft has no default LoRA target modules for `{name}` ({model_type!r}): set `{field_name}` (or "
            "`target_modules` of the PEFT config) to its attention projections, e.g. [query, value] for BERT-style "
            "layers, or [all-linear]."
        )
    if not getattr(part, "name_or_path", ""):
        logger.warning(
            "`%s` was not loaded from one checkpoint (no `name_or_path`), so checkpoints cannot reload its base by "
            "name: they will hold its frozen base weights next to the adapters. Load the base with `from_pretrained` "
            "before `apply_peft` for adapter-only checkpoints.",
            name,
        )
