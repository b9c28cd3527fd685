"""`PeftArguments`, the PEFT options of a recipe, and the check that they agree with its frozen parts.

This module imports peft only when a PEFT config is built, so that the recipe's argument classes (and
`hf-etrag train --help`) load without torch; `hf_etrag.adapters.apply` applies the adapters.
"""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from peft import LoraConfig, PeftConfig

__all__ = ["ADAPTER_PARTS", "ENCODER_PARTS", "PeftArguments", "check_peft_arguments"]

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
        metadata={"help": "Generator modules trained in full and saved with the adapter. E.g. lm_head."},
    )
    use_rslora: bool = field(
        default=False,
        metadata={"help": "Rank-stabilised LoRA: scale by alpha / sqrt(r) instead of alpha / r."},
    )
    use_dora: bool = field(default=False, metadata={"help": "Weight-decomposed LoRA (DoRA)."})
    peft_on_retriever: str = field(
        default="none",
        metadata={
            "help": "Retriever adapters too: none, query_encoder, doc_encoder or encoders. doc_encoder: a separate "
            "document encoder only; encoders: all of them; true/false mean encoders/none. A shared encoder is "
            "the query_encoder."
        },
    )
    retriever_lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Encoder modules that get LoRA. Default: peft's choice (query/value for BERT)."},
    )
    generator_peft_config: dict | str | None = field(
        default=None,
        metadata={
            "help": "Any PEFT config for the generator, instead of the lora_* fields. A dict (YAML), JSON text, a "
            "JSON file or a folder holding adapter_config.json; needs `peft_type`."
        },
    )
    retriever_peft_config: dict | str | None = field(
        default=None,
        metadata={"help": "As generator_peft_config, for the encoders named by peft_on_retriever."},
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
        from peft import LoraConfig

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
    if value is None:
        return None
    from peft import PeftConfig, get_peft_config

    if isinstance(value, PeftConfig):
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
FROZEN_GENERATOR_WITH_PEFT = (
    "`freeze_generator: true` and `use_peft: true` contradict each other: `use_peft` puts a trainable adapter "
    "(LoRA) on the generator, so the generator would train although `freeze_generator` says it stays as loaded. "
    "To train the reader through the adapter, set `freeze_generator: false` (PEFT keeps the base weights frozen "
    "itself); to keep the reader frozen, set `use_peft: false`."
)
FROZEN_RETRIEVER_WITH_PEFT = (
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
        raise ValueError(FROZEN_GENERATOR_WITH_PEFT)
    if getattr(model_args, "freeze_retriever", False) and peft_args.retriever_parts:
        raise ValueError(FROZEN_RETRIEVER_WITH_PEFT.format(parts=peft_args.peft_on_retriever))
