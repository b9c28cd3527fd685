"""PEFT adapters (LoRA or any `peft` tuner) on the generator and, optionally, on the retriever encoders.

`PeftArguments` holds the options in the shape of TRL's `ModelConfig` (`use_peft`, `lora_r`, ...) so that the
recipe parser (an `HfArgumentParser`) reads them from YAML or flags; `apply_peft` wraps the chosen parts of an
[`EtragModel`] with `peft.get_peft_model`, which freezes each wrapped part's base and leaves its adapters trainable.
Parts that are not wrapped keep their `requires_grad` as they were (a LoRA generator with a fully trained query
encoder is a valid set-up).

Checkpoints of such a model hold only the adapters of the wrapped parts (see `hf_etrag.adapters.checkpoint`).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from peft import LoraConfig, PeftConfig, PeftModel, get_peft_config, get_peft_model
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULT_LORA_TARGETS
from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

__all__ = [
    "PeftArguments",
    "apply_peft",
    "adapter_parts",
    "check_peft_arguments",
    "ENCODER_PARTS",
    "ADAPTER_PARTS",
]

ENCODER_PARTS = ("query_encoder", "doc_encoder")
ADAPTER_PARTS = ("generator", *ENCODER_PARTS)
_RETRIEVER_CHOICES = {
    "none": (),
    "query_encoder": ("query_encoder",),
    "doc_encoder": ("doc_encoder",),
    "encoders": ENCODER_PARTS,
}


@dataclass
class PeftArguments:
    """PEFT options of a training run (TRL `ModelConfig` style), readable by `HfArgumentParser`.

    With `use_peft`, the generator gets a LoRA adapter built from the `lora_*` fields, or the PEFT config given
    in `generator_peft_config` (any `peft` method: IA3, LoHa, ...). `peft_on_retriever` adds adapters to the
    retriever encoders too, built the same way (`retriever_lora_target_modules` names their layers).
    """

    use_peft: bool = field(
        default=False, metadata={"help": "Train PEFT adapters instead of the full generator."}
    )
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Generator modules that get LoRA (e.g. q_proj v_proj, or all-linear). Default: peft's choice "
            "for the architecture (q_proj/v_proj for BART and Llama, c_attn for GPT-2)."
        },
    )
    lora_modules_to_save: list[str] | None = field(
        default=None,
        metadata={"help": "Generator modules trained in full and saved next to the adapter (e.g. lm_head)."},
    )
    use_rslora: bool = field(
        default=False,
        metadata={"help": "Rank-stabilised LoRA: scale by alpha / sqrt(r) instead of alpha / r."},
    )
    use_dora: bool = field(default=False, metadata={"help": "Weight-decomposed LoRA (DoRA)."})
    peft_on_retriever: str = field(
        default="none",
        metadata={
            "help": "Adapters on the retriever too: none, query_encoder, doc_encoder (a separate document encoder "
            "only) or encoders (all of them); true/false mean encoders/none. A shared encoder is the query_encoder."
        },
    )
    retriever_lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Encoder modules that get LoRA. Default: peft's choice (query/value for BERT)."},
    )
    generator_peft_config: dict | str | None = field(
        default=None,
        metadata={
            "help": "Any PEFT config for the generator instead of the lora_* fields: a dict (YAML), JSON text, a "
            "JSON file or a folder holding adapter_config.json. Needs `peft_type`."
        },
    )
    retriever_peft_config: dict | str | None = field(
        default=None,
        metadata={"help": "Same as generator_peft_config, for the encoders named by peft_on_retriever."},
    )

    def __post_init__(self) -> None:
        if isinstance(self.peft_on_retriever, bool) or str(self.peft_on_retriever).lower() in (
            "true",
            "false",
        ):
            self.peft_on_retriever = "encoders" if str(self.peft_on_retriever).lower() == "true" else "none"
        if self.peft_on_retriever not in _RETRIEVER_CHOICES:
            raise ValueError(
                f"`peft_on_retriever` must be one of {sorted(_RETRIEVER_CHOICES)} (or true/false); "
                f"got {self.peft_on_retriever!r}."
            )
        if self.lora_r < 1:
            raise ValueError(f"`lora_r` must be >= 1; got {self.lora_r}.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"`lora_dropout` must be in [0, 1); got {self.lora_dropout}.")
        # Parsed now, so that a bad config fails when the arguments are read; the fields keep what the user wrote
        # (a recipe is dumped back to YAML from them).
        self._generator_peft = _as_peft_config(self.generator_peft_config, "generator_peft_config")
        self._retriever_peft = _as_peft_config(self.retriever_peft_config, "retriever_peft_config")

    @property
    def retriever_parts(self) -> tuple[str, ...]:
        return _RETRIEVER_CHOICES[self.peft_on_retriever]

    def generator_config(self, is_seq2seq: bool) -> PeftConfig:
        """The generator's PEFT config: `generator_peft_config` if given, else LoRA from the `lora_*` fields."""
        if self._generator_peft is not None:
            return copy.deepcopy(self._generator_peft)
        return self._lora(
            self.lora_target_modules,
            self.lora_modules_to_save,
            task_type="SEQ_2_SEQ_LM" if is_seq2seq else "CAUSAL_LM",
        )

    def retriever_config(self) -> PeftConfig:
        """The encoders' PEFT config: `retriever_peft_config` if given, else LoRA from the `lora_*` fields."""
        if self._retriever_peft is not None:
            return copy.deepcopy(self._retriever_peft)
        return self._lora(self.retriever_lora_target_modules, None, task_type="FEATURE_EXTRACTION")

    def _lora(self, targets: list[str] | None, to_save: list[str] | None, task_type: str) -> LoraConfig:
        if targets is not None and len(targets) == 1 and _is_pattern(targets[0]):
            # peft reads "all-linear" (or a regex) only as a plain string; a plain string is matched against the
            # whole module path, so a single module name (`q_proj`) stays a list, which peft matches by suffix.
            targets = targets[0]
        return LoraConfig(
            r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            target_modules=targets,
            modules_to_save=to_save,
            use_rslora=self.use_rslora,
            use_dora=self.use_dora,
            bias="none",
            task_type=task_type,
        )


def _is_pattern(target: str) -> bool:
    """`all-linear`, or a regular expression over module paths (as opposed to one module name such as `q_proj`)."""
    return target == "all-linear" or any(char in target for char in "*+?[]()|^$\\")


def _as_peft_config(value: PeftConfig | dict | str | None, name: str) -> PeftConfig | None:
    if value is None or isinstance(value, PeftConfig):
        return value
    if isinstance(value, str):
        if os.path.isdir(value):
            return PeftConfig.from_pretrained(value)
        text = open(value, encoding="utf-8").read() if os.path.isfile(value) else value
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"`{name}` must be a dict, JSON text, a JSON file or a folder with adapter_config.json; "
                f"{value!r} is none of these ({err})."
            ) from None
    if not isinstance(value, dict) or "peft_type" not in value:
        raise ValueError(
            f"`{name}` needs a `peft_type` (e.g. LORA, IA3, LOHA); got {value!r}. Write it as "
            '{"peft_type": "LORA", "r": 8, "target_modules": ["q_proj", "v_proj"]}.'
        )
    return get_peft_config(dict(value))


# A frozen part that gets a trainable adapter trains anyway: the recipe's two fields contradict each other.
_FROZEN_GENERATOR_WITH_PEFT = (
    "`freeze_generator: true` and `use_peft: true` contradict each other: `use_peft` puts a trainable adapter "
    "(LoRA) on the generator, so the generator would train although `freeze_generator` says it stays as loaded. "
    "To train the reader through the adapter, set `freeze_generator: false` (PEFT keeps the base weights frozen "
    "itself); to keep the reader frozen, set `use_peft: false`."
)
_FROZEN_RETRIEVER_WITH_PEFT = (
    "`freeze_retriever: true` and `peft_on_retriever: {parts}` contradict each other: the adapters on the "
    "encoders would train although `freeze_retriever` says they stay as loaded. Set `peft_on_retriever: none` to "
    "keep the retriever frozen, or `freeze_retriever: false` to train it through the adapters."
)


def check_peft_arguments(model_args: Any, peft_args: PeftArguments) -> None:
    """Raise a `ValueError` where a recipe's model arguments (`freeze_generator`, `freeze_retriever`) and its PEFT
    arguments contradict each other: a frozen part that would get a trainable adapter. Call it where both are
    known, before any model is loaded."""
    if not peft_args.use_peft:
        return
    if getattr(model_args, "freeze_generator", False):
        raise ValueError(_FROZEN_GENERATOR_WITH_PEFT)
    if getattr(model_args, "freeze_retriever", False) and peft_args.retriever_parts:
        raise ValueError(_FROZEN_RETRIEVER_WITH_PEFT.format(parts=peft_args.peft_on_retriever))


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
                _FROZEN_GENERATOR_WITH_PEFT + " (From Python: leave the generator's weights trainable before "
                "`apply_peft`; it freezes the base and trains only the adapter.)"
            )
        if "query_encoder" in plan and _fully_frozen(model.query_encoder):
            raise ValueError(_FROZEN_RETRIEVER_WITH_PEFT.format(parts=config.peft_on_retriever))
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
