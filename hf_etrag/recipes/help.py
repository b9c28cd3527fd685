"""The help of `hf-etrag train`: the project's own recipe keys, grouped by role, with defaults; `--help-all` adds
the full help texts and every key of the Trainer (`TrainingArguments`).

The project's keys come from argument classes that import neither torch nor transformers
(`hf_etrag.recipes.arguments.project_argument_classes`), so `hf-etrag train --help` answers in a fraction of a second; only `--help-all`
imports transformers (for `TrainingArguments`). Parsing is unchanged: `HfArgumentParser` reads the recipe and its
flags (`hf_etrag.recipes.arguments.parse_recipe`); this module only describes the keys.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import re
import types
import typing
from typing import Any, Literal

__all__ = ["DefaultsHelpFormatter", "KEY_GROUPS", "format_train_help", "grouped_keys"]

# Help groups of the project's own keys: a key that no group names is listed under "other" (a test keeps that empty).
KEY_GROUPS: dict[str, tuple[str, ...]] = {
    "model": (
        "retriever_name_or_path",
        "generator_name_or_path",
        "generator_gguf_file",
        "generator_prompt_template",
        "generator_answer_prefix",
        "freeze_retriever",
        "freeze_generator",
        "dropout",
        "max_query_length",
        "max_passage_length",
        "max_target_length",
        "max_context_length",
        "generator_length_buckets",
        "context_pad_multiple",
        "chunked_lm_head",
        "device_search",
    ),
    "objective": ("objective", "objective_kwargs", "auxiliary_losses", "auxiliary_loss_kwargs"),
    "retrieval and index": (
        "n_docs",
        "pooling",
        "similarity",
        "temperature",
        "train_doc_encoder",
        "rerank_top_l",
        "index_factory",
        "refresh_steps",
        "refresh_on_epoch_end",
        "refresh_batch_size",
        "refresh_retrain_index",
        "save_index_with_checkpoints",
    ),
    "data": (
        "task",
        "train_source",
        "train_split",
        "eval_source",
        "eval_split",
        "corpus_source",
        "corpus_split",
        "train_limit",
        "eval_limit",
        "relation_template",
        "max_history_turns",
        "reader_warmup_steps",
    ),
    "test evaluation": (
        "test_source",
        "test_split",
        "test_limit",
        "test_generation_limit",
        "max_new_tokens",
        "decoding",
        "negative_label",
        "report_examples",
    ),
    "optimisation (with the Trainer's learning_rate, max_steps, ...)": (
        "retriever_learning_rate",
        "max_nonfinite_steps",
    ),
    "PEFT": (
        "use_peft",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "lora_target_modules",
        "lora_modules_to_save",
        "use_rslora",
        "use_dora",
        "peft_on_retriever",
        "retriever_lora_target_modules",
        "generator_peft_config",
        "retriever_peft_config",
    ),
}

USAGE = "hf-etrag train [RECIPE.yaml] [--KEY VALUE ...] [--help | --help-all]"
DESCRIPTION = (
    "Train a recipe, save the model and score its test split. The YAML file gives the keys' values, flags after "
    "it override them (a recipe key is a flag: `n_docs: 5` or `--n_docs 5`)."
)
BRIEF_EPILOG = (
    "The Trainer's keys (TrainingArguments: output_dir, max_steps, learning_rate, per_device_train_batch_size, "
    "logging_steps, seed, ...) work the same way; --help-all lists them all, with the full help text of every "
    "key. Recipes log to TensorBoard (`report_to: tensorboard`, event files under output_dir/runs/); "
    "`--report_to none` turns it off."
)
HELP_POSITION = 32
_BRIEF_CHARACTERS = 80  # help text shown per key by --help: its first sentence, cut to about this length


def _fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """The `__init__` fields of a dataclass with their resolved types."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init]


def grouped_keys() -> dict[str, list[tuple[dataclasses.Field, Any]]]:
    """The project's recipe keys (fields with their types) by help group, in the order of [`KEY_GROUPS`]."""
    from .arguments import project_argument_classes

    fields = {f.name: (f, hint) for cls in project_argument_classes() for f, hint in _fields(cls)}
    groups = {
        title: [fields.pop(name) for name in names if name in fields] for title, names in KEY_GROUPS.items()
    }
    if fields:
        groups["other"] = list(fields.values())
    return groups


def _metavar(hint: Any) -> str:
    """How a value of this type is written on the command line."""
    options = [a for a in typing.get_args(hint) if a is not type(None)] if _is_union(hint) else [hint]
    for option in options:
        if typing.get_origin(option) is Literal:
            return "{" + ",".join(str(a) for a in typing.get_args(option)) + "}"
        if isinstance(option, type) and issubclass(option, enum.Enum):
            return "{" + ",".join(str(member.value) for member in option) + "}"
    if any(option is dict or typing.get_origin(option) is dict for option in options):
        return "JSON"
    first = options[0]
    if typing.get_origin(first) is list:
        item = _metavar(typing.get_args(first)[0]) if typing.get_args(first) else "STR"
        return f"{item} [{item} ...]"
    names = {bool: "[BOOL]", int: "INT", float: "FLOAT", str: "STR"}
    return names.get(first, "STR")


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    value = field.default
    if value == "":
        return "''"  # shown as `(default: '')`, not `(default: )`
    return value.value if isinstance(value, enum.Enum) else value


def _brief(text: str) -> str:
    """The first sentence of a help text, cut at a word near `_BRIEF_CHARACTERS` characters."""
    sentence = re.split(r"(?<!e\.g\.)(?<!i\.e\.)(?<=[.;])\s", text.strip(), maxsplit=1)[0].rstrip(";")
    if len(sentence) <= _BRIEF_CHARACTERS:
        return sentence
    return sentence[: sentence.rfind(" ", 0, _BRIEF_CHARACTERS)].rstrip(",:;(") + " ..."


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's `(default: ...)` after each help text, except where there is nothing to show: a default of
    `None` (the help text says what happens) and on-off flags (`--no-progress`)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


class _KeysFormatter(DefaultsHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=HELP_POSITION)


def _add_key(group: Any, field: dataclasses.Field, hint: Any, brief: bool) -> None:
    from .arguments import RECIPE_DEFAULTS

    text = field.metadata.get("help", "")
    text = _brief(text) if brief else text
    group.add_argument(
        f"--{field.name}",
        metavar=_metavar(hint),
        default=RECIPE_DEFAULTS.get(
            field.name, _default(field)
        ),  # what a recipe gets, not the class's default
        help=text.replace("%", "%%"),  # argparse formats help with %-style placeholders
    )


def _trainer_keys() -> list[tuple[dataclasses.Field, Any]]:
    """The keys of `EtragTrainingArguments` that are the Trainer's (`TrainingArguments`), not the project's."""
    from ..training.arguments import EtragTrainingArguments
    from .arguments import project_argument_classes

    own = {f.name for cls in project_argument_classes() for f in dataclasses.fields(cls)}
    return [(f, hint) for f, hint in _fields(EtragTrainingArguments) if f.name not in own]


def format_train_help(show_all: bool = False) -> str:
    """The text of `hf-etrag train --help` (`show_all=False`) or `--help-all`."""
    parser = argparse.ArgumentParser(
        prog="hf-etrag train",
        usage=USAGE,
        description=DESCRIPTION,
        epilog=None if show_all else BRIEF_EPILOG,
        formatter_class=_KeysFormatter,
        add_help=False,
    )
    for title, keys in grouped_keys().items():
        group = parser.add_argument_group(title)
        for field, hint in keys:
            _add_key(group, field, hint, brief=not show_all)
    if show_all:
        trainer = parser.add_argument_group("Trainer (TrainingArguments)")
        for field, hint in _trainer_keys():
            _add_key(trainer, field, hint, brief=False)
    return parser.format_help()
